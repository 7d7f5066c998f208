//! Test certificates (rcgen): a CA, broker and client certificates it
//! signs, written as PEM files for the broker and the clients.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority for tests.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate as PEM.
    pub pem: String,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// One file with both (the broker's `ssl.keystore.location`).
    pub keystore: PathBuf,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Sluice tests");
    dn.push(DnType::CommonName, cn);
    dn
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(TestCa { params, key, pem })
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, &self.pem).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    fn issue(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        server: bool,
        expired: bool,
    ) -> Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn);
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ];
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?.pem();
        let out = Issued {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
            keystore: dir.join(format!("{file}.pem")),
        };
        std::fs::write(&out.cert, &cert)?;
        std::fs::write(&out.key, key.serialize_pem())?;
        std::fs::write(&out.keystore, format!("{}{cert}", key.serialize_pem()))?;
        Ok(out)
    }

    /// A broker certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, dir: &Path, file: &str) -> Result<Issued> {
        self.issue(dir, file, "localhost", true, false)
    }

    /// A client certificate with the common name `cn`.
    pub fn client(&self, dir: &Path, file: &str, cn: &str) -> Result<Issued> {
        self.issue(dir, file, cn, false, false)
    }

    /// A client certificate that expired in 2021.
    pub fn expired_client(&self, dir: &Path, file: &str, cn: &str) -> Result<Issued> {
        self.issue(dir, file, cn, false, true)
    }
}
