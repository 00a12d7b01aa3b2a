//! Loyalty points: the program (earn rule, expiry, tiers), one account per customer and the
//! points ledger.
//!
//! * Points are whole numbers. An order earns `points_per_unit` per currency unit of each
//!   line (times the line category's multiplier), rounded once per order; it is earned in the
//!   order's own transaction ([`order_recorded`]), and reversed there when the order is
//!   refunded.
//! * Credits (EARN, a positive ADJUST) are **lots**: `remaining` is what debits (REDEEM,
//!   EXPIRE, a negative ADJUST, REFUND) have not taken yet, oldest lot first (FIFO);
//!   `expire_time` is when what remains expires. [`Store::expire_points`] writes one EXPIRE
//!   per lot, keyed by the lot, so a lot expires exactly once however often the sweep runs.
//! * Tiers: the highest tier whose threshold the customer's tier points reach; tier points are
//!   the points earned (EARN less REFUND) over the last `tier_window_days` days, or over the
//!   account's life when that is 0. A change writes a `tier_changed` event
//!   (`{"ladder":"loyalty","from":…,"to":…,"points":…}`) in the same transaction.
//! * Every write locks the account row first (an upsert), so the writes of one customer
//!   follow each other on both databases; each ledger row has a unique idempotency key.

use std::collections::BTreeMap;

use bakkal_domain::order::MICROS_PER_UNIT;
use bakkal_domain::time::{Micros, MICROS_PER_DAY};
use bakkal_domain::{Order, OrderStatus};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::customers::load_live;
use crate::lock::lock_key;
use crate::page::Cursor;
use crate::{Result, Store, StoreError};

/// Points expiring within this many days are "expiring soon" on an account.
pub const EXPIRING_SOON_DAYS: i64 = 30;

/// How an order's points are rounded to a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rounding {
    #[default]
    Floor,
    Nearest,
    Ceil,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyTier {
    pub name: String,
    /// Tier points needed.
    pub threshold: i64,
}

/// The loyalty program's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyProgram {
    /// Points per currency unit spent (any currency, no conversion).
    pub points_per_unit: f64,
    /// Multipliers by line category (lower-case); 1 when not listed.
    #[serde(default)]
    pub category_multipliers: BTreeMap<String, f64>,
    #[serde(default)]
    pub rounding: Rounding,
    /// Earned points expire this many days after they were earned; 0: never.
    #[serde(default)]
    pub expiry_days: i64,
    /// Tier points count the last this many days; 0: the account's whole life.
    #[serde(default)]
    pub tier_window_days: i64,
    /// Ascending thresholds.
    #[serde(default)]
    pub tiers: Vec<LoyaltyTier>,
}

impl Default for LoyaltyProgram {
    fn default() -> Self {
        LoyaltyProgram {
            points_per_unit: 1.0,
            category_multipliers: BTreeMap::new(),
            rounding: Rounding::Floor,
            expiry_days: 0,
            tier_window_days: 0,
            tiers: Vec::new(),
        }
    }
}

impl LoyaltyProgram {
    /// Points an order earns.
    pub fn earn(&self, order: &Order) -> i64 {
        let raw: f64 = order
            .lines
            .iter()
            .map(|l| {
                let amount = l.quantity.saturating_mul(l.unit_price) as f64 / MICROS_PER_UNIT;
                let m = self
                    .category_multipliers
                    .get(&l.category.to_lowercase())
                    .copied()
                    .unwrap_or(1.0);
                amount * self.points_per_unit * m
            })
            .sum();
        let rounded = match self.rounding {
            Rounding::Floor => (raw + 1e-9).floor(),
            Rounding::Nearest => raw.round(),
            Rounding::Ceil => (raw - 1e-9).ceil(),
        };
        if rounded.is_finite() && rounded > 0.0 {
            rounded.min(i64::MAX as f64 / 4.0) as i64
        } else {
            0
        }
    }

    /// The tier for `points` ("" below the first threshold) and the next one, if any.
    pub fn tier_for(&self, points: i64) -> (&str, Option<&LoyaltyTier>) {
        let mut current = "";
        let mut next = None;
        for t in &self.tiers {
            if points >= t.threshold {
                current = &t.name;
            } else {
                next = Some(t);
                break;
            }
        }
        (current, next)
    }
}

/// The program as stored: `version` 0 is the default program, never saved.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProgram {
    pub program: LoyaltyProgram,
    pub version: i64,
    pub update_time: Micros,
}

impl StoredProgram {
    pub fn etag(&self) -> String {
        bakkal_domain::customer::etag(self.version)
    }
}

/// A customer's account as read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoyaltyAccount {
    pub customer_id: i64,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub tier: String,
    /// What the tier is decided on (see the module).
    pub tier_points: i64,
    pub next_tier: Option<String>,
    pub points_to_next_tier: i64,
    /// Points expiring within [`EXPIRING_SOON_DAYS`] and the first of those expiries.
    pub expiring_soon: i64,
    pub next_expire_time: Option<Micros>,
    pub update_time: Option<Micros>,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsTransaction {
    pub id: i64,
    pub customer_id: i64,
    /// EARN, REDEEM, EXPIRE, ADJUST or REFUND.
    pub kind: String,
    /// Signed: credits positive, debits negative.
    pub points: i64,
    pub balance_after: i64,
    pub reason: String,
    pub order_id: Option<String>,
    pub expire_time: Option<Micros>,
    pub create_time: Micros,
}

/// A debit larger than the balance: nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub balance: i64,
    pub requested: i64,
}

/// What an expiry sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryOutcome {
    pub transactions: i64,
    pub points: i64,
    pub accounts: i64,
}

const TXN_COLUMNS: &str =
    "id, customer_id, kind, points, balance_after, reason, order_id, expire_time, create_time";

fn txn_from_row(r: &AnyRow) -> std::result::Result<PointsTransaction, sqlx::Error> {
    Ok(PointsTransaction {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        points: r.try_get(3)?,
        balance_after: r.try_get(4)?,
        reason: r.try_get(5)?,
        order_id: r.try_get(6)?,
        expire_time: r.try_get(7)?,
        create_time: r.try_get(8)?,
    })
}

async fn program_in(conn: &mut AnyConnection) -> Result<StoredProgram> {
    let row =
        sqlx::query("SELECT settings, version, update_time FROM loyalty_program WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    let Some(r) = row else {
        return Ok(StoredProgram {
            program: LoyaltyProgram::default(),
            version: 0,
            update_time: 0,
        });
    };
    let settings: String = r.try_get(0)?;
    Ok(StoredProgram {
        program: serde_json::from_str(&settings).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        version: r.try_get(1)?,
        update_time: r.try_get(2)?,
    })
}

/// The account row, created if missing, and locked for the rest of the transaction.
struct Locked {
    customer_id: i64,
    balance: i64,
    lifetime_earned: i64,
    tier: String,
}

async fn lock_account(
    conn: &mut AnyConnection,
    program: &LoyaltyProgram,
    customer_id: i64,
    now: Micros,
) -> Result<Locked> {
    let initial = program.tier_for(0).0.to_string();
    let r = sqlx::query(
        "INSERT INTO loyalty_accounts (customer_id, tier, create_time, update_time) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (customer_id) DO UPDATE SET \
         update_time = excluded.update_time RETURNING balance, lifetime_earned, tier",
    )
    .bind(customer_id)
    .bind(initial)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Locked {
        customer_id,
        balance: r.try_get(0)?,
        lifetime_earned: r.try_get(1)?,
        tier: r.try_get(2)?,
    })
}

async fn by_key(conn: &mut AnyConnection, key: &str) -> Result<Option<PointsTransaction>> {
    let sql = format!("SELECT {TXN_COLUMNS} FROM points_transactions WHERE idempotency_key = $1");
    let row = sqlx::query(&sql)
        .bind(key.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| txn_from_row(&r)).transpose()?)
}

/// A ledger row to write.
struct Entry<'a> {
    kind: &'a str,
    points: i64,
    reason: &'a str,
    order_id: Option<&'a str>,
    key: &'a str,
    /// Credits only.
    expire_time: Option<Micros>,
}

async fn insert_entry(
    conn: &mut AnyConnection,
    acct: &Locked,
    e: &Entry<'_>,
    now: Micros,
) -> Result<PointsTransaction> {
    let remaining = if e.points > 0 { e.points } else { 0 };
    let sql = format!(
        "INSERT INTO points_transactions (customer_id, kind, points, balance_after, reason, \
         order_id, idempotency_key, remaining, expire_time, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {TXN_COLUMNS}"
    );
    let r = sqlx::query(&sql)
        .bind(acct.customer_id)
        .bind(e.kind.to_string())
        .bind(e.points)
        .bind(acct.balance)
        .bind(e.reason.to_string())
        .bind(e.order_id.map(str::to_string))
        .bind(e.key.to_string())
        .bind(remaining)
        .bind(e.expire_time)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    Ok(txn_from_row(&r)?)
}

/// Take `points` from the customer's lots, oldest first, as far as they go.
async fn consume_lots(conn: &mut AnyConnection, customer_id: i64, points: i64) -> Result<()> {
    let mut left = points;
    if left <= 0 {
        return Ok(());
    }
    let lots = sqlx::query(
        "SELECT id, remaining FROM points_transactions WHERE customer_id = $1 AND remaining > 0 \
         ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    for lot in lots {
        if left == 0 {
            break;
        }
        let id: i64 = lot.try_get(0)?;
        let remaining: i64 = lot.try_get(1)?;
        let take = remaining.min(left);
        sqlx::query("UPDATE points_transactions SET remaining = remaining - $1 WHERE id = $2")
            .bind(take)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        left -= take;
    }
    Ok(())
}

/// Write the account's new numbers, re-decide its tier and record a change of tier.
async fn settle(
    conn: &mut AnyConnection,
    program: &LoyaltyProgram,
    acct: &Locked,
    old_tier: &str,
    now: Micros,
) -> Result<()> {
    let points = tier_points(conn, program, acct.customer_id, acct.lifetime_earned, now).await?;
    let tier = program.tier_for(points).0;
    sqlx::query(
        "UPDATE loyalty_accounts SET balance = $1, lifetime_earned = $2, tier = $3, \
         update_time = $4 WHERE customer_id = $5",
    )
    .bind(acct.balance)
    .bind(acct.lifetime_earned)
    .bind(tier.to_string())
    .bind(now)
    .bind(acct.customer_id)
    .execute(&mut *conn)
    .await?;
    if tier != old_tier {
        let payload = serde_json::json!({
            "ladder": "loyalty",
            "from": old_tier,
            "to": tier,
            "points": points,
        });
        sqlx::query(
            "INSERT INTO events (kind, customer_id, payload, create_time) \
             VALUES ('tier_changed', $1, $2, $3)",
        )
        .bind(acct.customer_id)
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn tier_points(
    conn: &mut AnyConnection,
    program: &LoyaltyProgram,
    customer_id: i64,
    lifetime: i64,
    now: Micros,
) -> Result<i64> {
    if program.tier_window_days <= 0 {
        return Ok(lifetime);
    }
    let since = now.saturating_sub(program.tier_window_days.saturating_mul(MICROS_PER_DAY));
    let r = sqlx::query(
        "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM points_transactions \
         WHERE customer_id = $1 AND kind IN ('EARN', 'REFUND') AND create_time >= $2",
    )
    .bind(customer_id)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    Ok(r.try_get(0)?)
}

/// Earn or reverse an order's points inside the order's transaction: a PAID order earns once
/// (keyed by the order), a REFUNDED one gives back what it earned once. `changed` is false
/// when recording the order changed nothing.
pub(crate) async fn order_recorded(
    conn: &mut AnyConnection,
    order: &Order,
    changed: bool,
    now: Micros,
) -> Result<()> {
    if !changed {
        return Ok(());
    }
    let sp = program_in(conn).await?;
    let program = &sp.program;
    match order.status {
        OrderStatus::Paid => {
            let points = program.earn(order);
            let key = format!("earn:{}", order.order_id);
            if points == 0 || by_key(conn, &key).await?.is_some() {
                return Ok(());
            }
            let mut acct = lock_account(conn, program, order.customer_id, now).await?;
            let old = acct.tier.clone();
            acct.balance = acct.balance.saturating_add(points);
            acct.lifetime_earned = acct.lifetime_earned.saturating_add(points);
            let expire_time = (program.expiry_days > 0)
                .then(|| now.saturating_add(program.expiry_days.saturating_mul(MICROS_PER_DAY)));
            let reason = format!("order {}", order.order_id);
            insert_entry(
                conn,
                &acct,
                &Entry {
                    kind: "EARN",
                    points,
                    reason: &reason,
                    order_id: Some(&order.order_id),
                    key: &key,
                    expire_time,
                },
                now,
            )
            .await?;
            settle(conn, program, &acct, &old, now).await
        }
        OrderStatus::Refunded => {
            let Some(earned) = by_key(conn, &format!("earn:{}", order.order_id)).await? else {
                return Ok(());
            };
            let key = format!("refund:{}", order.order_id);
            if by_key(conn, &key).await?.is_some() {
                return Ok(());
            }
            let mut acct = lock_account(conn, program, order.customer_id, now).await?;
            let old = acct.tier.clone();
            let points = earned.points;
            consume_lots(conn, acct.customer_id, points).await?;
            // A refund may take the balance below zero when the points were spent already.
            acct.balance = acct.balance.saturating_sub(points);
            acct.lifetime_earned = acct.lifetime_earned.saturating_sub(points);
            let reason = format!("order {} refunded", order.order_id);
            insert_entry(
                conn,
                &acct,
                &Entry {
                    kind: "REFUND",
                    points: -points,
                    reason: &reason,
                    order_id: Some(&order.order_id),
                    key: &key,
                    expire_time: None,
                },
                now,
            )
            .await?;
            settle(conn, program, &acct, &old, now).await
        }
    }
}

impl Store {
    pub async fn loyalty_program(&self) -> Result<StoredProgram> {
        let mut conn = self.acquire().await?;
        program_in(&mut conn).await
    }

    /// Replace the program's settings; `expected_version`, when given, must be current.
    pub async fn update_loyalty_program(
        &self,
        program: LoyaltyProgram,
        expected_version: Option<i64>,
        now: Micros,
    ) -> Result<StoredProgram> {
        let mut tx = self.write_tx().await?;
        // the program's row may not exist yet: lock its key
        lock_key(&mut tx, "loyalty_program").await?;
        let current = program_in(&mut tx).await?;
        if let Some(v) = expected_version {
            if v != current.version {
                return Err(StoreError::Aborted(format!(
                    "the loyalty program changed (etag {}); read it again",
                    current.etag()
                )));
            }
        }
        let settings = serde_json::to_string(&program)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        let version = current.version + 1;
        sqlx::query(
            "INSERT INTO loyalty_program (id, settings, version, update_time) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, \
             version = excluded.version, update_time = excluded.update_time",
        )
        .bind(settings)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredProgram {
            program,
            version,
            update_time: now,
        })
    }

    /// A customer's account (merges followed); an empty one when nothing happened yet.
    pub async fn loyalty_account(&self, customer_id: i64, now: Micros) -> Result<LoyaltyAccount> {
        let mut conn = self.acquire().await?;
        let c = load_live(&mut conn, customer_id).await?;
        let sp = program_in(&mut conn).await?;
        let row = sqlx::query(
            "SELECT balance, lifetime_earned, update_time FROM loyalty_accounts \
             WHERE customer_id = $1",
        )
        .bind(c.id)
        .fetch_optional(&mut *conn)
        .await?;
        let (balance, lifetime, update_time) = match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?, Some(r.try_get(2)?)),
            None => (0, 0, None),
        };
        let points = tier_points(&mut conn, &sp.program, c.id, lifetime, now).await?;
        let (tier, next) = sp.program.tier_for(points);
        let soon = sqlx::query(
            "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT), MIN(expire_time) \
             FROM points_transactions WHERE customer_id = $1 AND remaining > 0 \
             AND expire_time IS NOT NULL AND expire_time <= $2",
        )
        .bind(c.id)
        .bind(now.saturating_add(EXPIRING_SOON_DAYS * MICROS_PER_DAY))
        .fetch_one(&mut *conn)
        .await?;
        Ok(LoyaltyAccount {
            customer_id: c.id,
            balance,
            lifetime_earned: lifetime,
            tier: tier.to_string(),
            tier_points: points,
            next_tier: next.map(|t| t.name.clone()),
            points_to_next_tier: next.map_or(0, |t| (t.threshold - points).max(0)),
            expiring_soon: soon.try_get(0)?,
            next_expire_time: soon.try_get(1)?,
            update_time,
        })
    }

    /// A customer's ledger, newest first.
    pub async fn list_points_transactions(
        &self,
        customer_id: i64,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<PointsTransaction>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let c = load_live(&mut conn, customer_id).await?;
        let before = match after {
            Some(Cursor::Int(_, id)) => *id,
            Some(_) => return Err(crate::customers::bad_token()),
            None => i64::MAX,
        };
        let sql = format!(
            "SELECT {TXN_COLUMNS} FROM points_transactions WHERE customer_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(c.id)
            .bind(before)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        let txns = rows
            .iter()
            .map(txn_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(crate::page::split_page(txns, page_size, |t| {
            Cursor::Int(t.id, t.id)
        }))
    }

    /// Spend points (`kind` REDEEM, `points` > 0) or adjust them (`kind` ADJUST, either
    /// sign). A known `request_id` gives back the transaction it made; a debit beyond the
    /// balance is a [`Shortfall`] and writes nothing.
    pub async fn change_points(
        &self,
        customer_id: i64,
        kind: &str,
        points: i64,
        reason: &str,
        request_id: &str,
        now: Micros,
    ) -> Result<std::result::Result<PointsTransaction, Shortfall>> {
        let mut tx = self.write_tx().await?;
        let c = load_live(&mut tx, customer_id).await?;
        let key = if request_id.is_empty() {
            format!("{}:{}:{}", kind.to_lowercase(), c.id, uuid_like(now))
        } else {
            format!("{}:{}:{request_id}", kind.to_lowercase(), c.id)
        };
        let sp = program_in(&mut tx).await?;
        let program = &sp.program;
        // Lock first, then look for the request: a concurrent retry waits for the first
        // attempt and then finds it.
        let mut acct = lock_account(&mut tx, program, c.id, now).await?;
        if let Some(done) = by_key(&mut tx, &key).await? {
            return Ok(Ok(done));
        }
        let old = acct.tier.clone();
        let signed = if kind == "REDEEM" { -points } else { points };
        let mut expire_time = None;
        if signed < 0 {
            if acct.balance < -signed {
                return Ok(Err(Shortfall {
                    balance: acct.balance,
                    requested: -signed,
                }));
            }
            consume_lots(&mut tx, acct.customer_id, -signed).await?;
        } else if program.expiry_days > 0 {
            expire_time =
                Some(now.saturating_add(program.expiry_days.saturating_mul(MICROS_PER_DAY)));
        }
        acct.balance = acct.balance.saturating_add(signed);
        let t = insert_entry(
            &mut tx,
            &acct,
            &Entry {
                kind,
                points: signed,
                reason,
                order_id: None,
                key: &key,
                expire_time,
            },
            now,
        )
        .await?;
        settle(&mut tx, program, &acct, &old, now).await?;
        tx.audit(
            account_name(acct.customer_id),
            bakkal_domain::audit::AuditAction::Change,
            points_change(kind, signed),
        );
        tx.commit().await?;
        Ok(Ok(t))
    }

    /// Expire what is left of every lot due at `now`: one EXPIRE per lot (keyed by the lot, so
    /// never twice), one transaction per customer.
    pub async fn expire_points(&self, now: Micros) -> Result<ExpiryOutcome> {
        let mut out = ExpiryOutcome::default();
        loop {
            let due = sqlx::query(
                "SELECT DISTINCT customer_id FROM points_transactions \
                 WHERE remaining > 0 AND expire_time IS NOT NULL AND expire_time <= $1 \
                 ORDER BY customer_id LIMIT 200",
            )
            .bind(now)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
            if due.is_empty() {
                return Ok(out);
            }
            for r in due {
                let customer_id: i64 = r.try_get(0)?;
                let (n, points) = self.expire_account(customer_id, now).await?;
                out.transactions += n;
                out.points += points;
                out.accounts += 1;
            }
        }
    }

    async fn expire_account(&self, customer_id: i64, now: Micros) -> Result<(i64, i64)> {
        let mut tx = self.write_tx().await?;
        let sp = program_in(&mut tx).await?;
        let program = &sp.program;
        let mut acct = lock_account(&mut tx, program, customer_id, now).await?;
        let old = acct.tier.clone();
        let lots = sqlx::query(
            "SELECT id, remaining FROM points_transactions WHERE customer_id = $1 \
             AND remaining > 0 AND expire_time IS NOT NULL AND expire_time <= $2 ORDER BY id",
        )
        .bind(customer_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let (mut n, mut total) = (0, 0);
        for lot in lots {
            let id: i64 = lot.try_get(0)?;
            let remaining: i64 = lot.try_get(1)?;
            sqlx::query("UPDATE points_transactions SET remaining = 0 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let key = format!("expire:{id}");
            if by_key(&mut tx, &key).await?.is_some() {
                continue;
            }
            acct.balance = acct.balance.saturating_sub(remaining);
            let reason = format!("unspent points of transaction {id} expired");
            insert_entry(
                &mut tx,
                &acct,
                &Entry {
                    kind: "EXPIRE",
                    points: -remaining,
                    reason: &reason,
                    order_id: None,
                    key: &key,
                    expire_time: None,
                },
                now,
            )
            .await?;
            n += 1;
            total += remaining;
        }
        settle(&mut tx, program, &acct, &old, now).await?;
        if n > 0 {
            // the sweeper's change (system:loyalty-sweeper, or RunExpirySweep's caller)
            tx.audit(
                account_name(acct.customer_id),
                bakkal_domain::audit::AuditAction::Change,
                points_change("EXPIRE", -total),
            );
        }
        tx.commit().await?;
        Ok((n, total))
    }
}

/// A unique key part for a change without a request id.
fn uuid_like(now: Micros) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "auto-{now}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `customers/{id}/loyaltyAccount`.
fn account_name(customer_id: i64) -> String {
    format!(
        "{}/loyaltyAccount",
        bakkal_domain::name::customer_name(customer_id)
    )
}

/// What a points change's audit event records: its kind and signed points.
fn points_change(kind: &str, points: i64) -> Vec<bakkal_domain::audit::FieldChange> {
    vec![bakkal_domain::audit::FieldChange {
        field: format!("points.{}", kind.to_lowercase()),
        before: None,
        after: Some(points.to_string()),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakkal_domain::OrderLine;

    fn order(lines: &[(&str, i64, f64)]) -> Order {
        Order {
            order_id: "A".into(),
            customer_id: 1,
            lines: lines
                .iter()
                .map(|(cat, q, p)| OrderLine {
                    sku: "S".into(),
                    category: cat.to_string(),
                    quantity: *q,
                    unit_price: (*p * MICROS_PER_UNIT) as i64,
                })
                .collect(),
            currency: "TRY".into(),
            placed_time: 0,
            status: OrderStatus::Paid,
            create_time: 0,
        }
    }

    #[test]
    fn earn_rule_multipliers_and_rounding() {
        let mut p = LoyaltyProgram {
            points_per_unit: 0.1,
            ..Default::default()
        };
        p.category_multipliers.insert("coffee".into(), 2.0);
        let o = order(&[("coffee", 2, 12.5), ("tea", 1, 9.0)]);
        // 25 * 0.1 * 2 + 9 * 0.1 = 5.9
        assert_eq!(p.earn(&o), 5);
        p.rounding = Rounding::Nearest;
        assert_eq!(p.earn(&o), 6);
        p.rounding = Rounding::Ceil;
        assert_eq!(p.earn(&order(&[("tea", 1, 10.0)])), 1);
        p.rounding = Rounding::Floor;
        assert_eq!(p.earn(&order(&[("tea", 1, 10.0)])), 1);
    }

    #[test]
    fn tiers_by_threshold() {
        let p = LoyaltyProgram {
            tiers: vec![
                LoyaltyTier {
                    name: "Silver".into(),
                    threshold: 100,
                },
                LoyaltyTier {
                    name: "Gold".into(),
                    threshold: 500,
                },
            ],
            ..Default::default()
        };
        assert_eq!(p.tier_for(0).0, "");
        assert_eq!(p.tier_for(99).1.unwrap().name, "Silver");
        assert_eq!(p.tier_for(100).0, "Silver");
        assert_eq!(p.tier_for(600).0, "Gold");
        assert!(p.tier_for(600).1.is_none());
    }
}
