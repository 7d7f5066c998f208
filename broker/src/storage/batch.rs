//! Record batches (magic v2) as bytes: header parsing, validation and the
//! two fields the broker rewrites (base offset, partition leader epoch).
//!
//! The broker never decodes records on the produce or fetch path: a batch is
//! stored and served as the byte range the producer sent.

use thiserror::Error;

/// Byte layout of a v2 record batch header.
pub mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORDS_COUNT: usize = 57;
    /// Size of the whole header, up to the first record.
    pub const HEADER_SIZE: usize = 61;
    /// Bytes before the length field's count starts (base offset + length).
    pub const LOG_OVERHEAD: usize = 12;
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record batch is truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error(
        "record batch has an invalid record count {count} for last offset delta {last_offset_delta}"
    )]
    BadRecordCount { count: i32, last_offset_delta: i32 },
    #[error("record batch uses unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("record batch of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("produce request carries no record batch")]
    Empty,
}

/// The header fields of one batch, read without touching its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the offset and length fields.
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Needs `HEADER_SIZE` bytes;
    /// does not check that the whole batch is present.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        use layout::*;
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let length = be_i32(buf, LENGTH);
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(length));
        }
        let magic = buf[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET),
            size: length as usize + LOG_OVERHEAD,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        })
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Timestamp type bit: false for CreateTime, true for LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }
}

/// CRC-32C over everything after the CRC field, as Kafka defines it.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[layout::ATTRIBUTES..])
}

/// Validates a whole batch at the start of `buf` (length, magic, CRC,
/// counts) and returns its header.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    if buf.len() < h.size {
        return Err(BatchError::Truncated {
            needed: h.size,
            available: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..h.size]);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    if h.compression() > 4 {
        return Err(BatchError::UnknownCompression(h.compression()));
    }
    if h.last_offset_delta < 0 || h.records_count < 0 {
        return Err(BatchError::BadRecordCount {
            count: h.records_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Validates a produce request's `records` field: one or more complete
/// batches, each within `max_batch_bytes`, whose record count matches its
/// offset span (as a producer writes them). Returns the headers.
pub fn validate_produce(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let h = BatchHeader::parse(rest)?;
        if h.size > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: h.size,
                limit: max_batch_bytes,
            });
        }
        let h = validate_batch(rest)?;
        if h.records_count == 0 || h.records_count - 1 != h.last_offset_delta {
            return Err(BatchError::BadRecordCount {
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        headers.push(h);
        pos += h.size;
    }
    Ok(headers)
}

/// Rewrites the base offset and partition leader epoch of a batch in place.
/// Neither field is covered by the CRC.
pub fn assign(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[layout::BASE_OFFSET..layout::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[layout::PARTITION_LEADER_EPOCH..layout::PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Rewrites a batch's producer id, epoch and base sequence (-1, -1, -1 for
/// a non-idempotent batch) and recomputes its CRC, which covers them.
/// `RecordBatchEncoder` derives these fields from its records; callers that
/// encode batches themselves set the values the log must carry with this.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[layout::PRODUCER_ID..layout::PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[layout::PRODUCER_EPOCH..layout::PRODUCER_EPOCH + 2]
        .copy_from_slice(&producer_epoch.to_be_bytes());
    batch[layout::BASE_SEQUENCE..layout::BASE_SEQUENCE + 4]
        .copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// What a control batch marks (its record's key, as Kafka writes it:
/// `version: i16 = 0, type: i16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Abort,
    Commit,
}

/// Reads a zigzag varint at `*pos`, moving past it.
fn read_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn push_zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The marker of a control batch (`batch` starts with its header), or
/// `None` for a batch that is not one or whose key is not a transaction
/// marker (Kafka's other control types, such as KRaft's, are not markers).
pub fn control_kind(batch: &[u8]) -> Option<ControlKind> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let mut pos = layout::HEADER_SIZE;
    let _length = read_varint(batch, &mut pos)?;
    pos += 1; // attributes
    let _ts_delta = read_varint(batch, &mut pos)?;
    let _offset_delta = read_varint(batch, &mut pos)?;
    let key_len = read_varint(batch, &mut pos)?;
    if key_len < 4 {
        return None;
    }
    let key = batch.get(pos..pos + 4)?;
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(ControlKind::Abort),
        1 => Some(ControlKind::Commit),
        _ => None,
    }
}

/// A transaction marker batch, as the transaction coordinator has a
/// partition leader write it (WriteTxnMarkers): one control record whose
/// key is `(0, type)` and whose value is `(0, coordinator_epoch)`. Its
/// base offset and leader epoch are assigned at append.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlKind,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind = match kind {
        ControlKind::Abort => 0i16,
        ControlKind::Commit => 1i16,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut body = vec![0u8]; // record attributes
    push_zigzag(&mut body, 0); // timestamp delta
    push_zigzag(&mut body, 0); // offset delta
    push_zigzag(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    push_zigzag(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    push_zigzag(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 2);
    push_zigzag(&mut record, body.len() as i64);
    record.extend_from_slice(&body);

    let size = layout::HEADER_SIZE + record.len();
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((size - layout::LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&0x30i16.to_be_bytes()); // transactional | control
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records
    b.extend_from_slice(&record);
    let crc = compute_crc(&b);
    b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Sets a batch's transactional attribute and recomputes its CRC: a
/// coordinator's write inside a producer's transaction (TxnOffsetCommit).
pub fn set_transactional(batch: &mut [u8]) {
    let attrs =
        i16::from_be_bytes([batch[layout::ATTRIBUTES], batch[layout::ATTRIBUTES + 1]]) | 0x10;
    batch[layout::ATTRIBUTES..layout::ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(batch);
    batch[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Walks complete batches in `buf` and returns the length of the prefix that
/// holds only whole batches.
pub fn whole_batches_len(buf: &[u8]) -> usize {
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&buf[pos..]) {
        if pos + h.size > buf.len() {
            break;
        }
        pos += h.size;
    }
    pos
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Builds a valid uncompressed batch of `n` records with small values,
    /// for storage tests that do not care about record contents.
    pub fn batch(n: i32, timestamp: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..n {
            // Record: length varint, attributes, ts delta, offset delta,
            // key len (-1), value len, value, headers count 0.
            let value = format!("v{i}");
            let mut body = vec![0u8];
            push_varint(&mut body, 0);
            push_varint(&mut body, i64::from(i));
            push_varint(&mut body, -1);
            push_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value.as_bytes());
            push_varint(&mut body, 0);
            push_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut b = vec![0u8; layout::HEADER_SIZE];
        b.extend_from_slice(&records);
        let len = (b.len() - layout::LOG_OVERHEAD) as i32;
        b[layout::LENGTH..layout::LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[layout::MAGIC] = 2;
        b[layout::LAST_OFFSET_DELTA..layout::LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&(n - 1).to_be_bytes());
        b[layout::BASE_TIMESTAMP..layout::BASE_TIMESTAMP + 8]
            .copy_from_slice(&timestamp.to_be_bytes());
        b[layout::MAX_TIMESTAMP..layout::MAX_TIMESTAMP + 8]
            .copy_from_slice(&timestamp.to_be_bytes());
        b[layout::PRODUCER_ID..layout::PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
        b[layout::PRODUCER_EPOCH..layout::PRODUCER_EPOCH + 2]
            .copy_from_slice(&(-1i16).to_be_bytes());
        b[layout::BASE_SEQUENCE..layout::BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        b[layout::RECORDS_COUNT..layout::RECORDS_COUNT + 4].copy_from_slice(&n.to_be_bytes());
        let crc = compute_crc(&b);
        b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn push_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::batch;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_batch_passes() {
        let b = batch(3, 1000);
        let hs = validate_produce(&b, 1 << 20).expect("valid");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].records_count, 3);
        assert_eq!(hs[0].size, b.len());
    }

    #[test]
    fn a_marker_batch_is_valid_and_decodes_as_kafka_writes_it() {
        for (kind, code) in [(ControlKind::Commit, 1i16), (ControlKind::Abort, 0)] {
            let b = control_batch(42, 3, kind, 7, 1_700_000_000_000);
            let h = validate_batch(&b).expect("valid");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.records_count),
                (42, 3, 1)
            );
            assert_eq!(control_kind(&b), Some(kind));
            // A decoder nobody here wrote reads the same key and value.
            let recs = crate::storage::records::decode_all(bytes::Bytes::from(b)).expect("decode");
            assert_eq!(recs.len(), 1);
            assert!(recs[0].control);
            let key = recs[0].key.clone().expect("key");
            assert_eq!(&key[..], &[0, 0, 0, code as u8]);
            let value = recs[0].value.clone().expect("value");
            assert_eq!(&value[..], &[0, 0, 0, 0, 0, 7]);
        }
        assert_eq!(control_kind(&batch(1, 0)), None);
    }

    #[test]
    fn flipped_bit_is_a_crc_error() {
        let mut b = batch(3, 1000);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            validate_produce(&b, 1 << 20),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn oversized_batch_is_refused() {
        let b = batch(50, 1000);
        assert!(matches!(
            validate_produce(&b, 100),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn assign_keeps_crc_valid() {
        let mut b = batch(2, 5);
        assign(&mut b, 42, 7);
        let h = validate_batch(&b).expect("still valid");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.last_offset(), 43);
    }

    #[test]
    fn whole_batches_trims_a_partial_tail() {
        let mut b = batch(2, 5);
        let one = b.len();
        b.extend_from_slice(&batch(2, 6));
        assert_eq!(whole_batches_len(&b), b.len());
        assert_eq!(whole_batches_len(&b[..b.len() - 3]), one);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = validate_produce(&data, 1 << 20);
            let _ = whole_batches_len(&data);
        }

        #[test]
        fn any_corruption_of_a_valid_batch_is_caught(pos in 16usize..200, bit in 0u8..8) {
            let mut b = batch(4, 1);
            let pos = pos % b.len();
            prop_assume!(pos >= layout::MAGIC);
            b[pos] ^= 1 << bit;
            prop_assert!(validate_produce(&b, 1 << 20).is_err());
        }
    }
}
