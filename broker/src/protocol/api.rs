//! The APIs this broker serves and the versions it advertises.
//!
//! Only what is implemented correctly is listed: clients switch behaviour on
//! what they see here.

use kafka_protocol::messages::ApiKey;

/// One advertised API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Lowest version actually served. Produce is advertised from v0 because
    /// librdkafka decides on compression support from the minimum Produce
    /// version (librdkafka #4956, KAFKA-18659), while v0-v2 (message format
    /// v0/v1) are refused at request time.
    pub min_served: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> Support {
    Support {
        key,
        min,
        max,
        min_served: min,
    }
}

pub const SUPPORTED: &[Support] = &[
    Support {
        key: ApiKey::Produce,
        min: 0,
        max: 11,
        min_served: 3,
    },
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::DescribeCluster, 0, 1),
];

/// The advertised range for `key`, if served.
pub fn supported(key: ApiKey) -> Option<&'static Support> {
    SUPPORTED.iter().find(|s| s.key == key)
}

/// A short, bounded name for metrics labels.
pub fn name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every served version must be one the codec can decode.
    #[test]
    fn served_versions_are_decodable() {
        let codec_range = |k: ApiKey| match k {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
            other => panic!("no codec range listed for {other:?}"),
        };
        for s in SUPPORTED {
            let r = codec_range(s.key);
            assert!(
                r.min <= s.min_served && s.max <= r.max,
                "{:?} {s:?} vs codec {r}",
                s.key
            );
        }
    }
}
