//! Checking a backup against its manifest, and restoring one over a SQLite database.

use std::path::{Path, PathBuf};

use super::manifest::{self, Manifest};
use super::{display, files, latest_schema_version, BackupError, DatabaseLock, Result};

/// Check the backup at `path`: its manifest, SHA-256 and size, SQLite's integrity check, the
/// schema version and row counts inside against the manifest's, and a schema version this
/// build knows. The manifest that matches the file.
pub async fn verify(path: &Path) -> Result<Manifest> {
    let listed = Manifest::read(path)?;
    let p = path.to_path_buf();
    let (sha256, size) = tokio::task::spawn_blocking(move || files::sha256_file(&p))
        .await
        .map_err(|e| BackupError::Invalid(format!("the checksum task failed: {e}")))??;
    // mid-commit the manifest names the new file and the old one (`snapshot.rs`)
    let m = std::iter::once(&listed)
        .chain(listed.previous.as_deref())
        .find(|m| m.sha256 == sha256)
        .cloned()
        .ok_or_else(|| {
            BackupError::Invalid(format!(
                "{} does not match its manifest: SHA-256 {sha256}, the manifest says {}",
                display(path),
                listed.sha256
            ))
        })?;
    if m.size_bytes != size {
        return Err(BackupError::Invalid(format!(
            "{} is {size} bytes, its manifest says {}",
            display(path),
            m.size_bytes
        )));
    }
    let mut conn = manifest::open_copy(path).await?;
    let checked = async {
        manifest::integrity_check(&mut conn, path).await?;
        manifest::contents(&mut conn).await
    }
    .await;
    let _ = sqlx::Connection::close(conn).await;
    let (schema_version, counts) = checked?;
    if schema_version != m.schema_version {
        return Err(BackupError::Invalid(format!(
            "{} holds schema version {schema_version}, its manifest says {}",
            display(path),
            m.schema_version
        )));
    }
    let latest = latest_schema_version();
    if schema_version > latest {
        return Err(BackupError::Invalid(format!(
            "{} has schema version {schema_version}, newer than this bakkal knows ({latest}): \
             restore it with the bakkal that made it",
            display(path)
        )));
    }
    if counts != m.counts {
        return Err(BackupError::Invalid(format!(
            "{} holds other row counts than its manifest says",
            display(path)
        )));
    }
    Ok(m)
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    /// Where the database that was replaced went (with its `-wal`), if there was one.
    pub replaced_moved_to: Option<PathBuf>,
}

/// Restore the backup at `from` as the SQLite database `database`, after verifying it.
///
/// Refused while a server (or a `bakkal backup`) holds the database's lock. The backup is
/// copied to a partial file beside the database, fsynced and checked against the manifest's
/// checksum; the database that was there moves aside to `{database}.pre-restore-{time}`,
/// with its `-wal` (a stale `-shm` is removed), and the copy takes its name.
pub async fn restore(from: &Path, database: &Path) -> Result<Restored> {
    let manifest = verify(from).await?;
    let _lock = DatabaseLock::exclusive(database)?;
    let partial = files::partial_path(database);
    let copied = (|| {
        std::fs::copy(from, &partial).map_err(BackupError::io(format!(
            "cannot copy {} to {}",
            display(from),
            display(&partial)
        )))?;
        files::fsync_file(&partial)?;
        let (sha256, _) = files::sha256_file(&partial)?;
        if sha256 != manifest.sha256 {
            return Err(BackupError::Invalid(format!(
                "the copy {} does not match the backup's checksum",
                display(&partial)
            )));
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let replaced_moved_to = if database.exists() {
        let stamp = chrono::DateTime::from_timestamp_micros(bakkal_domain::time::now_micros())
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%SZ");
        let mut aside = database.as_os_str().to_os_string();
        aside.push(format!(".pre-restore-{stamp}"));
        let aside = PathBuf::from(aside);
        files::rename_durably(database, &aside)?;
        let wal = sidecar(database, "-wal");
        if wal.exists() {
            files::rename_durably(&wal, &sidecar(&aside, "-wal"))?;
        }
        Some(aside)
    } else {
        None
    };
    let shm = sidecar(database, "-shm");
    if shm.exists() {
        std::fs::remove_file(&shm)
            .map_err(BackupError::io(format!("cannot remove {}", display(&shm))))?;
    }
    files::rename_durably(&partial, database)?;
    Ok(Restored {
        manifest,
        replaced_moved_to,
    })
}

/// `{path}-wal`, `{path}-shm`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
