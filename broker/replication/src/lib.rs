//! Partition replication in Kafka's model, as state machines without I/O:
//! the broker feeds them appends, follower fetches, metadata and time, and
//! carries out what they return. The same code runs in the deterministic
//! simulation (`tests/simulation.rs`) under message loss, delay, crashes
//! and controller failover.
//!
//! - [`epochs`]: the leader-epoch cache and the OffsetForLeaderEpoch answer;
//! - [`leader`]: high watermark, ISR shrink and expand, `acks=all`;
//! - [`follower`]: where a returning replica truncates before it fetches.

pub mod epochs;
pub mod follower;
pub mod leader;
