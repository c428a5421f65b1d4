//! TLS for the binary protocol and the peer links (docs/SECURITY.md):
//! loading PEM files and building rustls configurations with the ring
//! provider, shared by clients ([`ClientTls`]) and the node.
//!
//! A server's certificate is verified against the cluster CA and either the
//! IP address connected to (clients: `eddy cert node --ip` puts each node's
//! addresses in its certificate) or the node's name as a DNS name (peer
//! links: a node must prove it is the member it claims to be).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use rustls;

/// A TLS file could not be used. Nothing was started.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read or holds no PEM item of the kind needed.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file (`tls_ca`, `tls_cert`, `tls_key`, `--ca`).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificates or key together.
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
    /// The client certificate verifier could not be built from the CA.
    #[error("tls: client verifier: {0}")]
    Verifier(String),
}

/// The crypto provider every eddy TLS configuration uses: ring (aws-lc-rs
/// needs cmake and a long C build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order (leaf first for a chain).
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(err.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: err.to_string(),
    })
}

/// A root store holding the CA certificates of `path`.
pub fn load_roots(what: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|err| TlsError::File {
            what,
            path: path.to_path_buf(),
            reason: format!("not a CA certificate: {err}"),
        })?;
    }
    Ok(roots)
}

/// How a client opens TLS connections: the CA it trusts and, for mutual
/// TLS (peer links), the certificate it shows.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// A client that trusts the CA certificates in `ca` and shows no
    /// certificate of its own (`eddy send --ca`).
    pub fn from_ca_file(ca: &Path) -> Result<ClientTls, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(load_roots("--ca", ca)?)
            .with_no_client_auth();
        Ok(ClientTls::new(Arc::new(config)))
    }

    /// A client with a configuration of the caller's (the node's peer
    /// links, which also show their certificate).
    pub fn new(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls {
            connector: TlsConnector::from(config),
        }
    }

    /// Runs the handshake on `stream`, verifying the server's certificate
    /// against the IP address connected to.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let addr: SocketAddr = stream.peer_addr()?;
        let name = ServerName::IpAddress(addr.ip().into());
        self.connector.connect(name, stream).await
    }

    /// Runs the handshake on `stream`, verifying that the server's
    /// certificate names `name` (a node name, as a DNS name: peer links
    /// check whom they reached, not only where).
    pub async fn connect_named(
        &self,
        stream: TcpStream,
        name: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(name.to_owned()).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{name}` is not a DNS name: {err}"),
            )
        })?;
        self.connector.connect(name, stream).await
    }
}

/// Whether bytes received where a frame was expected are a TLS record
/// (handshake 0x16 or alert 0x15, version 3.x): the other side speaks TLS
/// and this side did not, which deserves a clearer message than "bad frame".
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_are_told_from_frames() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(&[0x20, 0x00, 0x00, 0x00]));
        assert!(!looks_like_tls(&[]));
    }

    #[test]
    fn a_missing_or_empty_file_names_itself() {
        let err = load_certs("--ca", Path::new("/nonexistent/ca.pem"))
            .expect_err("no file")
            .to_string();
        assert!(err.contains("--ca /nonexistent/ca.pem"), "{err}");
        let empty = std::env::temp_dir().join(format!("eddy-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").expect("write");
        let err = load_certs("tls_ca", &empty).expect_err("empty").to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let _ = std::fs::remove_file(empty);
    }
}
