//! imd: an instant-messaging server daemon.
//!
//! The transport (event loop, HTTP, TLS, WebSocket) is the `reactor` crate; the wire
//! types are `proto`; persistence is `store`. This crate is the daemon that joins them:
//!
//! - `config`     — [`Config`], read from TOML and checked once at load.
//! - `app`        — [`App`]: the `reactor::Handler`; routes HTTP requests and tunnel frames.
//! - `route`      — the API routes and the methods each takes.
//! - `input`      — request fields from a query string or a JSON body, trimmed per §1.
//! - `accounts`   — register, query, erase, profile update (docs/protocol.md §3).
//! - `friends`    — search, request, add, decline, remove, list, requests (§5).
//! - `friend_cache` — friend sets of live senders, so a message costs no store query.
//! - `directory`  — every user as search lists them, in memory, so a search costs no
//!   store query.
//! - `tunnel`     — the login WebSocket: login, send, heartbeat, presence (§4, §6).
//! - `sessions`   — the registry of live sessions shared by all workers.
//! - `history`    — conversations that are kept (§10): group commit, marks, receipts,
//!   `/im/messages`.
//! - `db`         — one SQLite connection per worker thread, reopened after a lasting
//!   failure; the database file watched for deletion or replacement.
//! - `password`   — argon2id hashing, with a dummy hash for unknown accounts.
//! - `hasher`     — the thread pool where logins check passwords, off the workers.
//! - `token`      — session tokens and user ids.
//! - `rate_limit` — token buckets of §8.
//! - `metrics`    — counters, `/im/health` and `/im/metrics`.
//! - `daemon`     — start, signals, housekeeping and graceful stop.
//! - `memory`     — freed memory back to the system after connections close.
//! - `fd_limit`   — the descriptor limit raised at start and checked against the config.
//! - `loopback_tls` — a TLS client that trusts our own self-signed server (load generator, tests).
// One call into the C library (`memory`) is allowed where it stands; nothing else.
#![deny(unsafe_code)]

mod accounts;
mod app;
mod config;
mod daemon;
mod db;
mod directory;
mod fd_limit;
mod friend_cache;
mod friends;
mod hasher;
mod history;
mod input;
#[doc(hidden)]
pub mod loopback_tls;
mod memory;
mod metrics;
mod password;
mod rate_limit;
mod route;
mod sessions;
mod token;
mod tunnel;

pub use app::App;
pub use config::{
    Config, ConfigError, HistoryConfig, PasswordConfig, RateLimits, RequestLimits, SessionConfig,
    StoreConfig,
};
pub use daemon::{run, Daemon, Error};
