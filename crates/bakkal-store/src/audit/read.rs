//! Reading the trail: filtered keyset pages in seq order, the events after a seq (for a
//! watch), and verifying the chain over a range.

use bakkal_domain::audit::{
    parse_changes, Actor, AuditAction, AuditEvent, AuditResult, NewAuditEvent, GENESIS,
};
use bakkal_domain::time::Micros;

use std::collections::HashMap;

use super::seal;
use crate::args::{bind_as, Arg};
use crate::page::{after_id, split_page, Cursor};
use crate::{Result, Store, StoreError};

const COLUMNS: &str = "seq, time, principal, key_id, request_id, peer, method, resource, \
                       action, result, code, changes, prev_hash, hash";

type Row = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn event(r: Row) -> Result<AuditEvent> {
    let (
        seq,
        time,
        principal,
        key_id,
        request_id,
        peer,
        method,
        resource,
        action,
        result,
        code,
        changes,
        prev_hash,
        hash,
    ) = r;
    let bad = |what: &str, v: &str| {
        StoreError::Database(sqlx::Error::Protocol(format!(
            "audit event {seq} has an unknown {what} {v:?}"
        )))
    };
    Ok(AuditEvent {
        seq,
        event: NewAuditEvent {
            time,
            actor: Actor {
                principal,
                key_id,
                request_id,
                peer,
                method,
            },
            resource,
            action: AuditAction::parse(&action).ok_or_else(|| bad("action", &action))?,
            result: AuditResult::parse(&result).ok_or_else(|| bad("result", &result))?,
            code,
            changes: parse_changes(&changes),
        },
        prev_hash,
        hash,
    })
}

/// Which events a list returns: every given condition holds (an empty one is no condition).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: String,
    pub resource: String,
    pub method: String,
    /// At or after (microseconds).
    pub start_time: Option<Micros>,
    /// Before.
    pub end_time: Option<Micros>,
}

/// What verifying a range found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked.
    pub checked: i64,
    /// The first sequence number whose event does not chain (edited, missing or out of
    /// place), if any.
    pub first_broken: Option<i64>,
    /// The last seq in the range that exists.
    pub last_seq: i64,
}

impl Store {
    /// One page of events matching `filter`, in seq order, after the cursor.
    pub async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<AuditEvent>, Option<Cursor>)> {
        let mut args = vec![Arg::Int(after_id(after)?)];
        let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1");
        for (col, v) in [
            ("principal", &filter.principal),
            ("resource", &filter.resource),
            ("method", &filter.method),
        ] {
            if !v.is_empty() {
                args.push(Arg::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = ${}", args.len()));
            }
        }
        if let Some(t) = filter.start_time {
            args.push(Arg::Int(t));
            sql.push_str(&format!(" AND time >= ${}", args.len()));
        }
        if let Some(t) = filter.end_time {
            args.push(Arg::Int(t));
            sql.push_str(&format!(" AND time < ${}", args.len()));
        }
        args.push(Arg::Int(page_size as i64 + 1));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", args.len()));
        let rows: Vec<Row> = bind_as(sqlx::query_as(&sql), &args)
            .fetch_all(&self.pool)
            .await?;
        let mut events = rows.into_iter().map(event).collect::<Result<Vec<_>>>()?;
        self.open_sealed(&mut events).await?;
        Ok(split_page(events, page_size, |e| Cursor::Int(e.seq, e.seq)))
    }

    /// Up to `limit` events after `seq`, in order (what a watch sends next).
    pub async fn audit_events_after(&self, seq: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows.into_iter().map(event).collect::<Result<Vec<_>>>()?;
        self.open_sealed(&mut events).await?;
        Ok(events)
    }

    /// Open the sealed personal values of `events` with the keys still kept.
    async fn open_sealed(&self, events: &mut [AuditEvent]) -> Result<()> {
        let mut ids: Vec<String> = events
            .iter()
            .flat_map(|e| seal::key_ids(&e.event.changes))
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let mut keys = HashMap::new();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT key_id, key FROM audit_keys WHERE key_id IN ({})",
                marks.join(", ")
            );
            let args: Vec<Arg> = chunk.iter().cloned().map(Arg::Text).collect();
            let rows: Vec<(String, String)> = bind_as(sqlx::query_as(&sql), &args)
                .fetch_all(&self.pool)
                .await?;
            keys.extend(rows);
        }
        for e in events.iter_mut() {
            seal::open(&mut e.event.changes, &keys);
        }
        Ok(())
    }

    /// The last seq (0 for an empty trail).
    pub async fn audit_head(&self) -> Result<i64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(head.unwrap_or(0))
    }

    /// Check the chain from `from` (at least 1) through `to` (`None`: the head): every seq
    /// present in order, each event's `prev_hash` the hash before it and its hash its own.
    pub async fn verify_audit_chain(&self, from: i64, to: Option<i64>) -> Result<ChainReport> {
        const BATCH: i64 = 1000;
        let from = from.max(1);
        let to = to.unwrap_or(i64::MAX);
        let mut expected_prev = if from == 1 {
            GENESIS.to_string()
        } else {
            let prev: Option<String> =
                sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                    .bind(from - 1)
                    .fetch_optional(&self.pool)
                    .await?;
            match prev {
                Some(h) => h,
                None => {
                    return Ok(ChainReport {
                        checked: 0,
                        first_broken: Some(from - 1),
                        last_seq: 0,
                    })
                }
            }
        };
        let mut next = from;
        let mut report = ChainReport {
            checked: 0,
            first_broken: None,
            last_seq: 0,
        };
        loop {
            let rows: Vec<Row> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq >= $1 AND seq <= $2 \
                 ORDER BY seq LIMIT $3"
            ))
            .bind(next)
            .bind(to)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let n = rows.len() as i64;
            for r in rows {
                let e = event(r)?;
                report.checked += 1;
                if e.seq != next || e.prev_hash != expected_prev || !e.hash_matches() {
                    report.first_broken = Some(next);
                    report.last_seq = e.seq;
                    return Ok(report);
                }
                report.last_seq = e.seq;
                expected_prev = e.hash;
                next += 1;
            }
            if n < BATCH {
                return Ok(report);
            }
        }
    }
}
