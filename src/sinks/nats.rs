//! The NATS JetStream sink: publishes each message to `{prefix}.{channel}` with the
//! `Nats-Msg-Id` header set to its idempotency key, so JetStream drops a retried publish
//! within the stream's duplicate window, and waits for the stream's ack. Optionally creates the
//! stream (`{prefix}.>`) when it is missing.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use bakkal_store::OutboxMessage;
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::{payload, Attempt};

pub struct NatsSink {
    js: jetstream::Context,
    prefix: String,
    stream: Option<String>,
    ensured: OnceCell<()>,
    timeout: Duration,
}

impl NatsSink {
    /// Connects in the background (the server starts while NATS is down; publishes are retried).
    pub async fn connect(
        url: &str,
        prefix: &str,
        stream: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))?;
        Ok(Self {
            js: jetstream::new(client),
            prefix: prefix.trim_end_matches('.').to_string(),
            stream,
            ensured: OnceCell::new(),
            timeout,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn subject(&self, channel: &str) -> String {
        format!("{}.{channel}", self.prefix)
    }

    /// Create the configured stream once, if missing.
    async fn ensure_stream(&self) -> Result<(), String> {
        let Some(name) = &self.stream else {
            return Ok(());
        };
        self.ensured
            .get_or_try_init(|| async {
                self.js
                    .get_or_create_stream(jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{}.>", self.prefix)],
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("NATS stream {name}: {e}"))
            })
            .await
            .map(|_| ())
    }

    pub async fn deliver(&self, messages: &[OutboxMessage]) -> Vec<Attempt> {
        if let Err(e) = self.ensure_stream().await {
            return vec![Attempt::Retry(e); messages.len()];
        }
        // Publish everything, then wait for the acks: one round trip per batch, not per message.
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let publish = PublishMessage::build()
                .payload(Bytes::from(payload(m).to_string()))
                .message_id(&m.idempotency_key);
            pending.push(
                self.js
                    .send_publish(self.subject(&m.channel), publish)
                    .await,
            );
        }
        let mut acks = Vec::with_capacity(pending.len());
        for p in pending {
            acks.push(self.await_ack(p));
        }
        futures::future::join_all(acks).await
    }

    async fn await_ack(
        &self,
        p: Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
    ) -> Attempt {
        {
            match p {
                Err(e) => Attempt::Retry(format!("NATS publish: {e}")),
                Ok(ack) => match tokio::time::timeout(self.timeout, ack).await {
                    Err(_) => Attempt::Retry(format!("NATS: no ack within {:?}", self.timeout)),
                    Ok(Err(e)) => Attempt::Retry(format!("NATS ack: {e}")),
                    Ok(Ok(_)) => Attempt::Delivered,
                },
            }
        }
    }
}
