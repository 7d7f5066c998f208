//! Looking inside a stored batch, for the few requests that need record
//! timestamps (ListOffsets by time). Decompression is bounded so that a
//! batch built as a decompression bomb cannot exhaust memory.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

/// Most bytes a batch may decompress to here.
pub const MAX_DECOMPRESSED: u64 = 64 << 20;

fn read_bounded(r: impl Read) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    r.take(MAX_DECOMPRESSED + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        anyhow::bail!("batch decompresses to more than {MAX_DECOMPRESSED} bytes");
    }
    Ok(Bytes::from(out))
}

/// Snappy as Kafka producers write it: either raw snappy, or xerial framing
/// (an 8-byte magic, two 4-byte version fields, then length-prefixed raw
/// blocks).
fn snappy(mut input: Bytes) -> anyhow::Result<Bytes> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let decoder = || snap::raw::Decoder::new();
    if !input.starts_with(MAGIC) {
        let len = snap::raw::decompress_len(&input)?;
        if len as u64 > MAX_DECOMPRESSED {
            anyhow::bail!("snappy block claims {len} bytes");
        }
        return Ok(Bytes::from(decoder().decompress_vec(&input)?));
    }
    if input.len() < 16 {
        anyhow::bail!("truncated xerial snappy header");
    }
    input.advance(16);
    let mut out = Vec::new();
    while input.has_remaining() {
        if input.remaining() < 4 {
            anyhow::bail!("truncated xerial snappy block length");
        }
        let n = input.get_i32();
        if n < 0 || n as usize > input.remaining() {
            anyhow::bail!("xerial snappy block length {n} is invalid");
        }
        let block = input.split_to(n as usize);
        let len = snap::raw::decompress_len(&block)?;
        if (out.len() + len) as u64 > MAX_DECOMPRESSED {
            anyhow::bail!("batch decompresses to more than {MAX_DECOMPRESSED} bytes");
        }
        out.extend_from_slice(&decoder().decompress_vec(&block)?);
    }
    Ok(Bytes::from(out))
}

fn decompress(input: &mut Bytes, c: Compression) -> anyhow::Result<Bytes> {
    let data = input.split_to(input.len());
    match c {
        Compression::None => Ok(data),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data.reader())),
        Compression::Snappy => snappy(data),
        Compression::Lz4 => read_bounded(lz4::Decoder::new(data.reader())?),
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(data.reader())?),
    }
}

/// Offset and timestamp of the first record in `batch` whose timestamp is
/// at least `timestamp`. The batch's base offset must already be assigned.
pub fn first_record_at_or_after(
    batch: Bytes,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, String> {
    let mut buf = batch;
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
        .map_err(|e| format!("stored batch could not be decoded: {e:#}"))?;
    Ok(set
        .records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp)))
}

/// Every record of every batch in `data` (whole batches, as a log read
/// returns them).
pub fn decode_all(data: Bytes) -> Result<Vec<kafka_protocol::records::Record>, String> {
    let mut buf = data;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .map_err(|e| format!("stored batch could not be decoded: {e:#}"))?;
        out.extend(set.records);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn record(offset: i64, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: offset as i32,
            timestamp: ts,
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: Default::default(),
        }
    }

    #[test]
    fn finds_records_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let recs = vec![record(10, 100), record(11, 300), record(12, 200)];
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &recs,
                &RecordEncodeOptions {
                    version: 2,
                    compression: c,
                },
            )
            .expect("encode");
            let b = buf.freeze();
            assert_eq!(
                first_record_at_or_after(b.clone(), 150),
                Ok(Some((11, 300))),
                "{c:?}"
            );
            assert_eq!(
                first_record_at_or_after(b.clone(), 50),
                Ok(Some((10, 100))),
                "{c:?}"
            );
            assert_eq!(first_record_at_or_after(b, 301), Ok(None), "{c:?}");
        }
    }

    #[test]
    fn gzip_bomb_is_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_DECOMPRESSED >> 20) + 2 {
            enc.write_all(&zeros).expect("write");
        }
        let bomb = Bytes::from(enc.finish().expect("finish"));
        assert!(decompress(&mut bomb.clone(), Compression::Gzip).is_err());
    }
}
