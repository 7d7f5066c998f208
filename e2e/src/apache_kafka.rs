//! Apache Kafka itself as a peer process, started by `e2e/kafka/kafka.sh`
//! (KRaft nodes in combined mode on loopback; decision 0026): the oracle of
//! the differential tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::free_port_list;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/kafka.sh")
}

/// Running Apache Kafka nodes; stopped when dropped.
#[derive(Debug)]
pub struct ApacheKafka {
    dir: PathBuf,
    ports: Vec<u16>,
}

impl ApacheKafka {
    /// Starts `n` nodes (ids `0..n`, all voting) with data under `dir`;
    /// returns once Metadata lists all of them.
    pub fn start(dir: &Path, n: usize) -> Result<Self> {
        Self::start_with(dir, n, |_, _| String::new())
    }

    /// As [`ApacheKafka::start`], with settings added to each node's
    /// `server.properties` (a key given again wins): `extra(port,
    /// controller_port)` of node 0 (the nodes share them).
    pub fn start_with(
        dir: &Path,
        n: usize,
        extra: impl FnOnce(u16, u16) -> String,
    ) -> Result<Self> {
        let ports = free_port_list(2 * n)?;
        let list = |ps: &[u16]| ps.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let extra_file = dir.join("extra.properties");
        std::fs::write(&extra_file, extra(ports[0], ports[n]))
            .with_context(|| format!("writing {}", extra_file.display()))?;
        let out = Command::new(script())
            .env("KAFKA_EXTRA_PROPERTIES", &extra_file)
            .arg("start")
            .arg(dir)
            .arg(list(&ports[..n]))
            .arg(list(&ports[n..]))
            .output()
            .with_context(|| format!("running {}", script().display()))?;
        ensure!(
            out.status.success(),
            "kafka.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(ApacheKafka {
            dir: dir.to_path_buf(),
            ports: ports[..n].to_vec(),
        })
    }

    /// `host:port` of node `i`.
    pub fn bootstrap_of(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Every node, comma-separated.
    pub fn bootstrap(&self) -> String {
        (0..self.ports.len())
            .map(|i| self.bootstrap_of(i))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
