//! imd: an instant-messaging server daemon.
//!
//! The transport (event loop, HTTP, TLS, WebSocket) is the `reactor` crate; the wire
//! types are `proto`; persistence is `store`. This crate is the daemon that joins them:
//!
//! - `app`      — [`App`]: the `reactor::Handler`; hands each HTTP request and tunnel frame
//!   to its route.
//! - `routes`   — what each request does: accounts, friends, the login WebSocket (§3–6).
//! - `history`  — conversations that are kept (§10): group commit, marks, receipts,
//!   `/im/messages`.
//! - `live`     — live state in memory: sessions, the search directory, friend caches,
//!   rate limits, tokens.
//! - `auth`     — argon2id passwords and the pool that checks them off the workers.
//! - `cluster`  — several nodes as one (`[cluster]`): the live state shared through Redis.
//! - `daemon`   — start, signals, housekeeping and stop; [`Config`]; metrics; the store's
//!   connections.
//! - `loopback_tls` — a TLS client that trusts our own self-signed server (load generator,
//!   tests).
// One call into the C library (`memory`) is allowed where it stands; nothing else.
#![deny(unsafe_code)]

mod app;
mod auth;
mod cluster;
mod daemon;
mod history;
mod live;
#[doc(hidden)]
pub mod loopback_tls;
mod routes;

pub use app::App;
pub use daemon::config::{
    ClusterConfig, Config, ConfigError, HistoryConfig, PasswordConfig, RateLimits, RequestLimits,
    SessionConfig, StoreConfig,
};
pub use daemon::{run, Daemon, Error};
