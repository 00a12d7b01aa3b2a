//! The NATS JetStream sink: publishes each message to `{prefix}.{channel}` with the
//! `Nats-Msg-Id` header set to its idempotency key, so JetStream drops a retried publish
//! within the stream's duplicate window, and waits for the stream's ack. Optionally creates the
//! stream (`{prefix}.>`) when it is missing: file storage, a duplicate window as long as
//! bakkal may take to publish a message again.
//!
//! "Acknowledged once, in the stream once" rests on the stream (README, "Faults"): file
//! storage (a memory stream loses what it acknowledged when NATS restarts), acks on (`no_ack`
//! off), and a duplicate window longer than the longest time between two publishes of one
//! message (a dispatcher that died before recording an ack is retried when its lease runs out;
//! a lost ack after the backoff). [`NatsSink::check_streams`] checks that at start and warns.

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
    /// The duplicate window the stream needs (`dispatcher::redelivery_horizon`).
    window: Duration,
}

impl NatsSink {
    /// Connects in the background (the server starts while NATS is down; publishes are retried).
    pub async fn connect(
        url: &str,
        prefix: &str,
        stream: Option<String>,
        timeout: Duration,
        window: Duration,
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
            window,
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
                        storage: jetstream::stream::StorageType::File,
                        duplicate_window: self.window,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("NATS stream {name}: {e}"))
            })
            .await
            .map(|_| ())
    }

    /// Check the streams that capture `channels`' subjects (creating the configured one
    /// first): a warning per shortfall (see [`durability_problems`]), or an error when NATS or
    /// the stream cannot be reached.
    pub async fn check_streams(&self, channels: &[&str]) -> Result<Vec<String>, String> {
        self.ensure_stream().await?;
        let mut seen = Vec::new();
        let mut problems = Vec::new();
        for channel in channels {
            let subject = self.subject(channel);
            let name = match self.js.stream_by_subject(subject.clone()).await {
                Ok(name) => name,
                Err(e) => {
                    problems.push(format!(
                        "no JetStream stream captures {subject} ({e}): its messages are \
                         retried until one does (or pass --nats-stream)"
                    ));
                    continue;
                }
            };
            if seen.contains(&name) {
                continue;
            }
            let info = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| format!("NATS stream {name}: {e}"))?
                .get_info()
                .await
                .map_err(|e| format!("NATS stream {name}: {e}"))?;
            problems.extend(
                durability_problems(&info.config, self.window)
                    .into_iter()
                    .map(|p| format!("NATS stream {name}: {p}")),
            );
            seen.push(name);
        }
        Ok(problems)
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

/// Where a stream's configuration falls short of "a message NATS acknowledged is stored once
/// and kept", given the duplicate window bakkal needs.
pub fn durability_problems(config: &jetstream::stream::Config, window: Duration) -> Vec<String> {
    let mut out = Vec::new();
    if config.storage == jetstream::stream::StorageType::Memory {
        out.push(
            "memory storage: the messages NATS acknowledged are lost when it restarts; use \
             file storage"
                .to_string(),
        );
    }
    if config.no_ack {
        out.push(
            "no_ack is set: publishes are not acknowledged, so bakkal cannot tell a stored \
             message from a lost one and retries every one"
                .to_string(),
        );
    }
    if config.duplicate_window < window {
        out.push(format!(
            "duplicate window of {} s: a message bakkal publishes again later than that (after \
             a lost ack, or a server that died before recording it) is stored twice; set it \
             to at least {} s",
            config.duplicate_window.as_secs(),
            window.as_secs()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::stream::{Config, StorageType};

    #[test]
    fn durable_streams_pass_and_others_are_named() {
        let window = Duration::from_secs(300);
        let good = Config {
            storage: StorageType::File,
            duplicate_window: window,
            ..Default::default()
        };
        assert!(durability_problems(&good, window).is_empty());
        let bad = Config {
            storage: StorageType::Memory,
            duplicate_window: Duration::from_secs(120),
            no_ack: true,
            ..Default::default()
        };
        let problems = durability_problems(&bad, window);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("memory"));
        assert!(problems[1].contains("no_ack"));
        assert!(problems[2].contains("at least 300 s"));
    }
}
