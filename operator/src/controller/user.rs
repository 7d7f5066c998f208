//! The KafkaUser reconciler: a SCRAM-SHA-512 password generated into a
//! Secret named as the user (kept once made), its salted credential set
//! on the cluster through AlterUserScramCredentials whenever the Secret
//! changes or the cluster lacks it, and the user's ACLs made exactly what
//! the spec lists (CreateAcls for the missing, DeleteAcls for the others).
//! A finalizer removes the credential and every ACL of the principal when
//! the KafkaUser is deleted; the Secret goes with it (owner reference).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use rand::Rng;
use sluice_client::{AclBinding, AdminClient, AdminError, error_code};
use sluice_sasl::scram::Mechanism;

use crate::conditions::{self, Wanted};
use crate::context::{Context, object_key};
use crate::crd::{
    AclOperation, AclPatternType, AclPermission, AclResourceType, AclRule, KafkaCluster, KafkaUser,
    KafkaUserStatus, ListenerAuthentication,
};
use crate::error::{Error, Result};

pub const CONTROLLER: &str = "kafkauser";
/// Held by every KafkaUser; removed once its credential and ACLs are gone.
pub const FINALIZER: &str = "sluice.dev/user";
/// The SCRAM iterations of the credentials the operator sets (Kafka's
/// minimum, as its tools default to).
const ITERATIONS: i32 = 4096;
const PASSWORD: &str = "password";
/// Kafka's SECURITY_DISABLED: the ACL APIs of a cluster without an
/// authorizer.
const SECURITY_DISABLED: i16 = 54;

/// The principal the cluster names the user by.
pub fn principal(user: &KafkaUser) -> String {
    format!("User:{}", user.name_any())
}

fn resource_code(t: AclResourceType) -> i8 {
    match t {
        AclResourceType::Topic => 2,
        AclResourceType::Group => 3,
        AclResourceType::Cluster => 4,
        AclResourceType::TransactionalId => 5,
    }
}

fn operation_code(o: AclOperation) -> i8 {
    match o {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
        AclOperation::ClusterAction => 9,
        AclOperation::DescribeConfigs => 10,
        AclOperation::AlterConfigs => 11,
        AclOperation::IdempotentWrite => 12,
    }
}

/// The ACL bindings the rules ask for: one per operation.
pub fn bindings(principal: &str, rules: &[AclRule]) -> BTreeSet<AclBinding> {
    rules
        .iter()
        .flat_map(|r| {
            let name = match r.resource.type_ {
                AclResourceType::Cluster => "kafka-cluster".to_string(),
                _ => r.resource.name.clone().unwrap_or_default(),
            };
            r.operations.iter().map(move |op| AclBinding {
                resource_type: resource_code(r.resource.type_),
                resource_name: name.clone(),
                pattern_type: match r.resource.pattern_type {
                    AclPatternType::Literal => 3,
                    AclPatternType::Prefix => 4,
                },
                principal: principal.to_string(),
                host: r.host.clone(),
                operation: operation_code(*op),
                permission: match r.type_ {
                    AclPermission::Deny => 2,
                    AclPermission::Allow => 3,
                },
            })
        })
        .collect()
}

/// `(to create, to delete)` to turn `current` into `wanted`.
pub fn acl_changes(
    wanted: &BTreeSet<AclBinding>,
    current: &BTreeSet<AclBinding>,
) -> (Vec<AclBinding>, Vec<AclBinding>) {
    (
        wanted.difference(current).cloned().collect(),
        current.difference(wanted).cloned().collect(),
    )
}

pub async fn reconcile(user: Arc<KafkaUser>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = user
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<KafkaUser> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(&*user);
    let action = finalizer(&api, FINALIZER, user, |event| async {
        match event {
            Finalizer::Apply(u) => apply(&u, &ctx).await,
            Finalizer::Cleanup(u) => cleanup(&u, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&key);
    Ok(action)
}

pub fn error_policy(user: Arc<KafkaUser>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.metric_label());
    let delay = ctx.backoff(&object_key(&*user));
    tracing::warn!(user = %user.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn cluster_of(user: &KafkaUser, ctx: &Context) -> Result<Option<KafkaCluster>> {
    let ns = user.namespace().unwrap_or_default();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    api.get_opt(&user.spec.cluster_ref)
        .await
        .map_err(Error::kube(format!(
            "get KafkaCluster {ns}/{}",
            user.spec.cluster_ref
        )))
}

async fn write(
    ctx: &Context,
    user: &KafkaUser,
    ready: Wanted<'_>,
    extra: KafkaUserStatus,
) -> Result<()> {
    let said = user
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.reason == ready.reason && c.message == ready.message);
    if !said && !ready.status {
        ctx.event(
            user,
            EventType::Warning,
            ready.reason,
            "Reconcile",
            ready.message.clone(),
        )
        .await;
    }
    let mut s = user.status.clone().unwrap_or_default();
    conditions::set(
        &mut s.conditions,
        ready,
        user.metadata.generation,
        Timestamp::now(),
    );
    s.observed_generation = user.metadata.generation;
    s.principal = extra.principal.or(s.principal);
    s.secret = extra.secret.or(s.secret);
    s.credential_version = extra.credential_version.or(s.credential_version);
    crate::context::write_status(ctx, user, &s).await
}

async fn not_ready(ctx: &Context, user: &KafkaUser, reason: &str, message: String) -> Result<()> {
    let ready = Wanted {
        type_: "Ready",
        status: false,
        reason,
        message,
    };
    write(ctx, user, ready, KafkaUserStatus::default()).await
}

/// The user's Secret, made with a new password when it is not there; None
/// when a Secret of that name holds no password (someone else's, never
/// taken over). Its resourceVersion tells a changed password.
async fn secret(ctx: &Context, user: &KafkaUser) -> Result<Option<Secret>> {
    let ns = user.namespace().unwrap_or_default();
    let name = user.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?;
    if let Some(s) = &existing
        && s.data.as_ref().is_some_and(|d| d.contains_key(PASSWORD))
    {
        return Ok(Some(s.clone()));
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let data = BTreeMap::from([
        ("username".to_string(), name.clone()),
        (PASSWORD.to_string(), password.clone()),
        (
            "sasl.jaas.config".to_string(),
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{name}\" password=\"{password}\";"
            ),
        ),
    ]);
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        labels: Some(BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "sluice-operator".to_string(),
            ),
            (
                "sluice.dev/cluster".to_string(),
                user.spec.cluster_ref.clone(),
            ),
        ])),
        owner_references: user.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let secret = crate::resources::opaque_secret(metadata, data);
    match existing {
        Some(_) => Ok(None),
        None => api
            .create(&PostParams::default(), &secret)
            .await
            .map(Some)
            .map_err(Error::kube(format!("create Secret {ns}/{name}"))),
    }
}

async fn set_credential(
    admin: &mut AdminClient,
    user: &str,
    password: &[u8],
) -> Result<(), AdminError> {
    let salt: [u8; 32] = rand::random();
    let mechanism = Mechanism::Sha512;
    let salted = mechanism.salted_password(password, &salt, ITERATIONS as u32);
    admin
        .upsert_scram_credential(user, mechanism.code(), ITERATIONS, &salt, &salted)
        .await
}

async fn apply(user: &KafkaUser, ctx: &Context) -> Result<Action> {
    let Some(kc) = cluster_of(user, ctx).await? else {
        let msg = format!(
            "KafkaCluster {} not found in this namespace",
            user.spec.cluster_ref
        );
        not_ready(ctx, user, "ClusterNotFound", msg).await?;
        return Ok(Action::requeue(ctx.settings.poll));
    };
    if !kc
        .spec
        .listeners
        .iter()
        .any(|l| l.authentication == Some(ListenerAuthentication::ScramSha512))
    {
        let msg = format!(
            "KafkaCluster {} has no listener with authentication scram-sha-512",
            kc.name_any()
        );
        not_ready(ctx, user, "NoScramListener", msg).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let Some(secret) = secret(ctx, user).await? else {
        let msg = format!(
            "Secret {} is there without a password: the operator does not take over a Secret it did not make",
            user.name_any()
        );
        not_ready(ctx, user, "SecretInUse", msg).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    };
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PASSWORD))
        .map(|b| b.0.clone())
        .ok_or(Error::MissingField("password in the user's Secret"))?;
    let (reach, mut admin) = match ctx.connect(&kc).await {
        Ok(c) => c,
        Err(e) => {
            not_ready(ctx, user, "ClusterUnreachable", e.to_string()).await?;
            return Err(e);
        }
    };
    let bootstrap = reach.bootstrap.clone();
    let name = user.name_any();
    let version = secret.metadata.resource_version.clone();
    let has = admin
        .scram_credentials_of(&name)
        .await
        .map_err(Error::admin(&bootstrap, "describe SCRAM credentials"))?
        .iter()
        .any(|(m, _)| *m == Mechanism::Sha512.code());
    let applied = user
        .status
        .as_ref()
        .and_then(|s| s.credential_version.clone());
    if !has || applied != version {
        set_credential(&mut admin, &name, &password)
            .await
            .map_err(Error::admin(&bootstrap, "set the SCRAM credential"))?;
    }
    let principal = principal(user);
    let rules = user
        .spec
        .authorization
        .as_ref()
        .map(|a| a.acls.clone())
        .unwrap_or_default();
    let wanted = bindings(&principal, &rules);
    let current: BTreeSet<AclBinding> = match admin.acls_of(&principal).await {
        Ok(acls) => acls.into_iter().collect(),
        // No authorizer: nothing to keep in line, unless ACLs are asked.
        Err(e) if error_code(&e) == Some(SECURITY_DISABLED) && wanted.is_empty() => BTreeSet::new(),
        Err(e) if error_code(&e) == Some(SECURITY_DISABLED) => {
            let msg = format!(
                "KafkaCluster {} has no spec.authorization: its brokers keep no ACLs",
                kc.name_any()
            );
            not_ready(ctx, user, "NoAuthorization", msg).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
        Err(e) => return Err(Error::admin(&bootstrap, "describe ACLs")(e)),
    };
    let (create, delete) = acl_changes(&wanted, &current);
    if let Err(e) = admin.create_acls(&create).await {
        let msg = format!("the cluster refused the ACLs: {e}");
        not_ready(ctx, user, "AclsRefused", msg).await?;
        return Ok(Action::requeue(ctx.settings.poll));
    }
    admin
        .delete_acls(&delete)
        .await
        .map_err(Error::admin(&bootstrap, "delete ACLs"))?;
    let ready = Wanted {
        type_: "Ready",
        status: true,
        reason: "Ready",
        message: format!(
            "{principal}: SCRAM-SHA-512 credential from Secret {name}, {} ACLs",
            wanted.len()
        ),
    };
    let extra = KafkaUserStatus {
        principal: Some(principal),
        secret: Some(name),
        credential_version: version,
        ..KafkaUserStatus::default()
    };
    write(ctx, user, ready, extra).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

async fn cleanup(user: &KafkaUser, ctx: &Context) -> Result<Action> {
    let Some(kc) = cluster_of(user, ctx).await? else {
        // Without its cluster there is nothing left to remove.
        return Ok(Action::await_change());
    };
    let (reach, mut admin) = ctx.connect(&kc).await?;
    let bootstrap = reach.bootstrap.clone();
    let name = user.name_any();
    admin
        .delete_scram_credential(&name, Mechanism::Sha512.code())
        .await
        .map_err(Error::admin(&bootstrap, "delete the SCRAM credential"))?;
    let acls = match admin.acls_of(&principal(user)).await {
        Ok(acls) => acls,
        Err(e) if error_code(&e) == Some(SECURITY_DISABLED) => Vec::new(),
        Err(e) => return Err(Error::admin(&bootstrap, "describe ACLs")(e)),
    };
    admin
        .delete_acls(&acls)
        .await
        .map_err(Error::admin(&bootstrap, "delete ACLs"))?;
    ctx.event(
        user,
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!(
            "removed the SCRAM credential and {} ACLs of {}",
            acls.len(),
            principal(user)
        ),
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AclResource;

    #[test]
    fn rules_become_one_binding_per_operation_and_changes_are_the_differences() {
        let rules: Vec<AclRule> = serde_json::from_value(serde_json::json!([
            {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Write"]},
            {"resource": {"type": "group", "name": "orders-", "patternType": "prefix"},
             "operations": ["Read"], "type": "deny", "host": "10.0.0.1"},
            {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}
        ]))
        .expect("rules");
        let got = bindings("User:app", &rules);
        let codes: Vec<(i8, &str, i8, &str, i8, i8)> = got
            .iter()
            .map(|b| {
                (
                    b.resource_type,
                    b.resource_name.as_str(),
                    b.pattern_type,
                    b.host.as_str(),
                    b.operation,
                    b.permission,
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                (2, "orders", 3, "*", 3, 3),
                (2, "orders", 3, "*", 4, 3),
                (3, "orders-", 4, "10.0.0.1", 3, 2),
                (4, "kafka-cluster", 3, "*", 12, 3),
            ]
        );
        let fewer = bindings(
            "User:app",
            &[AclRule {
                resource: AclResource {
                    type_: AclResourceType::Topic,
                    name: Some("orders".into()),
                    pattern_type: AclPatternType::Literal,
                },
                operations: vec![AclOperation::Read, AclOperation::Describe],
                host: "*".into(),
                type_: AclPermission::Allow,
            }],
        );
        let (create, delete) = acl_changes(&fewer, &got);
        assert_eq!(create.iter().map(|b| b.operation).collect::<Vec<_>>(), [8]);
        assert_eq!(delete.len(), 3, "{delete:?}");
        assert!(acl_changes(&got, &got) == (vec![], vec![]));
    }
}
