//! How the operator reaches a cluster's brokers: the bootstrap addresses of
//! the listener it talks to and, on a secured cluster, the TLS it talks
//! with (the cluster CA as the only root, and a client certificate of its
//! own that the brokers take as a super user).

use std::fmt;
use std::time::Duration;

use sluice_client::{AdminClient, AdminError, TlsConfig};

#[derive(Clone)]
pub struct Brokers {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Brokers")
            .field("bootstrap", &self.bootstrap)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.bootstrap)
    }
}

impl Brokers {
    /// Brokers on a PLAINTEXT listener.
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        Brokers {
            bootstrap: bootstrap.into(),
            tls: None,
        }
    }

    /// One broker, at `addr` (an address the brokers advertise on the
    /// listener the operator uses).
    pub async fn connect(&self, addr: &str, timeout: Duration) -> Result<AdminClient, AdminError> {
        AdminClient::connect_with(addr, None, self.tls.clone(), timeout).await
    }

    /// The first broker of the bootstrap list that answers.
    pub async fn connect_any(&self, timeout: Duration) -> Result<AdminClient, AdminError> {
        let mut last = None;
        for addr in self
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match self.connect(addr, timeout).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| AdminError::Protocol("an empty bootstrap list".into())))
    }
}
