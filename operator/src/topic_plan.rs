//! What the Topic controller should do, as a pure function of the desired
//! spec and what the cluster reports: the plan is what tests check and
//! what the status shows; a thin layer applies it with the admin client.

use std::collections::BTreeMap;

use crate::crd::TopicSpec;

/// The topic as found on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Configs set on the topic itself (not defaults).
    pub overrides: BTreeMap<String, String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    IncreasePartitions {
        from: i32,
        to: i32,
    },
    /// Set (Some) or remove (None) topic configs.
    AlterConfigs(BTreeMap<String, Option<String>>),
    /// Add or remove replicas by reassignment (`crate::rebalance`); it
    /// takes several passes, the status says how far it is.
    ChangeReplicationFactor {
        from: i32,
        to: i32,
    },
}

/// Why nothing (more) may happen; shown as a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Kafka cannot remove partitions.
    PartitionDecrease { current: i32, wanted: i32 },
    /// The replication factor does not fit in an i16, as Kafka requires.
    InvalidReplicationFactor(i32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PartitionDecrease { current, wanted } => write!(
                f,
                "the topic has {current} partitions and cannot shrink to {wanted}: Kafka cannot remove partitions"
            ),
            Refusal::InvalidReplicationFactor(rf) => {
                write!(f, "replication factor {rf} is out of range")
            }
        }
    }
}

/// The plan: actions to apply in order, and refusals to report. Refused
/// changes never block the rest (a config change still applies when a
/// partition decrease is refused).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// Nothing to do and nothing refused: the topic matches its spec.
    pub fn is_converged(&self) -> bool {
        self.actions.is_empty() && self.refusals.is_empty()
    }
}

/// Plans the change from `observed` (None: no such topic) to `spec`. An
/// existing topic of the same name is adopted, not recreated.
pub fn plan(spec: &TopicSpec, observed: Option<&Observed>) -> Plan {
    let mut p = Plan::default();
    let Ok(rf) = i16::try_from(spec.replication_factor) else {
        p.refusals
            .push(Refusal::InvalidReplicationFactor(spec.replication_factor));
        return p;
    };
    let Some(o) = observed else {
        p.actions.push(Action::Create {
            partitions: spec.partitions,
            replication_factor: rf,
            configs: spec.config.clone(),
        });
        return p;
    };
    match spec.partitions.cmp(&o.partitions) {
        std::cmp::Ordering::Greater => p.actions.push(Action::IncreasePartitions {
            from: o.partitions,
            to: spec.partitions,
        }),
        std::cmp::Ordering::Less => p.refusals.push(Refusal::PartitionDecrease {
            current: o.partitions,
            wanted: spec.partitions,
        }),
        std::cmp::Ordering::Equal => {}
    }
    if spec.replication_factor != o.replication_factor {
        p.actions.push(Action::ChangeReplicationFactor {
            from: o.replication_factor,
            to: spec.replication_factor,
        });
    }
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (k, v) in &spec.config {
        if o.overrides.get(k) != Some(v) {
            changes.insert(k.clone(), Some(v.clone()));
        }
    }
    for k in o.overrides.keys() {
        if !spec.config.contains_key(k) {
            // Declared state: an override not in the spec goes back to the
            // cluster default.
            changes.insert(k.clone(), None);
        }
    }
    if !changes.is_empty() {
        p.actions.push(Action::AlterConfigs(changes));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DeletionPolicy;

    fn spec(partitions: i32, rf: i32, config: &[(&str, &str)]) -> TopicSpec {
        TopicSpec {
            cluster_ref: "demo".into(),
            topic_name: None,
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deletion_policy: DeletionPolicy::Retain,
        }
    }

    fn observed(partitions: i32, rf: i32, overrides: &[(&str, &str)]) -> Observed {
        Observed {
            partitions,
            replication_factor: rf,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn missing_topic_is_created() {
        let p = plan(&spec(3, 1, &[("retention.ms", "1000")]), None);
        assert_eq!(
            p.actions,
            vec![Action::Create {
                partitions: 3,
                replication_factor: 1,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }]
        );
    }

    #[test]
    fn matching_topic_is_adopted_and_converged() {
        let p = plan(
            &spec(3, 1, &[("retention.ms", "1000")]),
            Some(&observed(3, 1, &[("retention.ms", "1000")])),
        );
        assert!(p.is_converged(), "{p:?}");
    }

    #[test]
    fn growth_and_config_drift_are_planned_decrease_refused() {
        let s = spec(6, 1, &[("retention.ms", "2000")]);
        let p = plan(
            &s,
            Some(&observed(
                3,
                1,
                &[("retention.ms", "1000"), ("segment.bytes", "1048576")],
            )),
        );
        assert_eq!(p.actions[0], Action::IncreasePartitions { from: 3, to: 6 });
        assert_eq!(
            p.actions[1],
            Action::AlterConfigs(BTreeMap::from([
                ("retention.ms".into(), Some("2000".into())),
                ("segment.bytes".into(), None),
            ]))
        );
        let p = plan(&spec(2, 1, &[]), Some(&observed(3, 1, &[])));
        assert_eq!(
            p.refusals,
            vec![Refusal::PartitionDecrease {
                current: 3,
                wanted: 2
            }]
        );
        assert!(p.actions.is_empty());
        assert!(p.refusals[0].to_string().contains("cannot shrink"));
        let p = plan(&spec(3, 3, &[]), Some(&observed(3, 1, &[])));
        assert_eq!(
            p.actions,
            vec![Action::ChangeReplicationFactor { from: 1, to: 3 }]
        );
        let p = plan(&spec(3, 70_000, &[]), None);
        assert_eq!(p.refusals, vec![Refusal::InvalidReplicationFactor(70_000)]);
    }

    #[test]
    fn replanning_after_applying_converges() {
        let s = spec(4, 3, &[("cleanup.policy", "compact")]);
        let mut o = observed(2, 1, &[("retention.ms", "5")]);
        for a in plan(&s, Some(&o)).actions {
            match a {
                Action::IncreasePartitions { to, .. } => o.partitions = to,
                Action::AlterConfigs(c) => {
                    for (k, v) in c {
                        match v {
                            Some(v) => {
                                o.overrides.insert(k, v);
                            }
                            None => {
                                o.overrides.remove(&k);
                            }
                        }
                    }
                }
                Action::ChangeReplicationFactor { to, .. } => o.replication_factor = to,
                Action::Create { .. } => unreachable!("the topic exists"),
            }
        }
        assert!(plan(&s, Some(&o)).is_converged());
    }
}
