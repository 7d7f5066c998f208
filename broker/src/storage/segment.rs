//! One log segment: a `.log` file of record batches named by its base
//! offset, with its offset and time indexes.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, layout};
use super::index::{OffsetEntry, OffsetIndex, TimeIndex};
use crate::error::{Error, IoContext, Result};

/// File name stem for a segment: the base offset, zero-padded to 20 digits.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// What recovery found in a segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    pub valid_batches: u64,
    pub truncated_bytes: u64,
}

#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    log: Arc<File>,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    index_interval: u64,
    max_timestamp: i64,
    next_offset: i64,
    created_ms: i64,
}

/// A consistent view of a segment for reading outside the log's lock.
#[derive(Debug, Clone)]
pub struct SegmentReader {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Readable bytes end here (exclusive).
    pub end: u64,
}

impl SegmentReader {
    /// Reads up to `len` bytes at `position`, never past `end`.
    pub fn read(&self, position: u64, len: usize) -> Result<Bytes> {
        let len = (len as u64).min(self.end.saturating_sub(position)) as usize;
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let at = position + buf.len() as u64;
            let left = len - buf.len();
            match pread_into(&self.file, &mut buf, left, at) {
                Ok(0) => break, // truncated underneath us: serve what is there
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(buf.freeze())
    }

    /// Reads the batch header at `position`, if a whole header is there.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>> {
        if position + layout::HEADER_SIZE as u64 > self.end {
            return Ok(None);
        }
        let mut buf = [0u8; layout::HEADER_SIZE];
        self.file.read_exact_at(&mut buf, position).at(&self.path)?;
        Ok(BatchHeader::parse(&buf).ok())
    }
}

/// `pread` into the spare capacity of `buf`, without zeroing it first
/// (zeroing large fetch buffers cost about 5 % of the broker's CPU on
/// consume). Returns the bytes read.
#[allow(unsafe_code)]
fn pread_into(file: &File, buf: &mut BytesMut, max: usize, offset: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `spare` is valid for writes of `want` bytes, and pread writes
    // at most that many through the raw pointer (no reference to
    // uninitialised memory is made).
    let n = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), want, offset) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: pread initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

impl LogSegment {
    pub fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base_offset);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    /// Creates an empty segment.
    pub fn create(dir: &Path, base_offset: i64, index_interval: u64, now_ms: i64) -> Result<Self> {
        let (log_path, idx_path, tidx_path) = Self::paths(dir, base_offset);
        let log = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&log_path)
            .at(&log_path)?;
        let (mut offset_index, _) = OffsetIndex::open(&idx_path, 0)?;
        offset_index.reset()?;
        let (mut time_index, _) = TimeIndex::open(&tidx_path)?;
        time_index.reset()?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: 0,
            offset_index,
            time_index,
            bytes_since_index: 0,
            index_interval,
            max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is read and
    /// checked (CRC, offsets) and the file is cut at the first bad one; the
    /// indexes are rebuilt. Without it the indexes are trusted if they pass
    /// a sanity check, and rebuilt (with a full check) otherwise.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        recover: bool,
        now_ms: i64,
    ) -> Result<(Self, RecoveryOutcome)> {
        let (log_path, idx_path, tidx_path) = Self::paths(dir, base_offset);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .at(&log_path)?;
        let meta = log.metadata().at(&log_path)?;
        let size = meta.len();
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(now_ms);
        let (offset_index, idx_ok) = OffsetIndex::open(&idx_path, size)?;
        let (time_index, tidx_ok) = TimeIndex::open(&tidx_path)?;
        let mut seg = LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            offset_index,
            time_index,
            bytes_since_index: 0,
            index_interval,
            max_timestamp: -1,
            next_offset: base_offset,
            created_ms,
        };
        if recover
            || !idx_ok
            || !tidx_ok
            || size > 0 && seg.offset_index.is_empty() && size > index_interval
        {
            let outcome = seg.recover()?;
            return Ok((seg, outcome));
        }
        seg.load_tail_state()?;
        Ok((seg, RecoveryOutcome::default()))
    }

    /// Recomputes `next_offset` and `max_timestamp` from the indexes and the
    /// batches after the last offset index entry, without a full scan.
    fn load_tail_state(&mut self) -> Result<()> {
        self.max_timestamp = self.time_index.last().map(|e| e.timestamp).unwrap_or(-1);
        let reader = self.reader();
        let mut pos = u64::from(self.offset_index.lookup(u32::MAX));
        while let Some(h) = reader.header_at(pos)? {
            if pos + h.size as u64 > self.size {
                break;
            }
            self.next_offset = h.last_offset() + 1;
            self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
            pos += h.size as u64;
        }
        if pos != self.size {
            return Err(Error::Corrupt {
                path: self.log_path.clone(),
                reason: format!("batches end at byte {pos}, file has {} bytes", self.size),
            });
        }
        Ok(())
    }

    /// Scans the whole segment, rebuilding indexes, and cuts it after the
    /// last valid batch.
    fn recover(&mut self) -> Result<RecoveryOutcome> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.bytes_since_index = 0;
        self.max_timestamp = -1;
        self.next_offset = self.base_offset;
        let file = File::open(&self.log_path).at(&self.log_path)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut pos: u64 = 0;
        let mut valid = 0u64;
        let mut header = [0u8; layout::HEADER_SIZE];
        let mut body = Vec::new();
        loop {
            if self.size - pos < layout::HEADER_SIZE as u64 {
                break;
            }
            reader.read_exact(&mut header).at(&self.log_path)?;
            let Ok(h) = BatchHeader::parse(&header) else {
                break;
            };
            if h.size as u64 > self.size - pos || h.base_offset < self.next_offset {
                break;
            }
            body.clear();
            body.extend_from_slice(&header);
            body.resize(h.size, 0);
            reader
                .read_exact(&mut body[layout::HEADER_SIZE..])
                .at(&self.log_path)?;
            if batch::validate_batch(&body).is_err() {
                break;
            }
            self.index_batch(&h, pos)?;
            self.next_offset = h.last_offset() + 1;
            pos += h.size as u64;
            valid += 1;
        }
        let truncated = self.size - pos;
        if truncated > 0 {
            self.log.set_len(pos).at(&self.log_path)?;
            self.log.sync_data().at(&self.log_path)?;
            self.size = pos;
        }
        Ok(RecoveryOutcome {
            valid_batches: valid,
            truncated_bytes: truncated,
        })
    }

    fn index_batch(&mut self, h: &BatchHeader, position: u64) -> Result<()> {
        let rel = (h.base_offset - self.base_offset) as u32;
        if self.bytes_since_index >= self.index_interval {
            self.offset_index.append(OffsetEntry {
                relative_offset: rel,
                position: position as u32,
            })?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.time_index.maybe_append(h.max_timestamp, rel)?;
        }
        Ok(())
    }

    /// Appends batches whose offsets are already assigned. `headers` must
    /// describe `bytes` batch by batch.
    ///
    /// Either the whole append happens or, as far as readers and the next
    /// append can tell, none of it: on an error (a full disk, say) the
    /// in-memory state is rolled back and the next append overwrites
    /// whatever partial bytes reached the file.
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader]) -> Result<()> {
        let saved = (
            self.size,
            self.next_offset,
            self.max_timestamp,
            self.bytes_since_index,
            self.offset_index.len(),
            self.time_index.len(),
        );
        let result = self.append_inner(bytes, headers);
        if result.is_err() {
            let (size, next, max_ts, since, idx_len, tidx_len) = saved;
            self.size = size;
            self.next_offset = next;
            self.max_timestamp = max_ts;
            self.bytes_since_index = since;
            self.offset_index.forget_after(idx_len);
            self.time_index.forget_after(tidx_len);
            let _ = self.log.set_len(size);
        }
        result
    }

    fn append_inner(&mut self, bytes: &[u8], headers: &[BatchHeader]) -> Result<()> {
        self.log.write_all_at(bytes, self.size).at(&self.log_path)?;
        let mut pos = self.size;
        for h in headers {
            self.index_batch(h, pos)?;
            pos += h.size as u64;
            self.next_offset = h.last_offset() + 1;
        }
        self.size = pos;
        Ok(())
    }

    pub fn reader(&self) -> SegmentReader {
        SegmentReader {
            file: Arc::clone(&self.log),
            path: self.log_path.clone(),
            end: self.size,
        }
    }

    /// Position and header of the batch that holds `offset`, if any.
    pub fn find(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset.max(self.base_offset) - self.base_offset) as u32;
        let reader = self.reader();
        let mut pos = u64::from(self.offset_index.lookup(rel));
        while let Some(h) = reader.header_at(pos)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size as u64;
        }
        Ok(None)
    }

    /// Position and header of the first batch whose largest timestamp is at
    /// least `timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start = self.base_offset + i64::from(self.time_index.lookup(timestamp));
        let Some((mut pos, _)) = self.find(start)? else {
            return Ok(None);
        };
        let reader = self.reader();
        while let Some(h) = reader.header_at(pos)? {
            if h.max_timestamp >= timestamp {
                return Ok(Some((pos, h)));
            }
            pos += h.size as u64;
        }
        Ok(None)
    }

    /// Removes every batch holding an offset at or above `offset`. Returns
    /// the new next offset of the segment.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        let Some((pos, h)) = self.find(offset)? else {
            return Ok(self.next_offset);
        };
        self.log.set_len(pos).at(&self.log_path)?;
        self.size = pos;
        self.next_offset = h.base_offset;
        let rel = (h.base_offset - self.base_offset) as u32;
        self.offset_index.truncate_to_position(pos as u32)?;
        self.time_index.truncate_to_offset(rel)?;
        self.bytes_since_index = 0;
        self.max_timestamp = self.time_index.last().map(|e| e.timestamp).unwrap_or(-1);
        Ok(self.next_offset)
    }

    pub fn flush(&self) -> Result<()> {
        self.log.sync_data().at(&self.log_path)?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Deletes the segment's files.
    pub fn delete(self, dir: &Path) -> Result<()> {
        let (log, idx, tidx) = Self::paths(dir, self.base_offset);
        for p in [log, idx, tidx] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}
