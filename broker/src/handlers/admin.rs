//! Admin APIs beyond topic creation: CreatePartitions (37),
//! IncrementalAlterConfigs (44) and the legacy AlterConfigs (33),
//! DeleteRecords (21), DescribeLogDirs (35), ElectLeaders (43).

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::*;

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::Broker;
use crate::error::Error;
use crate::partition::replica::TopicPartition;
use crate::security::acl::{self, Authorizer};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignment = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                .collect::<Vec<_>>()
        });
        // As Kafka's controller: ALTER on the topic.
        let outcome = if authz.topic(acl::op::ALTER, &name) {
            broker
                .grow_topic(&name, t.count, assignment, req.validate_only)
                .await
        } else {
            Err((code::TOPIC_AUTHORIZATION_FAILED, String::new()))
        };
        let r = CreatePartitionsTopicResult::default()
            .with_name(t.name)
            .with_error_message(None);
        results.push(match outcome {
            Ok(()) => r,
            // Kafka names no unknown topic here.
            Err((c, _))
                if c == code::UNKNOWN_TOPIC_OR_PARTITION
                    || c == code::TOPIC_AUTHORIZATION_FAILED =>
            {
                count_error(broker, "CreatePartitions", c);
                r.with_error_code(c)
            }
            Err((c, m)) => {
                count_error(broker, "CreatePartitions", c);
                r.with_error_code(c).with_error_message(Some(str_bytes(m)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let changes: Changes = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = alter_resource(
            broker,
            authz,
            r.resource_type,
            r.resource_name.as_str(),
            |_| Ok(changes),
            req.validate_only,
        )
        .await;
        let (error_code, error_message) = answer(broker, "IncrementalAlterConfigs", outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs (33), the legacy form that librdkafka's and older Java
/// clients' `alterConfigs` send: the configs given replace every dynamic
/// config of the resource (one not given goes back to its default), as in
/// Kafka. Carried out as the incremental change that has that effect.
pub async fn alter_configs(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as Legacy;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let given: Vec<(String, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter_resource(
            broker,
            authz,
            r.resource_type,
            r.resource_name.as_str(),
            |current| replacing(current, &given),
            req.validate_only,
        )
        .await;
        let (error_code, error_message) = answer(broker, "AlterConfigs", outcome);
        responses.push(
            Legacy::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// `(name, op, value)` config changes, as IncrementalAlterConfigs names
/// them.
type Changes = Vec<(String, i8, Option<String>)>;

/// The incremental changes (0 set, 1 delete) that make `current` exactly
/// `given`.
fn replacing(
    current: &[String],
    given: &[(String, Option<String>)],
) -> Result<Changes, (i16, String)> {
    let mut changes = Vec::with_capacity(current.len() + given.len());
    for (name, value) in given {
        let Some(value) = value else {
            return Err((
                code::INVALID_REQUEST,
                format!("Null value not supported for : {name}"),
            ));
        };
        changes.push((name.clone(), 0, Some(value.clone())));
    }
    changes.extend(
        current
            .iter()
            .filter(|c| !given.iter().any(|(g, _)| g == *c))
            .map(|c| (c.clone(), 1, None)),
    );
    Ok(changes)
}

/// One resource's config change, if the principal may make it:
/// `changes` is given the names of the configs the resource sets now.
async fn alter_resource(
    broker: &Arc<Broker>,
    authz: &Authorizer<'_>,
    resource_type: i8,
    name: &str,
    changes: impl FnOnce(&[String]) -> Result<Changes, (i16, String)>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if let Some((c, m)) = refused(authz, resource_type, name) {
        return Err((c, m.to_string()));
    }
    match resource_type {
        TOPIC => {
            let current = broker.topic_overrides(name).unwrap_or_default();
            broker
                .alter_topic(name, &changes(&current)?, validate_only)
                .await
        }
        BROKER => {
            // "" is every broker (Kafka's --entity-default), else this
            // broker (Kafka's clients send a broker's own configs to it).
            if !name.is_empty() {
                let me = broker.config.node_id;
                match name.parse::<i32>() {
                    Err(_) => {
                        return Err((
                            code::INVALID_REQUEST,
                            format!("Node id must be an integer, but it is: {name}"),
                        ));
                    }
                    Ok(id) if id != me => {
                        return Err((
                            code::INVALID_REQUEST,
                            format!("Unexpected broker id, expected {me}, but received {name}"),
                        ));
                    }
                    Ok(_) => {}
                }
            }
            let current: Vec<String> = broker
                .cluster()
                .image()
                .broker_configs
                .get(name)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            broker
                .alter_broker_configs(name, &changes(&current)?, validate_only)
                .await
        }
        other => Err((
            code::INVALID_REQUEST,
            format!("Unsupported resource type {other}"),
        )),
    }
}

/// The error for altering a resource's configs without ALTER_CONFIGS on
/// it (a topic) or on the cluster (a broker), as Kafka checks.
fn refused(authz: &Authorizer<'_>, resource_type: i8, name: &str) -> Option<(i16, &'static str)> {
    match resource_type {
        TOPIC if !authz.topic(acl::op::ALTER_CONFIGS, name) => {
            Some((code::TOPIC_AUTHORIZATION_FAILED, acl::message::TOPIC))
        }
        BROKER if !authz.cluster(acl::op::ALTER_CONFIGS) => {
            Some((code::CLUSTER_AUTHORIZATION_FAILED, acl::message::CLUSTER))
        }
        _ => None,
    }
}

/// A resource's `(error_code, error_message)`, counted when an error; an
/// error without a message has none (Kafka's null).
fn answer(
    broker: &Broker,
    api: &'static str,
    outcome: Result<(), (i16, String)>,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((c, m)) if m.is_empty() => {
            count_error(broker, api, c);
            (c, None)
        }
        Err((c, m)) => {
            count_error(broker, api, c);
            (c, Some(str_bytes(m)))
        }
    }
}

pub fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let deletes = authz.topic(acl::op::DELETE, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let found = deletes
                        .then(|| broker.replicas.get(&TopicPartition::new(name.clone(), p.partition_index)));
                    let r = match found {
                        None => base.with_error_code(code::TOPIC_AUTHORIZATION_FAILED).with_low_watermark(-1),
                        Some(None) => base.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION).with_low_watermark(-1),
                        Some(Some(part)) => match part.delete_records(p.offset) {
                            Ok(low) => base.with_low_watermark(low),
                            Err(Error::OffsetOutOfRange { .. }) => {
                                base.with_error_code(code::OFFSET_OUT_OF_RANGE).with_low_watermark(-1)
                            }
                            Err(e) => {
                                tracing::error!(partition = %part.tp, error = %e, "delete records failed");
                                base.with_error_code(code::KAFKA_STORAGE_ERROR).with_low_watermark(-1)
                            }
                        },
                    };
                    count_error(broker, "DeleteRecords", r.error_code);
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    // The new log start offsets are durable before the answer.
    if let Err(e) = broker.write_checkpoints() {
        tracing::error!(error = %e, "writing checkpoints after DeleteRecords failed");
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    req: DescribeLogDirsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> DescribeLogDirsResponse {
    if !authz.cluster(acl::op::DESCRIBE) {
        return DescribeLogDirsResponse::default()
            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
    }
    let mut partitions: Vec<_> = broker.replicas.all();
    partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
    let wanted = |tp: &TopicPartition| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.topic.0.as_str() == tp.topic && t.partitions.contains(&tp.partition)),
    };
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for p in partitions.iter().filter(|p| wanted(&p.tp)) {
        let size = p.with_log(|l| l.size_bytes()) as i64;
        let entry = DescribeLogDirsPartition::default()
            .with_partition_index(p.tp.partition)
            .with_partition_size(size)
            .with_offset_lag(0);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == p.tp.topic => t.partitions.push(entry),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(p.tp.topic.clone()))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics);
    if version >= 4 {
        let (total, usable) = crate::storage::disk_space(&dir)
            .map(|(t, u)| (t as i64, u as i64))
            .unwrap_or((-1, -1));
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
