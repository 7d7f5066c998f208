//! Produce (0): validate batches, append, acknowledge.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{code, count_error, str_bytes};
use crate::broker::Broker;
use crate::partition::replica::TopicPartition;
use crate::security::acl::{self, Authorizer};
use crate::storage::batch::{self, BatchError};

fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::TooLarge { .. } => code::MESSAGE_TOO_LARGE,
        BatchError::CrcMismatch { .. }
        | BatchError::Truncated { .. }
        | BatchError::BadLength(_) => code::CORRUPT_MESSAGE,
        BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::UnknownCompression(_) => code::UNSUPPORTED_COMPRESSION_TYPE,
        BatchError::BadRecordCount { .. } | BatchError::Empty => code::INVALID_RECORD,
    }
}

/// A refused partition. As Kafka, the message goes to the client only for
/// INVALID_RECORD (a record the broker found wrong); for the other errors
/// the code says it all, and the message is logged.
fn failed(index: i32, error: i16, message: impl Into<String>) -> PartitionProduceResponse {
    let message = message.into();
    tracing::debug!(partition = index, error, %message, "produce refused");
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message((error == code::INVALID_RECORD).then(|| str_bytes(message)))
}

/// A produce request whose batches are appended: the answer, less the
/// acks=all writes still waiting for their in-sync replicas.
pub struct Appended {
    acks: i16,
    deadline: tokio::time::Instant,
    responses: Vec<TopicProduceResponse>,
    /// (topic slot, partition slot, partition, end offset, index).
    waits: Vec<(
        usize,
        usize,
        Arc<crate::partition::replica::Partition>,
        i64,
        i32,
    )>,
}

impl Appended {
    /// Whether the answer waits for followers (acks=all).
    pub fn waits(&self) -> bool {
        !self.waits.is_empty()
    }
}

/// Validates and appends every batch of `req`, in order.
pub fn append_all(broker: &Arc<Broker>, req: ProduceRequest, authz: &Authorizer<'_>) -> Appended {
    let acks = req.acks;
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut waits = Vec::new();
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let writes = authz.topic(acl::op::WRITE, &name);
        // As Kafka: a transactional producer needs WRITE on its id too.
        let txn_denied = req
            .transactional_id
            .as_ref()
            .is_some_and(|t| !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, t));
        let transactional = req.transactional_id.is_some();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let resp = if !matches!(acks, -1..=1) {
                failed(
                    pd.index,
                    code::INVALID_REQUIRED_ACKS,
                    format!("acks={acks} is not one of -1, 0, 1"),
                )
            } else if !writes {
                failed(
                    pd.index,
                    code::TOPIC_AUTHORIZATION_FAILED,
                    format!("WRITE on topic {name} is not allowed"),
                )
            } else if txn_denied {
                failed(
                    pd.index,
                    code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "WRITE on the transactional id is not allowed",
                )
            } else {
                let to = (name.as_str(), pd.index, transactional);
                let (resp, wait) = append(broker, to, pd.records.as_ref(), acks);
                if let Some((partition, end)) = wait {
                    waits.push((responses.len(), parts.len(), partition, end, pd.index));
                }
                resp
            };
            count_error(broker, "Produce", resp.error_code);
            parts.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(parts),
        );
    }
    Appended {
        acks,
        deadline,
        responses,
        waits,
    }
}

/// Waits for the acks=all writes of `a` to reach their in-sync replicas,
/// and answers. `None` for acks=0, which gets no response.
pub async fn finish(broker: &Broker, a: Appended) -> Option<ProduceResponse> {
    let Appended {
        acks,
        deadline,
        mut responses,
        waits,
    } = a;
    for (ti, pi, partition, end, index) in waits {
        if let Some(error) = wait_for_replicas(broker, &partition, end, deadline).await {
            let message = match error {
                code::NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
                    "written on the leader, but the in-sync replicas fell below min.insync.replicas"
                }
                code::NOT_LEADER_OR_FOLLOWER => {
                    "this broker stopped leading the partition before the in-sync replicas had the write"
                }
                _ => {
                    "written on the leader, not yet on every in-sync replica within the request timeout"
                }
            };
            count_error(broker, "Produce", error);
            responses[ti].partition_responses[pi] = failed(index, error, message);
        }
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Waits until the high watermark passes `end` (every in-sync replica has
/// the write). `None` on success, else the error for the client.
pub(crate) async fn wait_for_replicas(
    broker: &Broker,
    partition: &crate::partition::replica::Partition,
    end: i64,
    deadline: tokio::time::Instant,
) -> Option<i16> {
    use sluice_replication::leader::AckState;
    let mut hw = partition.subscribe();
    loop {
        match partition.ack_state(end) {
            Some(AckState::Done) => return None,
            Some(AckState::NotEnoughReplicas) => {
                return Some(code::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
            }
            Some(AckState::Waiting) => {}
            // Leadership moved while the write waited: as Kafka answers it.
            // The client sends the batch again to the new leader, which
            // has it (it was in sync) and answers it as a duplicate with
            // its offset; NOT_ENOUGH_REPLICAS_AFTER_APPEND here would make
            // librdkafka count the write as "possibly persisted" and, once
            // a later batch succeeds, acknowledge it without an offset.
            None => return Some(code::NOT_LEADER_OR_FOLLOWER),
        }
        if tokio::time::Instant::now() >= deadline || broker.shutdown.is_cancelled() {
            return Some(code::REQUEST_TIMED_OUT);
        }
        // ISR changes do not move the watermark: look again now and then.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), hw.changed()).await;
    }
}

type Wait = Option<(Arc<crate::partition::replica::Partition>, i64)>;

/// `to`: the topic, the partition, and whether the request carries a
/// transactional id.
fn append(
    broker: &Broker,
    to: (&str, i32, bool),
    records: Option<&bytes::Bytes>,
    acks: i16,
) -> (PartitionProduceResponse, Wait) {
    let mut wait = None;
    let resp = append_one(broker, to, records, acks, &mut wait);
    if resp.error_code != code::NONE {
        wait = None;
    }
    (resp, wait)
}

fn append_one(
    broker: &Broker,
    (topic, index, transactional): (&str, i32, bool),
    records: Option<&bytes::Bytes>,
    acks: i16,
    wait: &mut Wait,
) -> PartitionProduceResponse {
    let tp = TopicPartition::new(topic, index);
    let partition = match broker.led_partition(&tp) {
        Ok(p) => p,
        Err(c) if c == code::NOT_LEADER_OR_FOLLOWER => {
            return failed(index, c, format!("this broker does not lead {tp}"));
        }
        Err(c) => return failed(index, c, format!("unknown partition {tp}")),
    };
    let Some(records) = records else {
        return failed(index, code::INVALID_RECORD, "records are null");
    };
    let config = partition.config();
    let max = config.max_message_bytes.max(0) as usize;
    let headers = match batch::validate_produce(records, max) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(partition = %tp, error = %e, "refused produce");
            return failed(index, batch_error_code(&e), e.to_string());
        }
    };
    // Markers are the coordinator's (WriteTxnMarkers), never a client's;
    // a transactional batch comes with its transactional id (as Kafka).
    if headers.iter().any(|h| h.is_control()) {
        return failed(
            index,
            code::INVALID_RECORD,
            "a client may not write control batches",
        );
    }
    if headers
        .iter()
        .any(|h| h.is_transactional() && (!transactional || h.producer_id < 0))
    {
        return failed(
            index,
            code::INVALID_RECORD,
            "a transactional batch needs a transactional id and a producer id",
        );
    }
    // A topic's compression.type other than `producer`: its batches are
    // stored in that codec (Kafka recompresses the same way, on the leader;
    // followers copy the leader's bytes).
    let recompressed;
    let (records, headers) = match config.compression {
        None => (records, headers),
        Some(to) => {
            match crate::storage::records::recompress(records, to, config.compression_level) {
                Ok(None) => (records, headers),
                Ok(Some(b)) => {
                    recompressed = b;
                    match batch::validate_produce(&recompressed, max) {
                        Ok(h) => (&recompressed, h),
                        Err(e) => return failed(index, batch_error_code(&e), e.to_string()),
                    }
                }
                Err(e) => return failed(index, code::CORRUPT_MESSAGE, e),
            }
        }
    };
    if config.compact {
        // A compacted topic keeps records by key: a record without one
        // could never be cleaned (Kafka refuses it the same way).
        match crate::storage::records::decode_all(records.clone()) {
            Ok(recs) if recs.iter().any(|r| r.key.is_none()) => {
                return failed(
                    index,
                    code::CORRUPT_MESSAGE,
                    format!(
                        "Compacted topic cannot accept message without key in topic partition {tp}."
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => return failed(index, code::CORRUPT_MESSAGE, e),
        }
    }
    let replicated =
        partition.with_role(|r| matches!(r, crate::partition::replica::Role::Leader(_)));
    if acks == -1 && !replicated && config.min_insync_replicas > 1 {
        let min = config.min_insync_replicas;
        return failed(
            index,
            code::NOT_ENOUGH_REPLICAS,
            format!("in-sync replicas (1) are fewer than min.insync.replicas ({min})"),
        );
    }
    if acks == -1 && replicated && !partition.can_append_acks_all() {
        let min = config.min_insync_replicas;
        return failed(
            index,
            code::NOT_ENOUGH_REPLICAS,
            format!("the in-sync replicas are fewer than min.insync.replicas ({min})"),
        );
    }
    match partition.append(records, &headers) {
        Ok(info) => {
            if acks == -1 && replicated {
                *wait = Some((Arc::clone(&partition), info.last_offset + 1));
            }
            if info.duplicate {
                tracing::debug!(partition = %tp, offset = info.base_offset, "duplicate batch from an idempotent producer");
            } else {
                broker.metrics.bytes_in.inc_by(records.len() as u64);
                let n: i64 = headers.iter().map(|h| i64::from(h.records_count)).sum();
                broker.metrics.messages_in.inc_by(n as u64);
            }
            PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(info.base_offset)
                .with_log_append_time_ms(info.log_append_time)
                .with_log_start_offset(info.log_start_offset)
        }
        // Refused by the log's producer state: Kafka gives the log start.
        Err(e @ crate::Error::OutOfOrderSequence { .. }) => {
            failed(index, code::OUT_OF_ORDER_SEQUENCE_NUMBER, e.to_string())
                .with_log_start_offset(partition.offsets().log_start)
        }
        Err(e @ crate::Error::InvalidProducerEpoch { .. }) => {
            failed(index, code::INVALID_PRODUCER_EPOCH, e.to_string())
                .with_log_start_offset(partition.offsets().log_start)
        }
        Err(e @ crate::Error::MultipleIdempotentBatches) => {
            failed(index, code::INVALID_RECORD, e.to_string())
        }
        Err(e) => {
            tracing::error!(partition = %tp, error = %e, "append failed");
            failed(
                index,
                code::KAFKA_STORAGE_ERROR,
                format!("append failed: {e}"),
            )
        }
    }
}
