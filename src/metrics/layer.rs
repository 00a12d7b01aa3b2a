//! The tower layer counting every RPC: in flight from the moment it arrives until its response
//! body ends (a streaming call stays in flight while it streams), then counted by method and
//! gRPC code with its latency. A call the client abandons counts as CANCELLED. A call is
//! counted before its status leaves the server, so a caller that has its answer finds it
//! counted.
//!
//! It sits outside authentication, so refused calls are counted too, and outside the decode
//! error map, so it counts the code the caller got. Method labels come only from the served
//! RPCs (the permission table, health, reflection); any other path is `unknown`, so callers
//! cannot grow the registry with made-up paths.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

use super::{names, Metrics};

const OTHER_METHODS: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The label of a request path: a served method, or `unknown`.
fn method_label(path: &str) -> &'static str {
    if let Some(rpc) = crate::auth::permissions::lookup(path) {
        return rpc.method;
    }
    let method = path.strip_prefix('/').unwrap_or(path);
    OTHER_METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("unknown")
}

fn status_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One call, from arrival to the end of its response: counted when dropped.
struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
    /// The call's status once known; a call dropped without one was abandoned.
    code: Option<Code>,
}

impl Call {
    fn start(metrics: Arc<Metrics>, method: &'static str) -> Call {
        metrics
            .gauge(names::RPC_IN_FLIGHT, &[("method", method)])
            .increment(1.0);
        Call {
            metrics,
            method,
            start: Instant::now(),
            code: None,
        }
    }

    /// The call's status, when known.
    fn end(&mut self, code: Option<Code>) {
        if code.is_some() {
            self.code = code;
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let m = &self.metrics;
        let method = self.method;
        let code = crate::status::code_name(self.code.unwrap_or(Code::Cancelled));
        m.gauge(names::RPC_IN_FLIGHT, &[("method", method)])
            .decrement(1.0);
        m.counter(names::RPC_REQUESTS, &[("method", method), ("code", code)])
            .increment(1);
        m.histogram(names::RPC_DURATION, &[("method", method)])
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// A response body that ends the [`Call`] when it ends (or is dropped), taking the status
/// from its trailers.
struct MeteredBody {
    inner: Body,
    call: Option<Call>,
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    // counted before the trailers leave, so a caller that has its answer sees
                    // it counted
                    if let Some(mut call) = self.call.take() {
                        call.end(Some(code));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.as_mut() {
                    call.code.get_or_insert(Code::Unknown);
                }
                self.call = None;
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.as_mut() {
                    // a body that ended without a status: the client saw none
                    call.code.get_or_insert(Code::Unknown);
                }
                self.call = None;
            }
            Poll::Pending => {}
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

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut call = Call::start(self.metrics.clone(), method_label(req.uri().path()));
        Box::pin(async move {
            let result = inner.call(req).await;
            let res = match result {
                Ok(res) => res,
                Err(e) => {
                    call.end(Some(Code::Unknown));
                    return Err(e);
                }
            };
            // a trailers-only response (an error, mostly) carries its status in the headers
            call.end(status_in(res.headers()));
            if call.code.is_some() && res.body().is_end_stream() {
                drop(call);
                return Ok(res);
            }
            let (parts, body) = res.into_parts();
            let body = MeteredBody {
                inner: body,
                call: Some(call),
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labels() {
        assert_eq!(
            method_label("/bakkal.v1.CustomerService/CreateCustomer"),
            "bakkal.v1.CustomerService/CreateCustomer"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        for made_up in [
            "/bakkal.v1.CustomerService/Nope",
            "/x",
            "",
            "/grpc.health.v1.Health/",
        ] {
            assert_eq!(method_label(made_up), "unknown");
        }
    }

    #[test]
    fn codes_are_named_as_the_specification_does() {
        assert_eq!(crate::status::code_name(Code::Ok), "OK");
        assert_eq!(crate::status::code_name(Code::from_i32(5)), "NOT_FOUND");
        assert_eq!(
            crate::status::code_name(Code::Unauthenticated),
            "UNAUTHENTICATED"
        );
    }
}
