//! Staff bearer tokens: JWTs from an OIDC identity provider (`--oidc-issuer`,
//! `--oidc-audience`, `--oidc-jwks`). A token is accepted when it is signed by a key of the
//! provider's JWK set with that key's own algorithm (never the one the token's header asks
//! for, never `none` or a shared secret), its `iss` and `aud` are the configured ones, and
//! `exp` / `nbf` hold with [`LEEWAY_SECS`] of clock skew. Which user it speaks for is the
//! [`Authenticator`](super::Authenticator)'s business.
//!
//! The key set is loaded at start. From a file, a start without usable keys is refused (a
//! configuration error); from a URL, the server starts anyway (API keys keep working while the
//! provider is down), refuses tokens until a fetch succeeds and retries every
//! [`RETRY_EVERY`]. Once loaded, a URL is fetched again every [`REFRESH_EVERY`], and either
//! source is read again when a token names an unknown key id (at most once per
//! [`UNKNOWN_KID_REFRESH`]), so a provider's key rotation is picked up without a restart.

pub mod jwks;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Header, Validation};
use tonic::Status;

use jwks::{JwksSource, Loader, SigningKey};

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// A token naming a key id not in the set reloads the set at most this often.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(60);
/// How often a key set from a URL is fetched again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// How often a URL is tried again while no key set could be fetched.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

/// The identity provider whose tokens are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` a token must name (this server's client id at the provider).
    pub audience: String,
    pub jwks: JwksSource,
}

/// What bakkal reads of a verified token.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `true` (some providers send the string "true").
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
}

impl Claims {
    /// The address when the provider says it verified it.
    pub fn verified_email(&self) -> Option<&str> {
        let verified = match &self.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        self.email.as_deref().filter(|_| verified)
    }
}

fn unauthenticated(message: impl Into<String>) -> Status {
    Status::unauthenticated(message)
}

/// Verifies bearer tokens against the provider's current key set.
pub struct Verifier {
    config: OidcConfig,
    loader: Loader,
    keys: RwLock<Arc<Vec<SigningKey>>>,
    /// Why there are no keys, while there are none.
    load_error: Mutex<Option<String>>,
    /// When a token's unknown key id last made the set reload.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl Verifier {
    /// Load the key set (see the module's notes for a source that fails).
    pub async fn start(config: OidcConfig) -> anyhow::Result<Arc<Verifier>> {
        let loader = Loader::new(config.jwks.clone())?;
        let verifier = Arc::new(Verifier {
            loader,
            config,
            keys: RwLock::new(Arc::new(Vec::new())),
            load_error: Mutex::new(None),
            on_demand: tokio::sync::Mutex::new(None),
        });
        if let Err(e) = verifier.reload().await {
            match &verifier.config.jwks {
                JwksSource::File(_) => {
                    return Err(e.context("--oidc-jwks: cannot load the signing keys"));
                }
                JwksSource::Url(_) => tracing::warn!(
                    error = format!("{e:#}"),
                    "OIDC signing keys not loaded; bearer tokens are refused until a fetch \
                     succeeds (retried every {}s)",
                    RETRY_EVERY.as_secs()
                ),
            }
        }
        Ok(verifier)
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the key set again; the old one stays when this fails.
    async fn reload(&self) -> anyhow::Result<()> {
        match self.loader.load().await {
            Ok(keys) => {
                tracing::info!(source = %self.loader.source(), keys = keys.len(), "OIDC signing keys loaded");
                if let Ok(mut k) = self.keys.write() {
                    *k = Arc::new(keys);
                }
                if let Ok(mut e) = self.load_error.lock() {
                    *e = None;
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(mut last) = self.load_error.lock() {
                    *last = Some(format!("{e:#}"));
                }
                Err(e)
            }
        }
    }

    /// The periodic refresh of a key set from a URL (nothing for a file), until aborted.
    pub fn spawn_refresh(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !matches!(self.config.jwks, JwksSource::Url(_)) {
            return None;
        }
        let me = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                let wait = match me.upgrade() {
                    Some(v) if v.current().is_empty() => RETRY_EVERY,
                    Some(_) => REFRESH_EVERY,
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(v) = me.upgrade() else { return };
                if let Err(e) = v.reload().await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "OIDC signing keys not refreshed; the last ones stay"
                    );
                }
            }
        }))
    }

    /// Reload for an unknown key id, at most once per [`UNKNOWN_KID_REFRESH`] (a caller
    /// making up key ids cannot make the server hammer the provider).
    async fn reload_on_demand(&self) {
        let mut last = self.on_demand.lock().await;
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFRESH) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.reload().await {
            tracing::warn!(error = format!("{e:#}"), "OIDC signing keys not reloaded");
        }
    }

    /// Which key verifies a token with this header: the one its `kid` names (reloading the set
    /// once when none has it), else the only key of the header's algorithm.
    async fn pick(&self, header: &Header) -> Result<(Arc<Vec<SigningKey>>, usize), Status> {
        let find = |keys: &[SigningKey]| match &header.kid {
            Some(kid) => keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid.as_str())),
            None => {
                let mut same = keys.iter().enumerate().filter(|(_, k)| k.alg == header.alg);
                match (same.next(), same.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            }
        };
        let keys = self.current();
        if let Some(i) = find(&keys) {
            return Ok((keys, i));
        }
        if header.kid.is_some() || keys.is_empty() {
            self.reload_on_demand().await;
            let keys = self.current();
            if let Some(i) = find(&keys) {
                return Ok((keys, i));
            }
            if keys.is_empty() {
                let why = self
                    .load_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default();
                tracing::warn!(error = %why, "bearer token refused: no OIDC signing keys");
                return Err(Status::unavailable(
                    "the identity provider's signing keys are not loaded yet; retry later",
                ));
            }
        }
        Err(unauthenticated(match &header.kid {
            Some(kid) => format!(
                "the token's signing key {} is not one of the issuer's keys",
                crate::status::quote(kid)
            ),
            None => format!(
                "the token names no key id (kid) and no single {:?} key of the issuer fits",
                header.alg
            ),
        }))
    }

    /// The claims of a valid token; UNAUTHENTICATED saying what is wrong otherwise.
    pub async fn verify(&self, token: &str) -> Result<Claims, Status> {
        // `alg: none` (and any algorithm jsonwebtoken does not know) fails here
        let header = decode_header(token).map_err(|_| {
            unauthenticated(
                "malformed bearer credential: neither a bakkal API key (bk_live_…) nor a signed JWT",
            )
        })?;
        let (keys, i) = self.pick(&header).await?;
        let key = &keys[i];
        if header.alg != key.alg {
            return Err(unauthenticated(format!(
                "the token says it is signed with {:?}, but its key is for {:?}",
                header.alg, key.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidSignature => {
                    "the token's signature does not verify with the issuer's key".to_string()
                }
                ErrorKind::InvalidIssuer => {
                    format!("the token's issuer (iss) is not {}", self.config.issuer)
                }
                ErrorKind::InvalidAudience => format!(
                    "the token is not meant for this server (aud is not {})",
                    self.config.audience
                ),
                ErrorKind::MissingRequiredClaim(c) => {
                    format!("the token lacks the {} claim", crate::status::quote(c))
                }
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's".to_string(),
                _ => "malformed token: its claims cannot be read".to_string(),
            })),
        }
    }
}
