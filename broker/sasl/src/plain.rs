//! SASL/PLAIN (RFC 4616) against a users file: `user=password` lines,
//! `#` comments, read at each authentication so that an edit applies to
//! the next login. For tests and simple set-ups; SCRAM keeps no password.

use std::path::Path;

/// Why a PLAIN authentication failed (for the log; the client hears only
/// "Invalid username or password").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN token")]
    Malformed,
    #[error("authorization id differs from the user name")]
    AuthzId,
    #[error("unknown user or wrong password")]
    Invalid,
    #[error("no users file (sasl.plain.users.file) is configured")]
    NoUsers,
    #[error("users file unreadable: {0}")]
    Unreadable(String),
}

/// `authzid NUL authcid NUL passwd` -> (user, password).
pub fn parse(token: &[u8]) -> Result<(String, Vec<u8>), PlainError> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authz.is_empty() && authz != user.as_bytes() {
        return Err(PlainError::AuthzId);
    }
    Ok((user.to_string(), password.to_vec()))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `user` and `password` against the users file.
pub fn check(file: Option<&Path>, user: &str, password: &[u8]) -> Result<(), PlainError> {
    let file = file.ok_or(PlainError::NoUsers)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| PlainError::Unreadable(format!("{}: {e}", file.display())))?;
    let mut ok = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((u, p)) = line.split_once('=') {
            // Every line is compared, so the time taken says nothing of
            // which user exists.
            ok |= u.trim() == user && same(p.trim().as_bytes(), password);
        }
    }
    if ok { Ok(()) } else { Err(PlainError::Invalid) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_the_users_file() {
        assert_eq!(parse(b"\0alice\0pw"), Ok(("alice".into(), b"pw".to_vec())));
        assert_eq!(
            parse(b"alice\0alice\0pw"),
            Ok(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(parse(b"bob\0alice\0pw"), Err(PlainError::AuthzId));
        for bad in [
            &b""[..],
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"\0a\0b\0c",
            b"\0\xff\0pw",
        ] {
            assert_eq!(parse(bad), Err(PlainError::Malformed), "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("users");
        std::fs::write(&f, "# users\nalice = secret\nbob=other\n").expect("write");
        assert_eq!(check(Some(&f), "alice", b"secret"), Ok(()));
        assert_eq!(check(Some(&f), "alice", b"other"), Err(PlainError::Invalid));
        assert_eq!(
            check(Some(&f), "carol", b"secret"),
            Err(PlainError::Invalid)
        );
        assert_eq!(check(None, "alice", b"secret"), Err(PlainError::NoUsers));
    }
}
