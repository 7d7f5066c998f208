//! The KafkaCluster reconciler: server-side applies the owned objects
//! (one field manager), then observes the StatefulSet, the broker pods and
//! the cluster's metadata, and writes the status.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::brokers::Brokers;
use crate::conditions;
use crate::context::{Context, FIELD_MANAGER, object_key};
use crate::crd::KafkaCluster;
use crate::error::{Error, Result};
use crate::plan::roll::RollStep;
use crate::plan::voters::{self, VoterStep};
use crate::plan::{Desired, Step};
use crate::quorum;
use crate::rebalance;
use crate::resources::{self, RenderError};
use crate::rolling;
use crate::status::{self, READY};
use crate::storage;

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
    /// At `spec.replicas`, applied once a scale-down has drained.
    drained_statefulset: StatefulSet,
}

fn render(kc: &KafkaCluster, brokers: i32) -> std::result::Result<Children, RenderError> {
    Ok(Children {
        service_account: resources::service_account(kc)?,
        config_map: resources::config_map(kc)?,
        headless: resources::headless_service(kc)?,
        bootstrap: resources::bootstrap_service(kc)?,
        pdb: resources::pod_disruption_budget(kc)?,
        statefulset: resources::statefulset_with_replicas(kc, brokers)?,
        drained_statefulset: resources::statefulset(kc)?,
    })
}

pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = kc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = kc.name_any();
    let now = Timestamp::now();
    let previous = kc.status.clone().unwrap_or_default();
    let want = kc.spec.replicas;
    // A scale-down keeps the leaving brokers until their replicas moved.
    let applied_before = previous.applied_replicas.unwrap_or(want);
    let draining = want < applied_before;
    let brokers = if draining { applied_before } else { want };

    let mut children = match render(&kc, brokers) {
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
    let volumes = match volumes_pass(&ctx, &kc, &previous, &mut children).await? {
        Some(v) => v,
        // The StatefulSet is being recreated around its pods.
        None => return Ok(Action::requeue(std::time::Duration::from_secs(1))),
    };
    // A secured cluster's certificates are there before its pods.
    if resources::secured(&kc) {
        crate::certs::reconcile(&ctx, &kc, brokers).await?;
    }
    let reach = ctx.brokers(&kc).await?;
    let sts = apply(&ctx, &ns, &children.statefulset).await?;

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels(&resources::selector_string(&kc)))
        .await
        .map_err(Error::kube(format!("list broker pods of {ns}/{name}")))?
        .items;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claims = claims
        .list(&ListParams::default().labels(&resources::selector_string(&kc)))
        .await
        .map_err(Error::kube(format!(
            "list broker volume claims of {ns}/{name}"
        )))?
        .items;

    let cluster = match reach.connect_any(ctx.settings.admin_timeout).await {
        Ok(mut admin) => admin.describe_cluster().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Partition sizes, only while a broker rebuilds on a new volume.
    let rebuilding = (0..brokers).any(|id| {
        let before = previous.brokers.iter().find(|b| b.id == id);
        let uid = status::claim_uid(&claims, &status::claim_name(&name, id));
        before.is_some_and(|b| b.state == "Rebuilding") || status::volume_replaced(before, uid)
    });
    let sizes = match (&cluster, rebuilding) {
        (Ok(info), true) => {
            Some(rebalance::sizes_by_broker(&reach, info, ctx.settings.admin_timeout).await)
        }
        _ => None,
    };
    let mut new = status::compute(
        &kc,
        &status::Observed {
            statefulset: Some(&sts),
            pods: &pods,
            claims: &claims,
            sizes: sizes.as_ref(),
            cluster: cluster.as_ref().map_err(Clone::clone),
        },
        now,
    );
    rebuild_events(&ctx, &kc, &previous, &new).await;
    // The claims of the brokers the StatefulSet runs (a scale-down leaves
    // the others behind, unused, as `storage.deleteClaim` says).
    let in_use: Vec<PersistentVolumeClaim> = claims
        .iter()
        .filter(|c| {
            (0..brokers)
                .any(|id| c.metadata.name.as_deref() == Some(&status::claim_name(&name, id)))
        })
        .cloned()
        .collect();
    let volumes = match (
        volumes,
        storage::not_expanded(&in_use, &kc.spec.storage.size),
    ) {
        ((false, "UpToDate", _), waiting) if !waiting.is_empty() => (
            true,
            "Expanding",
            format!(
                "{} of {} volumes do not report {} yet: {}",
                waiting.len(),
                in_use.len(),
                kc.spec.storage.size,
                waiting.join(", ")
            ),
        ),
        (v, _) => v,
    };
    // Claims report their new size without an event the controller
    // watches: it looks again soon while any is expanding.
    let expanding = volumes.0;
    conditions::set(
        &mut new.conditions,
        conditions::Wanted {
            type_: storage::VOLUMES,
            status: volumes.0,
            reason: volumes.1,
            message: volumes.2,
        },
        kc.metadata.generation,
        now,
    );
    let mut applied = brokers;
    let mut scaled_down = false;
    // The metadata quorum: shown in status, and its voters follow the
    // brokers (see `voter_pass`).
    let quorum_seen = match &cluster {
        Ok(_) => quorum::observe(&reach, ctx.settings.admin_timeout)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let initial_voters = previous
        .quorum
        .as_ref()
        .and_then(|q| q.initial_voters.clone())
        .or_else(|| Some(resources::quorum_voters(&kc)));
    new.quorum = Some(match &quorum_seen {
        Ok(q) => quorum::status(q, initial_voters),
        Err(_) => crate::crd::QuorumStatus {
            initial_voters,
            ..previous.quorum.clone().unwrap_or_default()
        },
    });
    let voters_off = quorum_seen.as_ref().is_ok_and(|q| {
        wanted_voters(&kc, want)
            .is_none_or(|w| voters::next(&w, &quorum::view(q)) != VoterStep::Idle)
    });
    let rebalancing = previous.balanced_replicas != Some(want)
        || previous
            .plan
            .as_ref()
            .is_some_and(|p| p.phase != "Balanced")
        || voters_off;
    if rebalancing && cluster.is_ok() {
        let voter_plan = match &quorum_seen {
            Ok(q) => voter_pass(&ctx, &kc, &reach, &previous, q, want).await,
            Err(e) => Some(rebalance::plan_status(
                &Step::Wait(format!("the metadata quorum cannot be observed: {e}")),
                want,
                None,
            )),
        };
        let plan = match voter_plan {
            Some(p) => p,
            None => rebalance_pass(&ctx, &kc, &reach, &previous, want).await,
        };
        if plan.phase == "Balanced" {
            new.balanced_replicas = Some(want);
            if draining {
                // Every replica is off the leaving brokers: now they go.
                apply(&ctx, &ns, &children.drained_statefulset).await?;
                applied = want;
                scaled_down = true;
                ctx.event(
                    &*kc,
                    EventType::Normal,
                    "ScaledDown",
                    "Rebalance",
                    format!("every replica moved off brokers {want}..{}; the StatefulSet has {want} pods", applied_before - 1),
                )
                .await;
            }
        }
        if plan.phase == "Refused"
            && previous.plan.as_ref().map(|p| &p.message) != Some(&plan.message)
        {
            ctx.event(
                &*kc,
                EventType::Warning,
                "RebalanceRefused",
                "Rebalance",
                plan.message.clone(),
            )
            .await;
        }
        let active = !matches!(plan.phase.as_str(), "Balanced" | "Refused");
        let reason = match plan.phase.as_str() {
            "Refused" => "Refused",
            "Balanced" => "Balanced",
            "Waiting" => "Waiting",
            "Planned" => "Planned",
            "AwaitingApproval" => "AwaitingApproval",
            "ChangingVoters" => "ChangingVoters",
            _ => "Moving",
        };
        conditions::set(
            &mut new.conditions,
            conditions::Wanted {
                type_: status::REBALANCING,
                status: active,
                reason,
                message: plan.message.clone(),
            },
            kc.metadata.generation,
            now,
        );
        new.plan = Some(plan);
    }
    new.applied_replicas = Some(applied);
    // Brokers that left: unregistered once their pods are gone (ids the
    // StatefulSet has again after a scale-up are not touched).
    let mut leaving: Vec<i32> = previous
        .unregistering
        .iter()
        .copied()
        .filter(|id| *id >= applied)
        .collect();
    if scaled_down {
        leaving.extend(want..applied_before);
    }
    leaving.sort_unstable();
    leaving.dedup();
    if !leaving.is_empty() && cluster.is_ok() {
        leaving = unregister_pass(&ctx, &kc, &pods, leaving).await;
    }
    new.unregistering = leaving;
    let rolling = roll_pass(&ctx, &kc, &reach, &sts, &pods, &cluster, &new, applied).await?;
    conditions::set(
        &mut new.conditions,
        conditions::Wanted {
            type_: status::ROLLING_RESTART,
            status: rolling.0,
            reason: rolling.1,
            message: rolling.2.clone(),
        },
        kc.metadata.generation,
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
    let settled = after.as_deref() == Some("True")
        && !rolling.0
        && !expanding
        && new
            .plan
            .as_ref()
            .is_none_or(|p| matches!(p.phase.as_str(), "Balanced" | "Refused"));
    Ok(Action::requeue(if settled {
        ctx.settings.resync
    } else {
        ctx.settings.poll
    }))
}

/// Storage growth (see `storage`): `(in progress, reason, message)` for the
/// VolumeExpansion condition, or `None` while the StatefulSet is recreated.
async fn volumes_pass(
    ctx: &Context,
    kc: &KafkaCluster,
    previous: &crate::crd::KafkaClusterStatus,
    children: &mut Children,
) -> Result<Option<(bool, &'static str, String)>> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get StatefulSet {ns}/{name}")))?;
    if current
        .as_ref()
        .is_some_and(|s| s.metadata.deletion_timestamp.is_some())
    {
        return Ok(None);
    }
    let said_before = |reason: &str| {
        previous
            .conditions
            .iter()
            .any(|c| c.type_ == storage::VOLUMES && c.reason == reason)
    };
    let size = &kc.spec.storage.size;
    let (from, to) = match storage::resize(current.as_ref(), size) {
        storage::Resize::Unchanged => {
            return Ok(Some((
                false,
                "UpToDate",
                format!("every volume asks for {size}"),
            )));
        }
        storage::Resize::Shrink { from, to } => {
            storage::set_template_size(&mut children.statefulset, &from);
            storage::set_template_size(&mut children.drained_statefulset, &from);
            let msg = format!(
                "storage.size {to} is smaller than the brokers' volumes ({from}): a volume cannot shrink; set {from} or more"
            );
            if !said_before("ShrinkRefused") {
                ctx.event(
                    kc,
                    EventType::Warning,
                    "VolumeShrinkRefused",
                    "Resize",
                    msg.clone(),
                )
                .await;
            }
            return Ok(Some((false, "ShrinkRefused", msg)));
        }
        storage::Resize::Grow { from, to } => (from, to),
    };
    let replicas = current
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
    for id in 0..replicas {
        let claim = status::claim_name(&name, id);
        let Some(c) = claims
            .get_opt(&claim)
            .await
            .map_err(Error::kube(format!("get claim {ns}/{claim}")))?
        else {
            continue;
        };
        if storage::claim_size(&c).and_then(|s| storage::bytes(&s)) >= storage::bytes(&to) {
            continue;
        }
        if let Err(e) = claims
            .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // For instance a StorageClass without allowVolumeExpansion.
            storage::set_template_size(&mut children.statefulset, &from);
            storage::set_template_size(&mut children.drained_statefulset, &from);
            let msg = format!("expanding {claim} from {from} to {to} was refused: {e}");
            if !said_before("ExpansionRefused") {
                ctx.event(
                    kc,
                    EventType::Warning,
                    "VolumeExpansionRefused",
                    "Resize",
                    msg.clone(),
                )
                .await;
            }
            return Ok(Some((false, "ExpansionRefused", msg)));
        }
    }
    // The claim template cannot change: recreate the StatefulSet around
    // its running pods.
    api.delete(
        &name,
        &kube::api::DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..kube::api::DeleteParams::default()
        },
    )
    .await
    .map_err(Error::kube(format!(
        "orphan-delete StatefulSet {ns}/{name}"
    )))?;
    ctx.event(
        kc,
        EventType::Normal,
        "ExpandingVolumes",
        "Resize",
        format!(
            "{replicas} broker volumes asked to grow from {from} to {to}; the StatefulSet is recreated around its running pods"
        ),
    )
    .await;
    Ok(None)
}

/// Unregisters the brokers of `leaving` whose pods are gone; returns the
/// ones still registered (pod still there, broker not yet fenced, or the
/// cluster unreachable: tried again next pass).
async fn unregister_pass(
    ctx: &Context,
    kc: &KafkaCluster,
    pods: &[Pod],
    leaving: Vec<i32>,
) -> Vec<i32> {
    const BROKER_ID_NOT_REGISTERED: i16 = 102;
    let name = kc.name_any();
    let mut admin = match ctx.admin(kc).await {
        Ok(a) => a,
        Err(_) => return leaving,
    };
    let mut still = Vec::new();
    let mut gone = Vec::new();
    for id in leaving {
        let pod = format!("{name}-{id}");
        if pods
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
        {
            still.push(id);
            continue;
        }
        match admin.unregister_broker(id).await {
            Ok(()) => gone.push(id),
            Err(e) if sluice_client::error_code(&e) == Some(BROKER_ID_NOT_REGISTERED) => {}
            Err(e) => {
                tracing::debug!(broker = id, error = %e, "unregistering a removed broker");
                still.push(id);
            }
        }
    }
    if !gone.is_empty() {
        ctx.event(
            kc,
            EventType::Normal,
            "BrokersUnregistered",
            "ScaleDown",
            format!("brokers {gone:?} left the cluster's metadata"),
        )
        .await;
    }
    still
}

/// Events for brokers whose volume was replaced: a Warning when the
/// rebuild starts, a Normal event when every replica is back in sync; and
/// a Warning when a broker's pod cannot be scheduled onto its volume.
async fn rebuild_events(
    ctx: &Context,
    kc: &KafkaCluster,
    previous: &crate::crd::KafkaClusterStatus,
    new: &crate::crd::KafkaClusterStatus,
) {
    for b in &new.brokers {
        let before = previous.brokers.iter().find(|p| p.id == b.id);
        let was = before.is_some_and(|p| p.state == "Rebuilding");
        let is = b.state == "Rebuilding";
        let stranded_before = before.is_some_and(|p| p.state == "VolumeUnreachable");
        if b.state == "VolumeUnreachable" && !stranded_before {
            ctx.event(
                kc,
                EventType::Warning,
                "VolumeUnreachable",
                "Rebuild",
                format!("broker {}: {}", b.id, b.message),
            )
            .await;
        }
        if is && !was {
            let mut msg = format!("broker {}: {}", b.id, b.message);
            let votes = previous
                .quorum
                .as_ref()
                .is_some_and(|q| q.voters.iter().any(|v| v.id == b.id));
            if votes {
                msg.push_str(
                    "; it votes in the metadata quorum, which lost this voter's log: keep the other voters up until it has caught up",
                );
            }
            ctx.event(kc, EventType::Warning, "VolumeReplaced", "Rebuild", msg)
                .await;
        } else if was && !is {
            ctx.event(
                kc,
                EventType::Normal,
                "BrokerRebuilt",
                "Rebuild",
                format!("broker {}: all {} replicas back in sync", b.id, b.replicas),
            )
            .await;
        }
    }
}

/// The voters `spec.quorum` asks for at `want` brokers; `None` when it
/// cannot be met.
fn wanted_voters(kc: &KafkaCluster, want: i32) -> Option<std::collections::BTreeSet<i32>> {
    let spec = kc.spec.quorum.as_ref().and_then(|q| q.voters);
    voters::invalid(spec, want)
        .is_none()
        .then(|| voters::wanted(voters::voter_count(spec, want)))
}

/// The metadata quorum's voters follow the brokers, before any partition
/// moves: a joining broker becomes a voter once it has caught up, and a
/// leaving broker hands its vote on before it drains. One change per
/// pass, shown in `status.plan` before it runs (as moves are). `None`:
/// the voters are as they should be.
async fn voter_pass(
    ctx: &Context,
    kc: &KafkaCluster,
    reach: &Brokers,
    previous: &crate::crd::KafkaClusterStatus,
    q: &sluice_client::QuorumInfo,
    want: i32,
) -> Option<crate::crd::PlanStatus> {
    let spec = kc.spec.quorum.as_ref().and_then(|q| q.voters);
    if let Some(why) = voters::invalid(spec, want) {
        return Some(rebalance::plan_status(&Step::Refused(why), want, None));
    }
    let step = voters::next(
        &voters::wanted(voters::voter_count(spec, want)),
        &quorum::view(q),
    );
    let (verb, id) = match &step {
        VoterStep::Idle => return None,
        VoterStep::Wait(why) => {
            return Some(rebalance::plan_status(&Step::Wait(why.clone()), want, None));
        }
        VoterStep::Add(id) => ("add", *id),
        VoterStep::Remove(id) => ("remove", *id),
    };
    let mut shown = crate::crd::PlanStatus {
        phase: "Planned".into(),
        id: format!("quorum-{verb}-{id}"),
        target_brokers: want,
        message: quorum::describe(&step),
        ..Default::default()
    };
    if !rebalance::shown_before(previous.plan.as_ref(), &shown) {
        return Some(shown);
    }
    let address = |i: i32| resources::internal_address(kc, i);
    match quorum::execute(reach, q, &step, address, ctx.settings.admin_timeout).await {
        Ok(()) => {
            shown.phase = "ChangingVoters".into();
            ctx.event(
                kc,
                EventType::Normal,
                "QuorumVotersChanged",
                "Rebalance",
                shown.message.clone(),
            )
            .await;
        }
        Err(e) => {
            shown.phase = "Waiting".into();
            shown.message = format!("{}: refused: {e}", shown.message);
        }
    }
    Some(shown)
}

/// Moves and elections run only when the same step was planned and shown
/// in status by the previous pass: the plan is visible before it acts,
/// and a restart of the operator resumes from what the cluster reports.
/// With `spec.rebalance.requireApproval`, moves also wait for the
/// `sluice.dev/approved-plan` annotation to name the plan's id. Moves run
/// under the throttle of `spec.rebalance`, removed once balanced.
async fn rebalance_pass(
    ctx: &Context,
    kc: &KafkaCluster,
    reach: &Brokers,
    previous: &crate::crd::KafkaClusterStatus,
    want: i32,
) -> crate::crd::PlanStatus {
    let spec = &kc.spec.rebalance;
    let throttle = (spec.throttle_bytes_per_second > 0).then_some(spec.throttle_bytes_per_second);
    let bootstrap = reach;
    let timeout = ctx.settings.admin_timeout;
    let desired = Desired {
        brokers: (0..want).collect(),
        ..Desired::default()
    };
    let batch = usize::try_from(spec.max_concurrent_moves)
        .unwrap_or(1)
        .max(1);
    let step = match rebalance::plan(bootstrap, &desired, batch, timeout).await {
        Ok(s) => s,
        Err(e) => Step::Wait(format!("the cluster cannot be observed: {e}")),
    };
    let mut shown = rebalance::plan_status(&step, want, throttle);
    shown.id = crate::plan::rebalance_id(want, kc.metadata.generation.unwrap_or(0));
    if matches!(step, Step::Idle) {
        // Balanced: the throttle goes (whoever set it: while the operator
        // rebalances it owns these two settings).
        if previous
            .plan
            .as_ref()
            .is_some_and(|p| p.phase != "Balanced")
            && let Err(e) = rebalance::set_throttle(bootstrap, None, timeout).await
        {
            shown.phase = "Waiting".into();
            shown.message = format!("balanced; removing the replication throttle: {e}");
        }
        return shown;
    }
    if shown.phase != "Planned" {
        return shown;
    }
    let moves = matches!(step, Step::Move(_));
    let approved = !moves
        || !spec.require_approval
        || kc.annotations().get(crate::crd::APPROVED_PLAN_ANNOTATION) == Some(&shown.id);
    if !approved {
        shown.phase = "AwaitingApproval".into();
        shown.message = format!(
            "{}; approve with: kubectl annotate kafkacluster {} {}={} --overwrite",
            shown.message,
            kc.name_any(),
            crate::crd::APPROVED_PLAN_ANNOTATION,
            shown.id
        );
        return shown;
    }
    let planned_before = rebalance::shown_before(previous.plan.as_ref(), &shown);
    if !planned_before {
        return shown;
    }
    if moves
        && let Err(e) =
            rebalance::set_throttle(bootstrap, throttle.map(|t| t as u64), timeout).await
    {
        shown.phase = "Waiting".into();
        shown.message = format!("setting the replication throttle: {e}");
        return shown;
    }
    match rebalance::execute(bootstrap, &step, timeout).await {
        Ok(()) => {
            shown.phase = if moves { "Moving" } else { "Electing" }.into();
        }
        Err(e) => {
            shown.phase = "Waiting".into();
            shown.message = format!("the step was refused: {e}");
        }
    }
    shown
}

/// One step of a rolling restart: `(in progress, reason, message)` for the
/// RollingRestart condition. Deletes at most one broker pod.
#[allow(clippy::too_many_arguments)]
async fn roll_pass(
    ctx: &Context,
    kc: &KafkaCluster,
    reach: &Brokers,
    sts: &StatefulSet,
    pods: &[Pod],
    cluster: &std::result::Result<sluice_client::ClusterInfo, String>,
    new: &crate::crd::KafkaClusterStatus,
    brokers: i32,
) -> Result<(bool, &'static str, String)> {
    let pending = rolling::outdated(sts, pods);
    if pending.is_empty() {
        return Ok((
            false,
            "UpToDate",
            "every broker runs the current pod template".into(),
        ));
    }
    if new
        .plan
        .as_ref()
        .is_some_and(|p| !matches!(p.phase.as_str(), "Balanced" | "Refused"))
    {
        return Ok((
            true,
            "Waiting",
            format!("brokers {pending:?} restart once the partition moves are done"),
        ));
    }
    let info = match cluster {
        Ok(i) => i,
        Err(e) => {
            return Ok((
                true,
                "Waiting",
                format!("the cluster's metadata cannot be read: {e}"),
            ));
        }
    };
    let observed = match rebalance::observe(reach, ctx.settings.admin_timeout).await {
        Ok(o) => o,
        Err(e) => {
            return Ok((
                true,
                "Waiting",
                format!("the cluster cannot be observed: {e}"),
            ));
        }
    };
    // The voters as the quorum shows them (the configured first voters
    // until it has been observed).
    let voters: Vec<i32> = match new.quorum.as_ref().filter(|q| !q.voters.is_empty()) {
        Some(q) => q.voters.iter().map(|v| v.id).collect(),
        None => (0..brokers.clamp(1, 3)).collect(),
    };
    match rolling::next(brokers, pods, info, observed, &pending, &voters) {
        RollStep::Roll(b) => {
            let ns = kc.namespace().unwrap_or_default();
            let pod = format!("{}-{b}", kc.name_any());
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            api.delete(&pod, &kube::api::DeleteParams::default())
                .await
                .map_err(Error::kube(format!("delete pod {ns}/{pod}")))?;
            let msg = format!(
                "restarting broker {b} (pod {pod}); {} of {brokers} to restart",
                pending.len()
            );
            ctx.event(
                kc,
                EventType::Normal,
                "RestartingBroker",
                "RollingRestart",
                msg.clone(),
            )
            .await;
            Ok((true, "Restarting", msg))
        }
        RollStep::Blocked(why) => Ok((true, "Blocked", why)),
        RollStep::Done => Ok((
            false,
            "UpToDate",
            "every broker runs the current pod template".into(),
        )),
    }
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
