//! Raw protocol access for the bad-input tests: hand-made frames (random
//! bytes, lying sizes, corrupt batches) that no real client would send.
//! Well-formed parts are encoded with the `kafka-protocol` crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn connect(bootstrap: &str) -> Result<TcpStream> {
    let s = TcpStream::connect(bootstrap).with_context(|| format!("connecting to {bootstrap}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Encodes a request frame (size, header, body).
pub fn frame<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Vec<u8>> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-e2e-wire")))
        .encode(&mut b, key.request_header_version(version))?;
    body.encode(&mut b, version)?;
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    Ok(out)
}

/// Reads one response frame and decodes it as `T`.
pub fn read_response<T: Decodable>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
) -> Result<(i32, T)> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).context("reading response size")?;
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf).context("reading response")?;
    let mut b = Bytes::from(buf);
    let hv = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let h = ResponseHeader::decode(&mut b, hv)?;
    Ok((h.correlation_id, T::decode(&mut b, version)?))
}

pub fn send(s: &mut TcpStream, bytes: &[u8]) -> Result<()> {
    s.write_all(bytes).context("writing")?;
    s.flush().context("flushing")
}

/// Reads whatever the broker answers until it closes the connection;
/// true if it closed (EOF or reset) before the read timeout.
pub fn eventually_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// True when the broker closed the connection (EOF or reset) rather than
/// answering.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// A valid v2 record batch of `n` records with `value_len`-byte values.
pub fn batch(n: usize, value_len: usize) -> Result<Bytes> {
    producer_batch(n, value_len, -1, -1, -1)
}

/// A batch from an idempotent producer: id, epoch and base sequence set.
pub fn producer_batch(
    n: usize,
    value_len: usize,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<Bytes> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("wire-{i}"))),
            value: Some(Bytes::from(vec![b'x'; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    // Producer id, epoch and base sequence as asked (-1: a plain producer);
    // then fix the CRC, which covers them.
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b.freeze())
}

/// A Metadata answer of the broker at `bootstrap`, asked directly (not
/// through a client that would pick a broker of its own).
pub fn metadata(
    bootstrap: &str,
    version: i16,
    req: &kafka_protocol::messages::MetadataRequest,
) -> Result<kafka_protocol::messages::MetadataResponse> {
    let mut s = connect(bootstrap)?;
    send(&mut s, &frame(ApiKey::Metadata, version, 1, req)?)?;
    Ok(read_response(&mut s, ApiKey::Metadata, version)?.1)
}
