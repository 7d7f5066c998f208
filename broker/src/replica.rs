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
}

/// Offsets a reader needs alongside data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
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

    pub fn append(&self, records: &[u8], headers: &[BatchHeader]) -> Result<AppendInfo> {
        let mut log = self.log.lock();
        let info = log.append_as_leader(records, headers, self.leader_epoch(), now_ms())?;
        if info.duplicate {
            return Ok(info);
        }
        // One replica: the ISR is this broker, so the high watermark
        // follows the log end at once.
        let end = log.log_end_offset();
        drop(log);
        self.high_watermark.send_replace(end);
        Ok(info)
    }

    pub fn offsets(&self) -> Offsets {
        let log = self.log.lock();
        Offsets {
            log_start: log.log_start_offset(),
            high_watermark: *self.high_watermark.borrow(),
            log_end: log.log_end_offset(),
        }
    }

    /// Plans a read below the high watermark (the lock is held only here).
    pub fn plan_read(&self, offset: i64) -> Result<(Option<ReadPlan>, Offsets)> {
        let log = self.log.lock();
        let hw = *self.high_watermark.borrow();
        let plan = log.plan_read(offset, hw)?;
        let offsets = Offsets {
            log_start: log.log_start_offset(),
            high_watermark: hw,
            log_end: log.log_end_offset(),
        };
        Ok((plan, offsets))
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
        let partition = Arc::new(Partition {
            tp: tp.clone(),
            topic_id,
            leader_epoch: std::sync::atomic::AtomicI32::new(leader_epoch),
            log: Mutex::new(log),
            high_watermark: tx,
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
