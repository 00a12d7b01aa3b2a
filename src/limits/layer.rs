//! The limits layer. It sits inside `AuthLayer`, so every call reaching it carries its
//! [`Caller`]; health calls pass untouched. A call takes a token from its principal's bucket
//! (RESOURCE_EXHAUSTED when there is none), then a slot of the in-flight limit (UNAVAILABLE
//! when there is none), held until the response body has been sent or dropped: a server
//! stream holds it while it streams, a client stream while the handler reads it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::rate::RateLimiter;
use super::LimitsConfig;
use crate::auth::Caller;

const HEALTH: &str = "/grpc.health.v1.Health/";

/// What an overloaded server tells a caller to wait before retrying.
pub const OVERLOAD_RETRY: Duration = Duration::from_secs(1);

/// The limits of one server.
pub struct Limits {
    rates: RateLimiter,
    in_flight: Option<(usize, Arc<Semaphore>)>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            rates: RateLimiter::new(&config.rates),
            in_flight: config
                .max_in_flight
                .filter(|n| *n > 0)
                .map(|n| (n, Arc::new(Semaphore::new(n)))),
        }
    }

    /// Whether a call of `caller` may start now: the in-flight slot it holds, if counted.
    fn admit(&self, caller: Option<&Caller>) -> Result<Option<OwnedSemaphorePermit>, Status> {
        if let Some(c) = caller {
            if let Some(rate) = self.rates.rate_for(&c.principal.roles) {
                let who = c.principal.name();
                if let Err(wait) = self.rates.take(&who, rate) {
                    tracing::info!(principal = %who, "rate limited");
                    return Err(crate::status::rate_limited(&who, rate.per_second, wait));
                }
            }
        }
        match &self.in_flight {
            None => Ok(None),
            Some((max, slots)) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Ok(Some(permit)),
                Err(_) => {
                    tracing::warn!(max_in_flight = max, "overloaded: call refused");
                    Err(crate::status::overloaded(*max, OVERLOAD_RETRY))
                }
            },
        }
    }
}

#[derive(Clone)]
pub struct LimitLayer {
    limits: Arc<Limits>,
}

impl LimitLayer {
    pub fn new(limits: Arc<Limits>) -> LimitLayer {
        LimitLayer { limits }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = LimitService<S>;

    fn layer(&self, inner: S) -> LimitService<S> {
        LimitService {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LimitService<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> Service<Request<Body>> for LimitService<S>
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
        // the clone is not ready; keep the one that is (tower's usual swap)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path().starts_with(HEALTH) {
            return Box::pin(inner.call(req));
        }
        let admitted = self.limits.admit(req.extensions().get::<Caller>());
        Box::pin(async move {
            match admitted {
                Err(status) => Ok(status.into_http()),
                Ok(None) => inner.call(req).await,
                Ok(Some(permit)) => {
                    // held while the handler runs (a client stream's whole life)…
                    let response = inner.call(req).await?;
                    // …and while the response body streams
                    Ok(response.map(|body| {
                        Body::new(Counted {
                            inner: body,
                            permit: Some(permit),
                        })
                    }))
                }
            }
        })
    }
}

/// A response body holding an in-flight slot until it ends (its last frame, the gRPC
/// trailers, or the end of the stream) or is dropped (the client went away).
struct Counted {
    inner: Body,
    permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers(),
            Poll::Pending => false,
        };
        if ended {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
