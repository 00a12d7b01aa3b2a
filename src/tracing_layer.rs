//! Request tracing: every call gets a request id (the caller's `x-request-id`, or a new UUID),
//! echoed back in the response headers, and a span carrying it with the method; the outcome is
//! logged with the gRPC status and latency.

use std::time::Duration;

use http::{HeaderMap, Request, Response};
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

pub fn set_request_id() -> SetRequestIdLayer<MakeRequestUuid> {
    SetRequestIdLayer::x_request_id(MakeRequestUuid)
}

pub fn propagate_request_id() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::x_request_id()
}
