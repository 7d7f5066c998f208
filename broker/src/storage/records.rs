//! Looking inside a stored batch, for the few requests that need record
//! timestamps (ListOffsets by time), the cleaner, and a topic's
//! `compression.type`. Decompression is bounded so that a batch built as
//! a decompression bomb cannot exhaust memory.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::batch::{self, BatchHeader};

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

/// The codec of a batch attributes' codec id.
pub fn codec(id: i16) -> Compression {
    match id {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Compresses a batch's records (`src`) into `dst` in `codec` at `level`,
/// or the codec's default level (Kafka's: gzip 6, lz4 9, zstd 3).
fn compress_at(
    level: Option<i32>,
) -> impl Fn(&mut BytesMut, &mut BytesMut, Compression) -> anyhow::Result<()> {
    use bytes::BufMut;
    use std::io::Write;
    move |src, dst, codec| {
        match codec {
            Compression::Gzip => {
                let l = level
                    .filter(|l| (1..=9).contains(l))
                    .map_or(flate2::Compression::default(), |l| {
                        flate2::Compression::new(l as u32)
                    });
                let mut e = flate2::write::GzEncoder::new(dst.writer(), l);
                e.write_all(src)?;
                e.finish()?;
            }
            Compression::Lz4 => {
                let mut e = lz4::EncoderBuilder::new()
                    .level(level.unwrap_or(9).clamp(1, 17) as u32)
                    .block_mode(lz4::BlockMode::Independent)
                    .build(dst.writer())?;
                e.write_all(src)?;
                e.finish().1?;
            }
            Compression::Zstd => {
                zstd::stream::copy_encode(&src[..], dst.writer(), level.unwrap_or(3))?
            }
            Compression::Snappy => {
                use kafka_protocol::compression::Compressor;
                kafka_protocol::compression::Snappy::compress(dst, |tmp: &mut BytesMut| {
                    tmp.extend_from_slice(src);
                    Ok(())
                })?
            }
            Compression::None => dst.extend_from_slice(src),
        }
        Ok(())
    }
}

/// Encodes `recs`, records of the batch `h`, as one batch in `codec`,
/// with their offsets, timestamps and the batch's producer fields and
/// leader epoch.
pub fn encode_batch(h: &BatchHeader, recs: &[Record], codec: Compression) -> Result<Bytes, String> {
    encode_batch_at(h, recs, codec, None)
}

/// [`encode_batch`] at a codec's `level`.
pub fn encode_batch_at(
    h: &BatchHeader,
    recs: &[Record],
    codec: Compression,
    level: Option<i32>,
) -> Result<Bytes, String> {
    let Some(first) = recs.first().map(|r| r.offset) else {
        return Err("a batch without records".into());
    };
    let recs: Vec<Record> = recs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            // The encoder keeps records with a constant offset - sequence in
            // one batch; the real base sequence is written below.
            r.sequence = (r.offset - first) as i32;
            r.partition_leader_epoch = h.partition_leader_epoch;
            r
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode_with_custom_compression(
        &mut b,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
        Some(compress_at(level)),
    )
    .map_err(|e| format!("{e:#}"))?;
    if BatchHeader::parse(&b).map(|n| n.size) != Ok(b.len()) {
        return Err("the records did not encode as one batch".into());
    }
    let base_sequence = if h.producer_id >= 0 {
        h.base_sequence.wrapping_add((first - h.base_offset) as i32)
    } else {
        -1
    };
    batch::set_producer(&mut b, h.producer_id, h.producer_epoch, base_sequence);
    Ok(b.freeze())
}

/// Produced batches (`data`, validated) in the codec `to` at `level` (the
/// codec's default when `None`), as a topic's `compression.type` and
/// `compression.<codec>.level` ask; `None` when every batch already is in
/// that codec (whatever its level: Kafka recompresses only across codecs).
pub fn recompress(data: &Bytes, to: i16, level: Option<i32>) -> Result<Option<Bytes>, String> {
    let mut at = 0;
    let mut parts = Vec::new();
    let mut changed = false;
    while at < data.len() {
        let h = BatchHeader::parse(&data[at..]).map_err(|e| e.to_string())?;
        let whole = data.slice(at..at + h.size);
        at += h.size;
        if h.compression() == to {
            parts.push(whole);
            continue;
        }
        let mut buf = whole;
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .map_err(|e| format!("a produced batch could not be decoded: {e:#}"))?;
        parts.push(encode_batch_at(&h, &set.records, codec(to), level)?);
        changed = true;
    }
    Ok(changed.then(|| {
        let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for p in parts {
            out.extend_from_slice(&p);
        }
        out.freeze()
    }))
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
    fn recompresses_to_the_topic_codec_keeping_offsets_and_producer_fields() {
        let recs = vec![record(0, 100), record(1, 300), record(2, 200)];
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Gzip,
            },
        )
        .expect("encode");
        batch::set_producer(&mut buf, 42, 3, 7);
        let gz = buf.freeze();
        assert_eq!(recompress(&gz, 1, None), Ok(None), "already gzip");
        for to in [0, 2, 3, 4] {
            let out = recompress(&gz, to, None)
                .expect("recompress")
                .expect("changed");
            let h = BatchHeader::parse(&out).expect("one batch");
            assert_eq!(h.size, out.len());
            assert_eq!(h.compression(), to);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, 7)
            );
            assert_eq!(h.records_count, 3);
            let back = decode_all(out).expect("decode");
            let got: Vec<(i64, i64)> = back.iter().map(|r| (r.offset, r.timestamp)).collect();
            assert_eq!(got, vec![(0, 100), (1, 300), (2, 200)], "codec {to}");
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

    #[test]
    fn a_topics_compression_level_is_the_level_batches_are_written_at() {
        // Compressible records: the same text again and again.
        let text = "sluice stores what kafka stores ".repeat(64);
        let recs: Vec<Record> = (0..20)
            .map(|i| Record {
                value: Some(Bytes::from(format!("{i} {text}"))),
                ..record(i, 1_000 + i)
            })
            .collect();
        let mut plain = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut plain,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        let plain = plain.freeze();
        for (codec, low, high) in [(1i16, 1, 9), (3, 1, 17), (4, -5, 19)] {
            let at = |level| {
                recompress(&plain, codec, Some(level))
                    .expect("recompress")
                    .expect("changed")
            };
            let (fast, small) = (at(low), at(high));
            assert!(
                small.len() < fast.len(),
                "codec {codec}: level {high} wrote {} bytes, level {low} {}",
                small.len(),
                fast.len()
            );
            for out in [
                fast,
                small,
                recompress(&plain, codec, None)
                    .expect("ok")
                    .expect("changed"),
            ] {
                let back = decode_all(out).expect("decode");
                assert_eq!(back.len(), recs.len());
                assert!(
                    back.iter()
                        .zip(&recs)
                        .all(|(a, b)| a.value == b.value && a.offset == b.offset)
                );
            }
        }
    }
}
