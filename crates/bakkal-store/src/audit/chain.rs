//! Appending to the chain. Appends serialise on the chain head: on SQLite the writer turn
//! already orders every write transaction; on PostgreSQL `bakkal_audit_append` (migration
//! 0016) takes the transaction-scoped advisory lock `audit:chain` (the key `lock::lock_key`
//! would take), reads the head and inserts, in one round trip at commit time, so the lock is
//! held only while the transaction commits.

use bakkal_domain::audit::{chain_hash, NewAuditEvent, GENESIS};
use sqlx::AnyConnection;

use super::seal::EventKey;
use crate::Result;

/// Append `e` after the chain head; with `key`, store the key that sealed its personal
/// values (for customer `key.0`) in the same statement on PostgreSQL.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    e: &NewAuditEvent,
    key: Option<(i64, &EventKey)>,
) -> Result<i64> {
    let changes = e.changes_text();
    let canonical = e.canonical();
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
        let seq: i64 = q.fetch_one(&mut *conn).await?;
        return Ok(seq);
    }
    if let Some((customer, k)) = key {
        sqlx::query("INSERT INTO audit_keys (key_id, customer_id, key) VALUES ($1, $2, $3)")
            .bind(k.id.clone())
            .bind(customer)
            .bind(k.key_text())
            .execute(&mut *conn)
            .await?;
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS.to_string()));
    let seq = prev_seq + 1;
    let hash = chain_hash(&prev_hash, seq, &canonical);
    sqlx::query(
        "INSERT INTO audit_events (seq, time, principal, key_id, request_id, peer, method, \
         resource, action, result, code, changes, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
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
    .bind(changes)
    .bind(prev_hash)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}
