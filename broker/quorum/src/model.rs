//! The replicated metadata's data: brokers, topics and partitions, the
//! commands that change them and what applying one did. The rules that
//! apply a command are in [`crate::image`]; the controller's decisions in
//! [`crate::controller`]. Both build on this module, never the other way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A broker's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Bumped at every registration: a restarted broker is a new
    /// incarnation, and stale requests of the old one are refused.
    pub epoch: u64,
    /// Chosen by the broker process at start: a repeated registration of
    /// the same incarnation (a retry) gets the same epoch back.
    pub incarnation: u64,
    /// The inter-broker Kafka listener, `host:port`: where followers fetch.
    pub kafka_address: String,
    /// Every Kafka listener by name (`PLAINTEXT`, `SSL`, ...) -> its
    /// advertised `host:port`: a client is given the brokers' addresses
    /// on the listener it came in on. Empty in a registration of an older
    /// broker: `kafka_address` is then its only listener.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, String>,
    /// Internal (gRPC) listener, `host:port`.
    pub internal_address: String,
    pub rack: Option<String>,
    /// The directory id of the broker's metadata log (KIP-853): a new one
    /// after its volume was replaced. Nil when not known (registered by
    /// an older broker).
    #[serde(default, skip_serializing_if = "uuid::Uuid::is_nil")]
    pub directory_id: uuid::Uuid,
    /// A fenced broker leads nothing and is in no ISR: it stopped
    /// heartbeating, or shut down.
    pub fenced: bool,
}

impl BrokerRegistration {
    /// The advertised `host:port` of this broker's listener `name`; `None`
    /// when it has no such listener (Kafka leaves such a broker out of
    /// the answer on that listener).
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        if self.listeners.is_empty() {
            return Some(&self.kafka_address);
        }
        self.listeners.get(name).map(String::as_str)
    }
}

/// One partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when no replica may lead (every ISR member fenced).
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by every change of leader, ISR or replica set.
    pub partition_epoch: i32,
    /// A reassignment in progress (KIP-455): replicas joining, which count
    /// in `replicas` but are not yet in the ISR...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// ...and replicas leaving once every adding one is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// 16 bytes, as Kafka's topic ids.
    pub id: [u8; 16],
    pub partitions: Vec<PartitionState>,
    pub configs: BTreeMap<String, String>,
}

/// The replicated metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicState>,
    /// Next broker epoch to hand out.
    pub next_broker_epoch: u64,
    /// Dynamic broker configs (Kafka's ConfigRecords of resource type
    /// BROKER): the cluster-wide defaults under `""`, one broker's own
    /// under its id. Every broker applies its own over the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SCRAM credentials (Kafka's UserScramCredentialRecords): user ->
    /// mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`) -> the salted
    /// keys. Never a password.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// ACLs (Kafka's AccessControlEntryRecords), each once.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub acls: std::collections::BTreeSet<Acl>,
}

/// One access control entry, with Kafka's codes: resource type (2 topic,
/// 3 group, 4 cluster, 5 transactional id, 6 delegation token, 7 user),
/// pattern type (3 literal, 4 prefixed), operation (2 all .. 15), and
/// permission (2 deny, 3 allow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// One user's SCRAM credential for one mechanism (RFC 5802's stored
/// values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// A change to the metadata, as written to the quorum's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster id once; later different ids are refused.
    InitCluster {
        cluster_id: String,
    },
    RegisterBroker {
        id: i32,
        incarnation: u64,
        kafka_address: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        listeners: BTreeMap<String, String>,
        internal_address: String,
        rack: Option<String>,
        #[serde(default, skip_serializing_if = "uuid::Uuid::is_nil")]
        directory_id: uuid::Uuid,
    },
    /// Fences or unfences a broker of the given epoch (a stale epoch is
    /// refused, so a late request of a previous incarnation changes nothing).
    SetFenced {
        id: i32,
        epoch: u64,
        fenced: bool,
    },
    /// Forgets a broker that is stopped (fenced) and holds no replica:
    /// the last step of a scale-down (Kafka's UnregisterBroker).
    UnregisterBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        assignment: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// CreatePartitions: appends partitions to the topic of this id, valid
    /// only while it has `expected_count` (two growths computed from one
    /// image cannot both apply).
    CreatePartitions {
        name: String,
        id: [u8; 16],
        expected_count: usize,
        assignment: Vec<Vec<i32>>,
    },
    /// Replaces the topic's configs (validated by the broker that wrote it).
    AlterTopicConfigs {
        name: String,
        id: [u8; 16],
        configs: BTreeMap<String, String>,
    },
    /// New leader and/or ISR of one partition, valid only against the
    /// partition epoch it was computed from (compare-and-set).
    ChangePartition {
        topic: String,
        partition: i32,
        expected_partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    /// AlterPartitionReassignments for one partition: `Some(target)` moves
    /// the replica set to `target`; `None` cancels the move in progress.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// IncrementalAlterConfigs on a broker resource: `""` (the cluster-wide
    /// default) or a broker id. Each name is set to its value, or removed
    /// with `None` (validated by the broker that wrote it).
    AlterBrokerConfigs {
        resource: String,
        changes: Vec<(String, Option<String>)>,
    },
    /// Sets (`Some`) or deletes (`None`) SCRAM credentials, each
    /// `(user, mechanism, credential)`, all at once.
    AlterScramCredentials {
        changes: Vec<(String, String, Option<ScramCredential>)>,
    },
    /// Adds ACLs (one already there is kept once).
    CreateAcls {
        acls: Vec<Acl>,
    },
    /// Removes these exact ACLs (one not there is no error).
    DeleteAcls {
        acls: Vec<Acl>,
    },
}

impl Command {
    /// The command's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "InitCluster",
            Command::RegisterBroker { .. } => "RegisterBroker",
            Command::SetFenced { .. } => "SetFenced",
            Command::UnregisterBroker { .. } => "UnregisterBroker",
            Command::CreateTopic { .. } => "CreateTopic",
            Command::DeleteTopic { .. } => "DeleteTopic",
            Command::CreatePartitions { .. } => "CreatePartitions",
            Command::AlterTopicConfigs { .. } => "AlterTopicConfigs",
            Command::ChangePartition { .. } => "ChangePartition",
            Command::ReassignPartition { .. } => "ReassignPartition",
            Command::AlterBrokerConfigs { .. } => "AlterBrokerConfigs",
            Command::AlterScramCredentials { .. } => "AlterScramCredentials",
            Command::CreateAcls { .. } => "CreateAcls",
            Command::DeleteAcls { .. } => "DeleteAcls",
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    /// Registration: the broker's new epoch.
    Registered {
        epoch: u64,
    },
    /// The command was valid Raft-wise but refused by the metadata rules;
    /// the reason is for the requester.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("the cluster id is already {0}")]
    ClusterIdMismatch(String),
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    #[error("broker {id} epoch {got} is stale (current {current})")]
    StaleBrokerEpoch { id: i32, got: u64, current: u64 },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("partition epoch {got} is stale (current {current})")]
    StalePartitionEpoch { got: i32, current: i32 },
    #[error("invalid change: {0}")]
    Invalid(String),
    #[error("broker {0} is fenced or unknown and cannot join an ISR")]
    IneligibleReplica(i32),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("no reassignment is in progress for {topic}-{partition}")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    #[error("{0}")]
    BrokerInUse(String),
}

impl MetadataImage {
    /// Brokers that are registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Partitions `broker` leads or follows: `(topic, partition)`.
    pub fn hosted_by(&self, broker: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| p.replicas.contains(&broker))
                    .map(move |(i, _)| (name.clone(), i as i32))
            })
            .collect()
    }
}
