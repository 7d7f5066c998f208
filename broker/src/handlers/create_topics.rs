//! CreateTopics (19).

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{code, count_error, str_bytes};
use crate::broker::{Broker, CreateTopicError, NewTopic};
use crate::metadata::TopicConfigs;
use crate::metadata::cluster_topics::AssignmentError;
use crate::security::acl::{self, Authorizer};

fn error_code(e: &CreateTopicError) -> i16 {
    match e {
        CreateTopicError::AlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        CreateTopicError::InvalidName(_) | CreateTopicError::Collides { .. } => {
            code::INVALID_TOPIC_EXCEPTION
        }
        CreateTopicError::InvalidPartitions { .. } => code::INVALID_PARTITIONS,
        CreateTopicError::InvalidReplicationFactor { .. } => code::INVALID_REPLICATION_FACTOR,
        CreateTopicError::InvalidConfig(_) => code::INVALID_CONFIG,
        CreateTopicError::InvalidAssignment(_) => code::INVALID_REPLICA_ASSIGNMENT,
        CreateTopicError::InvalidRequest(_) => code::INVALID_REQUEST,
        CreateTopicError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        CreateTopicError::NoController(_) => code::NOT_CONTROLLER,
        CreateTopicError::TimedOut(_) => code::REQUEST_TIMED_OUT,
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> CreateTopicsResponse {
    // As Kafka's controller: CREATE on the cluster, or on each topic.
    let cluster_create = authz.cluster(acl::op::CREATE);
    // A name given twice in one request is an error for every copy (Kafka).
    let mut seen = std::collections::HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        // No message on success (Kafka's null), only with an error.
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_message(None);
        let r = if seen.get(&name).copied().unwrap_or(0) > 1 {
            result
                .with_error_code(code::INVALID_REQUEST)
                .with_error_message(Some(str_bytes(format!(
                    "Create topics request from client contains a duplicate topic: {name}"
                ))))
        } else if !cluster_create && !authz.topic(acl::op::CREATE, &name) {
            result
                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(Some(str_bytes(acl::message::TOPIC)))
        } else if req.timeout_ms <= 0 {
            // Kafka's controller takes the timeout as the deadline of the
            // whole change: none at all times it out, and nothing is created.
            result.with_error_code(code::REQUEST_TIMED_OUT)
        } else {
            let timeout = std::time::Duration::from_millis(req.timeout_ms as u64);
            let r = create_one(broker, t, req.validate_only, version, result, timeout).await;
            if r.error_code == 0 && !authz.topic(acl::op::DESCRIBE_CONFIGS, &name) {
                // Created, but what it was created with is not for this
                // principal to see.
                r.with_configs(Some(Vec::new()))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_topic_config_error_code(code::TOPIC_AUTHORIZATION_FAILED)
            } else {
                r
            }
        };
        count_error(broker, "CreateTopics", r.error_code);
        topics.push(r);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create_one(
    broker: &Broker,
    t: kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
    version: i16,
    result: CreatableTopicResult,
    timeout: std::time::Duration,
) -> CreatableTopicResult {
    let fail = |e: CreateTopicError| {
        result
            .clone()
            .with_error_code(error_code(&e))
            .with_error_message(Some(str_bytes(e.to_string())))
    };
    let assignment = match manual_assignment(&t) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let configs = match TopicConfigs::from_pairs(
        t.configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref())),
    ) {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    // KIP-464: -1 means the broker's default.
    let (partitions, replication_factor) = match &assignment {
        Some(a) => (a.len() as i32, a.first().map_or(0, |rs| rs.len() as i16)),
        None => (
            match t.num_partitions {
                -1 => broker.config.num_partitions,
                n => n,
            },
            match t.replication_factor {
                -1 => broker.config.default_replication_factor,
                n => n,
            },
        ),
    };
    let new = NewTopic {
        name: t.name.0.to_string(),
        partitions,
        replication_factor,
        configs,
        assignment,
    };
    match broker.create_topic(new, validate_only, timeout).await {
        Ok(meta) => {
            let mut r = result
                .with_topic_id(meta.id)
                .with_num_partitions(meta.partitions)
                .with_replication_factor(meta.replication_factor);
            if version >= 5 {
                let mut described = broker.describe_topic_configs(&meta.configs);
                // By name, as Kafka lists them.
                described.sort_by(|a, b| a.name.cmp(b.name));
                let configs = described
                    .into_iter()
                    .map(|d| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(d.name))
                            .with_value(Some(str_bytes(d.value)))
                            .with_config_source(d.source.code())
                    })
                    .collect();
                r = r.with_configs(Some(configs));
            }
            r
        }
        Err(e) => fail(e),
    }
}

/// A request's manual assignment, one replica list per partition in
/// partition order, with Kafka's checks of its shape (the brokers are
/// checked against the registered ones at creation).
fn manual_assignment(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Option<Vec<Vec<i32>>>, CreateTopicError> {
    if t.assignments.is_empty() {
        return Ok(None);
    }
    for (field, value) in [
        ("numPartitions", i32::from(t.num_partitions != -1)),
        ("replicationFactor", i32::from(t.replication_factor != -1)),
    ] {
        if value != 0 {
            return Err(CreateTopicError::InvalidRequest(format!(
                "A manual partition assignment was specified, but {field} was not set to -1."
            )));
        }
    }
    let mut by_index: Vec<(i32, Vec<i32>)> = t
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    by_index.sort_by_key(|(i, _)| *i);
    if by_index
        .iter()
        .enumerate()
        .any(|(want, (got, _))| usize::try_from(*got).ok() != Some(want))
    {
        return Err(AssignmentError::NotASequence.into());
    }
    Ok(Some(by_index.into_iter().map(|(_, rs)| rs).collect()))
}
