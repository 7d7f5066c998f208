//! Dynamic broker configs: the broker-wide defaults of topic configs that
//! IncrementalAlterConfigs may change at run time (resource type BROKER).
//! They are persisted in `meta/broker-configs.json` and apply at once to
//! every topic that does not override them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::metadata::TopicConfigs;
use crate::protocol::code::{INVALID_CONFIG, INVALID_REQUEST};
use crate::storage::checkpoint::write_atomic;

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

#[derive(Debug)]
pub struct DynamicConfigs {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl DynamicConfigs {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("meta").join("broker-configs.json");
        let values = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(DynamicConfigs { path, values })
    }

    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// A throttle rate in bytes per second; `None` when unthrottled.
    pub fn rate(&self, name: &str) -> Option<u64> {
        self.values
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|r| *r >= 0 && *r < UNTHROTTLED)
            .map(|r| r as u64)
    }

    /// The static config with the dynamic values applied.
    pub fn apply(&self, base: &BrokerConfig) -> BrokerConfig {
        let mut c = base.clone();
        for (k, v) in &self.values {
            let n = v.parse::<i64>().ok();
            match (k.as_str(), n) {
                ("log.retention.ms", Some(n)) => c.log_retention_ms = n,
                ("log.retention.bytes", Some(n)) => c.log_retention_bytes = n,
                ("log.segment.bytes", Some(n)) => c.log_segment_bytes = n,
                ("log.roll.ms", Some(n)) => c.log_roll_ms = n,
                ("message.max.bytes", Some(n)) => c.message_max_bytes = n as i32,
                ("min.insync.replicas", Some(n)) => c.min_insync_replicas = n as i32,
                ("log.flush.interval.messages", Some(n)) => c.log_flush_interval_messages = n,
                ("log.flush.interval.ms", Some(n)) => c.log_flush_interval_ms = n,
                ("log.index.interval.bytes", Some(n)) => c.log_index_interval_bytes = n as i32,
                _ => {}
            }
        }
        c
    }

    /// Applies `(name, op, value)` changes (0 set, 1 delete): validates every
    /// one (with the rules of the topic config it is the default of) before
    /// anything changes, then persists.
    pub fn alter(
        &mut self,
        changes: &[(String, i8, Option<String>)],
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let mut next = self.values.clone();
        for (name, op, value) in changes {
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
                    let v = value.clone().unwrap_or_default();
                    let v = v.trim();
                    check_value(name, v)?;
                    next.insert(name.clone(), v.to_string());
                }
                1 => {
                    next.remove(name);
                }
                other => {
                    return Err((
                        INVALID_CONFIG,
                        format!("operation {other} does not apply to {name}"),
                    ));
                }
            }
        }
        if validate_only {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| (56, e.to_string()))?;
        write_atomic(&self.path, &bytes).map_err(|e| (56, e.to_string()))?;
        self.values = next;
        Ok(())
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

    #[test]
    fn set_validate_persist_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("meta")).expect("mkdir");
        let mut d = DynamicConfigs::open(dir.path()).expect("open");
        d.alter(
            &[("log.retention.ms".into(), 0, Some("5000".into()))],
            false,
        )
        .expect("set");
        assert!(
            d.alter(&[("log.retention.ms".into(), 0, Some("-5".into()))], false)
                .is_err()
        );
        assert!(
            d.alter(&[("num.partitions".into(), 0, Some("5".into()))], false)
                .is_err()
        );
        let d2 = DynamicConfigs::open(dir.path()).expect("reopen");
        assert_eq!(d2.apply(&BrokerConfig::default()).log_retention_ms, 5000);
        let mut d2 = d2;
        d2.alter(&[("log.retention.ms".into(), 1, None)], false)
            .expect("delete");
        assert_eq!(
            d2.apply(&BrokerConfig::default()).log_retention_ms,
            BrokerConfig::default().log_retention_ms
        );
    }
}
