//! TLS for the Kafka listeners with `rustls`: a PEM key and chain, an
//! optional PEM trust store for client certificates, reloaded when the
//! files change (a renewed certificate is served to new connections
//! without a restart; connections already open keep theirs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::principal::PrincipalBuilder;
use crate::error::{Error, Result};
use crate::server::Principal;

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// The `ssl.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// `ssl.keystore.location`: a PEM file with the private key and the
    /// certificate chain (Kafka's PEM key store).
    pub keystore: Option<PathBuf>,
    /// `ssl.truststore.location`: PEM CA certificates that client
    /// certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `listener.name.<listener>.ssl.client.auth`: a listener's own
    /// `ssl.client.auth` over the broker-wide one (names upper case).
    pub listener_client_auth: BTreeMap<String, ClientAuth>,
    /// `ssl.principal.mapping.rules`.
    pub principal_mapping_rules: String,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            keystore: None,
            truststore: None,
            client_auth: ClientAuth::None,
            listener_client_auth: BTreeMap::new(),
            principal_mapping_rules: "DEFAULT".into(),
        }
    }
}

impl SslConfig {
    /// The `ssl.client.auth` of connections to `listener`.
    pub fn client_auth_of(&self, listener: &str) -> ClientAuth {
        self.listener_client_auth
            .get(listener)
            .copied()
            .unwrap_or(self.client_auth)
    }

    /// Every `ssl.client.auth` some listener may use.
    fn modes(&self) -> BTreeSet<ClientAuth> {
        std::iter::once(self.client_auth)
            .chain(self.listener_client_auth.values().copied())
            .collect()
    }
}

/// The acceptors, one per `ssl.client.auth` in use.
type Acceptors = BTreeMap<ClientAuth, TlsAcceptor>;

/// How often the key store and trust store files are looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The files' contents the current acceptor was built from.
#[derive(PartialEq, Eq)]
struct Loaded {
    keystore: Vec<u8>,
    truststore: Option<Vec<u8>>,
}

/// The server side of TLS for every TLS listener of this broker.
pub struct Tls {
    config: SslConfig,
    acceptors: RwLock<(Acceptors, Arc<Loaded>)>,
    /// The client side, for this broker's own connections to an SSL
    /// listener of another (replica fetchers): the trust store's CAs as
    /// roots, the key store as the client certificate. None without a
    /// trust store.
    connector: RwLock<Option<sluice_client::TlsConfig>>,
    principals: PrincipalBuilder,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish()
    }
}

impl Tls {
    /// Loads the key store (and trust store); an error names the file.
    pub fn load(config: &SslConfig) -> Result<Self> {
        let loaded = read(config)?;
        let acceptors = build_all(config, &loaded)?;
        let connector = build_connector(&loaded)?;
        Ok(Tls {
            principals: PrincipalBuilder::parse(&config.principal_mapping_rules)?,
            config: config.clone(),
            acceptors: RwLock::new((acceptors, Arc::new(loaded))),
            connector: RwLock::new(connector),
        })
    }

    /// The acceptor of connections to `listener` (its `ssl.client.auth`).
    pub fn acceptor(&self, listener: &str) -> TlsAcceptor {
        let mode = self.config.client_auth_of(listener);
        let acceptors = self.acceptors.read();
        match acceptors.0.get(&mode) {
            Some(a) => a.clone(),
            // Every mode of the config is built; the broker-wide one is
            // there whatever a listener asks.
            None => acceptors.0[&self.config.client_auth].clone(),
        }
    }

    /// The client side of TLS for this broker's connections to its peers'
    /// SSL listeners (mutual: it presents its own certificate).
    pub fn connector(&self) -> Option<sluice_client::TlsConfig> {
        self.connector.read().clone()
    }

    /// Rebuilds the acceptor if a file changed. A file that no longer
    /// reads or parses keeps the previous one serving (and is logged), so
    /// a half-written renewal never takes a listener down.
    pub fn reload_if_changed(&self) -> bool {
        let loaded = match read(&self.config) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "TLS files unreadable; still serving the previous certificate");
                return false;
            }
        };
        if *self.acceptors.read().1 == loaded {
            return false;
        }
        match build_all(&self.config, &loaded).and_then(|a| Ok((a, build_connector(&loaded)?))) {
            Ok((a, c)) => {
                *self.acceptors.write() = (a, Arc::new(loaded));
                *self.connector.write() = c;
                tracing::info!(
                    "TLS key store or trust store changed: new connections get the new one"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; still serving the previous certificate");
                false
            }
        }
    }

    /// Looks at the files every few seconds until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }

    /// The principal of a client that presented `cert` (its leaf), by
    /// `ssl.principal.mapping.rules`; ANONYMOUS without one.
    pub fn principal(&self, cert: Option<&CertificateDer<'_>>) -> Principal {
        let Some(cert) = cert else {
            return Principal::anonymous();
        };
        match super::principal::subject_dn(cert) {
            Some(dn) => Principal::user(self.principals.apply(&dn)),
            None => Principal::anonymous(),
        }
    }
}

fn read_file(path: &Path, setting: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::config(setting, format!("{}: {e}", path.display())))
}

fn read(config: &SslConfig) -> Result<Loaded> {
    let Some(keystore) = &config.keystore else {
        return Err(Error::config(
            "ssl.keystore.location",
            "must be set for an SSL or SASL_SSL listener",
        ));
    };
    Ok(Loaded {
        keystore: read_file(keystore, "ssl.keystore.location")?,
        truststore: match &config.truststore {
            Some(p) => Some(read_file(p, "ssl.truststore.location")?),
            None => None,
        },
    })
}

fn certificates(pem: &[u8], setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(setting, format!("certificates do not parse: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(setting, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The quorum's mutual TLS: a [`Tls`] of its own settings (client
/// certificates required, its own trust store), reloaded as any.
pub struct QuorumTls {
    tls: Arc<Tls>,
    /// The client side as first loaded: there is always one, since the
    /// quorum's TLS needs a trust store (checked with the config).
    first: sluice_client::TlsConfig,
}

impl QuorumTls {
    pub fn new(tls: Arc<Tls>) -> Result<Self> {
        let first = tls.connector().ok_or_else(|| {
            Error::config(
                "ssl.truststore.location",
                "must be set for internal.listener.security.protocol=SSL (mutual TLS)",
            )
        })?;
        Ok(QuorumTls { tls, first })
    }
}

impl sluice_quorum::tls::QuorumTls for QuorumTls {
    fn acceptor(&self) -> TlsAcceptor {
        // Its settings have one `ssl.client.auth`, required.
        self.tls.acceptor("")
    }

    fn connector(&self) -> Arc<rustls::ClientConfig> {
        self.tls
            .connector()
            .unwrap_or_else(|| Arc::clone(&self.first))
    }
}

/// The key store's certificate chain and private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(loaded: &Loaded) -> Result<Identity> {
    let chain = certificates(&loaded.keystore, "ssl.keystore.location")?;
    let key = PrivateKeyDer::from_pem_slice(&loaded.keystore).map_err(|e| {
        Error::config(
            "ssl.keystore.location",
            format!("holds no unencrypted PEM private key: {e}"),
        )
    })?;
    Ok((chain, key))
}

fn build_all(config: &SslConfig, loaded: &Loaded) -> Result<Acceptors> {
    config
        .modes()
        .into_iter()
        .map(|mode| Ok((mode, build(mode, loaded)?)))
        .collect()
}

/// ring's suites with AES-128-GCM first: TLS 1.3's mandatory suite, as
/// strong as a 128-bit key, and a third cheaper than AES-256-GCM for the
/// broker and the client alike (OpenSSL and Java ask for AES-256 first).
fn server_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
        _ => 2,
    });
    provider
}

fn build(client_auth: ClientAuth, loaded: &Loaded) -> Result<TlsAcceptor> {
    let (chain, key) = identity(loaded)?;
    let provider = Arc::new(server_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("ssl.enabled.protocols", e.to_string()))?;
    let builder = match (client_auth, &loaded.truststore) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (auth, Some(pem)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pem)?), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| Error::config("ssl.truststore.location", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => {
            return Err(Error::config(
                "ssl.truststore.location",
                "must be set when ssl.client.auth is requested or required",
            ));
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::config("ssl.keystore.location", format!("key and certificate: {e}")))?;
    // The server's order of suites, not the client's (see server_provider).
    server.ignore_client_order = true;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The trust store's CAs.
fn roots(pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certificates(pem, "ssl.truststore.location")? {
        roots.add(c).map_err(|e| {
            Error::config(
                "ssl.truststore.location",
                format!("a CA does not load: {e}"),
            )
        })?;
    }
    Ok(roots)
}

fn build_connector(loaded: &Loaded) -> Result<Option<sluice_client::TlsConfig>> {
    let Some(trust) = &loaded.truststore else {
        return Ok(None);
    };
    let (chain, key) = identity(loaded)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("ssl.enabled.protocols", e.to_string()))?
        .with_root_certificates(roots(trust)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::config("ssl.keystore.location", format!("key and certificate: {e}")))?;
    Ok(Some(Arc::new(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_server_picks_aes_128_gcm_whatever_the_client_asks_first() {
        let dir = tempfile::tempdir().expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let keystore = dir.path().join("broker.pem");
        std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
        let tls = Tls::load(&SslConfig {
            keystore: Some(keystore),
            ..SslConfig::default()
        })
        .expect("load");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        // ring's default order asks for AES-256-GCM first, as OpenSSL does.
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.acceptor("SSL");
        let server = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, b)
            .await
            .expect("handshake");
        server.await.expect("join").expect("server handshake");
        let suite = stream.get_ref().1.negotiated_cipher_suite().expect("suite");
        assert_eq!(suite.suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
}
