//! Rolling restarts: which broker may restart next.
//!
//! A broker may go down only when, without it, every partition whose ISR
//! it is in keeps at least `min.insync.replicas` in sync (a replica out of
//! sync changes no ISR by restarting, and a restart may be what it needs),
//! and the metadata quorum keeps a majority of its voters. One broker at a time: while any broker is not live (the one just
//! restarted is still coming back), nothing else rolls. The quorum leader
//! goes last, so that the controller moves once.

use super::Observed;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every broker that needed it has restarted.
    Done,
    /// Restart this broker now.
    Roll(i32),
    /// Nothing may restart yet; the reason names what holds it.
    Blocked(String),
}

/// Why `broker` may not go down now, if it may not.
pub fn blocker(obs: &Observed, broker: i32, voters: &[i32]) -> Option<String> {
    for p in &obs.partitions {
        if !p.isr.contains(&broker) {
            continue;
        }
        let without = p.isr.iter().filter(|r| **r != broker).count();
        if without < p.min_insync_replicas {
            return Some(format!(
                "restarting broker {broker} would leave {}-{} with ISR {:?} below min.insync.replicas={} (replicas {:?})",
                p.topic, p.partition, p.isr, p.min_insync_replicas, p.replicas
            ));
        }
    }
    if voters.contains(&broker) {
        let live_without = voters
            .iter()
            .filter(|v| **v != broker && obs.is_live(**v))
            .count();
        let majority = voters.len() / 2 + 1;
        if live_without < majority {
            return Some(format!(
                "restarting broker {broker} would leave {live_without} of {} metadata quorum voters live, below a majority of {majority}",
                voters.len()
            ));
        }
    }
    None
}

/// The next broker of `pending` to restart.
pub fn next_roll(
    obs: &Observed,
    pending: &[i32],
    voters: &[i32],
    controller: Option<i32>,
) -> RollStep {
    if pending.is_empty() {
        return RollStep::Done;
    }
    if let Some(b) = obs.brokers.iter().find(|b| !b.live) {
        return RollStep::Blocked(format!(
            "broker {} is not live yet; brokers restart one at a time",
            b.id
        ));
    }
    let mut order: Vec<i32> = pending.to_vec();
    order.sort_by_key(|b| (Some(*b) == controller, *b));
    order.dedup();
    let mut first_reason = None;
    for b in order {
        match blocker(obs, b, voters) {
            None => return RollStep::Roll(b),
            Some(r) => {
                first_reason.get_or_insert(r);
            }
        }
    }
    RollStep::Blocked(first_reason.unwrap_or_else(|| "no broker may restart".into()))
}
