//! The day-2 planner on random clusters: plans are carried out step by step
//! (a move completes with every new replica in sync; an election moves the
//! lead to the first replica) until the planner says Idle, checking every
//! step on the way and the balance at the end.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice_operator::plan::balance::{next_step, target_assignment};
use sluice_operator::plan::roll::{RollStep, blocker, next_roll};
use sluice_operator::plan::{Broker, Desired, Observed, Partition, Step};

const MAX_STEPS: usize = 200;

fn rack_dups(obs: &Observed, replicas: &[i32]) -> usize {
    let racks: BTreeSet<&str> = replicas.iter().filter_map(|r| obs.rack_of(*r)).collect();
    let unracked = replicas
        .iter()
        .filter(|r| obs.rack_of(**r).is_none())
        .count();
    replicas.len() - racks.len() - unracked
}

/// Carries a step out as the cluster would, once it completes.
fn apply(obs: &mut Observed, step: &Step) {
    match step {
        Step::Move(moves) => {
            for m in moves {
                if let Some(p) = obs
                    .partitions
                    .iter_mut()
                    .find(|p| p.topic == m.topic && p.partition == m.partition)
                {
                    p.replicas = m.to.clone();
                    p.isr = m.to.clone();
                    if !m.to.contains(&p.leader) {
                        p.leader = m.to[0];
                    }
                }
            }
        }
        Step::ElectPreferred(ps) => {
            for (t, i) in ps {
                if let Some(p) = obs
                    .partitions
                    .iter_mut()
                    .find(|p| &p.topic == t && p.partition == *i)
                {
                    p.leader = p.replicas[0];
                }
            }
        }
        _ => {}
    }
}

prop_compose! {
    /// A settled cluster of 1-7 brokers (ids 0..n), racks or not, and
    /// 1-12 partitions over up to 4 topics.
    fn cluster()(
        n in 1usize..=7,
        racks in 0usize..=3,
        seeds in prop::collection::vec((any::<u64>(), 0u64..5_000_000, 1usize..=3), 1..=12),
    ) -> Observed {
        let brokers: Vec<Broker> = (0..n as i32)
            .map(|id| Broker {
                id,
                rack: (racks > 0).then(|| format!("r{}", id as usize % racks)),
                live: true,
            })
            .collect();
        let partitions = seeds
            .iter()
            .enumerate()
            .map(|(i, (seed, size, rf))| {
                let topic = format!("t{}", i % 4);
                let rf = (*rf).min(n);
                // A seeded pick of rf distinct brokers.
                let mut ids: Vec<i32> = (0..n as i32).collect();
                let mut s = *seed;
                for k in (1..ids.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ids.swap(k, (s >> 33) as usize % (k + 1));
                }
                ids.truncate(rf);
                Partition {
                    topic,
                    partition: (i / 4) as i32,
                    isr: ids.clone(),
                    leader: ids[0],
                    replicas: ids,
                    min_insync_replicas: rf.min(2),
                    size_bytes: *size,
                    moving: false,
                }
            })
            .collect();
        Observed { brokers, partitions }
    }
}

/// The topic's replication factor, the same for all its partitions (the
/// generator may give one topic several; the desired state then sets it).
fn uniform_rf(obs: &Observed) -> BTreeMap<String, usize> {
    let mut rf = BTreeMap::new();
    for p in &obs.partitions {
        rf.entry(p.topic.clone())
            .and_modify(|r: &mut usize| *r = (*r).max(p.replicas.len()))
            .or_insert(p.replicas.len());
    }
    rf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_converge_safely_to_an_even_assignment(
        obs in cluster(),
        added in 0usize..=3,
        keep_mask in any::<u8>(),
        rf_bump in prop::option::of((0usize..4, 1usize..=3)),
    ) {
        let mut obs = obs;
        let n = obs.brokers.len();
        let racks: BTreeSet<Option<String>> = obs.brokers.iter().map(|b| b.rack.clone()).collect();
        let rack_count = racks.len();
        for i in 0..added {
            let id = (n + i) as i32;
            let rack = obs.brokers[0].rack.as_ref().map(|_| format!("r{}", (n + i) % rack_count.max(1)));
            obs.brokers.push(Broker { id, rack, live: true });
        }
        // Desired: a non-empty subset of old and new brokers.
        let all: Vec<i32> = obs.brokers.iter().map(|b| b.id).collect();
        let mut desired_brokers: Vec<i32> = all
            .iter()
            .copied()
            .filter(|b| (*b as usize) >= n || keep_mask & (1 << (*b as u32 % 8)) != 0)
            .collect();
        if desired_brokers.is_empty() {
            desired_brokers.push(all[0]);
        }
        let mut rfs = uniform_rf(&obs);
        if let Some((t, rf)) = rf_bump
            && let Some(r) = rfs.get_mut(&format!("t{t}"))
        {
            *r = rf;
        }
        let desired = Desired { brokers: desired_brokers.clone(), replication_factors: rfs.clone() };
        let initial = obs.clone();

        let feasible = rfs.values().all(|rf| *rf <= desired_brokers.len());
        let mut steps = 0;
        loop {
            let step = next_step(&obs, &desired, 4);
            match &step {
                Step::Refused(reason) => {
                    prop_assert!(!feasible, "refused a feasible target: {reason}");
                    prop_assert!(reason.contains("replication factor"), "{reason}");
                    return Ok(());
                }
                Step::Idle => break,
                Step::Wait(reason) => prop_assert!(false, "a settled, live cluster waits: {reason}"),
                Step::Move(moves) => {
                    prop_assert!(!moves.is_empty() && moves.len() <= 4);
                    for m in moves {
                        let p = obs.partitions.iter()
                            .find(|p| p.topic == m.topic && p.partition == m.partition)
                            .ok_or_else(|| TestCaseError::fail("unknown partition"))?;
                        // Only settled partitions move, from where they are.
                        prop_assert!(p.settled());
                        prop_assert_eq!(&m.from, &p.replicas);
                        // To the replication factor, on distinct live desired brokers.
                        prop_assert_eq!(m.to.len(), rfs[&m.topic]);
                        let distinct: BTreeSet<i32> = m.to.iter().copied().collect();
                        prop_assert_eq!(distinct.len(), m.to.len());
                        for b in &m.to {
                            prop_assert!(desired_brokers.contains(b) && obs.is_live(*b));
                        }
                        // Enough replicas stay for min.insync.replicas.
                        prop_assert!(m.to.len() >= p.min_insync_replicas.min(rfs[&m.topic]));
                        let new = m.to.iter().filter(|b| !m.from.contains(b)).count() as u64;
                        prop_assert_eq!(m.bytes, new * p.size_bytes);
                    }
                }
                Step::ElectPreferred(ps) => prop_assert!(!ps.is_empty()),
            }
            apply(&mut obs, &step);
            steps += 1;
            prop_assert!(steps < MAX_STEPS, "no convergence after {} steps", MAX_STEPS);
        }
        prop_assert!(feasible);

        // Converged: replicas only on desired brokers, at the desired
        // factor, led by the preferred replica.
        let mut counts: BTreeMap<i32, usize> = desired_brokers.iter().map(|b| (*b, 0)).collect();
        for p in &obs.partitions {
            prop_assert_eq!(p.replicas.len(), rfs[&p.topic]);
            for r in &p.replicas {
                prop_assert!(desired_brokers.contains(r));
                *counts.entry(*r).or_default() += 1;
            }
            prop_assert_eq!(p.leader, p.replicas[0]);
        }
        // Even, when no rack rule stands in the way.
        if obs.brokers.iter().all(|b| b.rack.is_none()) {
            let max = counts.values().max().copied().unwrap_or(0);
            let min = counts.values().min().copied().unwrap_or(0);
            prop_assert!(max <= min + 1, "uneven: {counts:?}");
        }
        // Leaders even as reordering can make them: no partition could
        // hand its lead to one of its replicas with two fewer leaderships.
        let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
        for p in &obs.partitions {
            *leads.entry(p.replicas[0]).or_default() += 1;
        }
        for p in &obs.partitions {
            let first = leads.get(&p.replicas[0]).copied().unwrap_or(0);
            for r in &p.replicas[1..] {
                prop_assert!(leads.get(r).copied().unwrap_or(0) + 1 >= first, "leads {leads:?}, {p:?}");
            }
        }
        // Racks: a partition that had every replica on its own rack keeps
        // that when the desired brokers span enough racks.
        let desired_racks: BTreeSet<Option<String>> = obs.brokers.iter()
            .filter(|b| desired_brokers.contains(&b.id))
            .map(|b| b.rack.clone())
            .collect();
        for (before, after) in initial.partitions.iter().zip(&obs.partitions) {
            if rack_dups(&initial, &before.replicas) == 0 && desired_racks.len() >= after.replicas.len() {
                prop_assert_eq!(rack_dups(&obs, &after.replicas), 0, "{:?}", after);
            }
        }
        // Stable: planning again changes nothing.
        prop_assert_eq!(next_step(&obs, &desired, 4), Step::Idle);
        let again = target_assignment(&obs, &desired).map_err(TestCaseError::fail)?;
        for p in &obs.partitions {
            prop_assert_eq!(&again[&p.key()], &p.replicas);
        }
    }

    #[test]
    fn a_roll_never_takes_a_partition_below_min_isr(
        obs in cluster(),
        out_of_sync in prop::collection::vec((0usize..12, 0usize..3), 0..6),
        pending_mask in any::<u8>(),
    ) {
        let mut obs = obs;
        for (pi, ri) in out_of_sync {
            let len = obs.partitions.len().max(1);
            if let Some(p) = obs.partitions.get_mut(pi % len)
                && p.isr.len() > 1
            {
                let r = p.replicas[ri % p.replicas.len()];
                p.isr.retain(|x| *x != r);
            }
        }
        let voters: Vec<i32> = obs.brokers.iter().map(|b| b.id).take(3).collect();
        let pending: Vec<i32> = obs.brokers.iter().map(|b| b.id)
            .filter(|b| pending_mask & (1 << (*b as u32 % 8)) != 0)
            .collect();
        match next_roll(&obs, &pending, &voters, voters.first().copied()) {
            RollStep::Done => prop_assert!(pending.is_empty()),
            RollStep::Roll(b) => {
                prop_assert!(pending.contains(&b));
                for p in obs.partitions.iter().filter(|p| p.isr.contains(&b)) {
                    prop_assert!(p.isr.len() > p.min_insync_replicas, "{:?}", p);
                }
                if voters.contains(&b) {
                    let live = voters.iter().filter(|v| **v != b).count();
                    prop_assert!(live > voters.len() / 2);
                }
                // The controller goes last.
                if Some(b) == voters.first().copied() {
                    for other in pending.iter().filter(|o| **o != b) {
                        prop_assert!(blocker(&obs, *other, &voters).is_some());
                    }
                }
            }
            RollStep::Blocked(reason) => {
                prop_assert!(!pending.is_empty());
                for b in &pending {
                    prop_assert!(blocker(&obs, *b, &voters).is_some(), "{b} was free: {reason}");
                }
            }
        }
    }
}

fn three_brokers() -> Observed {
    Observed {
        brokers: (0..3)
            .map(|id| Broker {
                id,
                rack: None,
                live: true,
            })
            .collect(),
        partitions: (0..6)
            .map(|i| Partition {
                topic: "orders".into(),
                partition: i,
                replicas: vec![i % 3, (i + 1) % 3, (i + 2) % 3],
                isr: vec![0, 1, 2],
                leader: i % 3,
                min_insync_replicas: 2,
                size_bytes: 1000,
                moving: false,
            })
            .collect(),
    }
}

#[test]
fn scale_up_moves_replicas_onto_the_new_brokers_and_scale_down_back() {
    let mut obs = three_brokers();
    for id in [3, 4] {
        obs.brokers.push(Broker {
            id,
            rack: None,
            live: false,
        });
    }
    let five = Desired {
        brokers: vec![0, 1, 2, 3, 4],
        ..Desired::default()
    };
    // Not registered yet: wait, naming them.
    match next_step(&obs, &five, 10) {
        Step::Wait(r) => assert!(r.contains('3') && r.contains('4'), "{r}"),
        other => panic!("{other:?}"),
    }
    for b in &mut obs.brokers {
        b.live = true;
    }
    let Step::Move(moves) = next_step(&obs, &five, 10) else {
        panic!("no moves")
    };
    // 18 replicas over 5 brokers: the new ones take 3 or 4 each, one
    // replica per moved partition.
    let copied: u64 = moves.iter().map(|m| m.bytes).sum();
    assert!((6000..=8000).contains(&copied), "{moves:?}");
    apply(&mut obs, &Step::Move(moves));
    while let s @ (Step::Move(_) | Step::ElectPreferred(_)) = next_step(&obs, &five, 10) {
        apply(&mut obs, &s);
    }
    assert_eq!(next_step(&obs, &five, 10), Step::Idle);

    // Back to three: everything leaves 3 and 4.
    let three = Desired {
        brokers: vec![0, 1, 2],
        ..Desired::default()
    };
    while let s @ (Step::Move(_) | Step::ElectPreferred(_)) = next_step(&obs, &three, 10) {
        apply(&mut obs, &s);
    }
    assert!(
        obs.partitions
            .iter()
            .all(|p| p.replicas.iter().all(|r| *r < 3))
    );

    // And to two: RF 3 cannot fit; the refusal names the topic.
    let two = Desired {
        brokers: vec![0, 1],
        ..Desired::default()
    };
    match next_step(&obs, &two, 10) {
        Step::Refused(r) => assert!(r.contains("orders") && r.contains('3'), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn moves_wait_for_a_full_isr_and_for_moves_in_progress() {
    let mut obs = three_brokers();
    obs.brokers.push(Broker {
        id: 3,
        rack: None,
        live: true,
    });
    for p in &mut obs.partitions {
        p.isr = vec![0, 1];
    }
    let d = Desired {
        brokers: vec![0, 1, 2, 3],
        ..Desired::default()
    };
    match next_step(&obs, &d, 10) {
        Step::Wait(r) => assert!(r.contains("ISR"), "{r}"),
        other => panic!("{other:?}"),
    }
    obs.partitions[0].moving = true;
    match next_step(&obs, &d, 10) {
        Step::Wait(r) => assert!(r.contains("orders-0"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_blocked_roll_names_the_partition_and_its_isr() {
    let mut obs = three_brokers();
    obs.partitions[2].isr = vec![1, 2];
    let voters = [0, 1, 2];
    // Broker 1 and 2 would leave orders-2 with one in-sync replica; 0 is
    // out of its ISR and may go, though it is the controller (last).
    assert_eq!(
        next_roll(&obs, &[0, 1, 2], &voters, Some(0)),
        RollStep::Roll(0)
    );
    match next_roll(&obs, &[1, 2], &voters, Some(0)) {
        RollStep::Blocked(r) => assert!(r.contains("orders-2") && r.contains("[1, 2]"), "{r}"),
        other => panic!("{other:?}"),
    }
    obs.partitions[2].isr = vec![0, 1, 2];
    obs.brokers[1].live = false;
    match next_roll(&obs, &[2], &voters, Some(0)) {
        RollStep::Blocked(r) => assert!(r.contains("broker 1"), "{r}"),
        other => panic!("{other:?}"),
    }
}
