//! The Kubernetes objects a KafkaCluster owns, rendered from its spec as
//! pure functions: the reconciler server-side-applies what these return,
//! and the tests check them without an API server.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Secret,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{KafkaCluster, ListenerAuthentication};

/// Settings the operator sets itself; a `spec.config` entry naming one is
/// refused, since the brokers would not be reachable or addressable.
pub const OWNED_SETTINGS: &[&str] = &[
    "node.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "metrics.listener",
    "broker.rack",
    "config",
    "controller.quorum.voters",
    "internal.listener",
    "internal.advertised.listener",
    "internal.listener.security.protocol",
    "internal.listener.ssl.truststore.location",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "ssl.keystore.location",
    "ssl.truststore.location",
    "ssl.client.auth",
    "sasl.enabled.mechanisms",
    "authorizer.class.name",
    "super.users",
];

/// The name of the listener brokers replicate over and the operator's
/// admin requests use (`spec.ports.replication`).
pub const REPLICATION_LISTENER: &str = "REPLICATION";

/// Where a secured broker finds its key store and the CA.
pub const TLS_DIR: &str = "/etc/sluice-tls";

/// The cluster is secured: a listener with TLS or authentication, or
/// ACLs. Its brokers then replicate over mutual TLS with certificates of
/// the cluster CA, and the operator talks to them the same way.
pub fn secured(kc: &KafkaCluster) -> bool {
    kc.spec.authorization.is_some()
        || kc
            .spec
            .listeners
            .iter()
            .any(|l| l.tls || l.authentication.is_some())
}

/// The Kafka listeners of every broker: `spec.listeners`, then the
/// replication listener, as `(name, port, protocol)`.
fn kafka_listeners(kc: &KafkaCluster) -> Vec<(String, i32, &'static str)> {
    let mut all: Vec<(String, i32, &'static str)> = kc
        .spec
        .listeners
        .iter()
        .map(|l| (l.kafka_name(), l.port, l.protocol()))
        .collect();
    all.push((
        REPLICATION_LISTENER.into(),
        kc.spec.ports.replication,
        if secured(kc) { "SSL" } else { "PLAINTEXT" },
    ));
    all
}

/// The client listener `status.bootstrapServers` names: the first.
fn client_port(kc: &KafkaCluster) -> i32 {
    kc.spec.listeners.first().map_or(9092, |l| l.port)
}

/// `controller.quorum.voters`: the voters the cluster began with, kept as
/// `status.quorum.initialVoters` from then on, so that scaling never
/// rewrites it (and never rolls the brokers for it): the voters change
/// through the quorum itself (AddRaftVoter / RemoveRaftVoter, decision
/// 0028), and only a new cluster's first start reads this. Before that
/// status exists: the voters of `spec.quorum`, counted from the larger of
/// the spec and the brokers running, at their stable pod addresses.
pub fn quorum_voters(kc: &KafkaCluster) -> String {
    if let Some(initial) = kc
        .status
        .as_ref()
        .and_then(|s| s.quorum.as_ref())
        .and_then(|q| q.initial_voters.clone())
    {
        return initial;
    }
    let running = kc
        .status
        .as_ref()
        .and_then(|s| s.applied_replicas)
        .unwrap_or(0);
    let replicas = kc.spec.replicas.max(running);
    let count =
        crate::plan::voters::voter_count(kc.spec.quorum.as_ref().and_then(|q| q.voters), replicas);
    (0..count)
        .map(|i| format!("{i}@{}", internal_address(kc, i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Broker `id`'s quorum listener at its stable pod address, as it
/// advertises it (`internal.advertised.listener`).
pub fn internal_address(kc: &KafkaCluster, id: i32) -> String {
    let name = kc.metadata.name.as_deref().unwrap_or_default();
    let ns = kc.metadata.namespace.as_deref().unwrap_or("default");
    let headless = headless_service_name(kc);
    let port = kc.spec.ports.quorum;
    format!("{name}-{id}.{headless}.{ns}.svc:{port}")
}

/// Where the broker keeps its data inside the pod.
pub const DATA_DIR: &str = "/var/lib/sluice/data";
const CONFIG_DIR: &str = "/etc/sluice";
/// Annotation carrying a hash of the rendered config: a change rolls the
/// brokers.
pub const CONFIG_HASH: &str = "sluice.dev/config-hash";

/// Why a spec cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("spec.config sets {0}, which the operator manages")]
    OwnedSetting(String),
    #[error("the KafkaCluster has no name")]
    Unnamed,
    #[error("spec.authorization.superUsers: `{0}` is not User:<name>")]
    SuperUser(String),
}

fn name(kc: &KafkaCluster) -> Result<String, RenderError> {
    kc.metadata.name.clone().ok_or(RenderError::Unnamed)
}

/// Labels every owned object carries.
pub fn labels(kc: &KafkaCluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(kc);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "sluice-operator".into(),
    );
    l
}

/// Labels that select the broker pods.
pub fn selector_labels(kc: &KafkaCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "sluice".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            kc.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "broker".to_string(),
        ),
    ])
}

/// The `/scale` label selector string for status.
pub fn selector_string(kc: &KafkaCluster) -> String {
    selector_labels(kc)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn meta(kc: &KafkaCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: kc.metadata.namespace.clone(),
        labels: Some(labels(kc)),
        owner_references: kc
            .controller_owner_ref(&())
            .map(|o: OwnerReference| vec![o]),
        ..ObjectMeta::default()
    }
}

pub fn headless_service_name(kc: &KafkaCluster) -> String {
    format!(
        "{}-brokers",
        kc.metadata.name.as_deref().unwrap_or_default()
    )
}

pub fn bootstrap_service_name(kc: &KafkaCluster) -> String {
    format!(
        "{}-bootstrap",
        kc.metadata.name.as_deref().unwrap_or_default()
    )
}

fn bootstrap_at(kc: &KafkaCluster, port: i32) -> String {
    format!(
        "{}.{}.svc:{port}",
        bootstrap_service_name(kc),
        kc.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// `host:port` clients bootstrap from, inside the cluster: the first
/// listener.
pub fn bootstrap_servers(kc: &KafkaCluster) -> String {
    bootstrap_at(kc, client_port(kc))
}

/// Where the operator's admin requests go: the first listener of a
/// cluster that is not secured, else the replication listener.
pub fn admin_bootstrap(kc: &KafkaCluster) -> String {
    if secured(kc) {
        bootstrap_at(kc, kc.spec.ports.replication)
    } else {
        bootstrap_servers(kc)
    }
}

/// A Service port per Kafka listener, named as the listener (lower case).
fn kafka_ports(kc: &KafkaCluster) -> Vec<ServicePort> {
    kafka_listeners(kc)
        .into_iter()
        .map(|(name, port, _)| {
            let name = name.to_ascii_lowercase();
            ServicePort {
                name: Some(name.clone()),
                port,
                target_port: Some(IntOrString::String(name)),
                ..ServicePort::default()
            }
        })
        .collect()
}

/// Stable DNS for every broker pod, ready or not (brokers must find each
/// other while starting).
pub fn headless_service(kc: &KafkaCluster) -> Result<Service, RenderError> {
    name(kc)?;
    Ok(Service {
        metadata: meta(kc, headless_service_name(kc)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(kc)),
            ports: Some(
                kafka_ports(kc)
                    .into_iter()
                    .chain([ServicePort {
                        name: Some("internal".into()),
                        port: kc.spec.ports.quorum,
                        target_port: Some(IntOrString::String("internal".into())),
                        ..ServicePort::default()
                    }])
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The address clients bootstrap from.
pub fn bootstrap_service(kc: &KafkaCluster) -> Result<Service, RenderError> {
    name(kc)?;
    Ok(Service {
        metadata: meta(kc, bootstrap_service_name(kc)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(kc)),
            ports: Some(kafka_ports(kc)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The listeners' protocols and the security settings of a secured
/// cluster (the same on every broker; the key store is per pod).
fn security_properties(kc: &KafkaCluster) -> Result<String, RenderError> {
    let listeners = kafka_listeners(kc);
    let map: Vec<String> = listeners
        .iter()
        .map(|(name, _, protocol)| format!("{name}:{protocol}"))
        .collect();
    let mut out = format!(
        "listener.security.protocol.map={}\ninter.broker.listener.name={REPLICATION_LISTENER}\n",
        map.join(",")
    );
    if !secured(kc) {
        return Ok(out);
    }
    out.push_str(&format!(
        "ssl.truststore.location={TLS_DIR}/{}\n",
        crate::certs::CA_CERT
    ));
    // The quorum port too: only the brokers, with certificates of the
    // cluster CA (a user's of the clients CA is no member).
    out.push_str(&format!(
        "internal.listener.security.protocol=SSL\ninternal.listener.ssl.truststore.location={TLS_DIR}/{}\n",
        crate::certs::CLUSTER_CA_CERT
    ));
    // Client certificates where they authenticate: the replication
    // listener (brokers and the operator) and listeners of `tls` users.
    let mutual = kc
        .spec
        .listeners
        .iter()
        .filter(|l| l.authentication == Some(ListenerAuthentication::Tls))
        .map(|l| l.name.clone())
        .chain(std::iter::once(REPLICATION_LISTENER.to_ascii_lowercase()));
    for name in mutual {
        out.push_str(&format!("listener.name.{name}.ssl.client.auth=required\n"));
    }
    if kc
        .spec
        .listeners
        .iter()
        .any(|l| l.authentication == Some(ListenerAuthentication::ScramSha512))
    {
        out.push_str("sasl.enabled.mechanisms=SCRAM-SHA-512\n");
    }
    if let Some(auth) = &kc.spec.authorization {
        let mut supers = vec![
            crate::certs::broker_principal(kc),
            crate::certs::operator_principal(kc),
        ];
        for u in &auth.super_users {
            match u.strip_prefix("User:") {
                Some(name) if !name.trim().is_empty() && !u.contains(';') => {
                    supers.push(u.trim().to_string())
                }
                _ => return Err(RenderError::SuperUser(u.clone())),
            }
        }
        out.push_str(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
        );
        out.push_str(&format!("super.users={}\n", supers.join(";")));
    }
    Ok(out)
}

/// `server.properties` for every broker: the user's settings plus the
/// operator's own (per-pod values come from the environment).
pub fn server_properties(kc: &KafkaCluster) -> Result<String, RenderError> {
    if let Some(k) = kc
        .spec
        .config
        .keys()
        .find(|k| OWNED_SETTINGS.contains(&k.as_str()) || k.starts_with("listener.name."))
    {
        return Err(RenderError::OwnedSetting(k.clone()));
    }
    // The listeners bind the pod's own address, set per pod from the
    // downward API (decision 0022); everything else is the same for all.
    let mut out = String::from("# Rendered by sluice-operator from the KafkaCluster spec.\n");
    out.push_str(&format!("log.dirs={DATA_DIR}\n"));
    out.push_str(&format!("controller.quorum.voters={}\n", quorum_voters(kc)));
    out.push_str(&security_properties(kc)?);
    for (k, v) in &kc.spec.config {
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

pub fn config_map_name(kc: &KafkaCluster) -> String {
    format!("{}-config", kc.metadata.name.as_deref().unwrap_or_default())
}

pub fn config_map(kc: &KafkaCluster) -> Result<ConfigMap, RenderError> {
    name(kc)?;
    Ok(ConfigMap {
        metadata: meta(kc, config_map_name(kc)),
        data: Some(BTreeMap::from([(
            "server.properties".to_string(),
            server_properties(kc)?,
        )])),
        ..ConfigMap::default()
    })
}

/// FNV-1a of the rendered config and image: stable across operator
/// versions (unlike std's hasher), so an unchanged spec never rolls.
pub fn config_hash(kc: &KafkaCluster) -> Result<String, RenderError> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in server_properties(kc)?.bytes().chain(kc.spec.image.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

pub fn service_account_name(kc: &KafkaCluster) -> String {
    format!("{}-broker", kc.metadata.name.as_deref().unwrap_or_default())
}

pub fn service_account(kc: &KafkaCluster) -> Result<ServiceAccount, RenderError> {
    name(kc)?;
    Ok(ServiceAccount {
        metadata: meta(kc, service_account_name(kc)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// The brokers. Updates are `OnDelete`: the operator restarts brokers one
/// at a time, only when every partition stays at `min.insync.replicas`.
pub fn statefulset(kc: &KafkaCluster) -> Result<StatefulSet, RenderError> {
    statefulset_with_replicas(kc, kc.spec.replicas)
}

/// The StatefulSet with `replicas` pods: more than `spec.replicas` while a
/// scale-down drains the leaving brokers.
pub fn statefulset_with_replicas(
    kc: &KafkaCluster,
    replicas: i32,
) -> Result<StatefulSet, RenderError> {
    let n = name(kc)?;
    let spec = &kc.spec;
    let metrics_port = spec.ports.metrics;
    let listeners = kafka_listeners(kc);
    let headless = headless_service_name(kc);
    let ns = kc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut pod_labels = selector_labels(kc);
    let overrides = spec.pod_template.clone().unwrap_or_default();
    pod_labels.extend(overrides.labels.clone());
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH.into(), config_hash(kc)?);

    let mut env_vars = vec![
        env_from_field("POD_NAME", "metadata.name"),
        env_from_field("POD_IP", "status.podIP"),
        // Bound to the pod's address rather than 0.0.0.0: the same on a
        // cluster where every pod has a network of its own, and what lets
        // pods share one network (the process-kubelet tier, decision 0022).
        env(
            "SLUICE_LISTENERS",
            listeners
                .iter()
                .map(|(name, port, _)| format!("{name}://$(POD_IP):{port}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        env(
            "SLUICE_INTERNAL_LISTENER",
            format!("$(POD_IP):{}", spec.ports.quorum),
        ),
        env(
            "SLUICE_METRICS_LISTENER",
            format!("$(POD_IP):{metrics_port}"),
        ),
        // The StatefulSet controller labels each pod with its ordinal
        // (Kubernetes 1.28+): the broker's node id.
        env_from_field(
            "SLUICE_NODE_ID",
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ),
        env(
            "SLUICE_ADVERTISED_LISTENERS",
            listeners
                .iter()
                .map(|(name, port, _)| format!("{name}://$(POD_NAME).{headless}.{ns}.svc:{port}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        env(
            "SLUICE_INTERNAL_ADVERTISED_LISTENER",
            format!("$(POD_NAME).{headless}.{ns}.svc:{}", spec.ports.quorum),
        ),
        env("SLUICE_CONFIG", format!("{CONFIG_DIR}/server.properties")),
        env("SLUICE_LOGGING_FORMAT", "json".into()),
    ];
    if secured(kc) {
        env_vars.push(env(
            "SLUICE_SSL_KEYSTORE_LOCATION",
            format!("{TLS_DIR}/$(POD_NAME).pem"),
        ));
    }
    env_vars.extend(overrides.env.iter().map(|(k, v)| env(k, v.clone())));

    let http_probe = |path: &str, initial: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "broker".into(),
        image: Some(spec.image.clone()),
        env: Some(env_vars),
        ports: Some(
            listeners
                .iter()
                .map(|(name, port, _)| (name.to_ascii_lowercase(), *port))
                .chain([
                    ("metrics".to_string(), metrics_port),
                    ("internal".to_string(), spec.ports.quorum),
                ])
                .map(|(name, port)| ContainerPort {
                    name: Some(name),
                    container_port: port,
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 30)),
        resources: spec.resources.clone(),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/var/lib/sluice".into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(secured(kc).then(|| VolumeMount {
                name: "tls".into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    // Spread brokers over nodes, and over racks when asked.
    let anti_affinity = Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(kc)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    };
    let spread = spec.rack.as_ref().map(|r| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: r.topology_key.clone(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(kc)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });

    let pod = PodSpec {
        service_account_name: Some(service_account_name(kc)),
        // Longer than the broker's own shutdown.timeout.ms (30 s) so that a
        // controlled shutdown always completes.
        termination_grace_period_seconds: Some(60),
        containers: vec![container],
        volumes: Some(
            [Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name(kc),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]
            .into_iter()
            .chain(secured(kc).then(|| Volume {
                name: "tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(crate::certs::broker_secret_name(kc)),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }))
            .collect(),
        ),
        affinity: Some(anti_affinity),
        topology_spread_constraints: spread,
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        priority_class_name: overrides.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };

    let mut requests = BTreeMap::new();
    requests.insert("storage".to_string(), Quantity(spec.storage.size.clone()));
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector_labels(kc)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(requests),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    Ok(StatefulSet {
        metadata: meta(kc, n),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(headless),
            // Brokers start together; ordering is the quorum's business.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(kc)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(
                        if spec.storage.delete_claim {
                            "Delete"
                        } else {
                            "Retain"
                        }
                        .into(),
                    ),
                    // Volumes of brokers removed by a scale-down are kept: the
                    // operator has moved their replicas away first.
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

/// An Opaque Secret of text entries.
pub fn opaque_secret(metadata: ObjectMeta, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata,
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// At most `rollingUpdate.maxUnavailable` brokers voluntarily down.
pub fn pod_disruption_budget(kc: &KafkaCluster) -> Result<PodDisruptionBudget, RenderError> {
    name(kc)?;
    Ok(PodDisruptionBudget {
        metadata: meta(
            kc,
            format!(
                "{}-brokers",
                kc.metadata.name.as_deref().unwrap_or_default()
            ),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(kc.spec.rolling_update.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(kc)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{KafkaClusterSpec, RackSpec};

    fn cluster() -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": 3,
            "config": {"min.insync.replicas": "2"},
            "storage": {"size": "20Gi", "storageClass": "fast"}
        }))
        .expect("spec");
        let mut kc = KafkaCluster::new("demo", spec);
        kc.metadata.namespace = Some("kafka".into());
        kc.metadata.uid = Some("1234".into());
        kc
    }

    #[test]
    fn statefulset_has_stable_identity_volumes_and_probes() {
        let kc = cluster();
        let sts = statefulset(&kc).expect("render");
        let spec = sts.spec.expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
        assert_eq!(
            spec.update_strategy.and_then(|u| u.type_).as_deref(),
            Some("OnDelete")
        );
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
        let c = &pod.containers[0];
        let envs = c.env.clone().unwrap_or_default();
        let adv = envs
            .iter()
            .find(|e| e.name == "SLUICE_ADVERTISED_LISTENERS")
            .and_then(|e| e.value.clone());
        assert_eq!(
            adv.as_deref(),
            Some(
                "PLAIN://$(POD_NAME).demo-brokers.kafka.svc:9092,REPLICATION://$(POD_NAME).demo-brokers.kafka.svc:9091"
            )
        );
        assert!(
            envs.iter()
                .any(|e| e.name == "SLUICE_NODE_ID" && e.value_from.is_some())
        );
        let value = |name: &str| {
            envs.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        let ip = envs
            .iter()
            .position(|e| e.name == "POD_IP")
            .expect("POD_IP");
        let listeners = envs
            .iter()
            .position(|e| e.name == "SLUICE_LISTENERS")
            .expect("SLUICE_LISTENERS");
        assert!(ip < listeners, "POD_IP is defined before it is referenced");
        assert_eq!(
            value("SLUICE_LISTENERS").as_deref(),
            Some("PLAIN://$(POD_IP):9092,REPLICATION://$(POD_IP):9091")
        );
        assert!(
            value("SLUICE_SSL_KEYSTORE_LOCATION").is_none(),
            "not secured"
        );
        assert_eq!(
            value("SLUICE_INTERNAL_LISTENER").as_deref(),
            Some("$(POD_IP):9093")
        );
        assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
        let claim = &spec.volume_claim_templates.expect("claims")[0];
        let claim_spec = claim.spec.clone().expect("claim spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned()),
            Some(Quantity("20Gi".into()))
        );
        // Owned by the KafkaCluster.
        let owners = sts.metadata.owner_references.expect("owner");
        assert_eq!(owners[0].kind, "KafkaCluster");
        assert_eq!(owners[0].controller, Some(true));
    }

    #[test]
    fn config_renders_and_owned_settings_are_refused() {
        let mut kc = cluster();
        let props = server_properties(&kc).expect("render");
        assert!(props.contains("min.insync.replicas=2\n"));
        assert!(props.contains("log.dirs=/var/lib/sluice/data\n"));
        // One metadata quorum: the first three ordinals vote.
        let voters = format!(
            "controller.quorum.voters=0@demo-0.demo-brokers.{ns}.svc:9093,1@demo-1.demo-brokers.{ns}.svc:9093,2@demo-2.demo-brokers.{ns}.svc:9093\n",
            ns = kc.metadata.namespace.as_deref().unwrap_or("default")
        );
        assert!(props.contains(&voters), "{props}");
        assert!(
            !props.contains("\nlisteners=") && !props.contains("advertised"),
            "per pod, not in the ConfigMap: {props}"
        );
        assert!(
            props
                .contains("listener.security.protocol.map=PLAIN:PLAINTEXT,REPLICATION:PLAINTEXT\n")
                && props.contains("inter.broker.listener.name=REPLICATION\n")
                && !props.contains("ssl."),
            "{props}"
        );
        let mut one = kc.clone();
        one.spec.replicas = 1;
        assert!(quorum_voters(&one).starts_with("0@demo-0.") && !quorum_voters(&one).contains(','));
        let mut five = kc.clone();
        five.spec.replicas = 5;
        assert_eq!(
            quorum_voters(&five).matches('@').count(),
            3,
            "observers beyond three"
        );
        // Once the cluster has begun, its first voters stay in the config
        // whatever the scale: a one-broker cluster scaled to five still
        // starts every broker with one configured voter (the quorum itself
        // adds the others).
        let mut began = one.clone();
        began.status = Some(crate::crd::KafkaClusterStatus {
            quorum: Some(crate::crd::QuorumStatus {
                initial_voters: Some(quorum_voters(&one)),
                ..Default::default()
            }),
            ..Default::default()
        });
        began.spec.replicas = 5;
        assert_eq!(quorum_voters(&began), quorum_voters(&one));
        let mut five_voters = five.clone();
        five_voters.spec.quorum = Some(crate::crd::QuorumSpec { voters: Some(5) });
        assert_eq!(quorum_voters(&five_voters).matches('@').count(), 5);
        let h1 = config_hash(&kc).expect("hash");
        kc.spec
            .config
            .insert("log.retention.ms".into(), "1000".into());
        assert_ne!(
            config_hash(&kc).expect("hash"),
            h1,
            "a config change rolls the brokers"
        );
        kc.spec
            .config
            .insert("listeners".into(), "0.0.0.0:1".into());
        assert_eq!(
            server_properties(&kc),
            Err(RenderError::OwnedSetting("listeners".into()))
        );
    }

    #[test]
    fn a_secured_cluster_replicates_over_mutual_tls_with_acls() {
        let mut kc = cluster();
        kc.spec.listeners = serde_json::from_value(serde_json::json!([
            {"name": "plain", "port": 9092},
            {"name": "scram", "port": 9094, "tls": true, "authentication": "scram-sha-512"},
            {"name": "mtls", "port": 9095, "tls": true, "authentication": "tls"}
        ]))
        .expect("listeners");
        assert!(!secured(&cluster()) && secured(&kc));
        let props = server_properties(&kc).expect("render");
        for line in [
            "listener.security.protocol.map=PLAIN:PLAINTEXT,SCRAM:SASL_SSL,MTLS:SSL,REPLICATION:SSL\n",
            "inter.broker.listener.name=REPLICATION\n",
            "ssl.truststore.location=/etc/sluice-tls/ca.crt\n",
            "listener.name.mtls.ssl.client.auth=required\n",
            "listener.name.replication.ssl.client.auth=required\n",
            "internal.listener.security.protocol=SSL\n",
            "internal.listener.ssl.truststore.location=/etc/sluice-tls/cluster-ca.crt\n",
            "sasl.enabled.mechanisms=SCRAM-SHA-512\n",
        ] {
            assert!(props.contains(line), "{line} in {props}");
        }
        assert!(
            !props.contains("authorizer"),
            "no ACLs without spec.authorization"
        );
        kc.spec.authorization = Some(crate::crd::AuthorizationSpec {
            type_: crate::crd::AuthorizationType::Simple,
            super_users: vec!["User:admin".into()],
        });
        let props = server_properties(&kc).expect("render");
        assert!(props.contains(
            "super.users=User:CN=demo-broker,O=sluice.dev;User:CN=demo-operator,O=sluice.dev;User:admin\n"
        ));
        assert!(props.contains(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
        ));
        assert_eq!(admin_bootstrap(&kc), "demo-bootstrap.kafka.svc:9091");
        assert_eq!(bootstrap_servers(&kc), "demo-bootstrap.kafka.svc:9092");
        let sts = statefulset(&kc).expect("render");
        let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
        let c = &pod.containers[0];
        let keystore = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "SLUICE_SSL_KEYSTORE_LOCATION")
            .and_then(|e| e.value.clone());
        assert_eq!(keystore.as_deref(), Some("/etc/sluice-tls/$(POD_NAME).pem"));
        let secret = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "tls")
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone());
        assert_eq!(secret.as_deref(), Some("demo-broker-certs"));
        let ports: Vec<String> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        assert_eq!(
            ports,
            [
                "plain",
                "scram",
                "mtls",
                "replication",
                "metrics",
                "internal"
            ]
        );
        kc.spec.authorization = Some(crate::crd::AuthorizationSpec {
            type_: crate::crd::AuthorizationType::Simple,
            super_users: vec!["admin".into()],
        });
        assert_eq!(
            server_properties(&kc),
            Err(RenderError::SuperUser("admin".into()))
        );
        kc.spec.authorization = None;
        kc.spec
            .config
            .insert("listener.name.plain.ssl.client.auth".into(), "none".into());
        assert!(matches!(
            server_properties(&kc),
            Err(RenderError::OwnedSetting(_))
        ));
    }

    #[test]
    fn services_pdb_and_racks() {
        let mut kc = cluster();
        let h = headless_service(&kc).expect("headless");
        assert_eq!(
            h.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
            Some("None")
        );
        assert_eq!(bootstrap_servers(&kc), "demo-bootstrap.kafka.svc:9092");
        let pdb = pod_disruption_budget(&kc).expect("pdb");
        assert_eq!(
            pdb.spec.and_then(|s| s.max_unavailable),
            Some(IntOrString::Int(1))
        );
        kc.spec.rack = Some(RackSpec {
            topology_key: "topology.kubernetes.io/zone".into(),
        });
        let sts = statefulset(&kc).expect("render");
        let spread = sts
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.topology_spread_constraints);
        assert_eq!(
            spread.map(|s| s[0].topology_key.clone()).as_deref(),
            Some("topology.kubernetes.io/zone")
        );
        assert_eq!(
            selector_string(&kc),
            "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=sluice"
        );
    }
}
