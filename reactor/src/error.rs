//! The reactor's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the reactor could not start, run or reload.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Binding a listener failed (address in use, permission).
    Bind(std::net::SocketAddr, io::Error),
    /// The event loop itself failed (poll, waker, registration).
    Io(io::Error),
    /// A certificate or key file could not be read.
    TlsFile(PathBuf, io::Error),
    /// A certificate or key file held no usable PEM item.
    TlsPem(PathBuf, &'static str),
    /// rustls refused the certificate/key pair.
    Tls(rustls::Error),
    /// Generating the self-signed development certificate failed.
    SelfSigned(String),
    /// The TLS listener is configured without a certificate source.
    NoCertificate,
    /// A worker thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Io(e) => write!(f, "event loop: {e}"),
            Error::TlsFile(p, e) => write!(f, "[tls] {}: {e}", p.display()),
            Error::TlsPem(p, what) => write!(f, "[tls] {}: {what}", p.display()),
            Error::Tls(e) => write!(f, "[tls] certificate and key rejected: {e}"),
            Error::SelfSigned(e) => write!(f, "[tls] self-signed certificate: {e}"),
            Error::NoCertificate => {
                f.write_str("[tls] listen is set but no certificate is configured")
            }
            Error::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for Error {}
