//! The webhook sink: POSTs each message as JSON to a URL with an `Idempotency-Key` header (the
//! message's idempotency key, so a receiver can drop a retry it already handled). 2xx is
//! delivered; 5xx, 408, 429, a timeout or a connection error is retried; any other status is
//! refused for good.
//!
//! With secrets (`--webhook-secret`), each delivery is signed as Standard Webhooks specify:
//! `webhook-id` (the idempotency key), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature`, `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for each
//! secret, space-separated (two during a rotation), keyed with the secret's decoded bytes.

use std::time::Duration;

use bakkal_store::OutboxMessage;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{payload, Attempt};
use crate::config::WebhookSecret;

/// Calls in flight at once per batch.
const CONCURRENCY: usize = 16;
/// Response bytes kept in an error message.
const ERROR_BODY: usize = 200;

pub struct WebhookSink {
    url: String,
    uri: http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    secrets: Vec<WebhookSecret>,
}

impl WebhookSink {
    pub fn new(url: &str, timeout: Duration, secrets: Vec<WebhookSecret>) -> anyhow::Result<Self> {
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
            secrets,
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
        let mut request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", m.idempotency_key.as_str());
        if !self.secrets.is_empty() {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let signature = signature(&self.secrets, &m.idempotency_key, timestamp, &body);
            request = request
                .header("webhook-id", m.idempotency_key.as_str())
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
        }
        let request = request.body(Full::new(body));
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

/// The `webhook-signature` value: `v1,<base64>` per secret, space-separated.
pub fn signature(secrets: &[WebhookSecret], id: &str, timestamp: u64, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut out = Vec::with_capacity(secrets.len());
    for secret in secrets {
        // HMAC takes a key of any length
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.key()) else {
            continue;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        out.push(format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        ));
    }
    out.join(" ")
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
    fn signature_matches_the_standard_webhooks_example() {
        // the example of the Standard Webhooks specification
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

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
