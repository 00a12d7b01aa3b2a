//! Server settings, from flags or the environment.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bakkal_domain::time::{now_micros, Micros};

/// The SQLite file `bakkal serve` creates on first start when no database is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://bakkal.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: String,
    pub max_connections: u32,
    /// Customers kept in the SQLite read cache (0: none).
    pub customer_cache: usize,
    /// The outbox file sink; `None`: `bakkal-outbox.jsonl` next to a SQLite database, else in
    /// the working directory.
    pub outbox_file: Option<std::path::PathBuf>,
    /// Channel sinks and retries.
    pub delivery: DeliveryConfig,
    /// How often the campaign scheduler looks for work (`scheduler.rs`).
    pub scheduler_tick: std::time::Duration,
    /// How often the loyalty expiry sweep runs (`loyalty_sweeper.rs`); `None`: never.
    pub loyalty_sweep: Option<Duration>,
    /// The service desk's clock and SLA watcher.
    pub desk: DeskConfig,
    /// Whether calls need credentials (`auth/`).
    pub auth: crate::auth::AuthConfig,
    /// Client connections: how many, streams on each, handshake and idle timeouts.
    pub connections: crate::connections::ConnectionLimits,
    /// Request rates per principal and calls in flight (`limits/`).
    pub limits: crate::limits::LimitsConfig,
    /// How far ahead of the server's clock an order's placed time may be (a source system's
    /// clock running ahead).
    pub future_tolerance: Duration,
    /// The currency of an order that names none (`--default-currency`); `None`: required.
    pub default_currency: Option<String>,
    /// The Prometheus endpoint (`--metrics-listen`); off by default.
    pub metrics: crate::metrics::MetricsConfig,
    /// TLS and mTLS (`tls.rs`); `None`: plaintext.
    pub tls: Option<crate::tls::TlsConfig>,
    /// The backup directory, scheduled backups and how many are kept (`backup/`).
    pub backup: crate::backup::BackupConfig,
    /// Write the audit trail (`--no-audit-trail` turns it off, to measure what it costs).
    pub audit_trail: bool,
    /// "Now" for opportunities and their history (`sales/`): real time unless a test sets it.
    pub sales_clock: Clock,
}

impl Config {
    /// The defaults of `bakkal serve` for a listen address and a database; callers (tests,
    /// benchmarks) change what they need with struct update syntax.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Config {
        Config {
            listen,
            database_url: database_url.into(),
            max_connections: 16,
            customer_cache: 100_000,
            outbox_file: None,
            scheduler_tick: Duration::from_secs(1),
            loyalty_sweep: Some(Duration::from_secs(3600)),
            desk: DeskConfig::default(),
            delivery: DeliveryConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            connections: crate::connections::ConnectionLimits::default(),
            limits: crate::limits::LimitsConfig::default(),
            future_tolerance: Duration::from_secs(300),
            default_currency: None,
            metrics: crate::metrics::MetricsConfig::default(),
            tls: None,
            backup: crate::backup::BackupConfig::default(),
            audit_trail: true,
            sales_clock: Clock::default(),
        }
    }
}

/// Settings of the service desk.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// "Now" for tickets and their SLA clocks: real time unless a test sets it.
    pub clock: Clock,
    /// How often the SLA watcher looks for clocks that passed a mark.
    pub sla_watch_interval: Duration,
    /// A MESSAGE script (`scripts/{id}`) that writes the desk's automatic messages; `None`:
    /// built-in templates.
    pub message_script: Option<String>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            clock: Clock::default(),
            sla_watch_interval: Duration::from_secs(5),
            message_script: None,
        }
    }
}

/// The time the service desk works with. `Clock::default()` is the system clock; a manual
/// clock (tests, demos) stands still until set or advanced, and every clone shares it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn manual(start: Micros) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start))))
    }

    pub fn now(&self) -> Micros {
        match &self.0 {
            None => now_micros(),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Set a manual clock (no effect on the system clock).
    pub fn set(&self, to: Micros) {
        if let Some(t) = &self.0 {
            t.store(to, Ordering::SeqCst);
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
        }
    }
}

/// Where one channel's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// Append to the outbox file (the default for every channel).
    File,
    /// POST JSON to this `http://` URL.
    Webhook(String),
    /// Publish to NATS JetStream, subject `{prefix}.{channel}`.
    Nats,
}

impl SinkKind {
    /// `file`, `webhook:http://host/path` or `nats`.
    pub fn parse(s: &str) -> Result<SinkKind, String> {
        match s {
            "file" => Ok(SinkKind::File),
            "nats" => Ok(SinkKind::Nats),
            _ => match s.strip_prefix("webhook:") {
                Some(url) if url.starts_with("http://") => Ok(SinkKind::Webhook(url.to_string())),
                Some(url) => Err(format!(
                    "webhook URL '{url}' must start with http:// (TLS is not supported yet)"
                )),
                None => Err(format!(
                    "unknown sink '{s}'; use file, nats or webhook:http://host/path"
                )),
            },
        }
    }
}

/// The delivery channels a sink can be chosen for (`*`: every channel not named).
pub const SINK_CHANNELS: [&str; 5] = ["email", "sms", "push", "phone", "*"];

/// `CHANNEL=SINK`, e.g. `email=webhook:http://127.0.0.1:8080/hook`, `sms=nats`, `*=file`.
pub fn parse_sink_flag(s: &str) -> Result<(String, SinkKind), String> {
    let (channel, sink) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not CHANNEL=SINK (e.g. email=nats)"))?;
    let channel = channel.trim().to_ascii_lowercase();
    if !SINK_CHANNELS.contains(&channel.as_str()) {
        return Err(format!(
            "unknown channel '{channel}'; use one of {}",
            SINK_CHANNELS.join(", ")
        ));
    }
    Ok((channel, SinkKind::parse(sink.trim())?))
}

/// A Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64 random bytes. Its
/// `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "whsec_… ({} bytes)", self.key.len())
    }
}

impl WebhookSecret {
    /// `whsec_<base64>`.
    pub fn parse(s: &str) -> Result<WebhookSecret, String> {
        use base64::Engine as _;
        let Some(b64) = s.trim().strip_prefix("whsec_") else {
            return Err("a webhook secret reads whsec_<base64>".into());
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the part after whsec_ is not base64".to_string())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "a webhook secret holds 24 to 64 bytes, this one {}",
                key.len()
            ));
        }
        Ok(WebhookSecret { key })
    }

    /// The HMAC key (the decoded bytes).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// `CHANNEL=whsec_…`: the secret that signs the webhook deliveries of a channel (`*`: every
/// webhook channel without its own). Repeated for one channel during a rotation: each signs.
pub fn parse_webhook_secret_flag(s: &str) -> Result<(String, WebhookSecret), String> {
    let (channel, secret) = s
        .split_once('=')
        .ok_or_else(|| "not CHANNEL=whsec_… (e.g. email=whsec_…)".to_string())?;
    let channel = channel.trim().to_ascii_lowercase();
    if !SINK_CHANNELS.contains(&channel.as_str()) {
        return Err(format!(
            "unknown channel '{channel}'; use one of {}",
            SINK_CHANNELS.join(", ")
        ));
    }
    Ok((channel, WebhookSecret::parse(secret)?))
}

/// How the outbox is delivered: a sink per channel, retries and the NATS connection.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `(channel or "*", sink)`; a channel not named (and no `*`) goes to the file sink.
    pub sinks: Vec<(String, SinkKind)>,
    /// Attempts before a message that keeps failing is dead-lettered (DEAD).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt up to `backoff_max`, each with
    /// up to half of it taken off at random (jitter).
    pub backoff_base: std::time::Duration,
    pub backoff_max: std::time::Duration,
    /// A webhook call or JetStream ack that has not come by then is retried.
    pub send_timeout: std::time::Duration,
    pub nats_url: String,
    /// Subjects are `{prefix}.{channel}`.
    pub nats_subject_prefix: String,
    /// When set, a JetStream stream of this name over `{prefix}.>` is created if missing.
    pub nats_stream: Option<String>,
    /// How often an idle dispatcher looks for due messages.
    pub poll_interval: std::time::Duration,
    /// `(channel or "*", secret)`: Standard Webhooks signing secrets of webhook sinks.
    pub webhook_secrets: Vec<(String, WebhookSecret)>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            max_attempts: 8,
            backoff_base: std::time::Duration::from_secs(1),
            backoff_max: std::time::Duration::from_secs(600),
            send_timeout: std::time::Duration::from_secs(10),
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_subject_prefix: "bakkal.messages".into(),
            nats_stream: None,
            poll_interval: std::time::Duration::from_millis(200),
            webhook_secrets: Vec::new(),
        }
    }
}

impl DeliveryConfig {
    /// The sink for `channel`: its own, else `*`'s, else the file.
    pub fn sink_for(&self, channel: &str) -> &SinkKind {
        let find = |c: &str| self.sinks.iter().rev().find(|(ch, _)| ch == c);
        find(channel)
            .or_else(|| find("*"))
            .map(|(_, k)| k)
            .unwrap_or(&SinkKind::File)
    }

    /// The secrets that sign `channel`'s webhook deliveries: its own, else `*`'s (none:
    /// unsigned).
    pub fn webhook_secrets_for(&self, channel: &str) -> Vec<WebhookSecret> {
        let of = |c: &str| -> Vec<WebhookSecret> {
            self.webhook_secrets
                .iter()
                .filter(|(ch, _)| ch == c)
                .map(|(_, s)| s.clone())
                .collect()
        };
        let own = of(channel);
        if own.is_empty() {
            of("*")
        } else {
            own
        }
    }
}
