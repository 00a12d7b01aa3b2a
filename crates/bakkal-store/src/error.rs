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
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e))
            if e.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}
