//! The metadata plane: topics (names, ids, partition counts, configs) as
//! this broker keeps them in its data directory ([`store`],
//! [`topic_config`]), and, in a cluster, the metadata quorum as this broker
//! follows it ([`cluster`]) and the topic changes it writes there and
//! materializes locally ([`cluster_topics`]).

pub mod cluster;
pub mod cluster_topics;
pub mod store;
pub mod topic_config;

pub use store::{ClusterMeta, MetadataStore, TopicMetadata};
pub use topic_config::{ConfigError, TopicConfigs};
