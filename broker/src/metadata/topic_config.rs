//! Topic-level configs: which names exist, what values are valid, and how
//! they combine with the broker's defaults into a [`LogConfig`].

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::config::dynamic::{DynamicConfigs, Level};
use crate::storage::LogConfig;

/// A config a client asked for that Sluice refuses, with Kafka's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// One supported topic config: its name, the broker setting that supplies
/// its default (none for a config only a topic has), and how to check a
/// value.
struct Def {
    name: &'static str,
    broker_setting: Option<&'static str>,
    check: fn(&str) -> Result<(), ValueError>,
    default: fn(&BrokerConfig) -> String,
}

/// Why a topic config value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be at least {0}")]
    Below(i64),
    #[error("must be no more than {0}")]
    Above(i64),
    #[error("not a number")]
    NotANumber,
    #[error("not a 32-bit number")]
    NotAnInt,
    /// Must be one of the values the message names, or is not supported.
    #[error("{0}")]
    Refused(&'static str),
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), ValueError> {
    move |v| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(ValueError::Below(min)),
        Err(_) => Err(ValueError::NotANumber),
    }
}

fn int_at_least(min: i64) -> impl Fn(&str) -> Result<(), ValueError> {
    move |v| match v.trim().parse::<i32>() {
        Ok(n) if i64::from(n) >= min => Ok(()),
        Ok(_) => Err(ValueError::Below(min)),
        Err(_) => Err(ValueError::NotAnInt),
    }
}

fn int_between(min: i64, max: i64) -> impl Fn(&str) -> Result<(), ValueError> {
    move |v| match v.trim().parse::<i32>() {
        Ok(n) if i64::from(n) < min => Err(ValueError::Below(min)),
        Ok(n) if i64::from(n) > max => Err(ValueError::Above(max)),
        Ok(_) => Ok(()),
        Err(_) => Err(ValueError::NotAnInt),
    }
}

const DEFS: &[Def] = &[
    Def {
        name: "cleanup.policy",
        broker_setting: Some("log.cleanup.policy"),
        check: |v| match v.trim() {
            "delete" | "compact" | "compact,delete" | "delete,compact" => Ok(()),
            _ => Err(ValueError::Refused("must be a list of [delete, compact]")),
        },
        default: |_| "delete".into(),
    },
    Def {
        name: "min.cleanable.dirty.ratio",
        broker_setting: Some("log.cleaner.min.cleanable.ratio"),
        check: |v| match v.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err(ValueError::Refused("must be a number between 0 and 1")),
        },
        default: |_| "0.5".into(),
    },
    Def {
        name: "delete.retention.ms",
        broker_setting: Some("log.cleaner.delete.retention.ms"),
        check: |v| long_at_least(0)(v),
        default: |_| "86400000".into(),
    },
    Def {
        name: "min.compaction.lag.ms",
        broker_setting: Some("log.cleaner.min.compaction.lag.ms"),
        check: |v| long_at_least(0)(v),
        default: |_| "0".into(),
    },
    Def {
        name: "compression.type",
        broker_setting: Some("compression.type"),
        check: |v| match codec_of(v) {
            Some(_) => Ok(()),
            None => Err(ValueError::Refused(
                "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
            )),
        },
        default: |_| "producer".into(),
    },
    // KIP-390: the level a topic's compression.type codec is written at,
    // with Kafka's ranges and defaults.
    Def {
        name: "compression.gzip.level",
        broker_setting: Some("compression.gzip.level"),
        check: |v| match v.trim().parse::<i32>() {
            Ok(-1 | 1..=9) => Ok(()),
            Ok(_) => Err(ValueError::Refused(
                "Value must be between 1 and 9 or equal to -1",
            )),
            Err(_) => Err(ValueError::NotAnInt),
        },
        default: |_| "-1".into(),
    },
    Def {
        name: "compression.lz4.level",
        broker_setting: Some("compression.lz4.level"),
        check: |v| int_between(1, 17)(v),
        default: |_| "9".into(),
    },
    Def {
        name: "compression.zstd.level",
        broker_setting: Some("compression.zstd.level"),
        check: |v| int_between(-131_072, 22)(v),
        default: |_| "3".into(),
    },
    Def {
        name: "retention.ms",
        broker_setting: Some("log.retention.ms"),
        check: |v| long_at_least(-1)(v),
        default: |c| c.log_retention_ms.to_string(),
    },
    Def {
        name: "retention.bytes",
        broker_setting: Some("log.retention.bytes"),
        check: |v| long_at_least(-1)(v),
        default: |c| c.log_retention_bytes.to_string(),
    },
    Def {
        name: "segment.bytes",
        broker_setting: Some("log.segment.bytes"),
        check: |v| int_at_least(1024)(v),
        default: |c| c.log_segment_bytes.to_string(),
    },
    Def {
        name: "segment.ms",
        broker_setting: Some("log.roll.ms"),
        check: |v| long_at_least(1)(v),
        default: |c| c.log_roll_ms.to_string(),
    },
    Def {
        name: "max.message.bytes",
        broker_setting: Some("message.max.bytes"),
        check: |v| int_at_least(64)(v),
        default: |c| c.message_max_bytes.to_string(),
    },
    Def {
        name: "min.insync.replicas",
        broker_setting: Some("min.insync.replicas"),
        check: |v| int_at_least(1)(v),
        default: |c| c.min_insync_replicas.to_string(),
    },
    Def {
        name: "flush.messages",
        broker_setting: Some("log.flush.interval.messages"),
        check: |v| long_at_least(1)(v),
        default: |c| c.log_flush_interval_messages.to_string(),
    },
    Def {
        name: "flush.ms",
        broker_setting: Some("log.flush.interval.ms"),
        check: |v| long_at_least(0)(v),
        default: |c| c.log_flush_interval_ms.to_string(),
    },
    Def {
        name: "index.interval.bytes",
        broker_setting: Some("log.index.interval.bytes"),
        check: |v| int_at_least(1)(v),
        default: |c| c.log_index_interval_bytes.to_string(),
    },
    Def {
        name: "message.timestamp.type",
        broker_setting: Some("log.message.timestamp.type"),
        check: |v| match v.trim() {
            "CreateTime" => Ok(()),
            "LogAppendTime" => Err(ValueError::Refused("LogAppendTime is not supported yet")),
            _ => Err(ValueError::Refused(
                "must be one of [CreateTime, LogAppendTime]",
            )),
        },
        default: |_| "CreateTime".into(),
    },
    Def {
        name: "unclean.leader.election.enable",
        broker_setting: Some("unclean.leader.election.enable"),
        check: |v| match v.trim() {
            "true" | "false" => Ok(()),
            _ => Err(ValueError::Refused("must be true or false")),
        },
        default: |_| "false".into(),
    },
    Def {
        name: "leader.replication.throttled.replicas",
        broker_setting: None,
        check: throttled_replicas,
        default: |_| String::new(),
    },
    Def {
        name: "follower.replication.throttled.replicas",
        broker_setting: None,
        check: throttled_replicas,
        default: |_| String::new(),
    },
];

/// Kafka's check of a `*.replication.throttled.replicas` list: `*`, or
/// `partition:broker` entries separated by commas (an empty one allowed).
fn throttled_replicas(v: &str) -> Result<(), ValueError> {
    let entry = |e: &str| {
        let e = e.trim();
        e.is_empty()
            || e.split_once(':').is_some_and(|(p, b)| {
                [p, b]
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            })
    };
    if v.trim() == "*" || v.split(',').all(entry) {
        Ok(())
    } else {
        Err(ValueError::Refused(
            "must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],...",
        ))
    }
}

/// Where a config's effective value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG = 1).
    Topic,
    /// A dynamic config of this broker (DYNAMIC_BROKER_CONFIG = 2).
    DynamicBroker,
    /// A dynamic config of every broker, `--entity-default`
    /// (DYNAMIC_DEFAULT_BROKER_CONFIG = 3).
    DynamicDefaultBroker,
    /// Given to the broker at start (STATIC_BROKER_CONFIG = 4).
    StaticBroker,
    /// The broker's default (DEFAULT_CONFIG = 5).
    Default,
}

impl ConfigSource {
    /// The source of a dynamic broker setting at `level`.
    pub fn dynamic(level: Level) -> Self {
        match level {
            Level::Broker => ConfigSource::DynamicBroker,
            Level::ClusterDefault => ConfigSource::DynamicDefaultBroker,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One topic config as DescribeConfigs shows it: its value, where the
/// value comes from, and its synonyms (the topic's own value and the
/// broker settings it falls back to, highest precedence first), as Kafka
/// lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Broker settings that Kafka defines without a default of their own
/// (they fall back to `log.retention.hours`, `log.roll.hours`,
/// `log.flush.scheduler.interval.ms`): Kafka lists no default synonym for
/// them.
const NO_KAFKA_DEFAULT: &[&str] = &["log.retention.ms", "log.roll.ms", "log.flush.interval.ms"];

/// A topic's explicit config overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

impl TopicConfigs {
    /// Validates and collects overrides.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, ConfigError> {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            let def = DEFS
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
            let Some(value) = value else {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    value: "null".into(),
                    reason: "a value is required".into(),
                });
            };
            (def.check)(value).map_err(|reason| ConfigError::Invalid {
                name: name.into(),
                value: value.into(),
                reason: reason.to_string(),
            })?;
            map.insert(name.to_string(), value.trim().to_string());
        }
        Ok(TopicConfigs(map))
    }

    /// Every topic config with its effective value and source:
    /// `configured` is the broker's static config, `dynamic` its dynamic
    /// broker configs.
    pub fn describe(&self, configured: &BrokerConfig, dynamic: &DynamicConfigs) -> Vec<Described> {
        let builtin = BrokerConfig::default();
        DEFS.iter()
            .map(|d| {
                let mut synonyms = Vec::new();
                if let Some(v) = self.0.get(d.name) {
                    synonyms.push((d.name.to_string(), v.clone(), ConfigSource::Topic));
                }
                if let Some(setting) = d.broker_setting {
                    for (v, level) in dynamic.levels(setting) {
                        synonyms.push((
                            setting.to_string(),
                            v.to_string(),
                            ConfigSource::dynamic(level),
                        ));
                    }
                    if configured.explicit.contains(setting) {
                        synonyms.push((
                            setting.to_string(),
                            (d.default)(configured),
                            ConfigSource::StaticBroker,
                        ));
                    }
                    if !NO_KAFKA_DEFAULT.contains(&setting) {
                        synonyms.push((
                            setting.to_string(),
                            (d.default)(&builtin),
                            ConfigSource::Default,
                        ));
                    }
                }
                let (value, source) = match synonyms.first() {
                    Some((_, v, s)) => (v.clone(), *s),
                    None => ((d.default)(&builtin), ConfigSource::Default),
                };
                Described {
                    name: d.name,
                    value,
                    source,
                    synonyms,
                }
            })
            .collect()
    }

    /// The broker setting that supplies a topic config's default.
    pub fn broker_setting(name: &str) -> Option<&'static str> {
        DEFS.iter()
            .find(|d| d.name == name)
            .and_then(|d| d.broker_setting)
    }

    fn get<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.0.get(name).and_then(|v| v.parse().ok())
    }

    /// The topic's level of the codec `codec` (KIP-390); `None` when it
    /// sets none, or gzip's -1 (the codec's default).
    fn level_of(&self, codec: i16) -> Option<i32> {
        let name = match codec {
            1 => "compression.gzip.level",
            3 => "compression.lz4.level",
            4 => "compression.zstd.level",
            _ => return None,
        };
        self.get::<i32>(name).filter(|l| *l != -1 || codec != 1)
    }

    pub fn log_config(&self, b: &BrokerConfig) -> LogConfig {
        let policy = self
            .0
            .get("cleanup.policy")
            .map(String::as_str)
            .unwrap_or("delete");
        let ratio: f64 = self.get("min.cleanable.dirty.ratio").unwrap_or(0.5);
        let compression = self
            .0
            .get("compression.type")
            .and_then(|v| codec_of(v))
            .flatten();
        LogConfig {
            segment_bytes: self.get("segment.bytes").unwrap_or(b.log_segment_bytes),
            segment_ms: self.get("segment.ms").unwrap_or(b.log_roll_ms),
            retention_ms: self.get("retention.ms").unwrap_or(b.log_retention_ms),
            retention_bytes: self.get("retention.bytes").unwrap_or(b.log_retention_bytes),
            max_message_bytes: self.get("max.message.bytes").unwrap_or(b.message_max_bytes),
            flush_messages: self
                .get("flush.messages")
                .unwrap_or(b.log_flush_interval_messages),
            flush_ms: self.get("flush.ms").unwrap_or(b.log_flush_interval_ms),
            index_interval_bytes: self
                .get("index.interval.bytes")
                .unwrap_or(b.log_index_interval_bytes),
            min_insync_replicas: self
                .get("min.insync.replicas")
                .unwrap_or(b.min_insync_replicas),
            delete: policy.contains("delete"),
            compact: policy.contains("compact"),
            min_cleanable_dirty_permille: (ratio * 1000.0).round() as u32,
            delete_retention_ms: self.get("delete.retention.ms").unwrap_or(86_400_000),
            min_compaction_lag_ms: self.get("min.compaction.lag.ms").unwrap_or(0),
            compression,
            compression_level: compression.and_then(|c| self.level_of(c)),
        }
    }
}

/// The codec id (the batch attributes' low bits) that `compression.type`
/// names; `Some(None)` for `producer` (kept as the producer wrote it),
/// `None` for a value Kafka does not know.
fn codec_of(value: &str) -> Option<Option<i16>> {
    Some(match value.trim() {
        "producer" => None,
        "uncompressed" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_invalid_configs_are_named() {
        assert_eq!(
            TopicConfigs::from_pairs([("retention.msx", Some("1"))]),
            Err(ConfigError::Unknown("retention.msx".into()))
        );
        for ok in ["", "*", "0:1", "0:1, 1:2", "0:1,"] {
            assert!(
                TopicConfigs::from_pairs([("follower.replication.throttled.replicas", Some(ok))])
                    .is_ok(),
                "{ok:?} is a valid list"
            );
        }
        for bad in ["0", "a:1", "*,0:1", "0:1:2"] {
            assert!(
                TopicConfigs::from_pairs([("leader.replication.throttled.replicas", Some(bad))])
                    .is_err(),
                "{bad:?} is not a valid list"
            );
        }
        let e =
            TopicConfigs::from_pairs([("retention.ms", Some("-7"))]).expect_err("must be refused");
        assert!(e.to_string().contains("retention.ms"));
        let ok = TopicConfigs::from_pairs([
            ("retention.ms", Some("1000")),
            ("cleanup.policy", Some("delete")),
        ])
        .expect("valid");
        let broker = BrokerConfig::default();
        assert_eq!(ok.log_config(&broker).retention_ms, 1000);
        let described = ok.describe(&broker, &DynamicConfigs::default());
        let of = |name: &str| {
            described
                .iter()
                .find(|d| d.name == name)
                .cloned()
                .expect("described")
        };
        // As Kafka: the topic's own value alone (log.retention.ms has no
        // default of its own in Kafka), and a default's broker synonym.
        let r = of("retention.ms");
        assert_eq!((r.value.as_str(), r.source), ("1000", ConfigSource::Topic));
        assert_eq!(
            r.synonyms,
            vec![("retention.ms".into(), "1000".into(), ConfigSource::Topic)]
        );
        let s = of("segment.bytes");
        assert_eq!(s.source, ConfigSource::Default);
        assert_eq!(
            s.synonyms,
            vec![(
                "log.segment.bytes".into(),
                "1073741824".into(),
                ConfigSource::Default
            )]
        );
        // A dynamic broker config, over a static one, over the default.
        let mut configured = BrokerConfig {
            log_segment_bytes: 1 << 20,
            ..Default::default()
        };
        configured.explicit.insert("log.segment.bytes");
        let dynamic = DynamicConfigs {
            own: BTreeMap::from([("log.segment.bytes".to_string(), "2097152".to_string())]),
            cluster_default: BTreeMap::from([(
                "log.segment.bytes".to_string(),
                "3145728".to_string(),
            )]),
        };
        let d = TopicConfigs::default().describe(&configured, &dynamic);
        let s = d
            .iter()
            .find(|d| d.name == "segment.bytes")
            .expect("described");
        assert_eq!(
            (s.value.as_str(), s.source),
            ("2097152", ConfigSource::DynamicBroker)
        );
        let sources: Vec<ConfigSource> = s.synonyms.iter().map(|x| x.2).collect();
        // A topic-only config: no broker synonym, an empty default.
        let t = d
            .iter()
            .find(|d| d.name == "leader.replication.throttled.replicas")
            .expect("described");
        assert_eq!((t.value.as_str(), t.source), ("", ConfigSource::Default));
        assert!(t.synonyms.is_empty());
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicBroker,
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );
    }
}
