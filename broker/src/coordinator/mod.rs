//! Coordinators: consumer groups and their committed offsets, and the
//! producer ids of idempotent producers (transactions come here next).

pub mod group;
pub mod producer_ids;
