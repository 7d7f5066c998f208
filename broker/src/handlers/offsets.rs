//! Committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::Broker;
use crate::coordinator::group::GroupState;
use crate::coordinator::group::coordinator::{CommittedOffsetView, MAX_OFFSET_METADATA};
use crate::coordinator::group::offsets_log::{self, CommittedOffset};
use crate::partition::replica::TopicPartition;
use crate::protocol::code::{
    COORDINATOR_NOT_AVAILABLE, GROUP_SUBSCRIBED_TO_TOPIC, OFFSET_METADATA_TOO_LARGE,
};
use crate::security::acl::{self, Authorizer};
use crate::storage::log::now_ms;

pub fn offset_commit(
    broker: &Arc<Broker>,
    req: OffsetCommitRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    // As Kafka: READ on the group, then READ on each topic.
    let denied = (!authz.group(acl::op::READ, &group)).then_some(code::GROUP_AUTHORIZATION_FAILED);
    let group_error = match denied.or_else(|| broker.coordinator_error(&group)) {
        Some(e) => e,
        None => broker.groups.validate_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
        ),
    };
    let wanted = wanted_commits!(req.topics);
    let Planned {
        records,
        changes,
        answers,
    } = plan_commit(broker, authz, &group, group_error, wanted);
    // Durable first, visible second: a crash never loses an acknowledged
    // commit, and a failed append changes nothing.
    let persisted = broker.persist_offsets(&group, &records);
    if let Err(e) = &persisted {
        tracing::error!(group = %group, error = %e, "persisting offsets failed");
    } else {
        broker.groups.apply(&group, changes);
    }
    let topics = req
        .topics
        .into_iter()
        .zip(answers)
        .map(|(t, parts)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            let e = if e == code::NONE && persisted.is_err() {
                                COORDINATOR_NOT_AVAILABLE
                            } else {
                                e
                            };
                            count_error(broker, "OffsetCommit", e);
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The partitions of an OffsetCommit or TxnOffsetCommit request (two
/// message types with the same fields) as [`plan_commit`] takes them.
macro_rules! wanted_commits {
    ($topics:expr) => {
        $topics
            .iter()
            .map(|t| {
                let parts = t.partitions.iter().map(|p| {
                    let m = p.committed_metadata.as_ref().map(|m| m.to_string());
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        m,
                    )
                });
                (t.name.0.to_string(), parts.collect())
            })
            .collect()
    };
}
pub(crate) use wanted_commits;

/// A commit's partitions, checked: the records to write, the changes to
/// apply once written, and each partition's answer by topic.
pub(crate) struct Planned {
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub changes: Vec<((String, i32), Option<CommittedOffset>)>,
    pub answers: Vec<Vec<(i32, i16)>>,
}

/// One wanted commit: `(partition, offset, leader epoch, metadata)`.
pub(crate) type WantedCommit = (i32, i64, i32, Option<String>);

/// Checks the partitions of an OffsetCommit or TxnOffsetCommit as Kafka
/// does (the group's error first, then READ on the topic, the metadata's
/// size, the partition's existence) and builds the records of those that
/// pass.
pub(crate) fn plan_commit(
    broker: &Broker,
    authz: &Authorizer<'_>,
    group: &str,
    group_error: i16,
    topics: Vec<(String, Vec<WantedCommit>)>,
) -> Planned {
    let now = now_ms();
    let mut planned = Planned {
        records: Vec::new(),
        changes: Vec::new(),
        answers: Vec::new(),
    };
    for (name, wanted) in topics {
        let reads = authz.topic(acl::op::READ, &name);
        let mut parts = Vec::new();
        for (partition, offset, leader_epoch, metadata) in wanted {
            let metadata = metadata.unwrap_or_default();
            let error = if group_error != code::NONE {
                group_error
            } else if !reads {
                code::TOPIC_AUTHORIZATION_FAILED
            } else if metadata.len() > MAX_OFFSET_METADATA {
                OFFSET_METADATA_TOO_LARGE
            } else if broker
                .replicas
                .get(&TopicPartition::new(name.clone(), partition))
                .is_none()
            {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                let v = CommittedOffset {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp: now,
                };
                planned.records.push((
                    offsets_log::commit_key(group, &name, partition),
                    Some(offsets_log::commit_value(&v)),
                ));
                planned.changes.push(((name.clone(), partition), Some(v)));
                code::NONE
            };
            parts.push((partition, error));
        }
        planned.answers.push(parts);
    }
    planned
}

fn view(v: &Option<CommittedOffset>) -> CommittedOffsetView {
    match v {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    req: OffsetFetchRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect::<Vec<_>>()
                });
                let topics = describable_offsets(broker, authz, &g.group_id.0, wanted)
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, v, error)| {
                                        let (offset, epoch, meta) = view(&v);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(meta)))
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let denied = (!authz.group(acl::op::DESCRIBE, &g.group_id.0))
                    .then_some(code::GROUP_AUTHORIZATION_FAILED);
                match denied.or_else(|| broker.coordinator_error(&g.group_id.0)) {
                    Some(e) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e),
                    None => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_topics(topics),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let denied = (!authz.group(acl::op::DESCRIBE, &req.group_id.0))
        .then_some(code::GROUP_AUTHORIZATION_FAILED);
    if let Some(e) = denied.or_else(|| broker.coordinator_error(&req.group_id.0)) {
        // v1 has no error field: its clients only meet single-node brokers.
        if version >= 2 {
            return OffsetFetchResponse::default().with_error_code(e);
        }
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let topics = describable_offsets(broker, authz, &req.group_id.0, wanted)
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(t))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, v, error)| {
                            let (offset, epoch, meta) = view(&v);
                            let r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(meta)))
                                .with_error_code(error);
                            if version >= 5 {
                                r.with_committed_leader_epoch(epoch)
                            } else {
                                r
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// A partition's committed offset (if any) and its error.
type Answered = (i32, Option<CommittedOffset>, i16);

/// A group's committed offsets, as OffsetFetch answers them: with every
/// topic, those the principal may describe; with named topics, a topic it
/// may not describe answers TOPIC_AUTHORIZATION_FAILED for each partition
/// (after the others, as Kafka lists them).
fn describable_offsets(
    broker: &Broker,
    authz: &Authorizer<'_>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<Answered>)> {
    let describes = |t: &str| authz.topic(acl::op::DESCRIBE, t);
    let (wanted, refused) = match wanted {
        None => (None, Vec::new()),
        Some(ts) => {
            let (ok, refused): (Vec<_>, Vec<_>) = ts.into_iter().partition(|(t, _)| describes(t));
            (Some(ok), refused)
        }
    };
    let mut found: Vec<_> = broker
        .groups
        .offsets(group, wanted)
        .into_iter()
        .filter(|(t, _)| describes(t))
        .map(|(t, parts)| {
            (
                t,
                parts.into_iter().map(|(p, v)| (p, v, code::NONE)).collect(),
            )
        })
        .collect();
    found.extend(refused.into_iter().map(|(t, parts)| {
        let denied = parts
            .into_iter()
            .map(|p| (p, None, code::TOPIC_AUTHORIZATION_FAILED))
            .collect();
        (t, denied)
    }));
    found
}

pub fn offset_delete(
    broker: &Arc<Broker>,
    req: OffsetDeleteRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    // As Kafka: DELETE on the group, then READ on each topic.
    if !authz.group(acl::op::DELETE, &group) {
        count_error(broker, "OffsetDelete", code::GROUP_AUTHORIZATION_FAILED);
        return OffsetDeleteResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    let Some((state, subscribed)) = broker.groups.subscriptions(&group) else {
        count_error(broker, "OffsetDelete", super::groups::group_not_found());
        return OffsetDeleteResponse::default().with_error_code(super::groups::group_not_found());
    };
    let mut tombstones = Vec::new();
    let mut keys = Vec::new();
    let mut answers = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let busy = state != GroupState::Empty && subscribed.contains(&name);
        let reads = authz.topic(acl::op::READ, &name);
        let parts: Vec<(i32, i16)> = t
            .partitions
            .iter()
            .map(|p| {
                if !reads {
                    (p.partition_index, code::TOPIC_AUTHORIZATION_FAILED)
                } else if busy {
                    (p.partition_index, GROUP_SUBSCRIBED_TO_TOPIC)
                } else {
                    tombstones.push((
                        offsets_log::commit_key(&group, &name, p.partition_index),
                        None,
                    ));
                    keys.push(((name.clone(), p.partition_index), None));
                    (p.partition_index, code::NONE)
                }
            })
            .collect();
        answers.push(parts);
    }
    if let Err(e) = broker.persist_offsets(&group, &tombstones) {
        tracing::error!(group = %group, error = %e, "deleting offsets failed");
        return OffsetDeleteResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE);
    }
    broker.groups.apply(&group, keys);
    let topics = req
        .topics
        .into_iter()
        .zip(answers)
        .map(|(t, parts)| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            count_error(broker, "OffsetDelete", e);
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
