//! The KafkaUser reconciler: a SCRAM-SHA-512 password generated into a
//! Secret named as the user (kept once made), its salted credential set
//! on the cluster through AlterUserScramCredentials whenever the Secret
//! changes or the cluster lacks it; or, for `tls`, a client certificate of
//! the cluster's clients CA in that Secret, issued again when it is due.
//! The user's ACLs are made exactly what the spec lists (CreateAcls for
//! the missing, DeleteAcls for the others). A finalizer removes the
//! credential and every ACL of the principal when the KafkaUser is
//! deleted; the Secret goes with it (owner reference). A certificate
//! cannot be taken back: once its ACLs are gone, it may do nothing.

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
    KafkaUserStatus, ListenerAuthentication, UserAuthenticationType,
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
    principal_of(&user.name_any(), user.spec.authentication.type_)
}

/// A SCRAM user is its name; a certificate's user its subject, `CN=<name>`
/// (Kafka's DEFAULT principal mapping).
fn principal_of(name: &str, t: UserAuthenticationType) -> String {
    match t {
        UserAuthenticationType::ScramSha512 => format!("User:{name}"),
        UserAuthenticationType::Tls => format!("User:CN={name}"),
    }
}

fn other_type(t: UserAuthenticationType) -> UserAuthenticationType {
    match t {
        UserAuthenticationType::ScramSha512 => UserAuthenticationType::Tls,
        UserAuthenticationType::Tls => UserAuthenticationType::ScramSha512,
    }
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
    s.certificate_not_after = extra.certificate_not_after.or(s.certificate_not_after);
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

/// The user's Secret as the operator finds it.
enum Found {
    Absent,
    /// Made by the operator for this KafkaUser.
    Ours(Box<Secret>),
    /// Someone else's: never taken over.
    Foreign,
}

async fn find_secret(ctx: &Context, user: &KafkaUser) -> Result<Found> {
    let ns = user.namespace().unwrap_or_default();
    let name = user.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?;
    Ok(match existing {
        None => Found::Absent,
        Some(s)
            if s.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == user.uid().as_ref()) =>
        {
            Found::Ours(Box::new(s))
        }
        Some(_) => Found::Foreign,
    })
}

fn key_of(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Makes the user's Secret hold `data` (created, or replaced at the
/// version read).
async fn put_secret(
    ctx: &Context,
    user: &KafkaUser,
    existing: Option<Secret>,
    data: BTreeMap<String, String>,
) -> Result<Secret> {
    let ns = user.namespace().unwrap_or_default();
    let name = user.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
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
        resource_version: existing.and_then(|s| s.metadata.resource_version),
        ..ObjectMeta::default()
    };
    let replace = metadata.resource_version.is_some();
    let secret = crate::resources::opaque_secret(metadata, data);
    if replace {
        api.replace(&name, &PostParams::default(), &secret)
            .await
            .map_err(Error::kube(format!("replace Secret {ns}/{name}")))
    } else {
        api.create(&PostParams::default(), &secret)
            .await
            .map_err(Error::kube(format!("create Secret {ns}/{name}")))
    }
}

/// A SCRAM user's Secret: kept once it holds a password, else made with a
/// new one.
async fn scram_secret(ctx: &Context, user: &KafkaUser, found: Found) -> Result<Option<Secret>> {
    let existing = match found {
        Found::Foreign => return Ok(None),
        Found::Ours(s) if s.data.as_ref().is_some_and(|d| d.contains_key(PASSWORD)) => {
            return Ok(Some(*s));
        }
        Found::Ours(s) => Some(*s),
        Found::Absent => None,
    };
    let name = user.name_any();
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
    put_secret(ctx, user, existing, data).await.map(Some)
}

const USER_CRT: &str = "user.crt";
const USER_KEY: &str = "user.key";

/// A `tls` user's Secret: its certificate kept while the clients CA
/// signed it and it is not due, else issued again; `ca.crt` the cluster
/// CA, to trust the brokers. None when the Secret is someone else's.
async fn tls_secret(
    ctx: &Context,
    user: &KafkaUser,
    kc: &KafkaCluster,
    found: Found,
) -> Result<Option<Secret>> {
    use crate::certs::{CA_CERT, CaKind};
    let existing = match found {
        Found::Foreign => return Ok(None),
        Found::Ours(s) => Some(*s),
        Found::Absent => None,
    };
    let missing = || Error::MissingField("the cluster's CAs (not made yet)");
    let clients = crate::certs::read_ca(&ctx.client, kc, CaKind::Clients)
        .await?
        .ok_or_else(missing)?;
    let cluster = crate::certs::read_ca(&ctx.client, kc, CaKind::Cluster)
        .await?
        .ok_or_else(missing)?;
    let now = time::OffsetDateTime::now_utc();
    let kept = existing.as_ref().and_then(|s| {
        let (crt, key) = (key_of(s, USER_CRT)?, key_of(s, USER_KEY)?);
        let fresh = crate::certs::chains_to(&crt, &clients.cert_pem)
            && !crate::certs::due(&crt, kc.spec.certificates.renewal_days, now);
        fresh.then_some((crt, key))
    });
    let (crt, key) = match kept {
        Some(pair) => pair,
        None => {
            let (key, crt) = clients
                .user_certificate(kc, &user.name_any())
                .map_err(Error::Certificates)?;
            (crt, key)
        }
    };
    let data = BTreeMap::from([
        (USER_CRT.to_string(), crt),
        (USER_KEY.to_string(), key),
        (CA_CERT.to_string(), cluster.cert_pem.clone()),
    ]);
    if existing
        .as_ref()
        .is_some_and(|s| crate::certs::entries(s) == data)
    {
        return Ok(existing);
    }
    put_secret(ctx, user, existing, data).await.map(Some)
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

/// What a login of `t` needs of a listener, and the listener's name for it.
fn listener_auth(t: UserAuthenticationType) -> (ListenerAuthentication, &'static str) {
    match t {
        UserAuthenticationType::ScramSha512 => {
            (ListenerAuthentication::ScramSha512, "scram-sha-512")
        }
        UserAuthenticationType::Tls => (ListenerAuthentication::Tls, "tls"),
    }
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
    let kind = user.spec.authentication.type_;
    let (needed, needed_name) = listener_auth(kind);
    if !kc
        .spec
        .listeners
        .iter()
        .any(|l| l.authentication == Some(needed))
    {
        let msg = format!(
            "KafkaCluster {} has no listener with authentication {needed_name}",
            kc.name_any()
        );
        let reason = match kind {
            UserAuthenticationType::ScramSha512 => "NoScramListener",
            UserAuthenticationType::Tls => "NoTlsListener",
        };
        not_ready(ctx, user, reason, msg).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let found = find_secret(ctx, user).await?;
    let secret = match kind {
        UserAuthenticationType::ScramSha512 => scram_secret(ctx, user, found).await?,
        UserAuthenticationType::Tls => tls_secret(ctx, user, &kc, found).await?,
    };
    let Some(secret) = secret else {
        let msg = format!(
            "Secret {} is there and not the operator's: the operator does not take over a Secret it did not make",
            user.name_any()
        );
        not_ready(ctx, user, "SecretInUse", msg).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    };
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
    let mut extra = KafkaUserStatus {
        secret: Some(name.clone()),
        ..KafkaUserStatus::default()
    };
    let login = match kind {
        UserAuthenticationType::ScramSha512 => {
            let password = key_of(&secret, PASSWORD)
                .ok_or(Error::MissingField("password in the user's Secret"))?;
            let applied = user
                .status
                .as_ref()
                .and_then(|s| s.credential_version.clone());
            if !has || applied != version {
                set_credential(&mut admin, &name, password.as_bytes())
                    .await
                    .map_err(Error::admin(&bootstrap, "set the SCRAM credential"))?;
            }
            extra.credential_version = version;
            format!("SCRAM-SHA-512 credential from Secret {name}")
        }
        UserAuthenticationType::Tls => {
            // A user that logged in by password before: the password goes.
            if has {
                admin
                    .delete_scram_credential(&name, Mechanism::Sha512.code())
                    .await
                    .map_err(Error::admin(&bootstrap, "delete the SCRAM credential"))?;
            }
            let until = key_of(&secret, USER_CRT)
                .as_deref()
                .and_then(crate::certs::not_after)
                .and_then(|t| Timestamp::from_second(t.unix_timestamp()).ok())
                .map(|t| t.to_string());
            extra.certificate_not_after = until.clone();
            format!(
                "client certificate of the clients CA in Secret {name}, valid until {}",
                until.as_deref().unwrap_or("?")
            )
        }
    };
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
    // The ACLs of the user's principal under its other login, if it had
    // that one before.
    remove_acls(
        &mut admin,
        &bootstrap,
        &principal_of(&name, other_type(kind)),
    )
    .await?;
    let ready = Wanted {
        type_: "Ready",
        status: true,
        reason: "Ready",
        message: format!("{principal}: {login}, {} ACLs", wanted.len()),
    };
    extra.principal = Some(principal);
    write(ctx, user, ready, extra).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

/// Deletes every ACL of `principal`; returns how many there were.
async fn remove_acls(admin: &mut AdminClient, bootstrap: &str, principal: &str) -> Result<usize> {
    let acls = match admin.acls_of(principal).await {
        Ok(acls) => acls,
        Err(e) if error_code(&e) == Some(SECURITY_DISABLED) => Vec::new(),
        Err(e) => return Err(Error::admin(bootstrap, "describe ACLs")(e)),
    };
    admin
        .delete_acls(&acls)
        .await
        .map_err(Error::admin(bootstrap, "delete ACLs"))?;
    Ok(acls.len())
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
    let kind = user.spec.authentication.type_;
    let removed = remove_acls(&mut admin, &bootstrap, &principal(user)).await?
        + remove_acls(
            &mut admin,
            &bootstrap,
            &principal_of(&name, other_type(kind)),
        )
        .await?;
    ctx.event(
        user,
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!(
            "removed the credentials and {removed} ACLs of {}",
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

    #[test]
    fn a_certificate_users_principal_is_its_subject_and_the_other_login_is_the_other_principal() {
        let user = |t: &str| {
            KafkaUser::new(
                "app",
                serde_json::from_value(serde_json::json!({
                    "clusterRef": "secure", "authentication": {"type": t}
                }))
                .expect("spec"),
            )
        };
        assert_eq!(principal(&user("scram-sha-512")), "User:app");
        assert_eq!(principal(&user("tls")), "User:CN=app");
        for t in [
            UserAuthenticationType::ScramSha512,
            UserAuthenticationType::Tls,
        ] {
            assert_ne!(principal_of("app", t), principal_of("app", other_type(t)));
            assert_eq!(other_type(other_type(t)), t);
        }
    }
}
