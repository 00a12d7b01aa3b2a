//! Marketers' scripts and their revisions. The store keeps the text only: what a script means
//! (its kind's entry point, whether it compiles) is checked by the transport before it gets
//! here. Revisions are immutable and numbered 1, 2, … per script; one of them is active.

use bakkal_domain::time::Micros;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::args::{bind, Arg, SqlBuilder};
use crate::lock::{lock_key, lock_row};
use crate::page::Cursor;
use crate::{Result, Store, StoreError};

/// `scripts/{id}`.
pub fn script_name(id: i64) -> String {
    format!("scripts/{id}")
}

/// `scripts/{id}@{revision}`.
pub fn script_revision_name(id: i64, revision: i64) -> String {
    format!("scripts/{id}@{revision}")
}

/// One immutable revision of a script's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRevision {
    pub script_id: i64,
    pub revision: i64,
    pub source: String,
    pub create_time: Micros,
}

/// A script with one of its revisions: the active one, unless another was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub id: i64,
    pub display_name: String,
    /// The kind as the transport spelled it (`SEGMENT`, `OFFER`, `MESSAGE`).
    pub kind: String,
    pub active_revision: i64,
    pub latest_revision: i64,
    /// Incremented on every change (the etag).
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
    pub revision: ScriptRevision,
}

impl Script {
    pub fn name(&self) -> String {
        script_name(self.id)
    }

    pub fn etag(&self) -> String {
        bakkal_domain::etag(self.version)
    }
}

/// A script to create: its first revision becomes the active one.
#[derive(Debug, Clone)]
pub struct NewScript {
    pub display_name: String,
    pub kind: String,
    pub source: String,
}

/// The changes of an update; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ScriptChanges {
    pub display_name: Option<String>,
    /// A source different from the active revision's makes a new revision, which becomes
    /// active; the same source changes nothing.
    pub source: Option<String>,
}

const SCRIPT_COLUMNS: &str = "s.id, s.display_name, s.kind, s.active_revision, \
    s.latest_revision, s.version, s.create_time, s.update_time, \
    r.revision, r.source, r.create_time";

fn script_from_row(r: &AnyRow) -> std::result::Result<Script, sqlx::Error> {
    let id: i64 = r.try_get(0)?;
    Ok(Script {
        id,
        display_name: r.try_get(1)?,
        kind: r.try_get(2)?,
        active_revision: r.try_get(3)?,
        latest_revision: r.try_get(4)?,
        version: r.try_get(5)?,
        create_time: r.try_get(6)?,
        update_time: r.try_get(7)?,
        revision: ScriptRevision {
            script_id: id,
            revision: r.try_get(8)?,
            source: r.try_get(9)?,
            create_time: r.try_get(10)?,
        },
    })
}

fn revision_from_row(r: &AnyRow) -> std::result::Result<ScriptRevision, sqlx::Error> {
    Ok(ScriptRevision {
        script_id: r.try_get(0)?,
        revision: r.try_get(1)?,
        source: r.try_get(2)?,
        create_time: r.try_get(3)?,
    })
}

/// The script with revision `revision` (the active one when `None`). NOT_FOUND names what is
/// missing: the script, or the revision of an existing script.
async fn load(conn: &mut AnyConnection, id: i64, revision: Option<i64>) -> Result<Script> {
    let sql = format!(
        "SELECT {SCRIPT_COLUMNS} FROM scripts s JOIN script_revisions r ON r.script_id = s.id \
         WHERE s.id = $1 AND r.revision = COALESCE($2, s.active_revision)"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(revision)
        .fetch_optional(&mut *conn)
        .await?;
    match (row, revision) {
        (Some(r), _) => Ok(script_from_row(&r)?),
        (None, Some(rev)) if exists(conn, id).await? => {
            Err(StoreError::NotFound(script_revision_name(id, rev)))
        }
        (None, _) => Err(StoreError::NotFound(script_name(id))),
    }
}

async fn exists(conn: &mut AnyConnection, id: i64) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM scripts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

/// ABORTED unless `etag` is empty or the script's current one.
fn check_etag(s: &Script, etag: Option<&str>) -> Result<()> {
    match etag.map(str::trim) {
        Some(e) if !e.is_empty() && e != s.etag() => Err(StoreError::Aborted(format!(
            "{} was changed since it was read (etag {e}, now {}); read it again",
            s.name(),
            s.etag()
        ))),
        _ => Ok(()),
    }
}

async fn insert_revision(
    conn: &mut AnyConnection,
    id: i64,
    revision: i64,
    source: &str,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO script_revisions (script_id, revision, source, create_time) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(revision)
    .bind(source.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Create a script and its revision 1, active. With a `request_id` seen before, return
    /// the script that first request created.
    pub async fn create_script(
        &self,
        new: NewScript,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<Script> {
        let key = request_id.map(|r| format!("CreateScript/{r}"));
        match self.try_create_script(&new, key.as_deref(), now).await {
            // Lost a race with the same request id: give the first call's result.
            Err(e) if e.is_unique_violation() => {
                let mut conn = self.acquire().await?;
                match replayed(&mut conn, key.as_deref()).await? {
                    Some(id) => load(&mut conn, id, None).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn try_create_script(
        &self,
        new: &NewScript,
        key: Option<&str>,
        now: Micros,
    ) -> Result<Script> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = key {
            lock_key(&mut tx, key).await?;
        }
        if let Some(id) = replayed(&mut tx, key).await? {
            let s = load(&mut tx, id, None).await?;
            tx.commit().await?;
            return Ok(s);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scripts (display_name, kind, active_revision, latest_revision, \
             create_time, update_time) VALUES ($1, $2, 1, 1, $3, $3) RETURNING id",
        )
        .bind(new.display_name.clone())
        .bind(new.kind.clone())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_revision(&mut tx, id, 1, &new.source, now).await?;
        if let Some(key) = key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, resource, create_time) VALUES ($1, $2, $3)",
            )
            .bind(key.to_string())
            .bind(script_name(id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let s = load(&mut tx, id, None).await?;
        tx.audit_call(s.name());
        tx.commit().await?;
        Ok(s)
    }

    /// A script with its active revision, or with `revision`.
    pub async fn get_script(&self, id: i64, revision: Option<i64>) -> Result<Script> {
        let mut conn = self.acquire().await?;
        load(&mut conn, id, revision).await
    }

    /// Scripts (with their active revisions) in creation order, optionally of one kind.
    pub async fn list_scripts(
        &self,
        kind: Option<&str>,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Script>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!(
            "SELECT {SCRIPT_COLUMNS} FROM scripts s JOIN script_revisions r \
             ON r.script_id = s.id AND r.revision = s.active_revision WHERE 1 = 1"
        ));
        if let Some(k) = kind {
            b.push(" AND s.kind = ").arg(Arg::Text(k.to_string()));
        }
        match after {
            Some(Cursor::Int(_, id)) => {
                b.push(" AND s.id > ").arg(Arg::Int(*id));
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY s.id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(script_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (out, next) = crate::page::split_page(out, page_size, |s| Cursor::Int(s.id, s.id));
        Ok((out, next))
    }

    /// Change a script's display name and/or source (a new revision, made active). A stale
    /// `etag` is ABORTED.
    pub async fn update_script(
        &self,
        id: i64,
        changes: ScriptChanges,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Script> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "scripts", id).await?;
        let current = load(&mut tx, id, None).await?;
        check_etag(&current, etag)?;
        let display_name = changes
            .display_name
            .filter(|d| *d != current.display_name)
            .unwrap_or_else(|| current.display_name.clone());
        let new_source = changes.source.filter(|s| *s != current.revision.source);
        if display_name == current.display_name && new_source.is_none() {
            tx.commit().await?;
            return Ok(current);
        }
        let (active, latest) = match &new_source {
            Some(source) => {
                let rev = current.latest_revision + 1;
                insert_revision(&mut tx, id, rev, source, now).await?;
                (rev, rev)
            }
            None => (current.active_revision, current.latest_revision),
        };
        sqlx::query(
            "UPDATE scripts SET display_name = $1, active_revision = $2, latest_revision = $3, \
             version = version + 1, update_time = $4 WHERE id = $5",
        )
        .bind(display_name)
        .bind(active)
        .bind(latest)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let s = load(&mut tx, id, None).await?;
        tx.audit_call(s.name());
        tx.commit().await?;
        Ok(s)
    }

    /// Make `revision` the active one (rolling forward or back). NOT_FOUND when the script or
    /// the revision does not exist; a stale `etag` is ABORTED.
    pub async fn activate_script_revision(
        &self,
        id: i64,
        revision: i64,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Script> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "scripts", id).await?;
        let target = load(&mut tx, id, Some(revision)).await?;
        check_etag(&target, etag)?;
        if target.active_revision == revision {
            tx.commit().await?;
            return Ok(target);
        }
        sqlx::query(
            "UPDATE scripts SET active_revision = $1, version = version + 1, update_time = $2 \
             WHERE id = $3",
        )
        .bind(revision)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let s = load(&mut tx, id, None).await?;
        tx.audit_call(s.name());
        tx.commit().await?;
        Ok(s)
    }

    /// A script's revisions, newest first, and which one is active.
    pub async fn list_script_revisions(
        &self,
        id: i64,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<ScriptRevision>, i64, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let active: Option<i64> =
            sqlx::query_scalar("SELECT active_revision FROM scripts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let active = active.ok_or_else(|| StoreError::NotFound(script_name(id)))?;
        let before = match after {
            Some(Cursor::Int(rev, _)) => *rev,
            Some(_) => return Err(crate::customers::bad_token()),
            None => i64::MAX,
        };
        let rows = sqlx::query(
            "SELECT script_id, revision, source, create_time FROM script_revisions \
             WHERE script_id = $1 AND revision < $2 ORDER BY revision DESC LIMIT $3",
        )
        .bind(id)
        .bind(before)
        .bind(page_size as i64 + 1)
        .fetch_all(&mut *conn)
        .await?;
        let out = rows
            .iter()
            .map(revision_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (out, next) =
            crate::page::split_page(out, page_size, |r| Cursor::Int(r.revision, r.script_id));
        Ok((out, active, next))
    }
}

async fn replayed(conn: &mut AnyConnection, key: Option<&str>) -> Result<Option<i64>> {
    let Some(key) = key else { return Ok(None) };
    let resource: Option<String> =
        sqlx::query_scalar("SELECT resource FROM idempotency_keys WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(resource.and_then(|r| bakkal_domain::name::parse_id(&r, "scripts")))
}
