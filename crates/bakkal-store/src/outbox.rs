//! The message outbox as the dispatcher and readers see it: messages by id, by campaign or by
//! customer (following merges), and delivery bookkeeping. Campaign runs write messages
//! (`campaigns.rs`); the dispatcher claims due ones under a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; the single writer on SQLite), hands them to a channel sink and records each
//! outcome: DELIVERED, FAILED (to be retried at `next_attempt_time`) or DEAD (given up, with
//! `last_error`). Statuses: QUEUED → SENDING → DELIVERED / FAILED → SENDING … / DEAD.

use bakkal_domain::name::customer_name;
use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::args::{bind, Arg, SqlBuilder};
use crate::campaigns::message_name;
use crate::page::Cursor;
use crate::{Backend, RecordScope, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub campaign_id: i64,
    pub run_id: i64,
    pub customer_id: i64,
    pub channel: String,
    pub subject: String,
    pub body: String,
    pub idempotency_key: String,
    /// `QUEUED`, `SENDING`, `DELIVERED`, `FAILED`, `DEAD`.
    pub status: String,
    pub attempts: i64,
    pub create_time: Micros,
    pub deliver_time: Option<Micros>,
    /// The last delivery error ('' when none).
    pub last_error: String,
    /// When a FAILED message is tried again (`None` otherwise).
    pub next_attempt_time: Option<Micros>,
    /// The service-desk ticket the message belongs to (`campaign_id` is 0 then).
    pub ticket_id: Option<i64>,
    /// An agent or team the message is addressed to (`agents/{id}`, `teams/{id}`; `customer_id`
    /// is 0 then); '' for a message to the customer.
    pub recipient: String,
}

impl OutboxMessage {
    pub fn name(&self) -> String {
        message_name(self.id)
    }
}

/// Whose messages to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageParent {
    Campaign(i64),
    /// A customer's, with those of customers merged into it; a merged-away customer's name
    /// lists its primary's.
    Customer(i64),
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `next_attempt_time`.
    Failed {
        error: String,
        next_attempt_time: Micros,
    },
    /// Give up: the dead letter.
    Dead {
        error: String,
    },
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, campaign_id, run_id, customer_id, channel, \
     subject, body, idempotency_key, status, attempts, create_time, deliver_time, last_error, \
     next_attempt_time, ticket_id, recipient";

pub(crate) fn message_from_row(r: &AnyRow) -> std::result::Result<OutboxMessage, sqlx::Error> {
    let status: String = r.try_get(8)?;
    let next: i64 = r.try_get(13)?;
    Ok(OutboxMessage {
        id: r.try_get(0)?,
        campaign_id: r.try_get(1)?,
        run_id: r.try_get(2)?,
        customer_id: r.try_get(3)?,
        channel: r.try_get(4)?,
        subject: r.try_get(5)?,
        body: r.try_get(6)?,
        idempotency_key: r.try_get(7)?,
        next_attempt_time: (status == "FAILED").then_some(next),
        status,
        attempts: r.try_get(9)?,
        create_time: r.try_get(10)?,
        deliver_time: r.try_get(11)?,
        last_error: r.try_get(12)?,
        ticket_id: r.try_get(14)?,
        recipient: r.try_get(15)?,
    })
}

/// Longest `last_error` kept (bytes, cut at a character boundary).
const MAX_ERROR: usize = 1000;

fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR {
        return s.to_string();
    }
    let mut end = MAX_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Store {
    /// One message, if its customer is in `scope` (NOT_FOUND alike when it is not).
    pub async fn get_message(&self, id: i64, scope: &RecordScope) -> Result<OutboxMessage> {
        let mut b = SqlBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox_messages WHERE id = "
        ));
        b.arg(Arg::Int(id));
        push_message_scope(&mut b, scope);
        match bind(sqlx::query(&b.sql), &b.args)
            .fetch_optional(&mut *self.acquire().await?)
            .await?
        {
            Some(r) => Ok(message_from_row(&r)?),
            None => Err(StoreError::NotFound(message_name(id))),
        }
    }

    /// The customer a name now stands for, following merges (an erased customer stands for
    /// itself). NOT_FOUND when there never was one.
    async fn merge_primary(&self, id: i64) -> Result<i64> {
        let mut current = id;
        for _ in 0..32 {
            let row: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT merged_into FROM customers WHERE id = $1")
                    .bind(current)
                    .fetch_optional(&mut *self.acquire().await?)
                    .await?;
            match row {
                None => break,
                Some((Some(next),)) => current = next,
                Some((None,)) => return Ok(current),
            }
        }
        Err(StoreError::NotFound(customer_name(id)))
    }

    /// A page of a campaign's or a customer's messages, by id: of the customers in `scope`.
    pub async fn list_messages(
        &self,
        parent: MessageParent,
        scope: &RecordScope,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<OutboxMessage>, Option<Cursor>)> {
        let after = match after {
            None => 0,
            Some(Cursor::Int(id, _)) => *id,
            Some(_) => return Err(crate::customers::bad_token()),
        };
        let mut b = SqlBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox_messages WHERE "
        ));
        match parent {
            MessageParent::Campaign(id) => {
                self.get_campaign(id).await?;
                b.push("campaign_id = ").arg(Arg::Int(id));
            }
            // Merges repoint every earlier merge to the new primary, so one level suffices.
            MessageParent::Customer(id) => {
                let primary = self.merge_primary(id).await?;
                b.push("customer_id IN (SELECT id FROM customers WHERE id = ")
                    .arg(Arg::Int(primary))
                    .push(" OR merged_into = ")
                    .arg(Arg::Int(primary))
                    .push(")");
            }
        }
        push_message_scope(&mut b, scope);
        b.push(" AND id > ").arg(Arg::Int(after));
        b.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let mut out = rows
            .iter()
            .map(message_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let next = if out.len() > page_size {
            out.truncate(page_size);
            out.last().map(|m| Cursor::Int(m.id, m.id))
        } else {
            None
        };
        Ok((out, next))
    }

    /// Claim up to `limit` due messages, oldest first: QUEUED ones, FAILED ones whose
    /// `next_attempt_time` has come, and SENDING ones whose lease (taken before
    /// `lease_expired_before`) ran out. They become SENDING with lease `now`, one attempt more.
    /// Each kind is found through an index on its status (`status, id` or
    /// `status, next_attempt_time`).
    pub async fn claim_messages(
        &self,
        limit: usize,
        now: Micros,
        lease_expired_before: Micros,
    ) -> Result<Vec<OutboxMessage>> {
        let finders = |lock: &str| {
            [
                format!(
                "SELECT id FROM outbox_messages WHERE status = 'QUEUED' ORDER BY id LIMIT $1{lock}"
            ),
                format!(
                    "SELECT id FROM outbox_messages WHERE status = 'FAILED' \
                 AND next_attempt_time <= $2 ORDER BY next_attempt_time LIMIT $1{lock}"
                ),
                format!(
                    "SELECT id FROM outbox_messages WHERE status = 'SENDING' AND lease_time < $2 \
                 ORDER BY id LIMIT $1{lock}"
                ),
            ]
        };
        let look = finders("");
        let finders = finders(match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        });
        // Look before taking the write lock: an idle dispatcher polls often, and an empty
        // write transaction would still queue behind writers and retire the read cache.
        let mut due = false;
        for (i, sql) in look.iter().enumerate() {
            let bound = if i == 1 { now } else { lease_expired_before };
            let found: Option<i64> = sqlx::query_scalar(sql)
                .bind(1i64)
                .bind(bound)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
            if found.is_some() {
                due = true;
                break;
            }
        }
        if !due {
            return Ok(Vec::new());
        }
        let mut tx = self.background_write_tx().await?;
        let mut ids: Vec<i64> = Vec::new();
        for (i, sql) in finders.iter().enumerate() {
            if ids.len() >= limit {
                break;
            }
            let bound = if i == 1 { now } else { lease_expired_before };
            let found: Vec<i64> = sqlx::query_scalar(sql)
                .bind((limit - ids.len()) as i64)
                .bind(bound)
                .fetch_all(&mut *tx)
                .await?;
            ids.extend(found);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = SqlBuilder::new("UPDATE outbox_messages SET status = 'SENDING', lease_time = ");
        q.arg(Arg::Int(now));
        q.push(", attempts = attempts + 1 WHERE id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.arg(Arg::Int(*id));
        }
        q.push(&format!(") RETURNING {MESSAGE_COLUMNS}"));
        let rows = bind(sqlx::query(&q.sql), &q.args)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = rows
            .iter()
            .map(message_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        tx.commit().await?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Record delivery outcomes of claimed (SENDING) messages, all in one transaction.
    pub async fn record_deliveries(
        &self,
        outcomes: &[(i64, DeliveryOutcome)],
        now: Micros,
    ) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let delivered: Vec<i64> = outcomes
            .iter()
            .filter(|(_, o)| *o == DeliveryOutcome::Delivered)
            .map(|(id, _)| *id)
            .collect();
        let mut tx = self.background_write_tx().await?;
        for chunk in delivered.chunks(500) {
            let mut q = SqlBuilder::new(
                "UPDATE outbox_messages SET status = 'DELIVERED', lease_time = NULL, \
                 last_error = '', deliver_time = ",
            );
            q.arg(Arg::Int(now));
            q.push(" WHERE status = 'SENDING' AND id IN (");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.arg(Arg::Int(*id));
            }
            q.push(")");
            bind(sqlx::query(&q.sql), &q.args).execute(&mut *tx).await?;
        }
        for (id, outcome) in outcomes {
            let (status, error, next) = match outcome {
                DeliveryOutcome::Delivered => continue,
                DeliveryOutcome::Failed {
                    error,
                    next_attempt_time,
                } => ("FAILED", error, *next_attempt_time),
                DeliveryOutcome::Dead { error } => ("DEAD", error, 0),
            };
            sqlx::query(
                "UPDATE outbox_messages SET status = $1, lease_time = NULL, last_error = $2, \
                 next_attempt_time = $3 WHERE id = $4 AND status = 'SENDING'",
            )
            .bind(status.to_string())
            .bind(clip(error))
            .bind(next)
            .bind(*id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Append ` AND …` keeping the messages of customers in `scope`.
fn push_message_scope(b: &mut SqlBuilder, scope: &RecordScope) {
    if scope.is_all() {
        return;
    }
    b.push(" AND customer_id IN (SELECT c.id FROM customers c WHERE 1 = 1");
    scope.push_customers(b, "c.");
    b.push(")");
}
