//! Moving replicas and leaders through the standard admin APIs:
//! AlterPartitionReassignments (45), ListPartitionReassignments (46) and,
//! in a cluster, ElectLeaders (43). Every change is one command through the
//! metadata quorum; see `sluice_quorum::reassign` for the rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;
use sluice_quorum::controller::{Election, ElectionRefusal, elect};
use sluice_quorum::image::{Command, MetadataImage, Outcome, PartitionState, Refusal};

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::Broker;
use crate::metadata::cluster::Cluster;
use crate::protocol::code::{
    ELECTION_NOT_NEEDED, ELIGIBLE_LEADERS_NOT_AVAILABLE, NO_REASSIGNMENT_IN_PROGRESS,
    PREFERRED_LEADER_NOT_AVAILABLE,
};

/// Compare-and-set retries of one election against a changing partition.
const ELECTION_ATTEMPTS: usize = 5;

type Answer = (i16, Option<String>);

fn ok() -> Answer {
    (code::NONE, None)
}

fn partition_of<'a>(img: &'a MetadataImage, topic: &str, p: i32) -> Option<&'a PartitionState> {
    let t = img.topics.get(topic)?;
    usize::try_from(p).ok().and_then(|i| t.partitions.get(i))
}

fn unknown(topic: &str, p: i32) -> Answer {
    (
        code::UNKNOWN_TOPIC_OR_PARTITION,
        Some(format!("Unknown partition {topic}-{p}")),
    )
}

async fn reassign(
    cluster: &Cluster,
    topic: &str,
    p: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Answer {
    let img = cluster.image();
    let Some(state) = partition_of(&img, topic, p) else {
        return unknown(topic, p);
    };
    if let Some(t) = &target {
        let rf = sluice_quorum::reassign::original(state).len();
        if !allow_rf_change && t.len() != rf {
            return (
                code::INVALID_REPLICATION_FACTOR,
                Some(format!(
                    "{topic}-{p} has {rf} replicas and the request does not allow {}",
                    t.len()
                )),
            );
        }
    }
    let cmd = Command::ReassignPartition {
        topic: topic.to_string(),
        partition: p,
        target,
    };
    match cluster.write(cmd).await {
        Ok(Outcome::Ok) => ok(),
        Ok(Outcome::Refused(r)) => {
            let c = match &r {
                Refusal::UnknownTopic(_) | Refusal::UnknownPartition { .. } => {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                }
                Refusal::InvalidReplicaAssignment(_) => code::INVALID_REPLICA_ASSIGNMENT,
                Refusal::NoReassignmentInProgress { .. } => NO_REASSIGNMENT_IN_PROGRESS,
                _ => code::UNKNOWN_SERVER_ERROR,
            };
            (c, Some(r.to_string()))
        }
        Ok(other) => (
            code::UNKNOWN_SERVER_ERROR,
            Some(format!("unexpected outcome {other:?}")),
        ),
        Err(e) => (code::REQUEST_TIMED_OUT, Some(e.to_string())),
    }
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.map(|rs| rs.into_iter().map(|b| b.0).collect());
            let (c, m) = reassign(
                broker.cluster(),
                &topic,
                p.partition_index,
                target,
                allow_rf_change,
            )
            .await;
            if c != code::NONE {
                count_error(broker, "AlterPartitionReassignments", c);
            } else {
                tracing::info!(topic = %topic, partition = p.partition_index, "reassignment accepted");
            }
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(c)
                    .with_error_message(m.map(str_bytes)),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

fn ongoing(
    topic: &str,
    i: i32,
    p: &PartitionState,
) -> Option<(String, OngoingPartitionReassignment)> {
    if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
        return None;
    }
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    Some((
        topic.to_string(),
        OngoingPartitionReassignment::default()
            .with_partition_index(i)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&p.adding_replicas))
            .with_removing_replicas(ids(&p.removing_replicas)),
    ))
}

pub fn list(
    broker: &Arc<Broker>,
    req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let img = broker.cluster().image();
    let found: Vec<(String, OngoingPartitionReassignment)> = match req.topics {
        None => img
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| ongoing(name, i as i32, p))
            })
            .collect(),
        // Unknown topics and partitions have nothing in progress, as Kafka
        // answers them.
        Some(topics) => topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes
                    .iter()
                    .filter_map(|i| ongoing(&name, *i, partition_of(&img, &name, *i)?))
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for (t, p) in found {
        by_topic.entry(t).or_default().push(p);
    }
    ListPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OngoingTopicReassignment::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

async fn elect_one(cluster: &Cluster, kind: Election, topic: &str, p: i32) -> Answer {
    for _ in 0..ELECTION_ATTEMPTS {
        let img = cluster.image();
        let Some(state) = partition_of(&img, topic, p) else {
            return unknown(topic, p);
        };
        let live = |id: &i32| img.brokers.get(id).is_some_and(|b| !b.fenced);
        let (leader, isr) = match elect(state, kind, &live) {
            Ok(x) => x,
            Err(ElectionRefusal::NotNeeded) => {
                return (
                    ELECTION_NOT_NEEDED,
                    Some("Leader election not needed for topic partition.".into()),
                );
            }
            Err(ElectionRefusal::PreferredNotAvailable) => {
                return (
                    PREFERRED_LEADER_NOT_AVAILABLE,
                    Some(format!(
                        "The preferred replica of {topic}-{p} is not live and in sync"
                    )),
                );
            }
            Err(ElectionRefusal::EligibleLeadersNotAvailable) => {
                return (
                    ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    Some(format!("No live replica of {topic}-{p} can lead")),
                );
            }
        };
        let cmd = Command::ChangePartition {
            topic: topic.to_string(),
            partition: p,
            expected_partition_epoch: state.partition_epoch,
            leader,
            isr,
        };
        match cluster.write(cmd).await {
            Ok(Outcome::Ok) => {
                tracing::info!(
                    topic,
                    partition = p,
                    leader,
                    ?kind,
                    "elected a leader on request"
                );
                return ok();
            }
            // The partition changed under us: decide again.
            Ok(Outcome::Refused(Refusal::StalePartitionEpoch { .. })) => continue,
            Ok(other) => {
                return (
                    code::UNKNOWN_SERVER_ERROR,
                    Some(format!("the quorum refused the election: {other:?}")),
                );
            }
            Err(e) => return (code::REQUEST_TIMED_OUT, Some(e.to_string())),
        }
    }
    (
        code::REQUEST_TIMED_OUT,
        Some(format!("{topic}-{p} kept changing during the election")),
    )
}

/// ElectLeaders in a cluster. With no partitions named, every partition is
/// considered and only those that needed an election are answered.
pub async fn elect_leaders(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let kind = if version >= 1 && req.election_type == 1 {
        Election::Unclean
    } else {
        Election::Preferred
    };
    let all = req.topic_partitions.is_none();
    let requested: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        None => cluster
            .image()
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let mut results = Vec::new();
    for (topic, parts) in requested {
        let mut partition_result = Vec::new();
        for p in parts {
            let (c, m) = elect_one(cluster, kind, &topic, p).await;
            if all && c == ELECTION_NOT_NEEDED {
                continue;
            }
            if c != code::NONE {
                count_error(broker, "ElectLeaders", c);
            }
            partition_result.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(c)
                    .with_error_message(m.map(str_bytes)),
            );
        }
        if !partition_result.is_empty() {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(topic))
                    .with_partition_result(partition_result),
            );
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
