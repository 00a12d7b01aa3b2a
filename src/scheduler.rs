//! The campaign scheduler: a background task that, every tick (and when a call wakes it),
//!
//! 1. runs the daily scan that writes `birthday` and `inactive` events (once a UTC day, or
//!    again soon after an event campaign of those kinds is scheduled);
//! 2. starts the runs of SCHEDULED campaigns whose time came (at a time, recurring);
//! 3. runs RUNNING runs that no server holds: the ones LaunchCampaign just started, and the
//!    ones a stopped or killed server left (resumed from their last batch);
//! 4. decides the new events of RUNNING event campaigns.
//!
//! Each piece of work is claimed under a lease in the database (`runs/{id}`,
//! `campaigns/{id}/start`, `campaigns/{id}/events`, `scan`) that its holder renews batch by
//! batch, so servers sharing one PostgreSQL database do not do the same work twice; a lease
//! that runs out (its server died) is taken over. Exactly-once messages do not depend on it:
//! the outbox's idempotency keys guarantee them anyway.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bakkal_domain::time::{now_micros, Micros};
use bakkal_engine::{campaign, trigger, EngineError};
use bakkal_script::ScriptHost;
use bakkal_store::{Campaign, CampaignRun, Lease, Store, Trigger};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The daily scan's lease.
pub const SCAN: &str = "scan";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often it looks for work (a call that starts work wakes it at once).
    pub tick: Duration,
    /// The clock (tests may pass their own).
    pub now: fn() -> Micros,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            now: now_micros,
        }
    }
}

struct Scheduler {
    store: Store,
    host: Arc<ScriptHost>,
    /// This server, in leases.
    owner: String,
    /// A lease runs out this long after it was last renewed: 30 ticks, at least 2 s.
    ttl: Micros,
    now: fn() -> Micros,
    /// Runs this server is running.
    local: Arc<Mutex<HashSet<i64>>>,
}

fn lock(m: &Mutex<HashSet<i64>>) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Schedule until `stop` turns true; then stop the runs in progress (their leases are
/// given up, so another server, or this one restarted, resumes them at once).
pub async fn run(
    store: Store,
    host: Arc<ScriptHost>,
    options: SchedulerOptions,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let ttl = (options.tick.as_micros() as i64 * 30).max(2_000_000);
    let s = Arc::new(Scheduler {
        store,
        host,
        owner: uuid::Uuid::new_v4().to_string(),
        ttl,
        now: options.now,
        local: Arc::new(Mutex::new(HashSet::new())),
    });
    tracing::info!(owner = %s.owner, tick_ms = options.tick.as_millis() as u64, "campaign scheduler started");
    let mut tasks = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(e) = s.tick(&mut tasks).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(options.tick) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let left: Vec<i64> = lock(&s.local).drain().collect();
    for id in left {
        let _ = s
            .store
            .release_lease(&s.lease(format!("runs/{id}")), None)
            .await;
    }
    tracing::info!("campaign scheduler stopped");
}

impl Scheduler {
    fn lease(&self, name: String) -> Lease {
        Lease {
            name,
            owner: self.owner.clone(),
            ttl: self.ttl,
        }
    }

    /// Is the lease free for us (a read, so an idle scheduler writes nothing)?
    async fn lease_free(&self, name: &str, now: Micros) -> Result<bool, EngineError> {
        Ok(match self.store.lease_state(name).await? {
            None => true,
            Some(l) => l.owner == self.owner || l.until < now,
        })
    }

    async fn tick(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), EngineError> {
        self.scan().await?;
        self.start_due().await?;
        self.resume_runs(tasks).await?;
        self.events().await?;
        Ok(())
    }

    /// The daily scan, when it has not run this UTC day.
    async fn scan(&self) -> Result<(), EngineError> {
        let now = (self.now)();
        let (done, requested, done_seq) = match self.store.lease_state(SCAN).await? {
            Some(l) if l.owner != self.owner && l.until >= now => return Ok(()),
            Some(l) => (l.done_time, l.requested, l.done_seq),
            None => (0, 0, 0),
        };
        let today = done > 0 && done.div_euclid(MICROS_PER_DAY) == now.div_euclid(MICROS_PER_DAY);
        if today && done_seq >= requested {
            return Ok(());
        }
        let lease = self.lease(SCAN.to_string());
        if !self.store.claim_lease(&lease, now).await? {
            return Ok(());
        }
        // what was asked before this point is covered: the campaigns are read after it
        let requested = match self.store.lease_state(SCAN).await? {
            Some(l) => l.requested,
            None => requested,
        };
        let mut days: Vec<i64> = self
            .store
            .campaigns_by_trigger("RUNNING", "event")
            .await?
            .into_iter()
            .filter_map(|c| match c.fields.trigger {
                Trigger::Event {
                    kind,
                    inactive_days,
                } if kind == "inactive" => Some(inactive_days),
                _ => None,
            })
            .collect();
        days.sort_unstable();
        days.dedup();
        let written = self.store.scan_events(&days, now).await;
        self.store
            .release_lease(&lease, written.is_ok().then_some((now, requested)))
            .await?;
        let written = written?;
        tracing::info!(events = written, "daily scan done");
        Ok(())
    }

    /// Start the runs of SCHEDULED campaigns whose time came.
    async fn start_due(&self) -> Result<(), EngineError> {
        let now = (self.now)();
        let mut due: Vec<(Campaign, i64)> = Vec::new();
        for c in self.store.campaigns_by_trigger("SCHEDULED", "at").await? {
            if let Trigger::At { time } = c.fields.trigger {
                if time <= now {
                    due.push((c, 0));
                }
            }
        }
        for c in self
            .store
            .campaigns_by_trigger("SCHEDULED", "recurring")
            .await?
        {
            if let (Trigger::Recurring { start, .. }, Some(period)) =
                (&c.fields.trigger, c.fields.trigger.period())
            {
                if let Some(n) = trigger::due_occurrence(*start, period, c.last_occurrence, now) {
                    due.push((c, n));
                }
            }
        }
        for (c, occurrence) in due {
            let lease = self.lease(format!("campaigns/{}/start", c.id));
            if !self.store.claim_lease(&lease, now).await? {
                continue;
            }
            // another server may have started it between our read and our lease
            let fresh = self.store.get_campaign(c.id).await?;
            if fresh.state == "SCHEDULED" && fresh.last_occurrence == c.last_occurrence {
                match self
                    .store
                    .start_campaign_run(c.id, &["SCHEDULED"], occurrence, now)
                    .await
                {
                    Ok((_, run)) => {
                        tracing::info!(run = %run.name(), occurrence, "scheduled run started")
                    }
                    Err(e) => tracing::warn!(campaign = %c.name(), error = %e, "cannot start run"),
                }
            }
            self.store.release_lease(&lease, None).await?;
        }
        Ok(())
    }

    /// Run the RUNNING runs (of segment campaigns) no server holds.
    async fn resume_runs(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), EngineError> {
        let runs = self.store.running_runs().await?;
        for run in runs {
            if lock(&self.local).contains(&run.id) {
                continue;
            }
            let name = format!("runs/{}", run.id);
            let now = (self.now)();
            if !self.lease_free(&name, now).await? {
                continue;
            }
            let campaign = self.store.get_campaign(run.campaign_id).await?;
            if matches!(campaign.fields.trigger, Trigger::Event { .. }) {
                continue;
            }
            let lease = self.lease(name);
            if !self.store.claim_lease(&lease, now).await? {
                continue;
            }
            lock(&self.local).insert(run.id);
            tracing::info!(run = %run.name(), after = run.last_customer_id, "running campaign run");
            let me = self.clone();
            tasks.spawn(async move {
                me.execute(campaign, run, &lease).await;
                let _ = me.store.release_lease(&lease, None).await;
                lock(&me.local).remove(&lease_run_id(&lease));
            });
        }
        Ok(())
    }

    async fn execute(&self, campaign: Campaign, run: CampaignRun, lease: &Lease) {
        let result = async {
            let script =
                trigger::message_script(&self.store, &self.host, &campaign.fields.message_script)
                    .await?;
            campaign::run(
                &self.store,
                &self.host,
                &script,
                &campaign,
                &run,
                Some(lease),
                self.now,
            )
            .await
        }
        .await;
        match result {
            Ok(r) => tracing::info!(
                run = %r.name(),
                state = %r.state,
                queued = r.counters.queued,
                "campaign run ended"
            ),
            // the server is stopping: the run stays RUNNING and is resumed from its last batch
            Err(EngineError::Cancelled) => {
                tracing::info!(run = %run.name(), "campaign run stopped with the server")
            }
            Err(e) => {
                tracing::error!(run = %run.name(), error = %e, "campaign run failed");
                let _ = self
                    .store
                    .finish_campaign_run(campaign.id, run.id, "FAILED", "FAILED", (self.now)())
                    .await;
            }
        }
    }

    /// Decide the new events of RUNNING event campaigns.
    async fn events(&self) -> Result<(), EngineError> {
        let campaigns = self.store.campaigns_by_trigger("RUNNING", "event").await?;
        if campaigns.is_empty() {
            return Ok(());
        }
        let runs = self.store.running_runs().await?;
        for c in campaigns {
            let Some(run) = runs.iter().rev().find(|r| r.campaign_id == c.id) else {
                continue;
            };
            if !trigger::has_pending_events(&self.store, &c, run).await? {
                continue;
            }
            let name = format!("campaigns/{}/events", c.id);
            let now = (self.now)();
            if !self.lease_free(&name, now).await? {
                continue;
            }
            let lease = self.lease(name);
            let result = async {
                let script =
                    trigger::message_script(&self.store, &self.host, &c.fields.message_script)
                        .await?;
                trigger::handle_events(&self.store, &self.host, &script, &c, run, &lease, self.now)
                    .await
            }
            .await;
            self.store.release_lease(&lease, None).await?;
            match result {
                Ok(r) => {
                    tracing::debug!(run = %r.name(), last_event = r.last_event_id, "events decided")
                }
                Err(e) => tracing::warn!(campaign = %c.name(), error = %e, "events failed"),
            }
        }
        Ok(())
    }
}

fn lease_run_id(lease: &Lease) -> i64 {
    lease
        .name
        .strip_prefix("runs/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
