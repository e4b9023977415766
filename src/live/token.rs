//! Session tokens, device tokens (remembered logins) and user ids.

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

/// A device token (docs/protocol.md §11.2): 256 bits from the OS CSPRNG as 64
/// lowercase hex characters.
pub fn new_device_token() -> String {
    let mut bytes = [0u8; 32];
    // As for session tokens: without the OS random source no token could be trusted.
    getrandom::getrandom(&mut bytes).expect("OS random number generator failed");
    let mut s = String::with_capacity(64);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `token` has a device token's form: 64 lowercase hex characters.
pub fn is_device_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// What the store keeps of a device token: its SHA-256. The token carries 256 random
/// bits, so a plain hash (no salt, no slow hash) is enough to make a copy of the
/// database useless for logging in.
pub fn device_token_sha256(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
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
    fn device_tokens_are_64_lowercase_hex_and_hashed_with_sha256() {
        let t = new_device_token();
        assert!(is_device_token(&t));
        assert_ne!(t, new_device_token());
        assert!(!is_device_token(&t.to_ascii_uppercase()));
        assert!(!is_device_token(&t[..63]));
        assert!(!is_device_token(&new_token()));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let sha = device_token_sha256("abc");
        assert_eq!(sha[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(sha[28..], [0xf2, 0x00, 0x15, 0xad]);
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
