//! bakkal's storage: one sqlx code path (the `Any` driver) over SQLite and PostgreSQL.
//!
//! The SQL is written once in the dialect both accept: `$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, integers for times (microseconds) and money (micro-units). Only the DDL
//! differs, in `migrations/sqlite` and `migrations/postgres`. Every write is one transaction;
//! SQLite write transactions begin `IMMEDIATE` so concurrent writers queue instead of failing.

mod access;
mod args;
mod articles;
pub mod audit;
pub mod backup;
mod cache;
mod campaigns;
mod customers;
mod desk;
mod error;
mod import;
mod interactions;
mod lock;
mod loyalty;
mod observe;
mod offers;
mod orders;
mod outbox;
mod page;
mod personal_data;
mod products;
mod sales;
mod scope;
mod scripts;
mod segments;
mod service_report;
mod triggers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::cache::{CustomerCache, Generation};

pub use access::{
    api_key_name, service_account_name, user_name, ApiKey, CustomRole, KeyOwner, NewApiKey,
    ServiceAccount, ServiceAccountFields, User, UserFields,
};
pub use articles::{
    article_name, search_terms, snippet, Article, ArticleChanges, ArticleFields, ArticleHit,
    MAX_SEARCH_TERMS,
};
pub use campaigns::{
    campaign_name, campaign_run_name, message_name, BatchPosition, Campaign, CampaignFields,
    CampaignRun, NewHoldout, NewMessage, RunCounters, Trigger,
};
pub use customers::{
    CustomerQuery, DuplicateCandidate, CUSTOMER_FILTER_FIELDS, CUSTOMER_SORT_FIELDS,
};
pub use desk::{
    Agent, AgentFields, DeskEvent, DeskMessage, NewTicket, Notifier, SlaPolicy, SlaPolicyFields,
    Team, TeamFields, Ticket, TicketChanges, TicketComment, TicketCustomer, TICKET_FILTER_FIELDS,
    TICKET_SORT_FIELDS,
};
pub use error::StoreError;
pub use import::{ImportCustomerRow, ImportOrderRow, ImportOutcome, Rejection};
pub use interactions::INTERACTION_FILTER_FIELDS;
pub use loyalty::{
    ExpiryOutcome, LoyaltyAccount, LoyaltyProgram, LoyaltyTier, PointsTransaction, Rounding,
    Shortfall, StoredProgram, EXPIRING_SOON_DAYS,
};
pub use observe::{PoolStatus, StoreObserver, WorkFigures};
pub use offers::{OfferCampaign, OfferFingerprint};
pub use outbox::{DeliveryOutcome, MessageParent, OutboxMessage};
pub use page::Cursor;
pub use personal_data::{DataSubject, EXPORT_CHUNK};
pub use sales::{
    Competitor, CompetitorFields, LostReason, Opportunity, OpportunityChanges,
    OpportunityCompetitor, OpportunityEvent, OpportunityFields, Organization,
    OrganizationDuplicate, OrganizationFields, Pipeline, PipelineGroup, PipelineGroupBy,
    PipelineView, Stage, StageConversion, WinLossGroup, WinLossGroupBy, OPPORTUNITY_FILTER_FIELDS,
    ORGANIZATION_FILTER_FIELDS, PIPELINE_FILTER_FIELDS,
};
pub use scope::{RecordScope, Visible};
pub use scripts::{
    script_name, script_revision_name, NewScript, Script, ScriptChanges, ScriptRevision,
};
pub use segments::{
    parse_segment_filter, segment_name, BatchCustomer, Breakdown, CustomerScore, NewEvent,
    NewSegment, PredicateClause, PredicateColumn, PredicateValue, PyramidCell, ScoreInput,
    ScoreRow, Segment, StoredValueModel, SEGMENT_FILTER_FIELDS,
};
pub use service_report::{
    percentile, ReportGroupBy, ServiceFigures, ServiceReport, TopicComplaints,
};
pub use triggers::{Lease, LeaseState, ReportFigures, StoredEvent};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long a write transaction waits for its turn before giving up (as `busy_timeout`).
const WRITER_WAIT: Duration = Duration::from_secs(10);

/// How long background work waits for the foreground writers to finish, at most.
const BACKGROUND_YIELD: Duration = Duration::from_secs(1);

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The customer database. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Bumped after every committed write transaction.
    generation: Generation,
    /// Customers read since the last write (SQLite only; see `cache.rs`).
    cache: Option<Arc<CustomerCache>>,
    /// SQLite has one writer: write transactions of this process queue here, in turn, instead
    /// of in SQLite's busy handler, which sleeps up to 100 ms between tries.
    writer: Option<Arc<Writer>>,
    /// Told how long connections and writer turns were waited for (`observe.rs`).
    observer: Option<Arc<dyn StoreObserver>>,
    /// Whether write transactions append audit events.
    audit: bool,
    /// The audit chain's head as this process last committed it (SQLite; see `audit/chain.rs`).
    audit_head: audit::Head,
}

/// The turn to write on SQLite, and how many foreground writers wait for it or hold it
/// (background work lets them go first).
#[derive(Debug, Default)]
struct Writer {
    turn: Arc<tokio::sync::Mutex<()>>,
    foreground: std::sync::atomic::AtomicUsize,
}

/// Counts a foreground writer from its wait for the turn until its transaction ends (or its
/// wait is cancelled).
struct Foreground(Arc<Writer>);

impl Foreground {
    fn new(w: &Arc<Writer>) -> Self {
        w.foreground
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Foreground(w.clone())
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.0
            .foreground
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// Customers kept in the read cache on SQLite (0: none). PostgreSQL never caches, since
    /// other servers may write to it.
    pub cache_capacity: usize,
    /// Told how long connections and writer turns were waited for (metrics); `None`: nobody.
    pub observer: Option<Arc<dyn StoreObserver>>,
    /// Write the audit trail (`audit/`); off only to measure what it costs.
    pub audit: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            cache_capacity: 100_000,
            observer: None,
            audit: true,
        }
    }
}

impl Store {
    /// Connect to `sqlite://path` (the file is created) or `postgres://…`. Does not migrate.
    pub async fn connect(opts: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if opts.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "database URL must start with sqlite: or postgres:, got '{}'",
                opts.url
            )));
        };
        let mut url = opts.url.clone();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("bad database URL: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // a SQLite connection is a file handle in this process: nothing to ping
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA cache_size = -8192; \
                             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384; \
                             PRAGMA secure_delete = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        let cache = (backend == Backend::Sqlite && opts.cache_capacity > 0)
            .then(|| Arc::new(CustomerCache::new(opts.cache_capacity)));
        Ok(Store {
            pool,
            backend,
            generation: Generation::default(),
            cache,
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Writer::default())),
            observer: opts.observer.clone(),
            audit: opts.audit,
            audit_head: audit::Head::default(),
        })
    }

    /// Apply the migrations for this backend that have not run yet, then compute what only
    /// Rust can (the email keys of rows older than migration 0012).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.pool).await?;
        self.backfill_email_keys().await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Is the database answering?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.acquire().await?)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begin a write transaction: `IMMEDIATE` on SQLite, so that a transaction that reads and
    /// then writes waits its turn instead of failing with SQLITE_BUSY.
    pub(crate) async fn write_tx(&self) -> Result<WriteTx> {
        let Some(w) = &self.writer else {
            return self.begin(None).await;
        };
        let foreground = Foreground::new(w);
        let asked = Instant::now();
        let turn = tokio::time::timeout(WRITER_WAIT, w.turn.clone().lock_owned()).await;
        if let Some(o) = &self.observer {
            o.write_turn(asked.elapsed(), false);
        }
        let turn = turn.map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
        self.begin(Some((turn, Some(foreground)))).await
    }

    /// A write transaction for background work (the outbox dispatcher). On SQLite it first
    /// lets foreground writers (requests, campaign batches) that wait for the turn or hold it
    /// finish, for up to [`BACKGROUND_YIELD`]: background work never holds them up for long,
    /// and is never starved.
    pub(crate) async fn background_write_tx(&self) -> Result<WriteTx> {
        let Some(w) = &self.writer else {
            return self.begin(None).await;
        };
        let asked = Instant::now();
        let until = tokio::time::Instant::now() + BACKGROUND_YIELD;
        while w.foreground.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let turn = tokio::time::timeout(WRITER_WAIT, w.turn.clone().lock_owned()).await;
        if let Some(o) = &self.observer {
            o.write_turn(asked.elapsed(), true);
        }
        let turn = turn.map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
        self.begin(Some((turn, None))).await
    }

    async fn begin(
        &self,
        writer: Option<(OwnedMutexGuard<()>, Option<Foreground>)>,
    ) -> Result<WriteTx> {
        let statement = match self.backend {
            Backend::Sqlite => Some("BEGIN IMMEDIATE".into()),
            Backend::Postgres => None,
        };
        // what `Pool::begin` does, with our timed acquire (sqlx's `Transaction::begin` is public,
        // though hidden from its documentation)
        let tx = Transaction::begin(self.acquire_for_write().await?, statement).await?;
        Ok(WriteTx {
            tx,
            generation: self.generation.clone(),
            audit: Vec::new(),
            audit_on: self.audit,
            audit_head: self.audit_head.clone(),
            appended: None,
            _writer: writer,
        })
    }

    /// A connection to begin a write transaction on. sqlx (0.8) counts a SQLite connection's
    /// open transactions itself; when SQLite rolls a transaction back on its own (it does on a
    /// full disk, `SQLITE_FULL`, and on some I/O errors), the ROLLBACK sqlx sends when the
    /// transaction is dropped fails and its count stays one too high, and that connection
    /// would refuse every `BEGIN IMMEDIATE` from then on (`InvalidSavePointStatement`, an
    /// INTERNAL). Such a connection is closed and another taken: writes succeed again once
    /// the disk has room, without a restart (`tests/faults_disk_full.rs`).
    async fn acquire_for_write(&self) -> Result<PoolConnection<Any>> {
        use sqlx::TransactionManager as _;
        fn depth(conn: &AnyConnection) -> usize {
            <Any as sqlx::Database>::TransactionManager::get_transaction_depth(conn)
        }
        for _ in 0..4 {
            let mut conn = self.acquire().await?;
            if self.backend == Backend::Postgres || depth(&conn) == 0 {
                return Ok(conn);
            }
            // the dropped transaction's ROLLBACK may still be on its way to the connection's
            // worker thread: a statement after it has it done
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            if depth(&conn) == 0 {
                return Ok(conn);
            }
            tracing::warn!("a SQLite connection that lost track of its transaction is closed");
            conn.close_on_drop();
        }
        Err(StoreError::Database(sqlx::Error::PoolTimedOut))
    }

    /// A connection from the pool, the wait told to the observer. Every query of the store but
    /// the migrations takes its connection here.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Any>> {
        let Some(o) = &self.observer else {
            return Ok(self.pool.acquire().await?);
        };
        let asked = Instant::now();
        let conn = self.pool.acquire().await;
        o.pool_acquired(asked.elapsed(), conn.is_ok());
        Ok(conn?)
    }

    /// Read customer `id` (following merges) through the cache when there is one.
    pub(crate) async fn cached_customer(&self, id: i64) -> Result<bakkal_domain::Customer> {
        let Some(cache) = &self.cache else {
            let mut conn = self.acquire().await?;
            return customers::load_live(&mut conn, id).await;
        };
        let generation = self.generation.current();
        if let Some(c) = cache.get(id, generation) {
            return Ok(c);
        }
        let mut conn = self.acquire().await?;
        let c = customers::load_live(&mut conn, id).await?;
        cache.put(id, generation, &c);
        Ok(c)
    }
}

/// A write transaction. Committing it bumps the store's write generation, which retires
/// everything cached before; dropping it uncommitted rolls back.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    generation: Generation,
    /// The audit events this transaction records, appended just before it commits.
    audit: Vec<audit::Pending>,
    audit_on: bool,
    /// The store's remembered chain head, and the head this transaction's appends made (set
    /// into the former only once the transaction has committed).
    audit_head: audit::Head,
    appended: Option<(i64, String)>,
    /// This process's turn to write (SQLite), held until the transaction ends; declared after
    /// `tx`, so it is released after the transaction is.
    _writer: Option<(OwnedMutexGuard<()>, Option<Foreground>)>,
}

impl WriteTx {
    /// Append the audit events this transaction collected (see `audit`), then commit: the
    /// events are in the write's transaction, so a rolled-back write leaves none.
    pub async fn commit(mut self) -> Result<()> {
        self.append_audit(bakkal_domain::time::now_micros()).await?;
        self.tx.commit().await?;
        self.audit_head.set(self.appended.take());
        self.generation.bump();
        Ok(())
    }

    /// Commit without retiring the read cache: for a transaction that wrote only audit events.
    pub(crate) async fn commit_quietly(mut self) -> Result<()> {
        self.tx.commit().await?;
        self.audit_head.set(self.appended.take());
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}
