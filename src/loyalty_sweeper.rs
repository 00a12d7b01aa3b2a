//! The loyalty expiry sweep: a background task that expires what is left of points lots past
//! their expiry, every `--loyalty-sweep-secs` seconds (`Config::loyalty_sweep`; default 3600, 0 turns the
//! task off). `LoyaltyService/RunExpirySweep` runs the same sweep on demand. Each lot expires
//! exactly once: the store keys every EXPIRE transaction by its lot.

use std::time::Duration;

use bakkal_domain::time::{now_micros, Micros};
use bakkal_store::{ExpiryOutcome, Store};
use tokio::sync::watch;

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
