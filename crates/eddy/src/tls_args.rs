//! `--ca` (or `EDDY_CA`): the cluster CA a client command trusts when the
//! node serves TLS (docs/SECURITY.md). Given, the binary protocol runs over
//! TLS and HTTP becomes HTTPS; the node's certificate must be signed by
//! this CA and name the IP address dialled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use eddy_client::{ClientConfig, ClientTls};

/// The CA option of client commands.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) of a node with TLS; connects with TLS/HTTPS.
    #[arg(long, env = "EDDY_CA")]
    pub ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The binary-protocol client configuration.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let tls = match &self.ca {
            Some(ca) => Some(ClientTls::from_ca_file(ca).map_err(|err| err.to_string())?),
            None => None,
        };
        Ok(ClientConfig {
            tls,
            ..ClientConfig::default()
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }

    /// A ureq agent with `timeout`, trusting the CA when one is given;
    /// `status_as_error` as ureq's `http_status_as_error`.
    pub fn agent(&self, timeout: Duration, status_as_error: bool) -> Result<ureq::Agent, String> {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(status_as_error)
            .timeout_global(Some(timeout));
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).map_err(|err| format!("--ca {}: {err}", ca.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(err) => Some(Err(err)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| format!("--ca {}: {err}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca {}: no CERTIFICATE in the file", ca.display()));
            }
            builder = builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    // ring, as everywhere in eddy (ureq picks none itself).
                    .unversioned_rustls_crypto_provider(eddy_client::tls::provider())
                    .build(),
            );
        }
        Ok(builder.build().into())
    }
}
