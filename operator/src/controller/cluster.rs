//! The KafkaCluster reconciler: server-side applies the owned objects
//! (one field manager), then observes the StatefulSet, the broker pods and
//! the cluster's metadata, and writes the status.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conditions;
use crate::context::{Context, FIELD_MANAGER, object_key};
use crate::crd::KafkaCluster;
use crate::error::{Error, Result};
use crate::resources::{self, RenderError};
use crate::status::{self, READY};

pub const CONTROLLER: &str = "kafkacluster";

/// Server-side applies `obj` with the operator's field manager, taking
/// over fields another manager set (the operator owns these objects).
pub async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(Error::kube(format!("apply {} {ns}/{name}", K::kind(&()))))
}

/// Every owned object, rendered before any is applied so that an invalid
/// spec changes nothing.
struct Children {
    service_account: k8s_openapi::api::core::v1::ServiceAccount,
    config_map: k8s_openapi::api::core::v1::ConfigMap,
    headless: k8s_openapi::api::core::v1::Service,
    bootstrap: k8s_openapi::api::core::v1::Service,
    pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget,
    statefulset: StatefulSet,
}

fn render(kc: &KafkaCluster) -> std::result::Result<Children, RenderError> {
    Ok(Children {
        service_account: resources::service_account(kc)?,
        config_map: resources::config_map(kc)?,
        headless: resources::headless_service(kc)?,
        bootstrap: resources::bootstrap_service(kc)?,
        pdb: resources::pod_disruption_budget(kc)?,
        statefulset: resources::statefulset(kc)?,
    })
}

pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = kc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = kc.name_any();
    let now = Timestamp::now();

    let children = match render(&kc) {
        Ok(c) => c,
        Err(e) => {
            // Nothing is applied; the user has to change the spec.
            let was_invalid = kc
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
                .is_some_and(|c| c.reason == "InvalidSpec" && c.message == e.to_string());
            crate::context::write_status(
                &ctx,
                &*kc,
                &status::invalid_spec(&kc, &e.to_string(), now),
            )
            .await?;
            if !was_invalid {
                ctx.event(
                    &*kc,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    e.to_string(),
                )
                .await;
            }
            ctx.succeeded(&object_key(&*kc));
            return Ok(Action::await_change());
        }
    };

    apply(&ctx, &ns, &children.service_account).await?;
    apply(&ctx, &ns, &children.config_map).await?;
    apply(&ctx, &ns, &children.headless).await?;
    apply(&ctx, &ns, &children.bootstrap).await?;
    apply(&ctx, &ns, &children.pdb).await?;
    let sts = apply(&ctx, &ns, &children.statefulset).await?;

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels(&resources::selector_string(&kc)))
        .await
        .map_err(Error::kube(format!("list broker pods of {ns}/{name}")))?
        .items;

    let cluster = match ctx.admin(&kc).await {
        Ok(mut admin) => admin.describe_cluster().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let new = status::compute(
        &kc,
        &status::Observed {
            statefulset: Some(&sts),
            pods: &pods,
            cluster: cluster.as_ref().map_err(Clone::clone),
        },
        now,
    );
    crate::context::write_status(&ctx, &*kc, &new).await?;

    let before = kc
        .status
        .as_ref()
        .and_then(|s| conditions::status_of(&s.conditions, READY).map(str::to_string));
    let after = conditions::status_of(&new.conditions, READY).map(str::to_string);
    if before != after {
        let msg = new
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        match after.as_deref() {
            Some("True") => {
                ctx.event(&*kc, EventType::Normal, "Ready", "Reconcile", msg)
                    .await
            }
            _ if before.as_deref() == Some("True") => {
                ctx.event(&*kc, EventType::Warning, "NotReady", "Reconcile", msg)
                    .await
            }
            _ => {}
        }
    }

    ctx.succeeded(&object_key(&*kc));
    let settled = after.as_deref() == Some("True");
    Ok(Action::requeue(if settled {
        ctx.settings.resync
    } else {
        ctx.settings.poll
    }))
}

pub fn error_policy(kc: Arc<KafkaCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.metric_label());
    let delay = ctx.backoff(&object_key(&*kc));
    tracing::warn!(
        cluster = %kc.name_any(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}
