//! The sync loop: every pod bound to one of this agent's nodes gets a
//! worker; a pod being deleted has its worker told to stop; a pod gone
//! from the API (force-deleted) or on a stopped node has its processes
//! killed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::worker::{self, PodHandle};

fn grace_of(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64
}

pub async fn sync_loop(agent: Arc<Agent>, stop: CancellationToken) {
    let mut handles: BTreeMap<String, PodHandle> = BTreeMap::new();
    let api: Api<Pod> = Api::all(agent.client.clone());
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => sync_once(&agent, &mut handles, list.items).await,
            Err(e) => tracing::warn!("listing pods: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.cancelled() => break,
        }
    }
    // Shutting down: every process gets SIGTERM and a short grace.
    for h in handles.values() {
        h.grace
            .store(h.grace.load(Ordering::Relaxed).min(5), Ordering::Relaxed);
        h.kill.cancel();
    }
    for (_, h) in handles {
        let _ = h.task.await;
    }
}

async fn sync_once(agent: &Arc<Agent>, handles: &mut BTreeMap<String, PodHandle>, pods: Vec<Pod>) {
    let mut listed = HashSet::new();
    for pod in pods {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let Some(node) = agent.node(&node_name).cloned() else {
            continue;
        };
        let uid = pod.uid().unwrap_or_default();
        listed.insert(uid.clone());
        if agent.is_stopped(&node_name) {
            continue;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if let Some(h) = handles.get(&uid) {
            if deleting && !h.terminate.is_cancelled() {
                h.grace.store(grace_of(&pod), Ordering::Relaxed);
                h.terminate.cancel();
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        if deleting {
            // Never ran here (or ran before this agent started): nothing to stop.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let _ = Api::<Pod>::namespaced(agent.client.clone(), &ns)
                .delete(&pod.name_any(), &dp)
                .await;
            continue;
        }
        let ip = match agent.allocate_ip(&node, &uid) {
            Ok(ip) => ip,
            Err(e) => {
                tracing::error!("{e}");
                continue;
            }
        };
        tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), node = %node_name, %ip, "starting pod");
        let terminate = CancellationToken::new();
        let kill = CancellationToken::new();
        let grace = Arc::new(AtomicU64::new(grace_of(&pod)));
        let task = tokio::spawn(worker::run(
            agent.clone(),
            pod,
            node,
            ip,
            terminate.clone(),
            kill.clone(),
            grace.clone(),
        ));
        handles.insert(
            uid,
            PodHandle {
                node: node_name,
                terminate,
                grace,
                kill,
                task,
            },
        );
    }
    for (uid, h) in handles.iter() {
        if !listed.contains(uid) || agent.is_stopped(&h.node) {
            h.kill.cancel();
        }
    }
    let done: Vec<String> = handles
        .iter()
        .filter(|(uid, h)| {
            h.task.is_finished() && (h.kill.is_cancelled() || !listed.contains(*uid))
        })
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in done {
        handles.remove(&uid);
        agent.release_ip(&uid);
    }
}
