//! Request headers and bodies in, responses out.

use bytes::{Buf, BufMut, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::FrameError;
use super::api::{Support, supported};
use super::splice::ResponseBuf;

/// A request whose header has been read.
#[derive(Debug, Clone)]
pub struct DecodedHeader {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    /// The request body, after the header.
    pub body: Bytes,
}

/// Why a connection is closed: a request that cannot be read, or an
/// answer that cannot be written. Kafka closes the connection in these
/// cases too; the reason is logged.
#[derive(Debug, thiserror::Error)]
pub enum Close {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Header(String),
    #[error("malformed {api:?} v{version} body: {message}")]
    Body {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{api:?} is not served")]
    NotServed { api: ApiKey },
    #[error("{api:?} v{version} response: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("write error: {0}")]
    Write(std::io::Error),
    /// A request out of place while authenticating, a failed
    /// authentication (after its answer), or an expired session.
    #[error("{0}")]
    Auth(String),
}

/// What to do with a frame whose header cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// ApiVersions newer than this broker: answer with a v0 response that
    /// carries UNSUPPORTED_VERSION and the supported ranges (KIP-511).
    #[error("ApiVersions v{version} is newer than this broker serves")]
    ApiVersionsTooNew { version: i16, correlation_id: i32 },
    /// Anything else is a protocol violation: close the connection.
    #[error("{0}")]
    Close(String),
}

/// Reads the request header of a frame and checks the API and version.
pub fn decode_header(frame: Bytes) -> Result<DecodedHeader, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::Close(format!(
            "request of {} bytes has no header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key)
        .map_err(|_| HeaderError::Close(format!("unknown API key {raw_key}")))?;
    let support: &Support = supported(key)
        .ok_or_else(|| HeaderError::Close(format!("API {key:?} ({raw_key}) is not served")))?;
    if key == ApiKey::ApiVersions && version > support.max {
        return Err(HeaderError::ApiVersionsTooNew {
            version,
            correlation_id,
        });
    }
    if version < support.min_served || version > support.max {
        return Err(HeaderError::Close(format!(
            "{key:?} v{version} is not served (v{}-v{})",
            support.min_served, support.max
        )));
    }
    let mut buf = frame;
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| HeaderError::Close(format!("malformed {key:?} v{version} header: {e}")))?;
    Ok(DecodedHeader {
        api_key: key,
        api_version: version,
        header,
        body: buf,
    })
}

/// Decodes a request body; trailing bytes are tolerated as Kafka does.
pub fn decode_body<T: Decodable>(h: &DecodedHeader) -> Result<T, Close> {
    let mut body = h.body.clone();
    T::decode(&mut body, h.api_version).map_err(|e| Close::Body {
        api: h.api_key,
        version: h.api_version,
        message: format!("{e:#}"),
    })
}

/// Encodes a response frame (size prefix, header, body) for `api_key` at
/// `version`, appending its chunks to `out`. Any `Bytes` in `splice` that
/// the body carries (Fetch records) are referenced, not copied.
pub fn encode_response<T: Encodable>(
    out: &mut Vec<Bytes>,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
    splice: Vec<Bytes>,
) -> Result<(), Close> {
    let failed = |message: String| Close::Encode {
        api: api_key,
        version,
        message,
    };
    let header_version = if api_key == ApiKey::ApiVersions {
        0 // ApiVersions responses always use header v0 (KIP-511).
    } else {
        api_key.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(version)?))
        .map_err(|e| failed(format!("sizing: {e}")))?;
    let spliced: usize = splice.iter().map(Bytes::len).sum();
    let mut buf = ResponseBuf::new((size + 4).saturating_sub(spliced).min(1 << 20), splice);
    buf.put_i32(i32::try_from(size).map_err(|_| failed(format!("{size} bytes is too large")))?);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| failed(format!("encoding the header: {e}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| failed(format!("encoding: {e}")))?;
    if buf.len() != size + 4 {
        return Err(failed(format!(
            "sized {size} bytes, encoded {}",
            buf.len() - 4
        )));
    }
    out.extend(buf.finish());
    Ok(())
}

/// The correlation id of a frame, when it has one.
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(4..8)?;
    Some(b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiVersionsRequest;
    use proptest::prelude::*;

    fn request_frame(key: i16, version: i16) -> Bytes {
        let mut b = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(77);
        let hv = ApiKey::try_from(key)
            .map(|k| k.request_header_version(version))
            .unwrap_or(1);
        header.encode(&mut b, hv).expect("encode header");
        ApiVersionsRequest::default()
            .encode(&mut b, version.min(4))
            .expect("encode body");
        b.freeze()
    }

    #[test]
    fn apiversions_too_new_is_reported_with_correlation_id() {
        let f = request_frame(18, 9);
        match decode_header(f) {
            Err(HeaderError::ApiVersionsTooNew {
                version: 9,
                correlation_id: 77,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_key_and_old_produce_close() {
        let mut f = BytesMut::from(&request_frame(18, 3)[..]);
        f[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_header(f.freeze()),
            Err(HeaderError::Close(_))
        ));
        let mut f = BytesMut::from(&request_frame(18, 3)[..]);
        f[0..2].copy_from_slice(&0i16.to_be_bytes());
        f[2..4].copy_from_slice(&2i16.to_be_bytes());
        assert!(matches!(
            decode_header(f.freeze()),
            Err(HeaderError::Close(_))
        ));
    }

    #[test]
    fn good_header_decodes() {
        let h = decode_header(request_frame(18, 3)).expect("ok");
        assert_eq!(h.api_key, ApiKey::ApiVersions);
        assert_eq!(h.header.correlation_id, 77);
        let body: ApiVersionsRequest = decode_body(&h).expect("body");
        assert_eq!(body, ApiVersionsRequest::default());
    }

    proptest! {
        /// Random bytes after a valid API key and version never panic the
        /// decoder (nor abort it through an absurd allocation).
        #[test]
        fn random_bodies_never_panic(
            idx in 0usize..super::super::api::SUPPORTED.len(),
            version_pick in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let s = super::super::api::SUPPORTED[idx];
            let span = (s.max - s.min_served + 1) as u16;
            let version = s.min_served + (version_pick % span) as i16;
            let mut f = BytesMut::new();
            f.put_i16(s.key as i16);
            f.put_i16(version);
            f.extend_from_slice(&body);
            if let Ok(h) = decode_header(f.freeze()) {
                let _ = super::super::api::decode_any(&h);
            }
        }
    }
}
