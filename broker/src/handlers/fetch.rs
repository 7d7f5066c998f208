//! Fetch (1): read whole batches from each requested partition, long-poll
//! with `max_wait_ms` / `min_bytes` until enough data arrives.
//!
//! Fetch sessions (KIP-227) are not kept: every response is a full response
//! with `session_id` 0, which the protocol allows and clients accept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use uuid::Uuid;

use super::{code, count_error};
use crate::broker::Broker;
use crate::error::Error;
use crate::partition::replica::{Isolation, Partition, TopicPartition};
use crate::partition::throttle;
use crate::security::acl::{self, Authorizer};

/// One requested partition, resolved.
struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    found: Result<Arc<Partition>, i16>,
    /// A follower fetch for a replica a reassignment is adding: subject to
    /// `leader.replication.throttled.rate`.
    throttled: bool,
}

/// Memory a response holds until it is written: released when dropped.
pub type Held = Option<OwnedSemaphorePermit>;

pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> (FetchResponse, Held) {
    if req.session_id != 0 {
        // We never hand out session ids, so a client cannot hold one.
        count_error(broker, "Fetch", code::FETCH_SESSION_ID_NOT_FOUND);
        return (
            FetchResponse::default().with_error_code(code::FETCH_SESSION_ID_NOT_FOUND),
            None,
        );
    }
    // A follower's fetch (a replica id): it reads up to the log end, and
    // its fetch offset is its progress, which moves the high watermark.
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower = (replica >= 0).then_some(replica);
    // As Kafka: a follower needs CLUSTER_ACTION, a consumer READ on each
    // topic; a refused partition answers TOPIC_AUTHORIZATION_FAILED.
    let replicates = follower.is_none() || authz.cluster(acl::op::CLUSTER_ACTION);
    let by_id = version >= 13;
    let mut topics: Vec<(TopicName, Uuid)> = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = if by_id {
            broker
                .metadata
                .lock()
                .name_of(&t.topic_id)
                .map(str::to_string)
        } else {
            Some(t.topic.0.to_string())
        };
        let topic_id = match &name {
            Some(n) if !by_id => broker
                .metadata
                .lock()
                .get(n)
                .map(|m| m.id)
                .unwrap_or_default(),
            _ => t.topic_id,
        };
        topics.push((t.topic.clone(), topic_id));
        for p in &t.partitions {
            let found = match &name {
                None => Err(code::UNKNOWN_TOPIC_ID),
                Some(n)
                    if !replicates || (follower.is_none() && !authz.topic(acl::op::READ, n)) =>
                {
                    Err(code::TOPIC_AUTHORIZATION_FAILED)
                }
                Some(n) => broker.led_partition(&TopicPartition::new(n.clone(), p.partition)),
            };
            wanted.push(Wanted {
                topic_index: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                found,
                throttled: false,
            });
        }
    }
    let leader_rate =
        follower.and_then(|_| broker.throttle_rate("leader.replication.throttled.rate"));
    if let (Some(f), Some(_)) = (follower, leader_rate) {
        let img = broker.cluster().image();
        for w in &mut wanted {
            if let Ok(p) = &w.found {
                w.throttled = throttle::is_throttled(
                    &img,
                    &p.tp.topic,
                    p.tp.partition,
                    throttle::LEADER_REPLICAS,
                    broker.config.node_id,
                    f,
                );
            }
        }
    }
    let any_throttled = wanted.iter().any(|w| w.throttled);
    if let Some(f) = follower {
        for w in &wanted {
            if let Ok(p) = &w.found {
                if let Some((change, leader_epoch)) = p.on_follower_fetch(f, w.fetch_offset) {
                    crate::partition::replication::propose_isr(broker, p, change, leader_epoch);
                }
            }
        }
    }
    let response_max = (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes as usize);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let read_committed = req.isolation_level == 1;

    // Subscribe before the first read so that no append is missed between
    // reading and waiting.
    let mut watchers: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| {
            w.found.as_ref().ok().map(|p| match follower {
                Some(_) => p.subscribe_log_end(),
                None => p.subscribe(),
            })
        })
        .collect();
    let wait_started = Instant::now();
    let mut waited = false;
    let memory = &broker.fetch_memory;
    let (results, held) = loop {
        for w in &mut watchers {
            w.borrow_and_update();
        }
        let hold_back = any_throttled && !broker.throttles.leader.allows(leader_rate);
        let (results, total, any_error, held) = read_all(
            &wanted,
            response_max,
            read_committed,
            memory,
            follower.is_some(),
            hold_back,
        );
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || watchers.is_empty() {
            break (results, held);
        }
        // Not enough yet: give the memory back while waiting.
        drop(held);
        waited = true;
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = changed => {}
            _ = broker.shutdown.cancelled() => {}
        }
        if broker.shutdown.is_cancelled() {
            let (results, _, _, held) = read_all(
                &wanted,
                response_max,
                read_committed,
                memory,
                follower.is_some(),
                true,
            );
            break (results, held);
        }
    };
    if waited {
        broker
            .metrics
            .fetch_wait
            .observe(wait_started.elapsed().as_secs_f64());
    }

    let mut out: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, id)| {
            FetchableTopicResponse::default()
                .with_topic(if by_id { TopicName::default() } else { name })
                .with_topic_id(id)
        })
        .collect();
    let mut bytes_out = 0u64;
    let mut throttled_out = 0usize;
    for (w, pd) in wanted.iter().zip(results) {
        count_error(broker, "Fetch", pd.error_code);
        let n = pd.records.as_ref().map_or(0, Bytes::len);
        bytes_out += n as u64;
        if w.throttled {
            throttled_out += n;
        }
        out[w.topic_index].partitions.push(pd);
    }
    broker.metrics.bytes_out.inc_by(bytes_out);
    if throttled_out > 0 {
        broker.throttles.leader.spend(leader_rate, throttled_out);
    }
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(out),
        held,
    )
}

/// The record data of a response, for zero-copy encoding.
pub fn record_chunks(resp: &FetchResponse) -> Vec<Bytes> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| !r.is_empty())
        .collect()
}

/// Reads every wanted partition once, within the broker's fetch memory
/// budget. Returns the partition answers, the record bytes gathered,
/// whether any partition answered an error, and the memory they hold.
fn read_all(
    wanted: &[Wanted],
    response_max: usize,
    read_committed: bool,
    memory: &Arc<Semaphore>,
    to_end: bool,
    hold_back_throttled: bool,
) -> (Vec<PartitionData>, usize, bool, Held) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut held: Held = None;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        if w.throttled && hold_back_throttled {
            // Over the replication throttle: this replica gets nothing this
            // round, with the offsets it needs to stay informed.
            let pd = match &w.found {
                Ok(p) => {
                    let o = p.offsets();
                    PartitionData::default()
                        .with_partition_index(w.partition)
                        .with_records(Some(Bytes::new()))
                        .with_high_watermark(o.high_watermark)
                        .with_last_stable_offset(o.last_stable)
                        .with_log_start_offset(o.log_start)
                }
                Err(c) => PartitionData::default()
                    .with_partition_index(w.partition)
                    .with_error_code(*c)
                    .with_high_watermark(-1),
            };
            out.push(pd);
            continue;
        }
        let pd = read_one(
            w,
            response_max.saturating_sub(total),
            total == 0,
            read_committed,
            memory,
            &mut held,
            to_end,
        );
        if pd.error_code != code::NONE {
            any_error = true;
        }
        total += pd.records.as_ref().map_or(0, Bytes::len);
        out.push(pd);
    }
    (out, total, any_error, held)
}

const KIB: usize = 1024;

fn read_one(
    w: &Wanted,
    budget: usize,
    first: bool,
    read_committed: bool,
    memory: &Arc<Semaphore>,
    held: &mut Held,
    to_end: bool,
) -> PartitionData {
    let isolation = if read_committed {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let base = PartitionData::default()
        .with_partition_index(w.partition)
        .with_records(Some(Bytes::new()))
        .with_aborted_transactions(read_committed.then(Vec::new));
    // As Kafka answers an errored partition: offsets unknown (-1); a topic
    // or partition it does not know or may not read (found before any
    // read) also gets an empty list of aborted transactions.
    let failed = |c: i16| {
        let pd = base
            .clone()
            .with_error_code(c)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1);
        if matches!(
            c,
            code::UNKNOWN_TOPIC_OR_PARTITION
                | code::UNKNOWN_TOPIC_ID
                | code::TOPIC_AUTHORIZATION_FAILED
        ) {
            pd.with_aborted_transactions(Some(Vec::new()))
        } else {
            pd
        }
    };
    let partition = match &w.found {
        Ok(p) => p,
        Err(c) => return failed(*c),
    };
    if w.current_leader_epoch >= 0 && w.current_leader_epoch != partition.leader_epoch() {
        let c = if w.current_leader_epoch < partition.leader_epoch() {
            code::FENCED_LEADER_EPOCH
        } else {
            code::UNKNOWN_LEADER_EPOCH
        };
        return failed(c);
    }
    let with_offsets = |pd: PartitionData, o: crate::partition::replica::Offsets| {
        pd.with_high_watermark(o.high_watermark)
            .with_last_stable_offset(o.last_stable)
            .with_log_start_offset(o.log_start)
    };
    let planned = if to_end {
        partition
            .plan_read_to_end(w.fetch_offset)
            .map(|(plan, o)| (plan, o, Vec::new()))
    } else {
        partition.plan_read(w.fetch_offset, isolation)
    };
    match planned {
        Ok((None, offsets, _)) => with_offsets(base, offsets),
        Ok((Some(plan), offsets, aborted)) => {
            let base = if read_committed {
                base.clone().with_aborted_transactions(Some(
                    aborted
                        .into_iter()
                        .map(|(pid, first)| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(pid))
                                .with_first_offset(first)
                        })
                        .collect(),
                ))
            } else {
                base.clone()
            };
            // The first batch of the response is returned whole even when it
            // is larger than the limits, or the consumer could never progress.
            let limit = w.max_bytes.min(budget);
            if !first && plan.first_batch_size() > limit {
                return with_offsets(base, offsets);
            }
            // Reserve the memory this read may take; when the broker-wide
            // budget is used up, the partition is skipped this round and
            // the client fetches it again.
            let want = limit.min(plan.available()).max(plan.first_batch_size());
            let Ok(mut permit) =
                Arc::clone(memory).try_acquire_many_owned(want.div_ceil(KIB) as u32)
            else {
                return with_offsets(base, offsets);
            };
            match plan.execute(limit) {
                Ok(data) => {
                    let used = data.records.len().div_ceil(KIB);
                    drop(permit.split(permit.num_permits().saturating_sub(used)));
                    match held {
                        Some(h) => h.merge(permit),
                        None => *held = Some(permit),
                    }
                    with_offsets(base.with_records(Some(data.records)), offsets)
                }
                Err(e) => {
                    tracing::error!(partition = %partition.tp, error = %e, "read failed");
                    failed(code::KAFKA_STORAGE_ERROR)
                }
            }
        }
        // A consumer gets Kafka's -1 offsets (it resets by ListOffsets); a
        // follower of ours gets the leader's offsets, and restarts its log
        // at the leader's log start when it is behind it.
        Err(Error::OffsetOutOfRange { .. }) if to_end => with_offsets(
            base.with_error_code(code::OFFSET_OUT_OF_RANGE),
            partition.offsets(),
        ),
        Err(Error::OffsetOutOfRange { .. }) => failed(code::OFFSET_OUT_OF_RANGE),
        Err(e) => {
            tracing::error!(partition = %partition.tp, error = %e, "read failed");
            failed(code::KAFKA_STORAGE_ERROR)
        }
    }
}
