//! Log compaction (`cleanup.policy=compact`): keeps the latest record of
//! every key, drops tombstones older than `delete.retention.ms`, and keeps
//! offsets (gaps are allowed).
//!
//! A pass works like Kafka's cleaner: build a map of key -> latest offset
//! over the dirty part of the log (bounded in entries), then rewrite every
//! non-active segment up to where the map reaches, dropping superseded
//! records. Segments are read and written without the partition's lock;
//! the lock is taken only to look and to swap a finished segment in, so
//! produce and fetch are never blocked by cleaning.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::Record;
use parking_lot::Mutex;

use super::batch::{self, BatchHeader};
use super::log::{CleanableSegment, PartitionLog};
use super::records::{self, decode_all};
use super::segment::{LogSegment, SegmentReader};
use crate::error::{Error, IoContext, Result};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub segments: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    pub records_after: u64,
    /// Offsets below this have been cleaned.
    pub cleaned_up_to: i64,
}

/// Paces the cleaner's reads and writes to a byte rate
/// (`log.cleaner.io.max.bytes.per.second`), so a big pass cannot starve
/// clients of disk bandwidth.
#[derive(Debug)]
pub struct Throttle {
    rate: Option<u64>,
    started: std::time::Instant,
    bytes: u64,
}

impl Throttle {
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        Throttle {
            rate: bytes_per_second.filter(|r| *r > 0),
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, n: usize) {
        let Some(rate) = self.rate else { return };
        self.bytes += n as u64;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// A 128-bit key digest (two SipHash passes): the map holds digests, not
/// keys, so its memory does not depend on key sizes.
fn digest(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Calls `f` for every whole batch of a segment, in order.
fn for_each_batch(
    reader: &SegmentReader,
    mut f: impl FnMut(&BatchHeader, Bytes) -> Result<bool>,
) -> Result<()> {
    let mut pos = 0u64;
    while pos < reader.end {
        let mut buf = reader.read(pos, 1 << 20)?;
        let mut whole = batch::whole_batches_len(&buf);
        if whole == 0 {
            // One batch larger than the chunk: read exactly it.
            let Ok(h) = BatchHeader::parse(&buf) else {
                break;
            };
            buf = reader.read(pos, h.size)?;
            whole = batch::whole_batches_len(&buf);
            if whole == 0 {
                break;
            }
        }
        let mut at = 0;
        while at < whole {
            let h = BatchHeader::parse(&buf[at..]).map_err(|e| Error::Corrupt {
                path: reader.path.clone(),
                reason: e.to_string(),
            })?;
            if !f(&h, buf.slice(at..at + h.size))? {
                return Ok(());
            }
            at += h.size;
        }
        pos += whole as u64;
    }
    Ok(())
}

/// Re-encodes the kept records of one batch, with their original offsets,
/// timestamps, producer fields and codec.
fn reencode(h: &BatchHeader, kept: &[Record]) -> Result<Bytes> {
    records::encode_batch(h, kept, records::codec(h.compression()))
        .map_err(|e| Error::Protocol(format!("re-encoding a cleaned batch: {e}")))
}

fn decode(h: &BatchHeader, bytes: Bytes, path: &Path) -> Result<Vec<Record>> {
    decode_all(bytes).map_err(|reason| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("batch at offset {}: {reason}", h.base_offset),
    })
}

/// Runs one cleaning pass on a compacted log if its dirty ratio calls for
/// it. `max_keys` bounds the key map. Returns `None` when there was nothing
/// to do.
pub fn clean(
    log: &Mutex<PartitionLog>,
    now_ms: i64,
    max_keys: usize,
    throttle: &mut Throttle,
) -> Result<Option<CleanStats>> {
    let view = log.lock().cleaning_view();
    let cfg = &view.config;
    if !cfg.compact {
        return Ok(None);
    }
    // Segments with records younger than min.compaction.lag.ms wait.
    let lag_cut = now_ms.saturating_sub(cfg.min_compaction_lag_ms);
    let cleanable: Vec<&CleanableSegment> = view
        .segments
        .iter()
        .take_while(|s| cfg.min_compaction_lag_ms == 0 || s.max_timestamp <= lag_cut)
        .collect();
    let total: u64 = cleanable.iter().map(|s| s.size).sum();
    let dirty: u64 = cleanable
        .iter()
        .filter(|s| s.next_offset > view.first_dirty)
        .map(|s| s.size)
        .sum();
    let dirty_enough =
        dirty > 0 && dirty * 1000 >= total * u64::from(cfg.min_cleanable_dirty_permille);
    // Kept tombstones that have aged past delete.retention.ms are reason
    // enough for a pass (as KIP-534's delete horizon), even with no new data.
    let tombstones_due = view.tombstones_due_ms.is_some_and(|t| now_ms >= t);
    if !dirty_enough && !tombstones_due {
        return Ok(None);
    }

    // Transactions (as Kafka's cleaner): markers stay, aborted records go
    // and never count as a key's latest, and nothing from the first open
    // transaction on is cleaned.
    let aborted = |r: &Record| {
        r.transactional
            && !r.control
            && view.aborted.iter().any(|a| {
                a.producer_id == r.producer_id
                    && a.first_offset <= r.offset
                    && r.offset < a.last_offset
            })
    };
    let stable_end = view.first_unstable.unwrap_or(i64::MAX);

    // 1. The latest offset of every key in the dirty part, up to max_keys.
    let mut latest: HashMap<u128, i64> = HashMap::new();
    let mut dirty_end = view.first_dirty;
    let mut full = false;
    for seg in cleanable
        .iter()
        .filter(|s| s.next_offset > view.first_dirty)
    {
        for_each_batch(&seg.reader, |h, bytes| {
            if h.last_offset() < view.first_dirty {
                return Ok(true);
            }
            if h.last_offset() >= stable_end {
                full = true;
                return Ok(false);
            }
            throttle.account(bytes.len());
            let records: Vec<Record> = decode(h, bytes, &seg.reader.path)?
                .into_iter()
                .filter(|r| !r.control && !aborted(r))
                .collect();
            let new_keys = records
                .iter()
                .filter_map(|r| r.key.as_ref())
                .filter(|k| !latest.contains_key(&digest(k)))
                .count();
            if latest.len() + new_keys > max_keys {
                full = true;
                return Ok(false);
            }
            for r in &records {
                if let Some(k) = &r.key {
                    latest.insert(digest(k), r.offset);
                }
            }
            dirty_end = h.last_offset() + 1;
            Ok(true)
        })?;
        if full {
            break;
        }
    }
    if dirty_end <= view.first_dirty && !tombstones_due {
        return Ok(None);
    }

    // 2. Rewrite every cleanable segment that starts below dirty_end.
    let tombstone_cut = now_ms.saturating_sub(cfg.delete_retention_ms);
    let keep = |r: &Record| -> bool {
        if r.offset >= dirty_end || r.control {
            return true;
        }
        if aborted(r) {
            return false;
        }
        let Some(k) = &r.key else { return true };
        if latest.get(&digest(k)).is_some_and(|l| *l > r.offset) {
            return false; // superseded
        }
        // The latest record of its key: a tombstone goes once it is older
        // than delete.retention.ms.
        !(r.value.is_none() && r.timestamp < tombstone_cut)
    };
    let next_due = std::cell::Cell::new(None::<i64>);
    let keep = |r: &Record| -> bool {
        let kept = keep(r);
        if kept && r.value.is_none() && r.key.is_some() && r.offset < dirty_end {
            let due = r.timestamp.saturating_add(cfg.delete_retention_ms);
            next_due.set(Some(next_due.get().map_or(due, |d: i64| d.min(due))));
        }
        kept
    };
    let tmp = view.dir.join(".cleaner");
    let mut stats = CleanStats::default();
    let rewrite_below = dirty_end.max(if tombstones_due { view.first_dirty } else { 0 });
    for seg in cleanable.iter().filter(|s| s.base_offset < rewrite_below) {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).at(&tmp)?;
        let mut out = LogSegment::create(
            &tmp,
            seg.base_offset,
            cfg.index_interval_bytes as u64,
            now_ms,
        )?;
        let (mut before, mut after) = (0u64, 0u64);
        for_each_batch(&seg.reader, |h, bytes| {
            throttle.account(bytes.len());
            let records = decode(h, bytes.clone(), &seg.reader.path)?;
            before += records.len() as u64;
            let kept: Vec<Record> = records.into_iter().filter(|r| keep(r)).collect();
            after += kept.len() as u64;
            if kept.is_empty() {
                return Ok(true);
            }
            let rewritten = if kept.len() as i64 == i64::from(h.records_count) {
                bytes // unchanged: keep the producer's bytes as they were
            } else {
                reencode(h, &kept)?
            };
            let nh =
                batch::validate_batch(&rewritten).map_err(|e| Error::Protocol(e.to_string()))?;
            out.append(&rewritten, &[nh])?;
            Ok(true)
        })?;
        out.flush()?;
        let new_size = out.size();
        drop(out);
        if !log
            .lock()
            .replace_segment(seg.base_offset, seg.size, &tmp)?
        {
            // Retention or a truncation got there first: stop this pass.
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(Some(stats));
        }
        stats.segments += 1;
        stats.bytes_before += seg.size;
        stats.bytes_after += new_size;
        stats.records_before += before;
        stats.records_after += after;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let dirty_end = dirty_end.max(view.first_dirty);
    log.lock().set_cleaner_point(dirty_end, next_due.get())?;
    stats.cleaned_up_to = dirty_end;
    Ok(Some(stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LogConfig;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn rec(key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: ts,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    fn produce(log: &Mutex<PartitionLog>, r: Record) {
        let mut b = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut b,
            [&r],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Lz4,
            },
        )
        .expect("encode");
        batch::set_producer(&mut b, -1, -1, -1);
        let hs = batch::validate_produce(&b, 1 << 20).expect("valid");
        log.lock()
            .append_as_leader(&b, &hs, 0, r.timestamp)
            .expect("append");
    }

    fn read_all(log: &Mutex<PartitionLog>) -> Vec<(i64, String, Option<String>)> {
        let l = log.lock();
        let mut out = Vec::new();
        let mut offset = l.log_start_offset();
        while let Some(plan) = l.plan_read(offset, l.log_end_offset()).expect("plan") {
            let data = plan.execute(1 << 20).expect("read");
            let recs = decode_all(data.records).expect("decode");
            let Some(last) = recs.last().map(|r| r.offset) else {
                break;
            };
            for r in recs {
                out.push((
                    r.offset,
                    String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned(),
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
            }
            offset = last + 1;
        }
        out
    }

    #[test]
    fn keeps_latest_per_key_and_expires_tombstones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes: 300,
            compact: true,
            delete: false,
            delete_retention_ms: 1000,
            ..LogConfig::default()
        };
        let (l, _) = PartitionLog::open(dir.path(), cfg, 0, false, 0).expect("open");
        let log = Mutex::new(l);
        // Three versions of keys a..e, then a tombstone for `b`.
        for round in 0..3 {
            for k in ["a", "b", "c", "d", "e"] {
                produce(&log, rec(k, Some(&format!("{k}{round}")), 100));
            }
        }
        produce(&log, rec("b", None, 100));
        // Push the tombstone out of the active segment.
        for i in 0..4 {
            produce(&log, rec("z", Some(&format!("z{i}")), 100));
        }
        let end = log.lock().log_end_offset();
        let before = read_all(&log).len();
        // Tombstones are young (now = 500 < 100 + 1000): kept this time.
        let stats = clean(&log, 500, 1000, &mut Throttle::new(None))
            .expect("clean")
            .expect("dirty enough");
        assert!(stats.records_after < stats.records_before);
        let after = read_all(&log);
        assert!(after.len() < before);
        assert_eq!(log.lock().log_end_offset(), end, "offsets are preserved");
        let latest: Vec<_> = after.iter().filter(|(_, k, _)| k != "z").collect();
        assert!(
            latest.iter().any(|(_, k, v)| k == "b" && v.is_none()),
            "young tombstone kept: {after:?}"
        );
        for k in ["a", "c", "d", "e"] {
            let vs: Vec<_> = latest.iter().filter(|(_, kk, _)| kk == k).collect();
            assert_eq!(vs.len(), 1, "{k}: {after:?}");
            assert_eq!(vs[0].2.as_deref(), Some(format!("{k}2").as_str()));
        }
        // Offsets still increase.
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0));

        // More writes make it dirty again; now the tombstone is old.
        for i in 0..20 {
            produce(&log, rec("y", Some(&format!("y{i}")), 100));
        }
        log.lock().set_cleaner_point(0, None).expect("reset");
        clean(&log, 5_000, 1000, &mut Throttle::new(None))
            .expect("clean")
            .expect("dirty");
        let after = read_all(&log);
        assert!(
            !after.iter().any(|(_, k, _)| k == "b"),
            "old tombstone removed: {after:?}"
        );
        // The result survives a reopen (indexes and recovery agree).
        let cfg2 = log.lock().config().clone();
        drop(log);
        let (l, report) = PartitionLog::open(dir.path(), cfg2, 0, false, 0).expect("reopen");
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(l.log_end_offset(), end + 20);
    }

    #[test]
    fn key_map_bound_limits_a_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes: 200,
            compact: true,
            ..LogConfig::default()
        };
        let (l, _) = PartitionLog::open(dir.path(), cfg, 0, false, 0).expect("open");
        let log = Mutex::new(l);
        for i in 0..40 {
            produce(&log, rec(&format!("k{i}"), Some("v"), 1));
        }
        let stats = clean(&log, 2, 10, &mut Throttle::new(Some(1 << 30)))
            .expect("clean")
            .expect("ran");
        assert!(
            stats.cleaned_up_to <= 11,
            "at most 10 keys mapped: {stats:?}"
        );
        assert_eq!(read_all(&log).len(), 40, "distinct keys are all kept");
    }
}
