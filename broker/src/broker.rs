//! The broker: its identity, topics, hosted partitions, background tasks
//! and lifecycle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::config::dynamic::DynamicConfigs;
use crate::coordinator::group::offsets_log;
use crate::coordinator::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::error::{Error, IoContext, Result};
use crate::metadata::cluster::Cluster;
use crate::metadata::{ConfigError, MetadataStore, TopicConfigs, TopicMetadata};
use crate::metrics::Metrics;
use crate::partition::replica::{ReplicaManager, TopicPartition};
use crate::protocol::code::{
    INVALID_CONFIG, INVALID_PARTITIONS, INVALID_REQUEST, KAFKA_STORAGE_ERROR, NOT_CONTROLLER,
    UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::storage::checkpoint;
use crate::storage::log::now_ms;

const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
const HW_CHECKPOINT: &str = "replication-offset-checkpoint";
const RECOVERY_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
const LOG_START_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic could not be created, in terms that map to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidName(#[from] TopicNameError),
    #[error("Topic '{name}' collides with existing topic: {other}")]
    Collides { name: String, other: String },
    #[error("Number of partitions must be larger than 0 (and at most {max}), got {got}.")]
    InvalidPartitions { got: i32, max: i32 },
    #[error("Replication factor {got} is invalid: this cluster has {brokers} broker(s).")]
    InvalidReplicationFactor { got: i16, brokers: i16 },

    #[error("{0}")]
    InvalidConfig(#[from] ConfigError),
    #[error("{0}")]
    InvalidAssignment(#[from] crate::metadata::cluster_topics::AssignmentError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Storage(#[from] Error),
    /// The metadata quorum has no leader to take the topic now; the
    /// client retries (NOT_CONTROLLER, as Kafka answers without an active
    /// controller).
    #[error("{0}")]
    NoController(String),
    /// Not committed within the request's timeout (REQUEST_TIMED_OUT); a
    /// timeout of 0 asks for none, as Kafka's controller answers it.
    #[error("{0}")]
    TimedOut(String),
}

/// A topic creation request after defaults (-1) are resolved.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: TopicConfigs,
    /// A manual placement: one replica list per partition.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    /// The topics this broker hosts, as it keeps them in its data
    /// directory (the metadata quorum says which those are).
    pub metadata: Mutex<MetadataStore>,
    pub replicas: ReplicaManager,
    pub metrics: Metrics,
    pub groups: GroupCoordinator,
    /// Transactional ids coordinated here.
    pub txns: crate::coordinator::txn::TxnCoordinator,
    pub producer_ids: crate::coordinator::producer_ids::ProducerIdManager,
    /// Budget for fetch data in memory, in KiB permits.
    pub fetch_memory: Arc<tokio::sync::Semaphore>,
    /// The dynamic broker configs the local logs were last configured
    /// with (the metadata image holds the current ones).
    applied_dynamic: Mutex<DynamicConfigs>,
    /// Replication throttles for replicas a reassignment is adding.
    pub throttles: crate::partition::throttle::Throttles,
    /// Cancelled when the broker starts shutting down.
    pub shutdown: CancellationToken,
    /// Bumped after every pass of the materializer (partition roles may
    /// have changed): the replication loops wait on it when they have
    /// nothing to time.
    pub roles: tokio::sync::watch::Sender<u64>,
    /// TLS, SASL and the limits on failed logins, for every connection.
    pub security: crate::security::Security,
    /// Its membership in the metadata quorum.
    cluster: Arc<Cluster>,
}

/// Why a topic name is illegal, in Kafka's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("Topic name is illegal, it can't be empty")]
    Empty,
    #[error("Topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error(
        "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {0}"
    )]
    TooLong(String),
    #[error(
        "Topic name {name:?} is illegal, it contains {c:?}; legal characters are ASCII alphanumerics, '.', '_' and '-'"
    )]
    IllegalCharacter { name: String, c: char },
}

/// Checks a topic name as Kafka does: 1-249 of `[a-zA-Z0-9._-]`, not `.`
/// or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Dots);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong(name.to_string()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::IllegalCharacter {
            name: name.to_string(),
            c,
        });
    }
    Ok(())
}

/// Why committed offsets could not be written to `__consumer_offsets`.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("the offsets topic: {0}")]
    OffsetsTopic(#[from] CreateTopicError),
    #[error("{OFFSETS_TOPIC}-{0} is not hosted here")]
    NotHosted(i32),
    #[error("building the offsets batch: {0:#}")]
    Batch(anyhow::Error),
    #[error("the offsets batch is invalid: {0}")]
    Invalid(#[from] crate::storage::batch::BatchError),
    #[error("appending offsets: {0}")]
    Append(#[from] Error),
}

impl Broker {
    /// The metadata quorum as this broker takes part in it.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The cluster id clients see.
    pub fn cluster_id(&self) -> String {
        self.cluster.cluster_id.clone()
    }

    /// Opens the data directory: the topics hosted here and every
    /// partition log (recovering what an unclean stop left behind).
    pub fn open(
        config: BrokerConfig,
        cluster: Arc<Cluster>,
        security: crate::security::Security,
    ) -> Result<Arc<Self>> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let store = MetadataStore::open(&dir)?;
        let dynamic = DynamicConfigs::of(&cluster.image(), config.node_id);
        let effective = dynamic.apply(&config);
        let clean_marker = dir.join(CLEAN_SHUTDOWN);
        let clean = clean_marker.exists();
        let recovery_points = checkpoint::read_offsets(&dir.join(RECOVERY_CHECKPOINT)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "recovery-point checkpoint unreadable; recovering every segment");
            Default::default()
        });
        let log_starts = checkpoint::read_offsets(&dir.join(LOG_START_CHECKPOINT)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "log-start checkpoint unreadable; logs start at their first segment");
            Default::default()
        });
        remove_leftovers(&dir, &store)?;
        let replicas = ReplicaManager::new(&dir);
        let mut truncated = 0u64;
        for t in store.topics() {
            let log_config = t.configs.log_config(&effective);
            for p in 0..t.partitions {
                let tp = TopicPartition::new(&t.name, p);
                let key = (t.name.clone(), p);
                let rp = recovery_points.get(&key).copied().unwrap_or(0);
                let start = log_starts.get(&key).copied().unwrap_or(0);
                let report = replicas.open_partition(
                    tp.clone(),
                    t.id,
                    log_config.clone(),
                    rp,
                    clean,
                    start,
                )?;
                if report.truncated_bytes > 0 {
                    tracing::warn!(partition = %tp, bytes = report.truncated_bytes, "truncated a torn or corrupt log tail");
                }
                truncated += report.truncated_bytes;
            }
        }
        // From here on, a crash is an unclean stop.
        if clean {
            std::fs::remove_file(&clean_marker).at(&clean_marker)?;
        }
        tracing::info!(
            cluster_id = %cluster.cluster_id,
            topics = store.len(),
            partitions = replicas.len(),
            clean_shutdown = clean,
            truncated_bytes = truncated,
            "data directory loaded"
        );
        let metrics = Metrics::new();
        metrics.partitions.set(replicas.len() as i64);
        let groups = GroupCoordinator::new(config.group_initial_rebalance_delay_ms);
        let fetch_permits = (config.fetch_memory_max_bytes / 1024) as usize;
        let broker = Broker {
            security,
            config,
            metadata: Mutex::new(store),
            replicas,
            metrics,
            groups,
            txns: Default::default(),
            producer_ids: crate::coordinator::producer_ids::ProducerIdManager::open(&dir)?,
            applied_dynamic: Mutex::new(dynamic),
            throttles: crate::partition::throttle::Throttles::default(),
            fetch_memory: Arc::new(tokio::sync::Semaphore::new(fetch_permits)),
            shutdown: CancellationToken::new(),
            roles: tokio::sync::watch::channel(0).0,
            cluster,
        };
        broker.load_offsets()?;
        Ok(Arc::new(broker))
    }

    /// Rebuilds committed offsets by replaying `__consumer_offsets`.
    fn load_offsets(&self) -> Result<()> {
        let Some(meta) = self.metadata.lock().get(OFFSETS_TOPIC).cloned() else {
            return Ok(());
        };
        let mut records = 0usize;
        for p in 0..meta.partitions {
            records += self.load_offsets_partition(p)?;
        }
        tracing::info!(records, "replayed committed offsets");
        Ok(())
    }

    /// Replays one `__consumer_offsets` partition into the group
    /// coordinator, up to its log end: at start, and when this broker
    /// becomes the partition's leader (the groups' coordinator) in a
    /// cluster, where followers kept the log but not the groups.
    /// Transactional offsets wait for their transaction's marker.
    pub fn load_offsets_partition(&self, p: i32) -> Result<usize> {
        let mut records = 0usize;
        let partitions = self.ensure_offsets_topic().unwrap_or(1);
        self.replay_internal(OFFSETS_TOPIC, p, |r| {
            if r.control {
                if let Some(kind) = crate::coordinator::txn::service::marker_of(r) {
                    let commit = kind == crate::storage::batch::ControlKind::Commit;
                    self.groups.complete_txn(r.producer_id, commit, |g| {
                        offsets_log::partition_for(g, partitions) == p
                    });
                }
            } else if let Some(rec) = offsets_log::decode(r.key.as_ref(), r.value.as_ref()) {
                self.groups
                    .replay(rec, r.transactional.then_some(r.producer_id));
                records += 1;
            }
        })?;
        Ok(records)
    }

    /// Calls `f` with every record of the hosted partition `topic`-`p`,
    /// from its log start to its end.
    pub fn replay_internal(
        &self,
        topic: &str,
        p: i32,
        mut f: impl FnMut(&kafka_protocol::records::Record),
    ) -> Result<()> {
        let Some(part) = self.replicas.get(&TopicPartition::new(topic, p)) else {
            return Ok(());
        };
        let mut offset = part.offsets().log_start;
        loop {
            let (plan, _) = part.plan_read_to_end(offset)?;
            let Some(plan) = plan else { break };
            let data = plan.execute(1 << 20)?;
            if data.records.is_empty() {
                break;
            }
            let recs = crate::storage::records::decode_all(data.records).map_err(|reason| {
                Error::Corrupt {
                    path: self.config.data_dir.join(format!("{topic}-{p}")),
                    reason,
                }
            })?;
            let Some(last) = recs.last().map(|r| r.offset) else {
                break;
            };
            for r in &recs {
                f(r);
            }
            offset = last + 1;
        }
        Ok(())
    }

    /// The partition count of `__consumer_offsets`, which the Metadata
    /// and FindCoordinator paths create through the quorum on first use.
    pub fn ensure_offsets_topic(&self) -> Result<i32, CreateTopicError> {
        self.cluster
            .image()
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .ok_or_else(|| {
                CreateTopicError::Storage(Error::Metadata(
                    "the offsets topic is being created".into(),
                ))
            })
    }

    /// How `__consumer_offsets` is created. Compacted: the latest commit of
    /// every group and partition stays, superseded ones are cleaned away
    /// (see docs/decisions/0007).
    pub fn offsets_topic_spec(&self) -> Result<NewTopic, CreateTopicError> {
        let configs = TopicConfigs::from_pairs([
            ("cleanup.policy", Some("compact")),
            ("segment.bytes", Some("104857600")),
        ])?;
        // Three replicas (Kafka's default), or as many as there are
        // brokers.
        let replication_factor = self.cluster.image().live_brokers().count().clamp(1, 3) as i16;
        Ok(NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_num_partitions,
            replication_factor,
            configs,
            assignment: None,
        })
    }

    /// Appends offset records for `group` to its `__consumer_offsets`
    /// partition. Returns once they are in the log.
    pub fn persist_offsets(
        &self,
        group: &str,
        records: &[(bytes::Bytes, Option<bytes::Bytes>)],
    ) -> Result<(), PersistError> {
        if records.is_empty() {
            return Ok(());
        }
        let partitions = self.ensure_offsets_topic()?;
        let p = offsets_log::partition_for(group, partitions);
        let part = self
            .replicas
            .get(&TopicPartition::new(OFFSETS_TOPIC, p))
            .ok_or(PersistError::NotHosted(p))?;
        let batch = offsets_log::batch(records, now_ms()).map_err(PersistError::Batch)?;
        let headers = crate::storage::batch::validate_produce(&batch, usize::MAX)?;
        part.append(&batch, &headers)?;
        Ok(())
    }

    /// Records a topic and opens its partition logs: whole or not at all.
    pub fn open_topic(&self, meta: TopicMetadata) -> Result<TopicMetadata, CreateTopicError> {
        let mut store = self.metadata.lock();
        // Checked again under this lock: two creations of one name race.
        if store.get(&meta.name).is_some() {
            return Err(CreateTopicError::AlreadyExists(meta.name));
        }
        store.insert(meta.clone())?;
        let log_config = meta.configs.log_config(&self.effective_config());
        for p in 0..meta.partitions {
            let tp = TopicPartition::new(&meta.name, p);
            if let Err(e) =
                self.replicas
                    .open_partition(tp, meta.id, log_config.clone(), 0, false, 0)
            {
                // Undo: a topic exists whole or not at all.
                for q in 0..p {
                    let _ = self
                        .replicas
                        .delete_partition(&TopicPartition::new(&meta.name, q));
                }
                let _ = store.remove(&meta.name);
                return Err(e.into());
            }
        }
        drop(store);
        self.metrics.partitions.set(self.replicas.len() as i64);
        tracing::info!(topic = %meta.name, id = %meta.id, partitions = meta.partitions, "created topic");
        Ok(meta)
    }

    /// Opens this broker's partitions `current..count` of a topic and
    /// records the new count: the whole growth or none of it.
    pub(crate) fn grow_local(&self, name: &str, count: i32) -> Result<(), (i16, String)> {
        let mut store = self.metadata.lock();
        let Some(mut meta) = store.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        let old = meta.partitions;
        if count <= old {
            return Ok(());
        }
        let log_config = meta.configs.log_config(&self.effective_config());
        for p in old..count {
            let tp = TopicPartition::new(&meta.name, p);
            if let Err(e) =
                self.replicas
                    .open_partition(tp, meta.id, log_config.clone(), 0, false, 0)
            {
                for q in old..p {
                    let _ = self
                        .replicas
                        .delete_partition(&TopicPartition::new(&meta.name, q));
                }
                return Err((KAFKA_STORAGE_ERROR, format!("creating partition {p}: {e}")));
            }
        }
        meta.partitions = count;
        if let Err(e) = store.update(meta) {
            for q in old..count {
                let _ = self
                    .replicas
                    .delete_partition(&TopicPartition::new(name, q));
            }
            return Err((KAFKA_STORAGE_ERROR, e.to_string()));
        }
        drop(store);
        self.metrics.partitions.set(self.replicas.len() as i64);
        tracing::info!(topic = %name, from = old, to = count, "added partitions");
        Ok(())
    }

    /// Persists a topic's configs and applies them to its open partitions.
    pub(crate) fn set_local_configs(
        &self,
        name: &str,
        configs: TopicConfigs,
    ) -> Result<(), (i16, String)> {
        let mut store = self.metadata.lock();
        let Some(mut meta) = store.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        meta.configs = configs;
        let log_config = meta.configs.log_config(&self.effective_config());
        store
            .update(meta)
            .map_err(|e| (KAFKA_STORAGE_ERROR, e.to_string()))?;
        drop(store);
        self.replicas.reconfigure(name, &log_config);
        tracing::info!(topic = %name, "altered topic configs");
        Ok(())
    }

    /// A topic's configs as DescribeConfigs and CreateTopics show them,
    /// over this broker's static and dynamic settings.
    pub fn describe_topic_configs(
        &self,
        configs: &crate::metadata::TopicConfigs,
    ) -> Vec<crate::metadata::topic_config::Described> {
        configs.describe(&self.config, &self.dynamic())
    }

    /// This broker's dynamic settings in the current metadata image.
    pub fn dynamic(&self) -> DynamicConfigs {
        DynamicConfigs::of(&self.cluster().image(), self.config.node_id)
    }

    /// This broker's throttle rate `name` (bytes per second), `None` when
    /// unthrottled.
    pub fn throttle_rate(&self, name: &str) -> Option<u64> {
        crate::config::dynamic::rate_in(&self.cluster().image(), self.config.node_id, name)
    }

    /// The static config with the dynamic broker configs applied: the
    /// defaults every topic without its own override uses.
    pub fn effective_config(&self) -> BrokerConfig {
        self.dynamic().apply(&self.config)
    }

    /// Reconfigures every local log when this broker's dynamic settings in
    /// `img` differ from those the logs have (the materializer's step, and
    /// the broker that altered them, so that its answer follows its own
    /// change).
    pub fn apply_dynamic_configs(&self, img: &sluice_quorum::image::MetadataImage) {
        let now = DynamicConfigs::of(img, self.config.node_id);
        let mut applied = self.applied_dynamic.lock();
        if *applied == now {
            return;
        }
        let effective = now.apply(&self.config);
        let topics: Vec<TopicMetadata> = self.metadata.lock().topics().cloned().collect();
        for t in topics {
            self.replicas
                .reconfigure(&t.name, &t.configs.log_config(&effective));
        }
        tracing::info!(own = ?now.own, cluster_default = ?now.cluster_default, "applied dynamic broker configs");
        *applied = now;
    }

    /// IncrementalAlterConfigs (or AlterConfigs) on a broker resource,
    /// `""` for every broker or a broker id: checked here, written to the
    /// metadata quorum, and applied by every broker it concerns to every
    /// topic that does not override it. Returns once this broker applied it.
    pub async fn alter_broker_configs(
        &self,
        resource: &str,
        changes: &[(String, i8, Option<String>)],
        validate_only: bool,
    ) -> Result<(), crate::config::dynamic::Refusal> {
        let changes = crate::config::dynamic::checked(changes)?;
        if validate_only {
            return Ok(());
        }
        let cmd = sluice_quorum::image::Command::AlterBrokerConfigs {
            resource: resource.to_string(),
            changes: changes.clone(),
        };
        match self.cluster().write(cmd).await {
            Ok(sluice_quorum::image::Outcome::Ok) => {}
            Ok(other) => {
                return Err((
                    INVALID_REQUEST,
                    format!("refused by the metadata quorum: {other:?}"),
                ));
            }
            Err(e) => return Err((NOT_CONTROLLER, e.to_string())),
        }
        // Committed; this broker's image follows within moments.
        let applied = |img: &sluice_quorum::image::MetadataImage| {
            let now = img.broker_configs.get(resource);
            changes
                .iter()
                .all(|(name, value)| now.and_then(|m| m.get(name)) == value.as_ref())
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut img = self.cluster().image();
        while !applied(&img) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            img = self.cluster().image();
        }
        self.apply_dynamic_configs(&img);
        tracing::info!(resource, ?changes, "altered dynamic broker configs");
        Ok(())
    }

    /// Deletes a topic and its data. Returns the deleted topic, or `None`
    /// if it did not exist.
    pub fn delete_topic(&self, name: &str) -> Result<Option<TopicMetadata>> {
        let mut store = self.metadata.lock();
        let Some(meta) = store.remove(name)? else {
            return Ok(None);
        };
        drop(store);
        for p in 0..meta.partitions {
            let tp = TopicPartition::new(&meta.name, p);
            if let Err(e) = self.replicas.delete_partition(&tp) {
                tracing::warn!(partition = %tp, error = %e, "could not remove partition data");
            }
        }
        self.metrics.partitions.set(self.replicas.len() as i64);
        tracing::info!(topic = %name, "deleted topic");
        Ok(Some(meta))
    }

    /// Writes the high-watermark and recovery-point checkpoints.
    pub fn write_checkpoints(&self) -> Result<()> {
        for p in self.replicas.all() {
            if let Err(e) = p.with_log(|l| l.snapshot_producers()) {
                tracing::warn!(partition = %p.tp, error = %e, "producer state snapshot failed");
            }
        }
        let (hw, rp, ls) = self.replicas.checkpoints();
        checkpoint::write_offsets(&self.config.data_dir.join(HW_CHECKPOINT), &hw)?;
        checkpoint::write_offsets(&self.config.data_dir.join(LOG_START_CHECKPOINT), &ls)?;
        checkpoint::write_offsets(&self.config.data_dir.join(RECOVERY_CHECKPOINT), &rp)
    }

    /// The log cleaner: passes over compacted partitions, one at a time, on
    /// a blocking thread, until shutdown.
    pub async fn run_cleaner(self: Arc<Self>) {
        if !self.config.log_cleaner_enable {
            return;
        }
        let backoff = Duration::from_millis(self.config.log_cleaner_backoff_ms);
        let max_keys = (self.config.log_cleaner_dedupe_buffer_size / 24).max(1) as usize;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            let b = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || {
                for p in b.replicas.all() {
                    if b.shutdown.is_cancelled() {
                        return;
                    }
                    if !p.with_log(|l| l.config().compact) {
                        continue;
                    }
                    let mut throttle = crate::storage::cleaner::Throttle::new(
                        b.config.log_cleaner_io_max_bytes_per_second,
                    );
                    match crate::storage::cleaner::clean(p.log(), now_ms(), max_keys, &mut throttle)
                    {
                        Ok(Some(s)) => tracing::info!(
                            partition = %p.tp,
                            segments = s.segments,
                            bytes_before = s.bytes_before,
                            bytes_after = s.bytes_after,
                            records_removed = s.records_before - s.records_after,
                            "cleaned log"
                        ),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(partition = %p.tp, error = %e, "log cleaning failed")
                        }
                    }
                }
            })
            .await;
        }
    }

    /// Periodic work: flush by time, checkpoints, retention, gauges.
    pub async fn run_background(self: Arc<Self>) {
        let checkpoint_every = Duration::from_millis(self.config.checkpoint_interval_ms as u64);
        let retention_every =
            Duration::from_millis(self.config.log_retention_check_interval_ms as u64);
        let mut checkpoint_tick = tokio::time::interval(checkpoint_every);
        let mut retention_tick = tokio::time::interval(retention_every);
        let mut flush_tick = tokio::time::interval(Duration::from_millis(1000));
        let mut group_tick = tokio::time::interval(Duration::from_millis(100));
        for t in [
            &mut checkpoint_tick,
            &mut retention_tick,
            &mut flush_tick,
            &mut group_tick,
        ] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Parked JoinGroup/SyncGroup requests: NOT_COORDINATOR
                    // sends the clients to look for the coordinator again.
                    self.groups.release_all(16);
                    return;
                }
                _ = group_tick.tick() => self.groups.tick(),
                _ = flush_tick.tick() => {
                    let b = Arc::clone(&self);
                    let _ = tokio::task::spawn_blocking(move || b.flush_due()).await;
                }
                _ = checkpoint_tick.tick() => {
                    let b = Arc::clone(&self);
                    let r = tokio::task::spawn_blocking(move || b.write_checkpoints()).await;
                    if let Ok(Err(e)) = r {
                        tracing::warn!(error = %e, "writing checkpoints failed");
                    }
                }
                _ = retention_tick.tick() => {
                    let b = Arc::clone(&self);
                    let _ = tokio::task::spawn_blocking(move || b.apply_retention()).await;
                }
            }
        }
    }

    fn flush_due(&self) {
        let now = now_ms();
        for p in self.replicas.all() {
            if let Err(e) = p.with_log(|l| l.maybe_flush_by_time(now)) {
                tracing::warn!(partition = %p.tp, error = %e, "scheduled flush failed");
            }
        }
    }

    fn apply_retention(&self) {
        let now = now_ms();
        for p in self.replicas.all() {
            match p.with_log(|l| l.apply_retention(now)) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(partition = %p.tp, segments = n, "deleted segments past retention")
                }
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
    }

    /// Refreshes gauges that are cheaper to compute on scrape.
    pub fn refresh_gauges(&self) {
        let size: u64 = self
            .replicas
            .all()
            .iter()
            .map(|p| p.with_log(|l| l.size_bytes()))
            .sum();
        self.metrics.log_size_bytes.set(size as i64);
        self.metrics.partitions.set(self.replicas.len() as i64);
    }

    /// Flushes every log and writes checkpoints and the clean-shutdown
    /// marker, so the next start can skip recovery.
    pub fn close(&self) -> Result<()> {
        let mut first_error = None;
        for p in self.replicas.all() {
            if let Err(e) = p.with_log(|l| l.flush()) {
                tracing::error!(partition = %p.tp, error = %e, "flush at shutdown failed");
                first_error.get_or_insert(e);
            }
        }
        self.write_checkpoints()?;
        if let Some(e) = first_error {
            return Err(e);
        }
        let marker = self.config.data_dir.join(CLEAN_SHUTDOWN);
        checkpoint::write_atomic(&marker, b"clean\n")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }
}

/// Removes what an interrupted delete left behind, and partition
/// directories of topics the metadata does not know.
fn remove_leftovers(dir: &std::path::Path, store: &MetadataStore) -> Result<()> {
    let known: HashMap<String, ()> = store
        .topics()
        .flat_map(|t| (0..t.partitions).map(move |p| (format!("{}-{p}", t.name), ())))
        .collect();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "meta" {
            continue;
        }
        if name.ends_with("-delete")
            || (!known.contains_key(&name) && path.join("partition.metadata").exists())
        {
            tracing::info!(dir = %path.display(), "removing data of a deleted topic");
            std::fs::remove_dir_all(&path).at(&path)?;
        }
    }
    Ok(())
}

pub(crate) fn unknown_topic(name: &str) -> (i16, String) {
    (
        UNKNOWN_TOPIC_OR_PARTITION,
        format!("Topic {name} does not exist"),
    )
}

/// CreatePartitions' rule for the new count, with Kafka's messages.
pub(crate) fn check_partition_count(current: i32, count: i32) -> Result<(), (i16, String)> {
    if count <= current {
        return Err((
            INVALID_PARTITIONS,
            format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
            ),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err((
            INVALID_PARTITIONS,
            format!("{count} partitions is more than the limit of {MAX_PARTITIONS}"),
        ));
    }
    Ok(())
}

/// A topic's configs after IncrementalAlterConfigs' `(name, op, value)`
/// changes (0 set, 1 delete, 2 append, 3 subtract), validated.
pub(crate) fn altered_configs(
    current: &std::collections::BTreeMap<String, String>,
    changes: &[(String, i8, Option<String>)],
) -> Result<TopicConfigs, (i16, String)> {
    let mut map = current.clone();
    for (key, op, value) in changes {
        match op {
            0 => {
                map.insert(key.clone(), value.clone().unwrap_or_default());
            }
            1 => {
                map.remove(key);
            }
            2 | 3 => {
                // Only list-valued configs take APPEND/SUBTRACT; of those
                // supported, cleanup.policy is the one.
                if key != "cleanup.policy" {
                    return Err((
                        INVALID_CONFIG,
                        format!("Config {key} is not a list: APPEND and SUBTRACT do not apply"),
                    ));
                }
                let current = map.get(key).cloned().unwrap_or_else(|| "delete".into());
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let v = value.clone().unwrap_or_default();
                if *op == 2 {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                } else {
                    items.retain(|i| *i != v);
                }
                map.insert(key.clone(), items.join(","));
            }
            other => return Err((INVALID_CONFIG, format!("Unknown config operation {other}"))),
        }
    }
    TopicConfigs::from_pairs(map.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))
        .map_err(|e| (INVALID_CONFIG, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
