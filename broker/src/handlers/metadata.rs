//! Metadata (3): brokers, controller, topics, leaders, epochs,
//! replicas and ISR, all from the metadata quorum's image. Unknown topics
//! are created through the quorum when auto-creation is on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use sluice_quorum::image::{MetadataImage, TopicState};
use uuid::Uuid;

use super::{code, count_error, str_bytes, topic_name};
use crate::broker::{Broker, CreateTopicError, NewTopic, validate_topic_name};
use crate::metadata::TopicConfigs;
use crate::metadata::cluster::Cluster;
use crate::protocol::code::LEADER_NOT_AVAILABLE;
use crate::security::acl::{Authorizer, CLUSTER_NAME, op, resource};

/// `host:port` into its parts (registrations are validated at start).
pub(crate) fn split(address: &str) -> (String, i32) {
    match address.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(-1)),
        None => (address.to_string(), -1),
    }
}

/// The live brokers, and of the fenced ones those in `also`, at their
/// addresses on `listener` (a broker without that listener is left out,
/// as Kafka does).
pub fn brokers(
    img: &MetadataImage,
    also: &BTreeSet<i32>,
    listener: &str,
) -> Vec<MetadataResponseBroker> {
    img.brokers
        .values()
        .filter(|b| !b.fenced || also.contains(&b.id))
        .filter_map(|b| {
            let (host, port) = split(b.endpoint(listener)?);
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect()
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    listener: &str,
    authz: &Authorizer<'_>,
) -> MetadataResponse {
    let cluster = Arc::clone(broker.cluster());
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let may_create =
        broker.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        let img = cluster.image();
        // A topic the principal may not describe is left out.
        topics.extend(
            img.topics
                .iter()
                .filter(|(n, _)| authz.topic(op::DESCRIBE, n))
                .map(|(n, t)| describe(&img, n, t)),
        );
    } else {
        for t in req.topics.unwrap_or_default() {
            let r = match t.name {
                Some(name) if !authz.topic(op::DESCRIBE, name.as_str()) => {
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                }
                Some(name) => {
                    let create = may_create.then(|| {
                        authz.cluster(op::CREATE) || authz.topic(op::CREATE, name.as_str())
                    });
                    by_name(broker, name.as_str(), create).await
                }
                None => {
                    let mut r = by_id(&cluster.image(), t.topic_id);
                    if r.name
                        .as_ref()
                        .is_some_and(|n| !authz.topic(op::DESCRIBE, n.as_str()))
                    {
                        // As Kafka: the id is no secret, the name is.
                        r = MetadataResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(t.topic_id)
                            .with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                    }
                    r
                }
            };
            topics.push(r);
        }
    }
    if !all {
        wait_for_gone_leaders(&cluster, &mut topics).await;
    }
    for t in &mut topics {
        count_error(broker, "Metadata", t.error_code);
        // As Kafka, for every topic answered but those refused.
        if version >= 8
            && req.include_topic_authorized_operations
            && t.error_code != code::TOPIC_AUTHORIZATION_FAILED
        {
            if let Some(name) = &t.name {
                t.topic_authorized_operations = authz.operations(resource::TOPIC, name.as_str());
            }
        }
    }
    let img = cluster.image();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(&img, &cluster.recently_fenced(&img), listener))
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(cluster.controller_id().unwrap_or(-1)))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = match authz.cluster(op::DESCRIBE) {
            true => authz.operations(resource::CLUSTER, CLUSTER_NAME),
            false => 0,
        };
    }
    resp
}

/// `create`: `None` when the request does not auto-create, else whether
/// the principal may create the topic.
async fn by_name(broker: &Arc<Broker>, name: &str, create: Option<bool>) -> MetadataResponseTopic {
    let error = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code)
    };
    let cluster = Arc::clone(broker.cluster());
    let img = cluster.image();
    if let Some(t) = img.topics.get(name) {
        return describe(&img, name, t);
    }
    if let Err(reason) = validate_topic_name(name) {
        tracing::debug!(topic = name, %reason, "metadata for an invalid topic name");
        return error(code::INVALID_TOPIC_EXCEPTION);
    }
    let internal = name == crate::coordinator::group::OFFSETS_TOPIC;
    match create {
        _ if internal => {}
        None => return error(code::UNKNOWN_TOPIC_OR_PARTITION),
        Some(false) => return error(code::TOPIC_AUTHORIZATION_FAILED),
        Some(true) => {}
    }
    let new = if internal {
        match broker.offsets_topic_spec() {
            Ok(t) => t,
            Err(_) => return error(code::UNKNOWN_TOPIC_OR_PARTITION),
        }
    } else {
        NewTopic {
            name: name.to_string(),
            partitions: broker.config.num_partitions,
            replication_factor: broker.config.default_replication_factor,
            configs: TopicConfigs::default(),
            assignment: None,
        }
    };
    match broker
        .create_topic(new, false, crate::metadata::cluster::WRITE_TIMEOUT)
        .await
    {
        Ok(_) | Err(CreateTopicError::AlreadyExists(_)) => {}
        Err(CreateTopicError::InvalidName(_) | CreateTopicError::Collides { .. }) => {
            return error(code::INVALID_TOPIC_EXCEPTION);
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
            return error(code::UNKNOWN_TOPIC_OR_PARTITION);
        }
    }
    // The write is committed; wait briefly for this broker's image.
    let mut image = cluster.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        image.wait_for(|img| img.topics.contains_key(name)),
    )
    .await;
    broker.wait_hosted(name).await;
    let img = cluster.image();
    match img.topics.get(name) {
        Some(t) => describe(&img, name, t),
        None => error(LEADER_NOT_AVAILABLE),
    }
}

/// A client that asks for named topics is most often looking for a leader
/// it just lost. When a leader in the answer is found gone (its listener
/// refuses connections: the process is not there), the answer waits, up to
/// a broker session, for the controller to fence it and move its
/// leaderships, and then names the new leaders. Told the old leader,
/// clients stop their quick leader queries and look again only on a
/// periodic scan (once a second in librdkafka), which used to make most of
/// a failover. The answer never hides a leader the image names: one the
/// controller keeps (alive, only cut off from this broker) is answered as
/// it is after the wait, and for the next ten seconds without waiting
/// (decision 0020).
async fn wait_for_gone_leaders(cluster: &Arc<Cluster>, topics: &mut [MetadataResponseTopic]) {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(cluster.config.session_timeout_ms);
    // From the image current now: one that changed since the answer was
    // put together would not wake the wait below.
    let mut images = cluster.subscribe();
    let img = images.borrow_and_update().clone();
    redescribe(&img, topics);
    loop {
        let gone = cluster.found_gone(&leaders(topics)).await;
        if gone.is_empty() {
            return;
        }
        match tokio::time::timeout_at(deadline, images.changed()).await {
            Ok(Ok(())) => {
                let img = images.borrow_and_update().clone();
                redescribe(&img, topics);
            }
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(?gone, "metadata: leaders found gone were kept");
                cluster.leader_kept(&gone);
                return;
            }
        }
    }
}

/// The leaders named in an answer.
fn leaders(topics: &[MetadataResponseTopic]) -> BTreeSet<i32> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
        .filter(|l| *l >= 0)
        .collect()
}

/// Describes again, from `img`, the topics an answer found.
fn redescribe(img: &MetadataImage, topics: &mut [MetadataResponseTopic]) {
    for t in topics.iter_mut().filter(|t| t.error_code == 0) {
        if let Some(name) = t.name.clone()
            && let Some(state) = img.topics.get(name.as_str())
        {
            *t = describe(img, name.as_str(), state);
        }
    }
}

fn by_id(img: &MetadataImage, id: Uuid) -> MetadataResponseTopic {
    match img
        .topics
        .iter()
        .find(|(_, t)| Uuid::from_bytes(t.id) == id)
    {
        Some((n, t)) => describe(img, n, t),
        None => MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(id)
            .with_error_code(code::UNKNOWN_TOPIC_ID),
    }
}

fn describe(img: &MetadataImage, name: &str, t: &TopicState) -> MetadataResponseTopic {
    let fenced = |r: &i32| img.brokers.get(r).is_none_or(|b| b.fenced);
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
            let offline: Vec<i32> = p.replicas.iter().copied().filter(|r| fenced(r)).collect();
            MetadataResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    LEADER_NOT_AVAILABLE
                } else {
                    0
                })
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name.to_string())))
        .with_topic_id(Uuid::from_bytes(t.id))
        .with_is_internal(name.starts_with("__"))
        .with_partitions(partitions)
}
