//! AlterUserScramCredentials (51) and DescribeUserScramCredentials (50):
//! SCRAM credentials kept salted in the metadata quorum, checked as
//! Kafka's controller checks them (the differential suite compares).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use sluice_quorum::image::{Command, Outcome, ScramCredential};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::code::{
    DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND, UNACCEPTABLE_CREDENTIAL, UNKNOWN_SERVER_ERROR,
    UNSUPPORTED_SASL_MECHANISM,
};
use crate::security::sasl::scram::Mechanism;

fn result(user: &str, code: i16, message: Option<&str>) -> AlterUserScramCredentialsResult {
    AlterUserScramCredentialsResult::default()
        .with_user(str_bytes(user))
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
}

pub async fn alter(
    broker: &Broker,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    // A user named twice in one request (whatever the mechanisms) is
    // refused as a whole, as Kafka's controller does.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for name in req
        .deletions
        .iter()
        .map(|d| d.name.as_str())
        .chain(req.upsertions.iter().map(|u| u.name.as_str()))
    {
        *count.entry(name).or_default() += 1;
    }
    let twice: BTreeSet<&str> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| *u)
        .collect();
    let img = broker.cluster().image();
    let mut results = Vec::new();
    let mut changes = Vec::new();
    for d in req
        .deletions
        .iter()
        .filter(|d| !twice.contains(d.name.as_str()))
    {
        let user = d.name.as_str();
        let Some(m) = Mechanism::from_code(d.mechanism) else {
            results.push(result(
                user,
                UNSUPPORTED_SASL_MECHANISM,
                Some("Unknown SCRAM mechanism"),
            ));
            continue;
        };
        let exists = img
            .scram_credentials
            .get(user)
            .is_some_and(|c| c.contains_key(m.name()));
        if !exists {
            results.push(result(
                user,
                RESOURCE_NOT_FOUND,
                Some("Attempt to delete a user credential that does not exist"),
            ));
            continue;
        }
        changes.push((user.to_string(), m.name().to_string(), None));
        results.push(result(user, 0, None));
    }
    for u in req
        .upsertions
        .iter()
        .filter(|u| !twice.contains(u.name.as_str()))
    {
        let user = u.name.as_str();
        let Some(m) = Mechanism::from_code(u.mechanism) else {
            results.push(result(
                user,
                UNSUPPORTED_SASL_MECHANISM,
                Some("Unknown SCRAM mechanism"),
            ));
            continue;
        };
        if u.iterations < Mechanism::MIN_ITERATIONS {
            results.push(result(
                user,
                UNACCEPTABLE_CREDENTIAL,
                Some("Too few iterations"),
            ));
            continue;
        }
        if u.iterations > Mechanism::MAX_ITERATIONS {
            results.push(result(
                user,
                UNACCEPTABLE_CREDENTIAL,
                Some("Too many iterations"),
            ));
            continue;
        }
        if user.is_empty() || u.salted_password.is_empty() || u.salt.is_empty() {
            results.push(result(
                user,
                UNACCEPTABLE_CREDENTIAL,
                Some("Username, salt and salted password must not be empty"),
            ));
            continue;
        }
        let c = m.credential(&u.salt, &u.salted_password, u.iterations);
        changes.push((
            user.to_string(),
            m.name().to_string(),
            Some(ScramCredential {
                salt: c.salt,
                stored_key: c.stored_key,
                server_key: c.server_key,
                iterations: c.iterations,
            }),
        ));
        results.push(result(user, 0, None));
    }
    for user in &twice {
        results.push(result(
            user,
            DUPLICATE_RESOURCE,
            Some("A user credential cannot be altered twice in the same request"),
        ));
    }
    if !changes.is_empty() {
        let written = broker
            .cluster()
            .write(Command::AlterScramCredentials { changes })
            .await;
        let failure = match written {
            Ok(Outcome::Ok) => None,
            Ok(other) => Some(format!("{other:?}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            tracing::warn!(%why, "writing SCRAM credentials to the metadata quorum");
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = UNKNOWN_SERVER_ERROR;
                r.error_message = Some(str_bytes(format!(
                    "the metadata quorum did not take the change: {why}"
                )));
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub fn describe(
    broker: &Broker,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let img = broker.cluster().image();
    let infos = |user: &str| -> Option<Vec<CredentialInfo>> {
        let creds = img.scram_credentials.get(user)?;
        Some(
            Mechanism::ALL
                .into_iter()
                .filter_map(|m| {
                    creds.get(m.name()).map(|c| {
                        CredentialInfo::default()
                            .with_mechanism(m.code())
                            .with_iterations(c.iterations)
                    })
                })
                .collect(),
        )
    };
    let found = |user: &str, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_credential_infos(infos)
    };
    let results = match req.users.as_deref() {
        None | Some([]) => img
            .scram_credentials
            .keys()
            .filter_map(|u| Some(found(u, infos(u)?)))
            .collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let twice: BTreeSet<&str> = users
                .iter()
                .map(|u| u.name.as_str())
                .filter(|u| !seen.insert(*u))
                .collect();
            let mut done = BTreeSet::new();
            let mut out = Vec::new();
            for u in users.iter().map(|u| u.name.as_str()) {
                if !done.insert(u) {
                    continue;
                }
                let r = if twice.contains(u) {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(u))
                        .with_error_code(DUPLICATE_RESOURCE)
                        .with_error_message(Some(str_bytes(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {u}"
                        ))))
                } else {
                    match infos(u) {
                        Some(i) => found(u, i),
                        None => DescribeUserScramCredentialsResult::default()
                            .with_user(str_bytes(u))
                            .with_error_code(RESOURCE_NOT_FOUND)
                            .with_error_message(Some(str_bytes(format!(
                                "Attempt to describe a user credential that does not exist: {u}"
                            )))),
                    }
                };
                out.push(r);
            }
            out
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
