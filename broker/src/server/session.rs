//! Who is on the other end of a connection, and where it came in.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::SecurityProtocol;
use crate::security::sasl::Progress;

/// An authenticated identity, as Kafka's `KafkaPrincipal`: `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// Who a connection is before (or without) authenticating.
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One connection's context, handed to every request it makes.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    /// The listener's name: metadata answers give the brokers' addresses
    /// on this listener.
    pub listener: Arc<str>,
    pub protocol: SecurityProtocol,
    pub principal: Principal,
    /// SASL listeners: where the connection stands in authenticating.
    pub sasl: Option<Progress>,
    /// Set by a handler whose answer must be the connection's last (a
    /// failed authentication).
    pub close_after_reply: Option<String>,
}

impl Session {
    pub fn new(peer: SocketAddr, listener: Arc<str>, protocol: SecurityProtocol) -> Self {
        Session {
            peer,
            listener,
            protocol,
            principal: Principal::anonymous(),
            sasl: protocol.sasl().then_some(Progress::Handshake),
            close_after_reply: None,
        }
    }

    /// Whether requests other than the SASL ones may be served.
    pub fn authenticated(&self) -> bool {
        matches!(self.sasl, None | Some(Progress::Done { .. }))
    }
}
