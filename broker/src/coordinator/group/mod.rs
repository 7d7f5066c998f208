//! Classic consumer group coordination (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup), as Kafka serves it to existing clients.
//!
//! `state` is the sans-IO state machine of one group: requests and the
//! current time go in, answers and completed rebalances come out. The
//! async layer that parks JoinGroup and SyncGroup requests until their
//! rebalance completes, and the persistence of offsets in
//! `__consumer_offsets`, sit on top of it (issue 5; not served yet).

pub mod coordinator;
pub mod offsets_log;
pub mod state;

pub use coordinator::{GroupCoordinator, OFFSETS_TOPIC, Pending};
pub use state::{Group, GroupState, JoinRequest, JoinResult, Joined, Synced};
