//! Kafka listeners as Kafka names them: `listeners=NAME://host:port,...`,
//! `listener.security.protocol.map=NAME:PROTOCOL,...`,
//! `advertised.listeners=NAME://host:port,...` and
//! `inter.broker.listener.name`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{Error, Result};

/// How a listener's connections are secured (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Connections are TLS from their first byte.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// A client must authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper case, as Kafka normalises listener names.
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
}

impl Listener {
    pub fn advertised(&self) -> String {
        format!("{}:{}", self.advertised_host, self.advertised_port)
    }
}

/// The listeners, in the order configured, and the one brokers use
/// between themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub all: Vec<Listener>,
    pub inter_broker: String,
}

impl Listeners {
    /// One PLAINTEXT listener.
    pub fn plaintext(bind: SocketAddr) -> Self {
        Listeners {
            all: vec![Listener {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                bind,
                advertised_host: bind.ip().to_string(),
                advertised_port: bind.port(),
            }],
            inter_broker: "PLAINTEXT".into(),
        }
    }

    /// The first listener: the one tools that know one address use.
    pub fn first(&self) -> &Listener {
        &self.all[0]
    }

    pub fn inter_broker(&self) -> &Listener {
        self.all
            .iter()
            .find(|l| l.name == self.inter_broker)
            .unwrap_or(&self.all[0])
    }

    pub fn get(&self, name: &str) -> Option<&Listener> {
        self.all.iter().find(|l| l.name == name)
    }

    /// Name -> advertised `host:port`, as registered in the quorum.
    pub fn advertised(&self) -> BTreeMap<String, String> {
        self.all
            .iter()
            .map(|l| (l.name.clone(), l.advertised()))
            .collect()
    }

    /// Any listener needs TLS.
    pub fn any_tls(&self) -> bool {
        self.all.iter().any(|l| l.protocol.tls())
    }

    /// Any listener needs SASL.
    pub fn any_sasl(&self) -> bool {
        self.all.iter().any(|l| l.protocol.sasl())
    }

    /// `listeners` as configured, in Kafka's form.
    pub fn bind_text(&self) -> String {
        self.all
            .iter()
            .map(|l| format!("{}://{}", l.name, l.bind))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `advertised.listeners` in Kafka's form.
    pub fn advertised_text(&self) -> String {
        self.all
            .iter()
            .map(|l| format!("{}://{}", l.name, l.advertised()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn map_text(&self) -> String {
        self.all
            .iter()
            .map(|l| format!("{}:{}", l.name, l.protocol))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Resolves the four settings. `listeners` entries without a name
    /// (`host:port`) are a PLAINTEXT listener, as before named listeners
    /// existed; a name is a security protocol unless the map says which.
    pub fn resolve(
        listeners: Option<&str>,
        map: Option<&str>,
        advertised: Option<&str>,
        inter_broker: Option<&str>,
    ) -> Result<Self> {
        let protocols = parse_map(map)?;
        let text = listeners.unwrap_or("PLAINTEXT://127.0.0.1:9092");
        let mut all: Vec<Listener> = Vec::new();
        for entry in split_list(text) {
            let (name, address) = named(entry, "listeners")?;
            let protocol = protocols
                .get(&name)
                .copied()
                .or_else(|| SecurityProtocol::parse(&name))
                .ok_or_else(|| {
                    Error::config(
                        "listener.security.protocol.map",
                        format!("names no security protocol for listener {name}"),
                    )
                })?;
            let bind = bind_address(address).ok_or_else(|| {
                Error::config("listeners", format!("`{entry}` is not NAME://host:port"))
            })?;
            if all.iter().any(|l| l.name == name) {
                return Err(Error::config(
                    "listeners",
                    format!("listener {name} is named twice"),
                ));
            }
            if let Some(other) = all
                .iter()
                .find(|l| l.bind.port() == bind.port() && bind.port() != 0)
            {
                return Err(Error::config(
                    "listeners",
                    format!(
                        "listeners {} and {name} both bind port {}",
                        other.name,
                        bind.port()
                    ),
                ));
            }
            all.push(Listener {
                name,
                protocol,
                bind,
                advertised_host: bind.ip().to_string(),
                advertised_port: bind.port(),
            });
        }
        if all.is_empty() {
            return Err(Error::config("listeners", "names no listener"));
        }
        let mut given = std::collections::BTreeSet::new();
        if let Some(text) = advertised {
            let entries = split_list(text);
            for entry in &entries {
                let (name, address) = if entry.contains("://") || entries.len() > 1 {
                    named(entry, "advertised.listeners")?
                } else {
                    // A bare host:port advertises the first listener.
                    (all[0].name.clone(), *entry)
                };
                let (host, port) = parse_host_port(address).ok_or_else(|| {
                    Error::config(
                        "advertised.listeners",
                        format!("`{entry}` is not NAME://host:port"),
                    )
                })?;
                let Some(l) = all.iter_mut().find(|l| l.name == name) else {
                    return Err(Error::config(
                        "advertised.listeners",
                        format!("listener {name} is not in listeners"),
                    ));
                };
                l.advertised_host = host;
                l.advertised_port = port;
                given.insert(name);
            }
        }
        for l in &all {
            if !given.contains(&l.name) && l.bind.ip().is_unspecified() {
                return Err(Error::config(
                    "advertised.listeners",
                    format!(
                        "must name listener {} since it binds a wildcard address ({})",
                        l.name, l.bind
                    ),
                ));
            }
        }
        let inter_broker = match inter_broker {
            Some(n) => {
                let n = n.trim().to_ascii_uppercase();
                if !all.iter().any(|l| l.name == n) {
                    return Err(Error::config(
                        "inter.broker.listener.name",
                        format!("listener {n} is not in listeners"),
                    ));
                }
                n
            }
            None if all.len() == 1 => all[0].name.clone(),
            None => match all.iter().find(|l| l.name == "PLAINTEXT") {
                Some(l) => l.name.clone(),
                None => {
                    return Err(Error::config(
                        "inter.broker.listener.name",
                        "must be set when there are several listeners and none is named PLAINTEXT",
                    ));
                }
            },
        };
        let inter = all
            .iter()
            .find(|l| l.name == inter_broker)
            .map(|l| l.protocol);
        if inter.is_some_and(SecurityProtocol::sasl) {
            // Followers would need SASL credentials of their own; brokers
            // authenticate each other with TLS certificates instead.
            return Err(Error::config(
                "inter.broker.listener.name",
                format!(
                    "{inter_broker} is a SASL listener; brokers replicate over a PLAINTEXT or SSL listener (with ssl.client.auth=required they present their certificates)"
                ),
            ));
        }
        Ok(Listeners { all, inter_broker })
    }
}

fn split_list(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `NAME://address` -> (upper-case name, address); `host:port` -> PLAINTEXT.
fn named<'a>(entry: &'a str, setting: &str) -> Result<(String, &'a str)> {
    match entry.split_once("://") {
        Some((name, rest)) => {
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::config(
                    setting,
                    format!("`{entry}`: `{name}` is not a listener name"),
                ));
            }
            Ok((name.to_ascii_uppercase(), rest))
        }
        None => Ok(("PLAINTEXT".into(), entry)),
    }
}

/// A bind address: an IP and port; an empty host binds every interface,
/// as Kafka's `PLAINTEXT://:9092`.
fn bind_address(address: &str) -> Option<SocketAddr> {
    if let Some(port) = address.strip_prefix(':') {
        return Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port.parse().ok()?,
        ));
    }
    if let Some(port) = address.strip_prefix("localhost:") {
        return Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port.parse().ok()?,
        ));
    }
    address.parse().ok()
}

pub(crate) fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn parse_map(map: Option<&str>) -> Result<BTreeMap<String, SecurityProtocol>> {
    let mut out = BTreeMap::new();
    for entry in split_list(map.unwrap_or("")) {
        let Some((name, proto)) = entry.split_once(':') else {
            return Err(Error::config(
                "listener.security.protocol.map",
                format!("`{entry}` is not NAME:PROTOCOL"),
            ));
        };
        let Some(p) = SecurityProtocol::parse(proto) else {
            return Err(Error::config(
                "listener.security.protocol.map",
                format!(
                    "`{proto}` is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
                ),
            ));
        };
        out.insert(name.trim().to_ascii_uppercase(), p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(l: &str, m: Option<&str>, a: Option<&str>, i: Option<&str>) -> Result<Listeners> {
        Listeners::resolve(Some(l), m, a, i)
    }

    #[test]
    fn a_bare_address_is_one_plaintext_listener() {
        let l = resolve("127.0.0.1:9092", None, None, None).expect("valid");
        assert_eq!(
            l,
            Listeners::plaintext("127.0.0.1:9092".parse().expect("addr"))
        );
    }

    #[test]
    fn named_listeners_with_a_map_and_advertised_addresses() {
        let l = resolve(
            "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9094",
            Some("INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL"),
            Some("INTERNAL://10.0.0.1:9092,EXTERNAL://kafka.example.com:443"),
            Some("internal"),
        )
        .expect("valid");
        assert_eq!(l.inter_broker, "INTERNAL");
        assert_eq!(l.all[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l.all[1].advertised(), "kafka.example.com:443");
        assert_eq!(l.all[0].advertised(), "10.0.0.1:9092");
        assert!(l.any_tls() && l.any_sasl());
    }

    #[test]
    fn a_protocol_name_needs_no_map_and_an_unadvertised_listener_gives_its_bind_address() {
        let l = resolve(
            "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.2:2",
            None,
            None,
            None,
        )
        .expect("valid");
        assert_eq!(l.inter_broker, "PLAINTEXT");
        assert_eq!(l.all[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(l.all[1].advertised(), "127.0.0.2:2");
    }

    #[test]
    fn refusals_name_the_setting() {
        let cases = [
            (
                "CLIENT://127.0.0.1:1",
                None,
                None,
                None,
                "listener.security.protocol.map",
            ),
            (
                "PLAINTEXT://127.0.0.1:1",
                Some("PLAINTEXT:TLS"),
                None,
                None,
                "listener.security.protocol.map",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
                None,
                None,
                None,
                "listeners",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1",
                None,
                None,
                None,
                "listeners",
            ),
            ("PLAINTEXT://nowhere", None, None, None, "listeners"),
            (
                "PLAINTEXT://0.0.0.0:1",
                None,
                None,
                None,
                "advertised.listeners",
            ),
            (
                "PLAINTEXT://127.0.0.1:1",
                None,
                Some("SSL://a:1"),
                None,
                "advertised.listeners",
            ),
            (
                "PLAINTEXT://127.0.0.1:1",
                None,
                None,
                Some("SSL"),
                "inter.broker.listener.name",
            ),
            (
                "SSL://127.0.0.1:1,SASL_SSL://127.0.0.1:2",
                None,
                None,
                None,
                "inter.broker.listener.name",
            ),
            (
                "SASL_SSL://127.0.0.1:2",
                None,
                None,
                None,
                "inter.broker.listener.name",
            ),
        ];
        for (l, m, a, i, setting) in cases {
            let e = resolve(l, m, a, i).expect_err(l).to_string();
            assert!(e.contains(setting), "{l}: {e}");
        }
    }
}
