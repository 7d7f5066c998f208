//! A broker's membership in the cluster: it runs its quorum member,
//! registers (one incarnation per process start), heartbeats to the
//! controller, and, while its quorum member leads, runs the controller:
//! fences brokers that stop heartbeating, moves leadership and shrinks ISRs
//! away from fenced brokers, and adds observers to the quorum as learners so
//! that every broker replicates the metadata.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Advertised inter-broker Kafka listener.
    pub kafka_address: String,
    /// Every advertised Kafka listener by name.
    pub listeners: std::collections::BTreeMap<String, String>,
    /// This member's internal listener as other brokers reach it (empty:
    /// the address it was bound to).
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
    /// Wakes the liveness loop to report a new suspect at once.
    report_now: Arc<tokio::sync::Notify>,
    /// Set while a stand for election is pending (see [`Member::suspect`]).
    standing: Arc<std::sync::atomic::AtomicBool>,
    /// openraft's leader lease here (its `election_timeout_max`).
    lease: Duration,
}

/// Peers found dead, and when.
type Suspects = Arc<parking_lot::Mutex<std::collections::BTreeMap<i32, std::time::Instant>>>;

/// Peers found gone within [`SUSPECT_TTL`] (older reports are dropped).
fn recent(suspects: &Suspects) -> BTreeSet<i32> {
    let mut s = suspects.lock();
    s.retain(|_, at| at.elapsed() < SUSPECT_TTL);
    s.keys().copied().collect()
}

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
        let mut cfg = cfg;
        if cfg.internal_address.is_empty() {
            cfg.internal_address = node.local_addr().to_string();
        }
        let stop = CancellationToken::new();
        let stop_liveness = stop.child_token();
        let (epoch_tx, epoch_rx) = watch::channel(None);
        let suspects = Suspects::default();
        let report_now = Arc::new(tokio::sync::Notify::new());
        let liveness = tokio::spawn(liveness_loop(
            node.clone(),
            cfg.clone(),
            incarnation(),
            epoch_tx,
            stop_liveness.clone(),
            (suspects.clone(), report_now.clone()),
        ));
        let ctl = tokio::spawn(controller_loop(
            node.clone(),
            cfg.clone(),
            stop.clone(),
            report_now.clone(),
        ));
        Ok(Member {
            node,
            broker_id: cfg.broker_id,
            epoch: epoch_rx,
            stop_liveness,
            stop,
            tasks: vec![liveness, ctl],
            suspects,
            report_now,
            standing: Arc::default(),
            lease: cfg.quorum.election_timeout_max,
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
    /// fences it as soon as its heartbeats have stopped too. A new report
    /// goes out with a heartbeat at once. When the peer is the quorum
    /// leader, this member may stand for election as soon as the leader's
    /// lease runs out (see [`stand_for_gone_leader`]).
    pub fn suspect(&self, broker: i32) {
        if broker == self.broker_id {
            return;
        }
        let new = self
            .suspects
            .lock()
            .insert(broker, std::time::Instant::now())
            .is_none_or(|at| at.elapsed() >= SUSPECT_TTL);
        if new {
            self.report_now.notify_one();
        }
        let gone = broker as u64;
        if self.node.leader() == Some(gone)
            && !self
                .standing
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let node = self.node.clone();
            let standing = self.standing.clone();
            let lease = self.lease;
            tokio::spawn(async move {
                stand_for_gone_leader(&node, gone, lease).await;
                standing.store(false, std::sync::atomic::Ordering::Release);
            });
        }
    }

    /// A peer answered again: it is no longer reported.
    pub fn unsuspect(&self, broker: i32) {
        self.suspects.lock().remove(&broker);
    }

    /// Peers this member found gone within the last second.
    pub fn suspected(&self) -> BTreeSet<i32> {
        recent(&self.suspects)
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
            // Retried while the quorum has no leader (an election), and
            // bounded: a write that cannot commit (the other voters have
            // stopped too, as when a whole cluster is shut down) waits for
            // ever in Raft.
            loop {
                let write = tokio::time::timeout_at(deadline, self.node.write(fence.clone()));
                match write.await.unwrap_or(Err(QuorumError::NoLeader)) {
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
    async fn stop_all(mut self) {
        self.stop.cancel();
        for t in &self.tasks {
            t.abort();
        }
        // Awaited, so that the node handles they hold are dropped and the
        // node (with its listener) is shut down whole below.
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        match Arc::try_unwrap(self.node) {
            Ok(node) => node.shutdown().await,
            Err(node) => node.raft().shutdown().await.unwrap_or_default(),
        }
    }
}

/// The leader this controller took over from was silent for at least a
/// lease before the election (no voter votes while its lease runs), so
/// that is when it was last heard, not the controller's start: reported
/// gone by a peer (a refused connection), it is fenced at once instead of
/// after three more heartbeat intervals. Only for that fast fencing: a
/// deposed leader that was paused, not gone, still gets a full session.
fn deposed_heartbeat(
    heartbeats: &mut controller::Heartbeats,
    img: &MetadataImage,
    deposed: Option<u64>,
    since: u64,
    lease_ms: u64,
) {
    let Some(b) = deposed
        .and_then(|d| i32::try_from(d).ok())
        .and_then(|d| img.brokers.get(&d))
    else {
        return;
    };
    heartbeats
        .entry(b.id)
        .or_insert((b.epoch, since.saturating_sub(lease_ms)));
}

/// Stands for election once the lease of a quorum leader found gone has
/// run out. openraft would add a randomised election timeout to the lease
/// (300-600 ms more by default); the lease itself stays: the remaining
/// voters refuse to vote until it has run out on them too, which is what
/// keeps a leader that is only slow from being deposed. Only the
/// lowest-numbered remaining voter stands this way, so two of them do not
/// split the vote; the others keep their timers, as does this member when
/// its stand fails.
async fn stand_for_gone_leader(node: &QuorumNode, gone: u64, lease: Duration) {
    // The leader's last append reached this member before it was found
    // gone, so its lease here ends within `lease` from now; the margin
    // covers the other voters, whose last append came at about the same
    // time.
    tokio::time::sleep(lease + Duration::from_millis(30)).await;
    let (leader, first) = {
        let m = node.raft().metrics();
        let m = m.borrow();
        let first = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != gone)
            .min();
        (m.current_leader, first)
    };
    if leader.is_some_and(|l| l != gone) || first != Some(node.id()) {
        return;
    }
    tracing::info!(
        gone,
        "the quorum leader is gone: asking to stand for election"
    );
    node.stand().await;
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
    (suspects, report_now): (Suspects, Arc<tokio::sync::Notify>),
) {
    let register = Command::RegisterBroker {
        id: cfg.broker_id,
        incarnation,
        kafka_address: cfg.kafka_address.clone(),
        listeners: cfg.listeners.clone(),
        internal_address: cfg.internal_address.clone(),
        rack: cfg.rack.clone(),
        directory_id: node.directory_id(),
    };
    let mut server = node.raft().server_metrics();
    let mut images = node.subscribe();
    loop {
        images.borrow_and_update();
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
                node.heartbeat(
                    cfg.broker_id,
                    epoch,
                    recent(&suspects).into_iter().collect(),
                )
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
        // The controller's own heartbeats go to itself, which never fences
        // itself: once unfenced, it heartbeats again only when it no
        // longer leads.
        let own_controller = node.is_leader()
            && epoch_tx.borrow().is_some_and(|e| {
                node.image()
                    .brokers
                    .get(&cfg.broker_id)
                    .is_some_and(|b| b.epoch == e && !b.fenced)
            });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.heartbeat_interval), if !own_controller => {}
            // Woken when it stops leading, or when the metadata changes
            // (its registration fenced by a write of its own, say).
            changed = server.changed(), if own_controller => if changed.is_err() { return },
            changed = images.changed(), if own_controller => if changed.is_err() { return },
            _ = report_now.notified() => {}
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
async fn controller_loop(
    node: Arc<QuorumNode>,
    cfg: MemberConfig,
    stop: CancellationToken,
    report_now: Arc<tokio::sync::Notify>,
) {
    let tick = (cfg.heartbeat_interval / 2).max(Duration::from_millis(10));
    let session = cfg.session_timeout.as_millis() as u64;
    let mut leading_since: Option<u64> = None;
    let mut learners_added: BTreeSet<u64> = BTreeSet::new();
    // The quorum leader this member last followed, and the one it took
    // over from (see `deposed_heartbeat`).
    let mut followed: Option<u64> = None;
    let mut deposed: Option<u64> = None;
    let lease = cfg.quorum.election_timeout_max.as_millis() as u64;
    // Server state changes (an election won) wake the loop at once.
    let mut server = node.raft().server_metrics();
    let mut images = node.subscribe();
    let mut quiet = false;
    loop {
        // A controller with no other broker registered has nothing to
        // time (it never fences itself): once a pass found nothing to do,
        // it wakes for a metadata change, not on a tick, so an idle lone
        // broker stays idle. A pass that wrote (or tried to: a refused
        // compare-and-set is retried) ticks again.
        let alone = quiet
            && node.is_leader()
            && images
                .borrow_and_update()
                .brokers
                .keys()
                .all(|b| *b == cfg.broker_id);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick), if !alone => {}
            changed = images.changed(), if alone => if changed.is_err() { return },
            changed = server.changed() => if changed.is_err() { return },
        }
        quiet = false;
        if !node.is_leader() {
            leading_since = None;
            if let Some(l) = node.leader().filter(|l| *l != node.id()) {
                followed = Some(l);
            }
            continue;
        }
        if leading_since.is_none() {
            deposed = followed.take();
            // This broker's own reports (it may have stood for election
            // because it found the old leader gone) reach the new
            // controller with a heartbeat now, not at the next interval.
            report_now.notify_one();
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
        let mut heard = heartbeats.clone();
        deposed_heartbeat(&mut heard, &img, deposed, since, lease);
        for c in controller::suspects_to_fence(
            &img,
            &heard,
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
        let mut worked = !commands.is_empty();
        let fenced_some = !commands.is_empty()
            && commands
                .iter()
                .all(|c| matches!(c, Command::SetFenced { fenced: true, .. }));
        for c in commands {
            match node.write_as_leader(c.clone()).await {
                Ok(Outcome::Ok) => tracing::info!(command = ?c, "controller"),
                Ok(o) => tracing::debug!(command = ?c, outcome = ?o, "controller command refused"),
                Err(e) => tracing::debug!(error = %e, "controller write"),
            }
        }
        if fenced_some {
            // Move the fenced brokers' leaderships now, not a tick later.
            for c in controller::partition_changes(&node.image()) {
                match node.write_as_leader(c.clone()).await {
                    Ok(Outcome::Ok) => tracing::info!(command = ?c, "controller"),
                    Ok(o) => {
                        tracing::debug!(command = ?c, outcome = ?o, "controller command refused")
                    }
                    Err(e) => tracing::debug!(error = %e, "controller write"),
                }
            }
        }
        // Observers replicate the metadata log as learners.
        let (nodes, voters, updates) = {
            let m = node.raft().metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let nodes: BTreeMap<u64, Node> =
                membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let updates = if membership.get_joint_config().len() > 1 {
                BTreeMap::new()
            } else {
                crate::voters::node_updates(
                    &nodes,
                    &voters,
                    &img,
                    &m.replication.clone().unwrap_or_default(),
                    m.last_applied.map(|l| l.index),
                )
            };
            (nodes, voters, updates)
        };
        let members: BTreeSet<u64> = nodes.keys().copied().collect();
        // Directory ids and addresses follow the registrations.
        worked |= !updates.is_empty();
        if !updates.is_empty() {
            match node
                .raft()
                .change_membership(openraft::ChangeMembers::SetNodes(updates.clone()), true)
                .await
            {
                Ok(_) => {
                    tracing::info!(nodes = ?updates, "metadata quorum members updated from their registrations")
                }
                Err(e) => tracing::debug!(error = %e, "updating quorum members"),
            }
        }
        // Learners of brokers no longer registered (unregistered after a
        // scale-down) leave the membership: the leader stops sending them
        // the log.
        let gone: BTreeSet<u64> = members
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .filter(|id| i32::try_from(*id).map_or(true, |b| !img.brokers.contains_key(&b)))
            .collect();
        worked |= !gone.is_empty();
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
            worked = true;
            let node_info = Node::new(b.internal_address.clone(), b.directory_id);
            match node.raft().add_learner(id, node_info, false).await {
                Ok(_) => {
                    tracing::info!(broker = b.id, "added as a metadata learner");
                    learners_added.insert(id);
                }
                Err(e) => tracing::debug!(broker = b.id, error = %e, "adding a learner"),
            }
        }
        quiet = !worked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::BrokerRegistration;

    #[test]
    fn the_deposed_leader_counts_as_silent_for_a_lease_before_the_election() {
        let mut img = MetadataImage::default();
        img.brokers.insert(
            1,
            BrokerRegistration {
                id: 1,
                epoch: 4,
                incarnation: 9,
                kafka_address: "127.0.0.1:9092".into(),
                listeners: Default::default(),
                internal_address: "127.0.0.1:9093".into(),
                rack: None,
                directory_id: Default::default(),
                fenced: false,
            },
        );
        let mut heard = controller::Heartbeats::new();
        deposed_heartbeat(&mut heard, &img, Some(1), 10_000, 600);
        assert_eq!(heard.get(&1), Some(&(4, 9_400)));
        // A heartbeat it sent the new controller since stands.
        let mut heard = controller::Heartbeats::from([(1, (4, 10_050))]);
        deposed_heartbeat(&mut heard, &img, Some(1), 10_000, 600);
        assert_eq!(heard.get(&1), Some(&(4, 10_050)));
        // No predecessor (the first leader), or one no longer registered.
        let mut heard = controller::Heartbeats::new();
        deposed_heartbeat(&mut heard, &img, None, 10_000, 600);
        deposed_heartbeat(&mut heard, &img, Some(7), 10_000, 600);
        assert!(heard.is_empty());
    }
}
