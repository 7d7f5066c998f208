//! Cluster DNS on this machine: the names pods and Services have in a
//! cluster (`demo-0.demo-brokers.kafka.svc`, `demo-bootstrap.kafka.svc`,
//! each also under `.cluster.local`) written into a block of `/etc/hosts`
//! that this agent owns, so that brokers, the operator and clients on the
//! host (kcat) resolve them as they would in a pod. A Service name maps to
//! the addresses of the pods it selects (ready ones, or every running one
//! with `publishNotReadyAddresses`): there is no kube-proxy, so a Service
//! is as a headless one. The block is removed when the agent stops.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ip(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.pod_ip.as_deref()
}

/// `(address, name)` lines for these pods and services.
pub fn entries(pods: &[Pod], services: &[Service]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let live = |p: &&Pod| p.metadata.deletion_timestamp.is_none() && ip(p).is_some();
    for p in pods.iter().filter(live) {
        let spec = p.spec.as_ref();
        if let (Some(h), Some(sub)) = (
            spec.and_then(|s| s.hostname.as_deref()),
            spec.and_then(|s| s.subdomain.as_deref()),
        ) {
            let ns = p.namespace().unwrap_or_default();
            let ip = ip(p).unwrap_or_default().to_string();
            out.insert((ip.clone(), format!("{h}.{sub}.{ns}.svc")));
            out.insert((ip, format!("{h}.{sub}.{ns}.svc.cluster.local")));
        }
    }
    for s in services {
        let ns = s.namespace().unwrap_or_default();
        let spec = s.spec.clone().unwrap_or_default();
        let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
            continue;
        };
        let not_ready_too = spec.publish_not_ready_addresses == Some(true);
        for p in pods.iter().filter(live) {
            let labels = p.labels();
            let selected = p.namespace().unwrap_or_default() == ns
                && selector.iter().all(|(k, v)| labels.get(k) == Some(v));
            if selected && (not_ready_too || ready(p)) {
                let ip = ip(p).unwrap_or_default().to_string();
                out.insert((ip.clone(), format!("{}.{ns}.svc", s.name_any())));
                out.insert((ip, format!("{}.{ns}.svc.cluster.local", s.name_any())));
            }
        }
    }
    out
}

fn markers(tag: &str) -> (String, String) {
    (
        format!("# BEGIN process-kubelet {tag}"),
        format!("# END process-kubelet {tag}"),
    )
}

/// The hosts file with this agent's block replaced by `lines` (or removed).
pub fn render(current: &str, tag: &str, lines: &BTreeSet<(String, String)>) -> String {
    let (begin, end) = markers(tag);
    let mut out = String::new();
    let mut inside = false;
    for line in current.lines() {
        if line == begin {
            inside = true;
        } else if line == end {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !lines.is_empty() {
        out.push_str(&begin);
        out.push('\n');
        for (ip, name) in lines {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
        out.push_str(&end);
        out.push('\n');
    }
    out
}

pub fn write(path: &Path, tag: &str, lines: &BTreeSet<(String, String)>) -> Result<()> {
    let current =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let next = render(&current, tag, lines);
    if next == current {
        return Ok(());
    }
    // Replace atomically where the file is ours to rename; a bind-mounted
    // /etc/hosts (as in containers) can only be rewritten in place.
    let tmp = path.with_extension("process-kubelet.tmp");
    let renamed = std::fs::write(&tmp, &next).and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(path, &next).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub async fn run(agent: Arc<Agent>, path: std::path::PathBuf, stop: CancellationToken) {
    let tag = agent.state_dir.to_string_lossy().into_owned();
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let services: Api<Service> = Api::all(agent.client.clone());
    loop {
        let lp = ListParams::default();
        match (pods.list(&lp).await, services.list(&lp).await) {
            (Ok(p), Ok(s)) => {
                if let Err(e) = write(&path, &tag, &entries(&p.items, &s.items)) {
                    tracing::warn!("{e:#}");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!("hosts: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Err(e) = write(&path, &tag, &BTreeSet::new()) {
        tracing::warn!("removing the hosts block: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_and_services_resolve_and_the_block_is_replaced() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0", "namespace": "kafka", "labels": {"app": "demo"}},
            "spec": {"hostname": "demo-0", "subdomain": "demo-brokers", "containers": []},
            "status": {"podIP": "127.1.1.2", "conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .expect("pod");
        let svc = |name: &str, publish: bool| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kafka"},
                "spec": {"selector": {"app": "demo"}, "publishNotReadyAddresses": publish}
            }))
            .expect("svc")
        };
        let e = entries(
            &[pod],
            &[svc("demo-brokers", true), svc("demo-bootstrap", false)],
        );
        let names: Vec<_> = e.iter().map(|(_, n)| n.as_str()).collect();
        assert!(
            names.contains(&"demo-0.demo-brokers.kafka.svc"),
            "{names:?}"
        );
        assert!(names.contains(&"demo-brokers.kafka.svc"), "{names:?}");
        assert!(
            !names.contains(&"demo-bootstrap.kafka.svc"),
            "not ready: {names:?}"
        );

        let base = "127.0.0.1\tlocalhost\n";
        let once = render(base, "t", &e);
        assert!(
            once.starts_with(base) && once.contains("127.1.1.2\tdemo-0.demo-brokers.kafka.svc\n")
        );
        assert_eq!(render(&once, "t", &e), once, "replaced, not appended");
        assert_eq!(render(&once, "t", &BTreeSet::new()), base);
    }
}
