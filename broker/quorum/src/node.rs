//! A quorum member: the Raft node with its log and state machine on disk,
//! the tonic service on the internal listener, and writes that reach the
//! leader from any member.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::image::{Command, MetadataImage, Outcome};
use crate::log_store::LogStore;
use crate::network::{self, Network, decode, encode};
use crate::pb::Payload;
use crate::pb::quorum_server::{Quorum, QuorumServer};
use crate::state_machine::StateMachine;
use crate::types::{Node, NodeId, Raft};

/// How a member runs.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// Where the log, vote and snapshots live.
    pub dir: PathBuf,
    /// The internal listener to bind.
    pub listen: SocketAddr,
    /// The voters, id -> internal `host:port`. A member that is not among
    /// them joins as an observer (learner) when a voter adds it.
    pub voters: BTreeMap<NodeId, String>,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

impl QuorumConfig {
    /// Defaults for a member: 50 ms heartbeats, elections after 300-600 ms
    /// of silence (a dead controller is replaced in well under a second).
    pub fn new(
        node_id: NodeId,
        dir: PathBuf,
        listen: SocketAddr,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        QuorumConfig {
            node_id,
            dir,
            listen,
            voters,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            snapshot_every: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("quorum storage in {dir}: {source}")]
    Storage {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("Raft: {0}")]
    Raft(String),
    #[error("binding the internal listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no quorum leader is known yet")]
    NoLeader,
    #[error("forwarding to the quorum leader at {address}: {message}")]
    Forward { address: String, message: String },
}

/// A write as sent between members.
#[derive(Debug, Serialize, Deserialize)]
struct WriteRequest {
    command: Command,
    /// Set by the member that forwarded it: the receiver does not forward
    /// again (no loops while leadership moves).
    forwarded: bool,
}

#[derive(Debug, Serialize, Deserialize)]
enum WriteReply {
    Done(Outcome),
    NotLeader { leader: Option<NodeId> },
    Failed(String),
}

/// The tonic service; shares the Raft handle with the node.
struct Service {
    raft: Raft,
}

fn bad_request(e: serde_json::Error) -> tonic::Status {
    tonic::Status::invalid_argument(format!("undecodable payload: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<tonic::Response<Payload>, tonic::Status> {
    encode(v)
        .map(tonic::Response::new)
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

/// Writes through the local Raft node, forwarding to the leader once when
/// this member is not it.
async fn write(raft: &Raft, command: Command, forwarded: bool) -> WriteReply {
    match raft.client_write(command.clone()).await {
        Ok(r) => WriteReply::Done(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            let (Some(leader), Some(node), false) = (f.leader_id, f.leader_node.clone(), forwarded)
            else {
                return WriteReply::NotLeader {
                    leader: f.leader_id,
                };
            };
            match forward(&node.address, command).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(leader, error = %e, "forwarding a metadata write");
                    WriteReply::NotLeader {
                        leader: Some(leader),
                    }
                }
            }
        }
        Err(e) => WriteReply::Failed(e.to_string()),
    }
}

async fn forward(address: &str, command: Command) -> Result<WriteReply, QuorumError> {
    let fwd = |message: String| QuorumError::Forward {
        address: address.to_string(),
        message,
    };
    let mut client = network::connect(address, Duration::from_secs(1), Duration::from_secs(10))
        .map_err(|e| fwd(e.to_string()))?;
    let payload = encode(&WriteRequest {
        command,
        forwarded: true,
    })
    .map_err(|e| fwd(e.to_string()))?;
    let r = client
        .write(payload)
        .await
        .map_err(|e| fwd(e.to_string()))?;
    decode(&r.into_inner()).map_err(|e| fwd(e.to_string()))
}

#[tonic::async_trait]
impl Quorum for Service {
    async fn append_entries(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.append_entries(req).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.install_snapshot(req).await)
    }

    async fn write(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: WriteRequest = decode(request.get_ref()).map_err(bad_request)?;
        reply(&write(&self.raft, req.command, req.forwarded).await)
    }
}

/// A running quorum member.
pub struct QuorumNode {
    id: NodeId,
    raft: Raft,
    image: watch::Receiver<Arc<MetadataImage>>,
    server: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for QuorumNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumNode").field("id", &self.id).finish()
    }
}

impl QuorumNode {
    /// Opens the storage, starts Raft and the internal listener, and (for a
    /// voter of a new cluster) initializes the membership with all voters.
    pub async fn start(cfg: QuorumConfig) -> Result<QuorumNode, QuorumError> {
        let storage = |source| QuorumError::Storage {
            dir: cfg.dir.clone(),
            source,
        };
        let log = LogStore::open(&cfg.dir).map_err(storage)?;
        let sm = StateMachine::open(&cfg.dir).map_err(storage)?;
        let image = sm.subscribe();
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: cfg.heartbeat_interval.as_millis() as u64,
            election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
            election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.snapshot_every,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;
        let network = Network {
            connect_timeout: Duration::from_millis(500),
        };
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| QuorumError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let service = QuorumServer::new(Service { raft: raft.clone() });
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "quorum listener");
            }
        });

        if cfg.voters.contains_key(&cfg.node_id) {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| QuorumError::Raft(e.to_string()))?;
            if !initialized {
                let members: BTreeMap<NodeId, Node> = cfg
                    .voters
                    .iter()
                    .map(|(id, a)| (*id, Node { address: a.clone() }))
                    .collect();
                // Every voter of a new cluster initializes with the same
                // membership; openraft accepts that, and whichever
                // election wins first leads.
                if let Err(e) = raft.initialize(members).await {
                    tracing::info!(error = %e, "quorum already initialized");
                }
            }
        }
        Ok(QuorumNode {
            id: cfg.node_id,
            raft,
            image,
            server,
            stop: Some(stop_tx),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle (metrics, membership changes).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The metadata as applied on this member.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Follows every applied image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The current quorum leader, as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Writes a command through the quorum (forwarded to the leader when
    /// this member does not lead); returns once it is committed and applied.
    pub async fn write(&self, command: Command) -> Result<Outcome, QuorumError> {
        match write(&self.raft, command, false).await {
            WriteReply::Done(o) => Ok(o),
            WriteReply::NotLeader { .. } => Err(QuorumError::NoLeader),
            WriteReply::Failed(e) => Err(QuorumError::Raft(e)),
        }
    }

    /// Stops Raft and the listener.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}
