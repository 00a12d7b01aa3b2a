//! Request tracing: every call gets a request id (the caller's `x-request-id`, or a new UUID),
//! echoed back in the response headers, and a span carrying it with the method; the outcome is
//! logged with the gRPC status and latency.
//!
//! A caller's request id is kept only when it is at most [`MAX_REQUEST_ID`] bytes of letters,
//! digits and `-_.:`; any other is replaced by a new UUID, so it cannot swell every response
//! and log line. A request tonic cannot decode is answered INVALID_ARGUMENT (or
//! RESOURCE_EXHAUSTED past the size limit) and logged, by [`decode_errors`].

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response};
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::classify::{GrpcErrorsAsFailures, GrpcFailureClass, SharedClassifier};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

pub type GrpcTraceLayer = TraceLayer<
    SharedClassifier<GrpcErrorsAsFailures>,
    fn(&Request<tonic::body::Body>) -> Span,
    (),
    fn(&Response<tonic::body::Body>, Duration, &Span),
    (),
    fn(Option<&HeaderMap>, Duration, &Span),
    fn(GrpcFailureClass, Duration, &Span),
>;

fn make_span(req: &Request<tonic::body::Body>) -> Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("rpc", request_id = %id, method = %req.uri().path())
}

fn on_response(res: &Response<tonic::body::Body>, latency: Duration, _: &Span) {
    // A trailers-only response (an error, usually) carries its status in the headers; the
    // others report it at end of stream.
    if let Some(code) = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
    {
        tracing::info!(
            grpc_status = code,
            latency_us = latency.as_micros() as u64,
            "finished"
        );
    }
}

fn on_eos(trailers: Option<&HeaderMap>, duration: Duration, _: &Span) {
    let code = trailers
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    tracing::info!(
        grpc_status = code,
        latency_us = duration.as_micros() as u64,
        "finished"
    );
}

fn on_failure(class: GrpcFailureClass, latency: Duration, _: &Span) {
    tracing::debug!(failure = %class, latency_us = latency.as_micros() as u64, "failed");
}

pub fn trace_layer() -> GrpcTraceLayer {
    TraceLayer::new_for_grpc()
        .make_span_with(make_span as fn(&Request<tonic::body::Body>) -> Span)
        .on_request(())
        .on_response(on_response as fn(&Response<tonic::body::Body>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(on_eos as fn(Option<&HeaderMap>, Duration, &Span))
        .on_failure(on_failure as fn(GrpcFailureClass, Duration, &Span))
}

/// The longest caller request id kept, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

fn screen_request_id<B>(mut req: Request<B>) -> Request<B> {
    let bad = req
        .headers()
        .get_all("x-request-id")
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !acceptable_request_id(v));
    if bad {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Drops a caller's `x-request-id` that is too long or holds odd bytes (or comes twice), so
/// that [`set_request_id`] gives the call a new one. Goes before it.
pub fn screen_request_id_layer(
) -> MapRequestLayer<fn(Request<tonic::body::Body>) -> Request<tonic::body::Body>> {
    MapRequestLayer::new(screen_request_id as fn(_) -> _)
}

fn map_decode_error<B>(mut res: Response<B>) -> Response<B> {
    // A request that does not decode is answered trailers-only: the status is in the headers.
    let Some(status) = tonic::Status::from_header_map(res.headers()) else {
        return res;
    };
    if let Some(mapped) = crate::status::from_decode(&status) {
        let headers = res.headers_mut();
        for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            headers.remove(h);
        }
        if mapped.add_header(headers).is_err() {
            tracing::warn!("could not write the mapped decode status");
        }
    }
    res
}

/// Turns tonic's status for an undecodable request (INTERNAL, OUT_OF_RANGE) into the
/// caller's fault (INVALID_ARGUMENT, RESOURCE_EXHAUSTED), logged; see `status::from_decode`.
pub fn decode_errors(
) -> MapResponseLayer<fn(Response<tonic::body::Body>) -> Response<tonic::body::Body>> {
    MapResponseLayer::new(map_decode_error as fn(_) -> _)
}

pub fn set_request_id() -> SetRequestIdLayer<MakeRequestUuid> {
    SetRequestIdLayer::x_request_id(MakeRequestUuid)
}

pub fn propagate_request_id() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::x_request_id()
}
