//! The server side of a SCRAM exchange fed what a client may send: the
//! first byte picks the mechanism and the shape, the rest is the
//! client-first message and the client-final message (split at the first
//! NUL), or a well-formed client-first with a fuzzed client-final. Any
//! input ends in a reply or an error, never a panic, and a random proof
//! never authenticates.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_sasl::scram::{Credential, Exchange, Mechanism, Step};

/// alice's credentials, salted once (PBKDF2 at Kafka's minimum of 4096
/// iterations is too slow to repeat per input).
fn credential(m: Mechanism) -> Credential {
    static CREDS: OnceLock<[Credential; 2]> = OnceLock::new();
    let all = CREDS.get_or_init(|| {
        Mechanism::ALL.map(|m| {
            let salt = b"fuzzing salt".to_vec();
            let salted = m.salted_password(b"alice-secret", &salt, 4096);
            m.credential(&salt, &salted, 4096)
        })
    });
    all[usize::from(m == Mechanism::Sha512)].clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let m = Mechanism::ALL[usize::from(pick & 1)];
    let (first, last) = if pick & 2 == 0 {
        match rest.iter().position(|b| *b == 0) {
            Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
            None => (rest.to_vec(), Vec::new()),
        }
    } else {
        (
            b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL".to_vec(),
            rest.to_vec(),
        )
    };
    let lookup = |user: &str| (user == "alice").then(|| credential(m));
    let mut exchange = Exchange::Start;
    match exchange.step(m, &first, lookup, "3rfcNHYJY1ZVvWVs7j") {
        Ok(Step::Continue(reply)) => {
            assert!(
                reply.starts_with(b"r="),
                "server-first starts with the nonce"
            );
            let lookup = |user: &str| (user == "alice").then(|| credential(m));
            if let Ok(Step::Done { .. }) = exchange.step(m, &last, lookup, "unused") {
                panic!(
                    "a fuzzed client-final authenticated: {:?}",
                    String::from_utf8_lossy(&last)
                );
            }
        }
        Ok(Step::Done { .. }) => panic!("authenticated on a client-first message"),
        Err(_) => {}
    }
});
