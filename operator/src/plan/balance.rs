//! Where replicas should be, and the next moves toward it.
//!
//! The target assignment is built in three passes over the partitions, each
//! deterministic (partitions by topic and index, brokers by id on ties):
//!
//! 1. **keep** every replica already on a desired broker (up to the
//!    partition's replication factor; when it shrinks, the replicas on the
//!    most loaded brokers go first) — kept replicas copy nothing;
//! 2. **fill** each partition up to its replication factor, largest
//!    partitions first, on the broker with the fewest replicas among those
//!    that add no second replica to a rack the partition already uses (when
//!    one exists);
//! 3. **even out**: while some broker holds two replicas more than another,
//!    move the smallest partition that can go from the fullest to the
//!    emptiest broker without doubling up a rack.
//!
//! Then preferred leaders (the first replica) are evened out by reordering,
//! which moves no data. A cluster that is already even gets back exactly
//! its own assignment, so planning it again does nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Desired, Move, Observed, Step};

/// Partitions moved at once unless told otherwise.
pub const DEFAULT_BATCH: usize = 10;

type Key = (String, i32);

/// Replicas beyond the number of distinct racks (no rack counts as its
/// own): 0 when every replica is on a different rack.
fn rack_dups(obs: &Observed, replicas: &[i32]) -> usize {
    let mut racks = BTreeSet::new();
    let mut unracked = 0;
    for r in replicas {
        match obs.rack_of(*r) {
            Some(rack) => {
                racks.insert(rack);
            }
            None => unracked += 1,
        }
    }
    replicas.len() - racks.len() - unracked
}

fn count(assignment: &BTreeMap<Key, Vec<i32>>, brokers: &[i32]) -> BTreeMap<i32, usize> {
    let mut c: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for rs in assignment.values() {
        for r in rs {
            if let Some(n) = c.get_mut(r) {
                *n += 1;
            }
        }
    }
    c
}

/// The assignment the cluster should converge to, or why there is none
/// (a topic whose replication factor the desired brokers cannot hold).
pub fn target_assignment(
    obs: &Observed,
    desired: &Desired,
) -> Result<BTreeMap<Key, Vec<i32>>, String> {
    let mut brokers = desired.brokers.clone();
    brokers.sort_unstable();
    brokers.dedup();
    if brokers.is_empty() {
        return Err("no broker would hold data".into());
    }
    let size: BTreeMap<Key, u64> = obs
        .partitions
        .iter()
        .map(|p| (p.key(), p.size_bytes))
        .collect();
    let rf_of = |p: &super::Partition| {
        desired
            .replication_factors
            .get(&p.topic)
            .copied()
            .unwrap_or(p.replicas.len())
    };
    for p in &obs.partitions {
        let rf = rf_of(p);
        if rf == 0 {
            return Err(format!(
                "topic {} cannot have replication factor 0",
                p.topic
            ));
        }
        if rf > brokers.len() {
            return Err(format!(
                "topic {} has replication factor {rf} but only {} broker(s) would remain",
                p.topic,
                brokers.len()
            ));
        }
    }

    // 1. Keep what is on desired brokers.
    let mut target: BTreeMap<Key, Vec<i32>> = obs
        .partitions
        .iter()
        .map(|p| {
            let kept: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| brokers.contains(r))
                .collect();
            (p.key(), kept)
        })
        .collect();
    let rfs: BTreeMap<Key, usize> = obs.partitions.iter().map(|p| (p.key(), rf_of(p))).collect();
    // A smaller replication factor drops replicas from the fullest brokers.
    for (key, rf) in &rfs {
        while target.get(key).is_some_and(|rs| rs.len() > *rf) {
            let c = count(&target, &brokers);
            if let Some(rs) = target.get_mut(key) {
                let drop = rs
                    .iter()
                    .copied()
                    .enumerate()
                    .max_by_key(|(i, r)| (c.get(r).copied().unwrap_or(0), *i))
                    .map(|(i, _)| i);
                if let Some(i) = drop {
                    rs.remove(i);
                }
            }
        }
    }

    // 2. Fill, largest partitions first.
    let mut order: Vec<Key> = target.keys().cloned().collect();
    order.sort_by_key(|k| {
        (
            std::cmp::Reverse(size.get(k).copied().unwrap_or(0)),
            k.clone(),
        )
    });
    for key in &order {
        let rf = rfs.get(key).copied().unwrap_or(0);
        while target.get(key).is_some_and(|rs| rs.len() < rf) {
            let c = count(&target, &brokers);
            let Some(rs) = target.get(key).cloned() else {
                break;
            };
            let best = brokers
                .iter()
                .copied()
                .filter(|b| !rs.contains(b))
                .min_by_key(|b| {
                    let mut with = rs.clone();
                    with.push(*b);
                    (rack_dups(obs, &with), c.get(b).copied().unwrap_or(0), *b)
                });
            match (best, target.get_mut(key)) {
                (Some(b), Some(rs)) => rs.push(b),
                _ => break,
            }
        }
    }

    // 3. Even out replica counts.
    let bound = 4 * target.values().map(Vec::len).sum::<usize>() + 16;
    for _ in 0..bound {
        let c = count(&target, &brokers);
        let mut by_load: Vec<(usize, i32)> = c.iter().map(|(b, n)| (*n, *b)).collect();
        by_load.sort_unstable();
        let (Some(&(min, _)), Some(&(max, _))) = (by_load.first(), by_load.last()) else {
            break;
        };
        if max <= min + 1 {
            break;
        }
        let mut moved = false;
        'pairs: for &(from_n, from) in by_load.iter().rev() {
            for &(to_n, to) in &by_load {
                if from_n <= to_n + 1 {
                    break;
                }
                // The smallest partition that can go from `from` to `to`
                // without adding a rack duplicate.
                let candidate = target
                    .iter()
                    .filter(|(_, rs)| rs.contains(&from) && !rs.contains(&to))
                    .filter(|(_, rs)| {
                        let swapped: Vec<i32> = rs
                            .iter()
                            .map(|r| if *r == from { to } else { *r })
                            .collect();
                        rack_dups(obs, &swapped) <= rack_dups(obs, rs)
                    })
                    .min_by_key(|(k, _)| (size.get(*k).copied().unwrap_or(0), (*k).clone()))
                    .map(|(k, _)| k.clone());
                if let Some(k) = candidate {
                    if let Some(rs) = target.get_mut(&k) {
                        for r in rs.iter_mut() {
                            if *r == from {
                                *r = to;
                            }
                        }
                    }
                    moved = true;
                    break 'pairs;
                }
            }
        }
        if !moved {
            break;
        }
    }

    balance_leaders(&mut target, &brokers);
    Ok(target)
}

/// Evens out preferred leaders (first replicas) by reordering replica
/// lists, as long as a reorder makes the spread narrower.
fn balance_leaders(target: &mut BTreeMap<Key, Vec<i32>>, brokers: &[i32]) {
    let bound = 4 * target.len() + 16;
    for _ in 0..bound {
        let mut lead: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
        for rs in target.values() {
            if let Some(n) = rs.first().and_then(|f| lead.get_mut(f)) {
                *n += 1;
            }
        }
        // A partition led by a broker with two more leaderships than
        // another of its replicas hands the lead to that replica.
        let swap = target.iter().find_map(|(k, rs)| {
            let first = *rs.first()?;
            let first_n = lead.get(&first).copied().unwrap_or(0);
            rs.iter()
                .enumerate()
                .skip(1)
                .filter(|(_, r)| lead.get(r).copied().unwrap_or(0) + 1 < first_n)
                .min_by_key(|(_, r)| (lead.get(r).copied().unwrap_or(0), **r))
                .map(|(i, _)| (k.clone(), i))
        });
        let Some((k, i)) = swap else { break };
        if let Some(rs) = target.get_mut(&k) {
            rs.swap(0, i);
        }
    }
}

/// The next step toward `desired`: moves (at most `batch` partitions),
/// then preferred-leader elections, then nothing.
pub fn next_step(obs: &Observed, desired: &Desired, batch: usize) -> Step {
    let moving: Vec<String> = obs
        .partitions
        .iter()
        .filter(|p| p.moving)
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    if !moving.is_empty() {
        return Step::Wait(format!(
            "{} partition move(s) in progress: {}",
            moving.len(),
            moving.join(", ")
        ));
    }
    let target = match target_assignment(obs, desired) {
        Ok(t) => t,
        Err(reason) => return Step::Refused(reason),
    };
    let mut moves = Vec::new();
    let mut unsettled = None;
    let mut not_live = BTreeSet::new();
    for p in &obs.partitions {
        let Some(to) = target.get(&p.key()) else {
            continue;
        };
        if *to == p.replicas {
            continue;
        }
        if !p.settled() {
            unsettled.get_or_insert_with(|| {
                format!(
                    "{}-{} has ISR {:?} of replicas {:?}: it moves once every replica is in sync",
                    p.topic, p.partition, p.isr, p.replicas
                )
            });
            continue;
        }
        let new: Vec<i32> = to
            .iter()
            .copied()
            .filter(|r| !p.replicas.contains(r))
            .collect();
        if let Some(b) = new.iter().find(|b| !obs.is_live(**b)) {
            not_live.insert(*b);
            continue;
        }
        moves.push(Move {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.replicas.clone(),
            to: to.clone(),
            bytes: p.size_bytes * new.len() as u64,
        });
    }
    if !moves.is_empty() {
        // Free moves (reorders, removals) first, then the smallest.
        moves.sort_by_key(|m| (m.bytes, m.topic.clone(), m.partition));
        moves.truncate(batch.max(1));
        return Step::Move(moves);
    }
    if !not_live.is_empty() {
        return Step::Wait(format!(
            "broker(s) {not_live:?} must be registered and live before replicas move onto them"
        ));
    }
    if let Some(reason) = unsettled {
        return Step::Wait(reason);
    }
    let elect: Vec<(String, i32)> = obs
        .partitions
        .iter()
        .filter(|p| {
            p.replicas
                .first()
                .is_some_and(|f| *f != p.leader && p.isr.contains(f) && obs.is_live(*f))
        })
        .map(Partition::key)
        .collect();
    if !elect.is_empty() {
        return Step::ElectPreferred(elect);
    }
    Step::Idle
}

use super::Partition;
