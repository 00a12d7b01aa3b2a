//! The audit trail in the transport: [`AuditLayer`] wraps every call (outside the
//! `AuthLayer`) in a [`Call`] the store's write transactions attribute their events to, and
//! writes the events no transaction does: denied calls, failed writes and exports, and a
//! write RPC that committed nothing. [`service`] is `bakkal.v1.AuditService`.

pub mod service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::connections::PeerInfo;
use bakkal_domain::access;
use bakkal_domain::audit::{Actor, AuditAction, AuditResult, NewAuditEvent};
use bakkal_store::audit::{self, Call};
use bakkal_store::Store;
use http::{Request, Response};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

use crate::auth::permissions::{self, Effect};

const HEALTH: &str = "/grpc.health.v1.Health/";

/// The principal of a call without a valid credential.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Clone)]
pub struct AuditLayer {
    store: Store,
}

impl AuditLayer {
    pub fn new(store: Store) -> AuditLayer {
        AuditLayer { store }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> AuditService<S> {
        AuditService {
            inner,
            store: self.store.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    store: Store,
}

/// The public id of the API key a request presents, if it is shaped like one (never the
/// secret; the key may still be unknown or forged).
fn presented_key_id(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let text = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?
        .trim();
    access::parse_key(text).ok().map(|k| k.key_id)
}

/// Who is calling, before authentication: anonymous, with the request's id, peer and method.
fn actor_of(req: &Request<Body>) -> Actor {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let peer = req
        .extensions()
        .get::<PeerInfo>()
        .and_then(|i| i.remote_addr)
        .map(|a| a.to_string())
        .unwrap_or_default();
    Actor {
        principal: ANONYMOUS.into(),
        key_id: presented_key_id(req.headers()),
        request_id,
        peer,
        method: req.uri().path().trim_start_matches('/').to_string(),
    }
}

/// The status of a response whose headers carry one (an error, usually); `None`: the
/// status comes in the trailers (a unary success, a stream).
fn header_code(res: &Response<Body>) -> Option<Code> {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// The event the layer writes for a call that ended with `code`, if it writes one.
fn event_after(call: &Call, effect: Option<Effect>, code: Code) -> Option<NewAuditEvent> {
    let actor = call.actor();
    let (result, action) = match code {
        Code::Unauthenticated | Code::PermissionDenied => (AuditResult::Denied, AuditAction::Call),
        Code::Ok => match effect {
            // a write's events are in its transactions; one that committed none still has one
            Some(Effect::Write) if call.appended() == 0 => {
                (AuditResult::Ok, AuditAction::of_method(&actor.method))
            }
            Some(Effect::Export) => (AuditResult::Ok, AuditAction::Export),
            _ => return None,
        },
        _ => match effect {
            Some(Effect::Write) | Some(Effect::Export) => {
                (AuditResult::Failed, AuditAction::of_method(&actor.method))
            }
            _ => return None,
        },
    };
    Some(NewAuditEvent {
        time: bakkal_domain::time::now_micros(),
        actor,
        resource: call.resource(),
        action,
        result,
        code: crate::status::code_name(code).into(),
        changes: Vec::new(),
    })
}

impl<S> Service<Request<Body>> for AuditService<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path().starts_with(HEALTH) {
            return Box::pin(inner.call(req));
        }
        let store = self.store.clone();
        let effect = permissions::lookup(req.uri().path()).map(|r| r.effect);
        let call = Call::new(actor_of(&req), effect == Some(Effect::Write));
        Box::pin(async move {
            let res = audit::scope(Arc::clone(&call), inner.call(req)).await;
            if let Ok(response) = &res {
                let code = header_code(response).unwrap_or(Code::Ok);
                if let Some(event) = event_after(&call, effect, code) {
                    let write = async move {
                        if let Err(e) = audit::scope(call, store.record_audit(event)).await {
                            tracing::error!(error = %e, "cannot write the audit event of a call");
                        }
                    };
                    if code == Code::Unavailable {
                        // the database may be what is unavailable: the event waits for it (the
                        // pool's wait) in the background, not the caller a second time
                        tokio::spawn(write);
                    } else {
                        write.await;
                    }
                }
            }
            res
        })
    }
}
