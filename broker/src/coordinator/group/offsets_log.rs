//! Records of the internal `__consumer_offsets` topic, in Kafka's own
//! formats, so that Kafka tooling that reads the topic understands them.
//!
//! - Key version 1 (an offset commit): `version: i16, group: string,
//!   topic: string, partition: i32` (strings are i16-length-prefixed).
//! - Value version 3: `version: i16, offset: i64, leader_epoch: i32,
//!   metadata: string, commit_timestamp: i64`. A null value (tombstone)
//!   deletes the offset.
//! - Key version 2 (group metadata) is recognised and skipped on replay:
//!   group membership is rebuilt by the members rejoining.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Which `__consumer_offsets` partition holds a group: Java's
/// `String.hashCode` of the group id, made non-negative, modulo the count
/// (as Kafka computes it, so the layout matches).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A decoded record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        /// `None` for a tombstone.
        value: Option<CommittedOffset>,
    },
    /// Group metadata or a record version this broker skips.
    Other,
}

/// An i16-length-prefixed string, as Kafka's internal topics write them.
pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&bytes[..len]);
}

/// Reads what [`put_str`] wrote; `None` when malformed.
pub(crate) fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 || b.remaining() < len as usize {
        return None;
    }
    String::from_utf8(b.split_to(len as usize).to_vec()).ok()
}

pub fn commit_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn commit_value(v: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

/// Decodes one record; malformed records yield `None`.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<OffsetsRecord> {
    let mut k = key?.clone();
    if k.remaining() < 2 {
        return None;
    }
    let version = k.get_i16();
    if !matches!(version, 0 | 1) {
        return Some(OffsetsRecord::Other);
    }
    let group = get_str(&mut k)?;
    let topic = get_str(&mut k)?;
    if k.remaining() < 4 {
        return None;
    }
    let partition = k.get_i32();
    let value = match value {
        None => None,
        Some(v) => {
            let mut v = v.clone();
            if v.remaining() < 2 {
                return None;
            }
            let ver = v.get_i16();
            if v.remaining() < 8 {
                return None;
            }
            let offset = v.get_i64();
            let leader_epoch = if ver >= 3 {
                if v.remaining() < 4 {
                    return None;
                }
                v.get_i32()
            } else {
                -1
            };
            let metadata = get_str(&mut v)?;
            if v.remaining() < 8 {
                return None;
            }
            let commit_timestamp = v.get_i64();
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp,
            })
        }
    };
    Some(OffsetsRecord::Commit {
        group,
        topic,
        partition,
        value,
    })
}

/// Builds one uncompressed record batch of `(key, value)` records.
pub fn batch(records: &[(Bytes, Option<Bytes>)], timestamp: i64) -> anyhow::Result<Bytes> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records with a constant offset - sequence
            // in one batch.
            sequence: i as i32,
            timestamp,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    // A non-idempotent batch: no producer id, epoch or sequence.
    crate::storage::batch::set_producer(&mut b, -1, -1, -1);
    Ok(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hashcode() {
        // Values printed by Java 17: s.hashCode(), then Kafka's abs % 50.
        assert_eq!(partition_for("my-group", 50), 12); // -1906497762
        assert_eq!(partition_for("consumers", 50), 33); // -421004483
        assert_eq!(partition_for("ünïcödé", 50), 49); // -609221899
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn commit_round_trips_and_batches_validate() {
        let v = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1000,
        };
        let k = commit_key("g", "t", 5);
        let val = commit_value(&v);
        assert_eq!(
            decode(Some(&k), Some(&val)),
            Some(OffsetsRecord::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 5,
                value: Some(v)
            })
        );
        let b = batch(&[(k.clone(), Some(val)), (k, None)], 1).expect("batch");
        let hs = crate::storage::batch::validate_produce(&b, 1 << 20).expect("valid");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].records_count, 2);
        assert!(decode(Some(&Bytes::from_static(b"\x00")), None).is_none());
    }
}
