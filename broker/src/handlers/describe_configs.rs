//! DescribeConfigs (32): topic configs (with their source and synonyms) and this
//! broker's static settings.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{code, count_error, str_bytes};
use crate::broker::Broker;
use crate::security::acl::{self, Authorizer};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// ConfigSource STATIC_BROKER_CONFIG.
const STATIC_BROKER: i8 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys = r.configuration_keys.clone();
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|k| k.as_str() == name));
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let result = match r.resource_type {
                // As Kafka: DESCRIBE_CONFIGS on the topic, or on the
                // cluster for a broker.
                TOPIC if !authz.topic(acl::op::DESCRIBE_CONFIGS, r.resource_name.as_str()) => base
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_error_message(Some(str_bytes(acl::message::TOPIC))),
                BROKER if !authz.cluster(acl::op::DESCRIBE_CONFIGS) => base
                    .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                    .with_error_message(Some(str_bytes(acl::message::CLUSTER))),
                TOPIC => {
                    let meta = broker.topic_metadata_anywhere(r.resource_name.as_str());
                    match meta {
                        None => base
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes(format!(
                                "Topic {} does not exist",
                                r.resource_name.as_str()
                            )))),
                        Some(m) => base.with_configs(
                            broker
                                .describe_topic_configs(&m.configs)
                                .into_iter()
                                .filter(|d| wanted(d.name))
                                .map(|d| {
                                    let synonyms = if req.include_synonyms {
                                        d.synonyms
                                            .into_iter()
                                            .map(|(name, value, source)| {
                                                DescribeConfigsSynonym::default()
                                                    .with_name(str_bytes(name))
                                                    .with_value(Some(str_bytes(value)))
                                                    .with_source(source.code())
                                            })
                                            .collect()
                                    } else {
                                        Vec::new()
                                    };
                                    entry(d.name, d.value, false, d.source.code())
                                        .with_synonyms(synonyms)
                                })
                                .collect(),
                        ),
                    }
                }
                BROKER => {
                    let me = broker.config.node_id.to_string();
                    if !r.resource_name.is_empty() && r.resource_name.as_str() != me {
                        base.with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes(format!(
                                "Unexpected broker id, expected {me} or empty string, but received {}",
                                r.resource_name.as_str()
                            ))))
                    } else {
                        base.with_configs(broker_configs(broker, r.resource_name.is_empty(), req.include_synonyms, &wanted))
                    }
                }
                other => base
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(format!("Unsupported resource type {other}")))),
            };
            count_error(broker, "DescribeConfigs", result.error_code);
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A broker resource's configs: for a broker id, every setting's value in
/// effect with its source (this broker's dynamic value, the cluster-wide
/// dynamic default, the static one, the default); for `""`
/// (`cluster_default`), as Kafka answers, only the cluster-wide dynamic
/// defaults. Synonyms, when asked for, list every level a dynamic setting
/// is set at, highest first (the cluster-wide resource's only its own).
fn broker_configs(
    broker: &Broker,
    cluster_default: bool,
    include_synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    use crate::config::dynamic::{DYNAMIC, Level, THROTTLE_RATES, UNTHROTTLED};
    use crate::metadata::topic_config::ConfigSource;
    let dynamic = broker.dynamic();
    let default_values = crate::config::BrokerConfig::default().to_string();
    let static_values = broker.config.to_string();
    let value_in = |text: &str, name: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once(" = "))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    // (value, source) of every level of a dynamic setting, highest first.
    let levels = |name: &str| -> Vec<(String, ConfigSource)> {
        let mut l: Vec<(String, ConfigSource)> = dynamic
            .levels(name)
            .filter(|(_, level)| !cluster_default || *level == Level::ClusterDefault)
            .map(|(v, level)| (v.to_string(), ConfigSource::dynamic(level)))
            .collect();
        // The cluster-wide resource names its own level only (Kafka).
        if cluster_default {
            return l;
        }
        if THROTTLE_RATES.contains(&name) {
            l.push((UNTHROTTLED.to_string(), ConfigSource::Default));
            return l;
        }
        if broker.config.explicit.contains(name) {
            l.extend(value_in(&static_values, name).map(|v| (v, ConfigSource::StaticBroker)));
        }
        l.extend(value_in(&default_values, name).map(|v| (v, ConfigSource::Default)));
        l
    };
    let described = |name: &str| {
        let levels = levels(name);
        let (value, source) = levels
            .first()
            .cloned()
            .unwrap_or_else(|| (String::new(), ConfigSource::Default));
        let synonyms = if include_synonyms {
            levels
                .iter()
                .map(|(v, s)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name.to_string()))
                        .with_value(Some(str_bytes(v.clone())))
                        .with_source(s.code())
                })
                .collect()
        } else {
            Vec::new()
        };
        entry(name, value, false, source.code()).with_synonyms(synonyms)
    };
    let dynamic_names: Vec<&str> = DYNAMIC
        .iter()
        .map(|(b, _)| *b)
        .chain(THROTTLE_RATES.iter().copied())
        .collect();
    if cluster_default {
        return dynamic_names
            .into_iter()
            .filter(|n| wanted(n) && dynamic.cluster_default.contains_key(*n))
            .map(described)
            .collect();
    }
    static_values
        .lines()
        .filter_map(|l| l.trim().split_once(" = "))
        .filter(|(n, _)| wanted(n))
        .map(|(n, v)| {
            if dynamic_names.contains(&n) {
                described(n)
            } else {
                // Not changeable at run time: read-only, as given at start.
                entry(n, v.to_string(), true, STATIC_BROKER)
            }
        })
        // Dynamic only: not among the static settings.
        .chain(
            THROTTLE_RATES
                .iter()
                .filter(|n| wanted(n))
                .map(|n| described(n)),
        )
        .collect()
}

fn entry(name: &str, value: String, read_only: bool, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(str_bytes(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(config_type(name))
        .with_documentation(None)
}

/// Kafka's ConfigType of a setting (DescribeConfigs v3+): 1 BOOLEAN,
/// 2 STRING, 3 INT, 5 LONG, 6 DOUBLE, 7 LIST, as Kafka's definitions of
/// the same names say; 2 STRING for Sluice's own settings.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    match name {
        "cleanup.policy"
        | "leader.replication.throttled.replicas"
        | "follower.replication.throttled.replicas" => LIST,
        "min.cleanable.dirty.ratio" => DOUBLE,
        "preallocate"
        | "unclean.leader.election.enable"
        | "remote.storage.enable"
        | "auto.create.topics.enable" => BOOLEAN,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes"
        | "message.max.bytes"
        | "log.segment.bytes"
        | "log.index.interval.bytes"
        | "num.partitions"
        | "default.replication.factor"
        | "socket.request.max.bytes"
        | "max.connections"
        | "fetch.max.bytes"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level"
        | "node.id" => INT,
        "delete.retention.ms"
        | "file.delete.delay.ms"
        | "flush.messages"
        | "flush.ms"
        | "max.compaction.lag.ms"
        | "min.compaction.lag.ms"
        | "retention.bytes"
        | "retention.ms"
        | "segment.jitter.ms"
        | "segment.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "local.retention.ms"
        | "local.retention.bytes"
        | "log.retention.ms"
        | "log.retention.bytes"
        | "log.roll.ms"
        | "log.flush.interval.messages"
        | "log.flush.interval.ms"
        | "log.retention.check.interval.ms"
        | "leader.replication.throttled.rate"
        | "follower.replication.throttled.rate"
        | "replica.alter.log.dirs.io.max.bytes.per.second" => LONG,
        _ => STRING,
    }
}
