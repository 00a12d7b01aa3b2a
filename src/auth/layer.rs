//! The tower layer that authenticates and authorizes every call before its body is decoded:
//! health is open; reflection needs any valid credential (when authentication is on); every
//! other path must be in the permission table and its permission granted to the caller.
//! A caller is a bearer API key when one is sent, else (mTLS) the service account listing the
//! connection's client certificate.
//! Order: authenticate (UNAUTHENTICATED), authorize the method (PERMISSION_DENIED), then the
//! handler validates and authorizes the record.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::{permissions, Authenticator};
use crate::connections::PeerInfo;

const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

/// What the layer decides for a path and caller.
async fn decide(auth: &Authenticator, req: &mut Request<Body>) -> Result<(), Status> {
    let path = req.uri().path().to_string();
    if path.starts_with(HEALTH) {
        return Ok(());
    }
    // over mTLS, the client certificate the handshake verified (connections.rs)
    let certificate = req
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.client_certificate.clone());
    let caller = auth
        .authenticate(req.headers(), certificate.as_ref())
        .await?;
    // the audit trail's call (AuditLayer) learns who it is
    if let Some(call) = bakkal_store::audit::current() {
        call.set_principal(caller.principal.name(), caller.principal.key_id.clone());
    }
    if REFLECTION.iter().any(|p| path.starts_with(p)) {
        req.extensions_mut().insert(caller);
        return Ok(());
    }
    let Some(rpc) = permissions::lookup(&path) else {
        return Err(Status::permission_denied(format!(
            "{} is not in the permission table; denied",
            crate::status::quote(&path)
        )));
    };
    if !caller.grants.allows(rpc.permission) {
        let who = caller.principal.name();
        tracing::info!(principal = %who, permission = rpc.permission, "permission denied");
        return Err(Status::permission_denied(format!(
            "{who} lacks the permission {} (roles: {})",
            rpc.permission,
            if caller.principal.roles.is_empty() {
                "none".to_string()
            } else {
                caller.principal.roles.join(", ")
            }
        )));
    }
    if let Some(records) = permissions::aggregate_over(rpc.method) {
        caller.require_all(records, rpc.method)?;
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // the clone is not ready; keep the one that is (tower's usual swap)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match decide(&auth, &mut req).await {
                Ok(()) => inner.call(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
