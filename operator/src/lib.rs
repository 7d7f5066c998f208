//! Sluice operator: reconciles `KafkaCluster` and `Topic` resources.
//!
//! This first step holds the resource types and the CRD generator; the
//! reconcilers build on them.

pub mod crd;
pub mod crdgen;
pub mod resources;
pub mod topic_plan;

pub use crd::{KafkaCluster, KafkaClusterSpec, KafkaClusterStatus, Topic, TopicSpec, TopicStatus};
