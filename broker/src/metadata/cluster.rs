//! A broker in a cluster: its quorum membership (registration, heartbeats,
//! the controller when its quorum member leads), the cluster id check, and
//! the metadata image that replaces the single-node topic file as the
//! source of truth for topics, partitions and leaders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_quorum::image::{Command, MetadataImage, Outcome, PartitionState};
use sluice_quorum::{Member, MemberConfig, QuorumConfig, QuorumNode};

use crate::config::{BrokerConfig, ClusterConfig};
use crate::error::{Error, Result};

/// The broker's view of and handle on the cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub node_id: i32,
    /// The cluster id, as settled with the quorum at start.
    pub cluster_id: String,
    node: Arc<QuorumNode>,
    member: parking_lot::Mutex<Option<Member>>,
    /// Leaders a Metadata answer waited for in vain, and when: the
    /// controller kept them, so answers do not wait for them again soon.
    kept_leaders: parking_lot::Mutex<HashMap<i32, Instant>>,
    fenced_seen: parking_lot::Mutex<FencedSeen>,
}

/// Brokers seen live, by registration epoch, and when each was first seen
/// fenced since. Metadata answers keep listing a broker for five seconds
/// after it was fenced. A client told in one answer that a partition moved
/// *and* that its old leader is gone can lose the move: librdkafka (2.10
/// and later) retires a broker missing from an answer, and retiring it
/// hands the partitions it still holds to no broker, to be looked up again
/// on the next once-a-second scan. Listed a little longer, the old leader
/// is retired only after the client has moved its partitions away
/// (decision 0020). Its partitions name live leaders either way; a
/// registered broker never seen live is not listed.
#[derive(Debug, Default)]
pub struct FencedSeen(HashMap<i32, (u64, Option<Instant>)>);

impl FencedSeen {
    /// Notes, from a new image, brokers seen live and brokers newly fenced.
    pub fn note(&mut self, img: &MetadataImage, now: Instant) {
        self.0
            .retain(|id, (epoch, _)| img.brokers.get(id).is_some_and(|b| b.epoch == *epoch));
        for b in img.brokers.values() {
            match (b.fenced, self.0.get_mut(&b.id)) {
                (false, _) => {
                    self.0.insert(b.id, (b.epoch, None));
                }
                (true, Some((_, at @ None))) => *at = Some(now),
                (true, _) => {}
            }
        }
    }

    /// Fenced brokers of `img` still to be listed at `now`.
    pub fn listed(&self, img: &MetadataImage, now: Instant) -> BTreeSet<i32> {
        img.brokers
            .values()
            .filter(|b| b.fenced)
            .filter(|b| {
                self.0.get(&b.id).is_some_and(|(epoch, at)| {
                    *epoch == b.epoch
                        && at.is_some_and(|t| now.duration_since(t) < FENCED_LISTED_FOR)
                })
            })
            .map(|b| b.id)
            .collect()
    }
}

/// How long Metadata answers keep listing a broker after it was fenced.
const FENCED_LISTED_FOR: Duration = Duration::from_secs(5);

/// How long a probe may wait for a connection: a live peer on a healthy
/// network accepts far sooner, a dead one refuses at once.
const PROBE_TIMEOUT: Duration = Duration::from_millis(20);
/// How long Metadata answers do not wait again for a leader the
/// controller kept (see [`Cluster::found_gone`]).
const KEPT_LEADER_TTL: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// Where the quorum keeps its log: beside the partitions, as Kafka's
/// `__cluster_metadata-0`.
pub const METADATA_DIR: &str = "__cluster_metadata";

/// How long a write waits for the quorum to commit it when its caller
/// gives no limit of its own: Kafka's default request timeout.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Joins the quorum and registers. Returns once the cluster id is
    /// settled: the quorum's id if it has one (adopted by a fresh data
    /// directory, refused by one that belongs to another cluster), else
    /// this broker's, proposed to the quorum.
    pub async fn start(
        cfg: &BrokerConfig,
        security: &crate::security::Security,
        local_cluster_id: &str,
        fresh: bool,
    ) -> Result<(Cluster, String)> {
        let cc = &cfg.cluster;
        let voters = cc
            .voters
            .iter()
            .map(|(id, a)| (*id as u64, a.clone()))
            .collect();
        let mut quorum = QuorumConfig::new(
            cfg.node_id as u64,
            cfg.data_dir.join(METADATA_DIR),
            cc.internal_listener,
            voters,
        );
        quorum.dialer.source = cc.source_address;
        if let Some(tls) = &security.quorum_tls {
            let tls = crate::security::tls::QuorumTls::new(Arc::clone(tls))?;
            quorum.dialer.tls = Some(Arc::new(tls));
        }
        quorum.election_timeout_max = Duration::from_millis(cc.election_timeout_ms);
        quorum.election_timeout_min = Duration::from_millis(cc.election_timeout_ms / 2);
        let member = Member::start(MemberConfig {
            quorum,
            broker_id: cfg.node_id,
            kafka_address: cfg.listeners.inter_broker().advertised(),
            listeners: cfg.listeners.advertised(),
            internal_address: cc.internal_advertised.clone(),
            rack: cfg.rack.clone(),
            heartbeat_interval: Duration::from_millis(cc.heartbeat_interval_ms),
            session_timeout: Duration::from_millis(cc.session_timeout_ms),
        })
        .await
        .map_err(|e| Error::Metadata(format!("joining the metadata quorum: {e}")))?;
        let node = member.node_arc();
        let id = settle_cluster_id(&node, local_cluster_id, fresh).await?;
        let cluster = Cluster {
            config: cc.clone(),
            node_id: cfg.node_id,
            cluster_id: id.clone(),
            node,
            member: parking_lot::Mutex::new(Some(member)),
            kept_leaders: parking_lot::Mutex::default(),
            fenced_seen: parking_lot::Mutex::default(),
        };
        Ok((cluster, id))
    }
}

async fn settle_cluster_id(node: &QuorumNode, local: &str, fresh: bool) -> Result<String> {
    let mut image = node.subscribe();
    loop {
        let known = image.borrow().cluster_id.clone();
        match known {
            Some(id) if id == local => return Ok(id),
            Some(id) if fresh => {
                tracing::info!(cluster_id = %id, "joining the quorum's cluster");
                return Ok(id);
            }
            Some(id) => {
                return Err(Error::config(
                    "log.dirs",
                    format!(
                        "this data directory belongs to cluster {local}, but the metadata quorum is cluster {id}"
                    ),
                ));
            }
            None => {
                // Propose ours; whichever proposal commits first wins.
                match node
                    .write(Command::InitCluster {
                        cluster_id: local.to_string(),
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster id: no quorum leader yet");
                        let _ =
                            tokio::time::timeout(Duration::from_millis(200), image.changed()).await;
                    }
                }
            }
        }
    }
}

impl Cluster {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.node.image()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<MetadataImage>> {
        self.node.subscribe()
    }

    /// The quorum's voters now, broker id -> internal address.
    pub fn voters(&self) -> BTreeMap<i32, String> {
        self.node
            .current_voters()
            .iter()
            .map(|(id, a)| (*id as i32, a.clone()))
            .collect()
    }

    /// The quorum as its leader describes it; `None` while none answers.
    pub async fn describe_quorum(&self) -> Option<sluice_quorum::voters::QuorumDescription> {
        self.node.describe().await
    }

    /// Adds or removes a quorum voter (on the leader).
    pub async fn change_voters(
        &self,
        change: sluice_quorum::voters::VoterChange,
    ) -> sluice_quorum::voters::ChangeReply {
        self.node.change_voters(change).await
    }

    /// Where this broker's internal (quorum) listener is bound.
    pub fn internal_address(&self) -> std::net::SocketAddr {
        self.node.local_addr()
    }

    /// The controller (quorum leader) as a broker id.
    pub fn controller_id(&self) -> Option<i32> {
        self.node.leader().map(|l| l as i32)
    }

    /// Whether `img` shows this process registered and unfenced: the
    /// controller unfences a broker only once it has caught up on the
    /// metadata, so such an image is no older than this broker's start.
    pub fn caught_up_in(&self, img: &MetadataImage) -> bool {
        let epoch = self.member.lock().as_ref().and_then(Member::epoch);
        epoch.is_some_and(|e| {
            img.brokers
                .get(&self.node_id)
                .is_some_and(|b| b.epoch == e && !b.fenced)
        })
    }

    /// Returns once this process is registered and unfenced in the
    /// metadata it follows (see [`Cluster::caught_up_in`]): the point where
    /// Kafka starts processing client requests. Logs while it waits.
    pub async fn wait_caught_up(&self) {
        let started = std::time::Instant::now();
        let mut next_log = Duration::from_secs(5);
        let mut image = self.subscribe();
        loop {
            let img = image.borrow_and_update().clone();
            if self.caught_up_in(&img) {
                return;
            }
            if started.elapsed() >= next_log {
                tracing::info!(
                    waited_s = started.elapsed().as_secs(),
                    controller = ?self.controller_id(),
                    "waiting to be registered and unfenced by the metadata quorum before serving clients"
                );
                next_log += Duration::from_secs(10);
            }
            // The registration epoch is set outside the image: look again
            // on a timer as well as on every image change.
            let _ = tokio::time::timeout(Duration::from_millis(50), image.changed()).await;
        }
    }

    /// Reports a broker whose listener refused a connection (see
    /// `sluice_quorum::controller::suspects_to_fence`).
    pub fn suspect(&self, broker: i32) {
        if let Some(m) = self.member.lock().as_ref() {
            m.suspect(broker);
        }
    }

    /// Follows fencing in each new image (see [`Cluster::recently_fenced`]).
    pub fn note_fencing(&self, img: &MetadataImage) {
        self.fenced_seen.lock().note(img, Instant::now());
    }

    /// Fenced brokers that Metadata answers still list (see [`FencedSeen`]).
    pub fn recently_fenced(&self, img: &MetadataImage) -> BTreeSet<i32> {
        self.fenced_seen.lock().listed(img, Instant::now())
    }

    /// A peer answered again (see [`Cluster::suspect`]).
    pub fn unsuspect(&self, broker: i32) {
        if let Some(m) = self.member.lock().as_ref() {
            m.unsuspect(broker);
        }
    }

    /// Of `peers`, those found gone and not kept by the controller lately
    /// (see [`Cluster::leader_kept`]): reported by this broker's replica
    /// fetchers, or whose internal listener refuses a connection now
    /// (nothing listens: the process is not there). A probe waits at most
    /// 20 ms, and a peer that does not answer in time (paused, cut off) is
    /// not called gone. A refusal is recorded as this broker's suspicion
    /// (reported to the controller like a fetcher's), which later calls
    /// find without probing.
    pub async fn found_gone(&self, peers: &BTreeSet<i32>) -> BTreeSet<i32> {
        let suspected = self
            .member
            .lock()
            .as_ref()
            .map(Member::suspected)
            .unwrap_or_default();
        let kept: BTreeSet<i32> = {
            let mut k = self.kept_leaders.lock();
            k.retain(|_, at| at.elapsed() < KEPT_LEADER_TTL);
            k.keys().copied().collect()
        };
        let img = self.image();
        let mut gone = BTreeSet::new();
        let mut probes = Vec::new();
        for id in peers {
            if *id == self.node_id || kept.contains(id) {
                continue;
            }
            if suspected.contains(id) {
                gone.insert(*id);
            } else if let Some(b) = img.brokers.get(id) {
                // Probed afresh each time: an answer from just before a
                // crash must not hide it from the client asking right
                // after. A refusal is remembered as a suspicion (above).
                probes.push((*id, b.internal_address.clone()));
            }
        }
        let results = futures::future::join_all(probes.into_iter().map(|(id, addr)| async move {
            let refused = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
            );
            (id, refused)
        }))
        .await;
        for (id, refused) in results {
            if refused {
                self.suspect(id);
                gone.insert(id);
            }
        }
        gone
    }

    /// A Metadata answer waited for the controller to move `leaders`'
    /// leaderships, and it did not: they are alive as far as it knows.
    pub fn leader_kept(&self, leaders: &BTreeSet<i32>) {
        let now = Instant::now();
        let mut k = self.kept_leaders.lock();
        for id in leaders {
            k.insert(*id, now);
        }
    }

    /// Writes a command through the quorum, waiting up to
    /// [`WRITE_TIMEOUT`] for it to commit.
    pub async fn write(&self, cmd: Command) -> Result<Outcome> {
        self.write_within(cmd, WRITE_TIMEOUT).await
    }

    /// Writes a command through the quorum, waiting up to `limit` for it
    /// to commit (a client's request timeout): past it the caller answers,
    /// and says so in the log, rather than leave its client waiting.
    pub async fn write_within(&self, cmd: Command, limit: Duration) -> Result<Outcome> {
        let what = cmd.kind();
        match tokio::time::timeout(limit, self.node.write(cmd)).await {
            Ok(r) => r.map_err(|e| Error::Metadata(format!("metadata quorum: {e}"))),
            Err(_) => {
                tracing::warn!(
                    what,
                    waited_ms = limit.as_millis() as u64,
                    controller = ?self.controller_id(),
                    "a metadata quorum write was not committed in time"
                );
                Err(Error::QuorumTimeout {
                    what,
                    after_ms: limit.as_millis() as u64,
                })
            }
        }
    }

    /// A partition's state in the image.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionState> {
        let img = self.image();
        let t = img.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
    }

    /// Controlled shutdown: hand leaderships away, then leave the quorum.
    pub async fn shutdown(&self, timeout: Duration) {
        let Some(member) = self.member.lock().take() else {
            return;
        };
        let left = member.shutdown(timeout).await;
        if left > 0 {
            tracing::warn!(
                partitions = left,
                "controlled shutdown: partitions left without another in-sync replica"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_quorum::image::BrokerRegistration;

    fn image(brokers: &[(i32, u64, bool)]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for (id, epoch, fenced) in brokers {
            img.brokers.insert(
                *id,
                BrokerRegistration {
                    id: *id,
                    epoch: *epoch,
                    incarnation: *epoch,
                    kafka_address: format!("127.0.0.1:{}", 9092 + id),
                    listeners: Default::default(),
                    internal_address: format!("127.0.0.1:{}", 9192 + id),
                    rack: None,
                    directory_id: Default::default(),
                    fenced: *fenced,
                },
            );
        }
        img
    }

    #[test]
    fn a_fenced_broker_stays_listed_for_a_while_only_if_it_was_seen_live() {
        let t0 = Instant::now();
        let mut seen = FencedSeen::default();
        // Broker 2 registered but never unfenced: not listed.
        seen.note(&image(&[(1, 1, false), (2, 1, true)]), t0);
        let fenced = image(&[(1, 1, true), (2, 1, true)]);
        assert!(seen.listed(&fenced, t0).is_empty());
        // Broker 1 fenced after being live: listed for five seconds.
        seen.note(&fenced, t0);
        assert_eq!(seen.listed(&fenced, t0), BTreeSet::from([1]));
        let later = t0 + Duration::from_millis(4900);
        seen.note(&fenced, later);
        assert_eq!(seen.listed(&fenced, later), BTreeSet::from([1]));
        assert!(seen.listed(&fenced, t0 + FENCED_LISTED_FOR).is_empty());
        // A new incarnation registered (fenced until its first heartbeat)
        // is a broker never seen live.
        let again = image(&[(1, 2, true), (2, 1, true)]);
        seen.note(&again, later);
        assert!(seen.listed(&again, later).is_empty());
    }
}
