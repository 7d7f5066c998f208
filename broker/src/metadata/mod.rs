//! Topic metadata: names, ids, partition counts and configs.
//!
//! On one node this is a small file in the data directory; the replicated
//! cluster will keep the same records in a Raft log.

pub mod store;
pub mod topic_config;

pub use store::{ClusterMeta, MetadataStore, TopicMetadata};
pub use topic_config::{ConfigError, TopicConfigs};
