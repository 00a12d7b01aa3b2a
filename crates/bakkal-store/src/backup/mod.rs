//! Backups of a SQLite database: an online snapshot (`VACUUM INTO`, which holds a read
//! transaction only, so writers in WAL mode go on), made durable and checked before it takes
//! the target's name, with a manifest beside it; verification, restore and the backup
//! directory of scheduled backups. PostgreSQL is backed up with its own tools (README).
//!
//! - `files.rs`: temporary names, fsync of files and directories, atomic writes, SHA-256.
//! - `manifest.rs`: the manifest (`FILE.manifest.json`): time, schema version, row counts,
//!   size and checksum.
//! - `snapshot.rs`: `Store::backup_to`, the snapshot and its commit.
//! - `verify.rs`: `verify` (checksum, integrity, schema version, counts) and `restore`.
//! - `directory.rs`: the scheduled backups' directory: names, listing, pruning.
//! - `db_lock.rs`: the advisory lock a server holds on `<db>.lock` for its life, which
//!   restore must take exclusively.

mod db_lock;
mod directory;
mod files;
mod manifest;
mod snapshot;
mod verify;

pub use db_lock::DatabaseLock;
pub use directory::{list, prune, scheduled_name, Listed};
pub use manifest::{manifest_path, Manifest, COUNTED_TABLES, FORMAT};
pub use verify::{restore, verify, Restored};

use std::path::{Path, PathBuf};

/// What can go wrong with a backup, a verification or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The database (source or copy) refused.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The backup is not what its manifest says, or damaged.
    #[error("{0}")]
    Invalid(String),
    /// The database is in use (by a server) or the operation does not apply here.
    #[error("{0}")]
    Refused(String),
}

impl BackupError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let what = what.into();
        move |source| BackupError::Io { what, source }
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// The file of a `sqlite:` database URL (`sqlite://path?…`, `sqlite:path`); `None` for
/// PostgreSQL and in-memory databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(':') || path.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The highest migration this build knows for SQLite: a backup of a newer schema cannot be
/// restored by it.
pub fn latest_schema_version() -> i64 {
    crate::SQLITE_MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// A path in a message: in quotes, whole (a path is the operator's, not a caller's, text).
fn display(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_from_urls() {
        assert_eq!(
            sqlite_path("sqlite://data/bakkal.db?mode=rwc"),
            Some(PathBuf::from("data/bakkal.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/b.db"),
            Some(PathBuf::from("/var/lib/b.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
