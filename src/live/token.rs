//! Session tokens and user ids.

use std::fmt::Write;

/// 128 bits from the OS CSPRNG as 32 lowercase hex characters.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is unrecoverable: no token could be trusted.
    getrandom::getrandom(&mut bytes).expect("OS random number generator failed");
    let mut s = String::with_capacity(32);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A random user id: UUID v4, simple form (32 lowercase hex).
pub fn new_user_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Compares two tokens in time that depends only on their lengths.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_lowercase_hex_and_distinct() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, new_token());
        let id = new_user_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
