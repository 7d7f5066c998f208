//! Sluice broker: a Kafka-compatible broker.
//!
//! Layout, from the bytes on the wire inwards:
//! - [`protocol`]: framing, request decoding, the served APIs, error codes.
//! - [`server`]: the TCP listener and per-connection loop.
//! - [`handlers`]: one module per Kafka API.
//! - [`coordinator`]: consumer groups and offsets, producer ids.
//! - [`partition`]: the partitions this broker hosts and their replication.
//! - [`storage`]: the on-disk log (segments, indexes, checkpoints, recovery).
//! - [`metadata`]: the metadata plane: topics, ids and configs in the data
//!   directory, and the cluster's metadata quorum as this broker follows it.
//! - [`config`]: static settings and dynamic broker configs.

pub mod alloc_guard;
pub mod broker;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod security;
pub mod server;
pub mod storage;

pub use config::BrokerConfig;
pub use error::{Error, Result};

#[global_allocator]
static GLOBAL: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;
