//! The two reconcilers and how they run.

pub mod cluster;
pub mod topic;
pub mod user;
