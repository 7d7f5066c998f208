//! The custom resources, group `sluice.dev`, version `v1alpha1`:
//! `KafkaCluster` (short name `kc`) and `Topic` (short name `kt`).
//! `crdgen` prints their CRDs into `crds/`; a test fails on drift.

// `printcolumn(type_ = ..)` repeats per column by design of kube's derive.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Sluice cluster: brokers run as a StatefulSet that the operator owns,
/// scales, rolls and repairs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    shortname = "kc",
    category = "sluice",
    status = "KafkaClusterStatus",
    doc = "A Sluice cluster: Kafka-compatible brokers run as a StatefulSet managed by the operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "brokers asked for"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "brokers ready"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "the Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Number of brokers. Scaling down first moves every replica off the
    /// brokers that will go.
    #[x_kube(validation = Rule::new("self >= 1").message("a cluster needs at least one broker"))]
    pub replicas: i32,
    /// Broker container image.
    #[serde(default = "default_image")]
    pub image: String,
    /// Sluice version the image carries; informational, shown in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Broker settings by their Kafka names (for example
    /// `log.retention.ms: "3600000"`), passed to every broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// One persistent volume per broker.
    pub storage: StorageSpec,
    /// CPU and memory for each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Spread brokers over racks (zones) by this node label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Where clients connect: Kafka listeners, the first of them the one
    /// `status.bootstrapServers` names. Default: `plain` on 9092.
    #[serde(default = "default_listeners")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message("a cluster needs at least one listener"))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(m, m.name == l.name))").message("listener names must differ"))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(m, m.port == l.port))").message("listener ports must differ"))]
    pub listeners: Vec<ListenerSpec>,
    /// The brokers' metrics, quorum and replication ports.
    #[serde(default)]
    pub ports: PortsSpec,
    /// ACLs; unset: every client may do everything (Kafka without an
    /// authorizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
    /// The certificates of a secured cluster.
    #[serde(default)]
    pub certificates: CertificatesSpec,
    /// How configuration and image changes roll through the brokers.
    #[serde(default)]
    pub rolling_update: RollingUpdateSpec,
    /// How partitions move when brokers are added or removed.
    #[serde(default)]
    pub rebalance: RebalanceSpec,
    /// The metadata quorum's voters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumSpec>,
    /// Overrides for the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,
}

/// Which brokers vote in the metadata quorum.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuorumSpec {
    /// How many brokers vote: the lowest ids, odd, at most `replicas`.
    /// Default: three (one for a cluster of one or two brokers). Voters
    /// follow scaling: a joining broker becomes a voter once it has caught
    /// up, a leaving one hands its vote on before its partitions move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self % 2 == 1").message("quorum.voters must be odd and at least 1"))]
    pub voters: Option<i32>,
}

fn default_image() -> String {
    "sluice/broker:latest".to_string()
}

/// Per-broker persistent storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, as a Kubernetes quantity (for example `10Gi`).
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')").message("size must be a quantity such as 10Gi"))]
    pub size: String,
    /// Storage class of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Delete the volumes when the KafkaCluster is deleted (default: keep them).
    #[serde(default)]
    pub delete_claim: bool,
}

/// Rack awareness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is a broker's rack, for example
    /// `topology.kubernetes.io/zone`.
    pub topology_key: String,
}

/// A Kafka listener clients connect to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication != 'tls' || self.tls").message("authentication tls needs tls: true"))]
pub struct ListenerSpec {
    /// The listener's name (Kafka's listener name, upper case in the
    /// brokers' settings): also its Service port's name.
    #[schemars(length(max = 15))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9]{0,14}$')").message("a listener name is 1-15 lower-case letters and digits, starting with a letter"))]
    #[x_kube(validation = Rule::new("!(self in ['replication', 'metrics', 'internal'])").message("replication, metrics and internal name the operator's own ports"))]
    pub name: String,
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("port must be 1-65535"))]
    pub port: i32,
    /// Connections are TLS, with a broker certificate the cluster CA signs
    /// (its certificate is in the Secret `<cluster>-cluster-ca-cert`).
    #[serde(default)]
    pub tls: bool,
    /// How clients authenticate: `scram-sha-512` (SASL/SCRAM, users and
    /// passwords in the metadata quorum) or `tls` (a client certificate;
    /// needs `tls: true`). Unset: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
}

/// How the clients of a listener authenticate.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerAuthentication {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "tls")]
    Tls,
}

impl ListenerSpec {
    /// The listener's name as the brokers' settings give it.
    pub fn kafka_name(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// Kafka's security protocol of the listener.
    pub fn protocol(&self) -> &'static str {
        match (self.tls, self.authentication) {
            (false, None) => "PLAINTEXT",
            (true, None | Some(ListenerAuthentication::Tls)) => "SSL",
            (false, Some(_)) => "SASL_PLAINTEXT",
            (true, Some(ListenerAuthentication::ScramSha512)) => "SASL_SSL",
        }
    }
}

fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec {
        name: "plain".into(),
        port: 9092,
        tls: false,
        authentication: None,
    }]
}

/// The brokers' other ports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortsSpec {
    /// Prometheus metrics (and the health probes).
    #[serde(default = "default_metrics_port")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("port must be 1-65535"))]
    pub metrics: i32,
    /// The metadata quorum between brokers.
    #[serde(default = "default_quorum_port")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("port must be 1-65535"))]
    pub quorum: i32,
    /// The Kafka listener brokers replicate over (and the operator's admin
    /// requests use): mutual TLS with cluster-CA certificates when the
    /// cluster is secured (a listener with TLS or authentication, or
    /// `authorization`), plaintext otherwise.
    #[serde(default = "default_replication_port")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("port must be 1-65535"))]
    pub replication: i32,
}

fn default_quorum_port() -> i32 {
    9093
}

fn default_replication_port() -> i32 {
    9091
}

fn default_metrics_port() -> i32 {
    9464
}

impl Default for PortsSpec {
    fn default() -> Self {
        PortsSpec {
            metrics: default_metrics_port(),
            quorum: default_quorum_port(),
            replication: default_replication_port(),
        }
    }
}

/// Who may do what: Kafka's ACLs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// `simple`: Kafka's ACLs (StandardAuthorizer); a principal without an
    /// ACL that allows an operation is refused.
    #[serde(rename = "type")]
    pub type_: AuthorizationType,
    /// Principals allowed everything, as `User:name` (the brokers' and the
    /// operator's own are added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub super_users: Vec<String>,
}

/// The authorizer of `spec.authorization`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationType {
    #[serde(rename = "simple")]
    Simple,
}

/// The cluster CA and the certificates it signs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.renewalDays < self.validityDays").message("renewalDays must be less than validityDays"))]
pub struct CertificatesSpec {
    /// How long a certificate the operator issues is valid.
    #[serde(default = "default_validity_days")]
    #[x_kube(validation = Rule::new("self >= 2").message("validityDays must be at least 2"))]
    pub validity_days: i32,
    /// A certificate is renewed this many days before it expires.
    #[serde(default = "default_renewal_days")]
    #[x_kube(validation = Rule::new("self >= 1").message("renewalDays must be at least 1"))]
    pub renewal_days: i32,
}

fn default_validity_days() -> i32 {
    365
}

fn default_renewal_days() -> i32 {
    30
}

impl Default for CertificatesSpec {
    fn default() -> Self {
        CertificatesSpec {
            validity_days: default_validity_days(),
            renewal_days: default_renewal_days(),
        }
    }
}

/// Rolling restarts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateSpec {
    /// Brokers restarted at once.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1").message("at least one broker must be allowed to restart"))]
    pub max_unavailable: i32,
    /// Restart a broker only when every partition it hosts stays at or
    /// above `min.insync.replicas` without it.
    #[serde(default = "yes")]
    pub require_min_isr: bool,
}

fn one() -> i32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for RollingUpdateSpec {
    fn default() -> Self {
        RollingUpdateSpec {
            max_unavailable: 1,
            require_min_isr: true,
        }
    }
}

/// Partition moves (scale up, scale down).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Replication bytes per second a broker spends on copying moved
    /// replicas, each way (Kafka's `leader.replication.throttled.rate` and
    /// `follower.replication.throttled.rate`, set on every broker while
    /// partitions move and removed afterwards). 0: unthrottled.
    #[serde(default = "default_throttle")]
    #[x_kube(validation = Rule::new("self >= 0").message("throttleBytesPerSecond cannot be negative"))]
    pub throttle_bytes_per_second: i64,
    /// Partitions moved at once.
    #[serde(default = "default_max_moves")]
    #[x_kube(validation = Rule::new("self >= 1").message("at least one partition must be allowed to move"))]
    pub max_concurrent_moves: i32,
    /// Moves wait until a person approves the plan shown in
    /// `status.plan` by setting the annotation
    /// `sluice.dev/approved-plan` to its `id`. One approval covers every
    /// batch of that rebalance; a changed spec asks again.
    #[serde(default)]
    pub require_approval: bool,
}

/// 50 MiB/s: a 1 GiB partition moves in about 20 s, and replication of
/// new records keeps its share of a 1 Gb/s link.
fn default_throttle() -> i64 {
    50 * 1024 * 1024
}

fn default_max_moves() -> i32 {
    10
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        RebalanceSpec {
            throttle_bytes_per_second: default_throttle(),
            max_concurrent_moves: default_max_moves(),
            require_approval: false,
        }
    }
}

/// The annotation that approves a plan when `spec.rebalance.requireApproval`
/// is set: its value is the plan's `status.plan.id`.
pub const APPROVED_PLAN_ANNOTATION: &str = "sluice.dev/approved-plan";

/// What the broker pods may carry beyond what the operator sets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra environment variables for the broker container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// What the operator observed and is doing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// Ready, Reconciling, Degraded, ScalingUp, ScalingDown, RollingRestart,
    /// with reasons and messages naming the blocking partition or broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the broker pods, for the /scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Brokers the StatefulSet was last given: during a scale-down it stays
    /// above `spec.replicas` until the leaving brokers hold no replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_replicas: Option<i32>,
    /// Brokers a scale-down removed that are still registered in the
    /// cluster's metadata: unregistered once their pods are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unregistering: Vec<i32>,
    /// The `spec.replicas` the partitions were last balanced for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_replicas: Option<i32>,
    /// The rebalancing step in progress, written before it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// The metadata quorum: controller, voters and their lag, observers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumStatus>,
}

/// The metadata quorum as DescribeQuorum shows it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuorumStatus {
    /// The quorum leader (the active controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<i32>,
    /// The leader's epoch (its Raft term).
    #[serde(default)]
    pub epoch: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<QuorumVoterStatus>,
    /// Brokers that replicate the metadata log without voting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<i32>,
    /// `controller.quorum.voters` as the cluster began: kept in the brokers'
    /// config so that scaling never rewrites it (voters change through the
    /// quorum itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_voters: Option<String>,
}

/// One voter of the metadata quorum.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuorumVoterStatus {
    pub id: i32,
    /// The directory id of its metadata log: a new one after its volume
    /// was replaced.
    pub directory_id: String,
    /// Entries behind the high watermark (absent: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

/// A rebalancing step: what moves where, or why nothing moves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// Planned, AwaitingApproval, Moving, Electing, Waiting, Refused or
    /// Balanced.
    pub phase: String,
    /// Names this rebalance (its target and the spec generation that asked
    /// for it): the value `sluice.dev/approved-plan` takes to approve all
    /// of its moves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The replication throttle the moves run under (bytes/s per broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_bytes_per_second: Option<i64>,
    /// Brokers the plan balances over (ids 0 .. n-1).
    pub target_brokers: i32,
    /// One line a person can read.
    pub message: String,
    /// The partitions being moved by this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<PlannedMove>,
    /// Bytes the moves of this step copy.
    #[serde(default)]
    pub bytes: u64,
}

/// One partition's move.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMove {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

/// One broker as the operator sees it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    pub id: i32,
    pub pod: String,
    /// Running, Starting, Restarting, Rebuilding (its volume was replaced
    /// and its replicas are copied back from the others), VolumeUnreachable
    /// (its pod cannot be scheduled where its volume is), Missing.
    pub state: String,
    /// What is happening to it, when more than the state says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The uid of its PersistentVolumeClaim, as last seen: a different one
    /// means the volume was replaced and the broker starts empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Replicas it hosts.
    #[serde(default)]
    pub replicas: i32,
    /// Of those, in the ISR.
    #[serde(default)]
    pub in_sync_replicas: i32,
    /// While rebuilding: the bytes its replicas held elsewhere when the new
    /// volume was seen (the largest copy of each), which it must hold again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_bytes: Option<u64>,
    /// The broker appears in the cluster's metadata.
    #[serde(default)]
    pub registered: bool,
    /// Partitions it leads.
    #[serde(default)]
    pub leader_count: i32,
    /// Partitions it hosts whose ISR is short of their replicas.
    #[serde(default)]
    pub under_replicated: i32,
}

/// A topic on a KafkaCluster in the same namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    shortname = "kt",
    category = "sluice",
    status = "TopicStatus",
    doc = "A topic on a Sluice KafkaCluster, created and kept in line by the operator.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(
        name = "Replication",
        type_ = "integer",
        json_path = ".spec.replicationFactor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(oldSelf.topicName) || has(self.topicName) && self.topicName == oldSelf.topicName").message("topicName cannot be changed"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Name of the KafkaCluster (same namespace).
    #[x_kube(validation = Rule::new("self != ''").message("clusterRef is required"))]
    pub cluster_ref: String,
    /// Topic name in Kafka; the object's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]{1,249}$')").message("a Kafka topic name is 1-249 of [a-zA-Z0-9._-]"))]
    pub topic_name: Option<String>,
    /// Partitions; can grow, never shrink.
    #[x_kube(validation = Rule::new("self >= 1").message("a topic needs at least one partition"))]
    pub partitions: i32,
    /// Replicas per partition; changed through reassignment.
    #[x_kube(validation = Rule::new("self >= 1").message("replicationFactor must be at least 1"))]
    pub replication_factor: i32,
    /// Topic configs by their Kafka names, for example `cleanup.policy`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// What happens to the Kafka topic when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Whether deleting a Topic object deletes the topic and its data.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    /// Keep the topic and its data (the default).
    #[default]
    Retain,
    /// Delete the topic and its data.
    Delete,
}

/// The topic as found on the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Effective topic configs as the cluster reports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Topic {
    /// The Kafka topic name: `spec.topicName`, else the object's name.
    pub fn kafka_name(&self) -> Option<String> {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
    }
}

/// A user of a KafkaCluster in the same namespace: its credentials in a
/// Secret of the same name, its ACLs on the cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    namespaced,
    shortname = "ku",
    category = "sluice",
    status = "KafkaUserStatus",
    doc = "A user of a Sluice KafkaCluster: a SCRAM password or a client certificate in a Secret, and ACLs, kept in line by the operator.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(
        name = "Authentication",
        type_ = "string",
        json_path = ".spec.authentication.type"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// Name of the KafkaCluster (same namespace).
    #[x_kube(validation = Rule::new("self != ''").message("clusterRef is required"))]
    pub cluster_ref: String,
    /// How the user logs in.
    pub authentication: UserAuthentication,
    /// What the user may do (Kafka's ACLs, on a cluster with
    /// `spec.authorization`). Unset: no ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
}

/// A user's login.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserAuthentication {
    /// `scram-sha-512`: a password the operator generates into the
    /// Secret named as the KafkaUser (`username`, `password`,
    /// `sasl.jaas.config`), for a listener with that authentication;
    /// the principal is `User:<name>`. `tls`: a client certificate from
    /// the cluster's clients CA in that Secret (`user.crt`, `user.key`, and
    /// `ca.crt` to trust the brokers), for a listener with `authentication:
    /// tls`; the principal is `User:CN=<name>`.
    #[serde(rename = "type")]
    pub type_: UserAuthenticationType,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAuthenticationType {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "tls")]
    Tls,
}

/// The user's ACLs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct UserAuthorization {
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub acls: Vec<AclRule>,
}

/// Operations allowed (or denied) on a resource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.resource.type == 'cluster' || has(self.resource.name)").message("a topic, group or transactionalId resource needs a name"))]
pub struct AclRule {
    pub resource: AclResource,
    #[schemars(length(min = 1, max = 12))]
    pub operations: Vec<AclOperation>,
    /// The host the rule applies to; `*` (the default): every host.
    #[serde(default = "any_host")]
    pub host: String,
    /// `allow` (the default) or `deny`.
    #[serde(default, rename = "type")]
    pub type_: AclPermission,
}

fn any_host() -> String {
    "*".into()
}

/// What an ACL is on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AclResource {
    #[serde(rename = "type")]
    pub type_: AclResourceType,
    /// The resource's name (a prefix with `patternType: prefix`; `*`:
    /// every one). Not for `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum AclPatternType {
    #[default]
    Literal,
    Prefix,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum AclPermission {
    #[default]
    Allow,
    Deny,
}

/// Kafka's ACL operations.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

/// The user as the operator last made it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The principal ACLs name (`User:<name>`, `User:CN=<name>` for `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The Secret with the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The Secret's resourceVersion whose password the cluster has
    /// (`scram-sha-512`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_version: Option<String>,
    /// When the user's certificate expires (`tls`); it is issued again
    /// `renewalDays` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
}
