//! The quorum's state machine: the `MetadataImage`, plus the last applied
//! log id and membership. Snapshots are the JSON of all three, written
//! atomically to disk; at start the newest snapshot is loaded and Raft
//! replays the committed log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::image::{MetadataImage, Outcome};
use crate::log_store::{read_json, write_atomic};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    meta: Option<SnapshotMeta>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: MetadataImage,
}

/// The state machine. Readers follow the image through `subscribe`.
pub struct StateMachine {
    dir: PathBuf,
    state: Stored,
    snapshot_count: u64,
    image_tx: Arc<watch::Sender<Arc<MetadataImage>>>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.state.last_applied)
            .finish()
    }
}

fn io_err(e: std::io::Error) -> AnyError {
    AnyError::new(&e)
}

impl StateMachine {
    /// Loads the newest snapshot from `dir`, if any.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let state: Stored = read_json(dir, SNAPSHOT_FILE)?.unwrap_or_default();
        let (tx, _) = watch::channel(Arc::new(state.image.clone()));
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            state,
            snapshot_count: 0,
            image_tx: Arc::new(tx),
        })
    }

    /// A receiver that sees every applied image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }

    fn publish(&self) {
        self.image_tx
            .send_replace(Arc::new(self.state.image.clone()));
    }
}

/// Builds snapshots from a copy of the state taken when asked.
pub struct SnapshotBuilder {
    dir: PathBuf,
    state: Stored,
    id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id: self.id.clone(),
        };
        let mut stored = self.state.clone();
        stored.meta = Some(meta.clone());
        let bytes = serde_json::to_vec(&stored).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        write_atomic(&self.dir, SNAPSHOT_FILE, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for e in entries {
            self.state.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Outcome::Ok),
                EntryPayload::Normal(cmd) => out.push(self.state.image.apply(&cmd)),
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Outcome::Ok);
                }
            }
        }
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_count += 1;
        let id = match self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_count),
            None => format!("empty-{}", self.snapshot_count),
        };
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            id,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let mut stored: Stored = serde_json::from_slice(snapshot.get_ref()).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        stored.meta = Some(meta.clone());
        stored.last_applied = meta.last_log_id;
        stored.membership = meta.last_membership.clone();
        write_atomic(&self.dir, SNAPSHOT_FILE, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        self.state = stored;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored: Option<Stored> = read_json(&self.dir, SNAPSHOT_FILE)
            .map_err(|e| StorageIOError::read_snapshot(None, io_err(e)))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let Some(meta) = stored.meta.clone() else {
            return Ok(None);
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
