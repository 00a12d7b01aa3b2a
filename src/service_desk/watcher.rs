//! The SLA watcher: a background task that, every interval, claims the tickets whose next SLA
//! mark (at risk, breached) has passed and records the `sla_at_risk` / `sla_breached` events
//! with their reminders. Several servers on one PostgreSQL share the work: each pass locks the
//! rows it claims with `FOR UPDATE SKIP LOCKED`, and every reminder has a unique idempotency
//! key, so each event is queued exactly once.

use std::time::Duration;

use std::sync::Arc;

use bakkal_script::ScriptHost;
use bakkal_store::{Notifier, Store};
use tokio::sync::watch;

use crate::config::{Clock, DeskConfig};

/// Tickets claimed per transaction.
pub const BATCH: usize = 500;

/// One pass: batches until nothing due is left. Returns the events recorded.
pub async fn tick(store: &Store, clock: &Clock, notify: &Notifier) -> bakkal_store::Result<usize> {
    let mut events = 0;
    loop {
        let (claimed, fired) = store.sla_tick(clock.now(), BATCH, notify).await?;
        events += fired;
        if claimed < BATCH {
            return Ok(events);
        }
    }
}

/// Run until `stop` turns true.
pub async fn run(
    store: Store,
    host: Arc<ScriptHost>,
    desk: DeskConfig,
    mut stop: watch::Receiver<bool>,
) {
    let every: Duration = desk.sla_watch_interval;
    loop {
        let script =
            super::messages::load_script(&store, &host, desk.message_script.as_deref()).await;
        let notify = super::messages::notifier(script);
        match tick(&store, &desk.clock, &*notify).await {
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
