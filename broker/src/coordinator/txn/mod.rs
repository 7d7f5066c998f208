//! The transaction coordinator: every transactional id's state, kept in
//! memory by the leader of its `__transaction_state` partition (as groups
//! are kept by the leader of theirs) and persisted there before any answer.
//!
//! `state` decides (no I/O); `log` is the topic's record format;
//! `service` does the I/O: the state writes, the markers to the partition
//! leaders, the loading by a new coordinator and the timeouts.

pub mod log;
pub mod service;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

pub use state::{TxnMeta, TxnStatus};

/// The internal topic holding transaction states.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Debug, Default)]
struct Inner {
    /// `(its __transaction_state partition, state)` by transactional id.
    txns: HashMap<String, (i32, TxnMeta)>,
    /// Partitions of the topic loaded here.
    loaded: std::collections::BTreeSet<i32>,
    /// One request at a time per transactional id (the state write
    /// happens between the decision and the answer).
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

#[derive(Debug)]
pub struct TxnCoordinator {
    inner: Mutex<Inner>,
    /// Bumped at every state change, for requests waiting on one.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for TxnCoordinator {
    fn default() -> Self {
        TxnCoordinator {
            inner: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl TxnCoordinator {
    pub fn get(&self, id: &str) -> Option<TxnMeta> {
        self.inner.lock().txns.get(id).map(|(_, m)| m.clone())
    }

    pub fn set(&self, id: &str, partition: i32, meta: TxnMeta) {
        self.inner
            .lock()
            .txns
            .insert(id.to_string(), (partition, meta));
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Waits (up to `limit`) until `id` is not between a decision and its
    /// completion: the producer's next transaction then starts at once,
    /// where CONCURRENT_TRANSACTIONS would cost it a retry backoff (100 ms
    /// in librdkafka) per transaction.
    pub async fn wait_settled(&self, id: &str, limit: std::time::Duration) {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        while self.get(id).is_some_and(|m| m.status.is_prepared()) {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The lock serialising requests for `id`.
    pub fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.inner.lock().locks.entry(id.to_string()).or_default())
    }

    /// Takes one record of the topic while loading `partition`.
    pub fn replay(&self, partition: i32, id: String, meta: Option<TxnMeta>) {
        let mut inner = self.inner.lock();
        match meta {
            Some(m) => {
                inner.txns.insert(id, (partition, m));
            }
            None => {
                inner.txns.remove(&id);
            }
        }
    }

    pub fn is_loaded(&self, partition: i32) -> bool {
        self.inner.lock().loaded.contains(&partition)
    }

    pub fn mark_loaded(&self, partition: i32) {
        self.inner.lock().loaded.insert(partition);
    }

    /// Forgets a partition this broker no longer leads (its new leader
    /// loads it from the log).
    pub fn unload(&self, partition: i32) {
        let mut inner = self.inner.lock();
        if inner.loaded.remove(&partition) {
            inner.txns.retain(|_, (p, _)| *p != partition);
        }
    }

    pub fn loaded_partitions(&self) -> Vec<i32> {
        self.inner.lock().loaded.iter().copied().collect()
    }

    /// Every transactional id coordinated here, with its state.
    pub fn all(&self) -> Vec<(String, TxnMeta)> {
        let inner = self.inner.lock();
        let mut v: Vec<_> = inner
            .txns
            .iter()
            .map(|(id, (_, m))| (id.clone(), m.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The ids of `partition` whose markers are still to be written.
    pub fn prepared_in(&self, partition: i32) -> Vec<String> {
        self.inner
            .lock()
            .txns
            .iter()
            .filter(|(_, (p, m))| *p == partition && m.status.is_prepared())
            .map(|(id, _)| id.clone())
            .collect()
    }
}
