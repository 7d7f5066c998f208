//! Admin APIs beyond topic creation: CreatePartitions (37),
//! IncrementalAlterConfigs (44), DeleteRecords (21), DescribeLogDirs (35),
//! ElectLeaders (43).

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

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignment = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                .collect::<Vec<_>>()
        });
        let outcome = broker
            .grow_topic(&name, t.count, assignment, req.validate_only)
            .await;
        let r = CreatePartitionsTopicResult::default()
            .with_name(t.name)
            .with_error_message(None);
        results.push(match outcome {
            Ok(()) => r,
            // Kafka names no unknown topic here.
            Err((c, _)) if c == code::UNKNOWN_TOPIC_OR_PARTITION => {
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
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_error_message(None)
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let changes: Vec<(String, i8, Option<String>)> = r
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
        let outcome = match r.resource_type {
            TOPIC => {
                broker
                    .alter_topic(r.resource_name.as_str(), &changes, req.validate_only)
                    .await
            }
            BROKER => {
                let me = broker.config.node_id.to_string();
                if !r.resource_name.is_empty() && r.resource_name.as_str() != me {
                    Err((
                        code::INVALID_REQUEST,
                        format!(
                            "Unexpected broker id {}, this is broker {me}",
                            r.resource_name.as_str()
                        ),
                    ))
                } else {
                    broker.alter_broker_configs(&changes, req.validate_only)
                }
            }
            other => Err((
                code::INVALID_REQUEST,
                format!("Unsupported resource type {other}"),
            )),
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err((c, m)) => {
                count_error(broker, "IncrementalAlterConfigs", c);
                base.with_error_code(c)
                    .with_error_message(Some(str_bytes(m)))
            }
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let r = match broker.replicas.get(&TopicPartition::new(name.clone(), p.partition_index)) {
                        None => base.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION).with_low_watermark(-1),
                        Some(part) => match part.delete_records(p.offset) {
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
) -> DescribeLogDirsResponse {
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
