//! Replication in the broker: followers fetch from their leaders over the
//! Kafka protocol (Fetch with a replica id, after OffsetForLeaderEpoch to
//! find where to truncate), leaders track them (`sluice_replication`'s
//! state machines inside each partition) and propose ISR changes to the
//! controller through the metadata quorum.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::AdminClient;
use sluice_quorum::image::{Command, Outcome};
use sluice_replication::epochs::{EpochCache, EpochEnd};
use sluice_replication::follower;
use sluice_replication::leader::IsrChange;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::partition::replica::{Partition, Role};
use crate::partition::throttle;
use crate::protocol::code::OFFSET_OUT_OF_RANGE;
use crate::storage::batch;

/// The Fetch version followers send: topics by name, `replica_id` in the
/// request body.
const REPLICA_FETCH_VERSION: i16 = 12;

/// Sends an ISR change the leader's state machine asked for to the
/// controller; a refused change (stale partition epoch) is forgotten and
/// proposed again from the next metadata.
pub fn propose_isr(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    change: IsrChange,
    leader_epoch: i32,
) {
    let cluster = Arc::clone(broker.cluster());
    let partition = Arc::clone(partition);
    let me = broker.config.node_id;
    tokio::spawn(async move {
        let cmd = Command::ChangePartition {
            topic: partition.tp.topic.clone(),
            partition: partition.tp.partition,
            expected_partition_epoch: change.partition_epoch,
            leader: me,
            isr: change.isr.clone(),
        };
        let accepted = matches!(cluster.write(cmd).await, Ok(Outcome::Ok));
        if accepted {
            tracing::info!(partition = %partition.tp, isr = ?change.isr, leader_epoch, "ISR changed");
        } else {
            partition.with_role(|r| {
                if let Role::Leader(s) = r {
                    if s.leader_epoch == leader_epoch {
                        s.on_isr_refused();
                    }
                }
            });
        }
    });
}

/// Shrinks ISRs of followers that stopped catching up, every 100 ms
/// while this broker leads a partition with another replica; otherwise
/// (a lone broker, RF 1 only) it waits for the partition roles to change.
pub async fn run_isr_ticker(broker: Arc<Broker>) {
    // Subscribed before the first look, so no change is missed.
    let mut roles = broker.roles.subscribe();
    let mut timed = false;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = broker.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)), if timed => {}
                changed = roles.changed() => if changed.is_err() { return },
            }
        }
        first = false;
        let now = crate::storage::log::now_ms() as u64;
        timed = false;
        for p in broker.replicas.all() {
            let proposal = p.with_role(|r| match r {
                Role::Leader(s) => {
                    timed |= s.replicas.len() > 1;
                    s.tick(now).map(|c| (c, s.leader_epoch))
                }
                _ => None,
            });
            if let Some((change, epoch)) = proposal {
                propose_isr(&broker, &p, change, epoch);
            }
        }
    }
}

/// Keeps one fetcher per leader this broker follows.
pub async fn run_fetchers(broker: Arc<Broker>) {
    let mut fetchers: HashMap<i32, JoinHandle<()>> = HashMap::new();
    // Subscribed before the first look, so no change is missed.
    let mut roles = broker.roles.subscribe();
    let mut first = true;
    loop {
        // Every 50 ms while it follows a leader (a fetcher that ended is
        // started again); a broker that follows nobody waits for the
        // partition roles to change.
        let timed = !fetchers.is_empty();
        if !first {
            tokio::select! {
                _ = broker.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)), if timed => {}
                changed = roles.changed() => if changed.is_err() { break },
            }
        }
        first = false;
        fetchers.retain(|_, h| !h.is_finished());
        for leader in followed_leaders(&broker) {
            fetchers
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetch_from(Arc::clone(&broker), leader)));
        }
    }
    for (_, h) in fetchers {
        h.abort();
    }
}

fn followed_leaders(broker: &Broker) -> Vec<i32> {
    let mut out: Vec<i32> = broker
        .replicas
        .all()
        .iter()
        .filter_map(|p| {
            p.with_role(|r| match r {
                Role::Follower { leader, .. } => Some(*leader),
                _ => None,
            })
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `(partition, leader epoch, truncated)` of every partition following
/// `leader`.
fn following(broker: &Broker, leader: i32) -> Vec<(Arc<Partition>, i32, bool)> {
    broker
        .replicas
        .all()
        .into_iter()
        .filter_map(|p| {
            let r = p.with_role(|r| match r {
                Role::Follower {
                    leader: l,
                    leader_epoch,
                    truncated,
                } if *l == leader => Some((*leader_epoch, *truncated)),
                _ => None,
            });
            r.map(|(e, t)| (p, e, t))
        })
        .collect()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The TLS a connection to another broker's inter-broker listener needs:
/// none for a plaintext listener, else this broker's client config
/// (presenting its certificate: the peer may require one).
pub(crate) fn inter_broker_tls(
    broker: &Broker,
) -> Result<Option<sluice_client::TlsConfig>, String> {
    let inter = broker.config.listeners.inter_broker();
    match inter.protocol {
        crate::config::SecurityProtocol::Ssl => {
            match broker.security.tls.as_ref().and_then(|t| t.connector()) {
                Some(c) => Ok(Some(c)),
                None => Err(format!(
                    "inter.broker.listener.name ({}) is an SSL listener and ssl.truststore.location is not set, so the other broker's certificate cannot be verified",
                    inter.name
                )),
            }
        }
        _ => Ok(None),
    }
}

/// Connects to broker `id`'s inter-broker listener.
pub(crate) async fn connect_to_broker(
    broker: &Broker,
    id: i32,
    timeout: Duration,
) -> Result<AdminClient, String> {
    let address = broker
        .cluster()
        .image()
        .brokers
        .get(&id)
        .map(|b| b.kafka_address.clone())
        .ok_or_else(|| format!("broker {id} is not registered"))?;
    let tls = inter_broker_tls(broker)?;
    AdminClient::connect_with(&address, broker.config.cluster.source_address, tls, timeout)
        .await
        .map_err(|e| format!("connecting to broker {id} at {address}: {e}"))
}

/// Fetches from `leader` while this broker follows it for some partition.
async fn fetch_from(broker: Arc<Broker>, leader: i32) {
    let cluster = Arc::clone(broker.cluster());
    let wait_ms = broker.config.cluster.replica_fetch_wait_max_ms;
    let mut client: Option<AdminClient> = None;
    // When the last round failed: a broken connection is retried at once
    // (a leader that is gone refuses it, and is suspected within a
    // millisecond, before clients ask who leads now), a second failure in
    // a row after a pause.
    let mut failed_at: Option<std::time::Instant> = None;
    loop {
        if broker.shutdown.is_cancelled() {
            return;
        }
        let parts = following(&broker, leader);
        if parts.is_empty() {
            return;
        }
        if client.is_none() {
            let Some(address) = cluster
                .image()
                .brokers
                .get(&leader)
                .map(|b| b.kafka_address.clone())
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let source = broker.config.cluster.source_address;
            let tls = match inter_broker_tls(&broker) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(leader, "cannot follow: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        () = broker.shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            let timeout = Duration::from_millis(wait_ms + 5000);
            match AdminClient::connect_with(&address, source, tls, timeout).await {
                Ok(c) => {
                    cluster.unsuspect(leader);
                    client = Some(c);
                }
                Err(e) => {
                    // Nothing listens where the leader was: it is gone (a
                    // paused or cut-off broker does not refuse). The
                    // controller fences it as soon as its heartbeats have
                    // stopped too, instead of after a whole session.
                    if let sluice_client::AdminError::Connect { source, .. } = &e {
                        if source.kind() == std::io::ErrorKind::ConnectionRefused {
                            cluster.suspect(leader);
                        }
                    }
                    tracing::debug!(leader, error = %e, "replica fetcher: connecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let result = round(&broker, c, leader, &parts, wait_ms).await;
        if let Err(e) = result {
            tracing::debug!(leader, error = %e, "replica fetcher");
            client = None;
            if failed_at.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failed_at = Some(std::time::Instant::now());
        }
    }
}

/// One round: truncate what needs it, then fetch the rest.
async fn round(
    broker: &Broker,
    client: &mut AdminClient,
    leader: i32,
    parts: &[(Arc<Partition>, i32, bool)],
    wait_ms: u64,
) -> Result<(), sluice_client::AdminError> {
    let (untruncated, ready): (Vec<_>, Vec<_>) = parts.iter().partition(|(_, _, t)| !*t);
    if !untruncated.is_empty() {
        truncate(client, leader, &untruncated).await?;
    }
    if ready.is_empty() {
        return Ok(());
    }
    // Replicas this broker is adding (a reassignment), or that a topic
    // lists as throttled while out of sync, fetch under the follower
    // throttle; while it is used up they sit this round out.
    let rate = broker.throttle_rate("follower.replication.throttled.rate");
    let throttled_parts: Vec<(String, i32)> = match rate {
        Some(_) => {
            let img = broker.cluster().image();
            let me = broker.config.node_id;
            ready
                .iter()
                .filter(|(p, _, _)| {
                    throttle::is_throttled(
                        &img,
                        &p.tp.topic,
                        p.tp.partition,
                        throttle::FOLLOWER_REPLICAS,
                        me,
                        me,
                    )
                })
                .map(|(p, _, _)| (p.tp.topic.clone(), p.tp.partition))
                .collect()
        }
        _ => Vec::new(),
    };
    let hold_back = !throttled_parts.is_empty() && !broker.throttles.follower.allows(rate);
    let mut by_topic: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    let mut index: HashMap<(String, i32), (Arc<Partition>, i32)> = HashMap::new();
    for (p, epoch, _) in &ready {
        let key = (p.tp.topic.clone(), p.tp.partition);
        let throttled = throttled_parts.contains(&key);
        if throttled && hold_back {
            continue;
        }
        let leo = p.offsets().log_end;
        let max_bytes = if throttled {
            throttle::Throttle::partition_max_bytes(rate, 1 << 20)
        } else {
            1 << 20
        };
        by_topic.entry(p.tp.topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(p.tp.partition)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(leo)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes),
        );
        index.insert(key, (Arc::clone(p), *epoch));
    }
    if by_topic.is_empty() {
        // Everything is held back by the throttle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_max_wait_ms(wait_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(topic_name(&t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = client.send_version(req, REPLICA_FETCH_VERSION).await?;
    for t in resp.responses {
        let name = t.topic.0.to_string();
        for pd in t.partitions {
            let Some((p, epoch)) = index.get(&(name.clone(), pd.partition_index)) else {
                continue;
            };
            let epoch = *epoch;
            let leo = p.offsets().log_end;
            if pd.error_code == OFFSET_OUT_OF_RANGE && pd.log_start_offset > leo {
                // The leader no longer has what this replica needs next
                // (retention, DeleteRecords): start over at its log start,
                // as a Kafka follower does.
                tracing::info!(partition = %p.tp, from = leo, to = pd.log_start_offset, "restarting the log at the leader's log start");
                let still_following =
                    |r: &Role| crate::partition::replica::follows(r, leader, epoch);
                if let Err(e) = p.reset_log(pd.log_start_offset, still_following) {
                    tracing::warn!(partition = %p.tp, error = %e, "restarting the log");
                }
                continue;
            }
            if pd.error_code != 0 {
                // Leadership moved or the epoch is stale: the metadata will
                // say where to go next.
                tracing::debug!(partition = %p.tp, error = pd.error_code, "replica fetch refused");
                continue;
            }
            let records = pd.records.unwrap_or_default();
            if throttled_parts.contains(&(name.clone(), pd.partition_index)) {
                broker.throttles.follower.spend(rate, records.len());
            }
            let mut headers = Vec::new();
            let mut pos = 0;
            while pos < records.len() {
                match batch::validate_batch(&records[pos..]) {
                    Ok(h) => {
                        pos += h.size;
                        headers.push(h);
                    }
                    // A partial last batch: fetched again next round.
                    Err(_) => break,
                }
            }
            // Appended only while this replica still follows `leader` at
            // `epoch`: leadership may have moved while the fetch was out.
            if let Err(e) =
                p.append_replicated(leader, epoch, &records[..pos], &headers, pd.high_watermark)
            {
                tracing::warn!(partition = %p.tp, error = %e, "appending replicated batches");
                // Out of line with the leader: find the divergence again.
                p.with_role(|r| {
                    if let Role::Follower {
                        truncated,
                        leader_epoch,
                        ..
                    } = r
                    {
                        if *leader_epoch == epoch {
                            *truncated = false;
                        }
                    }
                });
            }
        }
    }
    Ok(())
}

/// Asks the leader where each partition's last shared epoch ends, and cuts
/// the local log there.
async fn truncate(
    client: &mut AdminClient,
    leader: i32,
    parts: &[&(Arc<Partition>, i32, bool)],
) -> Result<(), sluice_client::AdminError> {
    let mut by_topic: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    let mut index: HashMap<(String, i32), (Arc<Partition>, i32)> = HashMap::new();
    for (p, epoch, _) in parts {
        let latest = p.with_log(|l| l.latest_epoch());
        let Some(latest) = latest else {
            // An empty log has nothing to cut.
            let _ = p.truncate_for_leader(leader, *epoch, 0);
            continue;
        };
        by_topic.entry(p.tp.topic.clone()).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(p.tp.partition)
                .with_current_leader_epoch(*epoch)
                .with_leader_epoch(latest),
        );
        index.insert(
            (p.tp.topic.clone(), p.tp.partition),
            (Arc::clone(p), *epoch),
        );
    }
    if by_topic.is_empty() {
        return Ok(());
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-2))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name(&t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = client.send(req).await?;
    for t in resp.topics {
        let name = t.topic.0.to_string();
        for e in t.partitions {
            let Some((p, epoch)) = index.get(&(name.clone(), e.partition)) else {
                continue;
            };
            if e.error_code != 0 {
                continue;
            }
            let answer = (e.leader_epoch >= 0).then_some(EpochEnd {
                epoch: e.leader_epoch,
                end_offset: e.end_offset,
            });
            let (ours, leo, start) = p.with_log(|l| {
                (
                    EpochCache::from_entries(l.leader_epochs().entries().to_vec()),
                    l.log_end_offset(),
                    l.log_start_offset(),
                )
            });
            let to = follower::truncation_offset(&ours, leo, answer, start);
            match p.truncate_for_leader(leader, *epoch, to) {
                Ok(true) if to < leo => {
                    tracing::info!(partition = %p.tp, from = leo, to, "truncated to the leader's epoch boundary");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(partition = %p.tp, error = %err, "truncating"),
            }
        }
    }
    Ok(())
}
