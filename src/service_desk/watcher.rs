//! The SLA watcher: a background task that, every interval, claims the tickets whose next SLA
//! mark (at risk, breached) has passed and records the `sla_at_risk` / `sla_breached` events
//! with their reminders. Several servers on one PostgreSQL share the work: each pass locks the
//! rows it claims with `FOR UPDATE SKIP LOCKED`, and every reminder has a unique idempotency
//! key, so each event is queued exactly once.

use std::time::Duration;

use bakkal_store::Store;
use tokio::sync::watch;

use crate::config::Clock;

/// Tickets claimed per transaction.
pub const BATCH: usize = 500;

/// One pass: batches until nothing due is left. Returns the events recorded.
pub async fn tick(store: &Store, clock: &Clock) -> bakkal_store::Result<usize> {
    let mut events = 0;
    loop {
        let (claimed, fired) = store
            .sla_tick(clock.now(), BATCH, &super::messages::templates)
            .await?;
        events += fired;
        if claimed < BATCH {
            return Ok(events);
        }
    }
}

/// Run until `stop` turns true.
pub async fn run(store: Store, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        match tick(&store, &clock).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "SLA watcher recorded events"),
            Err(e) => tracing::warn!(error = %e, "SLA watcher pass failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}
