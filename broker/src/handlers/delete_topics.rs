//! DeleteTopics (20): by name, or by id from v6.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::Broker;
use crate::security::acl::{self, Authorizer};

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> DeleteTopicsResponse {
    // v6 sends `topics` (name or id); earlier versions send `topic_names`.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::new();
    for (name, id) in targets {
        let r = delete_one(broker, name, id, authz).await;
        count_error(broker, "DeleteTopics", r.error_code);
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(
    broker: &Broker,
    name: Option<String>,
    id: Uuid,
    authz: &Authorizer<'_>,
) -> DeletableTopicResult {
    let resolved = match &name {
        Some(n) => Some(n.clone()),
        None => broker
            .cluster()
            .image()
            .topics
            .iter()
            .find(|(_, t)| Uuid::from_bytes(t.id) == id)
            .map(|(n, _)| n.clone()),
    };
    let base = DeletableTopicResult::default()
        .with_name(resolved.clone().or(name.clone()).map(topic_name))
        .with_topic_id(id);
    let Some(n) = resolved else {
        return base
            .with_error_code(code::UNKNOWN_TOPIC_ID)
            .with_error_message(Some(str_bytes(format!("Topic id {id} does not exist."))));
    };
    // As Kafka's controller: DELETE on the cluster or the topic; a topic
    // named by id that the principal may not describe keeps its name.
    if !authz.cluster(acl::op::DELETE) && !authz.topic(acl::op::DELETE, &n) {
        let base = if name.is_none() && !authz.topic(acl::op::DESCRIBE, &n) {
            base.with_name(None)
        } else {
            base
        };
        return base
            .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
            .with_error_message(Some(str_bytes(acl::message::TOPIC)));
    }
    match broker.remove_topic(&n).await {
        Ok(Some(meta)) => base.with_topic_id(meta.id),
        Ok(None) => base
            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
            .with_error_message(Some(str_bytes(
                "This server does not host this topic-partition.",
            ))),
        Err(e) => {
            tracing::error!(topic = %n, error = %e, "deleting topic failed");
            base.with_error_code(code::KAFKA_STORAGE_ERROR)
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    }
}
