//! OffsetForLeaderEpoch (23): where a leader epoch ends in the leader's
//! log. Consumers use it after a leader change to detect a log that was
//! truncated under them (KIP-320); followers use it to find where to
//! truncate before fetching (KIP-101/279).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{code, count_error};
use crate::broker::Broker;
use crate::partition::replica::TopicPartition;
use crate::security::acl::{self, Authorizer};

/// Kafka's "no such epoch here" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

pub fn handle(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> OffsetForLeaderEpochResponse {
    // As Kafka (the API was inter-broker first, then KIP-320 gave it to
    // consumers): CLUSTER_ACTION, or DESCRIBE on each topic.
    let replicates = authz.cluster(acl::op::CLUSTER_ACTION);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let refused = (!replicates && !authz.topic(acl::op::DESCRIBE, &name))
                .then_some(code::TOPIC_AUTHORIZATION_FAILED);
            let partitions =
                t.partitions
                    .into_iter()
                    .map(|p| {
                        let base = EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_leader_epoch(UNDEFINED_EPOCH)
                            .with_end_offset(UNDEFINED_EPOCH_OFFSET);
                        let found = match refused {
                            Some(c) => Err(c),
                            None => broker
                                .led_partition(&TopicPartition::new(name.clone(), p.partition)),
                        };
                        let r = match found {
                            Err(c) => base.with_error_code(c),
                            Ok(part) => {
                                let current = part.leader_epoch();
                                if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                                    base.with_error_code(code::FENCED_LEADER_EPOCH)
                                } else if p.current_leader_epoch > current {
                                    base.with_error_code(code::UNKNOWN_LEADER_EPOCH)
                                } else {
                                    let answer = part.with_log(|log| {
                                        log.leader_epochs()
                                            .end_offset_for(p.leader_epoch, log.log_end_offset())
                                    });
                                    match answer {
                                        Some((epoch, end)) => {
                                            base.with_leader_epoch(epoch).with_end_offset(end)
                                        }
                                        None => base,
                                    }
                                }
                            }
                        };
                        count_error(broker, "OffsetForLeaderEpoch", r.error_code);
                        r
                    })
                    .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
