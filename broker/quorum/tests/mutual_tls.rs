//! The quorum over mutual TLS: three members with certificates of one CA
//! elect a leader and replicate; the quorum port refuses a plaintext
//! peer, a TLS peer without a certificate and one whose certificate is of
//! another CA, while a peer with a certificate of the CA is answered.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sluice_quorum::image::Command;
use sluice_quorum::tls::{Dialer, QuorumTls};
use sluice_quorum::{Outcome, QuorumConfig, QuorumNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::free_ports;

/// A CA and a certificate it signs for 127.0.0.1, client and server.
struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::from_params(&ca, &ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    Pki {
        ca: ca_cert.der().clone(),
        leaf: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    Arc::new(roots)
}

fn key(p: &Pki) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key.clone()))
}

/// A client config trusting `trust`'s CA, presenting `identity`'s
/// certificate if any.
fn client(trust: &Pki, identity: Option<&Pki>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(&trust.ca));
    Arc::new(match identity {
        Some(i) => b
            .with_client_auth_cert(vec![i.leaf.clone()], key(i))
            .expect("client cert"),
        None => b.with_no_client_auth(),
    })
}

struct Static {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: Arc<rustls::ClientConfig>,
}

impl QuorumTls for Static {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }
    fn connector(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.connector)
    }
}

fn mutual(p: &Pki) -> Arc<dyn QuorumTls> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&p.ca), provider())
            .build()
            .expect("verifier");
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![p.leaf.clone(), p.ca.clone()], key(p))
        .expect("server cert");
    Arc::new(Static {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: client(p, Some(p)),
    })
}

fn config(id: u64, dir: &Path, ports: &[u16], tls: &Arc<dyn QuorumTls>) -> QuorumConfig {
    let mut c = common::quorum_config(id, dir, ports);
    c.dialer = Dialer {
        source: None,
        tls: Some(Arc::clone(tls)),
    };
    c
}

/// What the quorum port sends back to an HTTP/2 client preface over
/// `tls` (or plaintext): the bytes read before it closed, within 5 s.
async fn answer(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Vec<u8> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut got = vec![0u8; 64];
    let read = async {
        match tls {
            None => {
                let mut s = tcp;
                s.write_all(PREFACE).await?;
                s.read(&mut got).await
            }
            Some(c) => {
                let name = ServerName::try_from("127.0.0.1").expect("name");
                let mut s = tokio_rustls::TlsConnector::from(c)
                    .connect(name, tcp)
                    .await?;
                s.write_all(PREFACE).await?;
                s.flush().await?;
                s.read(&mut got).await
            }
        }
    };
    let n = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or(Ok(0))
        .unwrap_or(0);
    got.truncate(n);
    got
}

/// An HTTP/2 SETTINGS frame: a 3-byte length, then type 4.
fn is_http2_settings(b: &[u8]) -> bool {
    b.len() >= 9 && b[3] == 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_certificates_of_the_ca_form_a_quorum_and_no_one_else_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(3);
    let ours = pki();
    let tls = mutual(&ours);
    let mut nodes = Vec::new();
    for id in 0..3 {
        nodes.push(
            QuorumNode::start(config(id, dir.path(), &ports, &tls))
                .await
                .expect("start"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.leader()).collect();
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
        {
            break *l;
        }
        assert!(
            Instant::now() < deadline,
            "no leader over mutual TLS: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "leader {leader} elected over mutual TLS in {:?}",
        deadline - Instant::now()
    );
    // A write through a follower is forwarded to the leader over TLS too.
    let follower = nodes.iter().find(|n| n.id() != leader).expect("a follower");
    let init = Command::InitCluster {
        cluster_id: "tls".into(),
    };
    assert_eq!(follower.write(init).await.expect("write"), Outcome::Ok);
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(5);
        while n.image().cluster_id.as_deref() != Some("tls") {
            assert!(
                Instant::now() < deadline,
                "member {} lacks the write",
                n.id()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let port = ports[0];
    let admitted = answer(port, Some(client(&ours, Some(&ours)))).await;
    assert!(
        is_http2_settings(&admitted),
        "a peer with a certificate of the CA is answered: {admitted:?}"
    );
    let plain = answer(port, None).await;
    assert!(!is_http2_settings(&plain), "plaintext answered: {plain:?}");
    let anonymous = answer(port, Some(client(&ours, None))).await;
    assert!(
        !is_http2_settings(&anonymous),
        "a TLS peer without a certificate answered: {anonymous:?}"
    );
    let stranger = pki();
    let foreign = answer(port, Some(client(&ours, Some(&stranger)))).await;
    assert!(
        !is_http2_settings(&foreign),
        "a certificate of another CA answered: {foreign:?}"
    );
    // The members still agree after the refusals.
    assert_eq!(nodes[0].leader(), Some(leader));
    for n in nodes {
        n.shutdown().await;
    }
}
