//! Transactions: InitProducerId with a transactional id (22),
//! AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26),
//! WriteTxnMarkers (27, from a coordinator to a partition leader) and
//! TxnOffsetCommit (28). The decisions are `coordinator::txn::state`'s,
//! the I/O `coordinator::txn::service`'s.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::*;

use super::count_error;
use super::offsets::{Planned, plan_commit, wanted_commits};
use crate::broker::Broker;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::group::offsets_log;
use crate::coordinator::txn::service::{self, coordinator_of};
use crate::coordinator::txn::state::{self, EndOutcome, InitOutcome};
use crate::partition::replica::TopicPartition;
use crate::protocol::code;
use crate::security::acl::{self, Authorizer};
use crate::storage::batch;
use crate::storage::log::now_ms;

/// How long a request waits for the transaction before it to complete
/// (its markers written) before answering CONCURRENT_TRANSACTIONS.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// PRODUCER_FENCED (KIP-588) for the versions that know it, else
/// INVALID_PRODUCER_EPOCH, as Kafka answers older clients.
fn fenced(c: i16, knows_fenced: bool) -> i16 {
    if c == code::PRODUCER_FENCED && !knows_fenced {
        code::INVALID_PRODUCER_EPOCH
    } else {
        c
    }
}

/// InitProducerId for a transactional id (WRITE on it was checked).
pub async fn init_producer_id(
    broker: &Arc<Broker>,
    id: &str,
    req: &InitProducerIdRequest,
    version: i16,
) -> (i16, i64, i16) {
    let (p, part) = match coordinator_of(broker, id) {
        Ok(c) => c,
        Err(e) => return (e, -1, -1),
    };
    if req.transaction_timeout_ms <= 0
        || req.transaction_timeout_ms > broker.config.transaction_max_timeout_ms
    {
        return (code::INVALID_TRANSACTION_TIMEOUT, -1, -1);
    }
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    broker.txns.wait_settled(id, SETTLE_WAIT).await;
    let lock = broker.txns.lock_for(id);
    let serial = lock.lock().await;
    let existing = broker.txns.get(id);
    let new_id = || {
        broker
            .producer_ids
            .next_id()
            .ok()
            .map(|i| super::init_producer_id::cluster_unique(broker, i))
    };
    let now = now_ms();
    match state::init(
        existing.as_ref(),
        new_id,
        req.transaction_timeout_ms,
        expected,
        now,
    ) {
        InitOutcome::Write(m) => match service::persist(broker, &part, id, &m).await {
            Ok(()) => {
                let answer = (code::NONE, m.producer_id, m.producer_epoch);
                broker.txns.set(id, p, m);
                answer
            }
            Err(e) => (e, -1, -1),
        },
        InitOutcome::AbortFirst(m) => {
            if let Err(e) = service::persist(broker, &part, id, &m).await {
                return (e, -1, -1);
            }
            tracing::info!(
                transactional_id = id,
                "a new producer instance: aborting the open transaction of the last one"
            );
            broker.txns.set(id, p, m);
            drop(serial);
            service::spawn_complete(Arc::clone(broker), id.to_string());
            (code::CONCURRENT_TRANSACTIONS, -1, -1)
        }
        InitOutcome::Error(e) => (fenced(e, version >= 4), -1, -1),
    }
}

/// The partitions of a request as `(topic, partition)`.
fn partitions_of(
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect()
}

fn topic_results(
    parts: &[(String, i32)],
    code_of: impl Fn(&(String, i32)) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let results = parts.iter().map(|tp| {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(tp.1)
            .with_partition_error_code(code_of(tp));
        (tp.0.clone(), r)
    });
    by_topic(results)
        .into_iter()
        .map(|(t, rs)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(super::str_bytes(t)))
                .with_results_by_partition(rs)
        })
        .collect()
}

/// Items keyed by topic, consecutive ones of a topic gathered under it,
/// in order (the per-topic arrays of Kafka's answers).
fn by_topic<T>(items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    for (t, x) in items {
        match out.last_mut() {
            Some((last, xs)) if *last == t => xs.push(x),
            _ => out.push((t, vec![x])),
        }
    }
    out
}

/// Adds partitions to the open transaction of `id` (or starts one).
/// Returns the error for the whole request, or per partition.
async fn add(
    broker: &Arc<Broker>,
    id: &str,
    producer: (i64, i16),
    parts: &[(String, i32)],
) -> Result<(), i16> {
    let (p, part) = coordinator_of(broker, id)?;
    broker.txns.wait_settled(id, SETTLE_WAIT).await;
    let lock = broker.txns.lock_for(id);
    let _serial = lock.lock().await;
    let existing = broker.txns.get(id);
    match state::add_partitions(existing.as_ref(), producer.0, producer.1, parts, now_ms())? {
        None => Ok(()),
        Some(m) => {
            service::persist(broker, &part, id, &m).await?;
            broker.txns.set(id, p, m);
            Ok(())
        }
    }
}

pub async fn add_partitions_to_txn(
    broker: &Arc<Broker>,
    req: AddPartitionsToTxnRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.0.to_string();
    let parts = partitions_of(&req.v3_and_below_topics);
    let resp =
        |results| AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    if !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, &id) {
        let c = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        count_error(broker, "AddPartitionsToTxn", c);
        return resp(topic_results(&parts, |_| c));
    }
    // As Kafka: a partition the producer may not write, or that does not
    // exist, fails the request; the others are not attempted.
    let refused = |tp: &(String, i32)| -> Option<i16> {
        if !authz.topic(acl::op::WRITE, &tp.0) {
            Some(code::TOPIC_AUTHORIZATION_FAILED)
        } else if broker.cluster().partition(&tp.0, tp.1).is_none() {
            Some(code::UNKNOWN_TOPIC_OR_PARTITION)
        } else {
            None
        }
    };
    if parts.iter().any(|tp| refused(tp).is_some()) {
        let results = topic_results(&parts, |tp| {
            refused(tp).unwrap_or(code::OPERATION_NOT_ATTEMPTED)
        });
        count_error(broker, "AddPartitionsToTxn", code::OPERATION_NOT_ATTEMPTED);
        return resp(results);
    }
    let producer = (
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
    );
    let c = match add(broker, &id, producer, &parts).await {
        Ok(()) => code::NONE,
        Err(e) => fenced(e, version >= 2),
    };
    count_error(broker, "AddPartitionsToTxn", c);
    resp(topic_results(&parts, |_| c))
}

pub async fn add_offsets_to_txn(
    broker: &Arc<Broker>,
    req: AddOffsetsToTxnRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let c = if !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, &id) {
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !authz.group(acl::op::READ, &group) {
        code::GROUP_AUTHORIZATION_FAILED
    } else {
        match broker.ensure_offsets_topic() {
            Err(_) => code::COORDINATOR_NOT_AVAILABLE,
            Ok(n) => {
                let tp = (
                    OFFSETS_TOPIC.to_string(),
                    offsets_log::partition_for(&group, n),
                );
                let producer = (req.producer_id.0, req.producer_epoch);
                match add(broker, &id, producer, &[tp]).await {
                    Ok(()) => code::NONE,
                    Err(e) => fenced(e, version >= 2),
                }
            }
        }
    };
    count_error(broker, "AddOffsetsToTxn", c);
    AddOffsetsToTxnResponse::default().with_error_code(c)
}

pub async fn end_txn(
    broker: &Arc<Broker>,
    req: EndTxnRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> EndTxnResponse {
    let id = req.transactional_id.0.to_string();
    let c = if !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, &id) {
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else {
        match end(
            broker,
            &id,
            (req.producer_id.0, req.producer_epoch),
            req.committed,
        )
        .await
        {
            Ok(()) => code::NONE,
            Err(e) => fenced(e, version >= 2),
        }
    };
    count_error(broker, "EndTxn", c);
    EndTxnResponse::default().with_error_code(c)
}

async fn end(
    broker: &Arc<Broker>,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> Result<(), i16> {
    let (p, part) = coordinator_of(broker, id)?;
    let lock = broker.txns.lock_for(id);
    let serial = lock.lock().await;
    let existing = broker.txns.get(id);
    match state::end(existing.as_ref(), producer.0, producer.1, commit, now_ms())? {
        EndOutcome::Done => Ok(()),
        EndOutcome::Prepare(m) => {
            service::persist(broker, &part, id, &m).await?;
            broker.txns.set(id, p, m);
            drop(serial);
            // Decided: the markers follow, and the client may go on (as
            // Kafka answers after the prepare is written).
            service::spawn_complete(Arc::clone(broker), id.to_string());
            Ok(())
        }
    }
}

/// WriteTxnMarkers: a coordinator's markers for partitions this broker
/// leads. Only brokers (CLUSTER_ACTION) send it.
pub async fn write_txn_markers(
    broker: &Arc<Broker>,
    req: WriteTxnMarkersRequest,
    authz: &Authorizer<'_>,
) -> WriteTxnMarkersResponse {
    let allowed = authz.cluster(acl::op::CLUSTER_ACTION);
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let parts: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| (t.name.0.to_string(), *p))
            })
            .collect();
        let results = if allowed {
            let marker = (
                m.producer_id.0,
                m.producer_epoch,
                m.transaction_result,
                m.coordinator_epoch,
            );
            service::write_markers_local(broker, marker, &parts).await
        } else {
            parts
                .into_iter()
                .map(|tp| (tp, code::CLUSTER_AUTHORIZATION_FAILED))
                .collect()
        };
        let results = results.into_iter().map(|((t, p), c)| {
            count_error(broker, "WriteTxnMarkers", c);
            let r = WritableTxnMarkerPartitionResult::default()
                .with_partition_index(p)
                .with_error_code(c);
            (t, r)
        });
        let topics = by_topic(results)
            .into_iter()
            .map(|(t, rs)| {
                WritableTxnMarkerTopicResult::default()
                    .with_name(TopicName(super::str_bytes(t)))
                    .with_partitions(rs)
            })
            .collect();
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// TxnOffsetCommit: a group's offsets committed inside a transaction,
/// written to the group's `__consumer_offsets` partition as a
/// transactional batch of the producer, visible once its marker is.
pub async fn txn_offset_commit(
    broker: &Arc<Broker>,
    req: TxnOffsetCommitRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let request_error = if !authz.allows(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, &id) {
        Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !authz.group(acl::op::READ, &group) {
        Some(code::GROUP_AUTHORIZATION_FAILED)
    } else if let Some(e) = broker.coordinator_error(&group) {
        Some(e)
    } else if req.generation_id >= 0 || !req.member_id.is_empty() {
        // KIP-447: a consumer's generation, checked as OffsetCommit does.
        match broker.groups.validate_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            code::NONE => None,
            e => Some(e),
        }
    } else {
        None
    };
    let wanted = wanted_commits!(req.topics);
    let Planned {
        records,
        changes,
        answers,
    } = plan_commit(
        broker,
        authz,
        &group,
        request_error.unwrap_or(code::NONE),
        wanted,
    );
    let written = if records.is_empty() {
        code::NONE
    } else {
        let producer = (req.producer_id.0, req.producer_epoch);
        match write_txn_offsets(broker, &group, producer, &records).await {
            Ok(()) => {
                broker.groups.stage_txn(&group, producer.0, changes);
                code::NONE
            }
            Err(e) => fenced(e, version >= 2),
        }
    };
    let topics = req
        .topics
        .iter()
        .zip(answers)
        .map(|(t, parts)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(i, e)| {
                            let e = if e == code::NONE { written } else { e };
                            count_error(broker, "TxnOffsetCommit", e);
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(i)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

async fn write_txn_offsets(
    broker: &Broker,
    group: &str,
    (producer_id, epoch): (i64, i16),
    records: &[(Bytes, Option<Bytes>)],
) -> Result<(), i16> {
    let n = broker
        .ensure_offsets_topic()
        .map_err(|_| code::COORDINATOR_NOT_AVAILABLE)?;
    let p = offsets_log::partition_for(group, n);
    let part = broker
        .replicas
        .get(&TopicPartition::new(OFFSETS_TOPIC, p))
        .ok_or(code::NOT_COORDINATOR)?;
    let b = offsets_log::batch(records, now_ms()).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
    let mut b = b.to_vec();
    batch::set_producer(&mut b, producer_id, epoch, -1);
    batch::set_transactional(&mut b);
    let headers =
        batch::validate_produce(&b, usize::MAX).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
    let info = match part.append(&b, &headers) {
        Ok(i) => i,
        Err(crate::Error::InvalidProducerEpoch { .. }) => return Err(code::PRODUCER_FENCED),
        Err(e) => {
            tracing::warn!(group, error = %e, "writing transactional offsets");
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    match super::produce::wait_for_replicas(broker, &part, info.last_offset + 1, deadline).await {
        None => Ok(()),
        Some(code::NOT_LEADER_OR_FOLLOWER) => Err(code::NOT_COORDINATOR),
        Some(_) => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// DescribeTransactions: the state of each id this broker coordinates
/// (DESCRIBE on the id; the topics listed only where DESCRIBE on them).
pub fn describe_transactions(
    broker: &Arc<Broker>,
    req: DescribeTransactionsRequest,
    authz: &Authorizer<'_>,
) -> DescribeTransactionsResponse {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let states = req
        .transactional_ids
        .into_iter()
        .map(|tid| {
            let id = tid.0.to_string();
            let base = TransactionState::default()
                .with_transactional_id(tid)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            let found = if !authz.allows(acl::op::DESCRIBE, acl::resource::TRANSACTIONAL_ID, &id) {
                Err(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else {
                coordinator_of(broker, &id)
                    .and_then(|_| broker.txns.get(&id).ok_or(code::TRANSACTIONAL_ID_NOT_FOUND))
            };
            let m = match found {
                Ok(m) => m,
                Err(e) => {
                    count_error(broker, "DescribeTransactions", e);
                    return base.with_error_code(e);
                }
            };
            let described = m
                .partitions
                .iter()
                .filter(|(t, _)| authz.topic(acl::op::DESCRIBE, t))
                .cloned();
            let topics = by_topic(described)
                .into_iter()
                .map(|(t, ps)| {
                    TopicData::default()
                        .with_topic(TopicName(super::str_bytes(t)))
                        .with_partitions(ps)
                })
                .collect();
            base.with_transaction_state(super::str_bytes(m.status.name().to_string()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: the ids this broker coordinates that the principal
/// may DESCRIBE, by state, producer id and (v1) age.
pub fn list_transactions(
    broker: &Arc<Broker>,
    req: ListTransactionsRequest,
    authz: &Authorizer<'_>,
) -> ListTransactionsResponse {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    const STATES: [&str; 8] = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    let states = broker
        .txns
        .all()
        .into_iter()
        .filter(|(id, m)| {
            (req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == m.status.name()))
                && (req.producer_id_filters.is_empty()
                    || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id))
                && (req.duration_filter < 0
                    || (m.start_ms >= 0 && now - m.start_ms >= req.duration_filter))
                && authz.allows(acl::op::DESCRIBE, acl::resource::TRANSACTIONAL_ID, id)
        })
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(super::str_bytes(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(super::str_bytes(m.status.name().to_string()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
