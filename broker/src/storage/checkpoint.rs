//! Checkpoint files in Kafka's text format: a version line, a count line,
//! then one entry per line. Written atomically (temp file, fsync, rename,
//! fsync of the directory).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

const VERSION: &str = "0";

/// Writes `contents` to `path` so that a crash leaves either the old or the
/// new file, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(contents).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that a rename or new file in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

fn parse_lines(path: &Path, text: &str) -> Result<Vec<Vec<String>>> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    match lines.next() {
        Some(VERSION) => {}
        other => return Err(corrupt(format!("unsupported version line {other:?}"))),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing entry count".into()))?;
    let entries: Vec<Vec<String>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    if entries.len() != count {
        return Err(corrupt(format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    Ok(entries)
}

/// Leader epoch -> first offset written in that epoch, one file per
/// partition (`leader-epoch-checkpoint`). Replication uses it to find where
/// a returning replica diverged.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub const FILE: &'static str = "leader-epoch-checkpoint";

    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse_lines(&path, &text)?
                .into_iter()
                .map(|e| match e.as_slice() {
                    [epoch, offset] => Ok((
                        epoch.parse().map_err(|_| bad(&path, "epoch"))?,
                        offset.parse().map_err(|_| bad(&path, "offset"))?,
                    )),
                    _ => Err(bad(&path, "entry")),
                })
                .collect::<Result<Vec<_>>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(LeaderEpochCache { path, entries })
    }

    /// Records that `epoch` starts at `start_offset`, if it is a new epoch.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if self.entries.last().is_some_and(|(e, _)| *e >= epoch) {
            return Ok(());
        }
        self.entries.push((epoch, start_offset));
        self.persist()
    }

    /// Forgets epochs that start at or after `end_offset` (log truncated).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|(_, o)| *o < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The latest epoch, if any batch was ever written with one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch <= `epoch`
    /// and the offset where the next epoch starts (or `log_end`).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|(e, _)| *e <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map(|(_, o)| *o).unwrap_or(log_end);
        Some((found, end))
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    fn persist(&self) -> Result<()> {
        let mut s = format!("{VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        write_atomic(&self.path, s.as_bytes())
    }
}

fn bad(path: &Path, what: &str) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("unparsable {what}"),
    }
}

/// A data-directory-level checkpoint of one offset per partition
/// (`replication-offset-checkpoint` for high watermarks,
/// `recovery-point-offset-checkpoint` for flushed offsets).
pub fn read_offsets(path: &Path) -> Result<BTreeMap<(String, i32), i64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_lines(path, &text)?
        .into_iter()
        .map(|e| match e.as_slice() {
            [topic, partition, offset] => Ok((
                (
                    topic.clone(),
                    partition.parse().map_err(|_| bad(path, "partition"))?,
                ),
                offset.parse().map_err(|_| bad(path, "offset"))?,
            )),
            _ => Err(bad(path, "entry")),
        })
        .collect()
}

pub fn write_offsets(path: &Path, offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
    let mut s = format!("{VERSION}\n{}\n", offsets.len());
    for ((t, p), o) in offsets {
        s.push_str(&format!("{t} {p} {o}\n"));
    }
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_round_trip_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = LeaderEpochCache::open(dir.path()).expect("open");
        c.assign(0, 0).expect("a");
        c.assign(0, 5).expect("same epoch ignored");
        c.assign(2, 10).expect("a");
        c.assign(3, 20).expect("a");
        assert_eq!(c.end_offset_for(1, 30), Some((0, 10)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 30)));
        c.truncate_from_end(15).expect("t");
        let c = LeaderEpochCache::open(dir.path()).expect("reopen");
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
    }

    #[test]
    fn offsets_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("replication-offset-checkpoint");
        let mut m = BTreeMap::new();
        m.insert(("orders".to_string(), 3), 42);
        write_offsets(&p, &m).expect("w");
        assert_eq!(read_offsets(&p).expect("r"), m);
        std::fs::write(&p, "0\n2\norders 3 42\n").expect("w");
        assert!(read_offsets(&p).is_err(), "a count mismatch is corruption");
    }
}
