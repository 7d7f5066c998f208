//! The Kafka listener: accept loop, per-connection request loop, shutdown.

pub mod connection;
pub mod listener;

pub use listener::{RunningBroker, start};
