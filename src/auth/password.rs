//! Password hashing with argon2id. Runs on the hasher pool only: a verify costs tens of
//! milliseconds by design, which neither the event loop nor the message workers may pay.
//!
//! Every check costs at least one run at the configured parameters, whatever the
//! account: an unknown account runs the dummy hash, a stored hash made with other
//! (older) parameters is followed by a run at the current ones (the rehash when the
//! password is right, the dummy when it is wrong). So raising the cost in the config
//! never makes an old account's wrong password cheaper than an unknown account.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::daemon::config::PasswordConfig;

/// Hashes and verifies passwords with one set of argon2id parameters.
pub struct Passwords {
    argon: Argon2<'static>,
    cfg: PasswordConfig,
    /// A real hash of a random password, verified against when the account is unknown
    /// so that "no such account" costs the same time as "wrong password".
    dummy: String,
    /// Argon2 runs at the configured parameters.
    current_runs: AtomicU64,
    /// Argon2 runs at the parameters of a stored hash made with others.
    other_runs: AtomicU64,
}

/// The outcome of a password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The password is right.
    pub ok: bool,
    /// Right, but the stored hash was made with other parameters: the caller stores
    /// [`Passwords::hash`] of it instead (that run is the one a wrong password pays
    /// with the dummy).
    pub rehash: bool,
}

impl Passwords {
    /// Builds the hasher; `cfg` was checked at config load.
    pub fn new(cfg: PasswordConfig) -> Result<Passwords, argon2::Error> {
        let params = Params::new(cfg.m_kib, cfg.t, cfg.p, None)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut p = Passwords {
            argon,
            cfg,
            dummy: String::new(),
            current_runs: AtomicU64::new(0),
            other_runs: AtomicU64::new(0),
        };
        let secret = crate::live::token::new_token();
        p.dummy = p.hash(&secret).map_err(|_| argon2::Error::AlgorithmInvalid)?;
        p.current_runs.store(0, Relaxed);
        Ok(p)
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
        let salt = SaltString::encode_b64(&salt)?;
        self.current_runs.fetch_add(1, Relaxed);
        Ok(self.argon.hash_password(password.as_bytes(), &salt)?.to_string())
    }

    /// Checks `password` against a stored hash, or against the dummy when there is none.
    /// A stored hash made with other parameters still verifies (they are in the PHC
    /// string), and then costs one more run at the current ones (see the module doc).
    pub fn verify(&self, password: &str, stored: Option<&str>) -> Verdict {
        let wrong = Verdict { ok: false, rehash: false };
        let Some(phc) = stored else {
            self.against_dummy(password);
            return wrong;
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            log::error!("a stored password hash does not parse");
            self.against_dummy(password);
            return wrong;
        };
        let current = self.is_current(&parsed);
        let runs = if current { &self.current_runs } else { &self.other_runs };
        runs.fetch_add(1, Relaxed);
        let ok = self.argon.verify_password(password.as_bytes(), &parsed).is_ok();
        match (ok, current) {
            (true, _) => Verdict { ok, rehash: !current },
            (false, false) => {
                self.against_dummy(password);
                wrong
            }
            (false, true) => wrong,
        }
    }

    /// Argon2 runs so far: at the configured parameters, and at others.
    pub fn runs(&self) -> (u64, u64) {
        (self.current_runs.load(Relaxed), self.other_runs.load(Relaxed))
    }

    /// One run at the current parameters that can never succeed.
    fn against_dummy(&self, password: &str) {
        self.current_runs.fetch_add(1, Relaxed);
        if let Ok(parsed) = PasswordHash::new(&self.dummy) {
            let _ = self.argon.verify_password(password.as_bytes(), &parsed);
        }
    }

    /// Whether a stored hash was made with the configured algorithm and parameters.
    fn is_current(&self, h: &PasswordHash<'_>) -> bool {
        let param = |name: &str| h.params.get_decimal(name);
        h.algorithm == Algorithm::Argon2id.ident()
            && h.version == Some(Version::V0x13.into())
            && param("m") == Some(self.cfg.m_kib)
            && param("t") == Some(self.cfg.t)
            && param("p") == Some(self.cfg.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(m_kib: u32, t: u32) -> Passwords {
        Passwords::new(PasswordConfig { m_kib, t, p: 1, threads: 1 }).unwrap()
    }

    fn cheap() -> Passwords {
        with(64, 1)
    }

    #[test]
    fn verifies_the_right_password_only() {
        let p = cheap();
        let h = p.hash("hunter2 ").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(p.verify("hunter2 ", Some(&h)), Verdict { ok: true, rehash: false });
        assert!(!p.verify("hunter2", Some(&h)).ok, "passwords are not trimmed");
        assert!(!p.verify("", Some(&h)).ok);
    }

    #[test]
    fn salts_differ() {
        let p = cheap();
        assert_ne!(p.hash("x").unwrap(), p.hash("x").unwrap());
    }

    #[test]
    fn unknown_account_never_verifies() {
        let p = cheap();
        assert!(!p.verify("anything", None).ok);
    }

    #[test]
    fn a_hash_made_with_other_parameters_asks_for_a_rehash() {
        let old = with(64, 1).hash("pw").unwrap();
        let p = with(128, 2);
        assert_eq!(p.verify("pw", Some(&old)), Verdict { ok: true, rehash: true });
        let new = p.hash("pw").unwrap();
        assert!(new.contains("m=128,t=2,p=1"), "{new}");
        assert_eq!(p.verify("pw", Some(&new)), Verdict { ok: true, rehash: false });
    }

    #[test]
    fn unknown_and_old_accounts_pay_the_current_parameters_alike() {
        let old = with(64, 1).hash("pw").unwrap();
        let p = with(128, 2);
        let before = p.runs();
        p.verify("wrong", None);
        let unknown = p.runs();
        assert_eq!((unknown.0 - before.0, unknown.1 - before.1), (1, 0));
        p.verify("wrong", Some(&old));
        let stale = p.runs();
        // The old hash's own run, and one at the current cost like the unknown account.
        assert_eq!((stale.0 - unknown.0, stale.1 - unknown.1), (1, 1));
        let current = p.hash("pw").unwrap();
        let hashed = p.runs();
        p.verify("wrong", Some(&current));
        let after = p.runs();
        assert_eq!((after.0 - hashed.0, after.1 - hashed.1), (1, 0));
    }

    #[test]
    fn an_unparsable_hash_costs_a_current_run() {
        let p = cheap();
        let before = p.runs();
        assert!(!p.verify("pw", Some("not a phc string")).ok);
        assert_eq!(p.runs().0 - before.0, 1);
    }
}
