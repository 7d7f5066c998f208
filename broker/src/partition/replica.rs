//! The partitions this broker hosts: appends, reads and the notifications
//! that wake long-polling fetches.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{IoContext, Result};
use crate::storage::batch::BatchHeader;
use crate::storage::log::{OpenReport, ReadPlan, now_ms};
use crate::storage::{AppendInfo, LogConfig, PartitionLog};

/// A topic partition, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Kafka's directory name: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One offset per partition, keyed as the checkpoint files key them.
pub type OffsetMap = BTreeMap<(String, i32), i64>;

/// A partition hosted here, as its leader (the only role on one node).
#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    /// The current leader epoch: from the log on one node, from the
    /// metadata quorum in a cluster.
    leader_epoch: std::sync::atomic::AtomicI32,
    log: Mutex<PartitionLog>,
    /// Carries the high watermark; fetches wait on it.
    high_watermark: watch::Sender<i64>,
    /// Carries the log end offset; followers' fetches wait on it.
    log_end: watch::Sender<i64>,
    /// This replica's part in the partition.
    role: Mutex<Role>,
}

/// What this broker is for a partition.
#[derive(Debug)]
pub enum Role {
    /// One node: the only replica; the high watermark is the log end.
    Single,
    /// Leads, tracking followers (cluster).
    Leader(sluice_replication::leader::LeaderState),
    /// Follows `leader` in `leader_epoch`; `truncated` once the log was cut
    /// back to the end of the last epoch it shares with the leader.
    Follower {
        leader: i32,
        leader_epoch: i32,
        truncated: bool,
    },
    /// In the metadata, but not led by anyone reachable (no leader).
    Offline,
}

/// Offsets a reader needs alongside data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    /// The last stable offset: the high watermark, or the first offset of
    /// the earliest open transaction if that is lower. `read_committed`
    /// consumers read up to it.
    pub last_stable: i64,
}

/// The offsets of a partition's log under its lock, with the published
/// high watermark.
fn offsets_of(log: &PartitionLog, hw: i64) -> Offsets {
    Offsets {
        log_start: log.log_start_offset(),
        high_watermark: hw,
        log_end: log.log_end_offset(),
        last_stable: log.first_unstable_offset().map_or(hw, |f| f.min(hw)),
    }
}

/// Aborted transactions a read may hold: `(producer id, first offset)`.
pub type AbortedList = Vec<(i64, i64)>;

/// What a consumer reads up to (Fetch's and ListOffsets' isolation level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The high watermark.
    ReadUncommitted,
    /// The last stable offset, with the aborted transactions in the range.
    ReadCommitted,
}

impl Isolation {
    pub fn of(level: i8) -> Self {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

impl Partition {
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the leader epoch the metadata assigned (never goes back).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch
            .fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether this replica has taken the leadership the metadata gave it.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.lock(), Role::Leader(_))
    }

    pub fn append(&self, records: &[u8], headers: &[BatchHeader]) -> Result<AppendInfo> {
        let mut log = self.log.lock();
        let info = log.append_as_leader(records, headers, self.leader_epoch(), now_ms())?;
        if info.duplicate {
            return Ok(info);
        }
        let end = log.log_end_offset();
        drop(log);
        self.log_end.send_replace(end);
        let hw = match &mut *self.role.lock() {
            Role::Leader(state) => {
                state.on_append(end);
                state.hw
            }
            // One replica: the ISR is this broker, so the high watermark
            // follows the log end at once.
            _ => end,
        };
        self.publish_hw(hw);
        Ok(info)
    }

    /// Moves the published high watermark forward (never back, except
    /// through `reset_hw`).
    fn publish_hw(&self, hw: i64) {
        self.high_watermark.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// Sets the high watermark (a follower that truncated below it).
    fn reset_hw(&self, hw: i64) {
        self.high_watermark.send_replace(hw);
    }

    /// The log end offset, followed by followers' long polls.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// The role, for reading.
    pub fn with_role<T>(&self, f: impl FnOnce(&mut Role) -> T) -> T {
        f(&mut self.role.lock())
    }

    /// Becomes leader at `leader_epoch` (idempotent for the same epoch:
    /// then only the ISR and partition epoch are taken). True when this
    /// call made it the leader.
    pub fn become_leader(
        &self,
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        lag_max_ms: u64,
    ) -> bool {
        self.set_leader_epoch(leader_epoch);
        let mut role = self.role.lock();
        if let Role::Leader(s) = &mut *role {
            if s.leader_epoch == leader_epoch {
                if s.partition_epoch < partition_epoch {
                    if s.replicas != replicas {
                        s.set_replicas(replicas, now_ms() as u64);
                    }
                    s.on_isr_committed(isr, partition_epoch);
                    let hw = s.hw;
                    drop(role);
                    self.publish_hw(hw);
                }
                return false;
            }
        }
        let (leo, min_isr) = {
            let mut log = self.log.lock();
            let leo = log.log_end_offset();
            // The new epoch starts at the log end, as Kafka records it.
            if let Err(e) = log.assign_leader_epoch(leader_epoch, leo) {
                tracing::warn!(partition = %self.tp, error = %e, "recording the leader epoch");
            }
            (leo, log.config().min_insync_replicas.max(1) as usize)
        };
        let hw = *self.high_watermark.borrow();
        let state = sluice_replication::leader::LeaderState::new(
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            leo,
            hw,
            now_ms() as u64,
            lag_max_ms,
            min_isr,
        );
        let hw = state.hw;
        *role = Role::Leader(state);
        drop(role);
        self.publish_hw(hw);
        tracing::info!(partition = %self.tp, leader_epoch, "leading");
        true
    }

    /// Follows `leader` at `leader_epoch` (idempotent for the same one).
    pub fn become_follower(&self, leader: i32, leader_epoch: i32) {
        self.set_leader_epoch(leader_epoch);
        let mut role = self.role.lock();
        if let Role::Follower {
            leader_epoch: e, ..
        } = &*role
        {
            if *e == leader_epoch {
                return;
            }
        }
        *role = Role::Follower {
            leader,
            leader_epoch,
            truncated: false,
        };
        tracing::info!(partition = %self.tp, leader, leader_epoch, "following");
    }

    /// Drops every record and restarts the log at `offset` (see
    /// `PartitionLog::truncate_fully_and_start_at`), if the role is still
    /// the one `expected` accepts: leadership may have moved while the
    /// caller looked elsewhere. Returns whether it did.
    pub fn reset_log(&self, offset: i64, expected: impl FnOnce(&Role) -> bool) -> Result<bool> {
        let role = self.role.lock();
        if !expected(&role) {
            return Ok(false);
        }
        let mut log = self.log.lock();
        log.truncate_fully_and_start_at(offset)?;
        drop(log);
        drop(role);
        self.log_end.send_replace(offset);
        self.reset_hw(offset);
        Ok(true)
    }

    /// Whether the log holds any record.
    pub fn has_records(&self) -> bool {
        let log = self.log.lock();
        log.log_end_offset() > log.log_start_offset()
    }

    pub fn become_offline(&self) {
        *self.role.lock() = Role::Offline;
    }

    /// A follower's fetch reached this leader at `fetch_offset`: its
    /// progress moves the high watermark, and may call for an ISR change.
    pub fn on_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
    ) -> Option<(sluice_replication::leader::IsrChange, i32)> {
        let mut role = self.role.lock();
        let Role::Leader(s) = &mut *role else {
            return None;
        };
        let change = s.on_fetch(follower, fetch_offset, now_ms() as u64);
        let (hw, epoch) = (s.hw, s.leader_epoch);
        drop(role);
        self.publish_hw(hw);
        change.map(|c| (c, epoch))
    }

    /// A follower truncates to `offset` (the end of the last epoch it
    /// shares with the leader) before it fetches. Nothing happens, and
    /// `false` comes back, unless this replica still follows `leader` at
    /// `leader_epoch`: an answer that arrives after leadership moved (this
    /// replica may lead now) must not cut the log.
    pub fn truncate_for_leader(&self, leader: i32, leader_epoch: i32, offset: i64) -> Result<bool> {
        let mut role = self.role.lock();
        let Role::Follower {
            leader: l,
            leader_epoch: e,
            truncated,
        } = &mut *role
        else {
            return Ok(false);
        };
        if (*l, *e) != (leader, leader_epoch) {
            return Ok(false);
        }
        let mut log = self.log.lock();
        let target = offset.min(log.log_end_offset());
        log.truncate_to(target)?;
        let end = log.log_end_offset();
        drop(log);
        *truncated = true;
        drop(role);
        self.log_end.send_replace(end);
        let hw = (*self.high_watermark.borrow()).min(end);
        self.reset_hw(hw);
        Ok(true)
    }

    /// A follower appends what it fetched and takes the leader's high
    /// watermark (up to its own log end), if it still follows `leader` at
    /// `leader_epoch` (see `truncate_for_leader`). Returns whether it did.
    pub fn append_replicated(
        &self,
        leader: i32,
        leader_epoch: i32,
        records: &[u8],
        headers: &[BatchHeader],
        leader_hw: i64,
    ) -> Result<bool> {
        let role = self.role.lock();
        if !follows(&role, leader, leader_epoch) {
            return Ok(false);
        }
        let mut log = self.log.lock();
        log.append_replicated(records, headers, now_ms())?;
        let end = log.log_end_offset();
        drop(log);
        drop(role);
        self.log_end.send_replace(end);
        self.publish_hw(leader_hw.min(end));
        Ok(true)
    }

    /// Whether an `acks=all` write ending at `end_offset` may be answered.
    /// `None` once this broker no longer leads the partition.
    pub fn ack_state(&self, end_offset: i64) -> Option<sluice_replication::leader::AckState> {
        match &*self.role.lock() {
            Role::Leader(s) => Some(s.ack_state(end_offset)),
            Role::Single => Some(sluice_replication::leader::AckState::Done),
            _ => None,
        }
    }

    /// May an `acks=all` write be appended now (ISR at least
    /// `min.insync.replicas`)?
    pub fn can_append_acks_all(&self) -> bool {
        match &*self.role.lock() {
            Role::Leader(s) => s.can_append_acks_all(),
            Role::Single => true,
            _ => false,
        }
    }

    /// Reads up to the log end (for followers), not the high watermark.
    pub fn plan_read_to_end(&self, offset: i64) -> Result<(Option<ReadPlan>, Offsets)> {
        let log = self.log.lock();
        let end = log.log_end_offset();
        let plan = log.plan_read(offset, end)?;
        Ok((plan, offsets_of(&log, *self.high_watermark.borrow())))
    }

    pub fn offsets(&self) -> Offsets {
        let log = self.log.lock();
        offsets_of(&log, *self.high_watermark.borrow())
    }

    /// Plans a consumer's read below the high watermark, or below the last
    /// stable offset with the aborted transactions `(producer id, first
    /// offset)` whose records the read may hold (the lock is held only
    /// here). The aborted list is read up to the plan's end, which the
    /// data read later never passes.
    pub fn plan_read(
        &self,
        offset: i64,
        isolation: Isolation,
    ) -> Result<(Option<ReadPlan>, Offsets, AbortedList)> {
        let log = self.log.lock();
        let offsets = offsets_of(&log, *self.high_watermark.borrow());
        let upper = match isolation {
            Isolation::ReadUncommitted => offsets.high_watermark,
            Isolation::ReadCommitted => offsets.last_stable,
        };
        let plan = log.plan_read(offset, upper)?;
        let aborted = match (isolation, &plan) {
            (Isolation::ReadCommitted, Some(_)) => log.aborted_between(offset, upper),
            _ => Vec::new(),
        };
        Ok((plan, offsets, aborted))
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn with_log<T>(&self, f: impl FnOnce(&mut PartitionLog) -> T) -> T {
        f(&mut self.log.lock())
    }

    /// DeleteRecords up to `offset` (-1: the high watermark).
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        let hw = *self.high_watermark.borrow();
        let target = if offset == -1 { hw } else { offset };
        self.log.lock().delete_records_before(target, hw)
    }

    /// The log, for the cleaner (which takes the lock only briefly).
    pub fn log(&self) -> &Mutex<PartitionLog> {
        &self.log
    }

    /// The partition's effective log settings (one lock, no allocation).
    pub fn config(&self) -> LogConfig {
        self.log.lock().config().clone()
    }
}

/// Owns every hosted partition.
#[derive(Debug)]
pub struct ReplicaManager {
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

const PARTITION_METADATA: &str = "partition.metadata";

impl ReplicaManager {
    pub fn new(data_dir: &Path) -> Self {
        ReplicaManager {
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().get(tp).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.partitions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.read().is_empty()
    }

    /// Opens (creating if needed) a partition's log and starts hosting it.
    pub fn open_partition(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        recovery_point: i64,
        clean: bool,
        log_start: i64,
    ) -> Result<OpenReport> {
        let dir = self.data_dir.join(tp.dir_name());
        let (log, report) = PartitionLog::open_with_start(
            &dir,
            config,
            recovery_point,
            clean,
            now_ms(),
            log_start,
        )?;
        write_partition_metadata(&dir, topic_id)?;
        let end = log.log_end_offset();
        let leader_epoch = log.latest_epoch().unwrap_or(0).max(0);
        let (tx, _) = watch::channel(end);
        let (end_tx, _) = watch::channel(end);
        let partition = Arc::new(Partition {
            tp: tp.clone(),
            topic_id,
            leader_epoch: std::sync::atomic::AtomicI32::new(leader_epoch),
            log: Mutex::new(log),
            high_watermark: tx,
            log_end: end_tx,
            role: Mutex::new(Role::Single),
        });
        self.partitions.write().insert(tp, partition);
        Ok(report)
    }

    /// Stops hosting a partition and deletes its data. The directory is
    /// renamed first so a crash mid-delete leaves nothing that looks live.
    pub fn delete_partition(&self, tp: &TopicPartition) -> Result<()> {
        let Some(p) = self.partitions.write().remove(tp) else {
            return Ok(());
        };
        // Wake any waiting fetch so it notices the partition is gone.
        p.high_watermark.send_modify(|_| {});
        let dir = self.data_dir.join(tp.dir_name());
        let doomed = self.data_dir.join(format!(
            "{}.{}-delete",
            tp.dir_name(),
            Uuid::new_v4().simple()
        ));
        if dir.exists() {
            std::fs::rename(&dir, &doomed).at(&dir)?;
            std::fs::remove_dir_all(&doomed).at(&doomed)?;
        }
        Ok(())
    }

    /// Updates every hosted partition of `topic` with a new log config.
    pub fn reconfigure(&self, topic: &str, config: &LogConfig) {
        for p in self
            .partitions
            .read()
            .values()
            .filter(|p| p.tp.topic == topic)
        {
            p.with_log(|l| l.set_config(config.clone()));
        }
    }

    /// High watermarks and recovery points of every partition, for the
    /// data-directory checkpoints.
    pub fn checkpoints(&self) -> (OffsetMap, OffsetMap, OffsetMap) {
        let mut hw = BTreeMap::new();
        let mut rp = BTreeMap::new();
        let mut ls = BTreeMap::new();
        for p in self.all() {
            let key = (p.tp.topic.clone(), p.tp.partition);
            hw.insert(key.clone(), *p.high_watermark.borrow());
            let (recovery, start) = p.with_log(|l| (l.recovery_point(), l.log_start_offset()));
            rp.insert(key.clone(), recovery);
            ls.insert(key, start);
        }
        (hw, rp, ls)
    }
}

fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<()> {
    use base64::Engine;
    let path = dir.join(PARTITION_METADATA);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic_id.as_bytes());
    let text = format!("version: 0\ntopic_id: {id}\n");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    crate::storage::checkpoint::write_atomic(&path, text.as_bytes())
}

/// Whether `role` follows `leader` at `leader_epoch`.
pub fn follows(role: &Role, leader: i32, leader_epoch: i32) -> bool {
    matches!(role, Role::Follower { leader: l, leader_epoch: e, .. } if (*l, *e) == (leader, leader_epoch))
}
