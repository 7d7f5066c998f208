//! Coordinators: consumer groups and their committed offsets, transactions,
//! and the producer ids of idempotent and transactional producers.

pub mod group;
pub mod producer_ids;
pub mod txn;
