//! Metadata (3): brokers, the controller, topics and partition leaders.
//! Unknown topics are created here when auto-creation is on, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::{Broker, CreateTopicError, validate_topic_name};
use crate::metadata::TopicMetadata;

pub fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let node = broker.config.node_id;
    let brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(broker.config.advertised_host.clone()))
            .with_port(i32::from(broker.config.advertised_port))
            .with_rack(broker.config.rack.clone().map(str_bytes)),
    ];
    // v0: an empty list means all topics; v1+: null means all.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let may_create =
        broker.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let topics: Vec<MetadataResponseTopic> = if all {
        let snapshot: Vec<TopicMetadata> = broker.metadata.lock().topics().cloned().collect();
        snapshot.iter().map(|t| describe(broker, t)).collect()
    } else {
        req.topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| match t.name {
                Some(name) => by_name(broker, name.as_str(), may_create),
                None => by_id(broker, t.topic_id),
            })
            .collect()
    };
    for t in &topics {
        count_error(broker, "Metadata", t.error_code);
    }
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
}

fn by_name(broker: &Broker, name: &str, may_create: bool) -> MetadataResponseTopic {
    let found = broker.metadata.lock().get(name).cloned();
    if let Some(t) = found {
        return describe(broker, &t);
    }
    let error = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code)
    };
    if let Err(reason) = validate_topic_name(name) {
        tracing::debug!(topic = name, %reason, "metadata for an invalid topic name");
        return error(code::INVALID_TOPIC_EXCEPTION);
    }
    if name == crate::coordinator::group::OFFSETS_TOPIC {
        // Internal: created with its own settings, never auto-created.
        return match broker.ensure_offsets_topic() {
            Ok(_) => match broker.metadata.lock().get(name).cloned() {
                Some(t) => describe(broker, &t),
                None => error(code::UNKNOWN_TOPIC_OR_PARTITION),
            },
            Err(_) => error(code::UNKNOWN_TOPIC_OR_PARTITION),
        };
    }
    if !may_create {
        return error(code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match broker.auto_create(name) {
        Ok(t) => describe(broker, &t),
        Err(CreateTopicError::InvalidName(_)) => error(code::INVALID_TOPIC_EXCEPTION),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
            error(code::UNKNOWN_TOPIC_OR_PARTITION)
        }
    }
}

fn by_id(broker: &Broker, id: Uuid) -> MetadataResponseTopic {
    let found = {
        let store = broker.metadata.lock();
        store.name_of(&id).and_then(|n| store.get(n)).cloned()
    };
    match found {
        Some(t) => describe(broker, &t),
        None => MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(id)
            .with_error_code(code::UNKNOWN_TOPIC_ID),
    }
}

fn describe(broker: &Broker, t: &TopicMetadata) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..t.partitions)
        .map(|p| {
            let epoch = broker
                .replicas
                .get(&crate::partition::replica::TopicPartition::new(&t.name, p))
                .map(|part| part.leader_epoch())
                .unwrap_or(0);
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(t.name.clone())))
        .with_topic_id(t.id)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
}
