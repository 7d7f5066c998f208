//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka serves
//! them: no channel binding, credentials salted in the metadata quorum.
//!
//! Written here because no well-kept crate serves SCRAM-SHA-512 from the
//! server side (decision 0029); the primitives (HMAC, SHA-2, PBKDF2) are
//! the RustCrypto crates.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A SCRAM mechanism, with Kafka's numbering in the ScramCredentials APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The `ScramMechanism` byte of AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == c)
    }

    /// Kafka's bounds on the iteration count.
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }

    /// The stored credential for a salted password, as a broker keeps it.
    pub fn credential(self, salt: &[u8], salted_password: &[u8], iterations: i32) -> Credential {
        let client_key = self.hmac(salted_password, b"Client Key");
        Credential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }
}

/// What the broker keeps of a password: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// Why an exchange failed. The client is told only that the credentials
/// were refused; the log gets the reason (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("unknown user")]
    UnknownUser,
    #[error("authorization id differs from the user name")]
    AuthzId,
    #[error("nonce mismatch")]
    Nonce,
    #[error("invalid proof (wrong password)")]
    Proof,
    #[error("delegation tokens are not supported")]
    TokenAuth,
}

/// One server-side exchange.
#[derive(Debug)]
pub enum Exchange {
    /// Waiting for the client-first message.
    Start,
    /// Server-first sent; waiting for the client-final message.
    SentFirst {
        user: String,
        nonce: String,
        client_first_bare: String,
        server_first: String,
        credential: Credential,
    },
}

/// `=2C` and `=3D` back to `,` and `=` (RFC 5802 saslname).
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn attribute(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("missing attribute"))?;
    let mut chars = part.chars();
    if chars.next() != Some(name) || chars.next() != Some('=') {
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok(&part[2..])
}

/// What the server says next, or that the exchange succeeded.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue(Vec<u8>),
    /// The server-final message; `user` authenticated.
    Done {
        user: String,
        reply: Vec<u8>,
    },
}

impl Exchange {
    /// Takes the next client message. `lookup` finds a user's credential;
    /// `server_nonce` is fresh randomness (printable, no comma).
    pub fn step(
        &mut self,
        mechanism: Mechanism,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        server_nonce: &str,
    ) -> Result<Step, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match std::mem::replace(self, Exchange::Start) {
            Exchange::Start => {
                // gs2-header: "n,," or "y,," (no binding), optional a=authzid.
                let mut parts = text.splitn(3, ',');
                match parts.next() {
                    Some("n" | "y") => {}
                    Some(p) if p.starts_with('p') => return Err(ScramError::ChannelBinding),
                    _ => return Err(ScramError::Malformed("bad gs2 header")),
                }
                let authzid = parts
                    .next()
                    .ok_or(ScramError::Malformed("bad gs2 header"))?;
                let bare = parts
                    .next()
                    .ok_or(ScramError::Malformed("no client-first-bare"))?;
                let mut attrs = bare.split(',');
                if attrs.clone().next().is_some_and(|a| a.starts_with("m=")) {
                    return Err(ScramError::Malformed("mandatory extension"));
                }
                let user = unescape_name(attribute(attrs.next(), 'n')?)?;
                let client_nonce = attribute(attrs.next(), 'r')?;
                if client_nonce.is_empty() {
                    return Err(ScramError::Malformed("empty nonce"));
                }
                for ext in attrs {
                    if ext.starts_with("tokenauth=") {
                        return Err(ScramError::TokenAuth);
                    }
                }
                if !authzid.is_empty() {
                    let authzid = authzid
                        .strip_prefix("a=")
                        .ok_or(ScramError::Malformed("bad authzid"))?;
                    if unescape_name(authzid)? != user {
                        return Err(ScramError::AuthzId);
                    }
                }
                let credential = lookup(&user).ok_or(ScramError::UnknownUser)?;
                let nonce = format!("{client_nonce}{server_nonce}");
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                let reply = server_first.clone().into_bytes();
                *self = Exchange::SentFirst {
                    user,
                    nonce,
                    client_first_bare: bare.to_string(),
                    server_first,
                    credential,
                };
                Ok(Step::Continue(reply))
            }
            Exchange::SentFirst {
                user,
                nonce,
                client_first_bare,
                server_first,
                credential,
            } => {
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or(ScramError::Malformed("no proof"))?;
                let mut attrs = without_proof.split(',');
                let binding = attribute(attrs.next(), 'c')?;
                // base64("n,,") or base64("y,,"): no channel binding.
                if binding != "biws" && binding != "eSws" {
                    let decoded = B64
                        .decode(binding)
                        .map_err(|_| ScramError::Malformed("bad channel binding"))?;
                    if !decoded.ends_with(b",") {
                        return Err(ScramError::ChannelBinding);
                    }
                }
                // librdkafka sends its client nonce again in front of the
                // whole nonce; Kafka accepts any nonce that ends with the
                // one it sent, and so must we.
                if !attribute(attrs.next(), 'r')?.ends_with(&nonce) {
                    return Err(ScramError::Nonce);
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| ScramError::Malformed("bad proof"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(ScramError::Proof);
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let stored = mechanism.hash(&client_key);
                // Constant-time comparison of the stored key.
                let same = stored.len() == credential.stored_key.len()
                    && stored
                        .iter()
                        .zip(&credential.stored_key)
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                if !same {
                    return Err(ScramError::Proof);
                }
                let server_signature =
                    mechanism.hmac(&credential.server_key, auth_message.as_bytes());
                let reply = format!("v={}", B64.encode(server_signature)).into_bytes();
                Ok(Step::Done { user, reply })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example exchange, server side.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let m = Mechanism::Sha256;
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = m.credential(&salt, &salted, 4096);
        let mut ex = Exchange::Start;
        let first = ex
            .step(
                m,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u| (u == "user").then(|| cred.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .expect("first");
        assert_eq!(
            first,
            Step::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
            )
        );
        let done = ex
            .step(
                m,
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| None,
                "",
            )
            .expect("final");
        assert_eq!(
            done,
            Step::Done {
                user: "user".into(),
                reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
    }

    #[test]
    fn refusals() {
        let m = Mechanism::Sha512;
        let salt = b"salt".to_vec();
        let cred = m.credential(&salt, &m.salted_password(b"pw", &salt, 4096), 4096);
        let lookup = |u: &str| (u == "alice").then(|| cred.clone());
        let first = |msg: &[u8]| Exchange::Start.step(m, msg, lookup, "srv").map(|_| ());
        assert_eq!(first(b"n,,n=bob,r=abc"), Err(ScramError::UnknownUser));
        assert_eq!(
            first(b"p=tls-unique,,n=alice,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        assert_eq!(first(b"n,a=bob,n=alice,r=abc"), Err(ScramError::AuthzId));
        assert_eq!(
            first(b"n,,n=alice,r=abc,tokenauth=true"),
            Err(ScramError::TokenAuth)
        );
        for bad in [
            &b""[..],
            b"x",
            b"n,,",
            b"n,,r=abc,n=alice",
            b"n,,n=al=ZZice,r=a",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(first(bad), Err(ScramError::Malformed(_))),
                "{bad:?}"
            );
        }
        // A wrong password: the proof does not verify.
        let mut ex = Exchange::Start;
        ex.step(m, b"n,,n=alice,r=abc", lookup, "srv")
            .expect("first");
        let wrong = B64.encode([0u8; 64]);
        let msg = format!("c=biws,r=abcsrv,p={wrong}");
        assert_eq!(
            ex.step(m, msg.as_bytes(), |_| None, ""),
            Err(ScramError::Proof)
        );
        // A nonce that is not the one sent (librdkafka's repeated client
        // nonce in front of it is accepted, as Kafka accepts it).
        let mut ex = Exchange::Start;
        ex.step(m, b"n,,n=alice,r=abc", lookup, "srv")
            .expect("first");
        let msg = format!("c=biws,r=other,p={wrong}");
        assert_eq!(
            ex.step(m, msg.as_bytes(), |_| None, ""),
            Err(ScramError::Nonce)
        );
    }
}
