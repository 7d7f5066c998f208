//! A partition's log: an ordered set of segments with one active segment at
//! the end, plus the leader-epoch cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, ControlKind};
use super::checkpoint::{self, LeaderEpochCache};
use super::producer_state::{AbortedTxn, ProducerStateManager, SequenceCheck};
use super::segment::{LogSegment, RecoveryOutcome, SegmentReader};
use crate::error::{Error, IoContext, Result};

/// Effective per-partition log settings (topic overrides over broker
/// defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: i32,
    pub min_insync_replicas: i32,
    /// `cleanup.policy` includes `delete`: retention applies.
    pub delete: bool,
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest
    /// record per key.
    pub compact: bool,
    /// `min.cleanable.dirty.ratio`, in thousandths.
    pub min_cleanable_dirty_permille: u32,
    /// `delete.retention.ms`: how long tombstones survive cleaning.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `compression.type`: the codec the leader stores batches in (the
    /// codec id of the batch attributes); `None` (`producer`): as the
    /// producer compressed them.
    pub compression: Option<i16>,
    /// The level of that codec (`compression.gzip.level`,
    /// `compression.lz4.level`, `compression.zstd.level`, KIP-390); `None`
    /// for the codec's default.
    pub compression_level: Option<i32>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
            min_insync_replicas: 1,
            delete: true,
            compact: false,
            min_cleanable_dirty_permille: 500,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            compression: None,
            compression_level: None,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// The batch was a producer's retry of one already in the log; the
    /// offsets are the original ones and nothing was written.
    pub duplicate: bool,
    /// What the Produce answer gives as the log append time: -1, except
    /// for a duplicate, which Kafka answers with the original batch's max
    /// timestamp.
    pub log_append_time: i64,
}

/// Bytes read for a fetch, whole batches only (except that the first batch
/// is returned whole even when larger than the limit).
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
}

/// What to read, found under the log's lock; the I/O happens without it.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    reader: SegmentReader,
    position: u64,
    first_batch_size: usize,
}

impl ReadPlan {
    pub fn first_batch_size(&self) -> usize {
        self.first_batch_size
    }

    /// Bytes readable from the plan's position.
    pub fn available(&self) -> usize {
        self.reader.end.saturating_sub(self.position) as usize
    }

    /// Performs the read: at least the first batch, then whole batches up
    /// to `max_bytes`.
    pub fn execute(&self, max_bytes: usize) -> Result<FetchData> {
        let want = max_bytes.max(self.first_batch_size);
        let buf = self.reader.read(self.position, want)?;
        let keep = batch::whole_batches_len(&buf);
        Ok(FetchData {
            records: buf.slice(..keep),
        })
    }
}

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, LogSegment>,
    log_start_offset: i64,
    leader_epochs: LeaderEpochCache,
    unflushed_messages: i64,
    oldest_unflushed_ms: Option<i64>,
    recovery_point: i64,
    producers: ProducerStateManager,
}

/// Name of the per-partition file holding the cleaner's progress.
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// A non-active segment, as the cleaner sees it.
#[derive(Debug, Clone)]
pub struct CleanableSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub reader: SegmentReader,
}

/// A consistent view of a log for the cleaner, taken under the lock.
#[derive(Debug, Clone)]
pub struct CleaningView {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub first_dirty: i64,
    /// When a tombstone kept by an earlier pass may be removed.
    pub tombstones_due_ms: Option<i64>,
    pub segments: Vec<CleanableSegment>,
    /// The aborted transactions: their records are removed, never taken
    /// as a key's latest value.
    pub aborted: Vec<AbortedTxn>,
    /// The first offset of the earliest open transaction: the cleaner
    /// stops before it (the transaction's outcome is not known yet).
    pub first_unstable: Option<i64>,
}

/// What opening a log found.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenReport {
    pub segments: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: u64,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. Segments from `recovery_point`
    /// on are checked batch by batch, and a torn or corrupt tail is cut.
    ///
    /// After a clean shutdown (`clean`), everything is flushed and the
    /// indexes are trusted unless they fail their sanity check.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
        clean: bool,
        now_ms: i64,
    ) -> Result<(Self, OpenReport)> {
        Self::open_with_start(dir, config, recovery_point, clean, now_ms, 0)
    }

    /// Like [`open`](Self::open), with the log start offset last
    /// checkpointed (DeleteRecords may have moved it into a segment).
    pub fn open_with_start(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
        clean: bool,
        now_ms: i64,
        log_start_hint: i64,
    ) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir).at(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            } else if name.ends_with(".tmp") || name.ends_with(".deleted") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        let interval = config.index_interval_bytes as u64;
        let mut report = OpenReport::default();
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            // A segment may hold unflushed offsets if the next one starts
            // past the recovery point.
            let recover = !clean && bases.get(i + 1).is_none_or(|next| *next > recovery_point);
            let (seg, outcome): (LogSegment, RecoveryOutcome) =
                LogSegment::open(dir, base, interval, recover, now_ms)?;
            if recover {
                report.recovered_segments += 1;
            }
            report.truncated_bytes += outcome.truncated_bytes;
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, LogSegment::create(dir, 0, interval, now_ms)?);
        }
        report.segments = segments.len();
        let log_end_hint = segments
            .values()
            .next_back()
            .map_or(0, LogSegment::next_offset);
        let log_start_offset = segments
            .keys()
            .next()
            .copied()
            .unwrap_or(0)
            .max(log_start_hint.min(log_end_hint));
        let mut leader_epochs = LeaderEpochCache::open(dir)?;
        let log_end = segments
            .values()
            .next_back()
            .map_or(0, LogSegment::next_offset);
        let (producers, replay_from) = ProducerStateManager::load(dir, log_start_offset, log_end)?;
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            leader_epochs: LeaderEpochCache::open(dir)?,
            unflushed_messages: 0,
            oldest_unflushed_ms: None,
            recovery_point: 0,
            producers,
        };
        // Bring producer state up to the log end from its snapshot.
        let mut replayed = Vec::new();
        log.scan_headers(replay_from, |h, c| replayed.push((*h, c)))?;
        for (h, c) in &replayed {
            log.producers.record(h, *c);
        }
        // Epochs that start past the recovered end no longer describe the log.
        leader_epochs.truncate_from_end(log.log_end_offset() + 1)?;
        log.leader_epochs = leader_epochs;
        log.recovery_point = log.log_end_offset();
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    fn active(&self) -> &LogSegment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(LogSegment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epochs.latest_epoch()
    }

    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.leader_epochs
    }

    /// Records that `epoch` starts at `offset` (a new leader's epoch).
    pub fn assign_leader_epoch(&mut self, epoch: i32, offset: i64) -> Result<()> {
        self.leader_epochs.assign(epoch, offset)
    }

    /// Calls `f` with the header of every batch holding offsets at or after
    /// `from`, in order, and the marker of each control batch.
    fn scan_headers(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, Option<ControlKind>),
    ) -> Result<()> {
        for seg in self.segments.values() {
            if seg.next_offset() <= from {
                continue;
            }
            let reader = seg.reader();
            let mut pos = match seg.find(from)? {
                Some((p, _)) => p,
                None => continue,
            };
            while let Some(h) = reader.header_at(pos)? {
                if pos + h.size as u64 > reader.end {
                    break;
                }
                let control = if h.is_control() {
                    batch::control_kind(&reader.read(pos, h.size)?)
                } else {
                    None
                };
                f(&h, control);
                pos += h.size as u64;
            }
        }
        Ok(())
    }

    /// Appends validated producer batches as leader: checks idempotent
    /// producers' sequences, assigns offsets and the leader epoch, rolls the
    /// segment when due, and fsyncs when the flush policy says so. A retried
    /// batch is answered with its original offsets and not written again.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        headers: &[BatchHeader],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        if let Some(h) = headers.iter().find(|h| h.producer_id >= 0) {
            if headers.len() != 1 {
                return Err(Error::MultipleIdempotentBatches);
            }
            // Markers and a coordinator's transactional offset commits
            // carry no sequence: only their epoch is checked.
            let verdict = if h.is_control() || h.base_sequence < 0 {
                self.producers.check_marker(h)
            } else {
                self.producers.check(h)
            };
            match verdict {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(meta) => {
                    return Ok(AppendInfo {
                        base_offset: meta.first_offset,
                        last_offset: meta.last_offset,
                        log_start_offset: self.log_start_offset,
                        duplicate: true,
                        log_append_time: meta.max_timestamp,
                    });
                }
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(Error::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        expected,
                        got,
                    });
                }
                SequenceCheck::StaleEpoch { current, got } => {
                    return Err(Error::InvalidProducerEpoch {
                        producer_id: h.producer_id,
                        current,
                        got,
                    });
                }
            }
        }
        self.maybe_roll(records.len() as u64, now_ms)?;
        let base_offset = self.log_end_offset();
        let mut buf = BytesMut::from(records);
        let mut next = base_offset;
        let mut pos = 0;
        let mut assigned = Vec::with_capacity(headers.len());
        let mut messages = 0i64;
        for h in headers {
            batch::assign(&mut buf[pos..pos + h.size], next, leader_epoch);
            let mut h = *h;
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            next = h.last_offset() + 1;
            pos += h.size;
            messages += i64::from(h.records_count);
            assigned.push(h);
        }
        self.leader_epochs.assign(leader_epoch, base_offset)?;
        self.active_mut().append(&buf, &assigned)?;
        record_producers(&mut self.producers, &buf, &assigned);
        self.unflushed_messages += messages;
        self.oldest_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_start_offset: self.log_start_offset,
            duplicate: false,
            log_append_time: -1,
        })
    }

    /// Appends batches fetched from the leader as they are: offsets, leader
    /// epochs and bytes unchanged (their CRCs were checked by the caller).
    /// The leader-epoch cache and producer state follow them, so that this
    /// replica can lead with the same view. The first batch must start at
    /// this log's end, and the batches must be contiguous.
    pub fn append_replicated(
        &mut self,
        records: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<()> {
        let mut next = self.log_end_offset();
        for h in headers {
            if h.base_offset != next {
                return Err(Error::ReplicaOffsetGap {
                    expected: next,
                    got: h.base_offset,
                });
            }
            next = h.last_offset() + 1;
        }
        if headers.is_empty() {
            return Ok(());
        }
        self.maybe_roll(records.len() as u64, now_ms)?;
        for h in headers {
            if self.leader_epochs.latest_epoch() != Some(h.partition_leader_epoch) {
                self.leader_epochs
                    .assign(h.partition_leader_epoch, h.base_offset)?;
            }
        }
        self.active_mut().append(records, headers)?;
        record_producers(&mut self.producers, records, headers);
        let mut messages = 0i64;
        for h in headers {
            messages += i64::from(h.records_count);
        }
        self.unflushed_messages += messages;
        self.oldest_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let active = self.active();
        let too_big = active.size() + incoming > self.config.segment_bytes as u64;
        let too_old = now_ms - active.created_ms() >= self.config.segment_ms;
        if active.is_empty() || !(too_big || too_old) {
            return Ok(());
        }
        self.roll(now_ms)
    }

    /// Starts a new active segment at the log end offset. The old one is
    /// fsynced first so the recovery point can move past it.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        let base = self.log_end_offset();
        self.active().flush()?;
        self.recovery_point = base;
        let seg = LogSegment::create(
            &self.dir,
            base,
            self.config.index_interval_bytes as u64,
            now_ms,
        )?;
        self.segments.insert(base, seg);
        checkpoint::sync_dir(&self.dir)
    }

    /// fsyncs the active segment if `flush.ms` has passed since the oldest
    /// unflushed write.
    pub fn maybe_flush_by_time(&mut self, now_ms: i64) -> Result<()> {
        if let Some(t) = self.oldest_unflushed_ms {
            if now_ms.saturating_sub(t) >= self.config.flush_ms {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// What the cleaner may clean: every segment but the active one.
    pub fn cleaning_view(&self) -> CleaningView {
        let active = self.active().base_offset();
        let (cleaned_to, tombstones_due_ms) = self.cleaner_point();
        CleaningView {
            dir: self.dir.clone(),
            config: self.config.clone(),
            first_dirty: cleaned_to.max(self.log_start_offset),
            tombstones_due_ms,
            segments: self
                .segments
                .values()
                .filter(|s| s.base_offset() != active)
                .map(|s| CleanableSegment {
                    base_offset: s.base_offset(),
                    next_offset: s.next_offset(),
                    size: s.size(),
                    max_timestamp: s.max_timestamp(),
                    reader: s.reader(),
                })
                .collect(),
            aborted: self.producers.aborted().to_vec(),
            first_unstable: self.producers.first_unstable_offset(),
        }
    }

    /// The first offset the cleaner has not yet seen, and when the oldest
    /// tombstone it kept becomes removable (if any).
    pub fn cleaner_point(&self) -> (i64, Option<i64>) {
        let text = std::fs::read_to_string(self.dir.join(CLEANER_CHECKPOINT)).unwrap_or_default();
        let mut parts = text.split_whitespace();
        let offset = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let due = parts.next().and_then(|v| v.parse().ok());
        (offset, due)
    }

    pub fn set_cleaner_point(&mut self, offset: i64, tombstones_due_ms: Option<i64>) -> Result<()> {
        let text = match tombstones_due_ms {
            Some(t) => format!("{offset} {t}\n"),
            None => format!("{offset}\n"),
        };
        checkpoint::write_atomic(&self.dir.join(CLEANER_CHECKPOINT), text.as_bytes())
    }

    /// Replaces segment `base` (if it is still `expected_size` bytes: no
    /// retention or truncation raced the cleaner) with the cleaned files
    /// in `cleaned_dir`. Readers holding the old file keep reading it.
    pub fn replace_segment(
        &mut self,
        base: i64,
        expected_size: u64,
        cleaned_dir: &Path,
    ) -> Result<bool> {
        let Some(old) = self.segments.get(&base) else {
            return Ok(false);
        };
        if old.size() != expected_size || old.base_offset() == self.active().base_offset() {
            return Ok(false);
        }
        let (log, idx, tidx) = LogSegment::paths(&self.dir, base);
        let (new_log, new_idx, new_tidx) = LogSegment::paths(cleaned_dir, base);
        // Old indexes go first: a crash part-way leaves a segment without
        // indexes, which the next start rebuilds, never indexes that
        // describe another file.
        for p in [&idx, &tidx] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        std::fs::rename(&new_log, &log).at(&log)?;
        std::fs::rename(&new_idx, &idx).at(&idx)?;
        std::fs::rename(&new_tidx, &tidx).at(&tidx)?;
        checkpoint::sync_dir(&self.dir)?;
        let (seg, _) = LogSegment::open(
            &self.dir,
            base,
            self.config.index_interval_bytes as u64,
            false,
            now_ms(),
        )?;
        self.segments.insert(base, seg);
        Ok(true)
    }

    /// The first offset of the earliest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// Aborted transactions with records in `[from, upper)`:
    /// `(producer id, first offset)`.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.producers.aborted_between(from, upper)
    }

    /// The open transactions: `(producer id, epoch, first offset)`.
    pub fn open_transactions(&self) -> Vec<(i64, i16, i64)> {
        self.producers.open_transactions()
    }

    /// Writes the producer-state snapshot if it changed.
    pub fn snapshot_producers(&mut self) -> Result<()> {
        self.producers.snapshot()
    }

    pub fn flush(&mut self) -> Result<()> {
        self.active().flush()?;
        self.unflushed_messages = 0;
        self.oldest_unflushed_ms = None;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Plans a read of the batch holding `offset` and the ones after it, up
    /// to (not including) offset `upper` (the high watermark). Returns
    /// `Ok(None)` when there is nothing to read yet.
    pub fn plan_read(&self, offset: i64, upper: i64) -> Result<Option<ReadPlan>> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: end,
            });
        }
        if offset >= upper {
            return Ok(None);
        }
        // The segment holding `offset`, or (after compaction emptied or
        // thinned segments) the first later one with data.
        let floor = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut found = None;
        for seg in self.segments.range(floor..).map(|(_, s)| s) {
            if let Some(hit) = seg.find(offset)? {
                found = Some((seg, hit));
                break;
            }
        }
        let Some((seg, (position, header))) = found else {
            return Ok(None);
        };
        let mut reader = seg.reader();
        if upper < seg.next_offset() {
            if let Some((limit, _)) = seg.find(upper)? {
                reader.end = limit;
            }
        }
        if position >= reader.end {
            return Ok(None);
        }
        Ok(Some(ReadPlan {
            reader,
            position,
            first_batch_size: header.size,
        }))
    }

    /// The first batch whose largest timestamp is at least `timestamp`, as
    /// bytes, for ListOffsets by time.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        for seg in self.segments.values() {
            if let Some((pos, h)) = seg.find_by_timestamp(timestamp)? {
                return seg.reader().read(pos, h.size).map(Some);
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (ListOffsets MAX_TIMESTAMP), at batch granularity: the last offset of
    /// the batch that holds the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>> {
        let mut best: Option<(i64, &LogSegment)> = None;
        for seg in self.segments.values() {
            if seg.max_timestamp() >= 0 && best.is_none_or(|(t, _)| seg.max_timestamp() > t) {
                best = Some((seg.max_timestamp(), seg));
            }
        }
        let Some((ts, seg)) = best else {
            return Ok(None);
        };
        Ok(seg
            .find_by_timestamp(ts)?
            .map(|(_, h)| (ts, h.last_offset())))
    }

    /// Removes every record at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let interval = self.config.index_interval_bytes as u64;
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if base == offset && self.segments.len() == 1 {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete(&self.dir)?;
            }
        }
        if self.segments.is_empty() {
            let now = now_ms();
            self.segments.insert(
                offset,
                LogSegment::create(&self.dir, offset, interval, now)?,
            );
            self.log_start_offset = offset;
        } else {
            self.active_mut().truncate_to(offset)?;
        }
        let end = self.log_end_offset();
        self.leader_epochs.truncate_from_end(end)?;
        if self.producers.truncate_to(end) {
            // A producer whose remembered batches were all truncated has
            // older ones in the log: rebuilt from the log, as Kafka reloads
            // producer state after a truncation. Without it, this replica
            // would answer the producer's next batch OUT_OF_ORDER_SEQUENCE
            // once it leads (librdkafka then bumps the producer's epoch and
            // resends what may already be written).
            self.producers.reset(self.log_start_offset);
            let mut replayed = Vec::new();
            self.scan_headers(self.log_start_offset, |h, c| replayed.push((*h, c)))?;
            for (h, c) in &replayed {
                self.producers.record(h, *c);
            }
        }
        self.recovery_point = self.recovery_point.min(end);
        Ok(())
    }

    /// Deletes every record and starts the log afresh at `offset`: for a
    /// replica that left the partition's replica set, or a follower whose
    /// log ends before its leader's log start.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let interval = self.config.index_interval_bytes as u64;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete(&self.dir)?;
            }
        }
        self.segments.insert(
            offset,
            LogSegment::create(&self.dir, offset, interval, now_ms())?,
        );
        self.log_start_offset = offset;
        self.leader_epochs.truncate_from_end(0)?;
        self.producers.reset(offset);
        self.producers.snapshot()?;
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.oldest_unflushed_ms = None;
        Ok(())
    }

    /// DeleteRecords: makes `offset` the log start offset and deletes the
    /// segments wholly below it. `offset` must not pass `upper` (the high
    /// watermark). Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64, upper: i64) -> Result<i64> {
        if offset > upper || offset < 0 {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: upper,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        while self.segments.len() > 1 {
            let Some((&base, first)) = self.segments.iter().next() else {
                break;
            };
            if first.next_offset() > offset {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete(&self.dir)?;
            }
        }
        self.producers.prune_aborted(self.log_start_offset);
        Ok(self.log_start_offset)
    }

    /// Deletes whole segments past `retention.ms` (by their largest
    /// timestamp) or beyond `retention.bytes`; never the active segment.
    /// Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        if !self.config.delete {
            return Ok(0);
        }
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let Some((&base, oldest)) = self.segments.iter().next() else {
                break;
            };
            let expired_by_time = self.config.retention_ms >= 0
                && oldest.max_timestamp() >= 0
                && now_ms - oldest.max_timestamp() > self.config.retention_ms;
            let expired_by_size = self.config.retention_bytes >= 0
                && total - oldest.size() as i64 >= self.config.retention_bytes;
            if !(expired_by_time || expired_by_size) {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                total -= seg.size() as i64;
                seg.delete(&self.dir)?;
                deleted += 1;
            }
        }
        if let Some(first) = self.segments.keys().next() {
            self.log_start_offset = self.log_start_offset.max(*first);
        }
        self.producers.prune_aborted(self.log_start_offset);
        Ok(deleted)
    }
}

/// Records appended batches (laid out one after another in `bytes`) in the
/// producer state, with the marker of each control batch.
fn record_producers(producers: &mut ProducerStateManager, bytes: &[u8], headers: &[BatchHeader]) {
    let mut pos = 0;
    for h in headers {
        let control = if h.is_control() {
            bytes.get(pos..pos + h.size).and_then(batch::control_kind)
        } else {
            None
        };
        producers.record(h, control);
        pos += h.size;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_support::batch;
    use super::*;

    fn append(log: &mut PartitionLog, n: i32, ts: i64) -> AppendInfo {
        let b = batch(n, ts);
        let hs = batch::validate_produce(&b, 1 << 20).expect("valid");
        log.append_as_leader(&b, &hs, 0, ts).expect("append")
    }

    fn read_all(log: &PartitionLog, from: i64) -> Vec<BatchHeader> {
        read_raw(log, from).1
    }

    /// Every batch from `from`, as raw bytes with their headers.
    fn read_raw(log: &PartitionLog, from: i64) -> (Vec<u8>, Vec<BatchHeader>) {
        let mut bytes = Vec::new();
        let mut headers = Vec::new();
        let mut offset = from;
        while let Some(plan) = log.plan_read(offset, log.log_end_offset()).expect("plan") {
            let data = plan.execute(1 << 20).expect("read");
            let mut pos = 0;
            while pos < data.records.len() {
                let h = batch::validate_batch(&data.records[pos..]).expect("valid on read");
                bytes.extend_from_slice(&data.records[pos..pos + h.size]);
                pos += h.size;
                offset = h.last_offset() + 1;
                headers.push(h);
            }
        }
        (bytes, headers)
    }

    #[test]
    fn a_follower_log_is_the_leaders_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, _) =
            PartitionLog::open(&dir.path().join("l"), LogConfig::default(), 0, false, 0)
                .expect("open");
        let (mut follower, _) =
            PartitionLog::open(&dir.path().join("f"), LogConfig::default(), 0, false, 0)
                .expect("open");
        for (epoch, n) in [(0, 3), (0, 2), (4, 5), (7, 1)] {
            let b = batch(n, 100);
            let hs = batch::validate_produce(&b, 1 << 20).expect("valid");
            leader
                .append_as_leader(&b, &hs, epoch, 100)
                .expect("append");
        }
        // Replicated in two fetches.
        let (bytes, hs) = read_raw(&leader, 0);
        let cut = hs[0].size + hs[1].size;
        follower
            .append_replicated(&bytes[..cut], &hs[..2], 100)
            .expect("first fetch");
        // A gap or an overlap is refused and changes nothing.
        assert!(matches!(
            follower.append_replicated(&bytes[cut + hs[2].size..], &hs[3..], 100),
            Err(Error::ReplicaOffsetGap {
                expected: 5,
                got: 10
            })
        ));
        assert!(
            follower
                .append_replicated(&bytes[..hs[0].size], &hs[..1], 100)
                .is_err()
        );
        follower
            .append_replicated(&bytes[cut..], &hs[2..], 100)
            .expect("second fetch");
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(read_raw(&follower, 0).0, bytes, "same bytes");
        assert_eq!(
            follower.leader_epochs().entries(),
            leader.leader_epochs().entries()
        );
        assert_eq!(
            follower.leader_epochs().entries(),
            &[(0, 0), (4, 5), (7, 10)]
        );
        // Truncating to an epoch boundary keeps the cache in line.
        follower.truncate_to(5).expect("truncate");
        assert_eq!(follower.leader_epochs().entries(), &[(0, 0)]);
    }

    #[test]
    fn a_truncation_past_a_producers_last_five_batches_keeps_its_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) =
            PartitionLog::open(dir.path(), LogConfig::default(), 0, false, 0).expect("open");
        // Seven batches of one producer, two records each (sequences 0-13).
        let mut batches = Vec::new();
        for i in 0..7 {
            let mut b = batch(2, 10);
            batch::set_producer(&mut b, 7, 0, 2 * i);
            let hs = batch::validate_produce(&b, 1 << 20).expect("valid");
            log.append_as_leader(&b, &hs, 1, 100).expect("append");
            batches.push((b, hs));
        }
        // A follower's divergent tail: the last five batches go.
        log.truncate_to(4).expect("truncate");
        assert_eq!(log.log_end_offset(), 4);
        // Leading now, it takes the producer's next batch (sequence 4)...
        let (b, hs) = &batches[2];
        let next = log.append_as_leader(b, hs, 2, 200).expect("next batch");
        assert!(!next.duplicate);
        assert_eq!(next.base_offset, 4);
        // ...and knows a retry of a batch that stayed.
        let (b, hs) = &batches[1];
        let again = log.append_as_leader(b, hs, 2, 200).expect("retry");
        assert!(again.duplicate);
        assert_eq!((again.base_offset, again.last_offset), (2, 3));
    }

    #[test]
    fn a_follower_that_becomes_leader_knows_its_producers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, _) =
            PartitionLog::open(&dir.path().join("l"), LogConfig::default(), 0, false, 0)
                .expect("open");
        let (mut follower, _) =
            PartitionLog::open(&dir.path().join("f"), LogConfig::default(), 0, false, 0)
                .expect("open");
        let mut b = batch(4, 100);
        batch::set_producer(&mut b, 42, 0, 0);
        let hs = batch::validate_produce(&b, 1 << 20).expect("valid");
        leader.append_as_leader(&b, &hs, 1, 100).expect("append");
        let (bytes, headers) = read_raw(&leader, 0);
        follower
            .append_replicated(&bytes, &headers, 100)
            .expect("replicate");
        // The producer's retry reaches the new leader: recognised, not
        // written twice.
        let again = follower.append_as_leader(&b, &hs, 2, 200).expect("retry");
        assert!(again.duplicate);
        assert_eq!((again.base_offset, again.last_offset), (0, 3));
        assert_eq!(follower.log_end_offset(), 4);
    }

    #[test]
    fn append_assigns_offsets_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) =
            PartitionLog::open(dir.path(), LogConfig::default(), 0, false, 0).expect("open");
        assert_eq!(append(&mut log, 3, 10).base_offset, 0);
        assert_eq!(append(&mut log, 2, 20).base_offset, 3);
        assert_eq!(log.log_end_offset(), 5);
        let hs = read_all(&log, 0);
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![0, 3]
        );
        // A read from the middle of a batch starts at that batch.
        assert_eq!(read_all(&log, 4)[0].base_offset, 3);
        assert!(matches!(
            log.plan_read(6, 5),
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert!(log.plan_read(5, 5).expect("at end").is_none());
    }

    #[test]
    fn rolls_and_reopens_without_recovery_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone(), 0, false, 0).expect("open");
        for i in 0..50 {
            append(&mut log, 2, 1000 + i);
        }
        assert!(log.segment_count() > 5);
        let end = log.log_end_offset();
        let rp = log.recovery_point();
        drop(log);
        let (log, report) = PartitionLog::open(dir.path(), cfg, rp, false, 0).expect("reopen");
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log, 0).len(), 50);
        assert_eq!(read_all(&log, 57)[0].base_offset, 56);
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_valid_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) =
            PartitionLog::open(dir.path(), LogConfig::default(), 0, false, 0).expect("open");
        for _ in 0..10 {
            append(&mut log, 3, 5);
        }
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let len = std::fs::metadata(&path).expect("meta").len();
        // Garble the last batch and add junk, as a torn write would.
        let mut bytes = std::fs::read(&path).expect("read");
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).expect("write");
        let (log, report) =
            PartitionLog::open(dir.path(), LogConfig::default(), 0, false, 0).expect("reopen");
        assert_eq!(
            log.log_end_offset(),
            27,
            "nine whole batches of three survive"
        );
        assert!(report.truncated_bytes > 3);
        assert!(std::fs::metadata(&path).expect("meta").len() < len);
        assert_eq!(read_all(&log, 0).len(), 9);
    }

    #[test]
    fn truncate_and_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes: 200,
            retention_bytes: 400,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), cfg, 0, false, 0).expect("open");
        for i in 0..20 {
            append(&mut log, 1, 100 + i);
        }
        log.truncate_to(15).expect("truncate");
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(append(&mut log, 1, 1).base_offset, 15);
        let deleted = log.apply_retention(1_000).expect("retention");
        assert!(deleted > 0);
        assert!(log.size_bytes() <= 400 + 200);
        assert!(log.log_start_offset() > 0);
        assert!(matches!(
            log.plan_read(0, 16),
            Err(Error::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn timestamps_find_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) =
            PartitionLog::open(dir.path(), LogConfig::default(), 0, false, 0).expect("open");
        append(&mut log, 2, 100);
        append(&mut log, 2, 200);
        append(&mut log, 2, 300);
        let b = log
            .batch_for_timestamp(150)
            .expect("lookup")
            .expect("found");
        assert_eq!(BatchHeader::parse(&b).expect("h").base_offset, 2);
        assert!(log.batch_for_timestamp(301).expect("lookup").is_none());
        assert_eq!(log.max_timestamp_offset().expect("max"), Some((300, 5)));
    }
}
