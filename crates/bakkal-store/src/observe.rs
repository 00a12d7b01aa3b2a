//! What the store lets an operator see: an observer it tells how long each connection and
//! each SQLite writer turn was waited for, the pool's state, and the figures of the work still
//! queued in the database (the outbox, running campaign runs, SLA clocks due), read by cheap
//! index-backed queries. The store knows nothing of the metrics format; the transport does.

use std::time::Duration;

use bakkal_domain::time::Micros;
use sqlx::AnyConnection;

use crate::{Result, Store};

/// Told of waits as they happen; called on the request path, so it must be cheap (an atomic
/// add or a histogram sample), never block.
pub trait StoreObserver: Send + Sync + std::fmt::Debug {
    /// A connection was taken from the pool after `wait` (`ok`: false when the wait timed out
    /// or the pool is closed).
    fn pool_acquired(&self, wait: Duration, ok: bool);
    /// A write transaction on SQLite got the writer turn after `wait`; `background`: the
    /// outbox dispatcher's, which first lets foreground writers go (that yield included).
    fn write_turn(&self, wait: Duration, background: bool);
}

/// The connection pool now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open (idle and in use).
    pub open: u32,
    pub idle: u32,
    /// The pool's limit.
    pub max: u32,
}

/// The work waiting in the database, shared by every server on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkFigures {
    /// Outbox messages not yet handed to a sink.
    pub outbox_queued: i64,
    /// Claimed by a dispatcher and being sent.
    pub outbox_sending: i64,
    /// Failed once or more, waiting for their next attempt.
    pub outbox_failed: i64,
    /// When the oldest QUEUED message was written.
    pub oldest_queued: Option<Micros>,
    /// The earliest next attempt of a FAILED message.
    pub earliest_retry: Option<Micros>,
    /// Campaign runs RUNNING (on any server).
    pub runs_running: i64,
    /// The earliest SLA mark of a ticket the SLA watcher has still to look at.
    pub earliest_sla_check: Option<Micros>,
}

impl Store {
    /// The pool's connections now (no I/O).
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    /// The work waiting in the database. Every count and minimum reads one of the partial
    /// indexes the dispatcher, scheduler and SLA watcher use themselves (the outbox's status
    /// indexes hold only the undelivered messages), so this stays cheap however many messages
    /// were ever delivered; a caller still should not ask more than every few seconds.
    pub async fn work_figures(&self) -> Result<WorkFigures> {
        let mut conn = self.acquire().await?;
        let c = &mut *conn;
        let outbox_queued = count(
            c,
            "SELECT COUNT(*) FROM outbox_messages WHERE status = 'QUEUED'",
        )
        .await?;
        let outbox_sending = count(
            c,
            "SELECT COUNT(*) FROM outbox_messages WHERE status = 'SENDING'",
        )
        .await?;
        let outbox_failed = count(
            c,
            "SELECT COUNT(*) FROM outbox_messages WHERE status = 'FAILED'",
        )
        .await?;
        let runs_running = count(
            c,
            "SELECT COUNT(*) FROM campaign_runs WHERE state = 'RUNNING'",
        )
        .await?;
        // the oldest queued message is the one with the lowest id (ids grow with time)
        let oldest_queued = first(
            c,
            "SELECT create_time FROM outbox_messages WHERE status = 'QUEUED' ORDER BY id LIMIT 1",
        )
        .await?;
        let earliest_retry = first(
            c,
            "SELECT MIN(next_attempt_time) FROM outbox_messages WHERE status = 'FAILED'",
        )
        .await?;
        let earliest_sla_check = first(
            c,
            "SELECT MIN(next_sla_check_time) FROM tickets WHERE next_sla_check_time IS NOT NULL",
        )
        .await?;
        Ok(WorkFigures {
            outbox_queued,
            outbox_sending,
            outbox_failed,
            oldest_queued,
            earliest_retry,
            runs_running,
            earliest_sla_check,
        })
    }
}

async fn count(conn: &mut AnyConnection, sql: &str) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(conn).await?)
}

/// The one value of a query giving at most one row, `None` for no row or NULL.
async fn first(conn: &mut AnyConnection, sql: &str) -> Result<Option<Micros>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(sql)
        .fetch_optional(conn)
        .await?
        .flatten())
}
