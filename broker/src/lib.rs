//! Sluice broker: a Kafka-compatible broker.
//!
//! Layout, from the bytes on the wire inwards:
//! - [`protocol`]: framing, request decoding, the ApiVersions table.
//! - [`server`]: the TCP listener and per-connection loop.
//! - [`handlers`]: one module per Kafka API.
//! - [`replica`]: the partitions this broker hosts (append, read, long-poll).
//! - [`storage`]: the on-disk log (segments, indexes, checkpoints, recovery).
//! - [`metadata`]: topics, ids and configs, persisted in the data directory.

pub mod alloc_guard;
pub mod broker;
pub mod cluster;
pub mod cluster_topics;
pub mod config;
pub mod dynamic_config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod producer_ids;
pub mod protocol;
pub mod replica;
pub mod replication;
pub mod server;
pub mod storage;
pub mod throttle;

pub use config::BrokerConfig;
pub use error::{Error, Result};

#[global_allocator]
static GLOBAL: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;
