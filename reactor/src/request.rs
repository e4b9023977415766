//! A parsed HTTP/1.1 request, as handed to the application.

use std::net::SocketAddr;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The plain listener (`http://`, `ws://`).
    Plain,
    /// The TLS listener (`https://`, `wss://`).
    Tls,
}

/// A complete HTTP request: head and body.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path and optional `?query`, still percent-encoded.
    pub target: String,
    /// Header names (as sent) and values; repeated headers appear repeatedly.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (`Content-Length` bytes; empty when there is none).
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener the request arrived on.
    pub listener: Listener,
}

impl Request {
    /// The path part of the target, still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query string without the `?`, if any, still percent-encoded.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header called `name` (ASCII case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}
