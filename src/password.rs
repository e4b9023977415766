//! Password hashing with argon2id. Runs on worker threads only: a verify costs tens of
//! milliseconds by design, which the event loop must never pay.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordConfig;

/// Hashes and verifies passwords with one set of argon2id parameters.
pub struct Passwords {
    argon: Argon2<'static>,
    /// A real hash of a random password, verified against when the account is unknown
    /// so that "no such account" costs the same time as "wrong password".
    dummy: String,
}

impl Passwords {
    /// Builds the hasher; `cfg` was checked at config load.
    pub fn new(cfg: PasswordConfig) -> Result<Passwords, argon2::Error> {
        let params = Params::new(cfg.m_kib, cfg.t, cfg.p, None)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut p = Passwords { argon, dummy: String::new() };
        let secret = crate::token::new_token();
        p.dummy = p.hash(&secret).map_err(|_| argon2::Error::AlgorithmInvalid)?;
        Ok(p)
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
        let salt = SaltString::encode_b64(&salt)?;
        Ok(self.argon.hash_password(password.as_bytes(), &salt)?.to_string())
    }

    /// Checks `password` against a stored hash, or against the dummy when there is none.
    /// A stored hash made with other parameters still verifies (they are in the PHC string).
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.dummy);
        let ok = match PasswordHash::new(phc) {
            Ok(parsed) => self.argon.verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => {
                log::error!("a stored password hash does not parse");
                false
            }
        };
        ok && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(PasswordConfig { m_kib: 64, t: 1, p: 1, threads: 1 }).unwrap()
    }

    #[test]
    fn verifies_the_right_password_only() {
        let p = cheap();
        let h = p.hash("hunter2 ").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("hunter2 ", Some(&h)));
        assert!(!p.verify("hunter2", Some(&h)), "passwords are not trimmed");
        assert!(!p.verify("", Some(&h)));
    }

    #[test]
    fn salts_differ() {
        let p = cheap();
        assert_ne!(p.hash("x").unwrap(), p.hash("x").unwrap());
    }

    #[test]
    fn unknown_account_never_verifies() {
        let p = cheap();
        assert!(!p.verify("anything", None));
    }
}
