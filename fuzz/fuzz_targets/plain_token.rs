//! SASL/PLAIN tokens as a client sends them (`authzid NUL authcid NUL
//! passwd`): any bytes give a user and password or an error, never a
//! panic; a parsed token names a non-empty user.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sasl::plain;

fuzz_target!(|token: &[u8]| {
    if let Ok((user, password)) = plain::parse(token) {
        assert!(!user.is_empty() && !password.is_empty());
        assert!(!user.contains('\0'));
    }
});
