//! Running the controllers: one `kube` Controller per resource, stopped
//! together, and leader election on a Lease so that only one operator
//! replica reconciles at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller::{cluster, topic, user};
use crate::crd::{KafkaCluster, KafkaUser, Topic};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = ()>,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K: DeserializeOwned,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the three controllers until `stop` is cancelled; in-flight reconciles
/// finish first.
pub async fn controllers(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    // Owned objects are watched by label, not every Service in the cluster.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=sluice-operator");
    let clusters = Controller::new(api::<KafkaCluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        // The certificate Secrets: a CA asked to renew
        // (`sluice.dev/force-renew`) or a Secret edited by hand is seen
        // at once.
        .owns(api::<Secret>(&client, ns), owned)
        // Broker pods belong to the StatefulSet, not to the KafkaCluster:
        // watched by their labels so that a pod turning unready (its node
        // stopped reporting) shows in the status at once, not at the next
        // resync.
        .watches(
            api::<Pod>(&client, ns),
            watcher::Config::default().labels("app.kubernetes.io/component=broker"),
            |pod: Pod| {
                let cluster = pod.labels().get("app.kubernetes.io/instance")?.clone();
                Some(ObjectRef::<KafkaCluster>::new(&cluster).within(&pod.namespace()?))
            },
        )
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "KafkaCluster controller");
            }
        });
    let topics = Controller::new(api::<Topic>(&client, ns), watcher::Config::default())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(topic::reconcile, topic::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "Topic controller");
            }
        });
    // A user's Secret deleted or edited: its credential is set again.
    let users = Controller::new(api::<KafkaUser>(&client, ns), watcher::Config::default())
        .owns(
            api::<Secret>(&client, ns),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=sluice-operator"),
        )
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(user::reconcile, user::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "KafkaUser controller");
            }
        });
    tracing::info!(namespace = ns.unwrap_or("<all>"), "controllers running");
    tokio::join!(clusters, topics, users);
}

/// How this replica competes for leadership.
#[derive(Debug, Clone)]
pub struct Lease {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration_secs: u64,
    pub grace_secs: u64,
}

/// Why the operator stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to (SIGTERM / Ctrl-C).
    Shutdown,
    /// Another replica took the lease: the caller exits and restarts, the
    /// way controller-runtime operators do, so that no stale state runs on.
    LostLease,
}

/// Waits for the lease, runs the controllers while it is held, releases it
/// on shutdown.
pub async fn with_leader_election(
    ctx: Arc<Context>,
    namespace: Option<String>,
    lease: Lease,
    shutdown: CancellationToken,
) -> Result<Stopped, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_secs)
        .with_grace(lease.grace_secs)
        .with_field_manager(crate::context::FIELD_MANAGER)
        .build()
        .await?;
    let (mut leader, task) = manager.watch().await;
    // A standby replica is healthy and ready: it serves as a spare.
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = %lease.name, identity = %lease.identity, "waiting for the leader lease");
    let stopped = loop {
        if *leader.borrow_and_update() {
            break None;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Some(Stopped::Shutdown),
            changed = leader.changed() => if changed.is_err() { break Some(Stopped::LostLease) },
        }
    };
    let stopped = match stopped {
        Some(s) => s,
        None => {
            tracing::info!(identity = %lease.identity, "leader lease acquired");
            ctx.metrics.leader.set(1);
            let stop = CancellationToken::new();
            let run = controllers(ctx.clone(), namespace, stop.clone());
            tokio::pin!(run);
            let why = tokio::select! {
                _ = &mut run => Stopped::Shutdown,
                _ = shutdown.cancelled() => Stopped::Shutdown,
                _ = async {
                    while leader.changed().await.is_ok() {
                        if !*leader.borrow_and_update() {
                            return;
                        }
                    }
                } => Stopped::LostLease,
            };
            stop.cancel();
            run.await;
            ctx.metrics.leader.set(0);
            why
        }
    };
    // Dropping the receiver makes the manager release the lease.
    drop(leader);
    match task.await {
        Ok(Ok(_)) => tracing::info!("leader lease released"),
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease"),
        Err(e) => tracing::warn!(error = %e, "lease task"),
    }
    Ok(stopped)
}
