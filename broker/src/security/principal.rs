//! The principal of a TLS client: its certificate's subject as Java's
//! `X500Principal.getName()` writes it (RFC 2253: `CN=alice,OU=eng,O=Acme`),
//! then `ssl.principal.mapping.rules` as Kafka applies them.

use regex::Regex;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

/// RFC 2253 short names Java uses; other attributes are written as
/// their OID with the value's DER in hex.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The certificate's subject in RFC 2253 form (most specific RDN
/// first), or `None` if the certificate does not parse.
pub fn subject_dn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    match (short_name(&oid), attr.as_str()) {
                        (Some(name), Ok(v)) => format!("{name}={}", escape(v)),
                        _ => {
                            let hex: String = attr
                                .attr_value()
                                .data
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            format!("{oid}=#{hex}")
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// `ssl.principal.mapping.rules`: `DEFAULT` (the DN as it is) and
/// `RULE:pattern/replacement/[LU]`, tried in order; a rule applies when
/// its pattern matches the whole DN.
#[derive(Debug, Clone)]
pub struct PrincipalBuilder {
    rules: Vec<Rule>,
}

const SETTING: &str = "ssl.principal.mapping.rules";

/// Up to the next unescaped `/`; `\/` stands for `/`.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if s[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl PrincipalBuilder {
    pub fn parse(text: &str) -> Result<Self> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let bad = || {
                    Error::config(
                        SETTING,
                        format!("`{rest}` is not RULE:pattern/replacement/[LU]"),
                    )
                };
                let (pattern, r) = until_slash(r).ok_or_else(bad)?;
                let (replacement, r) = until_slash(r).ok_or_else(bad)?;
                let (case, r) = match r.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                    _ => (None, r),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| Error::config(SETTING, format!("pattern `{pattern}`: {e}")))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                });
                rest = r;
            } else {
                return Err(Error::config(
                    SETTING,
                    format!("`{rest}`: expected DEFAULT or RULE:"),
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(Error::config(SETTING, format!("`{rest}`: expected `,`"))),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalBuilder { rules })
    }

    /// The principal name for `dn`: the first rule that matches; the DN
    /// itself when none does.
    pub fn apply(&self, dn: &str) -> String {
        for rule in &self.rules {
            match rule {
                Rule::Default => return dn.to_string(),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let name = pattern.replace(dn, replacement.as_str()).into_owned();
                        return match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        };
                    }
                }
            }
        }
        dn.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_documented_rules() {
        let b = PrincipalBuilder::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .expect("rules");
        assert_eq!(
            b.apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            "serviceuser"
        );
        assert_eq!(
            b.apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            "adminuser@admin"
        );
        assert_eq!(b.apply("OU=x,CN=Alice.B,O=y"), "alice.b");
        assert_eq!(b.apply("O=nobody"), "O=nobody");
    }

    #[test]
    fn default_keeps_the_dn_and_bad_rules_are_named() {
        let b = PrincipalBuilder::parse("DEFAULT").expect("default");
        assert_eq!(b.apply("CN=a,O=b"), "CN=a,O=b");
        for bad in ["RULE:^(CN$/x", "RULE:abc", "NONSENSE", "DEFAULT DEFAULT"] {
            let e = PrincipalBuilder::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(SETTING), "{bad}: {e}");
        }
    }

    #[test]
    fn the_subject_reads_as_java_writes_it() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = CertificateDer::from(cert.der().to_vec());
        assert_eq!(
            subject_dn(&der).as_deref(),
            Some("CN=alice,O=Acme\\, Inc,C=DE")
        );
    }
}
