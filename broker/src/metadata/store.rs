//! The persisted topic registry and the data directory's identity.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::topic_config::TopicConfigs;
use crate::error::{Error, IoContext, Result};
use crate::storage::checkpoint::write_atomic;

/// One topic as the broker knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: TopicConfigs,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<TopicMetadata>,
}

/// All topics, persisted to `<data dir>/meta/topics.json` on every change.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    topics: BTreeMap<String, TopicMetadata>,
    by_id: HashMap<Uuid, String>,
}

impl MetadataStore {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join("topics.json");
        let file: TopicsFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TopicsFile::default(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let topics: BTreeMap<_, _> = file
            .topics
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let by_id = topics.values().map(|t| (t.id, t.name.clone())).collect();
        Ok(MetadataStore {
            path,
            topics,
            by_id,
        })
    }

    fn persist(&self) -> Result<()> {
        let file = TopicsFile {
            version: 1,
            topics: self.topics.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Metadata(e.to_string()))?;
        write_atomic(&self.path, &bytes)
    }

    pub fn get(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn name_of(&self, id: &Uuid) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicMetadata> {
        self.topics.values()
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Adds a topic and persists; on failure nothing changes.
    pub fn insert(&mut self, topic: TopicMetadata) -> Result<()> {
        let name = topic.name.clone();
        let id = topic.id;
        self.topics.insert(name.clone(), topic);
        if let Err(e) = self.persist() {
            self.topics.remove(&name);
            return Err(e);
        }
        self.by_id.insert(id, name);
        Ok(())
    }

    /// Replaces a topic's record and persists; on failure nothing changes.
    pub fn update(&mut self, topic: TopicMetadata) -> Result<()> {
        let Some(old) = self.topics.insert(topic.name.clone(), topic.clone()) else {
            self.topics.remove(&topic.name);
            return Err(Error::Metadata(format!(
                "topic {} does not exist",
                topic.name
            )));
        };
        if let Err(e) = self.persist() {
            self.topics.insert(old.name.clone(), old);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a topic and persists; on failure nothing changes.
    pub fn remove(&mut self, name: &str) -> Result<Option<TopicMetadata>> {
        let Some(t) = self.topics.remove(name) else {
            return Ok(None);
        };
        if let Err(e) = self.persist() {
            self.topics.insert(name.to_string(), t);
            return Err(e);
        }
        self.by_id.remove(&t.id);
        Ok(Some(t))
    }
}

/// `meta.properties`: the data directory's cluster id and node id, written
/// once and checked at every start (Kafka's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMeta {
    pub cluster_id: String,
    pub node_id: i32,
}

impl ClusterMeta {
    pub const FILE: &'static str = "meta.properties";

    /// Writes `meta.properties` (atomically).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let text = format!(
            "# written by sluice-broker\nversion=1\ncluster.id={}\nnode.id={}\n",
            self.cluster_id, self.node_id
        );
        write_atomic(&data_dir.join(Self::FILE), text.as_bytes())
    }

    /// Loads the identity, or formats the directory on first start. A node
    /// id different from the one the data was written with is an error.
    pub fn load_or_format(data_dir: &Path, node_id: i32) -> Result<Self> {
        let path = data_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut cluster_id = None;
                let mut stored_node = None;
                for line in text.lines() {
                    match line.split_once('=') {
                        Some(("cluster.id", v)) => cluster_id = Some(v.trim().to_string()),
                        Some(("node.id", v)) => stored_node = v.trim().parse::<i32>().ok(),
                        _ => {}
                    }
                }
                let corrupt = |what: &str| Error::Corrupt {
                    path: path.clone(),
                    reason: format!("missing {what}"),
                };
                let cluster_id = cluster_id.ok_or_else(|| corrupt("cluster.id"))?;
                let stored_node = stored_node.ok_or_else(|| corrupt("node.id"))?;
                if stored_node != node_id {
                    return Err(Error::config(
                        "node.id",
                        format!(
                            "is {node_id} but {} was formatted for node {stored_node}",
                            data_dir.display()
                        ),
                    ));
                }
                Ok(ClusterMeta {
                    cluster_id,
                    node_id,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).at(data_dir)?;
                let meta = ClusterMeta {
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                meta.write(data_dir)?;
                Ok(meta)
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// A cluster id as Kafka makes them: a random UUID in URL-safe base64.
fn new_cluster_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = MetadataStore::open(dir.path()).expect("open");
        let t = TopicMetadata {
            name: "orders".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            replication_factor: 1,
            configs: TopicConfigs::default(),
        };
        s.insert(t.clone()).expect("insert");
        let s = MetadataStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get("orders"), Some(&t));
        assert_eq!(s.name_of(&t.id), Some("orders"));
    }

    #[test]
    fn node_id_mismatch_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ClusterMeta::load_or_format(dir.path(), 1).expect("format");
        let b = ClusterMeta::load_or_format(dir.path(), 1).expect("load");
        assert_eq!(a, b);
        let e = ClusterMeta::load_or_format(dir.path(), 2).expect_err("must be refused");
        assert!(e.to_string().contains("node.id"));
    }
}
