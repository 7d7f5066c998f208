//! The APIs this broker serves and the versions it advertises.
//!
//! Only what is implemented correctly is listed: clients switch behaviour on
//! what they see here.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use super::{DecodedHeader, decode_body};

/// One advertised API.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    pub key: ApiKey,
    /// The API's name, for logs and metrics labels.
    pub name: &'static str,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Lowest version actually served. Produce is advertised from v0 because
    /// librdkafka decides on compression support from the minimum Produce
    /// version (librdkafka #4956, KAFKA-18659), while v0-v2 (message format
    /// v0/v1) are refused at request time.
    pub min_served: i16,
    /// The versions the `kafka-protocol` codec decodes.
    pub codec: VersionRange,
}

/// The served APIs, each once: `Key: RequestType, min..=max` (and `served
/// from v` where fewer versions are served than advertised). The table,
/// the names and the decoder of any served request come from this list.
macro_rules! served {
    ($($key:ident: $req:ident, $min:literal..=$max:literal $(served from $from:literal)?;)*) => {
        pub const SUPPORTED: &[Support] = &[$(
            Support {
                key: ApiKey::$key,
                name: stringify!($key),
                min: $min,
                max: $max,
                min_served: served!(@from $min $($from)?),
                codec: $req::VERSIONS,
            },
        )*];

        /// Decodes the body of any served request (for decoder fuzzing).
        pub fn decode_any(h: &DecodedHeader) -> Result<(), super::Close> {
            match h.api_key {
                $(ApiKey::$key => decode_body::<$req>(h).map(drop),)*
                other => Err(super::Close::NotServed { api: other }),
            }
        }
    };
    (@from $min:literal) => { $min };
    (@from $min:literal $from:literal) => { $from };
}

served! {
    Produce: ProduceRequest, 0..=11 served from 3;
    Fetch: FetchRequest, 4..=16;
    ListOffsets: ListOffsetsRequest, 1..=8;
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, 2..=4;
    Metadata: MetadataRequest, 0..=12;
    ApiVersions: ApiVersionsRequest, 0..=4;
    CreateTopics: CreateTopicsRequest, 2..=7;
    DeleteTopics: DeleteTopicsRequest, 1..=6;
    DescribeConfigs: DescribeConfigsRequest, 1..=4;
    DescribeCluster: DescribeClusterRequest, 0..=1;
    FindCoordinator: FindCoordinatorRequest, 0..=5;
    JoinGroup: JoinGroupRequest, 0..=9;
    SyncGroup: SyncGroupRequest, 0..=5;
    Heartbeat: HeartbeatRequest, 0..=4;
    LeaveGroup: LeaveGroupRequest, 0..=5;
    OffsetCommit: OffsetCommitRequest, 2..=9;
    OffsetFetch: OffsetFetchRequest, 1..=9;
    DescribeGroups: DescribeGroupsRequest, 0..=5;
    ListGroups: ListGroupsRequest, 0..=5;
    DeleteGroups: DeleteGroupsRequest, 0..=2;
    OffsetDelete: OffsetDeleteRequest, 0..=0;
    InitProducerId: InitProducerIdRequest, 0..=5;
    AddPartitionsToTxn: AddPartitionsToTxnRequest, 0..=3;
    AddOffsetsToTxn: AddOffsetsToTxnRequest, 0..=4;
    EndTxn: EndTxnRequest, 0..=4;
    WriteTxnMarkers: WriteTxnMarkersRequest, 1..=1;
    TxnOffsetCommit: TxnOffsetCommitRequest, 0..=4;
    DescribeTransactions: DescribeTransactionsRequest, 0..=0;
    ListTransactions: ListTransactionsRequest, 0..=1;
    CreatePartitions: CreatePartitionsRequest, 0..=3;
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest, 0..=1;
    AlterConfigs: AlterConfigsRequest, 0..=2;
    DeleteRecords: DeleteRecordsRequest, 0..=2;
    DescribeLogDirs: DescribeLogDirsRequest, 1..=4;
    ElectLeaders: ElectLeadersRequest, 0..=2;
    AlterPartitionReassignments: AlterPartitionReassignmentsRequest, 0..=1;
    ListPartitionReassignments: ListPartitionReassignmentsRequest, 0..=0;
    UnregisterBroker: UnregisterBrokerRequest, 0..=0;
    DescribeQuorum: DescribeQuorumRequest, 0..=2;
    AddRaftVoter: AddRaftVoterRequest, 0..=0;
    RemoveRaftVoter: RemoveRaftVoterRequest, 0..=0;
    SaslHandshake: SaslHandshakeRequest, 0..=1;
    SaslAuthenticate: SaslAuthenticateRequest, 0..=2;
    DescribeUserScramCredentials: DescribeUserScramCredentialsRequest, 0..=0;
    AlterUserScramCredentials: AlterUserScramCredentialsRequest, 0..=0;
    DescribeAcls: DescribeAclsRequest, 1..=3;
    CreateAcls: CreateAclsRequest, 1..=3;
    DeleteAcls: DeleteAclsRequest, 1..=3;
}

/// The advertised range for `key`, if served.
pub fn supported(key: ApiKey) -> Option<&'static Support> {
    SUPPORTED.iter().find(|s| s.key == key)
}

/// A short, bounded name for metrics labels.
pub fn name(key: ApiKey) -> &'static str {
    supported(key).map_or("Other", |s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every served version must be one the codec can decode.
    #[test]
    fn served_versions_are_decodable() {
        for s in SUPPORTED {
            assert!(
                s.codec.min <= s.min_served && s.max <= s.codec.max,
                "{:?} {s:?}",
                s.key
            );
            assert!(s.min <= s.min_served && s.min_served <= s.max, "{s:?}");
        }
    }

    #[test]
    fn names_are_the_keys() {
        assert_eq!(name(ApiKey::Produce), "Produce");
        assert_eq!(name(ApiKey::UnregisterBroker), "UnregisterBroker");
        assert_eq!(name(ApiKey::SaslHandshake), "SaslHandshake");
        assert_eq!(name(ApiKey::DescribeAcls), "DescribeAcls");
        assert_eq!(name(ApiKey::DescribeDelegationToken), "Other");
    }
}
