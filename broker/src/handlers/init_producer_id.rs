//! InitProducerId (22): a producer id and epoch for an idempotent producer,
//! or for a transactional one from its transaction coordinator.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{code, count_error};
use crate::broker::Broker;
use crate::security::acl::{self, Authorizer};

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> InitProducerIdResponse {
    // As Kafka: WRITE on the transactional id; without one,
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let denied = match &req.transactional_id {
        Some(t) if !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, t) => {
            Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
        None if !authz.cluster(acl::op::IDEMPOTENT_WRITE)
            && !authz.any_of_type(acl::op::WRITE, acl::resource::TOPIC) =>
        {
            Some(code::CLUSTER_AUTHORIZATION_FAILED)
        }
        _ => None,
    };
    let resp = if let Some(e) = denied {
        InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if req.transactional_id.as_ref().is_some_and(|t| t.is_empty()) {
        // As Kafka: an empty transactional id is not one.
        InitProducerIdResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if let Some(id) = &req.transactional_id {
        let (e, pid, epoch) =
            super::transactions::init_producer_id(broker, id.as_str(), &req, version).await;
        InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    } else {
        // As Kafka: a producer without a transactional id always gets a new
        // id with epoch 0 (there is no state to fence).
        match broker.producer_ids.next_id() {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(cluster_unique(broker, id)))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "allocating a producer id failed");
                InitProducerIdResponse::default()
                    .with_error_code(code::KAFKA_STORAGE_ERROR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    };
    count_error(broker, "InitProducerId", resp.error_code);
    resp
}

/// Every broker hands out ids: each gets its own range, keyed by node id
/// (2^40 ids each), above the ids brokers gave out when one ran alone
/// without a quorum (docs/decisions/0027).
pub(crate) fn cluster_unique(broker: &Broker, id: i64) -> i64 {
    ((i64::from(broker.config.node_id) + 1) << 40) | (id & ((1 << 40) - 1))
}
