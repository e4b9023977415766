//! Live state shared by every worker, in memory: who is online, who everyone is, and what
//! each client may still spend. None of it survives a restart; the store is the truth.
//!
//! - `sessions`     — the registry of live sessions.
//! - `token`        — session tokens and user ids.
//! - `directory`    — every user as search lists them, so a search costs no store query.
//! - `friend_cache` — friend sets of live senders, so a message costs no store query.
//! - `rate_limit`   — the token buckets of docs/protocol.md §8.

pub(crate) mod directory;
pub(crate) mod friend_cache;
pub(crate) mod rate_limit;
pub(crate) mod sessions;
pub(crate) mod token;
