//! SASL on the SASL_PLAINTEXT and SASL_SSL listeners: the mechanisms,
//! each connection's progress through SaslHandshake and SaslAuthenticate,
//! and the per-address limit on failed attempts.

pub use sluice_sasl::{plain, scram};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A mechanism a SASL listener may enable (`sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Scram(scram::Mechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "PLAIN" => Some(Mechanism::Plain),
            other => scram::Mechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// The `sasl.*` settings and those of re-authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub enabled: Vec<Mechanism>,
    /// `sasl.plain.users.file`: `user=password` lines for PLAIN.
    pub plain_users: Option<PathBuf>,
    /// `connections.max.reauth.ms`: 0 lets a session last as long as its
    /// connection; otherwise the client must re-authenticate within it
    /// (KIP-368), or is disconnected at its next request.
    pub max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: the answer to a failed
    /// attempt is held back this long.
    pub failed_delay_ms: u64,
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            enabled: vec![
                Mechanism::Scram(scram::Mechanism::Sha256),
                Mechanism::Scram(scram::Mechanism::Sha512),
            ],
            plain_users: None,
            max_reauth_ms: 0,
            failed_delay_ms: 100,
        }
    }
}

impl SaslConfig {
    pub fn parse_mechanisms(text: &str) -> Result<Vec<Mechanism>> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let m = Mechanism::parse(name).ok_or_else(|| {
                Error::config(
                    "sasl.enabled.mechanisms",
                    format!("`{name}` is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
                )
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(Error::config(
                "sasl.enabled.mechanisms",
                "names no mechanism",
            ));
        }
        Ok(out)
    }

    pub fn mechanisms_text(&self) -> String {
        self.enabled
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where one connection stands in authenticating.
#[derive(Debug)]
pub enum Progress {
    /// Nothing but ApiVersions and SaslHandshake yet.
    Handshake,
    /// A mechanism was chosen; its tokens come in SaslAuthenticate
    /// requests, or bare (`raw`) after a SaslHandshake v0.
    Authenticating {
        mechanism: Mechanism,
        raw: bool,
        scram: scram::Exchange,
    },
    /// Authenticated with `mechanism`; the session ends at `expires`.
    Done {
        mechanism: Mechanism,
        expires: Option<Instant>,
    },
}

/// Failed attempts an address may make in [`WINDOW`] before the next
/// ones are refused without looking at their credentials.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest go first.
const MAX_ADDRESSES: usize = 10_000;

/// Counts failed authentications per client address.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// Whether `ip` has used up its failed attempts.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.by_address.lock();
        map.get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < WINDOW)
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.by_address.lock();
        if map.len() >= MAX_ADDRESSES {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        if map.len() >= MAX_ADDRESSES {
            return;
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures() {
        let l = FailureLimiter::default();
        let ip: IpAddr = [127, 0, 0, 9].into();
        for _ in 0..MAX_FAILURES {
            assert!(!l.blocked(ip));
            l.failed(ip);
        }
        assert!(l.blocked(ip));
        assert!(!l.blocked([127, 0, 0, 10].into()));
    }

    #[test]
    fn mechanisms_parse_and_unknown_ones_are_named() {
        let m = SaslConfig::parse_mechanisms("PLAIN, SCRAM-SHA-512").expect("valid");
        assert_eq!(
            m,
            vec![Mechanism::Plain, Mechanism::Scram(scram::Mechanism::Sha512)]
        );
        let e = SaslConfig::parse_mechanisms("GSSAPI")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("GSSAPI"), "{e}");
    }
}
