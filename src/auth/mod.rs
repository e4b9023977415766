//! Passwords: argon2id hashing, and the bounded pool where every password check runs so a
//! slow hash never holds a worker; and remembered logins, which need no hash.
//!
//! - `password` — argon2id hashing and rehashing, with a dummy hash for unknown accounts.
//! - `hasher`   — the thread pool (and its bounded queue) that runs the checks.
//! - `devices`  — device tokens of remembered logins (docs/protocol.md §11.2).

pub(crate) mod devices;
pub(crate) mod hasher;
pub(crate) mod password;
