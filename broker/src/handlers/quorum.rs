//! DescribeQuorum (55), AddRaftVoter (80), RemoveRaftVoter (81): the
//! metadata quorum's voters as Kafka 3.9+ shows and changes them (KIP-595,
//! KIP-853). Any broker answers; the quorum leader decides.

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, BrokerId, DescribeQuorumRequest,
    DescribeQuorumResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse, TopicName,
};
use sluice_quorum::voters::{self, ChangeReply, VoterChange};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::code;

/// The metadata log's name, as Kafka's tools expect it.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// The quorum listener's name in DescribeQuorum (Kafka's controller
/// listener).
const LISTENER: &str = "CONTROLLER";

fn replica(r: &voters::ReplicaState) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(r.id as i32))
        .with_replica_directory_id(r.directory_id)
        .with_log_end_offset(r.log_end_offset)
        .with_last_fetch_timestamp(r.last_fetch_ms)
        .with_last_caught_up_timestamp(r.last_caught_up_ms)
}

fn listener(address: &str) -> Option<Listener> {
    let (host, port) = address.rsplit_once(':')?;
    Some(
        Listener::default()
            .with_name(str_bytes(LISTENER))
            .with_host(str_bytes(
                host.trim_start_matches('[').trim_end_matches(']'),
            ))
            .with_port(port.parse().ok()?),
    )
}

pub async fn describe_quorum(
    broker: &Arc<Broker>,
    req: DescribeQuorumRequest,
    _version: i16,
) -> DescribeQuorumResponse {
    let asked_for_metadata = req.topics.iter().all(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().all(|p| p.partition_index == 0)
    });
    if req.topics.is_empty() || !asked_for_metadata {
        return DescribeQuorumResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_error_message(Some(str_bytes(format!(
                "only {METADATA_TOPIC} partition 0 has a quorum"
            ))));
    }
    let Some(d) = broker.cluster().describe_quorum().await else {
        let partition = PartitionData::default()
            .with_error_code(code::NOT_LEADER_OR_FOLLOWER)
            .with_error_message(Some(str_bytes("no quorum leader answered")))
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(-1)
            .with_high_watermark(-1);
        return DescribeQuorumResponse::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
                .with_partitions(vec![partition]),
        ]);
    };
    let partition = PartitionData::default()
        .with_leader_id(BrokerId(d.leader as i32))
        .with_leader_epoch(i32::try_from(d.term).unwrap_or(i32::MAX))
        .with_high_watermark(d.high_watermark)
        .with_current_voters(d.voters.iter().map(replica).collect())
        .with_observers(d.observers.iter().map(replica).collect());
    let nodes = d
        .voters
        .iter()
        .map(|v| {
            Node::default()
                .with_node_id(BrokerId(v.id as i32))
                .with_listeners(listener(&v.address).into_iter().collect())
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
                .with_partitions(vec![partition]),
        ])
        .with_nodes(nodes)
}

/// The answer to a voter change.
fn outcome(reply: ChangeReply) -> (i16, Option<String>) {
    match reply {
        ChangeReply::Done => (code::NONE, None),
        ChangeReply::NotLeader => (
            code::NOT_CONTROLLER,
            Some("no quorum leader answered".into()),
        ),
        ChangeReply::VoterNotFound(m) => (code::VOTER_NOT_FOUND, Some(m)),
        ChangeReply::DuplicateVoter(m) => (code::DUPLICATE_VOTER, Some(m)),
        ChangeReply::Invalid(m) => (code::INVALID_REQUEST, Some(m)),
        ChangeReply::Retriable(m) => (code::REQUEST_TIMED_OUT, Some(m)),
    }
}

/// Runs a voter change, unless the request names another cluster
/// (refused with INCONSISTENT_CLUSTER_ID, as Kafka does).
async fn change(
    broker: &Broker,
    asked_cluster: Option<&str>,
    change: VoterChange,
) -> (i16, Option<String>) {
    let ours = &broker.cluster().cluster_id;
    match asked_cluster.filter(|a| *a != ours.as_str()) {
        Some(a) => (
            code::INCONSISTENT_CLUSTER_ID,
            Some(format!("this is cluster {ours}, not {a}")),
        ),
        None => outcome(broker.cluster().change_voters(change).await),
    }
}

/// A voter id as the quorum counts them (a negative one matches none).
fn voter(id: i32) -> u64 {
    u64::try_from(id).unwrap_or(u64::MAX)
}

pub async fn add_raft_voter(
    broker: &Arc<Broker>,
    req: AddRaftVoterRequest,
    _version: i16,
) -> AddRaftVoterResponse {
    let add = VoterChange::Add {
        id: voter(req.voter_id),
        directory_id: req.voter_directory_id,
        addresses: req
            .listeners
            .iter()
            .map(|l| format!("{}:{}", l.host.as_str(), l.port))
            .collect(),
        timeout_ms: u64::try_from(req.timeout_ms).unwrap_or(0),
    };
    let (error, message) = change(broker, req.cluster_id.as_deref(), add).await;
    AddRaftVoterResponse::default()
        .with_error_code(error)
        .with_error_message(message.map(str_bytes))
}

pub async fn remove_raft_voter(
    broker: &Arc<Broker>,
    req: RemoveRaftVoterRequest,
    _version: i16,
) -> RemoveRaftVoterResponse {
    let remove = VoterChange::Remove {
        id: voter(req.voter_id),
        directory_id: req.voter_directory_id,
        timeout_ms: 30_000,
    };
    let (error, message) = change(broker, req.cluster_id.as_deref(), remove).await;
    RemoveRaftVoterResponse::default()
        .with_error_code(error)
        .with_error_message(message.map(str_bytes))
}
