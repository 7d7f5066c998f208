//! How a command changes the metadata: `MetadataImage::apply` is the
//! whole state machine, pure, deterministic, and the same on every node for
//! the same log. The data it changes is in [`crate::model`] (re-exported
//! here).

use std::collections::BTreeMap;

pub use crate::model::{
    Acl, BrokerRegistration, Command, MetadataImage, Outcome, PartitionState, Refusal,
    ScramCredential, TopicState,
};

impl MetadataImage {
    /// Applies one command. Never panics: a command that does not fit the
    /// current state is refused, and the state is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match self.try_apply(cmd) {
            Ok(o) => o,
            Err(r) => Outcome::Refused(r),
        }
    }

    fn try_apply(&mut self, cmd: &Command) -> Result<Outcome, Refusal> {
        match cmd {
            Command::InitCluster { cluster_id } => match &self.cluster_id {
                Some(c) if c != cluster_id => Err(Refusal::ClusterIdMismatch(c.clone())),
                _ => {
                    self.cluster_id = Some(cluster_id.clone());
                    Ok(Outcome::Ok)
                }
            },
            Command::RegisterBroker {
                id,
                incarnation,
                kafka_address,
                listeners,
                internal_address,
                rack,
                directory_id,
            } => {
                if *id < 0 {
                    return Err(Refusal::Invalid(format!("broker id {id}")));
                }
                if let Some(b) = self.brokers.get(id) {
                    if b.incarnation == *incarnation {
                        return Ok(Outcome::Registered { epoch: b.epoch });
                    }
                }
                self.next_broker_epoch += 1;
                let epoch = self.next_broker_epoch;
                let replaced = self.brokers.contains_key(id);
                // A (re-)registered broker starts fenced: it is unfenced once
                // it has caught up on metadata and heartbeats.
                self.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        epoch,
                        incarnation: *incarnation,
                        kafka_address: kafka_address.clone(),
                        listeners: listeners.clone(),
                        internal_address: internal_address.clone(),
                        rack: rack.clone(),
                        directory_id: *directory_id,
                        fenced: true,
                    },
                );
                if replaced {
                    // The previous incarnation's leaderships and ISR places
                    // end here, not a controller tick later: the new process
                    // may have restarted on an empty volume, and a heartbeat
                    // can unfence it before the controller looks.
                    for change in crate::controller::partition_changes_for(self, *id) {
                        let _ = self.apply(&change);
                    }
                }
                Ok(Outcome::Registered { epoch })
            }
            Command::UnregisterBroker { id } => {
                let b = self.brokers.get(id).ok_or(Refusal::UnknownBroker(*id))?;
                if !b.fenced {
                    return Err(Refusal::BrokerInUse(format!(
                        "broker {id} is running: stop it before unregistering it"
                    )));
                }
                let held = self.hosted_by(*id);
                if !held.is_empty() {
                    let shown: Vec<String> = held
                        .iter()
                        .take(3)
                        .map(|(t, i)| format!("{t}-{i}"))
                        .collect();
                    return Err(Refusal::BrokerInUse(format!(
                        "broker {id} still holds replicas of {} partition(s) ({}); move them first",
                        held.len(),
                        shown.join(", ")
                    )));
                }
                self.brokers.remove(id);
                Ok(Outcome::Ok)
            }
            Command::SetFenced { id, epoch, fenced } => {
                let b = self
                    .brokers
                    .get_mut(id)
                    .ok_or(Refusal::UnknownBroker(*id))?;
                if b.epoch != *epoch {
                    return Err(Refusal::StaleBrokerEpoch {
                        id: *id,
                        got: *epoch,
                        current: b.epoch,
                    });
                }
                let unfenced = b.fenced && !*fenced;
                b.fenced = *fenced;
                if unfenced {
                    // Leaderless partitions it can lead are elected in the
                    // same command, as Kafka's controller does on
                    // unfencing: no client sees the broker serving and
                    // its partitions offline (a lone broker's, after a
                    // restart, would otherwise be until the controller
                    // loop's next look).
                    for change in crate::controller::partition_changes_for(self, *id) {
                        let _ = self.apply(&change);
                    }
                }
                Ok(Outcome::Ok)
            }
            Command::CreateTopic {
                name,
                id,
                assignment,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(Refusal::TopicExists(name.clone()));
                }
                let partitions = self.new_partitions(assignment)?;
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        id: *id,
                        partitions,
                        configs: configs.clone(),
                    },
                );
                Ok(Outcome::Ok)
            }
            Command::CreatePartitions {
                name,
                id,
                expected_count,
                assignment,
            } => {
                let partitions = self.new_partitions(assignment)?;
                let t = self.topic_mut(name, id)?;
                if t.partitions.len() != *expected_count {
                    return Err(Refusal::Invalid(format!(
                        "topic {name} has {} partitions now, not {expected_count}",
                        t.partitions.len()
                    )));
                }
                t.partitions.extend(partitions);
                Ok(Outcome::Ok)
            }
            Command::AlterTopicConfigs { name, id, configs } => {
                self.topic_mut(name, id)?.configs = configs.clone();
                Ok(Outcome::Ok)
            }
            Command::AlterBrokerConfigs { resource, changes } => {
                if !resource.is_empty() && resource.parse::<u32>().is_err() {
                    return Err(Refusal::Invalid(format!(
                        "broker config resource {resource:?} is neither empty nor a broker id"
                    )));
                }
                let configs = self.broker_configs.entry(resource.clone()).or_default();
                for (name, value) in changes {
                    match value {
                        Some(v) => configs.insert(name.clone(), v.clone()),
                        None => configs.remove(name),
                    };
                }
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                }
                Ok(Outcome::Ok)
            }
            Command::AlterScramCredentials { changes } => {
                if changes.iter().any(|(user, _, _)| user.is_empty()) {
                    return Err(Refusal::Invalid(
                        "a SCRAM credential for an empty user name".into(),
                    ));
                }
                for (user, mechanism, credential) in changes {
                    let of_user = self.scram_credentials.entry(user.clone()).or_default();
                    match credential {
                        Some(c) => of_user.insert(mechanism.clone(), c.clone()),
                        None => of_user.remove(mechanism),
                    };
                    if of_user.is_empty() {
                        self.scram_credentials.remove(user);
                    }
                }
                Ok(Outcome::Ok)
            }
            Command::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                Ok(Outcome::Ok)
            }
            Command::DeleteAcls { acls } => {
                for a in acls {
                    self.acls.remove(a);
                }
                Ok(Outcome::Ok)
            }
            Command::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| Refusal::UnknownTopic(name.clone()))?;
                Ok(Outcome::Ok)
            }
            Command::ChangePartition {
                topic,
                partition,
                expected_partition_epoch,
                leader,
                isr,
            } => {
                let p = partition_mut(&mut self.topics, topic, *partition)?;
                if p.partition_epoch != *expected_partition_epoch {
                    return Err(Refusal::StalePartitionEpoch {
                        got: *expected_partition_epoch,
                        current: p.partition_epoch,
                    });
                }
                if isr.iter().any(|r| !p.replicas.contains(r)) {
                    return Err(Refusal::Invalid(format!(
                        "ISR {isr:?} not within replicas {:?}",
                        p.replicas
                    )));
                }
                if *leader != -1 && !isr.contains(leader) {
                    return Err(Refusal::Invalid(format!(
                        "leader {leader} not in ISR {isr:?}"
                    )));
                }
                if isr.is_empty() {
                    return Err(Refusal::Invalid("an ISR cannot be empty".into()));
                }
                // Only live brokers join an ISR (Kafka's INELIGIBLE_REPLICA):
                // a fenced broker may have fetched, but the controller has
                // not heard from its current incarnation.
                if let Some(r) = isr
                    .iter()
                    .find(|r| !p.isr.contains(r) && self.brokers.get(r).is_none_or(|b| b.fenced))
                {
                    return Err(Refusal::IneligibleReplica(*r));
                }
                if *leader != p.leader {
                    p.leader_epoch += 1;
                }
                p.leader = *leader;
                p.isr = isr.clone();
                p.partition_epoch += 1;
                // The ISR may now hold every replica a move was waiting for.
                let live = live_set(&self.brokers);
                crate::reassign::maybe_complete(p, &|r| live.contains(r));
                Ok(Outcome::Ok)
            }
            Command::ReassignPartition {
                topic,
                partition,
                target,
            } => {
                let live = live_set(&self.brokers);
                let registered: Vec<i32> = self.brokers.keys().copied().collect();
                let p = partition_mut(&mut self.topics, topic, *partition)?;
                let is_live = |r: &i32| live.contains(r);
                match target {
                    Some(target) => crate::reassign::start(p, target, &registered, &is_live)?,
                    None => crate::reassign::cancel(p, &is_live, topic, *partition)?,
                }
                Ok(Outcome::Ok)
            }
        }
    }
}

impl MetadataImage {
    /// New partitions for `assignment` (one replica set each, not empty, no
    /// broker twice): the first live replica leads, fenced ones start out
    /// of the ISR.
    fn new_partitions(&self, assignment: &[Vec<i32>]) -> Result<Vec<PartitionState>, Refusal> {
        if assignment.is_empty() {
            return Err(Refusal::Invalid("a topic needs a partition".into()));
        }
        let mut partitions = Vec::with_capacity(assignment.len());
        for replicas in assignment {
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if replicas.is_empty() || seen.len() != replicas.len() {
                return Err(Refusal::Invalid(format!("replica set {replicas:?}")));
            }
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| self.brokers.get(r).is_some_and(|b| !b.fenced))
                .collect();
            partitions.push(PartitionState {
                replicas: replicas.clone(),
                leader: isr.first().copied().unwrap_or(-1),
                isr,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            });
        }
        Ok(partitions)
    }

    /// The topic of this name and id (one deleted and created again under
    /// the same name has another id).
    fn topic_mut(&mut self, name: &str, id: &[u8; 16]) -> Result<&mut TopicState, Refusal> {
        self.topics
            .get_mut(name)
            .filter(|t| t.id == *id)
            .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))
    }
}

/// A partition of the image, or the refusal naming what is unknown.
fn partition_mut<'a>(
    topics: &'a mut BTreeMap<String, TopicState>,
    topic: &str,
    partition: i32,
) -> Result<&'a mut PartitionState, Refusal> {
    let t = topics
        .get_mut(topic)
        .ok_or_else(|| Refusal::UnknownTopic(topic.to_string()))?;
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get_mut(i))
        .ok_or_else(|| Refusal::UnknownPartition {
            topic: topic.to_string(),
            partition,
        })
}

/// Ids of the registered, unfenced brokers.
fn live_set(brokers: &BTreeMap<i32, BrokerRegistration>) -> Vec<i32> {
    brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(img: &mut MetadataImage, id: i32) -> u64 {
        let incarnation = img.brokers.get(&id).map_or(1, |b| b.incarnation + 1);
        match img.apply(&Command::RegisterBroker {
            id,
            incarnation,
            kafka_address: format!("b{id}:9092"),
            listeners: Default::default(),
            internal_address: format!("b{id}:9093"),
            rack: None,
            directory_id: Default::default(),
        }) {
            Outcome::Registered { epoch } => epoch,
            o => panic!("{o:?}"),
        }
    }

    fn live(img: &mut MetadataImage, id: i32) {
        let epoch = register(img, id);
        assert_eq!(
            img.apply(&Command::SetFenced {
                id,
                epoch,
                fenced: false
            }),
            Outcome::Ok
        );
    }

    #[test]
    fn cluster_id_is_set_once() {
        let mut img = MetadataImage::default();
        assert_eq!(
            img.apply(&Command::InitCluster {
                cluster_id: "a".into()
            }),
            Outcome::Ok
        );
        assert_eq!(
            img.apply(&Command::InitCluster {
                cluster_id: "a".into()
            }),
            Outcome::Ok
        );
        assert_eq!(
            img.apply(&Command::InitCluster {
                cluster_id: "b".into()
            }),
            Outcome::Refused(Refusal::ClusterIdMismatch("a".into()))
        );
    }

    #[test]
    fn registration_bumps_the_epoch_and_stale_fencing_is_refused() {
        let mut img = MetadataImage::default();
        let e1 = register(&mut img, 1);
        let e2 = register(&mut img, 1);
        assert!(e2 > e1);
        assert!(img.brokers[&1].fenced, "a new incarnation starts fenced");
        assert!(matches!(
            img.apply(&Command::SetFenced {
                id: 1,
                epoch: e1,
                fenced: false
            }),
            Outcome::Refused(Refusal::StaleBrokerEpoch { .. })
        ));
        assert!(img.brokers[&1].fenced);
    }

    #[test]
    fn a_retried_registration_keeps_its_epoch() {
        let mut img = MetadataImage::default();
        let reg = Command::RegisterBroker {
            id: 4,
            incarnation: 77,
            kafka_address: String::new(),
            listeners: Default::default(),
            internal_address: String::new(),
            rack: None,
            directory_id: Default::default(),
        };
        let first = img.apply(&reg);
        assert_eq!(img.apply(&reg), first);
        assert!(matches!(first, Outcome::Registered { epoch: 1 }));
    }

    #[test]
    fn fenced_brokers_cannot_join_an_isr() {
        let mut img = MetadataImage::default();
        live(&mut img, 0);
        live(&mut img, 1);
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            assignment: vec![vec![0, 1]],
            configs: BTreeMap::new(),
        });
        let e = img.brokers[&1].epoch;
        img.apply(&Command::SetFenced {
            id: 1,
            epoch: e,
            fenced: true,
        });
        img.apply(&Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            expected_partition_epoch: 0,
            leader: 0,
            isr: vec![0],
        });
        let grow = Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            expected_partition_epoch: 1,
            leader: 0,
            isr: vec![0, 1],
        };
        assert_eq!(
            img.apply(&grow),
            Outcome::Refused(Refusal::IneligibleReplica(1))
        );
        img.apply(&Command::SetFenced {
            id: 1,
            epoch: e,
            fenced: false,
        });
        assert_eq!(img.apply(&grow), Outcome::Ok);
    }

    #[test]
    fn topics_start_with_live_replicas_in_the_isr() {
        let mut img = MetadataImage::default();
        live(&mut img, 0);
        live(&mut img, 1);
        register(&mut img, 2); // fenced
        let create = Command::CreateTopic {
            name: "t".into(),
            id: [7; 16],
            assignment: vec![vec![2, 0, 1], vec![1, 2, 0]],
            configs: BTreeMap::new(),
        };
        assert_eq!(img.apply(&create), Outcome::Ok);
        let t = &img.topics["t"];
        assert_eq!(
            (t.partitions[0].leader, t.partitions[0].isr.clone()),
            (0, vec![0, 1])
        );
        assert_eq!(
            (t.partitions[1].leader, t.partitions[1].isr.clone()),
            (1, vec![1, 0])
        );
        assert_eq!(
            img.apply(&create),
            Outcome::Refused(Refusal::TopicExists("t".into()))
        );
        let dup = Command::CreateTopic {
            name: "u".into(),
            id: [8; 16],
            assignment: vec![vec![0, 0]],
            configs: BTreeMap::new(),
        };
        assert!(matches!(
            img.apply(&dup),
            Outcome::Refused(Refusal::Invalid(_))
        ));
        assert!(!img.topics.contains_key("u"));
    }

    #[test]
    fn a_new_incarnation_ends_the_old_ones_leaderships_and_isr_places() {
        let mut img = MetadataImage::default();
        for id in 0..3 {
            live(&mut img, id);
        }
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [3; 16],
            assignment: vec![vec![2, 0, 1], vec![0, 1, 2], vec![2]],
            configs: BTreeMap::new(),
        });
        let led_before = img.topics["t"].partitions[0].leader_epoch;
        // Broker 2 restarts (maybe on an empty volume) and registers again
        // before the controller noticed it was gone.
        register(&mut img, 2);
        let ps = &img.topics["t"].partitions;
        assert_eq!(ps[0].leader, 0, "leadership moved in the same command");
        assert_eq!(ps[0].isr, vec![0, 1]);
        assert!(ps[0].leader_epoch > led_before, "a new leader epoch");
        assert_eq!(ps[1].isr, vec![0, 1]);
        assert_eq!(ps[1].leader, 0, "untouched leadership of another broker");
        // Its only copy: kept in the ISR, offline until it is unfenced.
        assert_eq!((ps[2].leader, ps[2].isr.clone()), (-1, vec![2]));
    }

    #[test]
    fn only_a_stopped_broker_without_replicas_is_unregistered() {
        let mut img = MetadataImage::default();
        for id in 0..3 {
            live(&mut img, id);
        }
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [4; 16],
            assignment: vec![vec![0, 1], vec![1, 2]],
            configs: BTreeMap::new(),
        });
        let unregister = |id| Command::UnregisterBroker { id };
        assert_eq!(
            img.apply(&unregister(7)),
            Outcome::Refused(Refusal::UnknownBroker(7))
        );
        assert!(matches!(
            img.apply(&unregister(2)),
            Outcome::Refused(Refusal::BrokerInUse(m)) if m.contains("running")
        ));
        let epoch = img.brokers[&2].epoch;
        img.apply(&Command::SetFenced {
            id: 2,
            epoch,
            fenced: true,
        });
        assert!(matches!(
            img.apply(&unregister(2)),
            Outcome::Refused(Refusal::BrokerInUse(m)) if m.contains("t-1")
        ));
        assert!(img.brokers.contains_key(&2));
        // Its replica moves away; then it goes.
        img.apply(&Command::ReassignPartition {
            topic: "t".into(),
            partition: 1,
            target: Some(vec![1]),
        });
        let p = &img.topics["t"].partitions[1];
        assert!(!p.replicas.contains(&2), "{p:?}");
        assert_eq!(img.apply(&unregister(2)), Outcome::Ok);
        assert!(!img.brokers.contains_key(&2));
    }

    #[test]
    fn partition_changes_are_compare_and_set() {
        let mut img = MetadataImage::default();
        live(&mut img, 0);
        live(&mut img, 1);
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            assignment: vec![vec![0, 1]],
            configs: BTreeMap::new(),
        });
        let change = |epoch, leader, isr: &[i32]| Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            expected_partition_epoch: epoch,
            leader,
            isr: isr.to_vec(),
        };
        assert_eq!(img.apply(&change(0, 1, &[1])), Outcome::Ok);
        let p = &img.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 1));
        // Computed from the old epoch: refused, nothing changes.
        assert!(matches!(
            img.apply(&change(0, 0, &[0, 1])),
            Outcome::Refused(Refusal::StalePartitionEpoch { got: 0, current: 1 })
        ));
        // ISR grows back without a leader change: leader epoch stays.
        assert_eq!(img.apply(&change(1, 1, &[1, 0])), Outcome::Ok);
        let p = &img.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 2));
        // A leader outside the ISR, or an ISR outside the replicas: refused.
        assert!(matches!(
            img.apply(&change(2, 0, &[1])),
            Outcome::Refused(Refusal::Invalid(_))
        ));
        assert!(matches!(
            img.apply(&change(2, 1, &[1, 5])),
            Outcome::Refused(Refusal::Invalid(_))
        ));
        assert!(matches!(
            img.apply(&change(2, -1, &[])),
            Outcome::Refused(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn an_isr_change_completes_a_reassignment() {
        let mut img = MetadataImage::default();
        for id in 0..4 {
            live(&mut img, id);
        }
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            assignment: vec![vec![0, 1, 2]],
            configs: BTreeMap::new(),
        });
        let reassign = |target: Option<Vec<i32>>| Command::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target,
        };
        assert_eq!(img.apply(&reassign(Some(vec![3, 1, 2]))), Outcome::Ok);
        let p = img.topics["t"].partitions[0].clone();
        assert_eq!(p.replicas, vec![3, 1, 2, 0]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3], vec![0])
        );
        // The leader (0) takes 3 into the ISR: the move completes, 0 leaves
        // and hands leadership to the first in-sync target replica.
        let grow = Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            expected_partition_epoch: p.partition_epoch,
            leader: 0,
            isr: vec![0, 1, 2, 3],
        };
        assert_eq!(img.apply(&grow), Outcome::Ok);
        let p = &img.topics["t"].partitions[0];
        assert_eq!(p.replicas, vec![3, 1, 2]);
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!((p.leader, p.leader_epoch), (3, 1));
        assert!(matches!(
            img.apply(&reassign(None)),
            Outcome::Refused(Refusal::NoReassignmentInProgress { .. })
        ));
        // Unknown brokers and partitions are refused.
        assert!(matches!(
            img.apply(&reassign(Some(vec![7]))),
            Outcome::Refused(Refusal::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(
            img.apply(&Command::ReassignPartition {
                topic: "t".into(),
                partition: 4,
                target: Some(vec![0]),
            }),
            Outcome::Refused(Refusal::UnknownPartition { .. })
        ));
    }

    #[test]
    fn partitions_are_added_once_to_the_topic_of_that_id() {
        let mut img = MetadataImage::default();
        live(&mut img, 0);
        live(&mut img, 1);
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            assignment: vec![vec![0, 1]],
            configs: BTreeMap::new(),
        });
        let grow = Command::CreatePartitions {
            name: "t".into(),
            id: [1; 16],
            expected_count: 1,
            assignment: vec![vec![1, 0], vec![0, 1]],
        };
        assert_eq!(img.apply(&grow), Outcome::Ok);
        let t = &img.topics["t"];
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(
            (t.partitions[1].leader, &t.partitions[1].isr),
            (1, &vec![1, 0])
        );
        // The same growth again (a retry) changes nothing.
        assert!(matches!(
            img.apply(&grow),
            Outcome::Refused(Refusal::Invalid(_))
        ));
        assert_eq!(img.topics["t"].partitions.len(), 3);
        // Another topic of the same name is not this one.
        let other = Command::CreatePartitions {
            name: "t".into(),
            id: [2; 16],
            expected_count: 3,
            assignment: vec![vec![0]],
        };
        assert!(matches!(
            img.apply(&other),
            Outcome::Refused(Refusal::UnknownTopic(_))
        ));
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        assert_eq!(
            img.apply(&Command::AlterTopicConfigs {
                name: "t".into(),
                id: [1; 16],
                configs: configs.clone(),
            }),
            Outcome::Ok
        );
        assert_eq!(img.topics["t"].configs, configs);
    }

    #[test]
    fn broker_configs_change_per_resource_and_an_emptied_one_goes() {
        let mut img = MetadataImage::default();
        let alter =
            |resource: &str, changes: &[(&str, Option<&str>)]| Command::AlterBrokerConfigs {
                resource: resource.into(),
                changes: changes
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                    .collect(),
            };
        let set = alter("", &[("log.segment.bytes", Some("2097152"))]);
        assert_eq!(img.apply(&set), Outcome::Ok);
        let own = alter(
            "1",
            &[
                ("log.segment.bytes", Some("3145728")),
                ("log.retention.ms", Some("60000")),
            ],
        );
        assert_eq!(img.apply(&own), Outcome::Ok);
        assert_eq!(img.broker_configs[""]["log.segment.bytes"], "2097152");
        assert_eq!(img.broker_configs["1"].len(), 2);
        // Removing one name leaves the other; removing the last drops the
        // resource (an image without dynamic configs has none listed).
        assert_eq!(
            img.apply(&alter("1", &[("log.segment.bytes", None)])),
            Outcome::Ok
        );
        assert_eq!(
            img.broker_configs["1"].keys().collect::<Vec<_>>(),
            ["log.retention.ms"]
        );
        assert_eq!(
            img.apply(&alter("", &[("log.segment.bytes", None)])),
            Outcome::Ok
        );
        assert!(!img.broker_configs.contains_key(""));
        // Neither empty nor a broker id: refused, nothing changed.
        let before = img.clone();
        assert!(matches!(
            img.apply(&alter("broker-one", &[("log.retention.ms", Some("1"))])),
            Outcome::Refused(Refusal::Invalid(_))
        ));
        assert_eq!(img, before);
    }
}
