//! Authorization as Kafka's StandardAuthorizer decides it: ACLs on topics,
//! groups, the cluster and transactional ids, literal and prefixed
//! patterns, allow and deny, principals and hosts with `*`, operations
//! and the ones they imply, `super.users` and
//! `allow.everyone.if.no.acl.found`.

use std::net::IpAddr;

use sluice_quorum::image::{Acl, MetadataImage};

use crate::server::Principal;

/// Kafka's resource types.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's pattern types.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's ACL operations.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// Kafka's permission types.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// Kafka's messages for the authorization errors.
pub mod message {
    pub const TOPIC: &str = "Topic authorization failed.";
    pub const GROUP: &str = "Group authorization failed.";
    pub const CLUSTER: &str = "Cluster authorization failed.";
}

/// The name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal name or principal or host that matches any.
pub const WILDCARD: &str = "*";

/// The operations each resource type has (Kafka's), for
/// `*_authorized_operations` and to refuse ACLs that mean nothing.
pub fn operations_of(resource_type: i8) -> &'static [i8] {
    use op::*;
    match resource_type {
        resource::TOPIC => &[
            READ,
            WRITE,
            CREATE,
            DESCRIBE,
            DELETE,
            ALTER,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        resource::GROUP => &[READ, DESCRIBE, DELETE],
        resource::CLUSTER => &[
            CREATE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            ALTER,
            DESCRIBE,
        ],
        resource::TRANSACTIONAL_ID => &[DESCRIBE, WRITE, TWO_PHASE_COMMIT],
        resource::DELEGATION_TOKEN => &[DESCRIBE],
        resource::USER => &[CREATE_TOKENS, DESCRIBE_TOKENS],
        _ => &[],
    }
}

/// The `authorizer.class.name`, `super.users` and
/// `allow.everyone.if.no.acl.found` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// ACLs are enforced (an authorizer is configured).
    pub enabled: bool,
    pub super_users: Vec<Principal>,
    pub allow_if_no_acl: bool,
}

/// The authorizer class names that turn ACLs on.
pub const AUTHORIZERS: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

impl AclConfig {
    /// `super.users`: `User:alice;User:bob` (Kafka separates them with `;`).
    pub fn parse_super_users(text: &str) -> Result<Vec<Principal>, String> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| parse_principal(p).ok_or_else(|| format!("`{p}` is not TYPE:name")))
            .collect()
    }
}

pub fn parse_principal(text: &str) -> Option<Principal> {
    let (kind, name) = text.split_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Principal {
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

/// Whether `acl`'s pattern covers the resource `name` of `resource_type`.
fn covers(acl: &Acl, resource_type: i8, name: &str) -> bool {
    acl.resource_type == resource_type
        && match acl.pattern_type {
            pattern::LITERAL => acl.resource_name == name || acl.resource_name == WILDCARD,
            pattern::PREFIXED => name.starts_with(&acl.resource_name),
            _ => false,
        }
}

/// Whether an ACL for `acl_op` grants (or, `deny`, refuses) `wanted`.
fn op_matches(acl_op: i8, wanted: i8, deny: bool) -> bool {
    if acl_op == op::ALL || acl_op == wanted {
        return true;
    }
    if deny {
        return false;
    }
    // Implied operations, for ALLOW only.
    match wanted {
        op::DESCRIBE => matches!(acl_op, op::READ | op::WRITE | op::DELETE | op::ALTER),
        op::DESCRIBE_CONFIGS => acl_op == op::ALTER_CONFIGS,
        _ => false,
    }
}

/// Who asks, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a Principal,
    pub host: IpAddr,
}

/// Decides requests against the ACLs of a metadata image.
#[derive(Debug)]
pub struct Authorizer<'a> {
    config: &'a AclConfig,
    img: std::sync::Arc<MetadataImage>,
    who: Requester<'a>,
}

impl<'a> Authorizer<'a> {
    pub fn new(
        config: &'a AclConfig,
        img: std::sync::Arc<MetadataImage>,
        who: Requester<'a>,
    ) -> Self {
        Authorizer { config, img, who }
    }

    /// Whether ACLs are enforced at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn is_super(&self) -> bool {
        self.config
            .super_users
            .iter()
            .any(|s| s == self.who.principal)
    }

    fn applies_to_me(&self, acl: &Acl) -> bool {
        let me = self.who.principal.to_string();
        let principal_ok = acl.principal == me
            || acl.principal == format!("{}:{WILDCARD}", self.who.principal.kind);
        let host_ok = acl.host == WILDCARD || acl.host == self.who.host.to_string();
        principal_ok && host_ok
    }

    /// Whether `operation` on the resource is allowed.
    pub fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        if !self.config.enabled || self.is_super() {
            return true;
        }
        let mut any_for_resource = false;
        let mut allowed = false;
        for acl in self
            .img
            .acls
            .iter()
            .filter(|a| covers(a, resource_type, name))
        {
            any_for_resource = true;
            if !self.applies_to_me(acl) {
                continue;
            }
            let deny = acl.permission_type == permission::DENY;
            if op_matches(acl.operation, operation, deny) {
                if deny {
                    return false;
                }
                allowed = true;
            }
        }
        allowed || (!any_for_resource && self.config.allow_if_no_acl)
    }

    pub fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TOPIC, name)
    }

    pub fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::GROUP, name)
    }

    pub fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, resource::CLUSTER, CLUSTER_NAME)
    }

    /// Whether `operation` is allowed on some resource of the type (an
    /// ALLOW ACL for it that no DENY of the same pattern or wider voids),
    /// as Kafka's `authorizeByResourceType` (InitProducerId without a
    /// transactional id: IDEMPOTENT_WRITE on the cluster or WRITE on any
    /// topic).
    pub fn any_of_type(&self, operation: i8, resource_type: i8) -> bool {
        if !self.config.enabled || self.is_super() {
            return true;
        }
        let mine: Vec<&Acl> = self
            .img
            .acls
            .iter()
            .filter(|a| a.resource_type == resource_type && self.applies_to_me(a))
            .collect();
        let denied_all = mine.iter().any(|a| {
            a.permission_type == permission::DENY
                && op_matches(a.operation, operation, true)
                && a.resource_name == WILDCARD
                && a.pattern_type == pattern::LITERAL
        });
        if denied_all {
            return false;
        }
        mine.iter().any(|a| {
            a.permission_type == permission::ALLOW
                && op_matches(a.operation, operation, false)
                && self.allows(operation, resource_type, &a.resource_name)
        }) || (self.config.allow_if_no_acl
            && !self
                .img
                .acls
                .iter()
                .any(|a| a.resource_type == resource_type))
    }

    /// The bit field of `*_authorized_operations`.
    pub fn operations(&self, resource_type: i8, name: &str) -> i32 {
        operations_of(resource_type)
            .iter()
            .filter(|o| self.allows(**o, resource_type, name))
            .fold(0, |bits, o| bits | (1 << o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: i8,
        name: &str,
        pt: i8,
        principal: &str,
        host: &str,
        operation: i8,
        perm: i8,
    ) -> Acl {
        Acl {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission_type: perm,
        }
    }

    #[test]
    fn kafka_rules() {
        let mut img = MetadataImage::default();
        img.acls.insert(acl(
            resource::TOPIC,
            "orders",
            pattern::LITERAL,
            "User:alice",
            "*",
            op::READ,
            permission::ALLOW,
        ));
        img.acls.insert(acl(
            resource::TOPIC,
            "logs-",
            pattern::PREFIXED,
            "User:*",
            "*",
            op::WRITE,
            permission::ALLOW,
        ));
        img.acls.insert(acl(
            resource::TOPIC,
            "logs-secret",
            pattern::LITERAL,
            "User:bob",
            "*",
            op::ALL,
            permission::DENY,
        ));
        img.acls.insert(acl(
            resource::GROUP,
            "*",
            pattern::LITERAL,
            "User:alice",
            "127.0.0.1",
            op::READ,
            permission::ALLOW,
        ));
        let img = std::sync::Arc::new(img);
        let config = AclConfig {
            enabled: true,
            super_users: vec![Principal::user("admin")],
            allow_if_no_acl: false,
        };
        let alice = Principal::user("alice");
        let bob = Principal::user("bob");
        let admin = Principal::user("admin");
        let local: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = Authorizer::new(
            &config,
            img.clone(),
            Requester {
                principal: &alice,
                host: local,
            },
        );
        assert!(a.topic(op::READ, "orders"));
        assert!(a.topic(op::DESCRIBE, "orders"), "READ implies DESCRIBE");
        assert!(!a.topic(op::WRITE, "orders"));
        assert!(a.topic(op::WRITE, "logs-app"), "prefixed, any user");
        assert!(!a.topic(op::READ, "unlisted"), "no ACL: denied");
        assert!(a.group(op::READ, "any-group"));
        let far = Authorizer::new(
            &config,
            img.clone(),
            Requester {
                principal: &alice,
                host: other,
            },
        );
        assert!(!far.group(op::READ, "any-group"), "host must match");
        let b = Authorizer::new(
            &config,
            img.clone(),
            Requester {
                principal: &bob,
                host: local,
            },
        );
        assert!(b.topic(op::WRITE, "logs-app"));
        assert!(!b.topic(op::WRITE, "logs-secret"), "DENY wins");
        let s = Authorizer::new(
            &config,
            img.clone(),
            Requester {
                principal: &admin,
                host: other,
            },
        );
        assert!(
            s.topic(op::DELETE, "anything") && s.cluster(op::ALTER),
            "super user"
        );
        assert!(a.any_of_type(op::WRITE, resource::TOPIC));
        assert_eq!(
            a.operations(resource::TOPIC, "orders"),
            (1 << op::READ) | (1 << op::DESCRIBE)
        );
        let open = AclConfig {
            allow_if_no_acl: true,
            ..config.clone()
        };
        let o = Authorizer::new(
            &open,
            img.clone(),
            Requester {
                principal: &bob,
                host: local,
            },
        );
        assert!(
            o.topic(op::READ, "unlisted"),
            "allow.everyone.if.no.acl.found"
        );
        assert!(
            !o.topic(op::READ, "orders"),
            "a resource with ACLs is not open"
        );
        let off = AclConfig::default();
        assert!(
            Authorizer::new(
                &off,
                img.clone(),
                Requester {
                    principal: &bob,
                    host: local
                }
            )
            .topic(op::DELETE, "orders")
        );
    }
}
