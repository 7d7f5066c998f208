//! The quorum's Raft log on disk: one append-only file of length- and
//! CRC32C-framed entries, fsynced before an append is acknowledged, plus the
//! vote and the committed log id in small files replaced atomically. At
//! open, a torn tail (a crash mid-append) is cut at the last whole entry.
//! The metadata log is small; entries are also kept in memory, and purged
//! entries are dropped from the file when it is rewritten.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";
/// Rewrite the file once this many purged entries sit in it.
const REWRITE_AFTER: usize = 4096;

fn io_err(e: std::io::Error) -> AnyError {
    AnyError::new(&e)
}

/// Writes `value` as JSON to `dir/name` atomically (temp file, fsync,
/// rename, directory fsync).
pub(crate) fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

pub(crate) fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> std::io::Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {e}"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// index -> (entry, file offset of its frame)
    entries: BTreeMap<u64, (Entry, u64)>,
    end: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    purged_in_file: usize,
}

/// The log store; cheap to clone (the reader shares it).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn frame(entry: &Entry) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl LogStore {
    /// The id of the last entry written (or purged into a snapshot).
    pub fn last_log_id(&self) -> Option<LogId> {
        let inner = self.inner.lock();
        inner
            .entries
            .values()
            .next_back()
            .map(|(e, _)| *e.get_log_id())
            .or(inner.purged)
    }

    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let purged: Option<LogId> = read_json(dir, PURGED_FILE)?;
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        let mut purged_in_file = 0;
        while pos + 8 <= data.len() {
            let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            let crc =
                u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let Some(body) = data.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry>(body) else {
                break;
            };
            let index = entry.get_log_id().index;
            if purged.is_some_and(|p| index <= p.index) {
                purged_in_file += 1;
            } else {
                entries.insert(index, (entry, pos as u64));
            }
            pos += 8 + len;
        }
        if pos < data.len() {
            tracing::warn!(
                path = %path.display(),
                kept = pos,
                dropped = data.len() - pos,
                "metadata log: cutting a torn tail"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(pos as u64))?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end: pos as u64,
                vote: read_json(dir, VOTE_FILE)?,
                committed: read_json(dir, COMMITTED_FILE)?,
                purged,
                purged_in_file,
            })),
        })
    }
}

impl Inner {
    /// Rewrites the file with only the entries kept in memory.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        let mut pos = 0u64;
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (idx, (e, _)) in &self.entries {
            let fr = frame(e)?;
            f.write_all(&fr)?;
            offsets.push((*idx, pos));
            pos += fr.len() as u64;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(LOG_FILE))?;
        file.seek(SeekFrom::Start(pos))?;
        self.file = file;
        self.end = pos;
        for (idx, off) in offsets {
            if let Some(slot) = self.entries.get_mut(&idx) {
                slot.1 = off;
            }
        }
        self.purged_in_file = 0;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_log_id = self.last_log_id();
        Ok(LogState {
            last_purged_log_id: self.inner.lock().purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        write_atomic(&inner.dir, VOTE_FILE, vote)
            .map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        write_atomic(&inner.dir, COMMITTED_FILE, &committed)
            .map_err(|e| StorageIOError::write(io_err(e)))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = (|| -> std::io::Result<()> {
            let mut inner = self.inner.lock();
            let mut buf = Vec::new();
            let mut placed = Vec::new();
            let mut pos = inner.end;
            for e in entries {
                let fr = frame(&e)?;
                placed.push((e, pos));
                pos += fr.len() as u64;
                buf.extend_from_slice(&fr);
            }
            inner.file.write_all(&buf)?;
            inner.file.sync_data()?;
            inner.end = pos;
            for (e, off) in placed {
                inner.entries.insert(e.get_log_id().index, (e, off));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                callback.log_io_completed(Err(std::io::Error::new(kind, msg)));
                Err(StorageIOError::write_logs(io_err(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        let Some(off) = inner.entries.get(&log_id.index).map(|(_, off)| *off) else {
            return Ok(());
        };
        let r = (|| -> std::io::Result<()> {
            inner.file.set_len(off)?;
            inner.file.sync_all()?;
            inner.file.seek(SeekFrom::Start(off))?;
            Ok(())
        })();
        r.map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        inner.end = off;
        inner.entries.retain(|idx, _| *idx < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        write_atomic(&inner.dir, PURGED_FILE, &log_id)
            .map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        inner.purged = Some(log_id);
        let before = inner.entries.len();
        inner.entries.retain(|idx, _| *idx > log_id.index);
        inner.purged_in_file += before - inner.entries.len();
        if inner.purged_in_file >= REWRITE_AFTER {
            inner
                .rewrite()
                .map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        }
        Ok(())
    }
}
