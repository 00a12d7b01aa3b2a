//! The outbox dispatcher: a background task that claims queued messages in batches under a
//! lease and delivers them to the local file sink (one JSON line per message), then marks
//! them DELIVERED. A message whose delivery failed goes back to QUEUED; one claimed by a
//! server that died is claimed again when its lease runs out.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bakkal_domain::name::customer_name;
use bakkal_domain::time::now_micros;
use bakkal_store::{campaign_name, OutboxMessage, Store};
use tokio::sync::watch;

const BATCH: usize = 200;
const IDLE: Duration = Duration::from_millis(200);
const LEASE_MICROS: i64 = 60_000_000;

/// Append the messages to the file, one JSON line each.
fn write_lines(path: &PathBuf, messages: &[OutboxMessage]) -> std::io::Result<()> {
    let mut out = String::new();
    for m in messages {
        let line = serde_json::json!({
            "name": m.name(),
            "campaign": campaign_name(m.campaign_id),
            "customer": customer_name(m.customer_id),
            "channel": m.channel,
            "subject": m.subject,
            "body": m.body,
            "idempotency_key": m.idempotency_key,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(out.as_bytes())?;
    f.sync_data()
}

/// Deliver until `stop` turns true.
pub async fn run(store: Store, path: PathBuf, mut stop: watch::Receiver<bool>) {
    tracing::info!(outbox_file = %path.display(), "outbox dispatcher started");
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
            let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
            let p = path.clone();
            let written = tokio::task::spawn_blocking(move || write_lines(&p, &claimed)).await;
            let status = match written {
                Ok(Ok(())) => "DELIVERED",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "outbox file sink failed");
                    "QUEUED"
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox file sink task failed");
                    "QUEUED"
                }
            };
            if let Err(e) = store.mark_messages(&ids, status, now_micros()).await {
                tracing::warn!(error = %e, "outbox status update failed");
            }
            if status == "DELIVERED" && ids.len() == BATCH {
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
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
