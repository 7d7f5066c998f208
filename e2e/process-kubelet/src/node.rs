//! The agent's Nodes: registered with zone labels and capacity, kept alive
//! by status heartbeats and a Lease in `kube-node-lease` every 10 s, as the
//! kubelet does. A node is stopped by creating the file
//! `<state-dir>/stopped/<node>`: its processes are killed and its heartbeats
//! stop, so the node lifecycle controller sees it go; removing the file
//! starts it again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, NodeInfo, now};

const MANAGER: &str = "process-kubelet";

async fn register(agent: &Agent, n: &NodeInfo) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": {
            "kubernetes.io/hostname": n.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": n.zone,
            "node.sluice.dev/process-kubelet": "true",
        }},
        "spec": {"podCIDR": format!("127.{}.{}.0/24", n.pod_net, n.index + 1)},
    });
    nodes
        .patch(
            &n.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await
        .with_context(|| format!("registering node {}", n.name))?;
    Ok(())
}

async fn heartbeat(agent: &Agent, n: &NodeInfo) -> Result<()> {
    let t = now();
    let capacity =
        json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": n.host_ip}, {"type": "Hostname", "address": n.name}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "process-kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": t, "lastTransitionTime": t},
        ],
        "nodeInfo": {
            "machineID": n.name, "systemUUID": n.name, "bootID": n.name,
            "kernelVersion": "process", "osImage": "process-kubelet",
            "containerRuntimeVersion": "process://0.1", "kubeletVersion": "v1.33.13",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    }});
    let nodes: Api<Node> = Api::all(agent.client.clone());
    nodes
        .patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("node {} status", n.name))?;
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": n.name},
        "spec": {"holderIdentity": n.name, "leaseDurationSeconds": 40,
                 "renewTime": micro_now()},
    });
    leases
        .patch(
            &n.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .with_context(|| format!("node {} lease", n.name))?;
    Ok(())
}

/// MicroTime as the API server parses it: RFC 3339 with microseconds.
fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

pub async fn register_all(agent: &Agent) -> Result<()> {
    for n in &agent.nodes {
        register(agent, n).await?;
        // The API server makes kube-node-lease shortly after it starts.
        if let Err(e) = heartbeat(agent, n).await {
            tracing::warn!("{e:#}; retried with the next heartbeat");
        }
    }
    Ok(())
}

pub async fn heartbeat_loop(agent: Arc<Agent>, stop: CancellationToken) {
    let stopped_dir = agent.state_dir.join("stopped");
    let mut last_beat: Option<std::time::Instant> = None;
    loop {
        // The stop files, read every second; a node coming back beats at once.
        let mut came_back = false;
        for n in &agent.nodes {
            let now_stopped = stopped_dir.join(&n.name).exists();
            let mut set = agent.stopped.lock();
            if now_stopped && set.insert(n.name.clone()) {
                tracing::warn!(node = %n.name, "node stopped: its processes are killed, its heartbeats stop");
            } else if !now_stopped && set.remove(&n.name) {
                tracing::info!(node = %n.name, "node started again");
                came_back = true;
            }
        }
        if came_back || last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            last_beat = Some(std::time::Instant::now());
            for n in &agent.nodes {
                if agent.is_stopped(&n.name) {
                    continue;
                }
                if let Err(e) = heartbeat(&agent, n).await {
                    tracing::warn!("{e:#}");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
