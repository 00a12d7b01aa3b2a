//! Campaigns, their runs and the message outbox. A run's batch (its counters and its messages)
//! is written in one transaction; each message carries a unique idempotency key and is
//! inserted with `ON CONFLICT DO NOTHING`, so a retried or resumed run never queues a message
//! twice. Reading and delivering the outbox is `outbox.rs`.

use std::collections::{HashMap, HashSet};

use bakkal_domain::time::Micros;
use bakkal_domain::Customer;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::args::push_value_rows;
use crate::lock::{lock_key, lock_row};
use crate::page::Cursor;
use crate::segments::json_list;
use crate::{Result, Store, StoreError};

pub fn campaign_name(id: i64) -> String {
    format!("campaigns/{id}")
}

pub fn campaign_run_name(campaign_id: i64, run_id: i64) -> String {
    format!("campaigns/{campaign_id}/runs/{run_id}")
}

pub fn message_name(id: i64) -> String {
    format!("messages/{id}")
}

/// A campaign's settings, as written by create and update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CampaignFields {
    pub display_name: String,
    /// `PROSPECTING`, `CROSS_SELL`, `WIN_BACK`, `LOYALTY`.
    pub strategy: String,
    pub audience_segment_id: i64,
    pub offer_script: String,
    pub message_script: String,
    /// `email`, `sms`, `push`, `phone`.
    pub channel: String,
    pub holdout_percent: i64,
    /// 0: no cap.
    pub cap_max_messages: i64,
    pub cap_per_days: i64,
    /// UTC hours `[start, end)`; `None`: no quiet hours.
    pub quiet_hours: Option<(i64, i64)>,
    pub trigger: Trigger,
}

/// When a campaign runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trigger {
    /// LaunchCampaign starts a run now.
    #[default]
    Once,
    /// One run at `time` (the campaign waits SCHEDULED).
    At { time: Micros },
    /// A run every `every_hours` hours plus `every_days` days from `start`; each occurrence is
    /// its own run.
    Recurring {
        start: Micros,
        every_hours: i64,
        every_days: i64,
    },
    /// While RUNNING, each new event of `kind` for an audience member (`inactive`: `days`
    /// without a paid order).
    Event { kind: String, inactive_days: i64 },
}

impl Trigger {
    /// `once`, `at`, `recurring`, `event` (the stored kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Once => "once",
            Trigger::At { .. } => "at",
            Trigger::Recurring { .. } => "recurring",
            Trigger::Event { .. } => "event",
        }
    }

    /// A recurring trigger's period in microseconds.
    pub fn period(&self) -> Option<Micros> {
        match self {
            Trigger::Recurring {
                every_hours,
                every_days,
                ..
            } => Some((every_hours + 24 * every_days) * 3_600_000_000),
            _ => None,
        }
    }

    fn columns(&self) -> (&'static str, Option<Micros>, i64, i64, String, i64) {
        match self {
            Trigger::Once => ("once", None, 0, 0, String::new(), 0),
            Trigger::At { time } => ("at", Some(*time), 0, 0, String::new(), 0),
            Trigger::Recurring {
                start,
                every_hours,
                every_days,
            } => (
                "recurring",
                Some(*start),
                *every_hours,
                *every_days,
                String::new(),
                0,
            ),
            Trigger::Event {
                kind,
                inactive_days,
            } => ("event", None, 0, 0, kind.clone(), *inactive_days),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub fields: CampaignFields,
    /// `DRAFT`, `SCHEDULED`, `RUNNING`, `PAUSED`, `COMPLETED`, `FAILED`.
    pub state: String,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
    /// Recurring: the last occurrence started (1-based; 0: none yet).
    pub last_occurrence: i64,
}

impl Campaign {
    pub fn name(&self) -> String {
        campaign_name(self.id)
    }

    pub fn etag(&self) -> String {
        bakkal_domain::customer::etag(self.version)
    }
}

/// Counters of a run (also the per-batch increments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunCounters {
    pub evaluated: i64,
    pub targeted: i64,
    pub held_out: i64,
    pub suppressed_no_consent: i64,
    pub suppressed_capped: i64,
    pub suppressed_quiet_hours: i64,
    pub suppressed_already_sent: i64,
    pub queued: i64,
    pub script_errors: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRun {
    pub id: i64,
    pub campaign_id: i64,
    /// `RUNNING`, `COMPLETED`, `PAUSED`, `FAILED`.
    pub state: String,
    pub counters: RunCounters,
    pub last_customer_id: i64,
    pub start_time: Micros,
    pub end_time: Option<Micros>,
    /// A recurring campaign's occurrence (1-based); 0 for other runs.
    pub occurrence: i64,
    /// An event campaign's run: the last event handled.
    pub last_event_id: i64,
}

impl CampaignRun {
    pub fn name(&self) -> String {
        campaign_run_name(self.campaign_id, self.id)
    }
}

/// How far a batch got: the last member of a segment run, or the last event of an event run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPosition {
    Customer(i64),
    Event(i64),
}

/// A customer held out of a message (recorded for the campaign report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHoldout {
    pub customer_id: i64,
    /// `once`, `occurrences/{n}` or `events/{id}`, as in the message's key.
    pub occurrence: String,
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub customer_id: i64,
    pub channel: String,
    pub subject: String,
    pub body: String,
    pub idempotency_key: String,
}

/// Bound values per message row of a batch insert, and rows per statement (under every
/// backend's parameter limit).
const MESSAGE_COLUMNS: usize = 8;
const MESSAGE_ROWS: usize = 500;

const CAMPAIGN_COLUMNS: &str = "id, display_name, strategy, audience_segment_id, offer_script, \
     message_script, channel, holdout_percent, cap_max_messages, cap_per_days, quiet_start_hour, \
     quiet_end_hour, state, version, create_time, update_time, trigger_kind, trigger_time, \
     trigger_every_hours, trigger_every_days, trigger_event, trigger_inactive_days, \
     last_occurrence";

const RUN_COLUMNS: &str = "id, campaign_id, state, evaluated, targeted, held_out, \
     suppressed_no_consent, suppressed_capped, suppressed_quiet_hours, suppressed_already_sent, \
     queued, script_errors, last_customer_id, start_time, end_time, occurrence, last_event_id";

fn campaign_from_row(r: &AnyRow) -> std::result::Result<Campaign, sqlx::Error> {
    let qs: Option<i64> = r.try_get(10)?;
    let qe: Option<i64> = r.try_get(11)?;
    let kind: String = r.try_get(16)?;
    let time: Option<i64> = r.try_get(17)?;
    let trigger = match kind.as_str() {
        "at" => Trigger::At {
            time: time.unwrap_or(0),
        },
        "recurring" => Trigger::Recurring {
            start: time.unwrap_or(0),
            every_hours: r.try_get(18)?,
            every_days: r.try_get(19)?,
        },
        "event" => Trigger::Event {
            kind: r.try_get(20)?,
            inactive_days: r.try_get(21)?,
        },
        _ => Trigger::Once,
    };
    Ok(Campaign {
        id: r.try_get(0)?,
        fields: CampaignFields {
            display_name: r.try_get(1)?,
            strategy: r.try_get(2)?,
            audience_segment_id: r.try_get(3)?,
            offer_script: r.try_get(4)?,
            message_script: r.try_get(5)?,
            channel: r.try_get(6)?,
            holdout_percent: r.try_get(7)?,
            cap_max_messages: r.try_get(8)?,
            cap_per_days: r.try_get(9)?,
            quiet_hours: qs.zip(qe),
            trigger,
        },
        state: r.try_get(12)?,
        version: r.try_get(13)?,
        create_time: r.try_get(14)?,
        update_time: r.try_get(15)?,
        last_occurrence: r.try_get(22)?,
    })
}

fn run_from_row(r: &AnyRow) -> std::result::Result<CampaignRun, sqlx::Error> {
    Ok(CampaignRun {
        id: r.try_get(0)?,
        campaign_id: r.try_get(1)?,
        state: r.try_get(2)?,
        counters: RunCounters {
            evaluated: r.try_get(3)?,
            targeted: r.try_get(4)?,
            held_out: r.try_get(5)?,
            suppressed_no_consent: r.try_get(6)?,
            suppressed_capped: r.try_get(7)?,
            suppressed_quiet_hours: r.try_get(8)?,
            suppressed_already_sent: r.try_get(9)?,
            queued: r.try_get(10)?,
            script_errors: r.try_get(11)?,
        },
        last_customer_id: r.try_get(12)?,
        start_time: r.try_get(13)?,
        end_time: r.try_get(14)?,
        occurrence: r.try_get(15)?,
        last_event_id: r.try_get(16)?,
    })
}

impl Store {
    // ---- campaigns ---------------------------------------------------------------------------

    /// Create a campaign in `state`; a known `request_id` gives back the campaign it created.
    pub async fn create_campaign(
        &self,
        f: &CampaignFields,
        state: &str,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<Campaign> {
        let mut tx = self.write_tx().await?;
        if let Some(rid) = request_id {
            lock_key(&mut tx, &format!("CreateCampaign/{rid}")).await?;
            let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE request_id = $1");
            if let Some(r) = sqlx::query(&sql)
                .bind(rid.to_string())
                .fetch_optional(&mut *tx)
                .await?
            {
                return Ok(campaign_from_row(&r)?);
            }
        }
        let sql = format!(
            "INSERT INTO campaigns (display_name, strategy, audience_segment_id, offer_script, \
             message_script, channel, holdout_percent, cap_max_messages, cap_per_days, \
             quiet_start_hour, quiet_end_hour, state, request_id, version, create_time, \
             update_time, trigger_kind, trigger_time, trigger_every_hours, trigger_every_days, \
             trigger_event, trigger_inactive_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, 1, $14, $14, $15, $16, $17, $18, $19, $20) \
             RETURNING {CAMPAIGN_COLUMNS}"
        );
        let t = f.trigger.columns();
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.strategy.clone())
            .bind(f.audience_segment_id)
            .bind(f.offer_script.clone())
            .bind(f.message_script.clone())
            .bind(f.channel.clone())
            .bind(f.holdout_percent)
            .bind(f.cap_max_messages)
            .bind(f.cap_per_days)
            .bind(f.quiet_hours.map(|q| q.0))
            .bind(f.quiet_hours.map(|q| q.1))
            .bind(state.to_string())
            .bind(request_id.map(str::to_string))
            .bind(now)
            .bind(t.0)
            .bind(t.1)
            .bind(t.2)
            .bind(t.3)
            .bind(t.4)
            .bind(t.5)
            .fetch_one(&mut *tx)
            .await?;
        let c = campaign_from_row(&row)?;
        tx.audit_call(c.name());
        tx.commit().await?;
        Ok(c)
    }

    pub async fn get_campaign(&self, id: i64) -> Result<Campaign> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
        match sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.acquire().await?)
            .await?
        {
            Some(r) => Ok(campaign_from_row(&r)?),
            None => Err(StoreError::NotFound(campaign_name(id))),
        }
    }

    /// Campaigns in creation order.
    pub async fn list_campaigns(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Campaign>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "campaigns",
            CAMPAIGN_COLUMNS,
            page_size,
            after,
            campaign_from_row,
            |c| c.id,
        )
        .await
    }

    /// Replace a campaign's settings (the caller applied its mask), only in DRAFT or PAUSED,
    /// checking the etag when given.
    pub async fn update_campaign(
        &self,
        id: i64,
        f: &CampaignFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Campaign> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "campaigns", id).await?;
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
        let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound(campaign_name(id)));
        };
        let current = campaign_from_row(&row)?;
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            if e != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {e}",
                    current.name()
                )));
            }
        }
        if current.state != "DRAFT" && current.state != "PAUSED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is {}; only DRAFT or PAUSED campaigns can be changed",
                current.name(),
                current.state
            )));
        }
        let sql = format!(
            "UPDATE campaigns SET display_name = $1, strategy = $2, audience_segment_id = $3, \
             offer_script = $4, message_script = $5, channel = $6, holdout_percent = $7, \
             cap_max_messages = $8, cap_per_days = $9, quiet_start_hour = $10, \
             quiet_end_hour = $11, version = version + 1, update_time = $12, \
             trigger_kind = $14, trigger_time = $15, trigger_every_hours = $16, \
             trigger_every_days = $17, trigger_event = $18, trigger_inactive_days = $19 \
             WHERE id = $13 RETURNING {CAMPAIGN_COLUMNS}"
        );
        let t = f.trigger.columns();
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.strategy.clone())
            .bind(f.audience_segment_id)
            .bind(f.offer_script.clone())
            .bind(f.message_script.clone())
            .bind(f.channel.clone())
            .bind(f.holdout_percent)
            .bind(f.cap_max_messages)
            .bind(f.cap_per_days)
            .bind(f.quiet_hours.map(|q| q.0))
            .bind(f.quiet_hours.map(|q| q.1))
            .bind(now)
            .bind(id)
            .bind(t.0)
            .bind(t.1)
            .bind(t.2)
            .bind(t.3)
            .bind(t.4)
            .bind(t.5)
            .fetch_one(&mut *tx)
            .await?;
        let c = campaign_from_row(&row)?;
        tx.audit_call(c.name());
        tx.commit().await?;
        Ok(c)
    }

    /// Move a campaign from one of `from` to `to`; FAILED_PRECONDITION from any other state.
    pub async fn set_campaign_state(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        now: Micros,
    ) -> Result<Campaign> {
        let mut tx = self.write_tx().await?;
        let c = set_state_in(&mut tx, id, from, to, now).await?;
        tx.audit_call(c.name());
        tx.commit().await?;
        Ok(c)
    }

    // ---- runs --------------------------------------------------------------------------------

    /// Start a run: the campaign moves from one of `from` to RUNNING in the same transaction.
    /// `occurrence` (a recurring campaign's, 1-based; else 0) is recorded on the run and as the
    /// campaign's last occurrence. An event campaign's run starts after the newest event, and
    /// the campaign's earlier RUNNING runs end (PAUSED).
    pub async fn start_campaign_run(
        &self,
        campaign_id: i64,
        from: &[&str],
        occurrence: i64,
        now: Micros,
    ) -> Result<(Campaign, CampaignRun)> {
        let mut tx = self.write_tx().await?;
        let mut c = set_state_in(&mut tx, campaign_id, from, "RUNNING", now).await?;
        let mut last_event_id = 0;
        if let Trigger::Event { kind, .. } = &c.fields.trigger {
            sqlx::query(
                "UPDATE campaign_runs SET state = 'PAUSED', end_time = $1 \
                 WHERE campaign_id = $2 AND state = 'RUNNING'",
            )
            .bind(now)
            .bind(campaign_id)
            .execute(&mut *tx)
            .await?;
            // The daily scan's events (birthday, inactive) may have been written earlier
            // today, before this campaign started: it sees today's.
            let since = if kind == "birthday" || kind == "inactive" {
                now - now.rem_euclid(86_400_000_000)
            } else {
                i64::MAX
            };
            let (max,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(id) FROM events WHERE create_time < $1")
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?;
            last_event_id = max.unwrap_or(0);
        }
        if occurrence > 0 {
            sqlx::query("UPDATE campaigns SET last_occurrence = $1 WHERE id = $2")
                .bind(occurrence)
                .bind(campaign_id)
                .execute(&mut *tx)
                .await?;
            c.last_occurrence = occurrence;
        }
        let sql = format!(
            "INSERT INTO campaign_runs (campaign_id, state, start_time, occurrence, \
             last_event_id) VALUES ($1, 'RUNNING', $2, $3, $4) RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(campaign_id)
            .bind(now)
            .bind(occurrence)
            .bind(last_event_id)
            .fetch_one(&mut *tx)
            .await?;
        let run = run_from_row(&row)?;
        tx.audit_call(run.name());
        tx.commit().await?;
        Ok((c, run))
    }

    /// RUNNING runs, oldest first (the scheduler resumes those nobody holds).
    pub async fn running_runs(&self) -> Result<Vec<CampaignRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM campaign_runs WHERE state = 'RUNNING' ORDER BY id LIMIT 1000"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        Ok(rows
            .iter()
            .map(run_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Campaigns in `state` with a trigger of `kind` (`at`, `recurring`, `event`).
    pub async fn campaigns_by_trigger(&self, state: &str, kind: &str) -> Result<Vec<Campaign>> {
        let sql = format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE state = $1 AND trigger_kind = $2 \
             ORDER BY id LIMIT 1000"
        );
        let rows = sqlx::query(&sql)
            .bind(state.to_string())
            .bind(kind.to_string())
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        Ok(rows
            .iter()
            .map(campaign_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    pub async fn get_campaign_run(&self, campaign_id: i64, run_id: i64) -> Result<CampaignRun> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM campaign_runs WHERE id = $1 AND campaign_id = $2");
        match sqlx::query(&sql)
            .bind(run_id)
            .bind(campaign_id)
            .fetch_optional(&mut *self.acquire().await?)
            .await?
        {
            Some(r) => Ok(run_from_row(&r)?),
            None => Err(StoreError::NotFound(campaign_run_name(campaign_id, run_id))),
        }
    }

    /// Up to `limit` members of a segment with id > `after`, ascending. The ids come back as
    /// one comma-separated row: a driver row per id costs more than the query.
    pub async fn segment_members_after(
        &self,
        segment_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<i64>> {
        let concat = match self.backend {
            crate::Backend::Sqlite => "group_concat(customer_id, ',')",
            crate::Backend::Postgres => "string_agg(CAST(customer_id AS TEXT), ',')",
        };
        let sql = format!(
            "SELECT {concat} FROM (SELECT customer_id FROM segment_members \
             WHERE segment_id = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3) m"
        );
        let list: Option<String> = sqlx::query_scalar(&sql)
            .bind(segment_id)
            .bind(after)
            .bind(limit as i64)
            .fetch_one(&mut *self.acquire().await?)
            .await?;
        let mut ids = list
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
            })
            .collect::<Result<Vec<i64>>>()?;
        // the aggregate's order is not promised
        ids.sort_unstable();
        Ok(ids)
    }

    /// Has campaign `campaign_id` queued any message outside run `run_id`? When it has not, no
    /// message key of the run can be taken yet beyond the run's own written position.
    pub async fn campaign_has_messages_outside_run(
        &self,
        campaign_id: i64,
        run_id: i64,
    ) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox_messages WHERE campaign_id = $1 AND run_id <> $2 LIMIT 1",
        )
        .bind(campaign_id)
        .bind(run_id)
        .fetch_optional(&mut *self.acquire().await?)
        .await?;
        Ok(found.is_some())
    }

    /// The live (not erased, not merged) customers among `ids`, in id order (one query).
    pub async fn live_customers(&self, ids: &[i64]) -> Result<Vec<Customer>> {
        self.live_customers_by_id(ids).await
    }

    /// Of `keys`, those already in the outbox (one query).
    pub async fn existing_message_keys(&self, keys: &[String]) -> Result<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT idempotency_key FROM outbox_messages WHERE idempotency_key IN ({})",
            json_list(self.backend, 1, "TEXT")
        );
        let list = serde_json::to_string(keys)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        let found: Vec<String> = sqlx::query_scalar(&sql)
            .bind(list)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        Ok(found.into_iter().collect())
    }

    /// Messages (any campaign, any status but DEAD) created at or after `since`, per customer
    /// (one query).
    pub async fn recent_message_counts(
        &self,
        ids: &[i64],
        since: Micros,
    ) -> Result<HashMap<i64, i64>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT customer_id, COUNT(*) FROM outbox_messages WHERE customer_id IN ({}) \
             AND create_time >= $2 AND status <> 'DEAD' GROUP BY customer_id",
            json_list(self.backend, 1, "BIGINT")
        );
        let list = serde_json::to_string(ids)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sql)
            .bind(list)
            .bind(since)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Write one batch of a run in one transaction: its messages (a key already present is
    /// skipped and counted as already sent), its held-out customers, its counters and how far
    /// it got. Returns the run; or `None`, with nothing written, when `lease` is given and
    /// another owner holds it (the batch is fenced by the lease, which it renews).
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_campaign_batch(
        &self,
        campaign_id: i64,
        run_id: i64,
        mut counters: RunCounters,
        messages: &[NewMessage],
        holdouts: &[NewHoldout],
        position: BatchPosition,
        lease: Option<&crate::Lease>,
        now: Micros,
    ) -> Result<Option<CampaignRun>> {
        let mut tx = self.write_tx().await?;
        if let Some(lease) = lease {
            if !crate::triggers::claim_lease_in(&mut tx, lease, now).await? {
                return Ok(None);
            }
        }
        // The batch's messages in multi-row statements with bound values (no JSON to build and
        // parse); a key already present is skipped (and counted as already sent).
        let mut inserted = 0i64;
        for chunk in messages.chunks(MESSAGE_ROWS) {
            let mut sql = String::with_capacity(64 + chunk.len() * 40);
            sql.push_str(
                "INSERT INTO outbox_messages (campaign_id, run_id, customer_id, channel, \
                 subject, body, idempotency_key, create_time, status, attempts) VALUES ",
            );
            push_value_rows(
                &mut sql,
                self.backend,
                chunk.len(),
                MESSAGE_COLUMNS,
                ", 'QUEUED', 0",
            );
            sql.push_str(" ON CONFLICT (idempotency_key) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q
                    .bind(campaign_id)
                    .bind(run_id)
                    .bind(m.customer_id)
                    .bind(m.channel.as_str())
                    .bind(m.subject.as_str())
                    .bind(m.body.as_str())
                    .bind(m.idempotency_key.as_str())
                    .bind(now);
            }
            let done = q.execute(&mut *tx).await?;
            inserted += done.rows_affected() as i64;
        }
        counters.queued += inserted;
        counters.suppressed_already_sent += messages.len() as i64 - inserted;
        crate::triggers::insert_holdouts(&mut tx, campaign_id, run_id, holdouts, now).await?;
        let (last_customer_id, last_event_id) = match position {
            BatchPosition::Customer(id) => (Some(id), None),
            BatchPosition::Event(id) => (None, Some(id)),
        };
        let c = counters;
        let sql = format!(
            "UPDATE campaign_runs SET evaluated = evaluated + $1, targeted = targeted + $2, \
             held_out = held_out + $3, suppressed_no_consent = suppressed_no_consent + $4, \
             suppressed_capped = suppressed_capped + $5, \
             suppressed_quiet_hours = suppressed_quiet_hours + $6, \
             suppressed_already_sent = suppressed_already_sent + $7, queued = queued + $8, \
             script_errors = script_errors + $9, \
             last_customer_id = COALESCE($10, last_customer_id), \
             last_event_id = COALESCE($12, last_event_id) WHERE id = $11 \
             RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(c.evaluated)
            .bind(c.targeted)
            .bind(c.held_out)
            .bind(c.suppressed_no_consent)
            .bind(c.suppressed_capped)
            .bind(c.suppressed_quiet_hours)
            .bind(c.suppressed_already_sent)
            .bind(c.queued)
            .bind(c.script_errors)
            .bind(last_customer_id)
            .bind(run_id)
            .bind(last_event_id)
            .fetch_one(&mut *tx)
            .await?;
        let run = run_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(run))
    }

    /// End a run in `state`; the campaign goes to `campaign_state` if it is still RUNNING.
    pub async fn finish_campaign_run(
        &self,
        campaign_id: i64,
        run_id: i64,
        state: &str,
        campaign_state: &str,
        now: Micros,
    ) -> Result<CampaignRun> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE campaigns SET state = $1, update_time = $2 WHERE id = $3 AND state = 'RUNNING'",
        )
        .bind(campaign_state.to_string())
        .bind(now)
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE campaign_runs SET state = $1, end_time = $2 WHERE id = $3 \
             RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(state.to_string())
            .bind(now)
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        let run = run_from_row(&row)?;
        tx.audit_call(run.name());
        tx.commit().await?;
        Ok(run)
    }
}

async fn set_state_in(
    tx: &mut crate::WriteTx,
    id: i64,
    from: &[&str],
    to: &str,
    now: Micros,
) -> Result<Campaign> {
    lock_row(tx, "campaigns", id).await?;
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await? else {
        return Err(StoreError::NotFound(campaign_name(id)));
    };
    let current = campaign_from_row(&row)?;
    if !from.contains(&current.state.as_str()) {
        return Err(StoreError::FailedPrecondition(format!(
            "{} is {}; it must be {} for this",
            current.name(),
            current.state,
            from.join(" or ")
        )));
    }
    let sql = format!(
        "UPDATE campaigns SET state = $1, version = version + 1, update_time = $2 WHERE id = $3 \
         RETURNING {CAMPAIGN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(to.to_string())
        .bind(now)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(campaign_from_row(&row)?)
}
