//! Server settings, from flags or the environment.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bakkal_domain::time::{now_micros, Micros};

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
    /// The service desk's clock and SLA watcher.
    pub desk: DeskConfig,
}

impl Config {
    /// The defaults of `bakkal serve` for a listen address and a database; callers (tests,
    /// benchmarks) change what they need with struct update syntax.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Config {
        Config {
            listen,
            database_url: database_url.into(),
            max_connections: 16,
            customer_cache: 100_000,
            outbox_file: None,
            scheduler_tick: Duration::from_secs(1),
            desk: DeskConfig::default(),
        }
    }
}

/// Settings of the service desk.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// "Now" for tickets and their SLA clocks: real time unless a test sets it.
    pub clock: Clock,
    /// How often the SLA watcher looks for clocks that passed a mark.
    pub sla_watch_interval: Duration,
    /// A MESSAGE script (`scripts/{id}`) that writes the desk's automatic messages; `None`:
    /// built-in templates.
    pub message_script: Option<String>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            clock: Clock::default(),
            sla_watch_interval: Duration::from_secs(5),
            message_script: None,
        }
    }
}

/// The time the service desk works with. `Clock::default()` is the system clock; a manual
/// clock (tests, demos) stands still until set or advanced, and every clone shares it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn manual(start: Micros) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start))))
    }

    pub fn now(&self) -> Micros {
        match &self.0 {
            None => now_micros(),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Set a manual clock (no effect on the system clock).
    pub fn set(&self, to: Micros) {
        if let Some(t) = &self.0 {
            t.store(to, Ordering::SeqCst);
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
        }
    }
}
