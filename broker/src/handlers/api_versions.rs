//! ApiVersions (18): the handshake every client starts with.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::code;
use crate::protocol::{DecodedHeader, SUPPORTED};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Kafka's rule for `client_software_name` / `_version` (KIP-511).
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

pub fn handle(req: &ApiVersionsRequest, version: i16, h: &DecodedHeader) -> ApiVersionsResponse {
    if version >= 3 {
        let name = req.client_software_name.as_str();
        let ver = req.client_software_version.as_str();
        if !valid_software_field(name) || !valid_software_field(ver) {
            return ApiVersionsResponse::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_api_keys(api_keys());
        }
        tracing::debug!(
            client_id = ?h.header.client_id,
            software = name,
            software_version = ver,
            "client connected"
        );
    }
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0 answer to an ApiVersions request newer than this broker knows.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_field_rule() {
        assert!(valid_software_field("librdkafka"));
        assert!(valid_software_field("2.12.1"));
        assert!(!valid_software_field("-bad"));
        assert!(!valid_software_field("a b"));
        assert!(!valid_software_field(""));
    }
}
