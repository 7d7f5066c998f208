//! Sparse per-segment indexes, in Kafka's on-disk format.
//!
//! - Offset index (`.index`): 8-byte entries, relative offset (u32) and
//!   byte position (u32), both big-endian, for the first batch at or after
//!   every `index.interval.bytes` of log.
//! - Time index (`.timeindex`): 12-byte entries, timestamp (i64) and
//!   relative offset (u32), added when a batch raises the segment's largest
//!   timestamp.
//!
//! Entries live in memory for lookups and are appended to the file as they
//! are made; a file that fails its sanity check is rebuilt from the log.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// Appends to and reads an index file of fixed-size entries.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    file: File,
}

impl IndexFile {
    fn open(path: &Path) -> Result<(Self, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .at(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(path)?;
        Ok((
            IndexFile {
                path: path.to_path_buf(),
                file,
            },
            bytes,
        ))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).at(&self.path)
    }

    fn rewrite(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.set_len(0).at(&self.path)?;
        self.file.write_all(bytes).at(&self.path)
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }
}

#[derive(Debug)]
pub struct OffsetIndex {
    file: IndexFile,
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    /// Opens the index; returns `None` for the entries when the file is not
    /// a plausible index for a log of `log_size` bytes (the caller rebuilds).
    pub fn open(path: &Path, log_size: u64) -> Result<(Self, bool)> {
        let (file, bytes) = IndexFile::open(path)?;
        let mut entries = Vec::with_capacity(bytes.len() / 8);
        let mut sane = bytes.len() % 8 == 0;
        if sane {
            for c in bytes.chunks_exact(8) {
                let e = OffsetEntry {
                    relative_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                };
                if u64::from(e.position) >= log_size.max(1)
                    || entries.last().is_some_and(|l: &OffsetEntry| {
                        l.relative_offset >= e.relative_offset || l.position >= e.position
                    })
                {
                    sane = false;
                    break;
                }
                entries.push(e);
            }
        }
        if !sane {
            entries.clear();
        }
        Ok((OffsetIndex { file, entries }, sane))
    }

    pub fn append(&mut self, e: OffsetEntry) -> Result<()> {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&e.relative_offset.to_be_bytes());
        b[4..].copy_from_slice(&e.position.to_be_bytes());
        self.file.append(&b)?;
        self.entries.push(e);
        Ok(())
    }

    /// Position of the last indexed batch at or before `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Drops entries at or past `position` and rewrites the file.
    pub fn truncate_to_position(&mut self, position: u32) -> Result<()> {
        self.entries.retain(|e| e.position < position);
        let bytes = self.encode();
        self.file.rewrite(&bytes)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.file.rewrite(&[])
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    /// Drops in-memory entries past `len` after a failed append. The file
    /// may keep them; a restart's sanity check or recovery rebuilds it.
    pub fn forget_after(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug)]
pub struct TimeIndex {
    file: IndexFile,
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn open(path: &Path) -> Result<(Self, bool)> {
        let (file, bytes) = IndexFile::open(path)?;
        let mut entries = Vec::with_capacity(bytes.len() / 12);
        let mut sane = bytes.len() % 12 == 0;
        if sane {
            for c in bytes.chunks_exact(12) {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                let e = TimeEntry {
                    timestamp: i64::from_be_bytes(ts),
                    relative_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                };
                if entries.last().is_some_and(|l: &TimeEntry| {
                    l.timestamp >= e.timestamp || l.relative_offset > e.relative_offset
                }) {
                    sane = false;
                    break;
                }
                entries.push(e);
            }
        }
        if !sane {
            entries.clear();
        }
        Ok((TimeIndex { file, entries }, sane))
    }

    /// Records that `relative_offset` is the first offset whose batch
    /// reached `timestamp`, if that is a new maximum.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|l| l.timestamp >= timestamp)
        {
            return Ok(());
        }
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&timestamp.to_be_bytes());
        b[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.append(&b)?;
        self.entries.push(TimeEntry {
            timestamp,
            relative_offset,
        });
        Ok(())
    }

    /// The relative offset from which to scan for the first batch whose
    /// largest timestamp is at least `timestamp`: the newest entry whose
    /// timestamp is below it (batches before it cannot qualify).
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|e| e.timestamp < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].relative_offset
        }
    }

    pub fn truncate_to_offset(&mut self, relative_offset: u32) -> Result<()> {
        self.entries.retain(|e| e.relative_offset < relative_offset);
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        self.file.rewrite(&out)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.file.rewrite(&[])
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    /// See [`OffsetIndex::forget_after`].
    pub fn forget_after(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_a_floor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.index");
        let (mut idx, sane) = OffsetIndex::open(&p, 0).expect("open");
        assert!(sane);
        idx.append(OffsetEntry {
            relative_offset: 10,
            position: 100,
        })
        .expect("a");
        idx.append(OffsetEntry {
            relative_offset: 20,
            position: 200,
        })
        .expect("a");
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(10), 100);
        assert_eq!(idx.lookup(19), 100);
        assert_eq!(idx.lookup(25), 200);
        drop(idx);
        let (idx, sane) = OffsetIndex::open(&p, 1000).expect("reopen");
        assert!(sane);
        assert_eq!(idx.len(), 2);
        let (_, sane) = OffsetIndex::open(&p, 150).expect("reopen short log");
        assert!(
            !sane,
            "positions past the log end must fail the sanity check"
        );
    }

    #[test]
    fn time_lookup_finds_scan_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut idx, _) = TimeIndex::open(&dir.path().join("0.timeindex")).expect("open");
        idx.maybe_append(100, 0).expect("a");
        idx.maybe_append(90, 1).expect("ignored: not a new max");
        idx.maybe_append(200, 5).expect("a");
        assert_eq!(idx.lookup(50), 0);
        assert_eq!(idx.lookup(150), 0);
        assert_eq!(idx.lookup(201), 5);
        idx.truncate_to_offset(5).expect("t");
        assert_eq!(idx.last().map(|e| e.timestamp), Some(100));
    }
}
