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
use crate::election;
use crate::image::{Command, MetadataImage, Outcome};
use crate::log_store::LogStore;
use crate::network::{self, Network, decode, encode};
use crate::pb::Payload;
use crate::pb::quorum_server::{Quorum, QuorumServer};
use crate::state_machine::StateMachine;
use crate::types::{Node, NodeId, Raft};
use crate::voters::{self, ChangeReply, QuorumDescription, ReplicaState, VoterChange};

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
    /// How outbound connections to other members are made: the local
    /// address they come from (`None`: the OS chooses), and mutual TLS
    /// (also required of the members that connect to this one).
    pub dialer: crate::tls::Dialer,
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
            dialer: crate::tls::Dialer::default(),
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

/// Whether another configured voter already answers for a quorum with a
/// leader: then this member (a voter on an empty volume, or a broker
/// whose configured voters changed since the cluster began) must not write
/// a first membership of its own, which could differ from the quorum's
/// under the same log id; the leader brings it the log instead. At the
/// first start of a cluster nobody answers yet, and every voter writes the
/// same first membership.
async fn joins_a_running_quorum(cfg: &QuorumConfig) -> bool {
    for (id, address) in cfg.voters.iter().filter(|(id, _)| **id != cfg.node_id) {
        let req = Forwarded {
            request: (),
            hops: 0,
        };
        let asked = tokio::time::timeout(
            Duration::from_secs(2),
            call::<_, Option<QuorumDescription>>(address, &cfg.dialer, "describe", &req),
        )
        .await;
        if let Ok(Ok(Some(d))) = asked {
            tracing::info!(
                voter = id,
                leader = d.leader,
                term = d.term,
                "the metadata quorum is running: waiting for its leader to bring this member the log"
            );
            return true;
        }
    }
    false
}

/// The file in the quorum directory that holds its directory id.
const DIRECTORY_ID_FILE: &str = "directory-id";

/// The directory id of the metadata log in `dir`: made at its first use,
/// so an emptied volume is a new directory (KIP-853).
fn directory_id(dir: &std::path::Path) -> std::io::Result<uuid::Uuid> {
    let path = dir.join(DIRECTORY_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a directory id ({e})", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4();
            let tmp = dir.join(format!("{DIRECTORY_ID_FILE}.tmp"));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "{id}")?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            tracing::info!(directory_id = %id, "a new metadata log directory");
            Ok(id)
        }
        Err(e) => Err(e),
    }
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

/// What the node, its service and its election loop share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    /// The directory id of this member's metadata log (KIP-853).
    pub(crate) directory_id: uuid::Uuid,
    /// A handle on the log (its last entry, for pre-votes).
    pub(crate) log: LogStore,
    /// The voters configured at start (where to forward while the
    /// membership is not known yet).
    voters: BTreeMap<NodeId, String>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// Heartbeats received while this member leads; cleared when it
    /// becomes leader.
    heartbeats: parking_lot::Mutex<Heartbeats>,
    /// When each broker was last reported dead by a peer, while leading.
    suspicions: parking_lot::Mutex<std::collections::BTreeMap<i32, u64>>,
    clock: std::time::Instant,
    pub(crate) dialer: crate::tls::Dialer,
    /// When (on `clock`) this member last heard a leader: an append or
    /// snapshot it accepted, or a vote it granted.
    heard: std::sync::atomic::AtomicU64,
    pub(crate) lease_ms: u64,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) election_timeout_min: Duration,
    pub(crate) election_timeout_max: Duration,
    /// When each member last answered this one's appends (while leading).
    acks: network::Acks,
    /// When each member was last seen holding the whole log.
    caught_up: parking_lot::Mutex<BTreeMap<NodeId, i64>>,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    pub(crate) fn heard_ms(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn hear(&self) {
        self.heard
            .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The leader as this member knows it, with its internal address.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| (l, n.address.clone()))
        })
    }

    /// This member's side of a pre-vote.
    fn pre_vote(&self, req: &election::PreVote) -> election::PreVoteReply {
        let (leader, committed) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.state == openraft::ServerState::Leader,
                m.vote.is_committed(),
            )
        };
        let own = election::Own {
            directory_id: self.directory_id,
            leader,
            silence_ms: self.now_ms().saturating_sub(self.heard_ms()),
            lease_ms: self.lease_ms,
            committed,
            last_log_id: self.log.last_log_id(),
        };
        match election::grant(&own, req) {
            Ok(()) => election::PreVoteReply {
                granted: true,
                reason: String::new(),
            },
            Err(reason) => {
                tracing::debug!(candidate = req.candidate, %reason, "pre-vote refused");
                election::PreVoteReply {
                    granted: false,
                    reason: reason.to_string(),
                }
            }
        }
    }

    /// The quorum as this member sees it while leading.
    fn describe(&self) -> Option<QuorumDescription> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state != openraft::ServerState::Leader {
            return None;
        }
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
        let leader_end = end(m.last_log_index);
        let now = network::wall_ms();
        let acks = self.acks.lock().clone();
        let mut caught = self.caught_up.lock();
        let replication = m.replication.clone().unwrap_or_default();
        let mut voter_states = Vec::new();
        let mut observers = Vec::new();
        for (id, node) in membership.nodes() {
            let (log_end, fetch) = if *id == self.id {
                (leader_end, now)
            } else {
                (
                    // Not known (-1) until it has matched an entry.
                    replication
                        .get(id)
                        .copied()
                        .flatten()
                        .map_or(-1, |l| l.index as i64 + 1),
                    acks.get(id).copied().unwrap_or(-1),
                )
            };
            if log_end >= leader_end && fetch >= 0 {
                caught.insert(*id, fetch);
            }
            let state = ReplicaState {
                id: *id,
                directory_id: if *id == self.id {
                    self.directory_id
                } else {
                    node.directory_id
                },
                address: node.address.clone(),
                log_end_offset: log_end,
                last_fetch_ms: fetch,
                last_caught_up_ms: caught.get(id).copied().unwrap_or(-1),
            };
            if voters.contains(id) {
                voter_states.push(state);
            } else {
                observers.push(state);
            }
        }
        Some(QuorumDescription {
            leader: self.id,
            term: m.current_term,
            high_watermark: end(m.last_applied.map(|l| l.index)),
            voters: voter_states,
            observers,
        })
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
    if let Some((_, address)) = leader.filter(|(id, _)| *id != shared.id) {
        return vec![address];
    }
    let known: Vec<String> = {
        let m = shared.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter(|id| *id != shared.id)
            .filter_map(|id| membership.get_node(&id).map(|n| n.address.clone()))
            .collect()
    };
    if !known.is_empty() {
        return known;
    }
    shared
        .voters
        .iter()
        .filter(|(id, _)| **id != shared.id)
        .map(|(_, a)| a.clone())
        .collect()
}

/// Sends a request on toward the leader (or, knowing none, to each other
/// voter in turn) until a member answers other than "not the leader".
async fn forward<Req, Resp>(
    shared: &Shared,
    leader: Option<(NodeId, String)>,
    method: &'static str,
    request: &Req,
    hops: u8,
    not_leader: fn(&Resp) -> bool,
) -> Option<Resp>
where
    Req: Serialize + Clone,
    Resp: serde::de::DeserializeOwned,
{
    if hops >= MAX_HOPS {
        return None;
    }
    for address in forward_targets(shared, leader) {
        let req = Forwarded {
            request: request.clone(),
            hops: hops + 1,
        };
        match call::<_, Resp>(&address, &shared.dialer, method, &req).await {
            Ok(r) if not_leader(&r) => continue,
            Ok(r) => return Some(r),
            Err(e) => tracing::debug!(%address, method, error = %e, "forwarding"),
        }
    }
    None
}

/// Describes the quorum on the leader, forwarding there.
async fn describe(shared: &Shared, hops: u8) -> Option<QuorumDescription> {
    if let Some(d) = shared.describe() {
        return Some(d);
    }
    forward(
        shared,
        shared.leader(),
        "describe",
        &(),
        hops,
        Option::is_none,
    )
    .await
    .flatten()
}

/// Changes the voters on the leader, forwarding there.
async fn change_voters(shared: &Shared, change: VoterChange, hops: u8) -> ChangeReply {
    if shared.is_leader() {
        let (nodes, voters) = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (
                membership
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect::<BTreeMap<_, _>>(),
                membership.voter_ids().collect(),
            )
        };
        let img = shared.image.borrow().clone();
        return match voters::check(&change, &nodes, &voters, &img) {
            Ok(node) => voters::apply(&shared.raft, &change, node).await,
            Err(reply) => reply,
        };
    }
    forward(
        shared,
        shared.leader(),
        "change_voters",
        &change,
        hops,
        |r| *r == ChangeReply::NotLeader,
    )
    .await
    .unwrap_or(ChangeReply::NotLeader)
}

/// Writes through the local Raft node, forwarding toward the leader when
/// this member is not it.
async fn write(shared: &Shared, command: Command, hops: u8) -> WriteReply {
    let f = match shared.raft.client_write(command.clone()).await {
        Ok(r) => return WriteReply::Done(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
        Err(e) => return WriteReply::Failed(e.to_string()),
    };
    let leader = f.leader_id.zip(f.leader_node.map(|n| n.address));
    forward(shared, leader, "write", &command, hops, |r| {
        matches!(r, WriteReply::NotLeader { .. })
    })
    .await
    .unwrap_or(WriteReply::NotLeader {
        leader: f.leader_id,
    })
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
    forward(shared, shared.leader(), "heartbeat", &hb, hops, |r| {
        *r == HeartbeatReply::NotLeader
    })
    .await
    .unwrap_or(HeartbeatReply::NotLeader)
}

/// One unary call to another member.
pub(crate) async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    address: &str,
    dialer: &crate::tls::Dialer,
    method: &str,
    req: &Req,
) -> Result<Resp, QuorumError> {
    let fwd = |message: String| QuorumError::Forward {
        address: address.to_string(),
        message,
    };
    let mut client = network::connect(
        address,
        dialer,
        Duration::from_millis(500),
        Duration::from_secs(5),
    )
    .map_err(|e| fwd(e.to_string()))?;
    let payload = encode(req).map_err(|e| fwd(e.to_string()))?;
    let r = match method {
        "write" => client.write(payload).await,
        "heartbeat" => client.heartbeat(payload).await,
        "pre_vote" => client.pre_vote(payload).await,
        "describe" => client.describe(payload).await,
        "change_voters" => client.change_voters(payload).await,
        other => return Err(fwd(format!("no such quorum method {other}"))),
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
        let r = self.shared.raft.append_entries(req).await;
        if matches!(&r, Ok(resp) if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            self.shared.hear();
        }
        reply(&r)
    }

    async fn vote(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        if let Some(expected) = request
            .metadata()
            .get(network::TO_DIRECTORY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<uuid::Uuid>().ok())
            .filter(|d| !d.is_nil() && *d != self.shared.directory_id)
        {
            return Err(tonic::Status::failed_precondition(format!(
                "this voter's metadata log is directory {}, not {expected}: its volume was replaced, and it votes again once the controller has made it a new voter",
                self.shared.directory_id
            )));
        }
        let req = decode(request.get_ref()).map_err(bad_request)?;
        let r = self.shared.raft.vote(req).await;
        if matches!(&r, Ok(v) if v.vote_granted) {
            self.shared.hear();
        }
        reply(&r)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        let r = self.shared.raft.install_snapshot(req).await;
        if r.is_ok() {
            self.shared.hear();
        }
        reply(&r)
    }

    async fn pre_vote(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: election::PreVote = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.shared.pre_vote(&req))
    }

    async fn describe(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: Forwarded<()> = decode(request.get_ref()).map_err(bad_request)?;
        reply(&describe(&self.shared, req.hops).await)
    }

    async fn change_voters(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let req: Forwarded<VoterChange> = decode(request.get_ref()).map_err(bad_request)?;
        reply(&change_voters(&self.shared, req.request, req.hops).await)
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
    /// Stops the election loop.
    elections: tokio_util::sync::CancellationToken,
    shared: Arc<Shared>,
    image: watch::Receiver<Arc<MetadataImage>>,
    server: JoinHandle<()>,
    /// The accept loop, which owns the listening socket.
    accept: JoinHandle<()>,
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
        let directory_id = directory_id(&cfg.dir).map_err(storage)?;
        let sm = StateMachine::open(&cfg.dir).map_err(storage)?;
        let image = sm.subscribe();
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: cfg.heartbeat_interval.as_millis() as u64,
            election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
            election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.snapshot_every,
            // Elections are `election::run`'s, after a pre-vote.
            enable_elect: false,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;
        let acks = network::Acks::default();
        let network = Network {
            connect_timeout: Duration::from_millis(500),
            dialer: cfg.dialer.clone(),
            acks: acks.clone(),
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
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log.clone(), sm)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            id: cfg.node_id,
            raft: raft.clone(),
            directory_id,
            log,
            voters: cfg.voters.clone(),
            image: image.clone(),
            heartbeats: parking_lot::Mutex::new(Heartbeats::new()),
            suspicions: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
            clock: std::time::Instant::now(),
            dialer: cfg.dialer.clone(),
            heard: std::sync::atomic::AtomicU64::new(0),
            lease_ms: cfg.election_timeout_max.as_millis() as u64,
            heartbeat_interval: cfg.heartbeat_interval,
            election_timeout_min: cfg.election_timeout_min,
            election_timeout_max: cfg.election_timeout_max,
            acks,
            caught_up: parking_lot::Mutex::default(),
        });
        let service = QuorumServer::new(Service {
            shared: shared.clone(),
        });
        let (incoming, accept) = crate::tls::incoming(listener, cfg.dialer.tls.clone());
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
            if !initialized && !joins_a_running_quorum(&cfg).await {
                let members: BTreeMap<NodeId, Node> = cfg
                    .voters
                    .iter()
                    // Directory ids are filled in from the registrations
                    // (`voters::node_updates`): every voter must write
                    // the same first entry.
                    .map(|(id, a)| (*id, Node::new(a.clone(), uuid::Uuid::nil())))
                    .collect();
                // Every voter of a new cluster initializes with the same
                // membership; openraft accepts that, and whichever
                // election wins first leads.
                if let Err(e) = raft.initialize(members).await {
                    tracing::info!(error = %e, "quorum already initialized");
                }
            }
        }
        let elections = tokio_util::sync::CancellationToken::new();
        tokio::spawn(election::run(shared.clone(), elections.clone()));
        Ok(QuorumNode {
            id: cfg.node_id,
            raft,
            elections,
            shared,
            image,
            server,
            accept,
            stop: Some(stop_tx),
            local_addr,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The directory id of this member's metadata log.
    pub fn directory_id(&self) -> uuid::Uuid {
        self.shared.directory_id
    }

    /// The quorum as its leader describes it (asked of the leader through
    /// this member); `None` while no leader answers.
    pub async fn describe(&self) -> Option<QuorumDescription> {
        describe(&self.shared, 0).await
    }

    /// Adds or removes a voter, on the leader.
    pub async fn change_voters(&self, change: VoterChange) -> ChangeReply {
        change_voters(&self.shared, change, 0).await
    }

    /// Stands for election after a pre-vote (see [`election`]); whether
    /// it stood.
    pub async fn stand(&self) -> bool {
        election::stand(&self.shared).await
    }

    /// The voters of the current membership, id -> internal address.
    pub fn current_voters(&self) -> BTreeMap<NodeId, String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.address.clone())))
            .collect()
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

    /// Writes a command only through this member's own Raft node, as its
    /// leader: never forwarded. The controller's decisions go this way: a
    /// controller that was paused (SIGSTOP, a long GC-like stall) and
    /// deposed meanwhile still runs the decisions it was making, on what
    /// it knew then (every other broker silent for its whole pause); as a
    /// forwarded write they would reach the new leader and apply, as its
    /// own entry in its old term they never commit.
    pub async fn write_as_leader(&self, command: Command) -> Result<Outcome, QuorumError> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(QuorumError::NoLeader)
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
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
        self.elections.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        // The listening socket is closed before this returns, so that a
        // member started again at once can bind its address.
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }
}
