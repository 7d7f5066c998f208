//! The KafkaCluster status as a pure function of what the operator saw:
//! the StatefulSet, the broker pods and the cluster's own metadata (read
//! through the Kafka admin protocol).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use sluice_client::ClusterInfo;

use crate::conditions::{self, Wanted};
use crate::crd::{BrokerStatus, KafkaCluster, KafkaClusterStatus};
use crate::resources;

/// Everything the status is computed from.
#[derive(Debug)]
pub struct Observed<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub pods: &'a [Pod],
    /// The brokers' volume claims (`data-NAME-ID`).
    pub claims: &'a [PersistentVolumeClaim],
    /// Each live broker's own partition sizes, when a rebuild needs them.
    pub sizes: Option<&'a BTreeMap<i32, crate::rebalance::Sizes>>,
    /// The cluster's metadata, or why it could not be read.
    pub cluster: Result<&'a ClusterInfo, String>,
}

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const DEGRADED: &str = "Degraded";
pub const REBALANCING: &str = "Rebalancing";
pub const ROLLING_RESTART: &str = "RollingRestart";

pub(crate) fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod whose containers are ready but which is not: the node lifecycle
/// controller marked it so because its node stopped reporting (kubelet or
/// machine down, node cut off). Returns the node's name.
pub(crate) fn node_stopped_reporting(p: &Pod) -> Option<String> {
    let conds = p.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str, v: &str| conds.iter().any(|c| c.type_ == t && c.status == v);
    (is("Ready", "False") && is("ContainersReady", "True"))
        .then(|| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .flatten()
}

/// The scheduler's word when a pod cannot be placed because its volume is
/// bound to a node it cannot use (the node is gone, or cordoned for good):
/// `PodScheduled=False`, reason `Unschedulable`, "volume node affinity
/// conflict" in the message.
pub(crate) fn stranded_by_volume(p: &Pod) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.message
                    .as_deref()
                    .is_some_and(|m| m.contains("volume node affinity conflict"))
        })
        .and_then(|c| c.message.clone())
}

/// Under-replicated partitions named for a message: at most three.
fn name_under_replicated(c: &ClusterInfo) -> (usize, String) {
    let short: Vec<String> = c
        .partitions
        .iter()
        .filter(|p| p.isr.len() < p.replicas.len())
        .map(|p| {
            format!(
                "{}-{} (ISR {:?} of {:?})",
                p.topic, p.partition, p.isr, p.replicas
            )
        })
        .collect();
    let n = short.len();
    let mut msg = short.into_iter().take(3).collect::<Vec<_>>().join(", ");
    if n > 3 {
        msg.push_str(&format!(" and {} more", n - 3));
    }
    (n, msg)
}

/// The volume claim the StatefulSet makes for broker `id` of cluster `name`.
pub fn claim_name(name: &str, id: i32) -> String {
    format!("data-{name}-{id}")
}

/// The uid of the claim called `claim`, if it exists.
pub fn claim_uid<'a>(claims: &'a [PersistentVolumeClaim], claim: &str) -> Option<&'a str> {
    claims
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(claim))
        .and_then(|c| c.metadata.uid.as_deref())
}

/// Whether a broker's volume claim was replaced since the last pass.
pub fn volume_replaced(before: Option<&BrokerStatus>, uid: Option<&str>) -> bool {
    matches!((before.and_then(|b| b.volume.as_deref()), uid), (Some(old), Some(new)) if old != new)
}

/// What a rebuild knows of one broker.
struct RebuildSeen<'a> {
    claim: &'a str,
    pod_state: &'static str,
    registered: bool,
    /// Replicas it hosts, and how many are in the ISR.
    replicas: (i32, i32),
    /// Bytes of its partitions: on the broker itself, and the largest copy
    /// anywhere (unknown when the sizes were not gathered).
    local_bytes: Option<u64>,
    largest_bytes: Option<u64>,
}

/// A broker's state once volume replacement is taken into account: a
/// claim with another uid than the one last seen means the broker came (or
/// comes) back with an empty volume. It is `Rebuilding` until it is
/// registered, every replica it hosts is back in the ISR, and it holds
/// again at least the bytes its partitions held when the new volume was
/// seen (the metadata alone could still show its previous incarnation in
/// sync). Returns the state, a message, and the bytes to hold again.
fn rebuild_state(
    seen: &RebuildSeen<'_>,
    before: Option<&BrokerStatus>,
    replaced: bool,
) -> (&'static str, String, Option<u64>) {
    let was_rebuilding = before.is_some_and(|b| b.state == "Rebuilding");
    if !(replaced || was_rebuilding) {
        return (seen.pod_state, String::new(), None);
    }
    let target = if replaced && !was_rebuilding {
        seen.largest_bytes
    } else {
        before.and_then(|b| b.rebuild_bytes).or(seen.largest_bytes)
    };
    let (replicas, in_sync) = seen.replicas;
    let copied = seen.local_bytes.unwrap_or(0);
    let whole = matches!((seen.local_bytes, target), (Some(local), Some(t)) if local >= t);
    if seen.registered && in_sync == replicas && whole && seen.pod_state == "Running" {
        return (seen.pod_state, String::new(), None);
    }
    let progress = if seen.registered {
        let bytes = target.map_or(String::new(), |t| format!(", {copied} of {t} bytes copied"));
        format!("{in_sync} of {replicas} replicas in sync{bytes}")
    } else {
        "waiting for the broker to register".to_string()
    };
    (
        "Rebuilding",
        format!(
            "new volume (claim {}); copying its replicas back from the in-sync replicas: {progress}",
            seen.claim
        ),
        target,
    )
}

/// Computes the new status from the previous one and what was observed.
/// "2 of 3 brokers ready; demo-0: Starting (its node node-0 stopped reporting ...)".
fn not_ready_message(ready: i32, desired: i32, brokers: &[BrokerStatus]) -> String {
    let mut out = format!("{ready} of {desired} brokers ready");
    for b in brokers.iter().filter(|b| b.state != "Running") {
        out.push_str(&format!("; {}: {}", b.pod, b.state));
        if !b.message.is_empty() {
            out.push_str(&format!(" ({})", b.message));
        }
    }
    out
}

pub fn compute(kc: &KafkaCluster, seen: &Observed<'_>, now: Timestamp) -> KafkaClusterStatus {
    let previous = kc.status.clone().unwrap_or_default();
    let generation = kc.metadata.generation;
    // During a scale-down the StatefulSet keeps the leaving brokers until
    // they are drained: they count as wanted until then.
    let desired = seen
        .statefulset
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(kc.spec.replicas)
        .max(0);
    let sts_status = seen.statefulset.and_then(|s| s.status.as_ref());
    let name = kc.metadata.name.clone().unwrap_or_default();
    // The StatefulSet's readyReplicas can lag behind its pods (seen after
    // it was recreated around them for a volume expansion, when a node
    // stopped reporting): a broker pod that is not ready is not counted.
    let sts_ready = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let pods_ready = (0..desired)
        .filter(|id| {
            let pod_name = format!("{name}-{id}");
            seen.pods
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()) && pod_ready(p))
        })
        .count() as i32;
    let ready = if seen.pods.is_empty() {
        sts_ready
    } else {
        sts_ready.min(pods_ready)
    };
    let sts_current = seen
        .statefulset
        .and_then(|s| s.metadata.generation)
        .zip(sts_status.and_then(|s| s.observed_generation))
        .is_some_and(|(g, o)| o >= g);

    let cluster = seen.cluster.as_ref().ok();
    let brokers: Vec<BrokerStatus> = (0..desired)
        .map(|id| {
            let pod_name = format!("{name}-{id}");
            let pod = seen
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()));
            let stranded = pod.and_then(stranded_by_volume);
            let state = match pod {
                None => "Missing",
                Some(p) if p.metadata.deletion_timestamp.is_some() => "Restarting",
                Some(p) if pod_ready(p) => "Running",
                Some(_) if stranded.is_some() => "VolumeUnreachable",
                Some(_) => "Starting",
            };
            let registered = cluster.is_some_and(|c| c.brokers.iter().any(|b| b.id == id));
            let (replicas, in_sync_replicas) = cluster.map_or((0, 0), |c| c.replicas_in_sync(id));
            let before = previous.brokers.iter().find(|b| b.id == id);
            let claim = claim_name(&name, id);
            let uid = claim_uid(seen.claims, &claim).map(str::to_string);
            let hosted: Vec<(String, i32)> = cluster.map_or_else(Vec::new, |c| {
                c.partitions
                    .iter()
                    .filter(|p| p.replicas.contains(&id))
                    .map(|p| (p.topic.clone(), p.partition))
                    .collect()
            });
            let sum = |sizes: &crate::rebalance::Sizes| -> u64 {
                hosted.iter().filter_map(|k| sizes.get(k)).sum()
            };
            let (state, message, rebuild_bytes) = rebuild_state(
                &RebuildSeen {
                    claim: &claim,
                    pod_state: state,
                    registered: registered && cluster.is_some(),
                    replicas: (replicas, in_sync_replicas),
                    local_bytes: seen.sizes.and_then(|s| s.get(&id)).map(&sum),
                    largest_bytes: seen
                        .sizes
                        .map(|s| sum(&crate::rebalance::largest_copies(s))),
                },
                before,
                volume_replaced(before, uid.as_deref()),
            );
            // A broker whose volume cannot be reached is rebuilt elsewhere
            // on a new volume once a person lets that volume go.
            let node_gone = pod.and_then(node_stopped_reporting);
            let message = match (&stranded, &node_gone) {
                (Some(why), _) if state == "VolumeUnreachable" => format!(
                    "its volume is bound to a node that cannot run it ({why}); to rebuild the broker on a new volume: kubectl delete pvc {claim} && kubectl delete pod {pod_name}"
                ),
                (_, Some(node)) if state == "Starting" => format!(
                    "its node {node} stopped reporting (kubelet or machine down); the other replicas serve its partitions. Check the node (kubectl describe node {node}); if it is gone for good, kubectl delete pod {pod_name} --force --grace-period=0 lets the pod go elsewhere (a local volume then needs the steps of 'A lost volume' in docs/operations.md)"
                ),
                _ => message,
            };
            BrokerStatus {
                id,
                pod: pod_name.clone(),
                state: state.to_string(),
                message,
                // A claim not seen (deleted, not yet made again) keeps the
                // last known uid, so that its successor is recognised.
                volume: uid.or_else(|| before.and_then(|b| b.volume.clone())),
                replicas,
                in_sync_replicas,
                rebuild_bytes,
                registered,
                leader_count: cluster.map_or(0, |c| c.leader_count(id)),
                under_replicated: cluster.map_or(0, |c| c.under_replicated(id)),
            }
        })
        .collect();

    let mut conds = previous.conditions.clone();
    let waiting = ready < desired || !sts_current;
    let reconciling = if seen.statefulset.is_none() {
        Wanted {
            type_: RECONCILING,
            status: true,
            reason: "Creating",
            message: "creating the broker StatefulSet".into(),
        }
    } else if waiting {
        Wanted {
            type_: RECONCILING,
            status: true,
            reason: "WaitingForBrokers",
            message: format!("{ready} of {desired} brokers ready"),
        }
    } else {
        Wanted {
            type_: RECONCILING,
            status: false,
            reason: "Reconciled",
            message: format!("{desired} brokers as specified"),
        }
    };
    conditions::set(&mut conds, reconciling, generation, now);

    let degraded = match &seen.cluster {
        Err(why) => Wanted {
            type_: DEGRADED,
            status: true,
            reason: "ClusterUnreachable",
            message: format!("cannot read the cluster's metadata: {why}"),
        },
        Ok(c) => {
            let (n, named) = name_under_replicated(c);
            if n > 0 {
                Wanted {
                    type_: DEGRADED,
                    status: true,
                    reason: "UnderReplicated",
                    message: format!("{n} partitions below their replica count: {named}"),
                }
            } else {
                Wanted {
                    type_: DEGRADED,
                    status: false,
                    reason: "AllInSync",
                    message: "every partition has its full ISR".into(),
                }
            }
        }
    };
    let reachable = seen.cluster.is_ok();
    conditions::set(&mut conds, degraded, generation, now);

    let ready_cond = if !waiting && reachable {
        Wanted {
            type_: READY,
            status: true,
            reason: "BrokersReady",
            message: format!("{ready} of {desired} brokers ready"),
        }
    } else if waiting {
        Wanted {
            type_: READY,
            status: false,
            reason: "BrokersNotReady",
            message: not_ready_message(ready, desired, &brokers),
        }
    } else {
        Wanted {
            type_: READY,
            status: false,
            reason: "ClusterUnreachable",
            message: "the brokers run but the cluster's metadata cannot be read".into(),
        }
    };
    conditions::set(&mut conds, ready_cond, generation, now);

    KafkaClusterStatus {
        conditions: conds,
        observed_generation: generation,
        ready_replicas: ready,
        selector: Some(resources::selector_string(kc)),
        brokers,
        bootstrap_servers: Some(resources::bootstrap_servers(kc)),
        cluster_id: cluster
            .and_then(|c| c.cluster_id.clone())
            .or(previous.cluster_id),
        // The reconciler's rebalancing state, carried until it updates it.
        applied_replicas: previous.applied_replicas,
        balanced_replicas: previous.balanced_replicas,
        plan: previous.plan,
        unregistering: previous.unregistering,
        quorum: previous.quorum,
    }
}

/// The status when the spec cannot be rendered: nothing is applied.
pub fn invalid_spec(kc: &KafkaCluster, why: &str, now: Timestamp) -> KafkaClusterStatus {
    let mut status = kc.status.clone().unwrap_or_default();
    let generation = kc.metadata.generation;
    conditions::set(
        &mut status.conditions,
        Wanted {
            type_: READY,
            status: false,
            reason: "InvalidSpec",
            message: why.to_string(),
        },
        generation,
        now,
    );
    status.observed_generation = generation;
    status.selector = Some(resources::selector_string(kc));
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use sluice_client::{BrokerInfo, PartitionInfo};

    fn kc(replicas: i32) -> KafkaCluster {
        let mut kc: KafkaCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "KafkaCluster",
            "metadata": {"name": "demo", "namespace": "ns", "generation": 4},
            "spec": {"replicas": replicas, "storage": {"size": "1Gi"}}
        }))
        .expect("kc");
        kc.status = None;
        kc
    }

    fn sts(ready: i32, generation: i64, observed: i64) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                ready_replicas: Some(ready),
                observed_generation: Some(observed),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn pod(name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn cluster(isr_short: bool) -> ClusterInfo {
        ClusterInfo {
            cluster_id: Some("abc".into()),
            controller_id: 0,
            brokers: (0..3)
                .map(|id| BrokerInfo {
                    id,
                    host: format!("demo-{id}"),
                    port: 9092,
                    rack: None,
                })
                .collect(),
            partitions: vec![
                PartitionInfo {
                    topic: "orders".into(),
                    partition: 0,
                    leader: 0,
                    replicas: vec![0, 1, 2],
                    isr: if isr_short { vec![0, 1] } else { vec![0, 1, 2] },
                },
                PartitionInfo {
                    topic: "orders".into(),
                    partition: 1,
                    leader: 1,
                    replicas: vec![1, 2, 0],
                    isr: vec![1, 2, 0],
                },
            ],
        }
    }

    fn cond<'a>(s: &'a KafkaClusterStatus, t: &str) -> (&'a str, &'a str) {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition in {s:?}"));
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn fresh_cluster_is_creating_and_not_ready() {
        let k = kc(3);
        let s = compute(
            &k,
            &Observed {
                statefulset: None,
                pods: &[],
                claims: &[],
                sizes: None,
                cluster: Err("connection refused".into()),
            },
            Timestamp::now(),
        );
        assert_eq!(cond(&s, READY), ("False", "BrokersNotReady"));
        assert_eq!(cond(&s, RECONCILING), ("True", "Creating"));
        assert_eq!(cond(&s, DEGRADED), ("True", "ClusterUnreachable"));
        assert_eq!(s.ready_replicas, 0);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.brokers.len(), 3);
        assert!(
            s.brokers
                .iter()
                .all(|b| b.state == "Missing" && !b.registered)
        );
        assert_eq!(
            s.selector.as_deref(),
            Some(
                "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=sluice"
            )
        );
        assert_eq!(
            s.bootstrap_servers.as_deref(),
            Some("demo-bootstrap.ns.svc:9092")
        );
    }

    #[test]
    fn all_ready_and_in_sync_is_ready() {
        let k = kc(3);
        let set = sts(3, 2, 2);
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let c = cluster(false);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &pods,
                claims: &[],
                sizes: None,
                cluster: Ok(&c),
            },
            Timestamp::now(),
        );
        assert_eq!(cond(&s, READY), ("True", "BrokersReady"));
        assert_eq!(cond(&s, RECONCILING), ("False", "Reconciled"));
        assert_eq!(cond(&s, DEGRADED), ("False", "AllInSync"));
        assert_eq!(s.cluster_id.as_deref(), Some("abc"));
        assert_eq!(s.ready_replicas, 3);
        let b0 = &s.brokers[0];
        assert_eq!(
            (b0.state.as_str(), b0.registered, b0.leader_count),
            ("Running", true, 1)
        );
    }

    #[test]
    fn short_isr_is_degraded_and_named() {
        let k = kc(3);
        let set = sts(3, 2, 2);
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", false),
        ];
        let c = cluster(true);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &pods,
                claims: &[],
                sizes: None,
                cluster: Ok(&c),
            },
            Timestamp::now(),
        );
        let d = s
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "UnderReplicated")
        );
        assert!(d.message.contains("orders-0"), "{}", d.message);
        assert_eq!(s.brokers[2].state, "Starting");
        assert_eq!(s.brokers[2].under_replicated, 1);
    }

    #[test]
    fn a_pod_held_back_by_its_volume_says_how_to_rebuild_it() {
        let k = kc(3);
        let set = sts(2, 2, 2);
        let mut stuck = pod("demo-2", false);
        if let Some(st) = stuck.status.as_mut() {
            st.conditions = Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(
                    "0/3 nodes are available: 3 node(s) had volume node affinity conflict.".into(),
                ),
                ..PodCondition::default()
            }]);
        }
        let pods = [pod("demo-0", true), pod("demo-1", true), stuck];
        let c = cluster(true);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &pods,
                claims: &[],
                sizes: None,
                cluster: Ok(&c),
            },
            Timestamp::now(),
        );
        let b = &s.brokers[2];
        assert_eq!(b.state, "VolumeUnreachable");
        assert!(
            b.message
                .contains("kubectl delete pvc data-demo-2 && kubectl delete pod demo-2"),
            "{}",
            b.message
        );
        assert!(b.message.contains("volume node affinity conflict"));
        // A pod merely starting is not.
        assert_eq!(s.brokers[1].state, "Running");
    }

    #[test]
    fn a_broker_whose_node_stopped_reporting_is_named_with_what_to_do() {
        let k = kc(3);
        let set = sts(2, 1, 1);
        let mut cut_off = pod("demo-0", false);
        cut_off.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some("node-0".into()),
            ..Default::default()
        });
        if let Some(conds) = cut_off.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conds.push(PodCondition {
                type_: "ContainersReady".into(),
                status: "True".into(),
                ..PodCondition::default()
            });
        }
        let pods = [cut_off, pod("demo-1", true), pod("demo-2", true)];
        let c = cluster(true);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &pods,
                claims: &[],
                sizes: None,
                cluster: Ok(&c),
            },
            Timestamp::now(),
        );
        let b = &s.brokers[0];
        assert!(
            b.message.contains("its node node-0 stopped reporting"),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("kubectl describe node node-0"),
            "{}",
            b.message
        );
        let r = s
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready");
        assert_eq!(r.status, "False");
        assert!(
            r.message.contains("demo-0: Starting (its node node-0"),
            "{}",
            r.message
        );
        // A pod that is merely starting says nothing of its node.
        assert!(!s.brokers[1].message.contains("node"));
    }

    #[test]
    fn scaled_statefulset_not_yet_observed_is_reconciling() {
        let k = kc(5);
        let set = sts(3, 3, 2);
        let c = cluster(false);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &[],
                claims: &[],
                sizes: None,
                cluster: Ok(&c),
            },
            Timestamp::now(),
        );
        assert_eq!(cond(&s, RECONCILING), ("True", "WaitingForBrokers"));
        assert_eq!(cond(&s, READY), ("False", "BrokersNotReady"));
        let r = s
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready");
        assert!(
            r.message
                .starts_with("3 of 5 brokers ready; demo-0: Missing"),
            "{}",
            r.message
        );
    }

    #[test]
    fn cluster_id_survives_an_unreachable_cluster() {
        let mut k = kc(1);
        k.status = Some(KafkaClusterStatus {
            cluster_id: Some("kept".into()),
            ..KafkaClusterStatus::default()
        });
        let set = sts(1, 1, 1);
        let s = compute(
            &k,
            &Observed {
                statefulset: Some(&set),
                pods: &[],
                claims: &[],
                sizes: None,
                cluster: Err("timed out".into()),
            },
            Timestamp::now(),
        );
        assert_eq!(s.cluster_id.as_deref(), Some("kept"));
        assert_eq!(cond(&s, READY), ("False", "ClusterUnreachable"));
    }
}
