//! InitProducerId (22): a producer id and epoch for an idempotent producer.
//! Transactions are not served: a transactional id is refused.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{code, count_error};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let resp = if req.transactional_id.as_ref().is_some_and(|t| t.is_empty()) {
        // As Kafka: an empty transactional id is not one.
        InitProducerIdResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if req.transactional_id.is_some() {
        InitProducerIdResponse::default()
            .with_error_code(code::UNSUPPORTED_VERSION)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
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
fn cluster_unique(broker: &Broker, id: i64) -> i64 {
    ((i64::from(broker.config.node_id) + 1) << 40) | (id & ((1 << 40) - 1))
}
