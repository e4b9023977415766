//! reactor: the transport imd stands on, and nothing about instant messaging.
//!
//! One mio `Poll` thread owns every socket; a fixed pool of workers runs the
//! application's [`Handler`]. Complete HTTP requests and WebSocket messages travel to
//! the workers over a channel; replies and pushes come back through [`Remote`], a
//! channel plus a `mio::Waker`.
//!
//! Module map (filled in by the implementation):
//! - `config`   — [`Config`]: every limit and timeout, with defaults.
//! - `handler`  — [`Handler`], [`ConnId`], [`WsMessage`], [`Upgrade`], [`CloseReason`].
//! - `request`, `response` — the HTTP types that cross the seam.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod handler;
mod request;
mod response;

pub use config::{Config, TlsSource};
pub use handler::{CloseReason, ConnId, Handler, Upgrade, WsMessage};
pub use request::{Listener, Request};
pub use response::{reason, Response};
