//! Access control in the transport: who is calling (an API key, or over mTLS a client
//! certificate, resolved to a [`Principal`]) and whether they may call this RPC (the one permission table in [`permissions`]). Both run
//! in a tower layer ([`layer`]) before a request's body is decoded; the principal travels in
//! the request's extensions. A bearer value that is not an API key is a staff token (a JWT
//! from the OIDC provider, [`oidc`]) when one is configured, mapped to a user. [`service`] is
//! `bakkal.v1.AccessService`; [`keys`] makes keys (for the service and for `bakkal keys
//! create`).

pub mod keys;
pub mod layer;
pub mod mask;
pub mod oidc;
pub mod permissions;
pub mod service;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakkal_domain::access::{self, KeyError, Principal, PrincipalKind, Scope};
use bakkal_store::{KeyOwner, RecordScope, Store};
use tonic::Status;

use permissions::{BuiltIn, Records};

use crate::connections::ClientCertificate;

/// How long a resolved key (or an unknown key id) is remembered: a revoked key stops working
/// within this time, on every server.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// How the server authenticates.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Require a credential on every call but health (`--require-auth`).
    pub require: bool,
    /// Serve a non-loopback address without authentication (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Staff bearer tokens from this OIDC provider (`--oidc-issuer`, `--oidc-audience`,
    /// `--oidc-jwks`).
    pub oidc: Option<oidc::OidcConfig>,
}

impl AuthConfig {
    /// Is authentication on for a server listening on `listen`? On whenever required or OIDC
    /// is configured, and on any non-loopback address unless explicitly turned off.
    pub fn enabled_for(&self, listen: std::net::SocketAddr) -> bool {
        self.require
            || self.oidc.is_some()
            || (!listen.ip().is_loopback() && !self.insecure_no_auth)
    }
}

/// The permission set of a list of roles (built-in and custom).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub permissions: BTreeSet<String>,
}

impl Grants {
    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }
}

/// Which customers and tickets a caller's reads reach (worked out with the key, once per
/// cache fill); handed to every scoped store read.
#[derive(Debug, Clone)]
pub struct Scopes {
    pub customers: RecordScope,
    pub tickets: RecordScope,
    /// The scopes as the roles give them, for messages.
    pub customer_scope: Scope,
    pub ticket_scope: Scope,
}

impl Scopes {
    pub fn all() -> Scopes {
        Scopes {
            customers: RecordScope::All,
            tickets: RecordScope::All,
            customer_scope: Scope::All,
            ticket_scope: Scope::All,
        }
    }
}

/// A caller as the layer resolved them: who, what they may do and which records they reach.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub grants: Arc<Grants>,
    pub scopes: Arc<Scopes>,
    /// The SHA-256 fingerprint of the client certificate that authenticated the call (mTLS,
    /// no bearer token sent).
    pub certificate: Option<String>,
}

impl Caller {
    /// The caller of every call on a server running without authentication: all of admin's
    /// permissions.
    pub fn open() -> Caller {
        Caller {
            principal: Principal::open(),
            grants: Arc::new(Grants {
                permissions: BuiltIn::Admin
                    .permissions()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            }),
            scopes: Arc::new(Scopes::all()),
            certificate: None,
        }
    }

    pub fn reads_pii(&self) -> bool {
        self.grants.allows("customers.pii.read")
    }

    /// PERMISSION_DENIED unless the caller reaches every record of `records`: an aggregate
    /// (the pyramid, a report) over fewer would be another figure, and over all of them would
    /// show what the caller may not see. The layer checks this for the aggregate RPCs.
    pub fn require_all(&self, records: Records, method: &str) -> Result<(), Status> {
        let (scope, given) = match records {
            Records::Customers => (&self.scopes.customers, self.scopes.customer_scope),
            Records::Tickets => (&self.scopes.tickets, self.scopes.ticket_scope),
        };
        if scope.is_all() {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "{method} aggregates over every one of the {}; {} reaches {} {} only",
            records.name(),
            self.principal.name(),
            given.as_str(),
            records.name()
        )))
    }
}

/// The customer scope of a request's caller.
pub fn customer_scope<T>(req: &tonic::Request<T>) -> RecordScope {
    caller_of(req).scopes.customers.clone()
}

/// The ticket scope of a request's caller.
pub fn ticket_scope<T>(req: &tonic::Request<T>) -> RecordScope {
    caller_of(req).scopes.tickets.clone()
}

/// Custom roles by name: their permissions and scopes.
type RoleBook = permissions::CustomRoles;

/// A key as authentication needs it: its record and secret hash, and the caller it speaks
/// for (principal and permissions, worked out once per cache fill, not per call).
#[derive(Clone)]
struct ResolvedKey {
    owner: KeyOwner,
    caller: Caller,
}

struct CachedKey {
    at: Instant,
    resolved: Option<ResolvedKey>,
}

/// The user a token's subject and verified email map to: whether they are active, and the
/// caller they are.
#[derive(Clone)]
struct TokenUser {
    active: bool,
    caller: Caller,
}

/// A client certificate's service account as authentication needs it: active or not, and the
/// caller it is (`None`: no account lists the certificate).
#[derive(Clone)]
struct ResolvedCertificate {
    account: String,
    active: bool,
    caller: Caller,
}

struct CachedUser {
    at: Instant,
    resolved: Option<TokenUser>,
}

struct CachedCertificate {
    at: Instant,
    resolved: Option<ResolvedCertificate>,
}

/// Resolves credentials to callers, with a short cache in front of the store.
pub struct Authenticator {
    store: Store,
    enabled: bool,
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Token users by subject and verified email.
    users: Mutex<HashMap<String, CachedUser>>,
    certificates: Mutex<HashMap<String, CachedCertificate>>,
    custom_roles: Mutex<Option<(Instant, Arc<RoleBook>)>>,
    open: Caller,
    oidc: Option<Arc<oidc::Verifier>>,
}

impl Authenticator {
    pub fn new(store: Store, enabled: bool) -> Authenticator {
        Authenticator {
            store,
            enabled,
            keys: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            certificates: Mutex::new(HashMap::new()),
            custom_roles: Mutex::new(None),
            open: Caller::open(),
            oidc: None,
        }
    }

    /// Accept staff bearer tokens verified by `verifier` besides API keys.
    pub fn with_oidc(mut self, verifier: Arc<oidc::Verifier>) -> Authenticator {
        self.oidc = Some(verifier);
        self
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Forget cached keys and roles (after a revocation or a new role on this server).
    pub fn invalidate(&self) {
        if let Ok(mut k) = self.keys.lock() {
            k.clear();
        }
        if let Ok(mut u) = self.users.lock() {
            u.clear();
        }
        if let Ok(mut c) = self.certificates.lock() {
            c.clear();
        }
        if let Ok(mut r) = self.custom_roles.lock() {
            *r = None;
        }
    }

    /// The caller of a request with these headers over a connection whose client presented
    /// `certificate` (mTLS): the open caller when authentication is off; else the bearer key
    /// when one is sent (it wins over the certificate), else the service account that lists
    /// the certificate. UNAUTHENTICATED for a missing, malformed, unknown, revoked or expired
    /// credential, and for a certificate no active service account lists.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Caller, Status> {
        if !self.enabled {
            return Ok(self.open.clone());
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return match certificate {
                Some(c) => self.by_certificate(c).await,
                None => Err(Status::unauthenticated(
                    "this server requires a credential: send `authorization: Bearer <API key or \
                     token>` (or, over mTLS, a client certificate mapped to a service account)",
                )),
            };
        };
        let text = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the authorization header must be `Bearer <API key or token>`",
                )
            })?;
        if let Some(verifier) = self.oidc.as_ref().filter(|_| !text.starts_with("bk_")) {
            return self.token_caller(verifier, text).await;
        }
        let parsed = access::parse_key(text).map_err(|e| match e {
            KeyError::Malformed => Status::unauthenticated(e.to_string()),
            KeyError::Checksum => Status::unauthenticated(e.to_string()),
        })?;
        let resolved = self.resolve(&parsed.key_id).await?;
        let unknown = || Status::unauthenticated("unknown API key");
        let Some(ResolvedKey { owner, caller }) = resolved else {
            return Err(unknown());
        };
        if !access::hashes_equal(&owner.secret_hash, &parsed.secret_hash()) {
            return Err(unknown());
        }
        let now = bakkal_domain::time::now_micros();
        if !owner.key.live_at(now) {
            return Err(Status::unauthenticated(format!(
                "API key {} is revoked or expired",
                owner.key.key_id
            )));
        }
        if !owner.active {
            return Err(Status::unauthenticated(format!(
                "the owner of API key {} ({}) is deactivated",
                owner.key.key_id,
                owner.key.parent()
            )));
        }
        Ok(caller)
    }

    /// The user a staff bearer token speaks for: the user bound to its subject, else the one
    /// whose address is its verified `email` (and who is bound to no subject).
    async fn token_caller(&self, verifier: &oidc::Verifier, token: &str) -> Result<Caller, Status> {
        let claims = verifier.verify(token).await?;
        let email = claims
            .verified_email()
            .and_then(|e| bakkal_domain::normalise::email(e).ok());
        let cache_key = format!("{}\n{}", claims.sub, email.as_deref().unwrap_or(""));
        let cached = self.users.lock().ok().and_then(|c| {
            c.get(&cache_key)
                .filter(|c| c.at.elapsed() < KEY_CACHE_TTL)
                .map(|c| c.resolved.clone())
        });
        let resolved = match cached {
            Some(r) => r,
            None => {
                let user = self
                    .store
                    .user_for_token(&claims.sub, email.as_deref())
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "token user lookup failed");
                        Status::unavailable("cannot check credentials now; retry")
                    })?;
                let resolved = match user {
                    None => None,
                    Some(u) => {
                        let grants = Arc::new(self.grants(&u.fields.roles).await?);
                        let scopes = Arc::new(
                            self.scopes(PrincipalKind::User, u.id, &u.fields.roles)
                                .await?,
                        );
                        Some(TokenUser {
                            active: u.fields.active,
                            caller: Caller {
                                principal: Principal {
                                    kind: PrincipalKind::User,
                                    id: u.id,
                                    key_id: None,
                                    roles: u.fields.roles.clone(),
                                    teams: u.fields.teams.clone(),
                                },
                                grants,
                                scopes,
                                certificate: None,
                            },
                        })
                    }
                };
                if let Ok(mut cache) = self.users.lock() {
                    if cache.len() > 10_000 {
                        cache.retain(|_, c| c.at.elapsed() < KEY_CACHE_TTL);
                    }
                    cache.insert(
                        cache_key,
                        CachedUser {
                            at: Instant::now(),
                            resolved: resolved.clone(),
                        },
                    );
                }
                resolved
            }
        };
        match resolved {
            None => Err(Status::unauthenticated(
                "the token is valid, but no bakkal user has its subject (oidc_subject) or its \
                 verified email",
            )),
            Some(u) if !u.active => Err(Status::unauthenticated("the token's user is deactivated")),
            Some(u) => Ok(u.caller),
        }
    }

    /// The service account listing client certificate `c`, through the cache.
    async fn by_certificate(&self, c: &ClientCertificate) -> Result<Caller, Status> {
        let resolved = self.resolve_certificate(&c.sha256).await?;
        let Some(r) = resolved else {
            return Err(Status::unauthenticated(format!(
                "the client certificate sha256:{} is not listed by any service account \
                 (AccessService.UpdateServiceAccount client_certificate_sha256)",
                c.sha256
            )));
        };
        if !r.active {
            return Err(Status::unauthenticated(format!(
                "the owner of the client certificate sha256:{} ({}) is deactivated",
                c.sha256, r.account
            )));
        }
        Ok(r.caller)
    }

    async fn resolve_certificate(
        &self,
        sha256: &str,
    ) -> Result<Option<ResolvedCertificate>, Status> {
        if let Ok(cache) = self.certificates.lock() {
            if let Some(c) = cache.get(sha256) {
                if c.at.elapsed() < KEY_CACHE_TTL {
                    return Ok(c.resolved.clone());
                }
            }
        }
        let account = self
            .store
            .service_account_by_certificate(sha256)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "client certificate lookup failed");
                Status::unavailable("cannot check credentials now; retry")
            })?;
        let resolved = match account {
            None => None,
            Some(a) => {
                let grants = Arc::new(self.grants(&a.roles).await?);
                let scopes = Arc::new(
                    self.scopes(PrincipalKind::ServiceAccount, a.id, &a.roles)
                        .await?,
                );
                Some(ResolvedCertificate {
                    account: a.name(),
                    active: a.active,
                    caller: Caller {
                        principal: Principal {
                            kind: PrincipalKind::ServiceAccount,
                            id: a.id,
                            key_id: None,
                            roles: a.roles.clone(),
                            teams: Vec::new(),
                        },
                        grants,
                        scopes,
                        certificate: Some(sha256.to_string()),
                    },
                })
            }
        };
        if let Ok(mut cache) = self.certificates.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, c| c.at.elapsed() < KEY_CACHE_TTL);
            }
            cache.insert(
                sha256.to_string(),
                CachedCertificate {
                    at: Instant::now(),
                    resolved: resolved.clone(),
                },
            );
        }
        Ok(resolved)
    }

    /// Key `key_id` with the caller it speaks for, through the cache; `None`: no such key.
    async fn resolve(&self, key_id: &str) -> Result<Option<ResolvedKey>, Status> {
        if let Ok(cache) = self.keys.lock() {
            if let Some(c) = cache.get(key_id) {
                if c.at.elapsed() < KEY_CACHE_TTL {
                    return Ok(c.resolved.clone());
                }
            }
        }
        let owner = self.store.key_owner(key_id).await.map_err(|e| {
            tracing::warn!(error = %e, "API key lookup failed");
            Status::unavailable("cannot check credentials now; retry")
        })?;
        let resolved = match owner {
            None => None,
            Some(owner) => {
                let roles = if owner.key.roles.is_empty() {
                    owner.owner_roles.clone()
                } else {
                    owner.key.roles.clone()
                };
                let grants = Arc::new(self.grants(&roles).await?);
                let scopes = Arc::new(
                    self.scopes(owner.key.parent_kind, owner.key.parent_id, &roles)
                        .await?,
                );
                let caller = Caller {
                    principal: Principal {
                        kind: owner.key.parent_kind,
                        id: owner.key.parent_id,
                        key_id: Some(owner.key.key_id.clone()),
                        roles,
                        teams: owner.teams.clone(),
                    },
                    grants,
                    scopes,
                    certificate: None,
                };
                Some(ResolvedKey { owner, caller })
            }
        };
        if let Ok(mut cache) = self.keys.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, c| c.at.elapsed() < KEY_CACHE_TTL);
            }
            cache.insert(
                key_id.to_string(),
                CachedKey {
                    at: Instant::now(),
                    resolved: resolved.clone(),
                },
            );
        }
        Ok(resolved)
    }

    /// The record scopes of a key's owner with `roles`: a user's reach (their own, their
    /// teams', their reports'); a service account owns nothing, so anything narrower than ALL
    /// reaches nothing.
    async fn scopes(
        &self,
        kind: PrincipalKind,
        id: i64,
        roles: &[String],
    ) -> Result<Scopes, Status> {
        let book = if roles.iter().any(|r| BuiltIn::parse(r).is_none()) {
            self.custom_roles().await?
        } else {
            Arc::new(RoleBook::new())
        };
        let customer_scope = permissions::scope_of(roles, Records::Customers, &book);
        let ticket_scope = permissions::scope_of(roles, Records::Tickets, &book);
        let narrowed = |s: Scope| {
            if s == Scope::All {
                RecordScope::All
            } else {
                RecordScope::nothing()
            }
        };
        let (customers, tickets) = match kind {
            PrincipalKind::User => self
                .store
                .user_scopes(id, customer_scope, ticket_scope)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "record scope lookup failed");
                    Status::unavailable("cannot check permissions now; retry")
                })?,
            _ => (narrowed(customer_scope), narrowed(ticket_scope)),
        };
        Ok(Scopes {
            customers,
            tickets,
            customer_scope,
            ticket_scope,
        })
    }

    /// The union of the permissions of `roles`; unknown role names grant nothing.
    pub async fn grants(&self, roles: &[String]) -> Result<Grants, Status> {
        let mut permissions = BTreeSet::new();
        let mut custom = Vec::new();
        for r in roles {
            match BuiltIn::parse(r) {
                Some(b) => permissions.extend(b.permissions().into_iter().map(str::to_string)),
                None => custom.push(r),
            }
        }
        if !custom.is_empty() {
            let book = self.custom_roles().await?;
            for r in custom {
                if let Some(g) = book.get(r.as_str()) {
                    permissions.extend(g.permissions.iter().cloned());
                }
            }
        }
        Ok(Grants { permissions })
    }

    async fn custom_roles(&self) -> Result<Arc<RoleBook>, Status> {
        if let Ok(c) = self.custom_roles.lock() {
            if let Some((at, book)) = c.as_ref() {
                if at.elapsed() < KEY_CACHE_TTL {
                    return Ok(book.clone());
                }
            }
        }
        let roles = self.store.custom_roles().await.map_err(|e| {
            tracing::warn!(error = %e, "custom roles lookup failed");
            Status::unavailable("cannot check permissions now; retry")
        })?;
        let book: Arc<RoleBook> = Arc::new(
            roles
                .into_iter()
                .map(|r| {
                    let grant = permissions::CustomGrant {
                        permissions: r.permissions,
                        scopes: r.scopes,
                    };
                    (r.name, grant)
                })
                .collect(),
        );
        if let Ok(mut c) = self.custom_roles.lock() {
            *c = Some((Instant::now(), book.clone()));
        }
        Ok(book)
    }
}

/// The caller of a request (put there by the layer); the open caller when there is none
/// (a handler called without the layer, in unit tests).
pub fn caller_of<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::open)
}

/// A principal's kind as the name prefix of its resource.
pub fn parse_principal_name(name: &str) -> Option<(PrincipalKind, i64)> {
    if let Some(id) = name.strip_prefix("users/") {
        return id.parse().ok().map(|i| (PrincipalKind::User, i));
    }
    if let Some(id) = name.strip_prefix("serviceAccounts/") {
        return id.parse().ok().map(|i| (PrincipalKind::ServiceAccount, i));
    }
    None
}
