//! Records of the internal `__transaction_state` topic, in Kafka's own
//! formats (so that Kafka's tooling reading the topic understands them):
//!
//! - Key version 0: `version: i16, transactional_id: string`.
//! - Value version 0: `version: i16, producer_id: i64, producer_epoch: i16,
//!   transaction_timeout_ms: i32, transaction_status: i8,
//!   transaction_partitions: [topic: string, partition_ids: [i32]],
//!   transaction_last_update_timestamp_ms: i64,
//!   transaction_start_timestamp_ms: i64` (strings i16-length-prefixed,
//!   arrays i32-count-prefixed). A null value removes the id.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnStatus};
use crate::coordinator::group::offsets_log::{get_str, put_str};

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.status.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

/// A decoded record: the id, and its state (`None` for a tombstone).
/// Malformed records and versions this broker does not write yield `None`.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<(String, Option<TxnMeta>)> {
    let mut k = key?.clone();
    if k.remaining() < 2 || k.get_i16() != 0 {
        return None;
    }
    let id = get_str(&mut k)?;
    let Some(v) = value else {
        return Some((id, None));
    };
    let mut v = v.clone();
    if v.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || v.get_i16() != 0 {
        return None;
    }
    let producer_id = v.get_i64();
    let producer_epoch = v.get_i16();
    let timeout_ms = v.get_i32();
    let status = TxnStatus::from_code(v.get_i8())?;
    let topics = v.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut v)?;
        if v.remaining() < 4 {
            return None;
        }
        let n = v.get_i32();
        if n < 0 || v.remaining() < n as usize * 4 {
            return None;
        }
        for _ in 0..n {
            partitions.insert((topic.clone(), v.get_i32()));
        }
    }
    if v.remaining() < 16 {
        return None;
    }
    let last_update_ms = v.get_i64();
    let start_ms = v.get_i64();
    Some((
        id,
        Some(TxnMeta {
            producer_id,
            producer_epoch,
            timeout_ms,
            status,
            partitions,
            last_update_ms,
            start_ms,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let m = TxnMeta {
            producer_id: 1 << 41,
            producer_epoch: 7,
            timeout_ms: 60_000,
            status: TxnStatus::PrepareCommit,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 2000,
            start_ms: 1000,
        };
        let k = key("tx-1");
        let v = value(&m);
        assert_eq!(decode(Some(&k), Some(&v)), Some(("tx-1".into(), Some(m))));
        assert_eq!(decode(Some(&k), None), Some(("tx-1".into(), None)));
        assert_eq!(decode(Some(&k), Some(&v.slice(..20))), None);
        assert_eq!(
            decode(Some(&Bytes::from_static(b"\x00\x01")), Some(&v)),
            None
        );
    }
}
