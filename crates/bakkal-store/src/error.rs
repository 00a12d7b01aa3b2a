//! What can go wrong in the store, in terms the transport maps one-to-one to status codes.

use bakkal_domain::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input broke a rule (INVALID_ARGUMENT with field violations).
    #[error("invalid argument: {0}")]
    Invalid(#[from] ValidationError),
    /// No such resource (NOT_FOUND).
    #[error("{0} not found")]
    NotFound(String),
    /// A unique key is taken (ALREADY_EXISTS); `existing` names the holder.
    #[error("{message}")]
    AlreadyExists {
        existing: String,
        field: String,
        message: String,
    },
    /// A stale etag (ABORTED).
    #[error("{0}")]
    Aborted(String),
    /// The resource is not in a state that allows this (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Bad configuration (at start-up only).
    #[error("configuration: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A real fault in the database (INTERNAL, or UNAVAILABLE when the pool is gone).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// The database cannot be reached or is going away: a connection refused, reset or timed
    /// out, the pool's wait run out or the pool closed, PostgreSQL shutting down, starting up or
    /// out of connections (SQLSTATE class 08, 57P01–57P03, 53300), SQLite busy past its
    /// timeout, unable to open or to do I/O on its file. A passing fault: UNAVAILABLE, retry.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
                    || sqlite_primary(&code)
                        .is_some_and(|c| matches!(c, SQLITE_BUSY | SQLITE_IOERR | SQLITE_CANTOPEN))
            }),
            _ => false,
        }
    }

    /// The database's disk is full: SQLite's SQLITE_FULL, PostgreSQL's `disk_full` (53100).
    /// Writes fail until space is freed; reads go on. RESOURCE_EXHAUSTED.
    pub fn is_disk_full(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        db.code()
            .is_some_and(|code| &*code == "53100" || sqlite_primary(&code) == Some(SQLITE_FULL))
    }

    /// The database cannot take writes now, whatever was written ([`Self::is_unavailable`] or
    /// [`Self::is_disk_full`]): a batch failing so is not replayed row by row.
    pub fn is_outage(&self) -> bool {
        self.is_unavailable() || self.is_disk_full()
    }

    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e))
            if e.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}

const SQLITE_BUSY: i64 = 5;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

/// The primary result code of a SQLite error code (its extended code, as sqlx gives it, in
/// decimal); `None` for a PostgreSQL SQLSTATE (five characters, not all digits).
fn sqlite_primary(code: &str) -> Option<i64> {
    if code.len() >= 5 && !code.starts_with('1') {
        // SQLSTATEs are five characters; SQLite's extended codes reach five digits only
        // from 10 000 up, all of them IOERR variants (10 + n·256), which start with 1
        return None;
    }
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

#[cfg(test)]
mod tests {
    use super::sqlite_primary;

    #[test]
    fn sqlite_codes_and_sqlstates_are_told_apart() {
        assert_eq!(sqlite_primary("13"), Some(13));
        assert_eq!(sqlite_primary("5"), Some(5));
        assert_eq!(sqlite_primary("778"), Some(10), "SQLITE_IOERR_WRITE");
        assert_eq!(sqlite_primary("4874"), Some(10), "SQLITE_IOERR_SHMSIZE");
        assert_eq!(sqlite_primary("53100"), None);
        assert_eq!(sqlite_primary("57P01"), None);
        assert_eq!(sqlite_primary("08006"), None);
        assert_eq!(sqlite_primary("23505"), None);
    }
}
