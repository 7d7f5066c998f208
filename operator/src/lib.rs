//! Sluice operator: reconciles `KafkaCluster` and `Topic` resources.
//!
//! Pure parts (resource rendering, status, topic plans) are separate from
//! the reconcilers that apply them, so that each is tested on its own.

pub mod brokers;
pub mod certs;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod quorum;
pub mod rebalance;
pub mod resources;
pub mod rolling;
pub mod run;
pub mod status;
pub mod storage;
pub mod topic_plan;

pub use crd::{
    KafkaCluster, KafkaClusterSpec, KafkaClusterStatus, KafkaUser, KafkaUserSpec, KafkaUserStatus,
    Topic, TopicSpec, TopicStatus,
};
