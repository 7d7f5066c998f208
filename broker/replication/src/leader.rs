//! A partition leader's replication state: followers' progress, the high
//! watermark, ISR changes to propose to the controller, and when an
//! `acks=all` write may be answered.
//!
//! Kafka's rules, kept here:
//! - the high watermark is the smallest log end offset over the *maximal*
//!   ISR (the committed ISR plus members whose addition is in flight), so a
//!   pending change never lets the high watermark pass a replica that may
//!   be in the ISR;
//! - a follower leaves the ISR after `replica.lag.time.max.ms` without
//!   having caught up to the leader's log end; it rejoins once it has
//!   fetched up to the high watermark (and into the current leader epoch);
//! - `acks=all` is refused up front with NOT_ENOUGH_REPLICAS when the ISR
//!   is smaller than `min.insync.replicas`, and answered once the high
//!   watermark passes the write.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// The follower's log end offset (its last fetch offset).
    pub leo: i64,
    /// When the follower last had everything the leader had.
    pub last_caught_up_ms: u64,
}

/// A change of ISR for the controller to commit (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub isr: Vec<i32>,
    /// The partition epoch the change is based on (compare-and-set).
    pub partition_epoch: i32,
}

/// Whether an `acks=all` write may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckState {
    /// The high watermark passed it: answer success.
    Done,
    /// Replicas still have to fetch it.
    Waiting,
    /// The ISR shrank below `min.insync.replicas` (it may still complete
    /// if the ISR grows back before the request times out).
    NotEnoughReplicas,
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    pub me: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The ISR as committed in the metadata.
    pub isr: Vec<i32>,
    /// A change sent to the controller and not yet committed.
    pub pending: Option<IsrChange>,
    pub leo: i64,
    pub hw: i64,
    pub followers: BTreeMap<i32, Follower>,
    pub lag_max_ms: u64,
    pub min_isr: usize,
}

impl LeaderState {
    /// Becoming leader at `leader_epoch` with the local log ending at `leo`
    /// and the last known high watermark `hw`. Followers count as caught up
    /// now: each gets a full `lag_max_ms` to fetch.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leo: i64,
        hw: i64,
        now_ms: u64,
        lag_max_ms: u64,
        min_isr: usize,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    Follower {
                        // Unknown until the first fetch: no HW progress on it.
                        leo: -1,
                        last_caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        LeaderState {
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            pending: None,
            leo,
            hw: hw.min(leo),
            followers,
            lag_max_ms,
            min_isr,
        }
    }

    /// The ISR the high watermark must respect: committed plus pending
    /// additions.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut m = self.isr.clone();
        if let Some(p) = &self.pending {
            for r in &p.isr {
                if !m.contains(r) {
                    m.push(*r);
                }
            }
        }
        m
    }

    fn leo_of(&self, r: i32) -> i64 {
        if r == self.me {
            self.leo
        } else {
            self.followers.get(&r).map_or(-1, |f| f.leo)
        }
    }

    /// Recomputes the high watermark; it never moves back. Returns whether
    /// it moved.
    pub fn advance_hw(&mut self) -> bool {
        let min = self
            .maximal_isr()
            .iter()
            .map(|r| self.leo_of(*r))
            .min()
            .unwrap_or(self.leo);
        if min > self.hw {
            self.hw = min;
            true
        } else {
            false
        }
    }

    /// May a write with `acks=all` be appended now?
    pub fn can_append_acks_all(&self) -> bool {
        self.isr.len() >= self.min_isr
    }

    /// The local log grew to `leo`.
    pub fn on_append(&mut self, leo: i64) -> bool {
        self.leo = leo;
        self.advance_hw()
    }

    /// A follower fetched at `fetch_offset` (its log end). Returns an ISR
    /// expansion to propose when it has caught up and is not in the ISR.
    pub fn on_fetch(&mut self, follower: i32, fetch_offset: i64, now_ms: u64) -> Option<IsrChange> {
        let leo = self.leo;
        let f = self.followers.get_mut(&follower)?;
        f.leo = fetch_offset.min(leo);
        if fetch_offset >= leo {
            f.last_caught_up_ms = now_ms;
        }
        self.advance_hw();
        let in_isr = self.maximal_isr().contains(&follower);
        if !in_isr && self.pending.is_none() && fetch_offset >= self.hw {
            let mut isr = self.isr.clone();
            isr.push(follower);
            let change = IsrChange {
                isr,
                partition_epoch: self.partition_epoch,
            };
            self.pending = Some(change.clone());
            return Some(change);
        }
        None
    }

    /// Time passes: followers that have lagged longer than `lag_max_ms`
    /// leave the ISR (proposed; the leader itself always stays).
    pub fn tick(&mut self, now_ms: u64) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) > self.lag_max_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        let change = IsrChange {
            isr,
            partition_epoch: self.partition_epoch,
        };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// The controller committed an ISR (ours or its own, for example after
    /// fencing a broker) at `partition_epoch`.
    pub fn on_isr_committed(&mut self, isr: Vec<i32>, partition_epoch: i32) {
        self.isr = isr;
        self.partition_epoch = partition_epoch;
        self.pending = None;
        self.advance_hw();
    }

    /// The replica set changed (a reassignment): new replicas are tracked
    /// from now, each with a full `lag_max_ms` before it counts as lagging;
    /// removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: Vec<i32>, now_ms: u64) {
        self.followers.retain(|r, _| replicas.contains(r));
        for r in &replicas {
            if *r != self.me {
                self.followers.entry(*r).or_insert(Follower {
                    leo: -1,
                    last_caught_up_ms: now_ms,
                });
            }
        }
        self.replicas = replicas;
        self.advance_hw();
    }

    /// The controller refused the pending change (a stale epoch): forget it
    /// and propose again from the next metadata.
    pub fn on_isr_refused(&mut self) {
        self.pending = None;
    }

    /// May an `acks=all` write ending at `end_offset` (exclusive) be
    /// answered?
    pub fn ack_state(&self, end_offset: i64) -> AckState {
        if self.hw >= end_offset {
            // Everything in the ISR at the time has it, and that ISR was
            // large enough when the write was appended.
            AckState::Done
        } else if self.isr.len() < self.min_isr {
            AckState::NotEnoughReplicas
        } else {
            AckState::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> LeaderState {
        LeaderState::new(1, 3, 7, vec![1, 2, 3], vec![1, 2, 3], 10, 10, 0, 100, 2)
    }

    #[test]
    fn high_watermark_follows_the_slowest_isr_member() {
        let mut l = leader();
        l.on_append(15);
        assert_eq!(l.hw, 10, "followers have not fetched yet");
        assert_eq!(l.ack_state(15), AckState::Waiting);
        l.on_fetch(2, 15, 5);
        assert_eq!(l.hw, 10);
        l.on_fetch(3, 12, 5);
        assert_eq!(l.hw, 12);
        l.on_fetch(3, 15, 6);
        assert_eq!(l.hw, 15);
        assert_eq!(l.ack_state(15), AckState::Done);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_back_in() {
        let mut l = leader();
        l.on_append(20);
        l.on_fetch(2, 20, 10);
        l.on_fetch(3, 12, 10);
        assert_eq!(l.tick(50), None, "within the lag limit");
        let shrink = l.tick(105).expect("3 lags");
        assert_eq!(
            shrink,
            IsrChange {
                isr: vec![1, 2],
                partition_epoch: 7
            }
        );
        assert_eq!(l.hw, 12, "pending shrink: 3 still counts");
        l.on_isr_committed(vec![1, 2], 8);
        assert_eq!(l.hw, 20, "without 3 the HW moves to what 1 and 2 have");
        assert!(l.can_append_acks_all(), "2 of min 2");
        // 3 catches up: proposed back in.
        let grow = l.on_fetch(3, 20, 120).expect("3 caught up");
        assert_eq!(
            grow,
            IsrChange {
                isr: vec![1, 2, 3],
                partition_epoch: 8
            }
        );
        assert_eq!(l.on_fetch(3, 20, 121), None, "one change in flight");
        l.on_isr_committed(vec![1, 2, 3], 9);
        assert_eq!(l.isr, vec![1, 2, 3]);
    }

    #[test]
    fn acks_all_needs_min_isr() {
        let mut l = leader();
        l.on_isr_committed(vec![1], 8);
        assert!(!l.can_append_acks_all());
        l.on_append(11);
        assert_eq!(l.hw, 11, "a one-member ISR commits alone");
        let mut l = leader();
        l.on_append(11);
        l.on_isr_committed(vec![1], 8);
        assert_eq!(l.ack_state(12), AckState::NotEnoughReplicas);
    }

    #[test]
    fn the_high_watermark_never_moves_back() {
        let mut l = leader();
        l.on_append(30);
        l.on_fetch(2, 30, 1);
        l.on_fetch(3, 30, 1);
        assert_eq!(l.hw, 30);
        l.on_fetch(3, 25, 2); // a stale, reordered fetch
        assert_eq!(l.hw, 30);
    }

    #[test]
    fn a_replica_added_by_a_reassignment_joins_once_caught_up() {
        let mut l = leader();
        l.set_replicas(vec![1, 2, 3, 4], 0);
        // Unknown until it fetches; it does not hold the HW back, as it is
        // not in the ISR.
        assert!(!l.on_append(12));
        l.on_fetch(2, 12, 1);
        l.on_fetch(3, 12, 1);
        assert_eq!(l.hw, 12);
        assert_eq!(l.on_fetch(4, 5, 2), None, "behind the HW: not yet");
        let change = l.on_fetch(4, 12, 3).expect("caught up: proposed");
        assert_eq!(change.isr, vec![1, 2, 3, 4]);
        // Removing a replica forgets it.
        l.on_isr_committed(vec![1, 2, 3, 4], 8);
        l.set_replicas(vec![1, 4], 4);
        assert!(!l.followers.contains_key(&2));
    }
}
