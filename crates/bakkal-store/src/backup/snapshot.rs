//! `Store::backup_to`: an online, consistent snapshot of the SQLite database.
//!
//! 1. `VACUUM INTO` a partial file beside the target. It reads the database in one read
//!    transaction: in WAL mode writers go on meanwhile, and the copy is the database as of
//!    that transaction's start.
//! 2. fsync the partial file (SQLite does not sync a `VACUUM INTO` output).
//! 3. Open it read-only: `PRAGMA integrity_check`, its schema version and row counts.
//! 4. SHA-256 of the partial file.
//! 5. Commit: when an older backup with a manifest is at the target, first the manifest
//!    naming both (the new one with the old as `previous`); then the partial file renamed
//!    over the target and the directory fsynced; then the manifest of the new one alone.
//!    The target is the old backup or the new one at every moment, each matching the
//!    manifest on disk; a kill at any step leaves at most a `.partial-{pid}` file beside it.

use std::path::Path;

use super::manifest::{self, Manifest};
use super::{display, files, BackupError, Result};
use crate::{Backend, Store};

impl Store {
    /// Snapshot the database into `target` (replacing an older backup there) with its
    /// manifest. SQLite only; PostgreSQL has pg_dump.
    pub async fn backup_to(&self, target: &Path) -> Result<Manifest> {
        if self.backend() != Backend::Sqlite {
            return Err(BackupError::Refused(
                "bakkal backs up SQLite databases itself; back up PostgreSQL with pg_dump -Fc \
                 (README: Backups)"
                    .into(),
            ));
        }
        let file = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                BackupError::Invalid(format!("{} does not end in a file name", display(target)))
            })?
            .to_string();
        let partial = files::partial_path(target);
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BackupError::Io {
                    what: format!("cannot remove {}", display(&partial)),
                    source: e,
                })
            }
        }
        let made = self.snapshot(&partial, file).await;
        let manifest = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        commit(&partial, target, &manifest)?;
        tracing::info!(
            target = %target.display(),
            size_bytes = manifest.size_bytes,
            customers = manifest.counts.get("customers").copied().unwrap_or(0),
            "backup written"
        );
        Ok(manifest)
    }

    /// Steps 1 to 4: the partial file, synced and checked, and its manifest.
    async fn snapshot(&self, partial: &Path, file: String) -> Result<Manifest> {
        let created_at_micros = bakkal_domain::time::now_micros();
        let path = partial
            .to_str()
            .ok_or_else(|| BackupError::Invalid(format!("{} is not UTF-8", display(partial))))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string())
            .execute(self.pool())
            .await?;
        let p = partial.to_path_buf();
        tokio::task::spawn_blocking(move || files::fsync_file(&p))
            .await
            .map_err(|e| BackupError::Invalid(format!("the fsync task failed: {e}")))??;
        let mut conn = manifest::open_copy(partial).await?;
        manifest::integrity_check(&mut conn, partial).await?;
        let (schema_version, counts) = manifest::contents(&mut conn).await?;
        sqlx::Connection::close(conn).await?;
        let p = partial.to_path_buf();
        let (sha256, size_bytes) = tokio::task::spawn_blocking(move || files::sha256_file(&p))
            .await
            .map_err(|e| BackupError::Invalid(format!("the checksum task failed: {e}")))??;
        Ok(Manifest {
            format: super::FORMAT.to_string(),
            file,
            created_at_micros,
            created_at: rfc3339(created_at_micros),
            schema_version,
            counts,
            size_bytes,
            sha256,
            previous: None,
        })
    }
}

/// Step 5: the partial file takes the target's name, and the manifest follows it.
fn commit(partial: &Path, target: &Path, new: &Manifest) -> Result<()> {
    if let Ok(mut old) = Manifest::read(target) {
        if target.exists() {
            old.previous = None;
            let both = Manifest {
                previous: Some(Box::new(old)),
                ..new.clone()
            };
            both.write(target)?;
        }
    }
    files::rename_durably(partial, target)?;
    new.write(target)
}

/// `2026-12-02T01:02:03.123456Z`.
pub(crate) fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}
