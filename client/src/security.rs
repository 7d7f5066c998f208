//! Admin calls for users and ACLs: SCRAM credentials
//! (Alter/DescribeUserScramCredentials) and ACL bindings
//! (Create/Describe/DeleteAcls), as the operator's `KafkaUser` needs them.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::{AdminClient, AdminError, kafka};

/// Kafka's RESOURCE_NOT_FOUND: a user without SCRAM credentials.
const RESOURCE_NOT_FOUND: i16 = 91;
/// The ANY of Kafka's ACL filter enums.
const ANY: i8 = 1;

/// One ACL binding, with Kafka's codes: resource type (2 topic, 3 group,
/// 4 cluster, 5 transactional id), pattern type (3 literal, 4 prefixed),
/// operation (2 all, 3 read, 4 write, 5 create, 6 delete, 7 alter,
/// 8 describe, 9 cluster action, 10 describe configs, 11 alter configs,
/// 12 idempotent write), permission (2 deny, 3 allow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl AdminClient {
    /// Every ACL binding of `principal`.
    pub async fn acls_of(&mut self, principal: &str) -> Result<Vec<AclBinding>, AdminError> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(ANY)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(ANY)
            .with_principal_filter(Some(text(principal)))
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY);
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())?;
        Ok(resp
            .resources
            .iter()
            .flat_map(|r| {
                r.acls.iter().map(|a| AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Creates the bindings; the first refusal is the error.
    pub async fn create_acls(&mut self, acls: &[AclBinding]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let creations = acls
            .iter()
            .map(|a| {
                AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(text(&a.resource_name))
                    .with_resource_pattern_type(a.pattern_type)
                    .with_principal(text(&a.principal))
                    .with_host(text(&a.host))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let resp = self
            .call(CreateAclsRequest::default().with_creations(creations))
            .await?;
        for r in &resp.results {
            kafka(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Deletes exactly these bindings (each filter matches one binding).
    pub async fn delete_acls(&mut self, acls: &[AclBinding]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let filters = acls
            .iter()
            .map(|a| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(a.resource_type)
                    .with_resource_name_filter(Some(text(&a.resource_name)))
                    .with_pattern_type_filter(a.pattern_type)
                    .with_principal_filter(Some(text(&a.principal)))
                    .with_host_filter(Some(text(&a.host)))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let resp = self
            .call(DeleteAclsRequest::default().with_filters(filters))
            .await?;
        for r in &resp.filter_results {
            kafka(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// The SCRAM mechanisms (Kafka's codes: 1 SHA-256, 2 SHA-512) `user`
    /// has credentials of, with their iterations; empty for none.
    pub async fn scram_credentials_of(&mut self, user: &str) -> Result<Vec<(i8, i32)>, AdminError> {
        let req = DescribeUserScramCredentialsRequest::default()
            .with_users(Some(vec![UserName::default().with_name(text(user))]));
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())?;
        let mut out = Vec::new();
        for r in &resp.results {
            match r.error_code {
                0 => out.extend(
                    r.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations)),
                ),
                RESOURCE_NOT_FOUND => {}
                code => kafka(code, r.error_message.as_ref())?,
            }
        }
        Ok(out)
    }

    /// Sets `user`'s credential of `mechanism` from a salted password (the
    /// client salts: the password never reaches the broker).
    pub async fn upsert_scram_credential(
        &mut self,
        user: &str,
        mechanism: i8,
        iterations: i32,
        salt: &[u8],
        salted_password: &[u8],
    ) -> Result<(), AdminError> {
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(text(user))
                .with_mechanism(mechanism)
                .with_iterations(iterations)
                .with_salt(Bytes::copy_from_slice(salt))
                .with_salted_password(Bytes::copy_from_slice(salted_password)),
        ]);
        self.alter_scram(req).await
    }

    /// Removes `user`'s credential of `mechanism`; one that is not there
    /// is no error.
    pub async fn delete_scram_credential(
        &mut self,
        user: &str,
        mechanism: i8,
    ) -> Result<(), AdminError> {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(text(user))
                .with_mechanism(mechanism),
        ]);
        match self.alter_scram(req).await {
            Err(AdminError::Kafka {
                code: RESOURCE_NOT_FOUND,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    async fn alter_scram(
        &mut self,
        req: AlterUserScramCredentialsRequest,
    ) -> Result<(), AdminError> {
        let resp = self.call(req).await?;
        for r in &resp.results {
            kafka(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }
}
