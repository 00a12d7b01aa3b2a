//! The outbox dispatcher: a background task that claims due messages in batches under a lease,
//! hands each to its channel's sink (file by default; webhook or NATS JetStream as
//! configured, see `config::DeliveryConfig`) and records every outcome in one transaction:
//! DELIVERED; FAILED with `next_attempt_time` (exponential backoff with jitter) after a
//! passing fault; DEAD (the dead letter, with `last_error`) when refused for good or out of
//! attempts. A message claimed by a server that died is claimed again when its lease runs out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bakkal_domain::time::now_micros;
use bakkal_store::{DeliveryOutcome, OutboxMessage, Store};
use rand::Rng as _;
use tokio::sync::watch;

use crate::config::{DeliveryConfig, SinkKind, WebhookSecret};
use crate::sinks::{file::FileSink, nats::NatsSink, webhook::WebhookSink, Attempt, Sink};

const BATCH: usize = 200;
const LEASE_MICROS: i64 = 60_000_000;

/// The longest a message's publishes may lie apart: a claim whose server died before
/// recording the outcome is claimed again when its lease runs out, and each failed attempt
/// (an ack that did not come in `send_timeout`) waits its full backoff before the next. A
/// NATS stream's duplicate window must be at least this long for a message JetStream
/// acknowledged to be stored once (`sinks::nats::durability_problems`).
pub fn redelivery_horizon(config: &DeliveryConfig) -> Duration {
    let retries: Duration = (1..i64::from(config.max_attempts))
        .map(|a| {
            let exp = a.clamp(1, 32) as u32 - 1;
            let backoff = config
                .backoff_base
                .saturating_mul(2u32.saturating_pow(exp))
                .min(config.backoff_max);
            config.send_timeout.saturating_add(backoff)
        })
        .fold(Duration::ZERO, Duration::saturating_add);
    let total = Duration::from_micros(LEASE_MICROS as u64)
        .saturating_add(config.send_timeout)
        .saturating_add(retries);
    // whole seconds, rounded up
    Duration::from_secs(total.as_secs() + u64::from(total.subsec_nanos() > 0))
}

/// Check, in the background, that the NATS streams of `channels` keep what they acknowledge
/// once (file storage, acks, a duplicate window of [`redelivery_horizon`]); warn for each
/// shortfall. NATS may be down at start: tried every 5 s for a minute.
async fn check_nats_durability(sink: Arc<Sink>, channels: Vec<&'static str>) {
    let Sink::Nats(nats) = &*sink else {
        return;
    };
    for _ in 0..12 {
        match nats.check_streams(&channels).await {
            Ok(problems) if problems.is_empty() => {
                tracing::info!(channels = ?channels, "NATS JetStream streams checked: durable");
                return;
            }
            Ok(problems) => {
                for problem in problems {
                    tracing::warn!(%problem, "NATS JetStream may lose or repeat messages");
                }
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "NATS JetStream streams not checked yet");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    tracing::warn!("NATS JetStream streams could not be checked for durability in a minute");
}

/// The sinks in use and which channel goes to which.
pub struct Sinks {
    /// A sink per kind and, for webhooks, the secrets that sign its deliveries.
    kinds: Vec<(SinkKind, Vec<WebhookSecret>, Arc<Sink>)>,
    config: DeliveryConfig,
}

impl Sinks {
    /// Build the sinks the configuration names (the file sink always: it is the default).
    pub async fn build(config: &DeliveryConfig, outbox_file: PathBuf) -> anyhow::Result<Sinks> {
        let mut kinds: Vec<(SinkKind, Vec<WebhookSecret>, Arc<Sink>)> = vec![(
            SinkKind::File,
            Vec::new(),
            Arc::new(Sink::File(FileSink::new(outbox_file))),
        )];
        for (channel, kind) in &config.sinks {
            let secrets = match kind {
                SinkKind::Webhook(_) => config.webhook_secrets_for(channel),
                _ => Vec::new(),
            };
            if kinds.iter().any(|(k, s, _)| k == kind && *s == secrets) {
                continue;
            }
            let sink = match kind {
                SinkKind::File => continue,
                SinkKind::Webhook(url) => {
                    if secrets.is_empty() {
                        tracing::warn!(
                            %channel,
                            %url,
                            "webhook deliveries are not signed (pass --webhook-secret)"
                        );
                    }
                    Sink::Webhook(WebhookSink::new(url, config.send_timeout, secrets.clone())?)
                }
                SinkKind::Nats => Sink::Nats(
                    NatsSink::connect(
                        &config.nats_url,
                        &config.nats_subject_prefix,
                        config.nats_stream.clone(),
                        config.send_timeout,
                        redelivery_horizon(config),
                    )
                    .await?,
                ),
            };
            let sink = Arc::new(sink);
            if *kind == SinkKind::Nats {
                let channels: Vec<&'static str> = crate::config::SINK_CHANNELS
                    .iter()
                    .copied()
                    .filter(|c| *c != "*" && *config.sink_for(c) == SinkKind::Nats)
                    .collect();
                tokio::spawn(check_nats_durability(sink.clone(), channels));
            }
            kinds.push((kind.clone(), secrets, sink));
        }
        Ok(Sinks {
            kinds,
            config: config.clone(),
        })
    }

    fn index_for(&self, channel: &str) -> usize {
        let kind = self.config.sink_for(channel);
        let secrets = match kind {
            SinkKind::Webhook(_) => self.config.webhook_secrets_for(channel),
            _ => Vec::new(),
        };
        self.kinds
            .iter()
            .position(|(k, s, _)| k == kind && *s == secrets)
            .unwrap_or(0)
    }

    /// Deliver a claimed batch: each sink gets its messages (sinks run concurrently); returns
    /// the outcome to record per message.
    pub async fn deliver(&self, claimed: &[OutboxMessage]) -> Vec<(i64, DeliveryOutcome)> {
        let mut groups: Vec<Vec<OutboxMessage>> = vec![Vec::new(); self.kinds.len()];
        for m in claimed {
            groups[self.index_for(&m.channel)].push(m.clone());
        }
        let mut runs = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            if !group.is_empty() {
                let sink = self.kinds[i].2.clone();
                runs.push(async move { (i, sink.deliver(group).await) });
            }
        }
        let done = futures::future::join_all(runs).await;
        let now = now_micros();
        let mut out = Vec::with_capacity(claimed.len());
        for (i, answers) in done {
            for (m, a) in groups[i].iter().zip(answers) {
                out.push((m.id, self.outcome(m, a, now)));
            }
        }
        out
    }

    fn outcome(&self, m: &OutboxMessage, attempt: Attempt, now: i64) -> DeliveryOutcome {
        match attempt {
            Attempt::Delivered => DeliveryOutcome::Delivered,
            Attempt::Reject(error) => {
                tracing::warn!(message = %m.name(), %error, "message refused; dead-lettered");
                DeliveryOutcome::Dead { error }
            }
            Attempt::Retry(error) if m.attempts >= i64::from(self.config.max_attempts) => {
                tracing::warn!(
                    message = %m.name(), attempts = m.attempts, %error,
                    "message out of attempts; dead-lettered"
                );
                DeliveryOutcome::Dead {
                    error: format!("{error} (gave up after {} attempts)", m.attempts),
                }
            }
            Attempt::Retry(error) => {
                let wait = backoff(&self.config, m.attempts);
                tracing::debug!(message = %m.name(), %error, ?wait, "delivery failed; will retry");
                DeliveryOutcome::Failed {
                    error,
                    next_attempt_time: now + wait.as_micros() as i64,
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for ch in crate::config::SINK_CHANNELS.iter().filter(|c| **c != "*") {
            parts.push(format!(
                "{ch}={}",
                self.kinds[self.index_for(ch)].2.describe()
            ));
        }
        parts.join(" ")
    }
}

/// The wait after failed attempt `attempts` (1-based): `base · 2^(attempts-1)`, at most `max`,
/// less a random share of up to half of it so that failures do not retry in lockstep.
pub fn backoff(config: &DeliveryConfig, attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 32) as u32 - 1;
    let full = config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(config.backoff_max);
    let half = full.as_micros() as u64 / 2;
    let jitter = if half > 0 {
        rand::thread_rng().gen_range(0..=half)
    } else {
        0
    };
    full - Duration::from_micros(jitter)
}

/// Deliver until `stop` turns true.
pub async fn run(store: Store, sinks: Sinks, mut stop: watch::Receiver<bool>) {
    tracing::info!(sinks = %sinks.describe(), "outbox dispatcher started");
    let idle = sinks.config.poll_interval;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = now_micros();
        let claimed = match store.claim_messages(BATCH, now, now - LEASE_MICROS).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                Vec::new()
            }
        };
        if !claimed.is_empty() {
            let outcomes = sinks.deliver(&claimed).await;
            let all_delivered = outcomes
                .iter()
                .all(|(_, o)| *o == DeliveryOutcome::Delivered);
            if let Err(e) = store.record_deliveries(&outcomes, now_micros()).await {
                // the lease runs out and the messages are claimed again
                tracing::warn!(error = %e, "outbox status update failed");
            }
            if all_delivered && claimed.len() == BATCH {
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("outbox dispatcher stopped");
}

/// The outbox file: the configured one, else `bakkal-outbox.jsonl` next to a SQLite database,
/// else in the working directory.
pub fn outbox_path(configured: Option<&PathBuf>, database_url: &str) -> PathBuf {
    if let Some(p) = configured {
        return p.clone();
    }
    let file = "bakkal-outbox.jsonl";
    if let Some(rest) = database_url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or("");
        if !path.is_empty() && !path.starts_with(':') {
            if let Some(dir) = std::path::Path::new(path).parent() {
                return dir.join(file);
            }
        }
    }
    PathBuf::from(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let config = DeliveryConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&config, 1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = backoff(&config, 3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b9 = backoff(&config, 9);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn redelivery_horizon_covers_the_lease_and_every_backoff() {
        let config = DeliveryConfig::default();
        // 60 s lease; 8 attempts of 10 s timeouts; backoffs 1, 2, 4 … 64 s
        assert_eq!(
            redelivery_horizon(&config),
            Duration::from_secs(60 + 8 * 10 + 127)
        );
        let capped = DeliveryConfig {
            backoff_max: Duration::from_secs(5),
            max_attempts: 3,
            ..Default::default()
        };
        assert_eq!(
            redelivery_horizon(&capped),
            Duration::from_secs(60 + 3 * 10 + 1 + 2)
        );
    }

    #[test]
    fn channels_pick_their_sink_else_star_else_file() {
        let mut config = DeliveryConfig::default();
        assert_eq!(config.sink_for("email"), &SinkKind::File);
        config.sinks = vec![
            ("*".into(), SinkKind::Nats),
            ("email".into(), SinkKind::Webhook("http://h/x".into())),
        ];
        assert_eq!(
            config.sink_for("email"),
            &SinkKind::Webhook("http://h/x".into())
        );
        assert_eq!(config.sink_for("sms"), &SinkKind::Nats);
    }

    #[test]
    fn webhook_secrets_parse_and_pick_the_channel_else_star() {
        use crate::config::parse_webhook_secret_flag as parse;
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let b = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(parse("email").is_err());
        assert!(parse("fax=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(
            parse("email=MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err(),
            "no whsec_"
        );
        assert!(parse("email=whsec_not*base64").is_err());
        assert!(parse("email=whsec_c2hvcnQ=").is_err(), "too short");
        let secret = parse(&format!("email={a}")).unwrap().1;
        assert!(
            !format!("{secret:?}").contains("MfKQ"),
            "Debug shows no key"
        );
        let config = DeliveryConfig {
            webhook_secrets: [format!("email={a}"), format!("email={b}"), format!("*={b}")]
                .iter()
                .map(|s| parse(s).unwrap())
                .collect(),
            ..Default::default()
        };
        assert_eq!(config.webhook_secrets_for("email").len(), 2);
        assert_eq!(
            config.webhook_secrets_for("sms"),
            [crate::config::WebhookSecret::parse(b).unwrap()]
        );
    }
}
