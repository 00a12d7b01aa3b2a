//! Transport security: the server's certificate and key (`--tls-cert`, `--tls-key`) and, for
//! mTLS, the CA whose client certificates it accepts (`--tls-client-ca`; required unless
//! `--tls-client-auth-optional`). rustls with ring, the one crypto provider, installed at
//! start. The handshake itself runs in the accept loop (`connections.rs`), under the
//! handshake timeout; a client certificate's SHA-256 fingerprint rides with the connection
//! to the auth layer, which maps it to a service account.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// TLS settings (`Config::tls`); `None` there: plaintext HTTP/2.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; set: clients must present a certificate one of them issued.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: a client without a certificate may still connect (and authenticate
    /// with a bearer key); a certificate from another CA is still refused.
    pub client_auth_optional: bool,
}

impl TlsConfig {
    /// Does this server verify client certificates (so authentication is on)?
    pub fn verifies_clients(&self) -> bool {
        self.client_ca.is_some()
    }
}

/// Make ring the process's rustls crypto provider (once; later calls change nothing).
pub fn install_crypto_provider() {
    // Err: already installed, by an earlier call
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls server configuration for `c`: HTTP/2 only (ALPN `h2`).
pub fn server_config(c: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    install_crypto_provider();
    let chain = certificates(&c.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .with_context(|| format!("--tls-key {}: no PEM private key", c.key.display()))?;
    let builder = ServerConfig::builder();
    let builder = match &c.client_ca {
        None => {
            if c.client_auth_optional {
                anyhow::bail!("--tls-client-auth-optional needs --tls-client-ca");
            }
            builder.with_no_client_auth()
        }
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "--tls-client-ca")? {
                roots
                    .add(cert)
                    .with_context(|| format!("--tls-client-ca {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if c.client_auth_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .with_context(|| format!("--tls-client-ca {}", ca.display()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{flag} {}: bad PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}
