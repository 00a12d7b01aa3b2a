//! The loyalty expiry sweep: a background task that expires what is left of points lots past
//! their expiry, every `BAKKAL_LOYALTY_SWEEP_SECS` seconds (default 3600; 0 turns the task
//! off). `LoyaltyService/RunExpirySweep` runs the same sweep on demand. Each lot expires
//! exactly once: the store keys every EXPIRE transaction by its lot.

use std::time::Duration;

use bakkal_domain::time::{now_micros, Micros};
use bakkal_store::{ExpiryOutcome, Store};
use tokio::sync::watch;

pub const INTERVAL_ENV: &str = "BAKKAL_LOYALTY_SWEEP_SECS";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// The interval from the environment; `None` when turned off.
pub fn interval_from_env() -> Option<Duration> {
    match std::env::var(INTERVAL_ENV) {
        Err(_) => Some(DEFAULT_INTERVAL),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(s) => Some(Duration::from_secs(s)),
            Err(_) => {
                tracing::warn!(value = %v, "{INTERVAL_ENV} is not a number of seconds; using 3600");
                Some(DEFAULT_INTERVAL)
            }
        },
    }
}

/// One sweep at `now`, logged.
pub async fn sweep(store: &Store, now: Micros) -> bakkal_store::Result<ExpiryOutcome> {
    let out = store.expire_points(now).await?;
    if out.transactions > 0 {
        tracing::info!(
            transactions = out.transactions,
            points = out.points,
            accounts = out.accounts,
            "loyalty points expired"
        );
    }
    Ok(out)
}

/// Sweep every `interval` until `stop` turns true.
pub async fn run(store: Store, interval: Option<Duration>, mut stop: watch::Receiver<bool>) {
    let Some(interval) = interval else {
        tracing::info!("loyalty expiry sweep turned off");
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = sweep(&store, now_micros()).await {
            tracing::warn!(error = %e, "loyalty expiry sweep failed; retrying at the next interval");
        }
    }
}
