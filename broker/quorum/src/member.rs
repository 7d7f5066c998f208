//! A broker's membership in the cluster: it runs its quorum member,
//! registers (one incarnation per process start), heartbeats to the
//! controller, and, while its quorum member leads, runs the controller:
//! fences brokers that stop heartbeating, moves leadership and shrinks ISRs
//! away from fenced brokers, and adds observers to the quorum as learners so
//! that every broker replicates the metadata.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controller;
use crate::image::{Command, MetadataImage, Outcome};
use crate::node::{HeartbeatReply, QuorumConfig, QuorumError, QuorumNode};
use crate::types::Node;

/// How a broker takes part.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub quorum: QuorumConfig,
    pub broker_id: i32,
    /// Advertised Kafka listener.
    pub kafka_address: String,
    /// This member's internal listener as other brokers reach it.
    pub internal_address: String,
    pub rack: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
}

/// A running member.
pub struct Member {
    node: Arc<QuorumNode>,
    broker_id: i32,
    epoch: watch::Receiver<Option<u64>>,
    /// Stops heartbeats (first, at a controlled shutdown: a heartbeat would
    /// unfence the broker again).
    stop_liveness: CancellationToken,
    /// Stops the controller loop.
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Peers found dead (listener refusing connections), reported with
    /// the next heartbeats.
    suspects: Suspects,
}

/// Peers found dead, and when.
type Suspects = Arc<parking_lot::Mutex<std::collections::BTreeMap<i32, std::time::Instant>>>;

/// How long a report of a dead peer is sent along with heartbeats.
const SUSPECT_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("broker", &self.broker_id)
            .finish()
    }
}

fn incarnation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

impl Member {
    pub async fn start(cfg: MemberConfig) -> Result<Member, QuorumError> {
        let node = Arc::new(QuorumNode::start(cfg.quorum.clone()).await?);
        let stop = CancellationToken::new();
        let stop_liveness = stop.child_token();
        let (epoch_tx, epoch_rx) = watch::channel(None);
        let suspects = Suspects::default();
        let liveness = tokio::spawn(liveness_loop(
            node.clone(),
            cfg.clone(),
            incarnation(),
            epoch_tx,
            stop_liveness.clone(),
            suspects.clone(),
        ));
        let ctl = tokio::spawn(controller_loop(node.clone(), cfg.clone(), stop.clone()));
        Ok(Member {
            node,
            broker_id: cfg.broker_id,
            epoch: epoch_rx,
            stop_liveness,
            stop,
            tasks: vec![liveness, ctl],
            suspects,
        })
    }

    pub fn node(&self) -> &QuorumNode {
        &self.node
    }

    /// A shared handle on the quorum member.
    pub fn node_arc(&self) -> Arc<QuorumNode> {
        self.node.clone()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.node.image()
    }

    /// Reports a peer whose listener refused a connection: the controller
    /// fences it as soon as its heartbeats have stopped too.
    pub fn suspect(&self, broker: i32) {
        if broker != self.broker_id {
            self.suspects
                .lock()
                .insert(broker, std::time::Instant::now());
        }
    }

    /// This broker's registration epoch, once registered.
    pub fn epoch(&self) -> Option<u64> {
        *self.epoch.borrow()
    }

    /// Controlled shutdown: fence this broker so the controller moves its
    /// leaderships to other ISR members, wait (up to `timeout`) until it
    /// leads nothing, then stop. Returns the partitions it still led.
    pub async fn shutdown(self, timeout: Duration) -> usize {
        // Heartbeats stop first; the controller loop keeps running during
        // the hand-off: this broker may be the controller that has to move
        // its partitions.
        self.stop_liveness.cancel();
        if let Some(t) = self.tasks.first() {
            t.abort();
        }
        let mut still_leading = leading(&self.node.image(), self.broker_id);
        if let Some(epoch) = self.epoch() {
            let fence = Command::SetFenced {
                id: self.broker_id,
                epoch,
                fenced: true,
            };
            let deadline = tokio::time::Instant::now() + timeout;
            // Retried while the quorum has no leader (an election).
            loop {
                match self.node.write(fence.clone()).await {
                    Ok(_) => break,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, "controlled shutdown: fencing, retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "controlled shutdown: could not fence this broker");
                        break;
                    }
                }
            }
            let mut image = self.node.subscribe();
            while still_leading > 0 {
                match tokio::time::timeout_at(deadline, image.changed()).await {
                    Ok(Ok(())) => still_leading = leading(&image.borrow(), self.broker_id),
                    _ => break,
                }
            }
        }
        self.stop_all().await;
        still_leading
    }

    /// Stops at once, as a crash would (no fencing, no hand-over).
    pub async fn kill(self) {
        self.stop_all().await;
    }

    /// Stops the loops, Raft and (when this is the last handle) the listener.
    async fn stop_all(self) {
        self.stop.cancel();
        for t in &self.tasks {
            t.abort();
        }
        match Arc::try_unwrap(self.node) {
            Ok(node) => node.shutdown().await,
            Err(node) => node.raft().shutdown().await.unwrap_or_default(),
        }
    }
}

/// Partitions `broker` leads.
pub fn leading(img: &MetadataImage, broker: i32) -> usize {
    img.topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader == broker)
        .count()
}

/// Registers, then heartbeats; registers again when the controller no
/// longer knows this incarnation.
async fn liveness_loop(
    node: Arc<QuorumNode>,
    cfg: MemberConfig,
    incarnation: u64,
    epoch_tx: watch::Sender<Option<u64>>,
    stop: CancellationToken,
    suspects: Suspects,
) {
    let register = Command::RegisterBroker {
        id: cfg.broker_id,
        incarnation,
        kafka_address: cfg.kafka_address.clone(),
        internal_address: cfg.internal_address.clone(),
        rack: cfg.rack.clone(),
    };
    loop {
        let epoch = *epoch_tx.borrow();
        match epoch {
            // A retried registration of this incarnation is idempotent, so
            // one that takes too long (a dead link to a former leader) is
            // simply sent again.
            None => match tokio::time::timeout(
                cfg.session_timeout.max(Duration::from_secs(1)),
                node.write(register.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(crate::node::QuorumError::Forward {
                    address: "the controller".into(),
                    message: "no answer in time".into(),
                })
            }) {
                Ok(Outcome::Registered { epoch }) => {
                    tracing::info!(
                        broker = cfg.broker_id,
                        epoch,
                        "registered with the controller"
                    );
                    epoch_tx.send_replace(Some(epoch));
                    continue;
                }
                Ok(o) => tracing::warn!(outcome = ?o, "registration refused"),
                Err(e) => tracing::debug!(error = %e, "registration: no controller yet"),
            },
            // Bounded well inside a session: a heartbeat sent to a former
            // leader behind a dead link must not hang until the new
            // controller fences this broker for silence; the next one
            // goes to whoever leads by then.
            // Unfenced only once this broker's own image holds its
            // registration, and so everything written before it: a broker
            // that restarted with an empty or old copy of the metadata must
            // not lead or join an ISR on what it has not replayed yet.
            Some(epoch)
                if node
                    .image()
                    .brokers
                    .get(&cfg.broker_id)
                    .is_none_or(|b| b.epoch < epoch) =>
            {
                tracing::debug!(
                    epoch,
                    "heartbeats wait for the metadata to reach the registration"
                );
            }
            Some(epoch) => match tokio::time::timeout(heartbeat_deadline(&cfg), {
                let recent: Vec<i32> = {
                    let mut s = suspects.lock();
                    s.retain(|_, at| at.elapsed() < SUSPECT_TTL);
                    s.keys().copied().collect()
                };
                node.heartbeat(cfg.broker_id, epoch, recent)
            })
            .await
            {
                Ok(HeartbeatReply::Ok { .. } | HeartbeatReply::NotLeader) => {}
                Err(_) => tracing::debug!("heartbeat: no answer in time"),
                Ok(HeartbeatReply::Stale) => {
                    epoch_tx.send_replace(None);
                    continue;
                }
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.heartbeat_interval) => {}
        }
    }
}

/// How long one heartbeat may take: a third of the session (at least one
/// interval), so that a broker gets several tries before it is fenced.
fn heartbeat_deadline(cfg: &MemberConfig) -> Duration {
    (cfg.session_timeout / 3).max(cfg.heartbeat_interval)
}

/// How long a new controller waits for a broker's first heartbeat before
/// fencing it. A shorter grace (three heartbeats) fenced every broker at
/// once in the fault harness, when an election on a loaded machine delayed
/// the first heartbeats to the new controller: a whole session it is.
fn new_controller_grace(cfg: &MemberConfig) -> u64 {
    cfg.session_timeout.as_millis() as u64
}

/// While this member leads the quorum: fence silent brokers, repair
/// partitions, add observers as learners.
async fn controller_loop(node: Arc<QuorumNode>, cfg: MemberConfig, stop: CancellationToken) {
    let tick = (cfg.heartbeat_interval / 2).max(Duration::from_millis(10));
    let session = cfg.session_timeout.as_millis() as u64;
    let mut leading_since: Option<u64> = None;
    let mut learners_added: BTreeSet<u64> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if !node.is_leader() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(|| {
            // A new controller has heard no heartbeat yet. Live brokers find
            // it within a few heartbeats (their quorum members learn the
            // leader from its first appends), so a broker it has not heard
            // from is fenced after that grace, not a whole session: the
            // clock starts as if the session began `session - grace` ago.
            node.clear_heartbeats();
            learners_added.clear();
            node.now_ms()
                .saturating_sub(session.saturating_sub(new_controller_grace(&cfg)))
        });
        let img = node.image();
        // The controller is alive by definition: it never fences itself.
        let now = node.now_ms();
        let heartbeats = node.heartbeats();
        let mut commands: Vec<Command> =
            controller::brokers_to_fence(&img, &heartbeats, now, since, session);
        // Faster for a broker a peer found dead (see `suspects_to_fence`):
        // three heartbeat intervals of silence instead of a session.
        let fast = 3 * cfg.heartbeat_interval.as_millis() as u64;
        for c in controller::suspects_to_fence(
            &img,
            &heartbeats,
            &node.suspicions(),
            now,
            since,
            fast,
            SUSPECT_TTL.as_millis() as u64,
        ) {
            if !commands.contains(&c) {
                commands.push(c);
            }
        }
        commands.retain(|c| !matches!(c, Command::SetFenced { id, .. } if *id == cfg.broker_id));
        if commands.is_empty() {
            commands.extend(controller::partition_changes(&img));
        }
        let fenced_some = !commands.is_empty()
            && commands
                .iter()
                .all(|c| matches!(c, Command::SetFenced { fenced: true, .. }));
        for c in commands {
            match node.write(c.clone()).await {
                Ok(Outcome::Ok) => tracing::info!(command = ?c, "controller"),
                Ok(o) => tracing::debug!(command = ?c, outcome = ?o, "controller command refused"),
                Err(e) => tracing::debug!(error = %e, "controller write"),
            }
        }
        if fenced_some {
            // Move the fenced brokers' leaderships now, not a tick later.
            for c in controller::partition_changes(&node.image()) {
                match node.write(c.clone()).await {
                    Ok(Outcome::Ok) => tracing::info!(command = ?c, "controller"),
                    Ok(o) => {
                        tracing::debug!(command = ?c, outcome = ?o, "controller command refused")
                    }
                    Err(e) => tracing::debug!(error = %e, "controller write"),
                }
            }
        }
        // Observers replicate the metadata log as learners.
        let (members, voters): (BTreeSet<u64>, BTreeSet<u64>) = {
            let m = node.raft().metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (
                membership.nodes().map(|(id, _)| *id).collect(),
                membership.voter_ids().collect(),
            )
        };
        // Learners of brokers no longer registered (unregistered after a
        // scale-down) leave the membership: the leader stops sending them
        // the log.
        let gone: BTreeSet<u64> = members
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .filter(|id| i32::try_from(*id).map_or(true, |b| !img.brokers.contains_key(&b)))
            .collect();
        if !gone.is_empty() {
            match node
                .raft()
                .change_membership(openraft::ChangeMembers::RemoveNodes(gone.clone()), false)
                .await
            {
                Ok(_) => {
                    tracing::info!(learners = ?gone, "removed unregistered brokers from the metadata learners");
                    for id in &gone {
                        learners_added.remove(id);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "removing learners"),
            }
        }
        for b in img.brokers.values() {
            let id = b.id as u64;
            if members.contains(&id)
                || learners_added.contains(&id)
                || b.internal_address.is_empty()
            {
                continue;
            }
            let node_info = Node {
                address: b.internal_address.clone(),
            };
            match node.raft().add_learner(id, node_info, false).await {
                Ok(_) => {
                    tracing::info!(broker = b.id, "added as a metadata learner");
                    learners_added.insert(id);
                }
                Err(e) => tracing::debug!(broker = b.id, error = %e, "adding a learner"),
            }
        }
    }
}
