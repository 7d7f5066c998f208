//! The day-2 planner: pure functions from the desired brokers and what the
//! cluster reports to the next step (which partitions move where, which
//! broker rolls next) or the reason nothing may happen yet. No Kubernetes
//! or network calls here: the reconciler gathers an [`Observed`], asks for
//! a [`Step`], writes it to status, and carries it out.
//!
//! - [`balance`]: the replica assignment the cluster should converge to
//!   (replicas only on the desired brokers, each partition's replication
//!   factor, racks spread, replica and preferred-leader counts even, as few
//!   bytes moved as possible), and the next batch of moves toward it.
//! - [`roll`]: which broker may restart next without taking any partition
//!   below `min.insync.replicas` or the metadata quorum below a majority.
//! - [`voters`]: which brokers vote in the metadata quorum, and the next
//!   voter change toward that.

pub mod balance;
pub mod roll;
pub mod voters;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A broker as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub id: i32,
    pub rack: Option<String>,
    /// Registered and not fenced.
    pub live: bool,
}

/// One partition as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    /// In preference order (the first is the preferred leader).
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub min_insync_replicas: usize,
    /// The log's size on the leader, the bytes a new replica copies.
    pub size_bytes: u64,
    /// A reassignment is in progress.
    pub moving: bool,
}

impl Partition {
    pub fn key(&self) -> (String, i32) {
        (self.topic.clone(), self.partition)
    }

    /// Every replica is in sync and nothing is moving.
    pub fn settled(&self) -> bool {
        !self.moving && self.replicas.iter().all(|r| self.isr.contains(r))
    }
}

/// The cluster as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Observed {
    pub brokers: Vec<Broker>,
    pub partitions: Vec<Partition>,
}

impl Observed {
    pub fn rack_of(&self, id: i32) -> Option<&str> {
        self.brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.as_deref())
    }

    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.iter().any(|b| b.id == id && b.live)
    }
}

/// What the cluster should become.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Desired {
    /// Brokers that hold data; the others are emptied (scale-down).
    pub brokers: Vec<i32>,
    /// Replication factor per topic, where it differs from the current one.
    pub replication_factors: BTreeMap<String, usize>,
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
    /// Bytes the new replicas copy (0 for a reorder or a removal).
    pub bytes: u64,
}

/// The next thing to do, or why nothing happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Balanced: nothing to do.
    Idle,
    /// Reassign these partitions (at most a batch at once).
    Move(Vec<Move>),
    /// Move leadership to the preferred replicas of these partitions.
    ElectPreferred(Vec<(String, i32)>),
    /// Something must finish or heal first.
    Wait(String),
    /// The desired state cannot be reached; the reason names what stops it.
    Refused(String),
}

/// A short name for a rebalance: toward `brokers` brokers, as asked by
/// generation `generation` of the spec. The same on every operator version
/// and restart (FNV-1a): what an approval refers to. One approval covers
/// every batch of moves of that rebalance; a new spec asks again.
pub fn rebalance_id(brokers: i32, generation: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{brokers}/{generation}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}
