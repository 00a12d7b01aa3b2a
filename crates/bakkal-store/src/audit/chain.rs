//! Appending to the chain. Appends serialise on the chain head: on SQLite the writer turn
//! already orders every write transaction; on PostgreSQL `bakkal_audit_append` (migration
//! 0016) takes the transaction-scoped advisory lock `audit:chain` (the key `lock::lock_key`
//! would take), reads the head and inserts, in one round trip at commit time, so the lock is
//! held only while the transaction commits.
//!
//! On SQLite an append is one call (the event, with its key's row when it has one): it tries
//! the seq after the head this process last committed (the `hint`) with `ON CONFLICT (seq) DO NOTHING`. seq is gapless and never
//! deleted, so when that seq is free the hint is still the head; when another process appended
//! meanwhile, nothing is written and the append reads the head and goes again. The write
//! transaction (BEGIN IMMEDIATE) keeps every other writer out until it commits.

use bakkal_domain::audit::{chain_hash, NewAuditEvent, GENESIS};
use sqlx::AnyConnection;

use super::seal::EventKey;
use crate::Result;

/// The SQLite insert of one event (`$1`–`$14`), skipped when its seq is taken.
macro_rules! insert_event {
    () => {
        "INSERT INTO audit_events (seq, time, principal, key_id, request_id, peer, method, \
         resource, action, result, code, changes, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (seq) DO NOTHING"
    };
}

/// Append `e` after the chain head; with `key`, store the key that sealed its personal
/// values (for customer `key.0`) in the same statement on PostgreSQL. On SQLite, `hint` is
/// the head as last known, and the answer is the new head (`None` on PostgreSQL, whose
/// function reads the head itself).
pub(crate) async fn append(
    conn: &mut AnyConnection,
    e: &NewAuditEvent,
    key: Option<(i64, &EventKey)>,
    hint: Option<(i64, String)>,
) -> Result<Option<(i64, String)>> {
    let changes = e.changes_text();
    let canonical = e.canonical_with(&changes);
    if conn.backend_name() == "PostgreSQL" {
        let sql = if key.is_some() {
            "WITH k AS (INSERT INTO audit_keys (key_id, customer_id, key) VALUES ($13, $14, $15)) \
             SELECT bakkal_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        } else {
            "SELECT bakkal_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        };
        let mut q = sqlx::query_scalar(sql)
            .bind(e.time)
            .bind(e.actor.principal.clone())
            .bind(e.actor.key_id.clone())
            .bind(e.actor.request_id.clone())
            .bind(e.actor.peer.clone())
            .bind(e.actor.method.clone())
            .bind(e.resource.clone())
            .bind(e.action.as_str())
            .bind(e.result.as_str())
            .bind(e.code.clone())
            .bind(changes)
            .bind(canonical);
        if let Some((customer, k)) = key {
            q = q.bind(k.id.clone()).bind(customer).bind(k.key_text());
        }
        let _seq: i64 = q.fetch_one(&mut *conn).await?;
        return Ok(None);
    }
    // the event's key rides in the same call as the event's first try: one trip to SQLite's
    // worker thread, which is what an append costs inside the writer's turn
    let mut key = key;
    let mut hint = hint;
    loop {
        let from_hint = hint.is_some();
        let (prev_seq, prev_hash) = match hint.take() {
            Some(h) => h,
            None => read_head(conn).await?,
        };
        let seq = prev_seq + 1;
        let hash = chain_hash(&prev_hash, seq, &canonical);
        let with_key = key.take();
        let sql = if with_key.is_some() {
            concat!(
                "INSERT INTO audit_keys (key_id, customer_id, key) VALUES ($15, $16, $17); ",
                insert_event!()
            )
        } else {
            insert_event!()
        };
        let mut q = sqlx::query(sql)
            .bind(seq)
            .bind(e.time)
            .bind(e.actor.principal.clone())
            .bind(e.actor.key_id.clone())
            .bind(e.actor.request_id.clone())
            .bind(e.actor.peer.clone())
            .bind(e.actor.method.clone())
            .bind(e.resource.clone())
            .bind(e.action.as_str())
            .bind(e.result.as_str())
            .bind(e.code.clone())
            .bind(changes.clone())
            .bind(prev_hash)
            .bind(hash.clone());
        if let Some((customer, k)) = with_key {
            q = q.bind(k.id.clone()).bind(customer).bind(k.key_text());
        }
        // the key's row (when sent) counts too; it is in whether or not the event went in
        let written = q
            .execute(&mut *conn)
            .await?
            .rows_affected()
            .saturating_sub(u64::from(with_key.is_some()));
        if written == 1 {
            return Ok(Some((seq, hash)));
        }
        if !from_hint {
            // the head just read is taken: only a database changed behind the writer lock
            return Err(crate::StoreError::Aborted(format!(
                "the audit trail's seq {seq} is taken though {prev_seq} is the head; retry"
            )));
        }
    }
}

/// The chain's head, or the genesis before the first event.
async fn read_head(conn: &mut AnyConnection) -> Result<(i64, String)> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(head.unwrap_or((0, GENESIS.to_string())))
}
