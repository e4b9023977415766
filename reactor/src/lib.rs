//! reactor: the transport imd stands on, and nothing about instant messaging.
//!
//! One mio `Poll` thread owns every socket; a fixed pool of workers runs the
//! application's [`Handler`]. Complete HTTP requests and WebSocket messages travel to
//! the workers over a channel; replies and pushes come back through [`Remote`], a
//! channel plus a `mio::Waker`. At most one job per connection is with the workers at a
//! time, so a connection's replies keep the order of its input. While every worker
//! sleeps, the loop takes the few jobs waiting off that channel itself and offers them
//! to the handler's `*_now` methods, which run what needs nothing but memory and give
//! back the rest: at a low rate that spares each message two thread wake-ups.
//!
//! - `config`       — [`Config`]: every limit and timeout, with defaults.
//! - `handler`      — the seam: [`Handler`], [`Flow`], [`ConnId`], [`WsMessage`], [`Upgrade`], [`CloseReason`].
//! - `request`, `response` — the HTTP types that cross the seam.
//! - `server`       — [`Server`]: the event loop, the connection slab, timers, accept;
//!   [`client`]: who a per-client limit counts (an IPv4 address, an IPv6 /64).
//! - `conn`         — one connection: its phase enum, buffers, TLS and WebSocket state.
//! - `stream`       — the bytes under a connection: a mio socket, or an in-memory pipe.
//! - `http`         — resumable request framing (httparse) and response writing.
//! - `buffer`       — byte buffers that give their memory back when empty.
//! - `remote`       — [`Remote`] and [`Stats`]: commands into the loop from any thread.
//! - `receipts`     — tagged frames reported once written to the socket, and which
//!   WebSockets still take frames.
//! - `worker`       — the fixed worker pool, and the loop standing in for it while it sleeps.
//! - `tls`          — rustls configuration from PEM files or a self-signed certificate.
//! - `static_files` — [`StaticFiles`]: the web root, with no way out of it.
//! - `error`        — [`Error`].
//! - `harness`, `detached` — a connection over an in-memory pipe with inline jobs, and a
//!   [`Remote`] with no loop behind it: for tests and fuzz targets only (`internals`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buffer;
mod config;
mod conn;
mod detached;
mod error;
mod handler;
mod harness;
mod http;
mod receipts;
mod remote;
mod request;
mod response;
mod server;
mod static_files;
mod stream;
mod tls;
mod worker;

pub use config::{Config, TlsSource};
pub use error::Error;
pub use handler::{CloseReason, ConnId, Flow, Handler, Upgrade, WsMessage};
pub use remote::{Remote, Stats};
pub use request::{Listener, Request};
pub use response::{reason, Response};
pub use server::{client, Server};
pub use static_files::StaticFiles;

/// Internals exposed for the criterion benches, fuzz targets and tests only; not an API.
#[doc(hidden)]
pub mod internals {
    pub use crate::detached::{DetachedRemote, Sent};
    pub use crate::harness::{EchoHandler, MemoryConn};
    pub use crate::http::{parse_head, Head, HeadLimits};
}
