//! CreateAcls (30), DescribeAcls (29), DeleteAcls (31): ACLs kept in the
//! metadata quorum, checked as Kafka's controller checks them.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use sluice_quorum::image::{Acl, Command, Outcome};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::code::{
    CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, SECURITY_DISABLED, UNKNOWN_SERVER_ERROR,
};
use crate::security::acl::{self, Authorizer, op, pattern, permission, resource};

const DISABLED: &str = "No Authorizer is configured on the broker";

/// A field Kafka cannot even make an ACL of (a filter's ANY or MATCH):
/// its broker answers UNKNOWN_SERVER_ERROR, without a message.
fn unbindable(a: &Acl) -> bool {
    a.resource_type == resource::ANY
        || a.pattern_type == pattern::ANY
        || a.pattern_type == pattern::MATCH
        || a.operation == op::ANY
        || a.permission_type == permission::ANY
}

/// Why a new ACL is refused, in Kafka's words.
fn invalid(a: &Acl) -> Option<String> {
    if !(resource::TOPIC..=resource::USER).contains(&a.resource_type) {
        return Some(format!("Invalid resourceType {}", a.resource_type));
    }
    if a.pattern_type != pattern::LITERAL && a.pattern_type != pattern::PREFIXED {
        return Some(format!("Invalid patternType {}", a.pattern_type));
    }
    if !(op::ALL..=op::TWO_PHASE_COMMIT).contains(&a.operation) {
        return Some(format!("Invalid operation {}", a.operation));
    }
    if a.permission_type != permission::ALLOW && a.permission_type != permission::DENY {
        return Some(format!("Invalid permissionType {}", a.permission_type));
    }
    if a.resource_name.is_empty() {
        return Some("Resource name should not be empty".into());
    }
    if acl::parse_principal(&a.principal).is_none() {
        return Some(format!("Could not parse principal from `{}`", a.principal));
    }
    if a.host.is_empty() {
        return Some("Invalid empty host".into());
    }
    if a.resource_type == resource::CLUSTER && a.resource_name != acl::CLUSTER_NAME {
        return Some(format!(
            "The only valid name for the CLUSTER resource is {}",
            acl::CLUSTER_NAME
        ));
    }
    None
}

async fn write(broker: &Broker, cmd: Command) -> Result<(), String> {
    match broker.cluster().write(cmd).await {
        Ok(Outcome::Ok) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn create(
    broker: &Broker,
    authz: &Authorizer<'_>,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let fail = |code, message: &str| {
        req.creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            })
            .collect::<Vec<_>>()
    };
    if !authz.enabled() {
        return CreateAclsResponse::default().with_results(fail(SECURITY_DISABLED, DISABLED));
    }
    if !authz.cluster(op::ALTER) {
        return CreateAclsResponse::default()
            .with_results(fail(CLUSTER_AUTHORIZATION_FAILED, acl::message::CLUSTER));
    }
    let mut results = Vec::new();
    let mut valid = Vec::new();
    for c in &req.creations {
        let a = Acl {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        };
        if unbindable(&a) {
            results.push(
                AclCreationResult::default()
                    .with_error_code(UNKNOWN_SERVER_ERROR)
                    .with_error_message(None),
            );
            continue;
        }
        match invalid(&a) {
            Some(why) => results.push(
                AclCreationResult::default()
                    .with_error_code(INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(why))),
            ),
            None => {
                valid.push(a);
                results.push(AclCreationResult::default());
            }
        }
    }
    if !valid.is_empty() {
        if let Err(why) = write(broker, Command::CreateAcls { acls: valid }).await {
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = UNKNOWN_SERVER_ERROR;
                r.error_message = Some(str_bytes(format!(
                    "the metadata quorum did not take the ACLs: {why}"
                )));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

/// A DescribeAcls or DeleteAcls filter.
struct Filter {
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
}

impl Filter {
    fn invalid(&self) -> Option<&'static str> {
        if self.resource_type < resource::ANY || self.resource_type > resource::USER {
            return Some("Invalid resource type filter");
        }
        if self.pattern_type < pattern::ANY || self.pattern_type > pattern::PREFIXED {
            return Some("Invalid pattern type filter");
        }
        if self.operation < op::ANY || self.operation > op::TWO_PHASE_COMMIT {
            return Some("Invalid operation filter");
        }
        if self.permission < permission::ANY || self.permission > permission::ALLOW {
            return Some("Invalid permission type filter");
        }
        None
    }

    fn matches(&self, a: &Acl) -> bool {
        let resource_ok =
            self.resource_type == resource::ANY || self.resource_type == a.resource_type;
        let name_ok = match (&self.name, self.pattern_type) {
            (None, _) => true,
            (Some(n), pattern::MATCH) => match a.pattern_type {
                pattern::LITERAL => a.resource_name == *n || a.resource_name == acl::WILDCARD,
                pattern::PREFIXED => n.starts_with(&a.resource_name),
                _ => false,
            },
            (Some(n), _) => a.resource_name == *n,
        };
        let pattern_ok = match self.pattern_type {
            pattern::ANY | pattern::MATCH => true,
            p => a.pattern_type == p,
        };
        resource_ok
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == a.principal)
            && self.host.as_ref().is_none_or(|h| *h == a.host)
            && (self.operation == op::ANY || self.operation == a.operation)
            && (self.permission == permission::ANY || self.permission == a.permission_type)
    }
}

pub fn describe(
    broker: &Broker,
    authz: &Authorizer<'_>,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let resp = DescribeAclsResponse::default();
    if !authz.enabled() {
        return resp
            .with_error_code(SECURITY_DISABLED)
            .with_error_message(Some(str_bytes(DISABLED)));
    }
    if !authz.cluster(op::DESCRIBE) {
        return resp
            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(str_bytes(acl::message::CLUSTER)));
    }
    let f = Filter {
        resource_type: req.resource_type_filter,
        name: req.resource_name_filter.map(|n| n.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.map(|n| n.to_string()),
        host: req.host_filter.map(|n| n.to_string()),
        operation: req.operation,
        permission: req.permission_type,
    };
    if let Some(why) = f.invalid() {
        return resp
            .with_error_code(INVALID_REQUEST)
            .with_error_message(Some(str_bytes(why)));
    }
    let img = broker.cluster().image();
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for a in img.acls.iter().filter(|a| f.matches(a)) {
        let d = AclDescription::default()
            .with_principal(str_bytes(a.principal.clone()))
            .with_host(str_bytes(a.host.clone()))
            .with_operation(a.operation)
            .with_permission_type(a.permission_type);
        // The set is ordered by resource first: one entry per resource.
        match resources.last_mut() {
            Some(r)
                if r.resource_type == a.resource_type
                    && r.resource_name.as_str() == a.resource_name
                    && r.pattern_type == a.pattern_type =>
            {
                r.acls.push(d)
            }
            _ => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(str_bytes(a.resource_name.clone()))
                    .with_pattern_type(a.pattern_type)
                    .with_acls(vec![d]),
            ),
        }
    }
    resp.with_resources(resources)
}

pub async fn delete(
    broker: &Broker,
    authz: &Authorizer<'_>,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let fail = |code, message: &str| {
        req.filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            })
            .collect::<Vec<_>>()
    };
    if !authz.enabled() {
        return DeleteAclsResponse::default()
            .with_filter_results(fail(SECURITY_DISABLED, DISABLED));
    }
    if !authz.cluster(op::ALTER) {
        return DeleteAclsResponse::default()
            .with_filter_results(fail(CLUSTER_AUTHORIZATION_FAILED, acl::message::CLUSTER));
    }
    let img = broker.cluster().image();
    let mut results = Vec::new();
    let mut doomed = std::collections::BTreeSet::new();
    for f in &req.filters {
        let f = Filter {
            resource_type: f.resource_type_filter,
            name: f.resource_name_filter.as_ref().map(|n| n.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(|n| n.to_string()),
            host: f.host_filter.as_ref().map(|n| n.to_string()),
            operation: f.operation,
            permission: f.permission_type,
        };
        if let Some(why) = f.invalid() {
            results.push(
                DeleteAclsFilterResult::default()
                    .with_error_code(INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(why))),
            );
            continue;
        }
        let matching: Vec<DeleteAclsMatchingAcl> = img
            .acls
            .iter()
            .filter(|a| f.matches(a))
            .map(|a| {
                doomed.insert(a.clone());
                DeleteAclsMatchingAcl::default()
                    .with_error_message(None)
                    .with_resource_type(a.resource_type)
                    .with_resource_name(str_bytes(a.resource_name.clone()))
                    .with_pattern_type(a.pattern_type)
                    .with_principal(str_bytes(a.principal.clone()))
                    .with_host(str_bytes(a.host.clone()))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission_type)
            })
            .collect();
        results.push(
            DeleteAclsFilterResult::default()
                .with_error_message(None)
                .with_matching_acls(matching),
        );
    }
    if !doomed.is_empty() {
        if let Err(why) = write(
            broker,
            Command::DeleteAcls {
                acls: doomed.into_iter().collect(),
            },
        )
        .await
        {
            return DeleteAclsResponse::default().with_filter_results(fail(
                UNKNOWN_SERVER_ERROR,
                &format!("the metadata quorum did not take the change: {why}"),
            ));
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
