//! A local volume provisioner and resizer for the StorageClass
//! `sluice-local` (the default class): a claim the scheduler has placed on
//! one of this agent's nodes (`WaitForFirstConsumer`) gets a `local`
//! PersistentVolume, a directory on that node's disk with node affinity to
//! it; a released volume of reclaim policy Delete is removed with its
//! directory; a claim asking for more than its volume holds is expanded in
//! place (directories have no size: the capacity is what the API says).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;

pub const CLASS: &str = "sluice-local";
pub const PROVISIONER: &str = "sluice.dev/local-dir";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

use sluice_operator::storage::{bytes, claim_size as request};

pub async fn ensure_class(agent: &Agent) -> Result<()> {
    let classes: Api<StorageClass> = Api::all(agent.client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    });
    classes
        .patch(
            CLASS,
            &PatchParams::apply("process-kubelet").force(),
            &Patch::Apply(&class),
        )
        .await
        .context("creating the StorageClass sluice-local")?;
    Ok(())
}

async fn provision(agent: &Agent, pvc: &PersistentVolumeClaim, node: &str) -> Result<()> {
    let Some(n) = agent.node(node) else {
        return Ok(());
    };
    let uid = pvc.uid().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let dir = n.dir.join("volumes").join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": request(pvc).unwrap_or_else(|| "1Gi".into())},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": dir.to_string_lossy()},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": pvc.namespace(), "name": pvc.name_any(), "uid": uid},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }))?;
    match Api::<PersistentVolume>::all(agent.client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            tracing::info!(claim = %pvc.name_any(), %node, "provisioned {}", dir.display());
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating a PersistentVolume"),
    }
}

async fn expand(agent: &Agent, pvc: &PersistentVolumeClaim) -> Result<()> {
    let (Some(want), Some(volume)) = (
        request(pvc),
        pvc.spec.as_ref().and_then(|s| s.volume_name.clone()),
    ) else {
        return Ok(());
    };
    let have = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());
    let (Some(w), Some(h)) = (bytes(&want), have.as_deref().and_then(bytes)) else {
        return Ok(());
    };
    if w <= h {
        return Ok(());
    }
    let pvs: Api<PersistentVolume> = Api::all(agent.client.clone());
    pvs.patch(
        &volume,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"capacity": {"storage": want}}})),
    )
    .await
    .context("expanding a PersistentVolume")?;
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(agent.client.clone(), &pvc.namespace().unwrap_or_default());
    claims
        .patch_status(
            &pvc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"capacity": {"storage": want}, "conditions": null,
                                             "allocatedResources": {"storage": want}}}),
            ),
        )
        .await
        .context("reporting an expanded claim")?;
    tracing::info!(claim = %pvc.name_any(), "expanded from {} to {want}", have.unwrap_or_default());
    Ok(())
}

async fn once(agent: &Agent) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(agent.client.clone());
    for pvc in claims.list(&ListParams::default()).await?.items {
        let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
        if class.as_deref() != Some(CLASS) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let bound = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .is_some();
        if !bound {
            if let Some(node) = pvc.annotations().get(SELECTED_NODE).cloned() {
                provision(agent, &pvc, &node).await?;
            }
        } else {
            expand(agent, &pvc).await?;
        }
    }
    let pvs: Api<PersistentVolume> = Api::all(agent.client.clone());
    for pv in pvs.list(&ListParams::default()).await?.items {
        let ours = pv
            .annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str)
            == Some(PROVISIONER);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if ours && released && delete {
            if let Some(path) = pv
                .spec
                .as_ref()
                .and_then(|s| s.local.as_ref())
                .map(|l| l.path.clone())
                && path.starts_with(&*agent.state_dir.to_string_lossy())
            {
                let _ = std::fs::remove_dir_all(Path::new(&path));
            }
            let _ = pvs.delete(&pv.name_any(), &DeleteParams::default()).await;
            tracing::info!(volume = %pv.name_any(), "released volume deleted");
        }
    }
    Ok(())
}

pub async fn run(agent: Arc<Agent>, stop: CancellationToken) {
    loop {
        if let Err(e) = once(&agent).await {
            tracing::warn!("provisioner: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
