//! The broker's error type.

use std::path::PathBuf;

/// Errors raised inside the broker. Errors a client caused are mapped to
/// Kafka error codes in the handlers; these are the ones that reach logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting `{name}`: {reason}")]
    Config { name: String, reason: String },
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("malformed request: {0}")]
    Protocol(String),
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("metadata error: {0}")]
    Metadata(String),
    /// A write to the metadata quorum was not committed in time; it may
    /// still commit later.
    #[error("the metadata quorum did not commit the change ({what}) within {after_ms} ms")]
    QuorumTimeout { what: &'static str, after_ms: u64 },
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("an idempotent produce must carry exactly one batch per partition")]
    MultipleIdempotentBatches,
    #[error("replicated batch at offset {got} does not continue the log, which ends at {expected}")]
    ReplicaOffsetGap { expected: i64, got: i64 },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn config(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// True when the underlying cause is a full disk or quota.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a path to an `std::io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
