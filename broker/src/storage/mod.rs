//! The on-disk log: one directory per partition, Kafka-style.
//!
//! ```text
//! <data dir>/<topic>-<partition>/
//!     00000000000000000000.log        record batches as producers sent them
//!     00000000000000000000.index      sparse offset -> position
//!     00000000000000000000.timeindex  sparse timestamp -> offset
//!     leader-epoch-checkpoint         epoch -> start offset
//!     partition.metadata              topic id
//! ```

pub mod batch;
pub mod checkpoint;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod records;
pub mod segment;

pub use self::log::{AppendInfo, FetchData, LogConfig, PartitionLog};
