//! Idempotent producer state of one partition: for every producer id, its
//! epoch and the sequence ranges and offsets of its last five batches, as
//! Kafka keeps them. A retried batch is recognised and answered with its
//! original offset instead of being written twice.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::{BatchHeader, ControlKind};
use super::checkpoint::write_atomic;
use crate::error::{Error, Result};

/// Batches remembered per producer (Kafka's `max.in.flight` ceiling for
/// idempotence is 5).
pub const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp: Kafka answers a duplicate with it as the
    /// log append time. -1 in snapshots written before it was kept.
    #[serde(default = "no_timestamp")]
    pub max_timestamp: i64,
}

fn no_timestamp() -> i64 {
    -1
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// The first offset of its open transaction in this partition: the
    /// last stable offset cannot pass it until a marker ends it.
    #[serde(default)]
    pub txn_first_offset: Option<i64>,
    /// The offset of the last transaction marker written for it.
    #[serde(default)]
    pub last_marker: Option<i64>,
}

/// An aborted transaction's span in this partition: a `read_committed`
/// consumer drops its records (Fetch answers these with the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
}

/// The verdict on an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written: answer with this batch's original offsets.
    Duplicate(BatchMeta),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32, got: i32 },
    /// INVALID_PRODUCER_EPOCH: an older epoch than the producer's latest.
    StaleEpoch { current: i16, got: i16 },
}

/// First and last sequence of a batch; sequences wrap from i32::MAX to 0.
fn sequence_range(h: &BatchHeader) -> (i32, i32) {
    let first = h.base_sequence;
    let count = h.last_offset_delta;
    let last = if first > i32::MAX - count {
        count - (i32::MAX - first) - 1
    } else {
        first + count
    };
    (first, last)
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    /// State as of this offset: batches below it are included.
    end_offset: i64,
    producers: BTreeMap<i64, ProducerEntry>,
    #[serde(default)]
    aborted: Vec<AbortedTxn>,
}

#[derive(Debug)]
pub struct ProducerStateManager {
    path: PathBuf,
    producers: BTreeMap<i64, ProducerEntry>,
    /// Aborted transactions in offset order of their markers.
    aborted: Vec<AbortedTxn>,
    /// The log offset up to which `producers` reflects the log.
    end_offset: i64,
    dirty: bool,
}

impl ProducerStateManager {
    pub const FILE: &'static str = "producer-state.json";

    /// Loads the snapshot, if any, valid for a log ending at `log_end`.
    /// Returns the manager and the offset from which the log must be
    /// replayed to bring it up to date.
    pub fn load(dir: &Path, log_start: i64, log_end: i64) -> Result<(Self, i64)> {
        let path = dir.join(Self::FILE);
        let snap: Option<Snapshot> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(path, e)),
        };
        let (producers, aborted, from) = match snap {
            // A snapshot past the log end (the log was truncated) or before
            // its start (segments deleted) cannot be trusted.
            Some(s) if s.end_offset <= log_end && s.end_offset >= log_start => {
                (s.producers, s.aborted, s.end_offset)
            }
            _ => (BTreeMap::new(), Vec::new(), log_start),
        };
        Ok((
            ProducerStateManager {
                path,
                producers,
                aborted,
                end_offset: from,
                dirty: false,
            },
            from,
        ))
    }

    /// Checks an idempotent batch (producer id >= 0) before it is written.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        let (first, last) = sequence_range(h);
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: first,
                }
            };
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences at 0.
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: first,
                }
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return SequenceCheck::Duplicate(*dup);
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if first == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder {
                expected,
                got: first,
            }
        }
    }

    /// Checks a transaction marker before it is written: a marker from an
    /// epoch older than the producer's latest is refused (a coordinator
    /// that lost its transaction to a newer producer instance).
    pub fn check_marker(&self, h: &BatchHeader) -> SequenceCheck {
        match self.producers.get(&h.producer_id) {
            Some(e) if h.producer_epoch < e.epoch => SequenceCheck::StaleEpoch {
                current: e.epoch,
                got: h.producer_epoch,
            },
            _ => SequenceCheck::Append,
        }
    }

    /// Records a written batch (as leader, or when replaying the log);
    /// `control` is the marker a control batch carries.
    pub fn record(&mut self, h: &BatchHeader, control: Option<ControlKind>) {
        if h.producer_id < 0 {
            self.end_offset = self.end_offset.max(h.last_offset() + 1);
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.is_control() {
            if let Some(kind) = control {
                if let Some(first) = entry.txn_first_offset.take() {
                    if kind == ControlKind::Abort {
                        self.aborted.push(AbortedTxn {
                            producer_id: h.producer_id,
                            first_offset: first,
                            last_offset: h.base_offset,
                        });
                    }
                }
                entry.last_marker = Some(h.base_offset);
            }
            self.end_offset = self.end_offset.max(h.last_offset() + 1);
            self.dirty = true;
            return;
        }
        if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
        }
        if h.base_sequence < 0 {
            self.end_offset = self.end_offset.max(h.last_offset() + 1);
            self.dirty = true;
            return;
        }
        let (first, last) = sequence_range(h);
        entry.batches.push_back(BatchMeta {
            first_seq: first,
            last_seq: last,
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        });
        while entry.batches.len() > REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        self.end_offset = self.end_offset.max(h.last_offset() + 1);
        self.dirty = true;
    }

    /// Forgets everything at or past `offset` (the log was truncated).
    /// Returns whether a producer lost every batch remembered of it: its
    /// older batches (below `offset`, but beyond the last five) are still
    /// in the log, and only a replay of the log finds where its sequence
    /// stands (see [`ProducerStateManager::reset`]).
    /// A truncation that removes a transaction marker also asks for the
    /// replay (the transaction it ended is open again).
    pub fn truncate_to(&mut self, offset: i64) -> bool {
        let mut emptied = false;
        for e in self.producers.values_mut() {
            let had = !e.batches.is_empty();
            e.batches.retain(|b| b.last_offset < offset);
            emptied |= had && e.batches.is_empty();
            emptied |= e.last_marker.is_some_and(|m| m >= offset);
            if e.txn_first_offset.is_some_and(|f| f >= offset) {
                e.txn_first_offset = None;
            }
        }
        self.producers.retain(|_, e| {
            !e.batches.is_empty() || e.txn_first_offset.is_some() || e.last_marker.is_some()
        });
        self.aborted.retain(|a| a.last_offset < offset);
        self.end_offset = self.end_offset.min(offset);
        self.dirty = true;
        emptied
    }

    /// Forgets every producer, to be rebuilt by recording the log's batches
    /// from `offset` (the log start) on.
    pub fn reset(&mut self, offset: i64) {
        self.producers.clear();
        self.aborted.clear();
        self.end_offset = offset;
        self.dirty = true;
    }

    /// Writes the snapshot if anything changed since the last one.
    pub fn snapshot(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let snap = Snapshot {
            end_offset: self.end_offset,
            producers: self.producers.clone(),
            aborted: self.aborted.clone(),
        };
        let bytes = serde_json::to_vec(&snap).map_err(|e| Error::Metadata(e.to_string()))?;
        write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// The first offset of the earliest open transaction, if any: the last
    /// stable offset is at most this.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.txn_first_offset)
            .min()
    }

    /// Aborted transactions with records in `[from, upper)`, as Fetch
    /// answers them: `(producer id, first offset)`.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < upper)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Every aborted transaction still in the log.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets aborted transactions wholly below the log start.
    pub fn prune_aborted(&mut self, log_start: i64) {
        let before = self.aborted.len();
        self.aborted.retain(|a| a.last_offset >= log_start);
        self.dirty |= self.aborted.len() != before;
    }

    /// The open transactions: `(producer id, epoch, first offset)`.
    pub fn open_transactions(&self) -> Vec<(i64, i16, i64)> {
        self.producers
            .iter()
            .filter_map(|(id, e)| e.txn_first_offset.map(|f| (*id, e.epoch, f)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            size: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn duplicates_and_gaps_are_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, from) = ProducerStateManager::load(dir.path(), 0, 0).expect("load");
        assert_eq!(from, 0);
        let b0 = header(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0), SequenceCheck::Append);
        s.record(&b0, None);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1), SequenceCheck::Append);
        s.record(&b1, None);
        // The same batch again: answered with its first offsets.
        assert!(
            matches!(s.check(&header(7, 0, 0, 3, 99)), SequenceCheck::Duplicate(m) if m.first_offset == 0)
        );
        assert!(
            matches!(s.check(&header(7, 0, 3, 2, 99)), SequenceCheck::Duplicate(m) if m.first_offset == 3)
        );
        assert_eq!(
            s.check(&header(7, 0, 9, 1, 5)),
            SequenceCheck::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
        assert_eq!(
            s.check(&header(8, 0, 4, 1, 5)),
            SequenceCheck::OutOfOrder {
                expected: 0,
                got: 4
            }
        );
        // A bumped epoch restarts at 0; the old epoch is then stale.
        s.record(&header(7, 1, 0, 1, 5), None);
        assert_eq!(
            s.check(&header(7, 0, 5, 1, 6)),
            SequenceCheck::StaleEpoch { current: 1, got: 0 }
        );
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = ProducerStateManager::load(dir.path(), 0, 0).expect("load");
        let txn = |pid, seq, base| {
            let mut h = header(pid, 0, seq, 2, base);
            h.attributes = 0x10;
            h
        };
        let marker = |pid, base| {
            let mut h = header(pid, 0, -1, 1, base);
            h.attributes = 0x30;
            h
        };
        s.record(&txn(1, 0, 0), None); // 0-1
        s.record(&txn(2, 0, 2), None); // 2-3
        assert_eq!(s.first_unstable_offset(), Some(0));
        s.record(&marker(1, 4), Some(ControlKind::Commit));
        assert_eq!(s.first_unstable_offset(), Some(2));
        s.record(&marker(2, 5), Some(ControlKind::Abort));
        assert_eq!(s.first_unstable_offset(), None);
        assert_eq!(s.aborted_between(0, 6), vec![(2, 2)]);
        assert_eq!(s.aborted_between(6, 9), vec![]);
        s.snapshot().expect("snapshot");
        let (s2, from) = ProducerStateManager::load(dir.path(), 0, 6).expect("reload");
        assert_eq!((from, s2.aborted_between(0, 6)), (6, vec![(2, 2)]));
        // Cutting the abort marker off opens its transaction again: only a
        // replay of the log can say from where, so one is asked for.
        let mut s3 = s2;
        assert!(s3.truncate_to(5));
        assert!(s3.aborted_between(0, 6).is_empty());
        s3.prune_aborted(10);
    }

    #[test]
    fn snapshot_round_trip_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = ProducerStateManager::load(dir.path(), 0, 0).expect("load");
        for i in 0..7 {
            s.record(&header(1, 0, i * 2, 2, i64::from(i) * 2), None);
        }
        s.snapshot().expect("snapshot");
        let (s2, from) = ProducerStateManager::load(dir.path(), 0, 14).expect("reload");
        assert_eq!(from, 14);
        assert!(matches!(
            s2.check(&header(1, 0, 12, 2, 0)),
            SequenceCheck::Duplicate(_)
        ));
        // Only the last five batches are remembered.
        assert_eq!(
            s2.check(&header(1, 0, 0, 2, 0)),
            SequenceCheck::OutOfOrder {
                expected: 14,
                got: 0
            }
        );
        // A log shorter than the snapshot: the snapshot is ignored.
        let (_, from) = ProducerStateManager::load(dir.path(), 0, 10).expect("reload short");
        assert_eq!(from, 0);
        let mut s3 = s2;
        s3.truncate_to(10);
        assert_eq!(s3.check(&header(1, 0, 10, 2, 10)), SequenceCheck::Append);
    }
}
