//! Which brokers vote in the metadata quorum, and the next change toward
//! that (KIP-853 AddRaftVoter / RemoveRaftVoter, one at a time). Voters
//! on leaving brokers go first, before their partitions drain; a broker
//! becomes a voter once it has joined the quorum as an observer and holds
//! the whole metadata log.

use std::collections::BTreeSet;

/// The quorum as DescribeQuorum shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumView {
    pub voters: BTreeSet<i32>,
    pub observers: BTreeSet<i32>,
    /// Members whose log reaches the high watermark.
    pub caught_up: BTreeSet<i32>,
}

/// The next voter change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoterStep {
    Idle,
    Add(i32),
    Remove(i32),
    /// Nothing can change yet, and why.
    Wait(String),
}

/// How many voters a cluster of `replicas` brokers has: `spec.quorum.voters`,
/// else three (one or two brokers: one).
pub fn voter_count(spec: Option<i32>, replicas: i32) -> i32 {
    spec.unwrap_or(if replicas >= 3 { 3 } else { 1 })
        .clamp(1, replicas.max(1))
}

/// Why `spec.quorum.voters` cannot be used, if it cannot.
pub fn invalid(spec: Option<i32>, replicas: i32) -> Option<String> {
    let n = spec?;
    if n < 1 || n % 2 == 0 {
        return Some(format!(
            "spec.quorum.voters is {n}: it must be odd and at least 1 (an even count tolerates no more failures than one fewer)"
        ));
    }
    (n > replicas).then(|| {
        format!("spec.quorum.voters is {n}, more than the {replicas} brokers of spec.replicas")
    })
}

/// The voters wanted: the lowest `count` broker ids.
pub fn wanted(count: i32) -> BTreeSet<i32> {
    (0..count.max(1)).collect()
}

/// The next change from `q` toward `want`.
pub fn next(want: &BTreeSet<i32>, q: &QuorumView) -> VoterStep {
    if let Some(gone) = q.voters.iter().rev().find(|v| !want.contains(v))
        && q.voters.len() > 1
    {
        return VoterStep::Remove(*gone);
    }
    let Some(id) = want.iter().find(|id| !q.voters.contains(id)) else {
        return VoterStep::Idle;
    };
    if !q.observers.contains(id) {
        VoterStep::Wait(format!(
            "broker {id} has not joined the metadata quorum yet"
        ))
    } else if !q.caught_up.contains(id) {
        VoterStep::Wait(format!(
            "broker {id} is catching up on the metadata log before it votes"
        ))
    } else {
        VoterStep::Add(*id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(voters: &[i32], observers: &[i32], behind: &[i32]) -> QuorumView {
        let all: BTreeSet<i32> = voters.iter().chain(observers).copied().collect();
        QuorumView {
            voters: voters.iter().copied().collect(),
            observers: observers.iter().copied().collect(),
            caught_up: all.into_iter().filter(|i| !behind.contains(i)).collect(),
        }
    }

    #[test]
    fn voters_follow_the_broker_count() {
        assert_eq!(voter_count(None, 1), 1);
        assert_eq!(voter_count(None, 2), 1);
        assert_eq!(voter_count(None, 5), 3);
        assert_eq!(voter_count(Some(5), 5), 5);
        assert_eq!(voter_count(Some(5), 3), 3);
        assert!(invalid(Some(4), 5).is_some());
        assert!(invalid(Some(5), 3).is_some());
        assert!(invalid(Some(0), 3).is_some());
        assert_eq!(invalid(Some(3), 3), None);
        assert_eq!(invalid(None, 1), None);
    }

    #[test]
    fn scaling_up_adds_voters_as_brokers_join() {
        let want = wanted(3);
        assert!(matches!(
            next(&want, &view(&[0], &[], &[])),
            VoterStep::Wait(_)
        ));
        assert!(matches!(
            next(&want, &view(&[0], &[1, 2], &[1])),
            VoterStep::Wait(_)
        ));
        assert_eq!(next(&want, &view(&[0], &[1, 2], &[])), VoterStep::Add(1));
        assert_eq!(next(&want, &view(&[0, 1], &[2], &[])), VoterStep::Add(2));
        assert_eq!(
            next(&want, &view(&[0, 1, 2], &[3, 4], &[])),
            VoterStep::Idle
        );
    }

    #[test]
    fn scaling_down_removes_the_leaving_voters_first_and_never_the_last() {
        let want = wanted(1);
        assert_eq!(
            next(&want, &view(&[0, 1, 2], &[], &[])),
            VoterStep::Remove(2)
        );
        assert_eq!(next(&want, &view(&[0, 1], &[2], &[])), VoterStep::Remove(1));
        assert_eq!(next(&want, &view(&[0], &[1, 2], &[])), VoterStep::Idle);
        // A lone voter outside the wanted set is replaced, not removed.
        assert_eq!(
            next(&BTreeSet::from([1]), &view(&[0], &[1], &[])),
            VoterStep::Add(1)
        );
    }
}
