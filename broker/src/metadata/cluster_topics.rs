//! Topics in a cluster: created, grown and deleted through the metadata
//! quorum, with replicas placed across the live brokers; each broker then
//! materializes the partitions it hosts from the metadata image.
//!
//! Partitions are replicated: followers fetch from the leader
//! (`crate::partition::replication`), and the leader answers `acks=all` once every
//! in-sync replica has the write.

use std::sync::Arc;

use sluice_quorum::image::{Command, MetadataImage, Outcome, Refusal};
use sluice_quorum::placement::{self, Candidate, PlacementError};
use uuid::Uuid;

use crate::broker::{
    Broker, CreateTopicError, MAX_PARTITIONS, NewTopic, altered_configs, check_partition_count,
    unknown_topic, validate_topic_name,
};
use crate::metadata::{TopicConfigs, TopicMetadata};
use crate::partition::replica::TopicPartition;
use crate::protocol::code::{
    COORDINATOR_NOT_AVAILABLE, INVALID_CONFIG, INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT,
    INVALID_REPLICATION_FACTOR, NOT_CONTROLLER, NOT_COORDINATOR, NOT_LEADER_OR_FOLLOWER,
    UNKNOWN_TOPIC_OR_PARTITION,
};

/// A topic of the metadata image in the local store's terms.
pub(crate) fn topic_metadata(name: &str, t: &sluice_quorum::image::TopicState) -> TopicMetadata {
    TopicMetadata {
        name: name.to_string(),
        id: Uuid::from_bytes(t.id),
        partitions: t.partitions.len() as i32,
        replication_factor: t.partitions.first().map_or(1, |p| p.replicas.len() as i16),
        configs: TopicConfigs(t.configs.clone()),
    }
}

/// Writes a change of topic `name` to the quorum: an unknown topic is
/// UNKNOWN_TOPIC_OR_PARTITION, another refusal `refused`, no quorum leader
/// NOT_CONTROLLER (retriable).
async fn write_topic_change(
    cluster: &crate::metadata::cluster::Cluster,
    cmd: Command,
    name: &str,
    refused: i16,
) -> Result<(), (i16, String)> {
    match cluster.write(cmd).await {
        Ok(Outcome::Ok) => Ok(()),
        Ok(Outcome::Refused(Refusal::UnknownTopic(_))) => Err(unknown_topic(name)),
        Ok(other) => Err((refused, format!("the quorum refused it: {other:?}"))),
        Err(e) => Err((
            NOT_CONTROLLER,
            format!("{e}; try again when the metadata quorum has a leader"),
        )),
    }
}

/// One replica list per added partition, as Kafka checks it first.
pub(crate) fn check_assignment_count(
    assignment: &[Vec<i32>],
    added: usize,
) -> Result<(), (i16, String)> {
    if assignment.len() == added {
        return Ok(());
    }
    Err((
        INVALID_REPLICA_ASSIGNMENT,
        format!(
            "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
            assignment.len()
        ),
    ))
}

/// A manual CreatePartitions assignment: one list per new partition, of
/// the topic's replication factor, registered brokers, none twice (Kafka's
/// checks and messages).
fn check_assignment(
    img: &MetadataImage,
    assignment: &[Vec<i32>],
    added: usize,
    rf: usize,
) -> Result<(), (i16, String)> {
    let invalid = |m: String| Err((INVALID_REPLICA_ASSIGNMENT, m));
    check_assignment_count(assignment, added)?;
    for rs in assignment {
        if rs.len() != rf {
            return invalid(format!(
                "Inconsistent replication factor between partitions: the topic has {rf}, an assignment has {}.",
                rs.len()
            ));
        }
        let mut seen = rs.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != rs.len() {
            return invalid(format!(
                "Duplicate brokers not allowed in replica assignment: {rs:?}."
            ));
        }
        if let Some(b) = rs.iter().find(|b| !img.brokers.contains_key(b)) {
            return invalid(format!("Unknown broker(s) in replica assignment: {b}."));
        }
    }
    Ok(())
}

/// Why CreateTopics' manual assignment is refused, in Kafka's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("partitions should be a consecutive 0-based integer sequence")]
    NotASequence,
    #[error("The manual partition assignment includes an empty replica list.")]
    Empty,
    #[error(
        "The manual partition assignment includes broker {0}, but no such broker is registered."
    )]
    Unregistered(i32),
    #[error("The manual partition assignment includes the broker {0} more than once.")]
    Twice(i32),
    #[error(
        "The manual partition assignment includes a partition with {got} replica(s), but this is not consistent with previous partitions, which have {first} replica(s)."
    )]
    Uneven { got: usize, first: usize },
}

/// CreateTopics' manual assignment, with Kafka's checks and messages:
/// every list non-empty, of registered brokers, none twice, all as long as
/// the first.
fn check_manual_assignment(
    img: &MetadataImage,
    assignment: &[Vec<i32>],
) -> Result<(), AssignmentError> {
    let rf = assignment.first().map_or(0, Vec::len);
    for rs in assignment {
        if rs.is_empty() {
            return Err(AssignmentError::Empty);
        }
        let mut sorted = rs.clone();
        sorted.sort_unstable();
        for (i, b) in sorted.iter().enumerate() {
            if !img.brokers.contains_key(b) {
                return Err(AssignmentError::Unregistered(*b));
            }
            if i > 0 && sorted[i - 1] == *b {
                return Err(AssignmentError::Twice(*b));
            }
        }
        if rs.len() != rf {
            return Err(AssignmentError::Uneven {
                got: rs.len(),
                first: rf,
            });
        }
    }
    Ok(())
}

/// The internal topics whose partition leaders coordinate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    /// `__consumer_offsets`: groups.
    Offsets,
    /// `__transaction_state`: transactional ids.
    Transactions,
}

impl Internal {
    pub fn topic(self) -> &'static str {
        match self {
            Internal::Offsets => crate::coordinator::group::OFFSETS_TOPIC,
            Internal::Transactions => crate::coordinator::txn::TXN_TOPIC,
        }
    }
}

impl Broker {
    /// Where `group` is coordinated: the leader of its `__consumer_offsets`
    /// partition, as `(node id, host, port)` on `listener`, or the error
    /// to answer (the offsets topic is created through the quorum on first
    /// use).
    pub fn group_coordinator(
        self: &Arc<Self>,
        group: &str,
        listener: &str,
    ) -> Result<(i32, String, i32), i16> {
        self.coordinator_node(Internal::Offsets, group, listener)
    }

    /// Where the coordinator of `key` in the internal topic `internal`
    /// is: the leader of the key's partition, created on first use.
    pub fn coordinator_node(
        self: &Arc<Self>,
        internal: Internal,
        key: &str,
        listener: &str,
    ) -> Result<(i32, String, i32), i16> {
        let img = self.cluster().image();
        let Some(t) = img.topics.get(internal.topic()) else {
            let b = Arc::clone(self);
            tokio::spawn(async move {
                let spec = match internal {
                    Internal::Offsets => b.offsets_topic_spec(),
                    Internal::Transactions => crate::coordinator::txn::service::topic_spec(&b),
                };
                if let Ok(spec) = spec {
                    match b
                        .create_topic(spec, false, crate::metadata::cluster::WRITE_TIMEOUT)
                        .await
                    {
                        Ok(_) | Err(CreateTopicError::AlreadyExists(_)) => {}
                        Err(e) => {
                            tracing::warn!(topic = internal.topic(), error = %e, "creating an internal topic")
                        }
                    }
                }
            });
            return Err(COORDINATOR_NOT_AVAILABLE);
        };
        let p =
            crate::coordinator::group::offsets_log::partition_for(key, t.partitions.len() as i32);
        let leader = usize::try_from(p)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .map_or(-1, |p| p.leader);
        let Some(b) = img.brokers.get(&leader).filter(|b| !b.fenced) else {
            return Err(COORDINATOR_NOT_AVAILABLE);
        };
        let Some(address) = b.endpoint(listener) else {
            return Err(COORDINATOR_NOT_AVAILABLE);
        };
        let (host, port) = crate::handlers::metadata::split(address);
        Ok((b.id, host, port))
    }

    /// `None` when this broker coordinates `group`, else the error to answer.
    pub fn coordinator_error(&self, group: &str) -> Option<i16> {
        self.coordinated_here(Internal::Offsets, group).err()
    }

    /// The partition of the internal topic holding `key` when this broker
    /// leads it (and so coordinates the key), else the error to answer.
    pub fn coordinated_here(
        &self,
        internal: Internal,
        key: &str,
    ) -> Result<(i32, Arc<crate::partition::replica::Partition>), i16> {
        let img = self.cluster().image();
        let Some(t) = img.topics.get(internal.topic()) else {
            return Err(COORDINATOR_NOT_AVAILABLE);
        };
        let p =
            crate::coordinator::group::offsets_log::partition_for(key, t.partitions.len() as i32);
        let leads = usize::try_from(p)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .is_some_and(|p| p.leader == self.config.node_id);
        let local = self.replicas.get(&TopicPartition::new(internal.topic(), p));
        match (leads, local) {
            (true, Some(part)) => Ok((p, part)),
            (true, None) => Err(COORDINATOR_NOT_AVAILABLE),
            (false, _) => Err(NOT_COORDINATOR),
        }
    }

    /// A topic as the cluster knows it, from the metadata image: every
    /// broker answers for every topic, hosted here or not.
    pub fn topic_metadata_anywhere(&self, name: &str) -> Option<TopicMetadata> {
        self.cluster()
            .image()
            .topics
            .get(name)
            .map(|t| topic_metadata(name, t))
    }

    /// The partition, if this broker leads it; else the Kafka error code a
    /// client gets (UNKNOWN_TOPIC_OR_PARTITION, or NOT_LEADER_OR_FOLLOWER
    /// so that it refreshes its metadata and goes to the leader).
    pub fn led_partition(
        &self,
        tp: &TopicPartition,
    ) -> Result<Arc<crate::partition::replica::Partition>, i16> {
        let Some(p) = self.cluster().partition(&tp.topic, tp.partition) else {
            return Err(UNKNOWN_TOPIC_OR_PARTITION);
        };
        if p.leader != self.config.node_id {
            return Err(NOT_LEADER_OR_FOLLOWER);
        }
        // Led here by the metadata, not opened yet: the client retries.
        self.replicas.get(tp).ok_or(NOT_LEADER_OR_FOLLOWER)
    }

    /// CreateTopics: validated, placed on the live brokers (or as the
    /// request's assignment says), then written to the quorum.
    pub async fn create_topic(
        &self,
        t: NewTopic,
        validate_only: bool,
        timeout: std::time::Duration,
    ) -> Result<TopicMetadata, CreateTopicError> {
        let cluster = self.cluster();
        validate_topic_name(&t.name)?;
        if t.partitions < 1 || t.partitions > MAX_PARTITIONS {
            return Err(CreateTopicError::InvalidPartitions {
                got: t.partitions,
                max: MAX_PARTITIONS,
            });
        }
        let img = cluster.image();
        let live: Vec<Candidate> = img
            .live_brokers()
            .map(|b| Candidate {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect();
        if t.assignment.is_none() && t.replication_factor < 1 {
            return Err(CreateTopicError::InvalidReplicationFactor {
                got: t.replication_factor,
                brokers: live.len() as i16,
            });
        }
        if img.topics.contains_key(&t.name) {
            return Err(CreateTopicError::AlreadyExists(t.name));
        }
        let folded = t.name.replace('.', "_");
        if let Some(other) = img.topics.keys().find(|o| o.replace('.', "_") == folded) {
            return Err(CreateTopicError::Collides {
                name: t.name.clone(),
                other: other.clone(),
            });
        }
        let assignment = match t.assignment.clone() {
            Some(a) => {
                check_manual_assignment(&img, &a)?;
                a
            }
            None => {
                let start = (Uuid::new_v4().as_u128() % 1_000_003) as usize;
                placement::assign(
                    &live,
                    t.partitions as usize,
                    t.replication_factor as usize,
                    0,
                    start,
                )
                .map_err(|e| match e {
                    PlacementError::NotEnoughBrokers { rf, brokers } => {
                        CreateTopicError::InvalidReplicationFactor {
                            got: rf as i16,
                            brokers: brokers as i16,
                        }
                    }
                    PlacementError::ZeroReplicationFactor => {
                        CreateTopicError::InvalidReplicationFactor {
                            got: 0,
                            brokers: live.len() as i16,
                        }
                    }
                })?
            }
        };
        let id = Uuid::new_v4();
        let meta = TopicMetadata {
            name: t.name.clone(),
            id,
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            configs: t.configs.clone(),
        };
        if validate_only {
            return Ok(meta);
        }
        let cmd = Command::CreateTopic {
            name: t.name.clone(),
            id: *id.as_bytes(),
            assignment,
            configs: t.configs.0.clone(),
        };
        let written = cluster
            .write_within(cmd, timeout)
            .await
            .map_err(|e| match e {
                crate::error::Error::QuorumTimeout { .. } => {
                    CreateTopicError::TimedOut(e.to_string())
                }
                e => CreateTopicError::NoController(format!(
                    "{e}; try again when the metadata quorum has a leader"
                )),
            })?;
        match written {
            Outcome::Ok => {
                tracing::info!(topic = %t.name, %id, partitions = t.partitions, "created topic through the quorum");
                self.wait_hosted(&t.name).await;
                Ok(meta)
            }
            Outcome::Refused(Refusal::TopicExists(n)) => Err(CreateTopicError::AlreadyExists(n)),
            other => Err(CreateTopicError::Storage(crate::error::Error::Metadata(
                format!("the quorum refused the topic: {other:?}"),
            ))),
        }
    }

    /// CreatePartitions: grows a topic to `count` partitions, placed on the
    /// live brokers or as `assignment` says (one replica list per new
    /// partition); in a cluster through the quorum.
    pub async fn grow_topic(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let cluster = self.cluster();
        let img = cluster.image();
        let Some(t) = img.topics.get(name) else {
            return Err(unknown_topic(name));
        };
        let current = t.partitions.len() as i32;
        check_partition_count(current, count)?;
        // The topic's replication factor: its first partition's replica
        // set once a move in progress ends.
        let rf = t.partitions.first().map_or(1, |p| {
            p.replicas
                .iter()
                .filter(|r| !p.removing_replicas.contains(r))
                .count()
        });
        let added = (count - current) as usize;
        let assignment = match assignment {
            Some(a) => {
                check_assignment(&img, &a, added, rf)?;
                a
            }
            None => {
                let live: Vec<Candidate> = img
                    .live_brokers()
                    .map(|b| Candidate {
                        id: b.id,
                        rack: b.rack.clone(),
                    })
                    .collect();
                let start = (Uuid::new_v4().as_u128() % 1_000_003) as usize;
                placement::assign(&live, added, rf, current as usize, start).map_err(|e| {
                    (
                        INVALID_REPLICATION_FACTOR,
                        match e {
                            PlacementError::NotEnoughBrokers { rf, brokers } => format!(
                                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered."
                            ),
                            PlacementError::ZeroReplicationFactor => {
                                format!("topic {name} has no replicas to copy")
                            }
                        },
                    )
                })?
            }
        };
        if validate_only {
            return Ok(());
        }
        let cmd = Command::CreatePartitions {
            name: name.to_string(),
            id: t.id,
            expected_count: t.partitions.len(),
            assignment,
        };
        write_topic_change(cluster, cmd, name, INVALID_PARTITIONS).await?;
        tracing::info!(topic = %name, from = current, to = count, "added partitions through the quorum");
        self.wait_hosted(name).await;
        Ok(())
    }

    /// The names of the configs `name` sets itself (its overrides).
    pub fn topic_overrides(&self, name: &str) -> Option<Vec<String>> {
        let img = self.cluster().image();
        img.topics
            .get(name)
            .map(|t| t.configs.keys().cloned().collect())
    }

    /// IncrementalAlterConfigs on a topic: `(name, op, value)` changes,
    /// validated, then persisted and applied by every broker that hosts it
    /// (in a cluster through the quorum).
    pub async fn alter_topic(
        &self,
        name: &str,
        changes: &[(String, i8, Option<String>)],
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let cluster = self.cluster();
        let img = cluster.image();
        let Some(t) = img.topics.get(name) else {
            return Err(unknown_topic(name));
        };
        let configs = altered_configs(&t.configs, changes)?;
        if validate_only {
            return Ok(());
        }
        let cmd = Command::AlterTopicConfigs {
            name: name.to_string(),
            id: t.id,
            configs: configs.0,
        };
        write_topic_change(cluster, cmd, name, INVALID_CONFIG).await?;
        tracing::info!(topic = %name, "altered topic configs through the quorum");
        Ok(())
    }

    /// DeleteTopics, through the quorum: `None` when there is no such
    /// topic.
    pub async fn remove_topic(&self, name: &str) -> crate::error::Result<Option<TopicMetadata>> {
        let cluster = self.cluster();
        let Some(meta) = cluster
            .image()
            .topics
            .get(name)
            .map(|t| topic_metadata(name, t))
        else {
            return Ok(None);
        };
        match cluster
            .write(Command::DeleteTopic {
                name: name.to_string(),
            })
            .await?
        {
            Outcome::Ok => {
                // This broker's replicas go as it applies the deletion:
                // waited for (up to two seconds), so that a client that
                // creates the topic again here, right after, starts on
                // an empty log. Other brokers follow as they apply it.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                while self
                    .metadata
                    .lock()
                    .get(name)
                    .is_some_and(|t| t.id == meta.id)
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Ok(Some(meta))
            }
            _ => Ok(None),
        }
    }

    /// Whether this broker serves the replicas of topic `name` that `t`
    /// (its state in the current image) places here: the partitions
    /// opened, those it leads led.
    fn serves(&self, name: &str, t: &sluice_quorum::image::TopicState) -> bool {
        let me = self.config.node_id;
        t.partitions.iter().enumerate().all(|(i, p)| {
            let tp = TopicPartition::new(name, i as i32);
            if p.leader == me {
                self.led_partition(&tp).is_ok_and(|p| p.is_leader())
            } else {
                !p.replicas.contains(&me) || self.replicas.get(&tp).is_some()
            }
        })
    }

    /// Waits, up to `limit`, until this broker serves what the image
    /// places on it, of topic `name` or (`None`) of every topic: a client
    /// that produces to the broker right after it answered a topic change,
    /// or right after it began to serve, finds its partitions led. Other
    /// brokers follow as they apply the change; clients retry there
    /// (NOT_LEADER_OR_FOLLOWER).
    pub async fn wait_served(&self, name: Option<&str>, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let img = self.cluster().image();
            let ready = match name {
                Some(n) => img.topics.get(n).is_none_or(|t| self.serves(n, t)),
                None => img.topics.iter().all(|(n, t)| self.serves(n, t)),
            };
            if ready || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// [`Broker::wait_served`] for one topic, up to two seconds.
    pub async fn wait_hosted(&self, name: &str) {
        self.wait_served(Some(name), std::time::Duration::from_secs(2))
            .await;
    }

    /// Moves the topics of a data directory written before every broker
    /// was a quorum member into this broker's own one-voter quorum, with
    /// their ids, partition counts and configs, every replica here: the
    /// records, committed offsets and producer state stay where they are
    /// (docs/decisions/0027). A topic the quorum already has with the same
    /// id (an earlier, interrupted move) is left as it is.
    pub async fn move_topics_into_quorum(&self) -> crate::error::Result<()> {
        let me = self.config.node_id;
        // Registered and unfenced first: a topic created while this broker
        // is fenced (or not yet registered) starts with no live replica,
        // an empty ISR and no leader, and no clean election can ever give
        // it one. Nothing deletes local topics meanwhile: the materializer
        // starts once the move is done.
        self.cluster().wait_caught_up().await;
        let local: Vec<TopicMetadata> = self.metadata.lock().topics().cloned().collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for t in local {
            let cmd = Command::CreateTopic {
                name: t.name.clone(),
                id: *t.id.as_bytes(),
                assignment: vec![vec![me]; t.partitions as usize],
                configs: t.configs.0.clone(),
            };
            loop {
                if let Some(q) = self.cluster().image().topics.get(&t.name) {
                    if Uuid::from_bytes(q.id) == t.id {
                        break;
                    }
                    return Err(crate::error::Error::Metadata(format!(
                        "moving topic {} into the metadata quorum: the quorum has another topic of that name",
                        t.name
                    )));
                }
                match self.cluster().write(cmd.clone()).await {
                    Ok(Outcome::Ok) => {
                        tracing::info!(topic = %t.name, id = %t.id, partitions = t.partitions, "moved a topic into the metadata quorum");
                        break;
                    }
                    Ok(other) => {
                        return Err(crate::error::Error::Metadata(format!(
                            "moving topic {} into the metadata quorum: refused: {other:?}",
                            t.name
                        )));
                    }
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, "moving topics: no quorum leader yet");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Moves the dynamic broker settings an earlier Sluice kept in this
    /// broker's data directory (`meta/broker-configs.json`) into the
    /// metadata quorum as this broker's own, then removes the file. Kept
    /// until the quorum has them: a stop in between moves them again.
    pub async fn move_dynamic_configs_into_quorum(&self) -> crate::error::Result<()> {
        let dir = self.config.data_dir.clone();
        let Some(values) = crate::config::dynamic::read_local(&dir)? else {
            return Ok(());
        };
        self.cluster().wait_caught_up().await;
        let cmd = Command::AlterBrokerConfigs {
            resource: self.config.node_id.to_string(),
            changes: values
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.cluster().write(cmd.clone()).await {
                Ok(Outcome::Ok) => break,
                Ok(other) => {
                    return Err(crate::error::Error::Metadata(format!(
                        "moving dynamic broker configs into the metadata quorum: refused: {other:?}"
                    )));
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "moving dynamic broker configs: no quorum leader yet");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let path = crate::config::dynamic::local_path(&dir);
        std::fs::remove_file(&path).map_err(|e| crate::error::Error::io(path, e))?;
        tracing::info!(
            ?values,
            "moved this broker's dynamic configs into the metadata quorum"
        );
        Ok(())
    }

    /// Brings the local partitions in line with the image: topics this
    /// broker hosts are opened, deleted ones removed, leader epochs taken.
    pub fn materialize(self: &Arc<Self>, img: &MetadataImage) {
        let me = self.config.node_id;
        self.apply_dynamic_configs(img);
        let hosted: Vec<(&String, &sluice_quorum::image::TopicState)> = img
            .topics
            .iter()
            .filter(|(_, t)| t.partitions.iter().any(|p| p.replicas.contains(&me)))
            .collect();
        // One look at the local topics: (name, id).
        let local: Vec<(String, Uuid)> = self
            .metadata
            .lock()
            .topics()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        let caught_up = self.cluster().caught_up_in(img);
        for (name, id) in &local {
            // Kept while the image hosts a topic of that name and id here
            // (a topic deleted and created again has a new id).
            let keep = hosted
                .iter()
                .any(|(n, t)| *n == name && *id == Uuid::from_bytes(t.id));
            // Data goes only on an image this broker is unfenced in (see
            // below).
            if !keep && caught_up {
                if let Err(e) = self.delete_topic(name) {
                    tracing::warn!(topic = %name, error = %e, "removing a deleted topic");
                }
            }
        }
        for (name, t) in hosted {
            let local = self.metadata.lock().get(name).cloned();
            match local {
                None => {
                    if let Err(e) = self.open_topic(topic_metadata(name, t)) {
                        tracing::warn!(topic = %name, error = %e, "opening a topic from the metadata");
                        continue;
                    }
                }
                Some(local) => {
                    // Grown or reconfigured through the quorum since.
                    let count = t.partitions.len() as i32;
                    if count > local.partitions {
                        if let Err((_, e)) = self.grow_local(name, count) {
                            tracing::warn!(topic = %name, error = %e, "adding partitions from the metadata");
                        }
                    }
                    if local.configs.0 != t.configs {
                        if let Err((_, e)) =
                            self.set_local_configs(name, TopicConfigs(t.configs.clone()))
                        {
                            tracing::warn!(topic = %name, error = %e, "applying topic configs from the metadata");
                        }
                    }
                }
            }
            let lag = self.config.cluster.replica_lag_time_max_ms;
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(part) = self
                    .replicas
                    .get(&TopicPartition::new(name.as_str(), i as i32))
                else {
                    continue;
                };
                if !p.replicas.contains(&me) {
                    part.become_offline();
                    // Moved away by a reassignment: the data goes, as Kafka
                    // deletes a removed replica's log. Only on an image
                    // this broker is unfenced in: an older one, replayed at
                    // start, may not know that the replica came back.
                    if caught_up && part.has_records() {
                        let still_offline = |r: &crate::partition::replica::Role| {
                            matches!(r, crate::partition::replica::Role::Offline)
                        };
                        match part.reset_log(0, still_offline) {
                            Ok(false) => {}
                            Ok(true) => {
                                tracing::info!(partition = %part.tp, "removed a replica's data after a reassignment")
                            }
                            Err(e) => {
                                tracing::warn!(partition = %part.tp, error = %e, "removing a reassigned replica's data")
                            }
                        }
                    }
                } else if p.leader == me {
                    let newly = part.become_leader(
                        me,
                        p.leader_epoch,
                        p.partition_epoch,
                        p.replicas.clone(),
                        p.isr.clone(),
                        lag,
                    );
                    // The new coordinator of these groups: load them from
                    // the replicated log.
                    if newly && name.as_str() == crate::coordinator::txn::TXN_TOPIC {
                        match crate::coordinator::txn::service::load_partition(self, i as i32) {
                            Ok(n) => tracing::info!(
                                partition = i,
                                records = n,
                                "loaded transactions as their new coordinator"
                            ),
                            Err(e) => {
                                tracing::error!(partition = i, error = %e, "loading transactions")
                            }
                        }
                    }
                    if newly && name.as_str() == crate::coordinator::group::OFFSETS_TOPIC {
                        match self.load_offsets_partition(i as i32) {
                            Ok(n) => tracing::info!(
                                partition = i,
                                records = n,
                                "loaded groups as their new coordinator"
                            ),
                            Err(e) => tracing::error!(partition = i, error = %e, "loading groups"),
                        }
                    }
                } else if p.leader >= 0 {
                    part.become_follower(p.leader, p.leader_epoch);
                } else {
                    part.become_offline();
                }
                if p.leader != me && name.as_str() == crate::coordinator::txn::TXN_TOPIC {
                    self.txns.unload(i as i32);
                }
            }
        }
    }

    /// Follows the image for as long as the broker runs.
    pub async fn run_materializer(self: Arc<Self>) {
        let cluster = Arc::clone(self.cluster());
        let mut image = cluster.subscribe();
        loop {
            let img = image.borrow_and_update().clone();
            cluster.note_fencing(&img);
            let b = Arc::clone(&self);
            if let Err(e) = tokio::task::spawn_blocking(move || b.materialize(&img)).await {
                tracing::error!(error = %e, "metadata materializer");
            }
            // The replication loops look at the roles again.
            self.roles.send_modify(|g| *g = g.wrapping_add(1));
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = image.changed() => if changed.is_err() { return },
            }
        }
    }
}
