//! TLS server configuration: PEM files (ECDSA, Ed25519 or RSA keys) or a self-signed
//! localhost certificate for development.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::{Error, TlsSource};

/// Builds a rustls server configuration from `source`.
pub fn server_config(source: &TlsSource) -> Result<Arc<ServerConfig>, Error> {
    let (certs, key) = match source {
        TlsSource::Files { cert, key } => (read_certs(cert)?, read_key(key)?),
        TlsSource::SelfSigned => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::TlsFile(path.into(), e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsFile(path.into(), e))?;
    if certs.is_empty() {
        return Err(Error::TlsPem(path.into(), "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::TlsFile(path.into(), e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| Error::TlsFile(path.into(), e))?
        .ok_or_else(|| Error::TlsPem(path.into(), "no PRIVATE KEY in the file"))
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let cert =
        rcgen::generate_simple_self_signed(names).map_err(|e| Error::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| Error::SelfSigned(e.to_string()))?;
    Ok((vec![cert.cert.der().clone()], key))
}
