//! A partition and its replication: the partitions this broker hosts
//! (append, read, long-poll, leader and follower roles), the fetchers that
//! copy from leaders and keep the ISR, and the replication throttles.

pub mod replica;
pub mod replication;
pub mod throttle;
