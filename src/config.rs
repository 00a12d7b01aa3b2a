//! Server settings, from flags or the environment.

use std::net::SocketAddr;

/// The SQLite file `bakkal serve` creates on first start when no database is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://bakkal.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: String,
    pub max_connections: u32,
    /// Customers kept in the SQLite read cache (0: none).
    pub customer_cache: usize,
    /// The outbox file sink; `None`: `bakkal-outbox.jsonl` next to a SQLite database, else in
    /// the working directory.
    pub outbox_file: Option<std::path::PathBuf>,
    /// How often the campaign scheduler looks for work (`scheduler.rs`).
    pub scheduler_tick: std::time::Duration,
}
