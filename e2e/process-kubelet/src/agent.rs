//! What every loop of the agent shares: the API client, the nodes it runs,
//! the images it can run, the pod addresses it hands out.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{Result, bail};
use kube::Client;
use parking_lot::Mutex;

use crate::spec::ImageMap;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub index: usize,
    /// The second octet of every address on this node.
    pub pod_net: u8,
    pub zone: String,
    /// The node's own address, 127.<pod_net>.<index+1>.1; its pods get the others of that /24.
    pub host_ip: String,
    /// The node's disk: pod directories and local volumes.
    pub dir: PathBuf,
}

pub struct Agent {
    pub client: Client,
    pub nodes: Vec<NodeInfo>,
    pub images: Vec<ImageMap>,
    /// The API server as pods reach it (KUBERNETES_SERVICE_HOST/PORT).
    pub apiserver: (String, u16),
    pub state_dir: PathBuf,
    pub stopped: Mutex<HashSet<String>>,
    ips: Mutex<BTreeMap<String, String>>,
}

impl Agent {
    pub fn new(
        client: Client,
        nodes: Vec<NodeInfo>,
        images: Vec<ImageMap>,
        apiserver: (String, u16),
        state_dir: PathBuf,
    ) -> Self {
        Self {
            client,
            nodes,
            images,
            apiserver,
            state_dir,
            stopped: Mutex::new(HashSet::new()),
            ips: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn is_stopped(&self, node: &str) -> bool {
        self.stopped.lock().contains(node)
    }

    /// A free address on the node's /24 for the pod with this uid.
    pub fn allocate_ip(&self, node: &NodeInfo, uid: &str) -> Result<String> {
        let mut ips = self.ips.lock();
        if let Some(ip) = ips.get(uid) {
            return Ok(ip.clone());
        }
        let used: HashSet<&String> = ips.values().collect();
        for host in 2..255 {
            let ip = format!("127.{}.{}.{host}", node.pod_net, node.index + 1);
            if !used.contains(&ip) {
                ips.insert(uid.to_string(), ip.clone());
                return Ok(ip);
            }
        }
        bail!("node {} has no pod address left", node.name)
    }

    pub fn release_ip(&self, uid: &str) {
        self.ips.lock().remove(uid);
    }
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
