//! SaslHandshake (17) and SaslAuthenticate (36), and the gate that keeps
//! every other request out until a SASL listener's client authenticated.
//!
//! As Kafka: before authenticating only ApiVersions, SaslHandshake and
//! SaslAuthenticate are served, anything else closes the connection; an
//! unsupported mechanism or a failed authentication is answered (the
//! latter after `connection.failed.authentication.delay.ms`) and then
//! the connection is closed; after SaslHandshake v0 the tokens come bare,
//! without Kafka framing; a client re-authenticates (KIP-368) with the
//! same mechanism as the same principal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use rand::Rng;

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::Close;
use crate::protocol::code::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};
use crate::security::sasl::scram::{self, Exchange, Step};
use crate::security::sasl::{Mechanism, Progress, plain};
use crate::server::{Principal, Session};

/// Refuses a request a connection may not make yet.
pub fn gate(session: &Session, key: ApiKey) -> Result<(), Close> {
    let sasl_api = matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
    match &session.sasl {
        None => Ok(()),
        Some(Progress::Done { expires, .. }) => match expires {
            Some(t) if Instant::now() >= *t && !sasl_api => Err(Close::Auth(format!(
                "the SASL session of {} expired (connections.max.reauth.ms) without re-authentication",
                session.principal
            ))),
            _ => Ok(()),
        },
        Some(_) if sasl_api || key == ApiKey::ApiVersions => Ok(()),
        Some(_) => Err(Close::Auth(format!(
            "unexpected {key:?} request before SASL authentication"
        ))),
    }
}

/// Whether the next frame is a bare SASL token (after SaslHandshake v0).
pub fn expects_raw_token(session: &Session) -> bool {
    matches!(
        session.sasl,
        Some(Progress::Authenticating { raw: true, .. })
    )
}

pub fn handshake(
    broker: &Broker,
    session: &mut Session,
    req: SaslHandshakeRequest,
    version: i16,
) -> SaslHandshakeResponse {
    let enabled = &broker.security.sasl.enabled;
    let mechanisms = enabled.iter().map(|m| str_bytes(m.name())).collect();
    let resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    let requested = Mechanism::parse(&req.mechanism).filter(|m| enabled.contains(m));
    let previous = match &session.sasl {
        None => return resp.with_error_code(ILLEGAL_SASL_STATE),
        Some(Progress::Handshake) => None,
        Some(Progress::Done { mechanism, .. }) => Some(*mechanism),
        Some(Progress::Authenticating { .. }) => {
            session.close_after_reply = Some("SaslHandshake while authenticating".into());
            return resp.with_error_code(ILLEGAL_SASL_STATE);
        }
    };
    let Some(mechanism) = requested else {
        session.close_after_reply = Some(format!(
            "SASL mechanism {:?} is not enabled",
            req.mechanism.as_str()
        ));
        return resp.with_error_code(UNSUPPORTED_SASL_MECHANISM);
    };
    if let Some(before) = previous {
        // Re-authentication: framed tokens only, the same mechanism.
        if version == 0 || before != mechanism {
            session.close_after_reply = Some(format!(
                "re-authentication with {} after {}",
                mechanism.name(),
                before.name()
            ));
            return resp.with_error_code(UNSUPPORTED_SASL_MECHANISM);
        }
    }
    session.sasl = Some(Progress::Authenticating {
        mechanism,
        raw: version == 0,
        scram: Exchange::Start,
    });
    resp
}

pub async fn authenticate(
    broker: &Arc<Broker>,
    session: &mut Session,
    req: SaslAuthenticateRequest,
    version: i16,
) -> SaslAuthenticateResponse {
    let resp = SaslAuthenticateResponse::default();
    if !matches!(
        session.sasl,
        Some(Progress::Authenticating { raw: false, .. })
    ) {
        if session.sasl.is_some() {
            session.close_after_reply = Some("SaslAuthenticate without SaslHandshake".into());
        }
        return resp
            .with_error_code(ILLEGAL_SASL_STATE)
            .with_error_message(Some(str_bytes(
                "Unexpected SaslAuthenticate request: no SASL handshake in progress",
            )));
    }
    match step(broker, session, &req.auth_bytes).await {
        Ok(reply) => {
            let lifetime = match &session.sasl {
                Some(Progress::Done {
                    expires: Some(t), ..
                }) if version >= 1 => {
                    t.saturating_duration_since(Instant::now()).as_millis() as i64
                }
                _ => 0,
            };
            resp.with_auth_bytes(reply)
                .with_session_lifetime_ms(lifetime.max(0))
        }
        Err(message) => resp
            .with_error_code(SASL_AUTHENTICATION_FAILED)
            .with_error_message(Some(str_bytes(message))),
    }
}

/// A bare token after SaslHandshake v0: the reply goes out bare too
/// (length-prefixed); a failure closes the connection, as Kafka does.
pub async fn raw_token(
    broker: &Arc<Broker>,
    session: &mut Session,
    token: Bytes,
    out: &mut Vec<Bytes>,
) -> Result<(), Close> {
    match step(broker, session, &token).await {
        Ok(reply) => {
            let mut b = BytesMut::with_capacity(4 + reply.len());
            b.put_i32(reply.len() as i32);
            b.put_slice(&reply);
            out.push(b.freeze());
            Ok(())
        }
        Err(message) => Err(Close::Auth(message)),
    }
}

/// Takes one token of the exchange in progress. On success past the last
/// step the session is authenticated; on failure the connection is to be
/// closed after the answer, which is held back a little, and the message
/// is the client's (the log has the reason).
async fn step(broker: &Arc<Broker>, session: &mut Session, token: &[u8]) -> Result<Bytes, String> {
    let Some(Progress::Authenticating {
        mechanism, scram, ..
    }) = &mut session.sasl
    else {
        return Err("no SASL handshake in progress".into());
    };
    let mechanism = *mechanism;
    let listener = session.listener.to_string();
    let ip = session.peer.ip();
    let security = &broker.security;
    let outcome: Result<Option<(String, Vec<u8>)>, String> = if security.failures.blocked(ip) {
        Err("too many failed authentications from this address".into())
    } else {
        match mechanism {
            Mechanism::Plain => match plain::parse(token) {
                Ok((user, password)) => {
                    let file = security.sasl.plain_users.clone();
                    let u = user.clone();
                    let checked = tokio::task::spawn_blocking(move || {
                        plain::check(file.as_deref(), &u, &password)
                    })
                    .await
                    .unwrap_or(Err(plain::PlainError::Unreadable(
                        "check task failed".into(),
                    )));
                    match checked {
                        Ok(()) => Ok(Some((user, Vec::new()))),
                        Err(e) => Err(format!("PLAIN for user {user:?}: {e}")),
                    }
                }
                Err(e) => Err(format!("PLAIN: {e}")),
            },
            Mechanism::Scram(m) => {
                let img = broker.cluster().image();
                let lookup = |user: &str| {
                    img.scram_credentials
                        .get(user)
                        .and_then(|c| c.get(m.name()))
                        .map(|c| scram::Credential {
                            salt: c.salt.clone(),
                            stored_key: c.stored_key.clone(),
                            server_key: c.server_key.clone(),
                            iterations: c.iterations,
                        })
                };
                let nonce: String = rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(24)
                    .map(char::from)
                    .collect();
                match scram.step(m, token, lookup, &nonce) {
                    Ok(Step::Continue(reply)) => {
                        return Ok(Bytes::from(reply));
                    }
                    Ok(Step::Done { user, reply }) => Ok(Some((user, reply))),
                    Err(e) => Err(format!("{}: {e}", m.name())),
                }
            }
        }
    };
    let metrics = &broker.metrics;
    match outcome {
        Ok(Some((user, reply))) => {
            let principal = Principal::user(user);
            let reauth = session.principal != Principal::anonymous();
            if reauth && principal != session.principal {
                let reason = format!(
                    "re-authentication as {principal} of a connection authenticated as {}",
                    session.principal
                );
                return Err(fail(broker, session, mechanism, reason).await);
            }
            let max = security.sasl.max_reauth_ms;
            session.sasl = Some(Progress::Done {
                mechanism,
                expires: (max > 0).then(|| Instant::now() + Duration::from_millis(max as u64)),
            });
            tracing::debug!(peer = %session.peer, %principal, mechanism = mechanism.name(), reauth, "authenticated");
            session.principal = principal;
            metrics
                .authentications
                .with_label_values(&[listener.as_str(), mechanism.name()])
                .inc();
            Ok(Bytes::from(reply))
        }
        Ok(None) => Ok(Bytes::new()),
        Err(reason) => Err(fail(broker, session, mechanism, reason).await),
    }
}

/// Logs, counts and delays a failed authentication, marks the connection
/// to close, and returns Kafka's message for the client.
async fn fail(
    broker: &Broker,
    session: &mut Session,
    mechanism: Mechanism,
    reason: String,
) -> String {
    let ip = session.peer.ip();
    broker.security.failures.failed(ip);
    broker
        .metrics
        .authentication_failures
        .with_label_values(&[&session.listener, mechanism.name()])
        .inc();
    tracing::warn!(peer = %session.peer, listener = %session.listener, mechanism = mechanism.name(), %reason, "failed authentication");
    let delay = broker.security.sasl.failed_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    session.close_after_reply = Some(format!("failed authentication: {reason}"));
    session.sasl = Some(Progress::Handshake);
    match mechanism {
        Mechanism::Plain => "Authentication failed: Invalid username or password".into(),
        Mechanism::Scram(m) => format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            m.name()
        ),
    }
}
