//! The Kafka listeners: accept loops, the per-connection request loop,
//! shutdown.

pub mod connection;
pub mod listener;
pub mod session;

pub use listener::{RunningBroker, start};
pub use session::{Principal, Session};
