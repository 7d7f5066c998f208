//! The transaction coordinator's I/O: state writes to `__transaction_state`
//! (answered only once the in-sync replicas have them), the transaction
//! markers sent to every partition's leader (WriteTxnMarkers, or written
//! here when this broker leads the partition), the loading of a partition's
//! states by its new leader (which resumes the markers of every decided
//! transaction), and the abort of transactions past their timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;

use super::state::{self, TxnMeta, TxnStatus};
use super::{TXN_TOPIC, log};
use crate::broker::{Broker, CreateTopicError, NewTopic};
use crate::coordinator::group::{OFFSETS_TOPIC, offsets_log};
use crate::metadata::TopicConfigs;
use crate::metadata::cluster_topics::Internal;
use crate::partition::replica::{Partition, TopicPartition};
use crate::protocol::code;
use crate::storage::batch::{self, ControlKind};
use crate::storage::log::now_ms;

/// How long a state write or a marker waits for the in-sync replicas.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest pause between two rounds of markers that did not all land.
const MARKER_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How `__transaction_state` is created: compacted, three replicas (or as
/// many as there are brokers) and, as Kafka's
/// `transaction.state.log.min.isr`, two in sync when there are two or more.
pub fn topic_spec(broker: &Broker) -> Result<NewTopic, CreateTopicError> {
    let replication_factor = broker.cluster().image().live_brokers().count().clamp(1, 3) as i16;
    let min_isr = if replication_factor >= 2 { "2" } else { "1" };
    let configs = TopicConfigs::from_pairs([
        ("cleanup.policy", Some("compact")),
        ("segment.bytes", Some("104857600")),
        ("min.insync.replicas", Some(min_isr)),
    ])?;
    Ok(NewTopic {
        name: TXN_TOPIC.to_string(),
        partitions: broker.config.transaction_state_log_num_partitions,
        replication_factor,
        configs,
        assignment: None,
    })
}

/// The partition holding `id` and its log, when this broker coordinates
/// the id and has loaded its partition; else the error to answer
/// (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or
/// COORDINATOR_LOAD_IN_PROGRESS, all of which clients retry).
pub fn coordinator_of(broker: &Broker, id: &str) -> Result<(i32, Arc<Partition>), i16> {
    // Before the topic exists (FindCoordinator creates it), as Kafka
    // answers: not the coordinator, so the client looks for it.
    if !broker.cluster().image().topics.contains_key(TXN_TOPIC) {
        return Err(code::NOT_COORDINATOR);
    }
    let (p, part) = broker.coordinated_here(Internal::Transactions, id)?;
    if !broker.txns.is_loaded(p) {
        return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
    }
    Ok((p, part))
}

/// Writes `meta` for `id` and waits for the in-sync replicas.
pub async fn persist(
    broker: &Broker,
    part: &Arc<Partition>,
    id: &str,
    meta: &TxnMeta,
) -> Result<(), i16> {
    let records = [(log::key(id), Some(log::value(meta)))];
    let b = offsets_log::batch(&records, now_ms()).map_err(|e| {
        tracing::error!(transactional_id = id, error = %e, "encoding a transaction state");
        code::UNKNOWN_SERVER_ERROR
    })?;
    let headers = batch::validate_produce(&b, usize::MAX).map_err(|e| {
        tracing::error!(transactional_id = id, error = %e, "a transaction state batch is invalid");
        code::UNKNOWN_SERVER_ERROR
    })?;
    if !part.can_append_acks_all() {
        return Err(code::COORDINATOR_NOT_AVAILABLE);
    }
    let info = part.append(&b, &headers).map_err(|e| {
        tracing::warn!(transactional_id = id, error = %e, "writing a transaction state");
        code::COORDINATOR_NOT_AVAILABLE
    })?;
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    match crate::handlers::produce::wait_for_replicas(broker, part, info.last_offset + 1, deadline)
        .await
    {
        None => Ok(()),
        Some(code::NOT_LEADER_OR_FOLLOWER) => Err(code::NOT_COORDINATOR),
        Some(_) => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Loads partition `p` of `__transaction_state` as its new leader, and
/// resumes the markers of every transaction decided there.
pub fn load_partition(broker: &Arc<Broker>, p: i32) -> crate::Result<usize> {
    broker.txns.unload(p);
    let mut n = 0usize;
    broker.replay_internal(TXN_TOPIC, p, |r| {
        if let Some((id, meta)) = log::decode(r.key.as_ref(), r.value.as_ref()) {
            broker.txns.replay(p, id, meta);
            n += 1;
        }
    })?;
    broker.txns.mark_loaded(p);
    for id in broker.txns.prepared_in(p) {
        spawn_complete(Arc::clone(broker), id);
    }
    Ok(n)
}

/// The marker a control record carries (its key `(0, type)`).
pub fn marker_of(r: &Record) -> Option<ControlKind> {
    let k = r.key.as_ref()?;
    match k.get(..4)? {
        [0, 0, 0, 0] => Some(ControlKind::Abort),
        [0, 0, 0, 1] => Some(ControlKind::Commit),
        _ => None,
    }
}

/// Writes the markers of a decided transaction, then its completion.
pub fn spawn_complete(broker: Arc<Broker>, id: String) {
    tokio::spawn(async move { complete(&broker, &id).await });
}

async fn complete(broker: &Arc<Broker>, id: &str) {
    let Some(meta) = broker.txns.get(id) else {
        return;
    };
    if !meta.status.is_prepared() {
        return;
    }
    let commit = meta.status == TxnStatus::PrepareCommit;
    let mut pending: BTreeSet<(String, i32)> = meta.partitions.clone();
    let mut backoff = Duration::from_millis(20);
    while !pending.is_empty() {
        if broker.shutdown.is_cancelled() {
            return;
        }
        // No longer the coordinator: the new one resumes from the log.
        let Ok((_, part)) = coordinator_of(broker, id) else {
            return;
        };
        let coordinator_epoch = part.leader_epoch();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut done = Vec::new();
        for (t, i) in &pending {
            match broker.cluster().partition(t, *i) {
                // Deleted since: nothing to mark.
                None => done.push((t.clone(), *i)),
                Some(s) if s.leader >= 0 => {
                    by_leader.entry(s.leader).or_default().push((t.clone(), *i))
                }
                Some(_) => {}
            }
        }
        let marker = (
            meta.producer_id,
            meta.producer_epoch,
            commit,
            coordinator_epoch,
        );
        for (leader, parts) in by_leader {
            let results = if leader == broker.config.node_id {
                write_markers_local(broker, marker, &parts).await
            } else {
                send_markers(broker, leader, marker, &parts).await
            };
            for (tp, c) in results {
                match c {
                    code::NONE | code::UNKNOWN_TOPIC_OR_PARTITION => done.push(tp),
                    code::INVALID_PRODUCER_EPOCH => {
                        // A newer epoch wrote there: this marker is obsolete.
                        tracing::warn!(transactional_id = id, partition = %format!("{}-{}", tp.0, tp.1), "a marker was refused for a stale epoch");
                        done.push(tp);
                    }
                    c => {
                        tracing::debug!(transactional_id = id, partition = %format!("{}-{}", tp.0, tp.1), error = c, "a marker is not written yet")
                    }
                }
            }
        }
        for tp in done {
            pending.remove(&tp);
        }
        if !pending.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = broker.shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MARKER_BACKOFF_MAX);
        }
    }
    let lock = broker.txns.lock_for(id);
    let _serial = lock.lock().await;
    loop {
        let Ok((p, part)) = coordinator_of(broker, id) else {
            return;
        };
        if broker.txns.get(id).as_ref() != Some(&meta) {
            return;
        }
        let next = state::complete(&meta, now_ms());
        match persist(broker, &part, id, &next).await {
            Ok(()) => {
                broker.txns.set(id, p, next);
                return;
            }
            Err(e) => {
                tracing::warn!(
                    transactional_id = id,
                    error = e,
                    "writing a transaction's completion"
                );
                tokio::select! {
                    () = tokio::time::sleep(MARKER_BACKOFF_MAX) => {}
                    () = broker.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// `(producer id, producer epoch, commit, coordinator epoch)`.
pub type Marker = (i64, i16, bool, i32);

/// Writes a marker in each partition this broker leads, waiting for the
/// in-sync replicas; a group's offsets committed in the transaction become
/// visible (or are dropped) once its `__consumer_offsets` marker is in.
pub async fn write_markers_local(
    broker: &Broker,
    (producer_id, epoch, commit, coordinator_epoch): Marker,
    parts: &[(String, i32)],
) -> Vec<((String, i32), i16)> {
    let kind = if commit {
        ControlKind::Commit
    } else {
        ControlKind::Abort
    };
    let mut out = Vec::with_capacity(parts.len());
    let mut waits = Vec::new();
    for (t, i) in parts {
        let key = (t.clone(), *i);
        let part = match broker.led_partition(&TopicPartition::new(t.clone(), *i)) {
            Ok(p) => p,
            Err(c) => {
                out.push((key, c));
                continue;
            }
        };
        let b = batch::control_batch(producer_id, epoch, kind, coordinator_epoch, now_ms());
        let headers = match batch::validate_produce(&b, usize::MAX) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "a marker batch is invalid");
                out.push((key, code::UNKNOWN_SERVER_ERROR));
                continue;
            }
        };
        match part.append(&b, &headers) {
            Ok(info) => waits.push((key, part, info.last_offset + 1)),
            Err(crate::Error::InvalidProducerEpoch { .. }) => {
                out.push((key, code::INVALID_PRODUCER_EPOCH));
            }
            Err(e) => {
                tracing::error!(partition = %part.tp, error = %e, "writing a marker");
                out.push((key, code::KAFKA_STORAGE_ERROR));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    for (key, part, end) in waits {
        let c = crate::handlers::produce::wait_for_replicas(broker, &part, end, deadline)
            .await
            .unwrap_or(code::NONE);
        if c == code::NONE && key.0 == OFFSETS_TOPIC {
            let n = broker.ensure_offsets_topic().unwrap_or(1);
            broker.groups.complete_txn(producer_id, commit, |g| {
                offsets_log::partition_for(g, n) == key.1
            });
        }
        out.push((key, c));
    }
    out
}

/// Sends the markers for `parts` to their leader `leader`.
async fn send_markers(
    broker: &Broker,
    leader: i32,
    (producer_id, epoch, commit, coordinator_epoch): Marker,
    parts: &[(String, i32)],
) -> Vec<((String, i32), i16)> {
    let fail = |c: i16| parts.iter().map(|tp| (tp.clone(), c)).collect::<Vec<_>>();
    let mut client =
        match crate::partition::replication::connect_to_broker(broker, leader, WRITE_TIMEOUT).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(leader, error = %e, "sending transaction markers");
                return fail(code::NOT_LEADER_OR_FOLLOWER);
            }
        };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, i) in parts {
        topics.entry(t.as_str()).or_default().push(*i);
    }
    let topics = topics
        .into_iter()
        .map(|(t, ps)| {
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.to_string())))
                .with_partition_indexes(ps)
        })
        .collect();
    let req = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_topics(topics)
            .with_coordinator_epoch(coordinator_epoch),
    ]);
    match client.send(req).await {
        Ok(resp) => resp
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ((t.name.0.to_string(), p.partition_index), p.error_code))
            })
            .collect(),
        Err(e) => {
            tracing::debug!(leader, error = %e, "sending transaction markers");
            fail(code::NOT_LEADER_OR_FOLLOWER)
        }
    }
}

/// Aborts open transactions past their `transaction.timeout.ms`, every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, with the
/// epoch bumped so that their producer is fenced (as Kafka does).
pub async fn run_timeouts(broker: Arc<Broker>) {
    let every = Duration::from_millis(
        broker
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = broker.shutdown.cancelled() => return,
        }
        let now = now_ms();
        for (id, m) in broker.txns.all() {
            if state::timed_out(&m, now) {
                abort_timed_out(&broker, &id).await;
            }
        }
    }
}

async fn abort_timed_out(broker: &Arc<Broker>, id: &str) {
    let lock = broker.txns.lock_for(id);
    let serial = lock.lock().await;
    let Ok((p, part)) = coordinator_of(broker, id) else {
        return;
    };
    let Some(m) = broker.txns.get(id) else {
        return;
    };
    let now = now_ms();
    if !state::timed_out(&m, now) {
        return;
    }
    let next = state::fence_abort(&m, now);
    match persist(broker, &part, id, &next).await {
        Ok(()) => {
            tracing::info!(
                transactional_id = id,
                timeout_ms = m.timeout_ms,
                "aborting a transaction past its timeout"
            );
            broker.txns.set(id, p, next);
            drop(serial);
            spawn_complete(Arc::clone(broker), id.to_string());
        }
        Err(e) => tracing::warn!(
            transactional_id = id,
            error = e,
            "aborting a timed-out transaction"
        ),
    }
}
