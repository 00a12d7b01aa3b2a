//! The webhook sink: POSTs each message as JSON to a URL with an `Idempotency-Key` header (the
//! message's idempotency key, so a receiver can drop a retry it already handled). 2xx is
//! delivered; 5xx, 408, 429, a timeout or a connection error is retried; any other status is
//! refused for good.

use std::time::Duration;

use bakkal_store::OutboxMessage;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{payload, Attempt};

/// Calls in flight at once per batch.
const CONCURRENCY: usize = 16;
/// Response bytes kept in an error message.
const ERROR_BODY: usize = 200;

pub struct WebhookSink {
    url: String,
    uri: http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl WebhookSink {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad webhook URL '{url}': {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            anyhow::bail!("webhook URL '{url}' must be http://host[:port]/path");
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            url: url.to_string(),
            uri,
            client,
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn deliver(&self, messages: &[OutboxMessage]) -> Vec<Attempt> {
        let calls: Vec<_> = messages.iter().map(|m| self.post(m)).collect();
        futures::stream::iter(calls)
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    async fn post(&self, m: &OutboxMessage) -> Attempt {
        let body = Bytes::from(payload(m).to_string());
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", m.idempotency_key.as_str())
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            // an idempotency key that is not a valid header value
            Err(e) => return Attempt::Reject(format!("cannot build the request: {e}")),
        };
        let call = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Attempt::Retry(format!("{}: no answer within {:?}", self.url, self.timeout)),
            Ok(Err(e)) => Attempt::Retry(format!("{}: {}", self.url, error_chain(e.as_ref()))),
            Ok(Ok((status, body))) => classify(status, &body),
        }
    }
}

/// 2xx delivered; 5xx, 408 and 429 retried; other statuses refused.
pub fn classify(status: http::StatusCode, body: &[u8]) -> Attempt {
    if status.is_success() {
        return Attempt::Delivered;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY)]);
    let error = format!("HTTP {status}: {}", text.trim());
    if status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry(error)
    } else {
        Attempt::Reject(error)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_delivered_retried_and_refused() {
        let c = |n: u16| classify(http::StatusCode::from_u16(n).unwrap(), b"x");
        assert_eq!(c(200), Attempt::Delivered);
        assert_eq!(c(204), Attempt::Delivered);
        for n in [500, 502, 503, 408, 429] {
            assert!(matches!(c(n), Attempt::Retry(_)), "{n}");
        }
        for n in [400, 401, 404, 410, 422] {
            assert!(matches!(c(n), Attempt::Reject(_)), "{n}");
        }
    }
}
