//! The certificates of a secured cluster (decision 0030): a cluster CA the
//! operator generates into a Secret, a certificate per broker with its pod
//! and Service DNS names, and the operator's own client certificate, all
//! ECDSA P-256 signed by that CA with rcgen.
//!
//! Secrets, each owned by the KafkaCluster:
//! - `<cluster>-cluster-ca`: `ca.crt` and `ca.key` (only the operator reads it);
//! - `<cluster>-cluster-ca-cert`: `ca.crt`, what clients trust;
//! - `<cluster>-broker-certs`: `<pod>.pem` (key, certificate, CA) per broker
//!   and `ca.crt`, mounted by the broker pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_client::TlsConfig;

use crate::crd::KafkaCluster;
use crate::error::{Error, Result};
use crate::resources;

pub const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const ORGANIZATION: &str = "sluice.dev";

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the cluster CA Secret {0} has no {1}")]
    Missing(String, &'static str),
    #[error("the cluster CA in Secret {0} does not load: {1}")]
    Invalid(String, String),
}

pub fn ca_secret_name(kc: &KafkaCluster) -> String {
    format!("{}-cluster-ca", kc.name_any())
}

/// The Secret clients mount to trust the brokers.
pub fn ca_cert_secret_name(kc: &KafkaCluster) -> String {
    format!("{}-cluster-ca-cert", kc.name_any())
}

pub fn broker_secret_name(kc: &KafkaCluster) -> String {
    format!("{}-broker-certs", kc.name_any())
}

/// The brokers' principal (their certificate's subject by Kafka's DEFAULT
/// mapping): a super user, so that they replicate under ACLs. A user's
/// client certificate (common name only) can never have this subject.
pub fn broker_principal(kc: &KafkaCluster) -> String {
    format!("User:CN={}-broker,O={ORGANIZATION}", kc.name_any())
}

/// The operator's principal on the cluster: a super user too.
pub fn operator_principal(kc: &KafkaCluster) -> String {
    format!("User:CN={}-operator,O={ORGANIZATION}", kc.name_any())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    dn
}

/// The CA's parameters: the same for a cluster every time, so that the CA
/// stored as a key and a certificate signs again after a restart.
fn ca_params(kc: &KafkaCluster, validity_days: i32) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(&format!(
        "cluster CA {}/{}",
        kc.namespace().unwrap_or_default(),
        kc.name_any()
    ));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, validity_days);
    Ok(p)
}

fn validity(p: &mut CertificateParams, days: i32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of the brokers and clients may lag ours.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

/// A cluster CA: its certificate and key as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

impl Ca {
    pub fn generate(kc: &KafkaCluster) -> Result<Self, CertError> {
        // The CA outlives the certificates it signs: five of their lives.
        let days = kc.spec.certificates.validity_days.saturating_mul(5);
        let key = KeyPair::generate()?;
        let cert = ca_params(kc, days)?.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn from_secret(secret: &Secret) -> Result<Self, CertError> {
        let name = secret.name_any();
        let get = |k: &'static str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .ok_or_else(|| CertError::Missing(name.clone(), k))
        };
        Ok(Ca {
            cert_pem: get(CA_CERT)?,
            key_pem: get(CA_KEY)?,
        })
    }

    /// Signs a leaf certificate for `cn` with `dns` names.
    fn issue(&self, kc: &KafkaCluster, cn: &str, dns: &[String]) -> Result<String, CertError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| CertError::Invalid(ca_secret_name(kc), e.to_string()))?;
        let ca_params = ca_params(kc, kc.spec.certificates.validity_days)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = dn(cn);
        p.subject_alt_names = dns
            .iter()
            .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, kc.spec.certificates.validity_days);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok(format!(
            "{}{}{}",
            key.serialize_pem(),
            cert.pem(),
            self.cert_pem
        ))
    }

    /// Broker `id`'s key store: key, certificate, CA. Its names: its pod's
    /// and the bootstrap Service's, short and long.
    pub fn broker_keystore(&self, kc: &KafkaCluster, id: i32) -> Result<String, CertError> {
        let name = kc.name_any();
        let ns = kc.namespace().unwrap_or_else(|| "default".into());
        let headless = resources::headless_service_name(kc);
        let bootstrap = resources::bootstrap_service_name(kc);
        let pod = format!("{name}-{id}.{headless}.{ns}.svc");
        let service = format!("{bootstrap}.{ns}.svc");
        let dns = vec![
            pod.clone(),
            format!("{pod}.cluster.local"),
            service.clone(),
            format!("{service}.cluster.local"),
            format!("{bootstrap}.{ns}"),
            bootstrap,
        ];
        self.issue(kc, &format!("{name}-broker"), &dns)
    }

    /// The client side of TLS for the operator's admin requests: this CA
    /// as the only root, and a certificate of the operator's own.
    pub fn operator_tls(&self, kc: &KafkaCluster) -> Result<TlsConfig, CertError> {
        let pem = self.issue(kc, &format!("{}-operator", kc.name_any()), &[])?;
        let invalid = |e: String| CertError::Invalid(ca_secret_name(kc), e);
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key =
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| invalid(e.to_string()))?)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Arc::new(config))
    }
}

fn secret(kc: &KafkaCluster, name: String, data: BTreeMap<String, String>) -> Secret {
    let metadata = kube::api::ObjectMeta {
        name: Some(name),
        namespace: kc.namespace(),
        labels: Some(resources::labels(kc)),
        owner_references: kc.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    resources::opaque_secret(metadata, data)
}

fn entries(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

/// The cluster CA from its Secret; None before the operator made it.
pub async fn read_ca(client: &kube::Client, kc: &KafkaCluster) -> Result<Option<Ca>> {
    let ns = kc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = ca_secret_name(kc);
    match api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?
    {
        Some(s) => Ok(Some(Ca::from_secret(&s).map_err(Error::Certificates)?)),
        None => Ok(None),
    }
}

/// The three Secrets, made or completed: the CA once, a key store for
/// each broker of `0..brokers` that has none. Returns the CA.
pub async fn reconcile(
    ctx: &crate::context::Context,
    kc: &KafkaCluster,
    brokers: i32,
) -> Result<Ca> {
    let ns = kc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let ca = match read_ca(&ctx.client, kc).await? {
        Some(ca) => ca,
        None => {
            let ca = Ca::generate(kc).map_err(Error::Certificates)?;
            let data = BTreeMap::from([
                (CA_CERT.to_string(), ca.cert_pem.clone()),
                (CA_KEY.to_string(), ca.key_pem.clone()),
            ]);
            // Created, never applied over: a CA that two operators raced
            // to make is the first one, and the loser reads it back.
            match api
                .create(&Default::default(), &secret(kc, ca_secret_name(kc), data))
                .await
            {
                Ok(_) => ca,
                Err(kube::Error::Api(e)) if e.code == 409 => read_ca(&ctx.client, kc)
                    .await?
                    .ok_or(Error::MissingField("the cluster CA Secret"))?,
                Err(e) => {
                    return Err(Error::kube(format!(
                        "create Secret {ns}/{}",
                        ca_secret_name(kc)
                    ))(e));
                }
            }
        }
    };
    let public = BTreeMap::from([(CA_CERT.to_string(), ca.cert_pem.clone())]);
    crate::controller::cluster::apply(ctx, &ns, &secret(kc, ca_cert_secret_name(kc), public))
        .await?;

    let name = broker_secret_name(kc);
    let mut stores = match api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?
    {
        Some(s) => entries(&s),
        None => BTreeMap::new(),
    };
    let before = stores.clone();
    // Key stores of another CA (one replaced by hand) are issued again.
    if stores.get(CA_CERT) != Some(&ca.cert_pem) {
        stores.clear();
    }
    stores.insert(CA_CERT.to_string(), ca.cert_pem.clone());
    for id in 0..brokers {
        if let std::collections::btree_map::Entry::Vacant(e) = stores.entry(keystore_file(kc, id)) {
            e.insert(ca.broker_keystore(kc, id).map_err(Error::Certificates)?);
        }
    }
    if stores != before {
        crate::controller::cluster::apply(ctx, &ns, &secret(kc, name, stores)).await?;
    }
    Ok(ca)
}

/// Broker `id`'s key store in the broker Secret (and its mounted volume).
pub fn keystore_file(kc: &KafkaCluster, id: i32) -> String {
    format!("{}-{id}.pem", kc.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> KafkaCluster {
        let spec = serde_json::from_value(serde_json::json!({
            "replicas": 2, "storage": {"size": "1Gi"},
            "listeners": [{"name": "tls", "port": 9094, "tls": true}]
        }))
        .expect("spec");
        let mut kc = KafkaCluster::new("demo", spec);
        kc.metadata.namespace = Some("kafka".into());
        kc
    }

    #[test]
    fn a_ca_read_back_from_its_secret_issues_broker_key_stores_and_the_operators_tls() {
        let kc = cluster();
        let ca = Ca::generate(&kc).expect("CA");
        let stored = secret(
            &kc,
            ca_secret_name(&kc),
            BTreeMap::from([
                (CA_CERT.to_string(), ca.cert_pem.clone()),
                (CA_KEY.to_string(), ca.key_pem.clone()),
            ]),
        );
        let again = Ca::from_secret(&stored).expect("read back");
        assert!(again == ca);
        let store = again.broker_keystore(&kc, 1).expect("key store");
        let certs: Vec<_> = CertificateDer::pem_slice_iter(store.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .expect("certificates");
        assert_eq!(certs.len(), 2, "the broker's certificate, then the CA's");
        assert!(PrivateKeyDer::from_pem_slice(store.as_bytes()).is_ok());
        assert!(store.ends_with(&ca.cert_pem), "the chain ends with the CA");
        again.operator_tls(&kc).expect("the operator's TLS");
        let mut empty = stored.clone();
        empty.data = Some(BTreeMap::new());
        assert!(matches!(
            Ca::from_secret(&empty),
            Err(CertError::Missing(_, CA_CERT))
        ));
        assert_eq!(
            broker_principal(&kc),
            "User:CN=demo-broker,O=sluice.dev",
            "as the broker's DEFAULT mapping names its certificate's subject"
        );
    }
}
