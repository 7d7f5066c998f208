//! The group coordinator: every group's state machine, the JoinGroup and
//! SyncGroup requests parked until their rebalance completes, and the
//! committed offsets (kept in memory, persisted in `__consumer_offsets`).
//!
//! Locks are held only for state changes; the handlers await the parked
//! answers without them.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::offsets_log::{CommittedOffset, OffsetsRecord};
use super::state::{Group, GroupState, JoinRequest, JoinResult, Joined, Synced, code};
use crate::protocol::code::{GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_OFFSET_METADATA: usize = 4096;

pub type TopicPartitionKey = (String, i32);
/// Committed offsets by topic: `(topic, [(partition, offset if any)])`.
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

#[derive(Debug, Default)]
struct Entry {
    group: Option<Group>,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<(i16, Bytes)>>,
    offsets: BTreeMap<TopicPartitionKey, CommittedOffset>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by
    /// producer id: applied when the commit marker is written, dropped on
    /// an abort.
    pending_txn: HashMap<i64, BTreeMap<TopicPartitionKey, Option<CommittedOffset>>>,
    /// When the group was last seen idle (Empty, no offsets, nothing
    /// parked) by [`GroupCoordinator::tick`].
    idle_since_ms: Option<u64>,
}

/// Applies commits (`Some`) and tombstones (`None`) to a group's offsets.
fn change_offsets(
    offsets: &mut BTreeMap<TopicPartitionKey, CommittedOffset>,
    changes: impl IntoIterator<Item = (TopicPartitionKey, Option<CommittedOffset>)>,
) {
    for (key, value) in changes {
        match value {
            Some(v) => {
                offsets.insert(key, v);
            }
            None => {
                offsets.remove(&key);
            }
        }
    }
}

/// How long an idle group is kept: Kafka removes one at its next cleanup,
/// every `offsets.retention.check.interval.ms` (600000 by default), and
/// describes it as Empty until then, as tools show a group whose
/// consumers stopped.
const IDLE_GROUP_KEPT_MS: u64 = 600_000;

impl Entry {
    fn group(&mut self, id: &str) -> &mut Group {
        self.group.get_or_insert_with(|| Group::new(id))
    }

    fn group_with_delay(&mut self, id: &str, delay_ms: u64) -> &mut Group {
        self.group.get_or_insert_with(|| {
            let mut g = Group::new(id);
            g.initial_delay_ms = delay_ms;
            g
        })
    }

    fn state(&self) -> GroupState {
        self.group.as_ref().map_or(GroupState::Empty, |g| g.state)
    }

    fn is_idle(&self) -> bool {
        self.state() == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_txn.is_empty()
            && self.joins.is_empty()
            && self.syncs.is_empty()
    }
}

/// A JoinGroup or SyncGroup answer, now or later.
#[derive(Debug)]
pub enum Pending<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What DescribeGroups shows of a group.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// `(member id, instance id, client id, client host, metadata, assignment)`
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
        GroupState::Stable => "Stable",
    }
}

#[derive(Debug)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Entry>>,
    clock: Instant,
    initial_delay_ms: u64,
}

impl Default for GroupCoordinator {
    fn default() -> Self {
        Self::new(0)
    }
}

impl GroupCoordinator {
    pub fn new(initial_rebalance_delay_ms: u64) -> Self {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            clock: Instant::now(),
            initial_delay_ms: initial_rebalance_delay_ms,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Delivers whatever a state change made ready.
    fn settle(entry: &mut Entry, now: u64) {
        let Some(group) = entry.group.as_mut() else {
            return;
        };
        if let Some(results) = group.complete_join(now) {
            for r in results {
                if let Some(tx) = entry.joins.remove(&r.member_id) {
                    let _ = tx.send(r);
                }
            }
            for (id, tx) in entry.joins.drain() {
                let _ = tx.send(error_join(&id, code::UNKNOWN_MEMBER_ID));
            }
        }
        match group.state {
            GroupState::CompletingRebalance => {}
            GroupState::Stable => {
                for (id, tx) in entry.syncs.drain() {
                    let answer = match group.assignment(&id) {
                        Some(a) => (code::NONE, a),
                        None => (code::UNKNOWN_MEMBER_ID, Bytes::new()),
                    };
                    let _ = tx.send(answer);
                }
            }
            GroupState::Empty | GroupState::PreparingRebalance => {
                for (_, tx) in entry.syncs.drain() {
                    let _ = tx.send((code::REBALANCE_IN_PROGRESS, Bytes::new()));
                }
            }
        }
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> Pending<JoinResult> {
        let now = self.now_ms();
        let mut groups = self.groups.lock();
        let entry = groups.entry(group_id.to_string()).or_default();
        let outcome = entry
            .group_with_delay(group_id, self.initial_delay_ms)
            .join(req, now);
        let pending = match outcome {
            Joined::Now(r) => Pending::Now(r),
            Joined::Wait { member_id } => {
                let (tx, rx) = oneshot::channel();
                if let Some(old) = entry.joins.insert(member_id.clone(), tx) {
                    // The client gave up on its earlier join and sent another.
                    let _ = old.send(error_join(&member_id, code::REBALANCE_IN_PROGRESS));
                }
                Pending::Later(rx)
            }
        };
        Self::settle(entry, now);
        pending
    }

    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Pending<(i16, Bytes)> {
        let now = self.now_ms();
        let mut groups = self.groups.lock();
        let Some(entry) = groups.get_mut(group_id).filter(|e| e.group.is_some()) else {
            return Pending::Now((code::UNKNOWN_MEMBER_ID, Bytes::new()));
        };
        let pending = match entry
            .group(group_id)
            .sync(member_id, generation, assignments)
        {
            Synced::Now { error, assignment } => Pending::Now((error, assignment)),
            Synced::Wait => {
                let (tx, rx) = oneshot::channel();
                entry.syncs.insert(member_id.to_string(), tx);
                Pending::Later(rx)
            }
        };
        Self::settle(entry, now);
        pending
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> i16 {
        let now = self.now_ms();
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id).and_then(|e| e.group.as_mut()) {
            Some(g) => g.heartbeat(member_id, generation, now),
            None => code::UNKNOWN_MEMBER_ID,
        }
    }

    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let now = self.now_ms();
        let mut groups = self.groups.lock();
        let Some(entry) = groups.get_mut(group_id).filter(|e| e.group.is_some()) else {
            return vec![code::UNKNOWN_MEMBER_ID; members.len()];
        };
        let out = members
            .iter()
            .map(|(m, inst)| entry.group(group_id).leave(m, inst.as_deref(), now))
            .collect();
        Self::settle(entry, now);
        out
    }

    /// Expires dead members and completes timed-out rebalances.
    pub fn tick(&self) {
        let now = self.now_ms();
        let mut groups = self.groups.lock();
        for (id, entry) in groups.iter_mut() {
            if let Some(g) = entry.group.as_mut() {
                let dead = g.expire(now);
                if !dead.is_empty() {
                    tracing::info!(group = %id, members = ?dead, "members' sessions expired");
                }
            }
            Self::settle(entry, now);
            if !entry.is_idle() {
                entry.idle_since_ms = None;
            } else if entry.idle_since_ms.is_none() {
                entry.idle_since_ms = Some(now);
            }
        }
        groups.retain(|_, e| {
            e.idle_since_ms
                .is_none_or(|since| now.saturating_sub(since) < IDLE_GROUP_KEPT_MS)
        });
    }

    /// Answers every parked request (at shutdown).
    pub fn release_all(&self, error: i16) {
        let mut groups = self.groups.lock();
        for entry in groups.values_mut() {
            for (id, tx) in entry.joins.drain() {
                let _ = tx.send(error_join(&id, error));
            }
            for (_, tx) in entry.syncs.drain() {
                let _ = tx.send((error, Bytes::new()));
            }
        }
    }

    /// Checks whether a member may commit offsets for the group.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let groups = self.groups.lock();
        let group = groups.get(group_id).and_then(|e| e.group.as_ref());
        if generation < 0 && member_id.is_empty() {
            // A commit outside group management (assign() consumers, tools):
            // allowed while no members use the group.
            return match group {
                Some(g) if g.state != GroupState::Empty => code::ILLEGAL_GENERATION,
                _ => code::NONE,
            };
        }
        let Some(g) = group else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let Some(m) = g.members().find(|m| m.id == member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if instance_id.is_some() && m.instance_id.as_deref() != instance_id {
            return code::FENCED_INSTANCE_ID;
        }
        if generation != g.generation {
            return code::ILLEGAL_GENERATION;
        }
        match g.state {
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                code::REBALANCE_IN_PROGRESS
            }
            _ => code::NONE,
        }
    }

    /// Applies persisted commits (or tombstones) to memory.
    pub fn apply(
        &self,
        group_id: &str,
        changes: Vec<(TopicPartitionKey, Option<CommittedOffset>)>,
    ) {
        let mut groups = self.groups.lock();
        let entry = groups.entry(group_id.to_string()).or_default();
        change_offsets(&mut entry.offsets, changes);
        if entry.is_idle() {
            groups.remove(group_id);
        }
    }

    /// Replays one record of the offsets topic; `txn` is the producer id
    /// of a transactional record (its offsets wait for the marker).
    pub fn replay(&self, record: OffsetsRecord, txn: Option<i64>) {
        if let OffsetsRecord::Commit {
            group,
            topic,
            partition,
            value,
        } = record
        {
            match txn {
                None => self.apply(&group, vec![((topic, partition), value)]),
                Some(pid) => self.stage_txn(&group, pid, vec![((topic, partition), value)]),
            }
        }
    }

    /// Holds offsets a transaction committed (persisted, not yet visible).
    pub fn stage_txn(
        &self,
        group_id: &str,
        producer_id: i64,
        changes: Vec<(TopicPartitionKey, Option<CommittedOffset>)>,
    ) {
        let mut groups = self.groups.lock();
        let entry = groups.entry(group_id.to_string()).or_default();
        entry
            .pending_txn
            .entry(producer_id)
            .or_default()
            .extend(changes);
    }

    /// A transaction marker for `producer_id` was written in the offsets
    /// partition of the groups `in_partition` accepts: their pending
    /// offsets become committed (`commit`) or are dropped.
    pub fn complete_txn(
        &self,
        producer_id: i64,
        commit: bool,
        in_partition: impl Fn(&str) -> bool,
    ) {
        let mut groups = self.groups.lock();
        for (id, entry) in groups.iter_mut() {
            if !in_partition(id) {
                continue;
            }
            let Some(pending) = entry.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                change_offsets(&mut entry.offsets, pending);
            }
        }
        groups.retain(|_, e| !e.is_idle());
    }

    /// Committed offsets of a group: all of them, or those asked for.
    pub fn offsets(&self, group_id: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> TopicOffsets {
        let groups = self.groups.lock();
        let offsets = groups.get(group_id).map(|e| &e.offsets);
        match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(t.clone(), p))).cloned()))
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((t, p), v) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((*p, Some(v.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let entry = groups.get(group_id)?;
        let Some(g) = entry.group.as_ref() else {
            return Some(GroupDescription {
                state: "Empty",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        Some(GroupDescription {
            state: state_name(g.state),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members()
                .map(|m| {
                    let meta = m.metadata_for(&protocol);
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        if stable { meta } else { Bytes::new() },
                        if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    )
                })
                .collect(),
        })
    }

    /// `(group id, protocol type, state)` of every known group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(id, e)| {
                let pt = e
                    .group
                    .as_ref()
                    .and_then(|g| g.protocol_type.clone())
                    .unwrap_or_default();
                (id.clone(), pt, state_name(e.state()))
            })
            .collect();
        out.sort();
        out
    }

    /// Checks a group can be deleted; returns its offsets (to tombstone).
    pub fn deletable(&self, group_id: &str) -> Result<Vec<TopicPartitionKey>, i16> {
        let groups = self.groups.lock();
        let Some(entry) = groups.get(group_id) else {
            return Err(GROUP_ID_NOT_FOUND);
        };
        if entry.state() != GroupState::Empty {
            return Err(NON_EMPTY_GROUP);
        }
        Ok(entry.offsets.keys().cloned().collect())
    }

    /// Forgets a deleted group.
    pub fn remove_group(&self, group_id: &str) {
        let mut groups = self.groups.lock();
        if groups
            .get(group_id)
            .is_some_and(|e| e.state() == GroupState::Empty)
        {
            groups.remove(group_id);
        }
    }

    /// Whether a group exists, and the topics its members subscribe to
    /// (for OffsetDelete), read from the consumer protocol's metadata.
    pub fn subscriptions(&self, group_id: &str) -> Option<(GroupState, Vec<String>)> {
        let groups = self.groups.lock();
        let entry = groups.get(group_id)?;
        let mut topics = Vec::new();
        if let Some(g) = entry.group.as_ref() {
            if g.protocol_type.as_deref() == Some("consumer") {
                for m in g.members() {
                    for (_, meta) in &m.protocols {
                        topics.extend(consumer_subscription(meta));
                    }
                }
            }
        }
        topics.sort();
        topics.dedup();
        Some((entry.state(), topics))
    }
}

fn error_join(member_id: &str, error: i16) -> JoinResult {
    JoinResult {
        error,
        generation: -1,
        protocol_type: None,
        protocol: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

/// Topics of a consumer protocol subscription: `version: i16`, then an
/// array (i32 count) of i16-length strings. Unreadable metadata yields none.
pub fn consumer_subscription(meta: &Bytes) -> Vec<String> {
    use bytes::Buf;
    let mut b = meta.clone();
    let mut out = Vec::new();
    if b.remaining() < 6 {
        return out;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize {
            break;
        }
        if let Ok(s) = String::from_utf8(b.split_to(len as usize).to_vec()) {
            out.push(s);
        }
    }
    out
}

/// `(offset, leader epoch, metadata)` as OffsetFetch reports it.
pub type CommittedOffsetView = (i64, i32, String);
