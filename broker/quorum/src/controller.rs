//! The controller's decisions as pure functions of the metadata image and
//! what the quorum leader saw of broker heartbeats: which brokers to fence,
//! and which partitions get a new leader or ISR. The quorum leader runs them
//! and writes the resulting commands; the simulation runs them on random
//! histories.

use std::collections::BTreeMap;

use crate::model::{Command, MetadataImage, PartitionState};

/// The last heartbeat the controller received from each broker epoch, in
/// milliseconds of the controller's own monotonic clock.
pub type Heartbeats = BTreeMap<i32, (u64, u64)>; // id -> (epoch, at_ms)

/// Commands that bring the partitions in line with the brokers' liveness:
/// fenced brokers leave every ISR (an ISR never becomes empty: its last
/// member stays, as Kafka keeps the last leader eligible) and lose
/// leadership; leaderless partitions elect the first live ISR member in
/// replica order. Unclean election (a leader from outside the ISR) is never
/// chosen here.
pub fn partition_changes(img: &MetadataImage) -> Vec<Command> {
    let live = |id: &i32| img.brokers.get(id).is_some_and(|b| !b.fenced);
    let mut out = Vec::new();
    for (name, topic) in &img.topics {
        for (i, p) in topic.partitions.iter().enumerate() {
            if let Some((leader, isr)) = next_state(p, &live) {
                out.push(Command::ChangePartition {
                    topic: name.clone(),
                    partition: i as i32,
                    expected_partition_epoch: p.partition_epoch,
                    leader,
                    isr,
                });
            }
        }
    }
    out
}

/// The partition changes that concern `broker` (it is in the ISR or
/// leads): applied with a new registration of it, so that its previous
/// incarnation's leaderships and ISR places end in the same command (the
/// new process may have lost its data, and is fenced until it has caught
/// up on metadata).
pub fn partition_changes_for(img: &MetadataImage, broker: i32) -> Vec<Command> {
    partition_changes(img)
        .into_iter()
        .filter(|c| match c {
            Command::ChangePartition {
                topic, partition, ..
            } => img
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(*partition as usize))
                .is_some_and(|p| p.leader == broker || p.isr.contains(&broker)),
            _ => false,
        })
        .collect()
}

fn next_state(p: &PartitionState, live: &impl Fn(&i32) -> bool) -> Option<(i32, Vec<i32>)> {
    let mut isr: Vec<i32> = p.isr.iter().copied().filter(|r| live(r)).collect();
    if isr.is_empty() {
        // Keep the last ISR member: only it is known to have every
        // acknowledged record. The partition stays offline until it returns.
        isr = p.isr.iter().copied().take(1).collect();
        if isr.is_empty() {
            return None;
        }
    }
    let leader = if p.leader != -1 && live(&p.leader) && isr.contains(&p.leader) {
        p.leader
    } else {
        p.replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && live(r))
            .unwrap_or(-1)
    };
    (leader != p.leader || isr != p.isr).then_some((leader, isr))
}

/// When the controller last heard from this incarnation of `b`
/// (`controller_since_ms` when never).
fn last_heard(
    heartbeats: &Heartbeats,
    b: &crate::model::BrokerRegistration,
    controller_since_ms: u64,
) -> u64 {
    match heartbeats.get(&b.id) {
        Some((epoch, at)) if *epoch == b.epoch => *at,
        _ => controller_since_ms,
    }
}

/// Brokers to fence: live in the image but silent for longer than
/// `session_timeout_ms` (or never heard from by this controller since
/// `controller_since_ms`, which gives brokers a full session after a
/// controller change before they are fenced).
pub fn brokers_to_fence(
    img: &MetadataImage,
    heartbeats: &Heartbeats,
    now_ms: u64,
    controller_since_ms: u64,
    session_timeout_ms: u64,
) -> Vec<Command> {
    img.live_brokers()
        .filter(|b| {
            now_ms.saturating_sub(last_heard(heartbeats, b, controller_since_ms))
                > session_timeout_ms
        })
        .map(|b| Command::SetFenced {
            id: b.id,
            epoch: b.epoch,
            fenced: true,
        })
        .collect()
}

/// Brokers to fence before their session ends: a peer reported within
/// the last `report_ttl_ms` that their listener refuses connections (the
/// process is gone: a paused or partitioned broker does not refuse), and
/// the controller has not heard their heartbeat for `fast_ms` (a few
/// heartbeat intervals). Both must hold, so a live broker that still
/// heartbeats is never fenced this way, whatever a peer reports.
pub fn suspects_to_fence(
    img: &MetadataImage,
    heartbeats: &Heartbeats,
    suspicions: &BTreeMap<i32, u64>,
    now_ms: u64,
    controller_since_ms: u64,
    fast_ms: u64,
    report_ttl_ms: u64,
) -> Vec<Command> {
    img.live_brokers()
        .filter(|b| {
            suspicions
                .get(&b.id)
                .is_some_and(|at| now_ms.saturating_sub(*at) <= report_ttl_ms)
        })
        .filter(|b| now_ms.saturating_sub(last_heard(heartbeats, b, controller_since_ms)) > fast_ms)
        .map(|b| Command::SetFenced {
            id: b.id,
            epoch: b.epoch,
            fenced: true,
        })
        .collect()
}

/// An election a client asked for (ElectLeaders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Move leadership to the first replica, if it is live and in sync.
    Preferred,
    /// Give a leaderless partition a leader from outside the ISR: the only
    /// way back for a partition whose in-sync replicas are all gone, at the
    /// price of the records only they had.
    Unclean,
}

/// Why an election changed nothing, as Kafka's error codes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRefusal {
    /// ELECTION_NOT_NEEDED (84).
    NotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE (80).
    PreferredNotAvailable,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE (83).
    EligibleLeadersNotAvailable,
}

/// The `(leader, isr)` an election gives `p`.
pub fn elect(
    p: &PartitionState,
    kind: Election,
    live: &impl Fn(&i32) -> bool,
) -> Result<(i32, Vec<i32>), ElectionRefusal> {
    let led = p.leader != -1 && live(&p.leader);
    match kind {
        Election::Preferred => {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ElectionRefusal::PreferredNotAvailable)?;
            if p.leader == preferred {
                Err(ElectionRefusal::NotNeeded)
            } else if live(&preferred) && p.isr.contains(&preferred) {
                Ok((preferred, p.isr.clone()))
            } else {
                Err(ElectionRefusal::PreferredNotAvailable)
            }
        }
        Election::Unclean if led => Err(ElectionRefusal::NotNeeded),
        Election::Unclean => {
            // A live in-sync replica is still a clean choice.
            if let Some(r) = p.replicas.iter().find(|r| p.isr.contains(r) && live(r)) {
                return Ok((*r, p.isr.iter().copied().filter(|r| live(r)).collect()));
            }
            p.replicas
                .iter()
                .find(|r| live(r) && !p.adding_replicas.contains(r))
                .map(|r| (*r, vec![*r]))
                .ok_or(ElectionRefusal::EligibleLeadersNotAvailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Outcome;

    fn cluster(n: i32) -> MetadataImage {
        let mut img = MetadataImage::default();
        for id in 0..n {
            let Outcome::Registered { epoch } = img.apply(&Command::RegisterBroker {
                id,
                incarnation: 1,
                kafka_address: String::new(),
                listeners: Default::default(),
                internal_address: String::new(),
                rack: None,
                directory_id: Default::default(),
            }) else {
                panic!("register")
            };
            img.apply(&Command::SetFenced {
                id,
                epoch,
                fenced: false,
            });
        }
        img.apply(&Command::CreateTopic {
            name: "t".into(),
            id: [0; 16],
            assignment: vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]],
            configs: BTreeMap::new(),
        });
        img
    }

    fn fence(img: &mut MetadataImage, id: i32) {
        let epoch = img.brokers[&id].epoch;
        assert_eq!(
            img.apply(&Command::SetFenced {
                id,
                epoch,
                fenced: true
            }),
            Outcome::Ok
        );
    }

    fn settle(img: &mut MetadataImage) {
        for c in partition_changes(img) {
            assert_eq!(img.apply(&c), Outcome::Ok, "{c:?}");
        }
        assert!(partition_changes(img).is_empty(), "one round settles");
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        assert!(partition_changes(&cluster(3)).is_empty());
    }

    #[test]
    fn fencing_a_leader_moves_leadership_within_the_isr() {
        let mut img = cluster(3);
        fence(&mut img, 0);
        settle(&mut img);
        let p0 = &img.topics["t"].partitions[0];
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (1, vec![1, 2], 1)
        );
        let p1 = &img.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.isr.clone(), p1.leader_epoch),
            (1, vec![1, 2], 0)
        );
    }

    #[test]
    fn last_isr_member_is_kept_and_partition_waits_for_it() {
        let mut img = cluster(3);
        for id in [0, 1, 2] {
            fence(&mut img, id);
            settle(&mut img);
        }
        for p in &img.topics["t"].partitions {
            assert_eq!(p.leader, -1, "no unclean election");
            assert_eq!(p.isr.len(), 1, "last member kept: {p:?}");
        }
        // Broker 0 comes back: only partitions whose last ISR member is 0
        // get a leader again.
        let Outcome::Registered { epoch } = img.apply(&Command::RegisterBroker {
            id: 0,
            incarnation: 2,
            kafka_address: String::new(),
            listeners: Default::default(),
            internal_address: String::new(),
            rack: None,
            directory_id: Default::default(),
        }) else {
            panic!()
        };
        img.apply(&Command::SetFenced {
            id: 0,
            epoch,
            fenced: false,
        });
        settle(&mut img);
        for p in &img.topics["t"].partitions {
            if p.isr == vec![0] {
                assert_eq!(p.leader, 0);
            } else {
                assert_eq!(p.leader, -1, "{p:?}");
            }
        }
    }

    #[test]
    fn silent_brokers_are_fenced_after_the_session_timeout() {
        let img = cluster(3);
        let mut hb = Heartbeats::new();
        hb.insert(0, (img.brokers[&0].epoch, 1_000));
        hb.insert(1, (img.brokers[&1].epoch, 9_500));
        hb.insert(2, (img.brokers[&2].epoch + 99, 9_900)); // an old incarnation's
        let fence = brokers_to_fence(&img, &hb, 10_000, 0, 6_000);
        let ids: Vec<i32> = fence
            .iter()
            .map(|c| match c {
                Command::SetFenced { id, .. } => *id,
                _ => panic!(),
            })
            .collect();
        assert_eq!(ids, vec![0, 2]);
        // A new controller gives every broker a full session first.
        assert!(brokers_to_fence(&img, &Heartbeats::new(), 10_000, 9_000, 6_000).is_empty());
        assert_eq!(img.hosted_by(1).len(), 3);
    }

    fn state(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 5,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn preferred_election() {
        let all = |_: &i32| true;
        let p = state(&[1, 2, 3], &[1, 2, 3], 2);
        assert_eq!(elect(&p, Election::Preferred, &all), Ok((1, vec![1, 2, 3])));
        let p = state(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            elect(&p, Election::Preferred, &all),
            Err(ElectionRefusal::NotNeeded)
        );
        // Out of sync, or down: not available.
        let p = state(&[1, 2, 3], &[2, 3], 2);
        assert_eq!(
            elect(&p, Election::Preferred, &all),
            Err(ElectionRefusal::PreferredNotAvailable)
        );
        let p = state(&[1, 2, 3], &[1, 2, 3], 2);
        assert_eq!(
            elect(&p, Election::Preferred, &|r: &i32| *r != 1),
            Err(ElectionRefusal::PreferredNotAvailable)
        );
    }

    #[test]
    fn unclean_election_only_for_leaderless_partitions() {
        let p = state(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            elect(&p, Election::Unclean, &|_: &i32| true),
            Err(ElectionRefusal::NotNeeded)
        );
        // The last ISR member (1) is down: 2 leads alone, out of sync.
        let p = state(&[1, 2, 3], &[1], -1);
        let up = |r: &i32| *r != 1;
        assert_eq!(elect(&p, Election::Unclean, &up), Ok((2, vec![2])));
        assert_eq!(
            elect(&p, Election::Unclean, &|_: &i32| false),
            Err(ElectionRefusal::EligibleLeadersNotAvailable)
        );
    }

    #[test]
    fn a_broker_reported_dead_is_fenced_once_its_heartbeats_stop() {
        let img = cluster(3);
        let epoch = |id: i32| img.brokers[&id].epoch;
        let mut hb = Heartbeats::new();
        hb.insert(0, (epoch(0), 1000));
        hb.insert(1, (epoch(1), 1000));
        hb.insert(2, (epoch(2), 1290));
        let reported: BTreeMap<i32, u64> = [(1, 1250), (2, 1250)].into();
        // Broker 1: reported, silent for 300 ms > 250: fenced. Broker 2:
        // reported but heartbeating: kept. Broker 0: silent, not reported:
        // the session rule's business.
        let fence = suspects_to_fence(&img, &hb, &reported, 1300, 0, 250, 1000);
        assert_eq!(
            fence,
            vec![Command::SetFenced {
                id: 1,
                epoch: epoch(1),
                fenced: true
            }]
        );
        // A stale report does nothing.
        assert!(suspects_to_fence(&img, &hb, &reported, 2300, 0, 250, 1000).is_empty());
    }
}
