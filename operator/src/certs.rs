//! The certificates of a secured cluster (decisions 0030, 0031): a cluster
//! CA the operator generates into a Secret, a certificate per broker with
//! its pod and Service DNS names, and the operator's own client
//! certificate, all ECDSA P-256 signed by that CA with rcgen; and a clients
//! CA that signs the client certificates of `tls` KafkaUsers, which the
//! brokers trust beside the cluster CA.
//!
//! Renewal (decision 0031): a certificate is issued again when fewer than
//! `renewalDays` of its life are left. The CA is renewed with its own key
//! (a new certificate, the same subject and key), so that every client
//! and broker that trusts the old CA certificate trusts what the renewed
//! one signs, and the other way round: nobody loses trust, nothing
//! restarts; the brokers read the re-issued key stores from their mounted
//! Secret within seconds. `sluice.dev/force-renew` on the CA Secret renews
//! it at once.
//!
//! Secrets, each owned by the KafkaCluster:
//! - `<cluster>-cluster-ca`, `<cluster>-clients-ca`: `ca.crt` and `ca.key`
//!   (only the operator reads them);
//! - `<cluster>-cluster-ca-cert`: `ca.crt`, what clients trust (and
//!   `<cluster>-clients-ca-cert`, what the brokers trust of clients);
//! - `<cluster>-broker-certs`: `<pod>.pem` (key, certificate, cluster CA)
//!   per broker, `ca.crt` (both CAs, the Kafka listeners' trust store) and
//!   `cluster-ca.crt` (the quorum's), mounted by the broker pods.

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
/// The cluster CA alone in the broker Secret: what the quorum port trusts
/// (no client reaches it).
pub const CLUSTER_CA_CERT: &str = "cluster-ca.crt";
const CA_KEY: &str = "ca.key";
const ORGANIZATION: &str = "sluice.dev";
/// An annotation on the CA Secret that renews the CA now (as Strimzi's
/// `strimzi.io/force-renew`); removed once done.
pub const FORCE_RENEW: &str = "sluice.dev/force-renew";

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the CA Secret {0} has no {1}")]
    Missing(String, &'static str),
    #[error("the CA in Secret {0} does not load: {1}")]
    Invalid(String, String),
}

/// Which of a cluster's two CAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaKind {
    /// Signs the brokers' and the operator's certificates: what clients
    /// trust.
    Cluster,
    /// Signs the certificates of `tls` KafkaUsers: what the brokers trust
    /// of clients.
    Clients,
}

impl CaKind {
    fn label(self) -> &'static str {
        match self {
            CaKind::Cluster => "cluster",
            CaKind::Clients => "clients",
        }
    }

    /// The Secret with the CA's key.
    pub fn secret_name(self, kc: &KafkaCluster) -> String {
        format!("{}-{}-ca", kc.name_any(), self.label())
    }

    /// The Secret with its certificate alone, for whoever trusts it.
    pub fn cert_secret_name(self, kc: &KafkaCluster) -> String {
        format!("{}-{}-ca-cert", kc.name_any(), self.label())
    }
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
fn ca_params(
    kc: &KafkaCluster,
    kind: CaKind,
    validity_days: i32,
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(&format!(
        "{} CA {}/{}",
        kind.label(),
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

/// A CA of the cluster: its certificate and key as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub kind: CaKind,
    pub cert_pem: String,
    key_pem: String,
}

impl Ca {
    pub fn generate(kc: &KafkaCluster, kind: CaKind) -> Result<Self, CertError> {
        // The CA outlives the certificates it signs: five of their lives.
        let days = kc.spec.certificates.validity_days.saturating_mul(5);
        let key = KeyPair::generate()?;
        let cert = ca_params(kc, kind, days)?.self_signed(&key)?;
        Ok(Ca {
            kind,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn key(&self, kc: &KafkaCluster) -> Result<KeyPair, CertError> {
        KeyPair::from_pem(&self.key_pem)
            .map_err(|e| CertError::Invalid(self.kind.secret_name(kc), e.to_string()))
    }

    /// A new certificate for the same key: what the old certificate
    /// signed still verifies against the new, and the other way round.
    fn renew(&self, kc: &KafkaCluster) -> Result<Self, CertError> {
        let days = kc.spec.certificates.validity_days.saturating_mul(5);
        let cert = ca_params(kc, self.kind, days)?.self_signed(&self.key(kc)?)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            ..self.clone()
        })
    }

    fn data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CA_CERT.to_string(), self.cert_pem.clone()),
            (CA_KEY.to_string(), self.key_pem.clone()),
        ])
    }

    fn from_secret(secret: &Secret, kind: CaKind) -> Result<Self, CertError> {
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
            kind,
            cert_pem: get(CA_CERT)?,
            key_pem: get(CA_KEY)?,
        })
    }

    /// Signs a leaf certificate for `subject` with `dns` names and the
    /// usages `eku`: (key, certificate) as PEM.
    fn issue(
        &self,
        kc: &KafkaCluster,
        subject: DistinguishedName,
        dns: &[String],
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<(String, String), CertError> {
        let ca_key = self.key(kc)?;
        let ca_params = ca_params(kc, self.kind, kc.spec.certificates.validity_days)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = subject;
        p.subject_alt_names = dns
            .iter()
            .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        p.extended_key_usages = eku;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, kc.spec.certificates.validity_days);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok((key.serialize_pem(), cert.pem()))
    }

    /// A key store of the cluster CA: key, certificate, CA, for a peer
    /// that serves and connects (a broker, the operator).
    fn peer_keystore(
        &self,
        kc: &KafkaCluster,
        cn: &str,
        dns: &[String],
    ) -> Result<String, CertError> {
        let eku = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (key, cert) = self.issue(kc, dn(cn), dns, eku)?;
        Ok(format!("{key}{cert}{}", self.cert_pem))
    }

    /// A `tls` KafkaUser's client certificate, from the clients CA: its
    /// subject is `CN=<user>` alone (the principal `User:CN=<user>`),
    /// which no broker or operator certificate has. (key, certificate).
    pub fn user_certificate(
        &self,
        kc: &KafkaCluster,
        user: &str,
    ) -> Result<(String, String), CertError> {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, user);
        let (key, cert) =
            self.issue(kc, subject, &[], vec![ExtendedKeyUsagePurpose::ClientAuth])?;
        Ok((key, format!("{cert}{}", self.cert_pem)))
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
        self.peer_keystore(kc, &format!("{name}-broker"), &dns)
    }

    /// The client side of TLS for the operator's admin requests: this CA
    /// as the only root, and a certificate of the operator's own.
    pub fn operator_tls(&self, kc: &KafkaCluster) -> Result<TlsConfig, CertError> {
        let pem = self.peer_keystore(kc, &format!("{}-operator", kc.name_any()), &[])?;
        let invalid = |e: String| CertError::Invalid(self.kind.secret_name(kc), e);
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

/// When the first certificate of `pem` expires; None if it does not parse.
pub fn not_after(pem: &str) -> Option<time::OffsetDateTime> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()
}

/// Whether the first certificate of `pem` has fewer than `renewal_days`
/// left at `now` (or does not parse: issued again rather than served
/// broken).
pub fn due(pem: &str, renewal_days: i32, now: time::OffsetDateTime) -> bool {
    not_after(pem).is_none_or(|end| end - now < time::Duration::days(i64::from(renewal_days)))
}

/// Whether the first certificate of `leaf_pem` chains to a certificate of
/// `ca_pem` as a client certificate, as a broker checks one.
pub fn chains_to(leaf_pem: &str, ca_pem: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        if roots.add(c).is_err() {
            return false;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
    else {
        return false;
    };
    let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(leaf_pem.as_bytes()).next() else {
        return false;
    };
    verifier
        .verify_client_cert(&leaf, &[], rustls_pki_types::UnixTime::now())
        .is_ok()
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

/// A Secret's entries that are text.
pub fn entries(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

async fn read_ca_secret(
    client: &kube::Client,
    kc: &KafkaCluster,
    kind: CaKind,
) -> Result<Option<Secret>> {
    let ns = kc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = kind.secret_name(kc);
    api.get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))
}

/// A CA of the cluster from its Secret; None before the operator made it.
pub async fn read_ca(client: &kube::Client, kc: &KafkaCluster, kind: CaKind) -> Result<Option<Ca>> {
    match read_ca_secret(client, kc, kind).await? {
        Some(s) => Ok(Some(
            Ca::from_secret(&s, kind).map_err(Error::Certificates)?,
        )),
        None => Ok(None),
    }
}

/// A CA from its Secret: made if there is none, renewed (same key) when
/// it is due or asked for with [`FORCE_RENEW`].
async fn current_ca(ctx: &crate::context::Context, kc: &KafkaCluster, kind: CaKind) -> Result<Ca> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kind.secret_name(kc);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(stored) = read_ca_secret(&ctx.client, kc, kind).await? else {
        let ca = Ca::generate(kc, kind).map_err(Error::Certificates)?;
        // Created, never applied over: a CA that two operators raced
        // to make is the first one, and the loser reads it back.
        return match api
            .create(&Default::default(), &secret(kc, name.clone(), ca.data()))
            .await
        {
            Ok(_) => Ok(ca),
            Err(kube::Error::Api(e)) if e.code == 409 => read_ca(&ctx.client, kc, kind)
                .await?
                .ok_or(Error::MissingField("the CA Secret")),
            Err(e) => Err(Error::kube(format!("create Secret {ns}/{name}"))(e)),
        };
    };
    let ca = Ca::from_secret(&stored, kind).map_err(Error::Certificates)?;
    let forced = stored.annotations().contains_key(FORCE_RENEW);
    let now = time::OffsetDateTime::now_utc();
    match renewal(&stored, &ca, kc, now) {
        Renewal::Keep => return Ok(ca),
        Renewal::Given => {
            tracing::warn!(
                cluster = %kc.name_any(), ca = kind.label(), secret = %name,
                expires = ?not_after(&ca.cert_pem),
                "a CA given by the user is due for renewal: the operator never renews it; replace its certificate (same key) in the Secret"
            );
            return Ok(ca);
        }
        Renewal::Renew => {}
    }
    let renewed = ca.renew(kc).map_err(Error::Certificates)?;
    let mut replacement = stored.clone();
    replacement
        .metadata
        .annotations
        .get_or_insert_default()
        .remove(FORCE_RENEW);
    replacement.data = secret(kc, name.clone(), renewed.data()).data;
    replacement.string_data = None;
    // Replaced at the version read: an operator that lost a race reads
    // the winner's CA on its next pass.
    api.replace(&name, &Default::default(), &replacement)
        .await
        .map_err(Error::kube(format!("renew the CA in Secret {ns}/{name}")))?;
    tracing::info!(
        cluster = %kc.name_any(), ca = kind.label(), forced,
        expired = ?not_after(&ca.cert_pem),
        "CA renewed with its own key; the certificates it signed are issued again"
    );
    Ok(renewed)
}

/// What becomes of a stored CA.
#[derive(Debug, PartialEq, Eq)]
enum Renewal {
    Keep,
    /// Due (or asked for), and the operator's: renewed.
    Renew,
    /// Due, but the user's own CA (a Secret the operator did not make):
    /// never touched, only warned about.
    Given,
}

fn renewal(stored: &Secret, ca: &Ca, kc: &KafkaCluster, now: time::OffsetDateTime) -> Renewal {
    let forced = stored.annotations().contains_key(FORCE_RENEW);
    if !forced && !due(&ca.cert_pem, kc.spec.certificates.renewal_days, now) {
        return Renewal::Keep;
    }
    let ours = stored
        .labels()
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some("sluice-operator");
    if ours { Renewal::Renew } else { Renewal::Given }
}

/// The CA Secrets and the broker Secret, made or completed: each CA once
/// (renewed when due), a key store for each broker of `0..brokers` that
/// has none or whose certificate is due. Returns the cluster CA.
pub async fn reconcile(
    ctx: &crate::context::Context,
    kc: &KafkaCluster,
    brokers: i32,
) -> Result<Ca> {
    let ns = kc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut cas = Vec::new();
    for kind in [CaKind::Cluster, CaKind::Clients] {
        let ca = current_ca(ctx, kc, kind).await?;
        let public = BTreeMap::from([(CA_CERT.to_string(), ca.cert_pem.clone())]);
        let published = secret(kc, kind.cert_secret_name(kc), public);
        crate::controller::cluster::apply(ctx, &ns, &published).await?;
        cas.push(ca);
    }
    let (cluster, clients) = (&cas[0], &cas[1]);

    let name = broker_secret_name(kc);
    let stores = match api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?
    {
        Some(s) => entries(&s),
        None => BTreeMap::new(),
    };
    let now = time::OffsetDateTime::now_utc();
    let wanted = broker_stores(kc, cluster, &clients.cert_pem, stores.clone(), brokers, now)?;
    if wanted != stores {
        crate::controller::cluster::apply(ctx, &ns, &secret(kc, name, wanted)).await?;
    }
    Ok(cas.swap_remove(0))
}

/// The broker Secret's entries as they should be at `now`: the trust
/// store (the cluster CA's certificate and `clients_ca`), and a key store
/// per broker, kept while it ends with this cluster CA certificate and is
/// not due, else issued again.
fn broker_stores(
    kc: &KafkaCluster,
    ca: &Ca,
    clients_ca: &str,
    mut stores: BTreeMap<String, String>,
    brokers: i32,
    now: time::OffsetDateTime,
) -> Result<BTreeMap<String, String>> {
    stores.insert(CA_CERT.to_string(), format!("{}{clients_ca}", ca.cert_pem));
    stores.insert(CLUSTER_CA_CERT.to_string(), ca.cert_pem.clone());
    for id in 0..brokers {
        let file = keystore_file(kc, id);
        // Key stores of another CA certificate (renewed, or replaced by
        // hand) are issued again.
        let fresh = stores.get(&file).is_some_and(|pem| {
            pem.ends_with(&ca.cert_pem) && !due(pem, kc.spec.certificates.renewal_days, now)
        });
        if !fresh {
            let store = ca.broker_keystore(kc, id).map_err(Error::Certificates)?;
            stores.insert(file, store);
        }
    }
    Ok(stores)
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
        let ca = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let stored = secret(&kc, CaKind::Cluster.secret_name(&kc), ca.data());
        let again = Ca::from_secret(&stored, CaKind::Cluster).expect("read back");
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
            Ca::from_secret(&empty, CaKind::Cluster),
            Err(CertError::Missing(_, CA_CERT))
        ));
        assert_eq!(
            broker_principal(&kc),
            "User:CN=demo-broker,O=sluice.dev",
            "as the broker's DEFAULT mapping names its certificate's subject"
        );
    }

    #[test]
    fn a_renewed_ca_keeps_its_key_so_old_and_new_certificates_trust_each_other() {
        let kc = cluster();
        let old = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let renewed = old.renew(&kc).expect("renewed");
        assert_ne!(renewed.cert_pem, old.cert_pem, "a new certificate");
        let by_old = old.broker_keystore(&kc, 0).expect("key store");
        let by_new = renewed.broker_keystore(&kc, 0).expect("key store");
        assert!(chains_to(&by_old, &old.cert_pem));
        assert!(chains_to(&by_old, &renewed.cert_pem), "old leaves, new CA");
        assert!(chains_to(&by_new, &old.cert_pem), "new leaves, old CA");
        let stranger = Ca::generate(&kc, CaKind::Cluster).expect("another CA");
        assert!(
            !chains_to(&by_new, &stranger.cert_pem),
            "a CA of another key"
        );
        assert!(
            not_after(&renewed.cert_pem) >= not_after(&old.cert_pem),
            "the renewed CA lives at least as long"
        );
    }

    #[test]
    fn certificates_are_due_within_renewal_days_of_their_end() {
        let kc = cluster();
        let ca = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let store = ca.broker_keystore(&kc, 0).expect("key store");
        let now = time::OffsetDateTime::now_utc();
        let end = not_after(&store).expect("the key store's certificate parses");
        let life = end - now;
        assert!(life > time::Duration::days(364) && life <= time::Duration::days(365));
        assert!(!due(&store, 30, now));
        assert!(due(&store, 30, now + time::Duration::days(336)));
        assert!(
            due("not a certificate", 30, now),
            "unreadable is issued again"
        );
        assert!(
            !due(&ca.cert_pem, 30, now + time::Duration::days(336)),
            "the CA lives longer"
        );
    }

    #[test]
    fn broker_key_stores_are_kept_while_fresh_and_issued_again_when_due_or_of_another_ca() {
        let kc = cluster();
        let ca = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let now = time::OffsetDateTime::now_utc();
        let clients = Ca::generate(&kc, CaKind::Clients).expect("clients CA");
        let stores = |ca: &Ca, from: &BTreeMap<String, String>, at| {
            broker_stores(&kc, ca, &clients.cert_pem, from.clone(), 2, at).expect("stores")
        };
        let first = stores(&ca, &BTreeMap::new(), now);
        assert_eq!(first.len(), 4, "the trust stores and two key stores");
        assert_eq!(
            first[CLUSTER_CA_CERT], ca.cert_pem,
            "the quorum trusts brokers only"
        );
        assert_eq!(
            first[CA_CERT],
            format!("{}{}", ca.cert_pem, clients.cert_pem)
        );
        let again = stores(&ca, &first, now);
        assert!(again == first, "fresh key stores are kept");
        let later = stores(&ca, &first, now + time::Duration::days(340));
        for id in 0..2 {
            let f = keystore_file(&kc, id);
            assert_ne!(later[&f], first[&f], "a due key store is issued again");
        }
        let renewed = ca.renew(&kc).expect("renewed");
        let moved = stores(&renewed, &first, now);
        assert!(moved[CA_CERT].starts_with(&renewed.cert_pem));
        for id in 0..2 {
            let f = keystore_file(&kc, id);
            assert_ne!(moved[&f], first[&f]);
            assert!(
                moved[&f].ends_with(&renewed.cert_pem),
                "its chain ends with the new CA"
            );
        }
    }

    #[test]
    fn a_users_certificate_is_of_the_clients_ca_names_the_user_and_serves_no_server() {
        let kc = cluster();
        let cluster_ca = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let clients = Ca::generate(&kc, CaKind::Clients).expect("clients CA");
        let (key, cert) = clients.user_certificate(&kc, "app").expect("user");
        assert!(PrivateKeyDer::from_pem_slice(key.as_bytes()).is_ok());
        assert!(chains_to(&cert, &clients.cert_pem));
        assert!(
            !chains_to(&cert, &cluster_ca.cert_pem),
            "not of the cluster CA"
        );
        let der = CertificateDer::pem_slice_iter(cert.as_bytes())
            .next()
            .expect("certificate")
            .expect("parses");
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        assert_eq!(parsed.subject().to_string(), "CN=app");
        let eku = parsed
            .extended_key_usage()
            .expect("extension")
            .expect("present")
            .value;
        assert!(
            eku.client_auth && !eku.server_auth,
            "a client certificate only"
        );
        assert_ne!(
            CaKind::Clients.secret_name(&kc),
            CaKind::Cluster.secret_name(&kc)
        );
    }

    #[test]
    fn the_operators_ca_is_renewed_when_due_or_asked_and_a_users_own_never() {
        let kc = cluster();
        let ca = Ca::generate(&kc, CaKind::Cluster).expect("CA");
        let now = time::OffsetDateTime::now_utc();
        let ours = secret(&kc, CaKind::Cluster.secret_name(&kc), ca.data());
        let later = now + time::Duration::days(5 * 365 - 10);
        assert_eq!(renewal(&ours, &ca, &kc, now), Renewal::Keep);
        assert_eq!(renewal(&ours, &ca, &kc, later), Renewal::Renew);
        let mut asked = ours.clone();
        asked
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(FORCE_RENEW.into(), "true".into());
        assert_eq!(renewal(&asked, &ca, &kc, now), Renewal::Renew);
        let mut given = ours.clone();
        given.metadata.labels = None;
        assert_eq!(renewal(&given, &ca, &kc, now), Renewal::Keep);
        assert_eq!(renewal(&given, &ca, &kc, later), Renewal::Given);
    }
}
