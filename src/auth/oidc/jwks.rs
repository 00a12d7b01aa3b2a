//! The identity provider's signing keys (a JWK set) from a URL or a file: parsed key by key,
//! each with the one algorithm it verifies, so a token cannot choose its own.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Where the key set comes from (`--oidc-jwks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `http://` or `https://`: fetched at start, then refreshed.
    Url(String),
    /// Anything else: a local file, read at start and re-read on an unknown key id.
    File(PathBuf),
}

impl JwksSource {
    pub fn parse(s: &str) -> JwksSource {
        if s.starts_with("https://") || s.starts_with("http://") {
            JwksSource::Url(s.to_string())
        } else {
            JwksSource::File(PathBuf::from(s.strip_prefix("file://").unwrap_or(s)))
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Url(u) => f.write_str(u),
            JwksSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One signing key and the only algorithm it is used with.
pub struct SigningKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The largest key set document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long a fetch of the key set may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The algorithm a JWK verifies: its `alg` when it names one, else the one its key type and
/// curve imply (RSA: RS256, EC P-256: ES256, P-384: ES384, OKP Ed25519: EdDSA). `None` for
/// keys that are not public signing keys bakkal accepts (symmetric `oct` keys, encryption
/// keys, other curves, an `alg` that does not fit the key).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => return None,
        },
        // a shared secret is no public key: never accepted
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let Some(named) = jwk.common.key_algorithm else {
        return Some(implied);
    };
    let named = match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    // the named algorithm must be of the key's family (and an EC key's curve)
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            named,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        _ => named == implied,
    };
    fits.then_some(named)
}

/// The usable signing keys of a JWK set document; keys bakkal cannot use are skipped (and
/// logged), so one odd key does not take the others down. An error when none is usable.
pub fn parse(document: &[u8]) -> anyhow::Result<Vec<SigningKey>> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(document)
        .context("not a JWK set (a JSON object with a `keys` array)")?;
    let mut out = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(index = i, error = %e, "JWK skipped: not a key bakkal can read");
                continue;
            }
        };
        let Some(alg) = algorithm_of(&jwk) else {
            tracing::warn!(index = i, kid = ?jwk.common.key_id, "JWK skipped: not a public signing key of RS*, PS*, ES256, ES384 or EdDSA");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => out.push(SigningKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            }),
            Err(e) => {
                tracing::warn!(index = i, kid = ?jwk.common.key_id, error = %e, "JWK skipped: unreadable key");
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!("the JWK set has no usable signing key");
    }
    Ok(out)
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Reads a key set from its source.
pub struct Loader {
    source: JwksSource,
    client: Option<HttpsClient>,
}

impl Loader {
    pub fn new(source: JwksSource) -> anyhow::Result<Loader> {
        let client = match &source {
            JwksSource::File(_) => None,
            JwksSource::Url(url) => {
                // an explicit provider: nothing process-wide is installed for this client
                let provider = rustls::crypto::ring::default_provider();
                let builder = hyper_rustls::HttpsConnectorBuilder::new();
                let builder = if url.starts_with("https://") {
                    builder
                        .with_provider_and_native_roots(provider)
                        .context("cannot load the system's root certificates for --oidc-jwks")?
                } else {
                    // plain HTTP (a sidecar, a test): no roots needed
                    builder.with_tls_config(
                        rustls::ClientConfig::builder_with_provider(provider.into())
                            .with_safe_default_protocol_versions()?
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    )
                };
                let https = builder.https_or_http().enable_http1().build();
                Some(Client::builder(TokioExecutor::new()).build(https))
            }
        };
        Ok(Loader { source, client })
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    pub async fn load(&self) -> anyhow::Result<Vec<SigningKey>> {
        let document = match (&self.source, &self.client) {
            (JwksSource::File(path), _) => tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?,
            (JwksSource::Url(url), Some(client)) => {
                tokio::time::timeout(FETCH_TIMEOUT, fetch(client, url))
                    .await
                    .map_err(|_| anyhow::anyhow!("{url}: no answer within {FETCH_TIMEOUT:?}"))??
            }
            (JwksSource::Url(url), None) => anyhow::bail!("{url}: no HTTP client"),
        };
        parse(&document).with_context(|| format!("{}", self.source))
    }
}

async fn fetch(client: &HttpsClient, url: &str) -> anyhow::Result<Vec<u8>> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{url}: cannot fetch"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: cannot read the answer: {e}"))?;
    Ok(body.to_bytes().to_vec())
}
