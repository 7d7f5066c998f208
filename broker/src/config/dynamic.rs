//! Dynamic broker configs: the broker-wide defaults of topic configs and
//! the replication throttles that IncrementalAlterConfigs (and the legacy
//! AlterConfigs) change at run time, resource type BROKER. As in Kafka's
//! KRaft mode they live in the metadata quorum, for one broker (resource
//! `"<id>"`) or for every broker (resource `""`, `--entity-default`), so a
//! cluster-wide default reaches every broker whichever one was asked; each
//! applies its own over the defaults, to every topic that does not
//! override them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::metadata::TopicConfigs;
use crate::protocol::code::{INVALID_CONFIG, INVALID_REQUEST};
use sluice_quorum::image::MetadataImage;

/// Dynamic broker setting -> the topic config it is the default of.
pub const DYNAMIC: &[(&str, &str)] = &[
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("log.index.interval.bytes", "index.interval.bytes"),
];

/// Dynamic-only broker settings: Kafka's replication throttles, in bytes
/// per second, for the replicas a reassignment is adding (see
/// `crate::partition::throttle`). Unset means unthrottled. The third is
/// Kafka's throttle of moves between one broker's log directories
/// (AlterReplicaLogDirs): Sluice keeps one log directory per broker and
/// makes no such moves, so it limits nothing, but Kafka's reassignment
/// tool sets and clears it with the other two.
pub const THROTTLE_RATES: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// Kafka's default of both throttle rates: `Long.MAX_VALUE`, no throttle.
pub const UNTHROTTLED: i64 = i64::MAX;

/// Why a broker config change was refused: (Kafka error code, message).
pub type Refusal = (i16, String);

/// Where a dynamic broker setting is set, as DescribeConfigs tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// On this broker (`--entity-name <id>`): DYNAMIC_BROKER_CONFIG.
    Broker,
    /// For every broker (`--entity-default`): DYNAMIC_DEFAULT_BROKER_CONFIG.
    ClusterDefault,
}

/// One broker's dynamic settings, as the metadata image holds them: its
/// own (resource `"<id>"`) over the cluster-wide defaults (resource `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicConfigs {
    pub own: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
}

impl DynamicConfigs {
    /// Broker `broker`'s settings in `img`.
    pub fn of(img: &MetadataImage, broker: i32) -> Self {
        let get = |resource: &str| {
            img.broker_configs
                .get(resource)
                .cloned()
                .unwrap_or_default()
        };
        DynamicConfigs {
            own: get(&broker.to_string()),
            cluster_default: get(""),
        }
    }

    /// The value in effect and its level: this broker's own first.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<(&'a str, Level)> {
        self.levels(name).next()
    }

    /// Every level `name` is set at, highest precedence first (Kafka's
    /// synonyms list both).
    pub fn levels<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, Level)> + 'a {
        [
            (&self.own, Level::Broker),
            (&self.cluster_default, Level::ClusterDefault),
        ]
        .into_iter()
        .filter_map(move |(m, l)| m.get(name).map(|v| (v.as_str(), l)))
    }

    /// The static config with the dynamic values applied.
    pub fn apply(&self, base: &BrokerConfig) -> BrokerConfig {
        let mut c = base.clone();
        for (k, _) in DYNAMIC {
            let Some(n) = self.get(k).and_then(|(v, _)| v.parse::<i64>().ok()) else {
                continue;
            };
            match *k {
                "log.retention.ms" => c.log_retention_ms = n,
                "log.retention.bytes" => c.log_retention_bytes = n,
                "log.segment.bytes" => c.log_segment_bytes = n,
                "log.roll.ms" => c.log_roll_ms = n,
                "message.max.bytes" => c.message_max_bytes = n as i32,
                "min.insync.replicas" => c.min_insync_replicas = n as i32,
                "log.flush.interval.messages" => c.log_flush_interval_messages = n,
                "log.flush.interval.ms" => c.log_flush_interval_ms = n,
                "log.index.interval.bytes" => c.log_index_interval_bytes = n as i32,
                _ => {}
            }
        }
        c
    }
}

/// Broker `broker`'s throttle rate `name` in `img` (its own over the
/// cluster-wide one), looked up in place: the fetch paths ask on every
/// follower fetch, where [`DynamicConfigs::of`] would copy both maps.
pub fn rate_in(img: &MetadataImage, broker: i32, name: &str) -> Option<u64> {
    [broker.to_string().as_str(), ""]
        .iter()
        .find_map(|resource| img.broker_configs.get(*resource)?.get(name))
        .and_then(|v| as_rate(v))
}

/// A rate setting's value in bytes per second; `None` for unthrottled.
fn as_rate(v: &str) -> Option<u64> {
    v.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0 && *r < UNTHROTTLED)
        .map(|r| r as u64)
}

/// Checks `(name, op, value)` changes (0 set, 1 delete) of a broker
/// resource, every one with the rules of the setting (a topic default
/// with those of the topic config it stands for), before anything
/// changes: the changes as the metadata quorum applies them.
pub fn checked(
    changes: &[(String, i8, Option<String>)],
) -> Result<Vec<(String, Option<String>)>, Refusal> {
    changes
        .iter()
        .map(|(name, op, value)| {
            let known =
                THROTTLE_RATES.contains(&name.as_str()) || DYNAMIC.iter().any(|(b, _)| b == name);
            if !known {
                return Err((
                    INVALID_REQUEST,
                    format!(
                        "Cannot update {name} dynamically; dynamic broker configs are: {}",
                        names()
                    ),
                ));
            }
            match op {
                0 => {
                    let v = value.as_deref().unwrap_or_default().trim();
                    check_value(name, v)?;
                    Ok((name.clone(), Some(v.to_string())))
                }
                1 => Ok((name.clone(), None)),
                other => Err((
                    INVALID_CONFIG,
                    format!("operation {other} does not apply to {name}"),
                )),
            }
        })
        .collect()
}

/// Where a data directory of an earlier Sluice kept this broker's dynamic
/// settings, before they were in the metadata quorum.
pub fn local_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("broker-configs.json")
}

/// The settings of [`local_path`], if the file is there.
pub fn read_local(data_dir: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let path = local_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Checks a value of a known dynamic setting: a throttle rate is a
/// non-negative number of bytes per second; a topic default follows the
/// rules of the topic config it stands for.
fn check_value(name: &str, v: &str) -> Result<(), Refusal> {
    if THROTTLE_RATES.contains(&name) {
        if v.parse::<i64>().ok().is_none_or(|r| r < 0) {
            return Err((
                INVALID_CONFIG,
                format!("{name}: `{v}` is not a rate in bytes per second (0 or more)"),
            ));
        }
        return Ok(());
    }
    match DYNAMIC.iter().find(|(b, _)| *b == name) {
        Some((_, topic_name)) => TopicConfigs::from_pairs([(*topic_name, Some(v))])
            .map(drop)
            .map_err(|e| (INVALID_CONFIG, format!("{name}: {e}"))),
        None => Ok(()),
    }
}

fn names() -> String {
    DYNAMIC
        .iter()
        .map(|(b, _)| *b)
        .chain(THROTTLE_RATES.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(resource: &str, pairs: &[(&str, &str)]) -> MetadataImage {
        let mut img = MetadataImage::default();
        img.broker_configs.insert(
            resource.to_string(),
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        img
    }

    #[test]
    fn a_brokers_own_setting_wins_over_the_cluster_default() {
        let mut img = image(
            "",
            &[
                ("log.retention.ms", "5000"),
                ("log.segment.bytes", "2097152"),
            ],
        );
        img.broker_configs.insert(
            "1".into(),
            BTreeMap::from([("log.retention.ms".into(), "7000".into())]),
        );
        let one = DynamicConfigs::of(&img, 1);
        assert_eq!(one.get("log.retention.ms"), Some(("7000", Level::Broker)));
        assert_eq!(
            one.levels("log.retention.ms").collect::<Vec<_>>(),
            [("7000", Level::Broker), ("5000", Level::ClusterDefault)]
        );
        assert_eq!(
            one.get("log.segment.bytes"),
            Some(("2097152", Level::ClusterDefault))
        );
        let applied = one.apply(&BrokerConfig::default());
        assert_eq!(
            (applied.log_retention_ms, applied.log_segment_bytes),
            (7000, 2097152)
        );
        // Another broker sees the default only.
        assert_eq!(
            DynamicConfigs::of(&img, 2)
                .apply(&BrokerConfig::default())
                .log_retention_ms,
            5000
        );
        assert_eq!(
            DynamicConfigs::of(&MetadataImage::default(), 1),
            DynamicConfigs::default()
        );
    }

    #[test]
    fn changes_are_checked_before_any_applies() {
        let set = |n: &str, v: &str| (n.to_string(), 0i8, Some(v.to_string()));
        assert_eq!(
            checked(&[
                set("log.retention.ms", " 5000 "),
                ("log.segment.bytes".into(), 1, None)
            ]),
            Ok(vec![
                ("log.retention.ms".to_string(), Some("5000".to_string())),
                ("log.segment.bytes".to_string(), None)
            ])
        );
        assert_eq!(
            checked(&[set("log.retention.ms", "-5")]).map_err(|e| e.0),
            Err(INVALID_CONFIG)
        );
        assert_eq!(
            checked(&[set("num.partitions", "5")]).map_err(|e| e.0),
            Err(INVALID_REQUEST)
        );
        assert_eq!(
            checked(&[set("leader.replication.throttled.rate", "-1")]).map_err(|e| e.0),
            Err(INVALID_CONFIG)
        );
        let mut rates = image("", &[("leader.replication.throttled.rate", "1000")]);
        assert_eq!(
            rate_in(&rates, 0, "leader.replication.throttled.rate"),
            Some(1000)
        );
        assert_eq!(
            rate_in(&rates, 0, "follower.replication.throttled.rate"),
            None
        );
        // A broker's own rate over the cluster-wide one; Long.MAX_VALUE is none.
        rates.broker_configs.insert(
            "0".into(),
            BTreeMap::from([("leader.replication.throttled.rate".into(), "500".into())]),
        );
        assert_eq!(
            rate_in(&rates, 0, "leader.replication.throttled.rate"),
            Some(500)
        );
        assert_eq!(
            rate_in(&rates, 1, "leader.replication.throttled.rate"),
            Some(1000)
        );
        rates.broker_configs.insert(
            "1".into(),
            BTreeMap::from([(
                "leader.replication.throttled.rate".into(),
                UNTHROTTLED.to_string(),
            )]),
        );
        assert_eq!(
            rate_in(&rates, 1, "leader.replication.throttled.rate"),
            None
        );
    }
}
