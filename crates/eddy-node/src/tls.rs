//! TLS on the node's TCP ports (docs/SECURITY.md): the rustls
//! configurations built from `tls_ca`, `tls_cert` and `tls_key`, and the
//! accepted-connection type every listener serves.
//!
//! - The peer port demands a client certificate signed by the cluster CA
//!   (mutual TLS); its client side shows the node's certificate and checks
//!   the other node's against the CA and the peer address dialled. A node
//!   whose certificate another CA signed is refused in the handshake, before
//!   any frame is read.
//! - The HTTP and binary ports serve TLS with the same certificate; their
//!   clients only verify the node (API tokens, not certificates, say who a
//!   client is).
//!
//! A handshake must finish within the port's timeout; a failed one (a
//! plaintext client, a stranger's certificate) is counted in
//! `eddy_tls_handshake_failures_total` and logged at most once a second.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_client::tls::rustls;
use eddy_client::tls::{ClientTls, TlsError, load_certs, load_key, load_roots, provider};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The PEM files behind a node's TLS (all three or none are configured).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The cluster CA certificate: signs every node's certificate.
    pub ca: PathBuf,
    /// This node's certificate (chain), naming its IP addresses.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// A node's TLS configurations, built once at start.
#[derive(Clone)]
pub struct NodeTls {
    /// Peer port: client certificates signed by the CA required.
    pub peer_acceptor: TlsAcceptor,
    /// HTTP and binary ports: server authentication only.
    pub client_acceptor: TlsAcceptor,
    /// Peer links' client side: shows this node's certificate.
    pub peer_connector: ClientTls,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

impl NodeTls {
    /// Loads the files and builds the three configurations.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        let roots = Arc::new(load_roots("tls_ca", &files.ca)?);
        let certs = load_certs("tls_cert", &files.cert)?;
        let key = load_key("tls_key", &files.key)?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|err| TlsError::Verifier(err.to_string()))?;
        let peer_server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())?;
        let client_server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())?;
        let peer_client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        Ok(NodeTls {
            peer_acceptor: TlsAcceptor::from(Arc::new(peer_server)),
            client_acceptor: TlsAcceptor::from(Arc::new(client_server)),
            peer_connector: ClientTls::new(Arc::new(peer_client)),
        })
    }
}

/// Whether `name` can be checked in a certificate as a DNS name.
pub fn is_dns_name(name: &str) -> bool {
    matches!(
        rustls::pki_types::ServerName::try_from(name),
        Ok(rustls::pki_types::ServerName::DnsName(_))
    )
}

/// An accepted connection, TLS or not; reads and writes pass through.
pub enum Conn {
    /// Plain TCP (no TLS configured).
    Plain(TcpStream),
    /// After a completed TLS handshake.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// Runs the TLS handshake when `acceptor` is given, within `timeout`.
    /// `None`: the handshake failed or timed out (counted and logged at
    /// most once a second); the connection is dropped.
    pub async fn accept(
        stream: TcpStream,
        acceptor: Option<&TlsAcceptor>,
        from: SocketAddr,
        port: &'static str,
        timeout: Duration,
    ) -> Option<Conn> {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = acceptor else {
            return Some(Conn::Plain(stream));
        };
        let failure = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => return Some(Conn::Tls(Box::new(tls))),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no handshake within {} ms", timeout.as_millis()),
        };
        metrics::counter!("eddy_tls_handshake_failures_total", "port" => port).increment(1);
        crate::warn_limited!(%from, port, reason = %failure, "refused a connection: TLS handshake failed (a plaintext client, or a certificate the cluster CA did not sign?)");
        None
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(stream) => stream.is_write_vectored(),
            Conn::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
