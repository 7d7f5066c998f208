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

use crate::controller::Heartbeats;
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
    /// them joins as an observer (learner) when a voter adds it. Empty:
    /// this member alone, at the address its listener was bound to (a
    /// standalone broker is a one-voter quorum of itself).
    pub voters: BTreeMap<NodeId, String>,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// Local address outbound connections to other members come from
    /// (`None`: the OS chooses).
    pub source_address: Option<std::net::IpAddr>,
}

impl QuorumConfig {
    /// Defaults for a member: 150 ms heartbeats (openraft also uses the
    /// heartbeat interval as the time limit of one AppendEntries, so a
    /// shorter one fails under CPU load and causes needless elections),
    /// a 600 ms leader lease (openraft's `election_timeout_max`: four
    /// heartbeats may be lost before voters consider another leader) and
    /// elections 300-600 ms after it runs out, or as soon as it does when
    /// the leader is known gone (`member::stand_for_gone_leader`).
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
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            snapshot_every: 1000,
            source_address: None,
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

/// A request as sent between members; `hops` counts forwards so that a
/// request never circles while leadership moves.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded<T> {
    request: T,
    hops: u8,
}

/// Most forwards of one request: a member that knows no leader asks a
/// voter, which forwards once more to the leader it knows.
const MAX_HOPS: u8 = 2;

#[derive(Debug, Serialize, Deserialize)]
enum WriteReply {
    Done(Outcome),
    NotLeader { leader: Option<NodeId> },
    Failed(String),
}

/// A broker's heartbeat to the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub broker: i32,
    pub epoch: u64,
    /// Brokers this one recently found dead: a connection to their
    /// listener was refused (see `controller::suspects_to_fence`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<i32>,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// Recorded; `fenced` is the broker's state after it.
    Ok { fenced: bool },
    /// The controller knows another incarnation (or none): register again.
    Stale,
    /// No leader could be reached.
    NotLeader,
}

/// What the node and its service share.
struct Shared {
    id: NodeId,
    raft: Raft,
    voters: BTreeMap<NodeId, String>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// Heartbeats received while this member leads; cleared when it
    /// becomes leader.
    heartbeats: parking_lot::Mutex<Heartbeats>,
    /// When each broker was last reported dead by a peer, while leading.
    suspicions: parking_lot::Mutex<std::collections::BTreeMap<i32, u64>>,
    clock: std::time::Instant,
    source_address: Option<std::net::IpAddr>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.id) && m.state == openraft::ServerState::Leader
    }
}

/// The tonic service; shares the Raft handle with the node.
struct Service {
    shared: Arc<Shared>,
}

fn bad_request(e: serde_json::Error) -> tonic::Status {
    tonic::Status::invalid_argument(format!("undecodable payload: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<tonic::Response<Payload>, tonic::Status> {
    encode(v)
        .map(tonic::Response::new)
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

/// Where to forward a request this member cannot serve: the leader it
/// knows, else every other voter in turn.
fn forward_targets(shared: &Shared, leader: Option<(NodeId, String)>) -> Vec<String> {
    match leader {
        Some((id, address)) if id != shared.id => vec![address],
        _ => shared
            .voters
            .iter()
            .filter(|(id, _)| **id != shared.id)
            .map(|(_, a)| a.clone())
            .collect(),
    }
}

/// Writes through the local Raft node, forwarding toward the leader when
/// this member is not it.
async fn write(shared: &Shared, command: Command, hops: u8) -> WriteReply {
    let f = match shared.raft.client_write(command.clone()).await {
        Ok(r) => return WriteReply::Done(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
        Err(e) => return WriteReply::Failed(e.to_string()),
    };
    if hops >= MAX_HOPS {
        return WriteReply::NotLeader {
            leader: f.leader_id,
        };
    }
    let leader = f.leader_id.zip(f.leader_node.map(|n| n.address));
    for address in forward_targets(shared, leader) {
        let req = Forwarded {
            request: command.clone(),
            hops: hops + 1,
        };
        match call(&address, shared.source_address, "write", &req).await {
            Ok(WriteReply::NotLeader { .. }) => continue,
            Ok(r) => return r,
            Err(e) => tracing::debug!(%address, error = %e, "forwarding a metadata write"),
        }
    }
    WriteReply::NotLeader {
        leader: f.leader_id,
    }
}

/// Records a heartbeat on the leader (unfencing a broker that heartbeats
/// in its current epoch), or forwards it there.
async fn heartbeat(shared: &Shared, hb: Heartbeat, hops: u8) -> HeartbeatReply {
    if shared.is_leader() {
        let reg = shared.image.borrow().brokers.get(&hb.broker).cloned();
        let Some(reg) = reg.filter(|r| r.epoch == hb.epoch) else {
            return HeartbeatReply::Stale;
        };
        let now = shared.now_ms();
        shared.heartbeats.lock().insert(hb.broker, (hb.epoch, now));
        if !hb.suspects.is_empty() {
            let mut s = shared.suspicions.lock();
            for id in &hb.suspects {
                s.insert(*id, now);
            }
        }
        if !reg.fenced {
            return HeartbeatReply::Ok { fenced: false };
        }
        let unfence = Command::SetFenced {
            id: hb.broker,
            epoch: hb.epoch,
            fenced: false,
        };
        return match shared.raft.client_write(unfence).await {
            Ok(r) if r.data == Outcome::Ok => HeartbeatReply::Ok { fenced: false },
            Ok(_) => HeartbeatReply::Stale,
            Err(_) => HeartbeatReply::NotLeader,
        };
    }
    if hops >= MAX_HOPS {
        return HeartbeatReply::NotLeader;
    }
    let leader = {
        let m = shared.raft.metrics();
        let m = m.borrow();
        m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| (l, n.address.clone()))
        })
    };
    for address in forward_targets(shared, leader) {
        let req = Forwarded {
            request: hb.clone(),
            hops: hops + 1,
        };
        match call(&address, shared.source_address, "heartbeat", &req).await {
            Ok(HeartbeatReply::NotLeader) => continue,
            Ok(r) => return r,
            Err(e) => tracing::debug!(%address, error = %e, "forwarding a heartbeat"),
        }
    }
    HeartbeatReply::NotLeader
}

/// One unary call to another member.
async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    address: &str,
    source: Option<std::net::IpAddr>,
    method: &str,
    req: &Req,
) -> Result<Resp, QuorumError> {
    let fwd = |message: String| QuorumError::Forward {
        address: address.to_string(),
        message,
    };
    let mut client = network::connect(
        address,
        source,
        Duration::from_millis(500),
        Duration::from_secs(5),
    )
    .map_err(|e| fwd(e.to_string()))?;
    let payload = encode(req).map_err(|e| fwd(e.to_string()))?;
    let r = match method {
        "write" => client.write(payload).await,
        _ => client.heartbeat(payload).await,
    }
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
        reply(&self.shared.raft.append_entries(req).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.shared.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.shared.raft.install_snapshot(req).await)
    }

    async fn write(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: Forwarded<Command> = decode(request.get_ref()).map_err(bad_request)?;
        reply(&write(&self.shared, req.request, req.hops).await)
    }

    async fn heartbeat(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: Forwarded<Heartbeat> = decode(request.get_ref()).map_err(bad_request)?;
        reply(&heartbeat(&self.shared, req.request, req.hops).await)
    }
}

/// A running quorum member.
pub struct QuorumNode {
    id: NodeId,
    raft: Raft,
    shared: Arc<Shared>,
    image: watch::Receiver<Arc<MetadataImage>>,
    server: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    local_addr: SocketAddr,
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
            source_address: cfg.source_address,
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| QuorumError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| QuorumError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let mut cfg = cfg;
        if cfg.voters.is_empty() {
            cfg.voters = BTreeMap::from([(cfg.node_id, local_addr.to_string())]);
        }
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            id: cfg.node_id,
            raft: raft.clone(),
            voters: cfg.voters.clone(),
            image: image.clone(),
            heartbeats: parking_lot::Mutex::new(Heartbeats::new()),
            suspicions: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
            clock: std::time::Instant::now(),
            source_address: cfg.source_address,
        });
        let service = QuorumServer::new(Service {
            shared: shared.clone(),
        });
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
            shared,
            image,
            server,
            stop: Some(stop_tx),
            local_addr,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the internal listener was bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The voters this member was started with (resolved: never empty).
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        &self.shared.voters
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
        match write(&self.shared, command, 0).await {
            WriteReply::Done(o) => Ok(o),
            WriteReply::NotLeader { .. } => Err(QuorumError::NoLeader),
            WriteReply::Failed(e) => Err(QuorumError::Raft(e)),
        }
    }

    /// Sends a broker heartbeat to the controller (through this member).
    pub async fn heartbeat(&self, broker: i32, epoch: u64, suspects: Vec<i32>) -> HeartbeatReply {
        heartbeat(
            &self.shared,
            Heartbeat {
                broker,
                epoch,
                suspects,
            },
            0,
        )
        .await
    }

    /// True while this member is the quorum leader (the controller).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Milliseconds on this member's monotonic clock (the heartbeat clock).
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// The heartbeats recorded while leading.
    pub fn heartbeats(&self) -> Heartbeats {
        self.shared.heartbeats.lock().clone()
    }

    /// Forgets recorded heartbeats (on becoming leader: a new controller
    /// starts from a full session for every broker).
    pub fn clear_heartbeats(&self) {
        self.shared.heartbeats.lock().clear();
        self.shared.suspicions.lock().clear();
    }

    /// When each broker was last reported dead by a peer, while leading.
    pub fn suspicions(&self) -> std::collections::BTreeMap<i32, u64> {
        self.shared.suspicions.lock().clone()
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
