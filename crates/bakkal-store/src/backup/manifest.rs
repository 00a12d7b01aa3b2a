//! The manifest beside a backup (`FILE.manifest.json`): when it was taken, the schema version
//! (the highest applied migration), the row counts of the main tables, the file's size and
//! SHA-256. A backup without a manifest that matches it is not a complete backup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

use super::{display, files, BackupError, Result};

/// The manifest's format tag.
pub const FORMAT: &str = "bakkal-backup/1";

/// The tables whose rows a manifest counts (and verification recounts).
pub const COUNTED_TABLES: &[&str] = &[
    "customers",
    "orders",
    "interactions",
    "products",
    "scripts",
    "segments",
    "segment_members",
    "campaigns",
    "campaign_runs",
    "outbox_messages",
    "events",
    "tickets",
    "ticket_comments",
    "articles",
    "loyalty_accounts",
    "points_transactions",
    "users",
    "service_accounts",
    "api_keys",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The backup's file name (without directory).
    pub file: String,
    /// When the snapshot was taken, UTC microseconds since the epoch, and as RFC 3339.
    pub created_at_micros: i64,
    pub created_at: String,
    /// The highest migration applied to the snapshot.
    pub schema_version: i64,
    /// Rows per table of [`COUNTED_TABLES`] in the snapshot.
    pub counts: BTreeMap<String, i64>,
    pub size_bytes: u64,
    /// SHA-256 of the backup file, lower-case hex.
    pub sha256: String,
    /// While a new backup replaces an older one at the same name, the older one's manifest:
    /// the file matches one of the two at every moment (see `snapshot.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Manifest>>,
}

/// `FILE.manifest.json` beside `FILE`.
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut name = backup
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".manifest.json");
    backup.with_file_name(name)
}

impl Manifest {
    pub fn read(backup: &Path) -> Result<Manifest> {
        let path = manifest_path(backup);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BackupError::Invalid(format!(
                    "{} has no manifest ({} is missing): it is not a complete backup",
                    display(backup),
                    display(&path)
                ))
            } else {
                BackupError::Io {
                    what: format!("cannot read {}", display(&path)),
                    source: e,
                }
            }
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            BackupError::Invalid(format!("{} is not a backup manifest: {e}", display(&path)))
        })?;
        if m.format != FORMAT {
            return Err(BackupError::Invalid(format!(
                "{} has format '{}', not {FORMAT}",
                display(&path),
                m.format
            )));
        }
        Ok(m)
    }

    pub fn write(&self, backup: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| BackupError::Invalid(format!("cannot encode the manifest: {e}")))?;
        text.push('\n');
        files::write_atomically(&manifest_path(backup), text.as_bytes())
    }
}

/// A read-only connection to a backup file (or its partial copy) that changes nothing on
/// disk: no journal, no `-wal`, no `-shm` (`immutable`).
pub(super) async fn open_copy(path: &Path) -> Result<SqliteConnection> {
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true)
        .immutable(true)
        .create_if_missing(false);
    Ok(SqliteConnection::connect_with(&opts).await?)
}

/// `PRAGMA integrity_check` of a copy: `Ok` only when SQLite answers "ok".
pub(super) async fn integrity_check(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    let shown: Vec<&str> = rows.iter().take(5).map(String::as_str).collect();
    Err(BackupError::Invalid(format!(
        "{} fails SQLite's integrity check: {}",
        display(path),
        shown.join("; ")
    )))
}

/// The schema version and row counts of a database, read in one transaction.
pub(super) async fn contents(conn: &mut SqliteConnection) -> Result<(i64, BTreeMap<String, i64>)> {
    let mut tx = conn.begin().await?;
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1",
    )
    .fetch_one(&mut *tx)
    .await?;
    let present: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *tx)
            .await?;
    let mut counts = BTreeMap::new();
    // a database of an older schema lacks the newer tables: they are not counted
    for table in COUNTED_TABLES
        .iter()
        .filter(|t| present.iter().any(|p| p == *t))
    {
        // the table names are this module's constants, never caller text
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        counts.insert(table.to_string(), n);
    }
    tx.commit().await?;
    Ok((version, counts))
}
