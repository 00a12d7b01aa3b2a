//! Scheduled backups: every `--backup-every` a backup into `--backup-dir`, the oldest beyond
//! `--backup-keep` removed after each one that succeeds. The first is taken one interval after
//! the start; a failure is logged and the next interval tries again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Backups;

/// `6h`, `90m`, `30s`, `1d` or plain seconds (`3600`), at least one second.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 6h, 30m, 90s or 3600"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("'{text}' is not a duration like 6h, 30m, 90s or 3600"))?;
    if secs == 0 {
        return Err("the backup interval must be at least one second".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Back up every `every` until `stop` turns true.
pub async fn run(backups: Arc<Backups>, every: Option<Duration>, mut stop: watch::Receiver<bool>) {
    let Some(every) = every else {
        return;
    };
    tracing::info!(every_secs = every.as_secs(), dir = ?backups.config.dir, keep = backups.config.keep, "scheduled backups on");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        match backups.take().await {
            Ok(b) => tracing::info!(backup = %b.path.display(), "scheduled backup taken"),
            Err(e) => {
                tracing::warn!(error = %e, "scheduled backup failed; trying again at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_in_units_or_seconds() {
        assert_eq!(parse_every("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_every("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_every("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_every("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_every("3600"), Ok(Duration::from_secs(3600)));
        assert!(parse_every("0").is_err());
        assert!(parse_every("6 hours").is_err());
        assert!(parse_every("h").is_err());
        assert!(parse_every("").is_err());
    }
}
