//! Everything bakkal holds about one person as one JSON document, written section by section
//! (see [`super::SECTIONS`]) in chunks of about [`EXPORT_CHUNK`] bytes, each ending at a row
//! boundary, so a person with a long history never sits in memory whole. Every section is
//! read in one snapshot.

use bakkal_domain::name::customer_name;
use bakkal_domain::time::Micros;
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Column, Row};
use tokio::sync::mpsc;

use super::{Section, SECTIONS};
use crate::{Backend, RecordScope, Result, Store, StoreError};

/// About how many bytes of the document each chunk holds.
pub const EXPORT_CHUNK: usize = 64 * 1024;

/// Whose data a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSubject {
    /// A live customer (merges followed: the survivor).
    Live(i64),
    /// The customer was erased: only that, and when, is left.
    Erased { id: i64, erase_time: Micros },
}

/// RFC 3339 with microseconds, UTC.
fn rfc3339(t: Micros) -> Value {
    match chrono::DateTime::from_timestamp_micros(t) {
        Some(d) => Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        None => Value::from(t),
    }
}

fn cell(r: &AnyRow, i: usize, name: &str, s: &Section) -> Value {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return match v {
            None => Value::Null,
            Some(t) if name.ends_with("_time") => rfc3339(t),
            Some(n) => Value::from(n),
        };
    }
    if let Ok(Some(f)) = r.try_get::<Option<f64>, _>(i) {
        return Value::from(f);
    }
    if let Ok(Some(b)) = r.try_get::<Option<bool>, _>(i) {
        return Value::from(b);
    }
    match r.try_get::<Option<String>, _>(i) {
        Ok(Some(text)) if s.json.contains(&name) => {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        Ok(Some(text)) if name == "tags" => Value::Array(
            text.split(',')
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.into()))
                .collect(),
        ),
        Ok(Some(text)) => Value::String(text),
        _ => Value::Null,
    }
}

fn row_json(r: &AnyRow, s: &Section) -> Value {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        m.insert(c.name().to_string(), cell(r, i, c.name(), s));
    }
    Value::Object(m)
}

/// The document being written, and where its chunks go.
struct Writer {
    buf: String,
    out: mpsc::Sender<String>,
}

impl Writer {
    fn push(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// Send what is written when it is a chunk's worth (or `all`).
    async fn flush(&mut self, all: bool) -> Result<()> {
        if self.buf.len() >= EXPORT_CHUNK || (all && !self.buf.is_empty()) {
            let chunk = std::mem::take(&mut self.buf);
            self.out
                .send(chunk)
                .await
                .map_err(|_| StoreError::Aborted("the export's reader went away".into()))?;
        }
        Ok(())
    }
}

fn text(v: &Value) -> String {
    v.to_string()
}

impl Store {
    /// Whose data `id` names, if `scope` admits them: a live customer (following merges) or
    /// an erased one. NOT_FOUND for a customer that never was, or out of scope.
    pub async fn data_subject(&self, id: i64, scope: &RecordScope) -> Result<DataSubject> {
        let mut conn = self.acquire().await?;
        let mut current = id;
        for _ in 0..32 {
            let row: Option<(Option<i64>, Option<i64>, String)> = sqlx::query_as(
                "SELECT merged_into, deleted_time, owner FROM customers WHERE id = $1",
            )
            .bind(current)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some((Some(next), _, _)) => current = next,
                Some((None, Some(erase_time), owner)) if scope.admits_owner(&owner) => {
                    return Ok(DataSubject::Erased {
                        id: current,
                        erase_time,
                    })
                }
                Some((None, None, owner)) if scope.admits_owner(&owner) => {
                    return Ok(DataSubject::Live(current))
                }
                _ => break,
            }
        }
        Err(StoreError::NotFound(customer_name(id)))
    }

    /// Write the document of `subject` to `out` in chunks: the customer and every section of
    /// their records, or, for an erased customer, only that they were erased and when.
    pub async fn export_personal_data(
        &self,
        subject: DataSubject,
        now: Micros,
        out: mpsc::Sender<String>,
    ) -> Result<()> {
        let mut w = Writer {
            buf: String::with_capacity(EXPORT_CHUNK + 4096),
            out,
        };
        let id = match subject {
            DataSubject::Live(id) | DataSubject::Erased { id, .. } => id,
        };
        w.push("{\"name\":");
        w.push(&text(&Value::String(customer_name(id))));
        w.push(",\"export_time\":");
        w.push(&text(&rfc3339(now)));
        if let DataSubject::Erased { erase_time, .. } = subject {
            w.push(",\"erased\":true,\"erase_time\":");
            w.push(&text(&rfc3339(erase_time)));
            w.push("}");
            return w.flush(true).await;
        }
        w.push(",\"erased\":false");
        // one snapshot for every section: a read transaction (on PostgreSQL, repeatable
        // read), so the document is the person's data at one moment; ended unwritten
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let mut conn = sqlx::Transaction::begin(self.acquire().await?, Some(begin.into())).await?;
        for s in SECTIONS {
            w.push(",");
            w.push(&text(&Value::String(s.key.into())));
            w.push(":");
            if !s.one {
                w.push("[");
            }
            let mut n = 0usize;
            {
                let mut rows = sqlx::query(s.sql).bind(id).fetch(&mut *conn);
                while let Some(r) = rows.try_next().await? {
                    if s.one && n > 0 {
                        break;
                    }
                    if n > 0 {
                        w.push(",");
                    }
                    w.push(&text(&row_json(&r, s)));
                    n += 1;
                    w.flush(false).await?;
                }
            }
            if s.one && n == 0 {
                w.push("null");
            }
            if !s.one {
                w.push("]");
            }
        }
        w.push("}");
        conn.rollback().await?;
        w.flush(true).await
    }
}
