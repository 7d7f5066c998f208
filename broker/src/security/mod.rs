//! Security of the Kafka listeners: TLS, SASL, and the principal a
//! connection authenticates as.

pub mod acl;
pub mod principal;
pub mod sasl;
pub mod tls;

use std::sync::Arc;

pub use sasl::SaslConfig;
pub use tls::{ClientAuth, SslConfig, Tls};

use crate::config::BrokerConfig;
use crate::error::Result;

/// What every connection of this broker shares for security.
#[derive(Debug)]
pub struct Security {
    /// Loaded when any listener is SSL or SASL_SSL.
    pub tls: Option<Arc<Tls>>,
    /// The quorum listener's, with `internal.listener.security.protocol=SSL`.
    pub quorum_tls: Option<Arc<Tls>>,
    pub sasl: SaslConfig,
    pub acl: acl::AclConfig,
    pub failures: sasl::FailureLimiter,
}

impl Security {
    pub fn load(config: &BrokerConfig) -> Result<Self> {
        let tls = if config.listeners.any_tls() {
            Some(Arc::new(Tls::load(&config.ssl)?))
        } else {
            None
        };
        let quorum_tls = match &config.cluster.internal_ssl {
            Some(ssl) => Some(Arc::new(Tls::load(ssl)?)),
            None => None,
        };
        Ok(Security {
            tls,
            quorum_tls,
            sasl: config.sasl.clone(),
            acl: config.acl.clone(),
            failures: sasl::FailureLimiter::default(),
        })
    }
}
