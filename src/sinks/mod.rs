//! Channel sinks: where the dispatcher hands claimed outbox messages. Each sink answers per
//! message whether it was delivered, should be retried (a passing fault: timeouts, refused
//! connections, 5xx, 408, 429, a missing JetStream ack) or was refused for good (other 4xx).
//! The dispatcher turns those answers into DELIVERED, FAILED with a backoff, or DEAD.

pub mod file;
pub mod nats;
pub mod webhook;

use bakkal_domain::name::customer_name;
use bakkal_domain::ticket::ticket_name;
use bakkal_store::{campaign_name, OutboxMessage};

/// What became of one message in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// A passing fault: try again later (until the attempts run out).
    Retry(String),
    /// Refused for good: dead-letter it now.
    Reject(String),
}

/// One configured sink.
pub enum Sink {
    File(file::FileSink),
    Webhook(webhook::WebhookSink),
    Nats(nats::NatsSink),
}

impl Sink {
    /// Deliver `messages`; one answer per message, in order.
    pub async fn deliver(&self, messages: &[OutboxMessage]) -> Vec<Attempt> {
        match self {
            Sink::File(s) => s.deliver(messages).await,
            Sink::Webhook(s) => s.deliver(messages).await,
            Sink::Nats(s) => s.deliver(messages).await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::File(s) => format!("file:{}", s.path().display()),
            Sink::Webhook(s) => format!("webhook:{}", s.url()),
            Sink::Nats(s) => format!("nats:{}", s.prefix()),
        }
    }
}

/// The JSON every sink writes for a message (a file line, a webhook body, a NATS payload).
///
/// A campaign message names its `campaign`; a service-desk message its `ticket`. A message to
/// the customer names the `customer`; a reminder to staff its `recipient` (an agent or team).
pub fn payload(m: &OutboxMessage) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": m.name(),
        "channel": m.channel,
        "subject": m.subject,
        "body": m.body,
        "idempotency_key": m.idempotency_key,
        "attempt": m.attempts,
    });
    if m.campaign_id != 0 {
        v["campaign"] = campaign_name(m.campaign_id).into();
    }
    if let Some(t) = m.ticket_id {
        v["ticket"] = ticket_name(t).into();
    }
    if m.customer_id != 0 {
        v["customer"] = customer_name(m.customer_id).into();
    }
    if !m.recipient.is_empty() {
        v["recipient"] = m.recipient.clone().into();
    }
    v
}
