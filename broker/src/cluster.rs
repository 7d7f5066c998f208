//! A broker in a cluster: its quorum membership (registration, heartbeats,
//! the controller when its quorum member leads), the cluster id check, and
//! the metadata image that replaces the single-node topic file as the
//! source of truth for topics, partitions and leaders.

use std::sync::Arc;
use std::time::Duration;

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
}

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

impl Cluster {
    /// Joins the quorum and registers. Returns once the cluster id is
    /// settled: the quorum's id if it has one (adopted by a fresh data
    /// directory, refused by one that belongs to another cluster), else
    /// this broker's, proposed to the quorum.
    pub async fn start(
        cfg: &BrokerConfig,
        cc: &ClusterConfig,
        local_cluster_id: &str,
        fresh: bool,
    ) -> Result<(Cluster, String)> {
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
        quorum.source_address = cc.source_address;
        let member = Member::start(MemberConfig {
            quorum,
            broker_id: cfg.node_id,
            kafka_address: format!("{}:{}", cfg.advertised_host, cfg.advertised_port),
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

    /// Reports a broker whose listener refused a connection (see
    /// `sluice_quorum::controller::suspects_to_fence`).
    pub fn suspect(&self, broker: i32) {
        if let Some(m) = self.member.lock().as_ref() {
            m.suspect(broker);
        }
    }

    /// Writes a command through the quorum.
    pub async fn write(&self, cmd: Command) -> Result<Outcome> {
        self.node
            .write(cmd)
            .await
            .map_err(|e| Error::Metadata(format!("metadata quorum: {e}")))
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
