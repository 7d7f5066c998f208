//! Replica placement for new topics and partitions, Kafka's way: leaders
//! spread round robin from a start broker, followers at a shifting offset,
//! and, when brokers have racks, a broker list alternating between racks so
//! that a partition's replicas land on distinct racks whenever the
//! replication factor allows.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {rf} is larger than the {brokers} available brokers")]
    NotEnoughBrokers { rf: usize, brokers: usize },
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// A broker that can take replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Brokers ordered so that consecutive entries alternate racks:
/// rack a, rack b, rack c, rack a, ... (each rack's brokers by id).
fn rack_alternated(brokers: &[Candidate]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// Assigns `partitions` partitions of `rf` replicas each, numbered from
/// `first_partition`. `start` picks the first leader (callers pass a random
/// number so that topics do not all start on the same broker).
pub fn assign(
    brokers: &[Candidate],
    partitions: usize,
    rf: usize,
    first_partition: usize,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if rf == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    if rf > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            rf,
            brokers: brokers.len(),
        });
    }
    let racks_known = brokers.iter().all(|b| b.rack.is_some());
    let list: Vec<i32> = if racks_known {
        rack_alternated(brokers)
    } else {
        let mut ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        ids
    };
    let rack_of: BTreeMap<i32, Option<&str>> =
        brokers.iter().map(|b| (b.id, b.rack.as_deref())).collect();
    let n = list.len();
    let mut out = Vec::with_capacity(partitions);
    let first = start % n;
    let mut shift = start / n % n.max(1);
    for i in 0..partitions {
        let p = first_partition + i;
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let leader_idx = (first + p) % n;
        let mut replicas = vec![list[leader_idx]];
        // Followers: Kafka's shifted offset, skipping brokers already used
        // and (while racks remain unused) racks already used.
        let step = 1 + shift % (n - 1).max(1);
        let mut k = 0;
        while replicas.len() < rf {
            let candidate = list[(leader_idx + step + k) % n];
            k += 1;
            if replicas.contains(&candidate) {
                if k > 2 * n {
                    break;
                }
                continue;
            }
            if racks_known && k <= n {
                let used: Vec<Option<&str>> = replicas.iter().map(|r| rack_of[r]).collect();
                let distinct_racks = rack_of
                    .values()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                if used.contains(&rack_of[&candidate]) && used.len() < distinct_racks {
                    continue;
                }
            }
            replicas.push(candidate);
        }
        // Fallback (cannot happen with rf <= n, kept for robustness).
        for id in &list {
            if replicas.len() >= rf {
                break;
            }
            if !replicas.contains(id) {
                replicas.push(*id);
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(n: usize, racks: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: i as i32 * 10 + 1,
                rack: (racks > 0).then(|| format!("r{}", i % racks)),
            })
            .collect()
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        assert_eq!(
            assign(&brokers(2, 0), 1, 3, 0, 0),
            Err(PlacementError::NotEnoughBrokers { rf: 3, brokers: 2 })
        );
        assert_eq!(
            assign(&brokers(2, 0), 1, 0, 0, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_leaders_balanced_racks_spread(
            n in 1usize..9, racks in 0usize..4, rf in 1usize..4, parts in 1usize..40, start in 0usize..100,
        ) {
            prop_assume!(rf <= n);
            let bs = brokers(n, racks);
            let a = assign(&bs, parts, rf, 0, start).expect("assign");
            prop_assert_eq!(a.len(), parts);
            let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
            for r in &a {
                prop_assert_eq!(r.len(), rf);
                let mut s = r.clone();
                s.sort_unstable();
                s.dedup();
                prop_assert_eq!(s.len(), rf, "distinct replicas {:?}", r);
                *leaders.entry(r[0]).or_default() += 1;
                if racks > 0 {
                    let distinct: std::collections::BTreeSet<_> = r
                        .iter()
                        .map(|id| bs.iter().find(|b| b.id == *id).and_then(|b| b.rack.clone()))
                        .collect();
                    prop_assert_eq!(distinct.len(), rf.min(racks.min(n)), "racks of {:?}", r);
                }
            }
            let max = leaders.values().max().copied().unwrap_or(0);
            let min = if leaders.len() < n.min(parts) { 0 } else { leaders.values().min().copied().unwrap_or(0) };
            prop_assert!(max - min <= 1, "leaders spread evenly: {:?}", leaders);
        }
    }
}
