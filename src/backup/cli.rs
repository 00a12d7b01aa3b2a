//! `bakkal backup --to FILE`, `bakkal restore --from FILE` and `bakkal verify-backup FILE`:
//! straight on the database file, no server needed. A backup opens the database as one more
//! reader (a server may be running on it); a restore refuses while a server holds the
//! database's lock.

use std::path::Path;

use anyhow::Context as _;
use bakkal_store::backup::{self as store_backup, Manifest};
use bakkal_store::{Store, StoreOptions};

/// The database file of a SQLite URL, or the advice for PostgreSQL.
fn sqlite_file(database_url: &str, what: &str) -> anyhow::Result<std::path::PathBuf> {
    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        anyhow::bail!(
            "{what} works on SQLite databases; for PostgreSQL use its own tools: \
             `pg_dump -Fc -f bakkal.dump URL` and `pg_restore --no-owner -d NEW_URL bakkal.dump` \
             (README: Backups)"
        );
    }
    store_backup::sqlite_path(database_url).ok_or_else(|| {
        anyhow::anyhow!("{what} needs a SQLite database file (sqlite://path), not {database_url}")
    })
}

/// One line about a backup, for the terminal.
pub fn summary(path: &Path, m: &Manifest) -> String {
    let customers = m.counts.get("customers").copied().unwrap_or(0);
    format!(
        "{}: taken {}, schema version {}, {} customers, {} bytes, sha256 {}",
        path.display(),
        m.created_at,
        m.schema_version,
        customers,
        m.size_bytes,
        m.sha256
    )
}

/// `bakkal backup --to FILE`.
pub async fn backup(database_url: &str, to: &Path) -> anyhow::Result<Manifest> {
    let path = sqlite_file(database_url, "bakkal backup")?;
    if !path.exists() {
        anyhow::bail!("there is no database at '{}'", path.display());
    }
    let _lock = store_backup::DatabaseLock::shared(&path)?;
    // an existing file only (mode=rw): a backup never creates a database
    let url = format!("sqlite://{}?mode=rw", path.display());
    let mut opts = StoreOptions::new(url);
    opts.max_connections = 1;
    opts.cache_capacity = 0;
    let store = Store::connect(&opts)
        .await
        .with_context(|| format!("cannot open the database '{}'", path.display()))?;
    let made = store.backup_to(to).await;
    store.close().await;
    Ok(made?)
}

/// `bakkal verify-backup FILE`.
pub async fn verify(file: &Path) -> anyhow::Result<Manifest> {
    Ok(store_backup::verify(file).await?)
}

/// `bakkal restore --from FILE`.
pub async fn restore(database_url: &str, from: &Path) -> anyhow::Result<store_backup::Restored> {
    let path = sqlite_file(database_url, "bakkal restore")?;
    Ok(store_backup::restore(from, &path).await?)
}
