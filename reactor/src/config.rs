//! Transport settings: every limit and timeout of the reactor, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the TLS listener gets its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM certificate chain and private key (ECDSA P-256, Ed25519 or RSA; PKCS#8, SEC1 or PKCS#1).
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// A certificate for `localhost`, `127.0.0.1` and `::1` generated at start (development only).
    SelfSigned,
}

/// Everything the reactor needs to run. The daemon builds it from its config file;
/// tests build it with struct update syntax over [`Config::default`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Plain HTTP/WebSocket listener; `None` disables it. Port 0 picks a free port.
    pub listen: Option<SocketAddr>,
    /// TLS listener; `None` disables it.
    pub tls_listen: Option<SocketAddr>,
    /// Certificate of the TLS listener (needed when `tls_listen` is set).
    pub tls: Option<TlsSource>,
    /// Worker threads that run the handler. Default: number of cores.
    pub workers: usize,
    /// Open connections beyond this are closed at once after accept. Default 20,000.
    pub max_connections: usize,
    /// Open connections per client IP (an IPv6 client: its /64); 0 = no cap. Default 256:
    /// with no cap one address could hold every slot of `max_connections`.
    pub connections_per_ip: usize,
    /// Largest request head (request line + headers), else 431. Default 16 KiB.
    pub head_bytes: usize,
    /// Most header lines in a request head, else 431. Default 100.
    pub max_headers: usize,
    /// Largest request body, else 413. Default 1 MiB.
    pub body_bytes: usize,
    /// A complete request head must arrive within this (slowloris), else close. Default 10 s.
    pub head_timeout: Duration,
    /// A keep-alive connection idle between requests is closed after this. Default 60 s.
    pub keepalive_timeout: Duration,
    /// The TLS handshake must finish within this, else close. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// Output a peer may leave undrained: bytes queued while its socket took no more,
    /// less what it has taken since. A peer past it is closed (it stopped reading); a
    /// burst the server makes while the peer keeps reading is not counted. Default 4 MiB.
    pub output_cap_bytes: usize,
    /// Pending output across all connections. Past it, connections with output pending
    /// are not read, and those with the most are closed until it holds: a crowd of peers
    /// that never read cannot take the memory of the host. Default 256 MiB.
    pub output_budget_bytes: usize,
    /// After an answer that closes while the client may still be sending (413, 431, a
    /// 1009 close), the server stops writing and reads and discards what comes for at
    /// most this long, so the client reads the answer instead of a reset. Default 5 s.
    pub linger_timeout: Duration,
    /// ... and at most this many bytes. Default 1 MiB.
    pub linger_bytes: usize,
    /// The server pings every WebSocket this often. Default 30 s.
    pub ws_ping_interval: Duration,
    /// A WebSocket with no frame from its client for this long is closed. Default 90 s.
    pub ws_idle_timeout: Duration,
    /// Largest WebSocket message (and frame); larger closes with 1009. Default 1 MiB.
    pub ws_max_message_bytes: usize,
    /// On shutdown, in-flight requests get this long before connections are dropped. Default 5 s.
    pub shutdown_deadline: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls_listen: None,
            tls: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_connections: 20_000,
            connections_per_ip: 256,
            head_bytes: 16 * 1024,
            max_headers: 100,
            body_bytes: 1024 * 1024,
            head_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            output_cap_bytes: 4 * 1024 * 1024,
            output_budget_bytes: 256 * 1024 * 1024,
            linger_timeout: Duration::from_secs(5),
            linger_bytes: 1024 * 1024,
            ws_ping_interval: Duration::from_secs(30),
            ws_idle_timeout: Duration::from_secs(90),
            ws_max_message_bytes: 1024 * 1024,
            shutdown_deadline: Duration::from_secs(5),
        }
    }
}
