//! Serialising read-check-write transactions on PostgreSQL.
//!
//! A write that reads a row, checks it (an etag, a state, a balance, "is this order id new?")
//! and then writes must not interleave with another doing the same, or the second overwrites
//! the first (a lost update) or trips a unique index (an INTERNAL instead of the idempotent
//! answer). SQLite has one writer at a time (`BEGIN IMMEDIATE`, the writer turn), so there the
//! check always sees the last commit. PostgreSQL runs READ COMMITTED: there every such write
//! takes its lock first, inside its transaction, before it reads what it checks:
//!
//! - [`lock_row`]: `SELECT … FOR UPDATE` on the row it will change; the reads after it see the
//!   latest committed version, and a concurrent writer of the same row waits for this one.
//! - [`lock_key`]: a transaction-scoped advisory lock on a key that has no row yet (an
//!   idempotency key, an order id), so two first attempts queue and the second replays.
//!
//! Both are no-ops on SQLite, and both are released when the transaction ends.

use sqlx::AnyConnection;

use crate::{Backend, Result, Store};

fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name() == "PostgreSQL"
}

/// Lock row `id` of `table` (a constant, never caller text) until the transaction ends. A
/// missing row locks nothing; the caller's own read then reports NOT_FOUND.
pub(crate) async fn lock_row(conn: &mut AnyConnection, table: &'static str, id: i64) -> Result<()> {
    if is_postgres(conn) {
        let sql = format!("SELECT id FROM {table} WHERE id = $1 FOR UPDATE");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Lock `key` (in its namespace, e.g. `order:ORD-1`) until the transaction ends.
pub(crate) async fn lock_key(conn: &mut AnyConnection, key: &str) -> Result<()> {
    if is_postgres(conn) {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) l",
        )
        .bind(key.to_string())
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// The `FOR UPDATE` suffix of a read-then-write query that selects its rows by a condition
    /// (the SLA watcher's due tickets, with `SKIP LOCKED`); empty on SQLite.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}
