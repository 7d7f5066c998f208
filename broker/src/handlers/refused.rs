//! The answers to requests refused as a whole for want of an operation on
//! the cluster, shaped as Kafka's `getErrorResponse` shapes them: the
//! top-level error, and the same error for every item the request named.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::protocol::code::CLUSTER_AUTHORIZATION_FAILED as DENIED;
use crate::security::acl::message::CLUSTER as MESSAGE;

fn message() -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(MESSAGE))
}

pub fn alter_reassignments(
    req: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let responses = req
        .topics
        .iter()
        .map(|t| {
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(DENIED)
                                .with_error_message(message())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
        .with_responses(responses)
}

pub fn list_reassignments() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}

pub fn elect_leaders(req: &ElectLeadersRequest) -> ElectLeadersResponse {
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(DENIED)
                                .with_error_message(message())
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(DENIED)
        .with_replica_election_results(results)
}

pub fn describe_quorum() -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}

pub fn add_raft_voter() -> AddRaftVoterResponse {
    AddRaftVoterResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}

pub fn remove_raft_voter() -> RemoveRaftVoterResponse {
    RemoveRaftVoterResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}

pub fn unregister_broker() -> UnregisterBrokerResponse {
    UnregisterBrokerResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}

pub fn alter_scram_credentials(
    req: &AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let users = req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name));
    let mut seen = std::collections::BTreeSet::new();
    let results = users
        .filter(|u| seen.insert(u.as_str().to_string()))
        .map(|u| {
            AlterUserScramCredentialsResult::default()
                .with_user(u.clone())
                .with_error_code(DENIED)
                .with_error_message(message())
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub fn describe_scram_credentials() -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(DENIED)
        .with_error_message(message())
}
