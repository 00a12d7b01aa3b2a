//! What campaign triggers need: the scheduler's leases (work one server does at a time), the
//! events event campaigns read (and the ones this crate writes: `order_placed` in an order's
//! transaction, `birthday` and `inactive` from the daily scan, each under a unique key so it is
//! written once), the record of held-out customers, and the campaign report's figures.

use bakkal_domain::name::order_name;
use bakkal_domain::time::Micros;
use bakkal_domain::{Order, OrderStatus};
use sqlx::AnyConnection;

use crate::campaigns::NewHoldout;
use crate::{Result, Store};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A lease on a piece of work (`runs/7`, `campaigns/3/events`, `scan`): held by `owner` (one
/// server) until it runs out `ttl` after it was last taken or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub ttl: Micros,
}

/// Who holds a lease until when, and what its work did last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub owner: String,
    pub until: Micros,
    /// When its work last finished (0: never).
    pub done_time: Micros,
    /// Bumped by each request to do the work again.
    pub requested: i64,
    /// `requested` as the last finished work saw it when it began.
    pub done_seq: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    pub kind: String,
    pub customer_id: i64,
    /// A JSON object.
    pub payload: String,
    pub create_time: Micros,
}

/// The figures of a campaign report (money in micro-units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportFigures {
    /// Members not held out, over all runs.
    pub targeted: i64,
    /// Held-out decisions recorded.
    pub held_out: i64,
    pub queued: i64,
    pub delivered: i64,
    /// FAILED and DEAD messages.
    pub failed: i64,
    /// Customers with at least one message.
    pub treated_customers: i64,
    /// Customers held out at least once.
    pub holdout_customers: i64,
    pub conversions: i64,
    pub revenue: i64,
    pub holdout_conversions: i64,
    pub holdout_revenue: i64,
}

/// Write an `order_placed` event for an order recorded (or turned PAID) in this transaction;
/// once per order (its key), nothing for a refund or an unchanged order.
pub(crate) async fn order_placed_event(
    conn: &mut AnyConnection,
    order: &Order,
    changed: bool,
    now: Micros,
) -> Result<()> {
    if !changed || order.status != OrderStatus::Paid {
        return Ok(());
    }
    let mut categories: Vec<&str> = order.lines.iter().map(|l| l.category.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let payload = serde_json::json!({
        "order": order_name(order.customer_id, &order.order_id),
        "categories": categories,
        "skus": skus,
        "order_id": order.order_id,
        "total": order.total() as f64 / 1_000_000.0,
        "currency": order.currency,
        "placed_time": order.placed_time,
    });
    sqlx::query(
        "INSERT INTO events (kind, customer_id, payload, create_time, dedupe_key) \
         VALUES ('order_placed', $1, $2, $3, $4) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(order.customer_id)
    .bind(payload.to_string())
    .bind(now)
    .bind(format!("order_placed:{}", order.order_id))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`Store::claim_lease`] inside a write transaction: true when `lease.owner` holds the lease
/// now (it was free, ran out, or was already theirs), renewed until `now + ttl`.
pub(crate) async fn claim_lease_in(
    conn: &mut AnyConnection,
    lease: &Lease,
    now: Micros,
) -> Result<bool> {
    let got: Option<(String,)> = sqlx::query_as(
        "INSERT INTO scheduler_leases (name, owner, until_time) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
         until_time = excluded.until_time \
         WHERE scheduler_leases.until_time < $4 OR scheduler_leases.owner = excluded.owner \
         RETURNING name",
    )
    .bind(lease.name.clone())
    .bind(lease.owner.clone())
    .bind(now + lease.ttl)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(got.is_some())
}

/// Record held-out customers of a batch (a decision already recorded stays as it was).
pub(crate) async fn insert_holdouts(
    conn: &mut AnyConnection,
    campaign_id: i64,
    run_id: i64,
    holdouts: &[NewHoldout],
    now: Micros,
) -> Result<()> {
    for h in holdouts {
        sqlx::query(
            "INSERT INTO campaign_holdouts (campaign_id, run_id, customer_id, occurrence, \
             decide_time) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (campaign_id, customer_id, occurrence) DO NOTHING",
        )
        .bind(campaign_id)
        .bind(run_id)
        .bind(h.customer_id)
        .bind(h.occurrence.clone())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `YYYY-MM-DD` of a UTC instant.
fn civil(now: Micros) -> (i64, u32, u32) {
    let days = now.div_euclid(MICROS_PER_DAY);
    // Howard Hinnant's days-to-civil
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Store {
    // ---- leases ------------------------------------------------------------------------------

    /// Take or renew a lease: true when `lease.owner` holds it now (it was free, ran out, or
    /// was already theirs).
    pub async fn claim_lease(&self, lease: &Lease, now: Micros) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let got = claim_lease_in(&mut tx, lease, now).await?;
        tx.commit().await?;
        Ok(got)
    }

    /// Give a lease up; `done` (a time and the `requested` value seen when the work began)
    /// records that its work finished.
    pub async fn release_lease(&self, lease: &Lease, done: Option<(Micros, i64)>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE scheduler_leases SET until_time = 0, \
             done_time = COALESCE($3, done_time), done_seq = COALESCE($4, done_seq) \
             WHERE name = $1 AND owner = $2",
        )
        .bind(lease.name.clone())
        .bind(lease.owner.clone())
        .bind(done.map(|d| d.0))
        .bind(done.map(|d| d.1))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The state of lease `name` (a read).
    pub async fn lease_state(&self, name: &str) -> Result<Option<LeaseState>> {
        let row: Option<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT owner, until_time, done_time, requested, done_seq FROM scheduler_leases \
             WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_optional(&mut *self.acquire().await?)
        .await?;
        Ok(row.map(
            |(owner, until, done_time, requested, done_seq)| LeaseState {
                owner,
                until,
                done_time,
                requested,
                done_seq,
            },
        ))
    }

    /// Ask for the work of lease `name` to be done again soon (whoever holds it).
    pub async fn request_lease_work(&self, name: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO scheduler_leases (name, owner, until_time, requested) \
             VALUES ($1, '', 0, 1) ON CONFLICT (name) DO UPDATE \
             SET requested = scheduler_leases.requested + 1",
        )
        .bind(name.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- events ------------------------------------------------------------------------------

    /// Up to `limit` events of `kind` with id > `after`, ascending.
    pub async fn events_after(
        &self,
        kind: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, i64, String, i64)> = sqlx::query_as(
            "SELECT id, kind, customer_id, payload, create_time FROM events \
             WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(kind.to_string())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, kind, customer_id, payload, create_time)| StoredEvent {
                    id,
                    kind,
                    customer_id,
                    payload,
                    create_time,
                },
            )
            .collect())
    }

    /// Events of a customer, oldest first (for tests and support).
    pub async fn customer_events(&self, customer_id: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, i64, String, i64)> = sqlx::query_as(
            "SELECT id, kind, customer_id, payload, create_time FROM events \
             WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, kind, customer_id, payload, create_time)| StoredEvent {
                    id,
                    kind,
                    customer_id,
                    payload,
                    create_time,
                },
            )
            .collect())
    }

    /// Of `ids`, the members of segment `segment_id`.
    pub async fn members_among(&self, segment_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        let mut conn = self.acquire().await?;
        let mut out = Vec::new();
        for &id in ids {
            let found: Option<(i64,)> = sqlx::query_as(
                "SELECT customer_id FROM segment_members WHERE segment_id = $1 \
                 AND customer_id = $2",
            )
            .bind(segment_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if found.is_some() {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The daily scan: a `birthday` event for every live customer born on today's date (UTC;
    /// 29 February in common years on the 28th), once per customer per year; and for each `n`
    /// of `inactive_days`, an `inactive` event for every live customer whose last paid order
    /// is at least `n` days old, once per customer per lapse (per last order). Returns the
    /// events written.
    pub async fn scan_events(&self, inactive_days: &[i64], now: Micros) -> Result<u64> {
        let (year, month, day) = civil(now);
        let today = format!("{month:02}-{day:02}");
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let also = if month == 2 && day == 28 && !leap {
            "02-29".to_string()
        } else {
            today.clone()
        };
        let mut tx = self.write_tx().await?;
        let birthdays = sqlx::query(
            "INSERT INTO events (kind, customer_id, payload, create_time, dedupe_key) \
             SELECT 'birthday', id, '{\"year\": ' || $1 || '}', $2, \
             'birthday:' || CAST(id AS TEXT) || ':' || $1 FROM customers \
             WHERE merged_into IS NULL AND deleted_time IS NULL AND birth_date IS NOT NULL \
             AND substr(birth_date, 6, 5) IN ($3, $4) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(year.to_string())
        .bind(now)
        .bind(today)
        .bind(also)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut inactive = 0;
        for &n in inactive_days {
            let days = n.to_string();
            inactive += sqlx::query(
                "INSERT INTO events (kind, customer_id, payload, create_time, dedupe_key) \
                 SELECT 'inactive', id, '{\"days\": ' || $1 || ', \"last_order_time\": ' || \
                 CAST(last_order_time AS TEXT) || '}', $2, \
                 'inactive:' || CAST(id AS TEXT) || ':' || $1 || ':' || \
                 CAST(last_order_time AS TEXT) FROM customers \
                 WHERE merged_into IS NULL AND deleted_time IS NULL AND order_count > 0 \
                 AND last_order_time IS NOT NULL AND last_order_time <= $3 \
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(days)
            .bind(now)
            .bind(now - n * MICROS_PER_DAY)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(birthdays + inactive)
    }

    // ---- the report --------------------------------------------------------------------------

    /// A campaign's report figures; conversions are paid orders placed within `window` after
    /// a message's create time (treatment) or a holdout decision (holdout).
    pub async fn campaign_report(&self, campaign_id: i64, window: Micros) -> Result<ReportFigures> {
        self.get_campaign(campaign_id).await?;
        let mut conn = self.acquire().await?;
        let (targeted,): (Option<i64>,) = sqlx::query_as(
            "SELECT CAST(SUM(targeted) AS BIGINT) FROM campaign_runs WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(&mut *conn)
        .await?;
        let (held_out, holdout_customers): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM campaign_holdouts \
             WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(&mut *conn)
        .await?;
        let (queued, delivered, failed, treated): (i64, Option<i64>, Option<i64>, i64) =
            sqlx::query_as(
                "SELECT COUNT(*), \
                 CAST(SUM(CASE WHEN status = 'DELIVERED' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN status IN ('FAILED', 'DEAD') THEN 1 ELSE 0 END) AS BIGINT), \
                 COUNT(DISTINCT customer_id) FROM outbox_messages WHERE campaign_id = $1",
            )
            .bind(campaign_id)
            .fetch_one(&mut *conn)
            .await?;
        let (conversions, revenue): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(DISTINCT o.customer_id), CAST(SUM(o.total) AS BIGINT) FROM orders o \
             WHERE o.status = 'PAID' AND EXISTS (SELECT 1 FROM outbox_messages m \
             WHERE m.campaign_id = $1 AND m.customer_id = o.customer_id \
             AND o.placed_time > m.create_time AND o.placed_time <= m.create_time + $2)",
        )
        .bind(campaign_id)
        .bind(window)
        .fetch_one(&mut *conn)
        .await?;
        let (holdout_conversions, holdout_revenue): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(DISTINCT o.customer_id), CAST(SUM(o.total) AS BIGINT) FROM orders o \
             WHERE o.status = 'PAID' AND EXISTS (SELECT 1 FROM campaign_holdouts h \
             WHERE h.campaign_id = $1 AND h.customer_id = o.customer_id \
             AND o.placed_time > h.decide_time AND o.placed_time <= h.decide_time + $2)",
        )
        .bind(campaign_id)
        .bind(window)
        .fetch_one(&mut *conn)
        .await?;
        Ok(ReportFigures {
            targeted: targeted.unwrap_or(0),
            held_out,
            queued,
            delivered: delivered.unwrap_or(0),
            failed: failed.unwrap_or(0),
            treated_customers: treated,
            holdout_customers,
            conversions,
            revenue: revenue.unwrap_or(0),
            holdout_conversions,
            holdout_revenue: holdout_revenue.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::civil;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        // 2024-02-29T12:00:00Z
        assert_eq!(civil(1_709_208_000_000_000), (2024, 2, 29));
        // 2026-11-23T18:00:00Z
        assert_eq!(civil(1_795_456_800_000_000), (2026, 11, 23));
    }
}
