//! The Topic reconciler: plans with `topic_plan` from what the cluster
//! reports, applies the plan through the Kafka admin protocol, and writes
//! the status. A finalizer deletes the Kafka topic on object deletion when
//! `deletionPolicy: Delete`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use sluice_client::{AdminClient, AdminError, code, error_code};

use crate::conditions::{self, Wanted};
use crate::context::{Context, object_key};
use crate::crd::{DeletionPolicy, KafkaCluster, Topic, TopicStatus};
use crate::error::{Error, Result};
use crate::topic_plan::{self, Action as Step, Observed};

pub const CONTROLLER: &str = "topic";
/// Held by every Topic the operator manages; removed after cleanup.
pub const FINALIZER: &str = "sluice.dev/topic";

pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(&*topic);
    let action = finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&key);
    Ok(action)
}

pub fn error_policy(topic: Arc<Topic>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.metric_label());
    let delay = ctx.backoff(&object_key(&*topic));
    tracing::warn!(topic = %topic.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn cluster_of(topic: &Topic, ctx: &Context) -> Result<Option<KafkaCluster>> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    api.get_opt(&topic.spec.cluster_ref)
        .await
        .map_err(Error::kube(format!(
            "get KafkaCluster {ns}/{}",
            topic.spec.cluster_ref
        )))
}

/// The topic as the cluster reports it, with every effective config.
async fn observe(
    admin: &mut AdminClient,
    bootstrap: &str,
    name: &str,
) -> Result<Option<(Observed, String, BTreeMap<String, String>)>> {
    let found = admin
        .describe_topics(Some(&[name]))
        .await
        .map_err(Error::admin(bootstrap, "describe topic"))?;
    let Some(info) = found.into_iter().find(|t| t.name == name) else {
        return Ok(None);
    };
    let configs = admin
        .topic_configs(name)
        .await
        .map_err(Error::admin(bootstrap, "describe topic configs"))?;
    let overrides = configs
        .iter()
        .filter(|(_, (_, set))| *set)
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    let effective = configs.into_iter().map(|(k, (v, _))| (k, v)).collect();
    Ok(Some((
        Observed {
            partitions: info.partitions,
            replication_factor: info.replication_factor,
            overrides,
        },
        info.id,
        effective,
    )))
}

/// A status carrying one Ready condition, the rest kept from before.
fn status_with(topic: &Topic, ready: Wanted<'_>) -> TopicStatus {
    let mut s = topic.status.clone().unwrap_or_default();
    conditions::set(
        &mut s.conditions,
        ready,
        topic.metadata.generation,
        Timestamp::now(),
    );
    s.observed_generation = topic.metadata.generation;
    s
}

/// True when this Ready reason and message are already in the status, so
/// that repeated reconciles do not repeat the event.
fn already_says(topic: &Topic, reason: &str, message: &str) -> bool {
    topic
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.reason == reason && c.message == message)
}

async fn not_ready(ctx: &Context, topic: &Topic, reason: &str, message: String) -> Result<()> {
    if !already_says(topic, reason, &message) {
        ctx.event(
            topic,
            EventType::Warning,
            reason,
            "Reconcile",
            message.clone(),
        )
        .await;
    }
    let s = status_with(
        topic,
        Wanted {
            type_: "Ready",
            status: false,
            reason,
            message,
        },
    );
    crate::context::write_status(ctx, topic, &s).await
}

async fn apply(topic: &Topic, ctx: &Context) -> Result<Action> {
    let name = topic
        .kafka_name()
        .ok_or(Error::MissingField("metadata.name"))?;
    let Some(kc) = cluster_of(topic, ctx).await? else {
        let msg = format!(
            "KafkaCluster {} not found in this namespace",
            topic.spec.cluster_ref
        );
        not_ready(ctx, topic, "ClusterNotFound", msg).await?;
        return Ok(Action::requeue(ctx.settings.poll));
    };
    let (reach, mut admin) = match ctx.connect(&kc).await {
        Ok(c) => c,
        Err(e) => {
            not_ready(ctx, topic, "ClusterUnreachable", e.to_string()).await?;
            return Err(e);
        }
    };
    let bootstrap = reach.bootstrap.clone();
    let observed = observe(&mut admin, &bootstrap, &name).await?;
    let plan = topic_plan::plan(&topic.spec, observed.as_ref().map(|(o, _, _)| o));

    for step in &plan.actions {
        let done = match step {
            Step::Create {
                partitions,
                replication_factor,
                configs,
            } => {
                admin
                    .create_topic(&name, *partitions, *replication_factor, configs)
                    .await
            }
            Step::IncreasePartitions { to, .. } => admin.create_partitions(&name, *to).await,
            Step::AlterConfigs(changes) => admin.alter_topic_configs(&name, changes).await,
            Step::ChangeReplicationFactor { to, .. } => {
                let rf = usize::try_from(*to).unwrap_or(0);
                match crate::rebalance::change_replication_factor(
                    &reach,
                    &name,
                    rf,
                    // The brokers the cluster keeps (not those a scale-down
                    // is draining).
                    Some((0..kc.spec.replicas).collect()),
                    ctx.settings.admin_timeout,
                )
                .await
                {
                    Ok(crate::rebalance::RfChange::Done) => Ok(()),
                    Ok(crate::rebalance::RfChange::Moving(n)) => {
                        let msg = format!("{}: {n} partition(s) moving", step_note(&name, step));
                        not_ready(ctx, topic, "Reassigning", msg).await?;
                        return Ok(Action::requeue(ctx.settings.poll));
                    }
                    Ok(crate::rebalance::RfChange::Waiting(why)) => {
                        let msg = format!("{}: waiting: {why}", step_note(&name, step));
                        not_ready(ctx, topic, "Reassigning", msg).await?;
                        return Ok(Action::requeue(ctx.settings.poll));
                    }
                    Ok(crate::rebalance::RfChange::Refused(why)) => {
                        let msg = format!("{} refused: {why}", step_note(&name, step));
                        not_ready(ctx, topic, "Rejected", msg).await?;
                        return Ok(Action::requeue(ctx.settings.resync));
                    }
                    Err(crate::rebalance::StepError::Admin(e)) => Err(e),
                    Err(e @ crate::rebalance::StepError::Refused { .. }) => {
                        let msg = format!("{}: {e}", step_note(&name, step));
                        not_ready(ctx, topic, "Rejected", msg).await?;
                        return Ok(Action::requeue(ctx.settings.resync));
                    }
                }
            }
        };
        match done {
            Ok(()) => {
                ctx.event(
                    topic,
                    EventType::Normal,
                    step_reason(step),
                    "Reconcile",
                    step_note(&name, step),
                )
                .await;
            }
            // Creation raced with another creator: adopt it next round.
            Err(e) if error_code(&e) == Some(code::TOPIC_ALREADY_EXISTS) => {
                return Ok(Action::requeue(std::time::Duration::from_secs(1)));
            }
            // The cluster refuses the spec (bad config, replication factor
            // above the broker count, ...): say so, wait for a spec change
            // or a slow retry, change nothing else.
            Err(AdminError::Kafka { code, message }) => {
                let msg = format!(
                    "{} refused by the cluster (Kafka error {code}): {}",
                    step_note(&name, step),
                    message.unwrap_or_default()
                );
                not_ready(ctx, topic, "Rejected", msg).await?;
                return Ok(Action::requeue(ctx.settings.resync));
            }
            Err(e) => return Err(Error::admin(&bootstrap, step_reason(step))(e)),
        }
    }

    let after = observe(&mut admin, &bootstrap, &name).await?;
    let mut status = if plan.refusals.is_empty() {
        status_with(
            topic,
            Wanted {
                type_: "Ready",
                status: true,
                reason: "Synced",
                message: format!("topic {name} matches the spec"),
            },
        )
    } else {
        let msg = plan
            .refusals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if !already_says(topic, "ChangeRefused", &msg) {
            ctx.event(
                topic,
                EventType::Warning,
                "ChangeRefused",
                "Reconcile",
                msg.clone(),
            )
            .await;
        }
        status_with(
            topic,
            Wanted {
                type_: "Ready",
                status: false,
                reason: "ChangeRefused",
                message: msg,
            },
        )
    };
    if let Some((_, id, effective)) = after {
        status.topic_id = Some(id);
        status.config = effective;
    }
    crate::context::write_status(ctx, topic, &status).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

fn step_reason(step: &Step) -> &'static str {
    match step {
        Step::Create { .. } => "Created",
        Step::IncreasePartitions { .. } => "PartitionsIncreased",
        Step::AlterConfigs(_) => "ConfigChanged",
        Step::ChangeReplicationFactor { .. } => "ReplicationFactorChanged",
    }
}

fn step_note(name: &str, step: &Step) -> String {
    match step {
        Step::Create {
            partitions,
            replication_factor,
            ..
        } => format!(
            "create topic {name} with {partitions} partitions, replication factor {replication_factor}"
        ),
        Step::IncreasePartitions { from, to } => {
            format!("grow topic {name} from {from} to {to} partitions")
        }
        Step::ChangeReplicationFactor { from, to } => {
            format!("change the replication factor of topic {name} from {from} to {to}")
        }
        Step::AlterConfigs(c) => format!(
            "change configs of topic {name}: {}",
            c.iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => format!("{k} back to default"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn cleanup(topic: &Topic, ctx: &Context) -> Result<Action> {
    if topic.spec.deletion_policy != DeletionPolicy::Delete {
        return Ok(Action::await_change());
    }
    let name = topic
        .kafka_name()
        .ok_or(Error::MissingField("metadata.name"))?;
    let Some(kc) = cluster_of(topic, ctx).await? else {
        // Without its cluster there is no topic left to delete; holding the
        // object back would only block the namespace's deletion.
        tracing::info!(topic = %name, "cluster gone; releasing the Topic object");
        return Ok(Action::await_change());
    };
    let (reach, mut admin) = ctx.connect(&kc).await?;
    let bootstrap = reach.bootstrap.clone();
    match admin.delete_topic(&name).await {
        Ok(()) => {
            ctx.event(
                topic,
                EventType::Normal,
                "Deleted",
                "Cleanup",
                format!("deleted topic {name} (deletionPolicy: Delete)"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if error_code(&e) == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::admin(&bootstrap, "delete topic")(e)),
    }
}
