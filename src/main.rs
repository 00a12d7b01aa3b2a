//! `bakkal`: the CRM back end. `bakkal serve` runs the gRPC server; `bakkal migrate` applies
//! database migrations and exits.

use bakkal::auth::AuthConfig;
use bakkal::config::{Config, DeliveryConfig, SinkKind, DEFAULT_DATABASE_URL, DEFAULT_LISTEN};
use bakkal::server;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "bakkal", version, about = "bakkal: a CRM back end over gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DatabaseArgs {
    /// `sqlite://path` (created on first start) or `postgres://user@host/db`.
    #[arg(long, env = "BAKKAL_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Database connections in the pool.
    #[arg(long, env = "BAKKAL_MAX_CONNECTIONS", default_value_t = 16)]
    max_connections: u32,
    /// Customers kept in the read cache on SQLite (0 turns it off; PostgreSQL never caches).
    #[arg(long, env = "BAKKAL_CUSTOMER_CACHE", default_value_t = 100_000)]
    customer_cache: usize,
}

/// Where each channel's messages go, and how failed deliveries are retried.
#[derive(clap::Args, Clone)]
struct DeliveryArgs {
    /// `CHANNEL=SINK`, repeatable (env: comma-separated). CHANNEL: email, sms, push, phone or
    /// `*` (every channel not named). SINK: `file` (the default), `webhook:http://host/path`
    /// (POST JSON with an Idempotency-Key header) or `nats` (JetStream, subject
    /// `{nats-subject-prefix}.{channel}`).
    #[arg(long = "sink", env = "BAKKAL_SINKS", value_delimiter = ',',
          value_parser = bakkal::config::parse_sink_flag)]
    sinks: Vec<(String, SinkKind)>,
    /// `CHANNEL=whsec_…`, repeatable (env: comma-separated): sign that channel's webhook
    /// deliveries (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature). `*`:
    /// every webhook channel without its own. Two for one channel during a rotation.
    #[arg(long = "webhook-secret", env = "BAKKAL_WEBHOOK_SECRETS", value_delimiter = ',',
          value_parser = bakkal::config::parse_webhook_secret_flag, hide_env_values = true)]
    webhook_secrets: Vec<(String, bakkal::config::WebhookSecret)>,
    /// Attempts before a message that keeps failing is dead-lettered (DEAD).
    #[arg(long, env = "BAKKAL_DELIVERY_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    delivery_max_attempts: u32,
    /// Wait before the second attempt (ms); it doubles per attempt, with jitter.
    #[arg(long, env = "BAKKAL_DELIVERY_BACKOFF_MS", default_value_t = 1000)]
    delivery_backoff_ms: u64,
    /// Longest wait between attempts (ms).
    #[arg(
        long,
        env = "BAKKAL_DELIVERY_BACKOFF_MAX_MS",
        default_value_t = 600_000
    )]
    delivery_backoff_max_ms: u64,
    /// A webhook answer or JetStream ack not in by then is a failed attempt (ms).
    #[arg(long, env = "BAKKAL_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    delivery_timeout_ms: u64,
    /// NATS server for `nats` sinks.
    #[arg(long, env = "BAKKAL_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Subjects are `{prefix}.{channel}`.
    #[arg(
        long,
        env = "BAKKAL_NATS_SUBJECT_PREFIX",
        default_value = "bakkal.messages"
    )]
    nats_subject_prefix: String,
    /// Create this JetStream stream over `{prefix}.>` when it is missing (otherwise a stream
    /// must already capture the subjects).
    #[arg(long, env = "BAKKAL_NATS_STREAM")]
    nats_stream: Option<String>,
}

impl DeliveryArgs {
    fn into_config(self) -> DeliveryConfig {
        use std::time::Duration;
        DeliveryConfig {
            sinks: self.sinks,
            max_attempts: self.delivery_max_attempts,
            backoff_base: Duration::from_millis(self.delivery_backoff_ms),
            backoff_max: Duration::from_millis(self.delivery_backoff_max_ms),
            send_timeout: Duration::from_millis(self.delivery_timeout_ms),
            nats_url: self.nats_url,
            nats_subject_prefix: self.nats_subject_prefix,
            nats_stream: self.nats_stream,
            webhook_secrets: self.webhook_secrets,
            ..DeliveryConfig::default()
        }
    }
}

/// Staff bearer tokens from an OIDC identity provider; all three or none.
#[derive(clap::Args, Clone)]
struct OidcArgs {
    /// The provider's issuer: a token's `iss` must be exactly this. Turns authentication on.
    #[arg(long, env = "BAKKAL_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks"])]
    oidc_issuer: Option<String>,
    /// The audience a token must name in `aud` (this server's client id at the provider).
    #[arg(long, env = "BAKKAL_OIDC_AUDIENCE", requires = "oidc_issuer")]
    oidc_audience: Option<String>,
    /// The provider's signing keys (JWK set): an `https://` (or `http://`) URL, fetched at
    /// start and refreshed, or a local file.
    #[arg(long, env = "BAKKAL_OIDC_JWKS", requires = "oidc_issuer")]
    oidc_jwks: Option<String>,
}

impl OidcArgs {
    fn into_config(self) -> Option<bakkal::auth::oidc::OidcConfig> {
        Some(bakkal::auth::oidc::OidcConfig {
            issuer: self.oidc_issuer?,
            audience: self.oidc_audience?,
            jwks: bakkal::auth::oidc::jwks::JwksSource::parse(&self.oidc_jwks?),
        })
    }
}

/// Transport security (README: TLS).
#[derive(clap::Args, Clone)]
struct TlsArgs {
    /// Serve TLS with this PEM certificate chain (the server's certificate first); needs
    /// --tls-key. Without it the server speaks plaintext HTTP/2.
    #[arg(long, env = "BAKKAL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "BAKKAL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// mTLS: require a client certificate issued by a CA in this PEM file. A certificate speaks
    /// for the service account listing its SHA-256 fingerprint. Turns authentication on.
    #[arg(long, env = "BAKKAL_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// With --tls-client-ca: let clients without a certificate connect (they authenticate
    /// with an API key); a certificate from another CA is still refused.
    #[arg(
        long,
        env = "BAKKAL_TLS_CLIENT_AUTH_OPTIONAL",
        requires = "tls_client_ca"
    )]
    tls_client_auth_optional: bool,
}

impl TlsArgs {
    fn into_config(self) -> Option<bakkal::tls::TlsConfig> {
        Some(bakkal::tls::TlsConfig {
            cert: self.tls_cert?,
            key: self.tls_key?,
            client_ca: self.tls_client_ca,
            client_auth_optional: self.tls_client_auth_optional,
        })
    }
}

/// Request limits (none unless given).
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// `ROLE=RPS[:BURST]`, repeatable (env: comma-separated): each principal with the role may
    /// make RPS calls a second, BURST at once (default: RPS rounded up); `*` for principals
    /// none of whose roles is named. Over it: RESOURCE_EXHAUSTED with RetryInfo.
    #[arg(long = "rate-limit", env = "BAKKAL_RATE_LIMITS", value_delimiter = ',',
          value_parser = bakkal::limits::parse_rate_flag)]
    rate_limits: Vec<(String, bakkal::limits::Rate)>,
    /// Calls in flight at once over the whole server, a stream counted for its whole life
    /// (0: no limit). Over it: UNAVAILABLE with RetryInfo; health is never limited.
    #[arg(long, env = "BAKKAL_MAX_IN_FLIGHT", default_value_t = 0)]
    max_in_flight: usize,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of `Serve` (all the server's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the gRPC server (migrates the database first).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BAKKAL_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        #[command(flatten)]
        db: DatabaseArgs,
        /// File the outbox dispatcher appends delivered messages to (one JSON line each).
        /// Default: `bakkal-outbox.jsonl` next to a SQLite database, else in the working
        /// directory.
        #[arg(long, env = "BAKKAL_OUTBOX_FILE")]
        outbox_file: Option<std::path::PathBuf>,
        /// A MESSAGE script (`scripts/{id}`) that writes the service desk's automatic messages
        /// (acknowledgements, resolutions, SLA reminders). Default: built-in templates.
        #[arg(long, env = "BAKKAL_DESK_MESSAGE_SCRIPT")]
        desk_message_script: Option<String>,
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        tls: TlsArgs,
        /// How often the campaign scheduler looks for due runs, events and stopped runs
        /// (milliseconds); a stopped server's run is resumed after 30 ticks.
        #[arg(long, env = "BAKKAL_SCHEDULER_TICK_MS", default_value_t = 1000)]
        scheduler_tick_ms: u64,
        /// How often the loyalty points-expiry sweep runs (seconds; 0 turns it off).
        #[arg(long, env = "BAKKAL_LOYALTY_SWEEP_SECS", default_value_t = 3600)]
        loyalty_sweep_secs: u64,
        /// Require an API key (`authorization: Bearer bk_…`) on every call but health. Always
        /// on when listening on a non-loopback address (unless --insecure-no-auth).
        #[arg(long, env = "BAKKAL_REQUIRE_AUTH")]
        require_auth: bool,
        /// Serve a non-loopback address without authentication (trusted networks only).
        #[arg(long, env = "BAKKAL_INSECURE_NO_AUTH", conflicts_with_all = ["require_auth", "tls_client_ca"])]
        insecure_no_auth: bool,
        #[command(flatten)]
        oidc: OidcArgs,
        #[command(flatten)]
        limits: LimitArgs,
        /// Write no audit events (to measure what the trail costs; never in production).
        #[arg(long, env = "BAKKAL_NO_AUDIT_TRAIL")]
        no_audit_trail: bool,
        /// Client connections open at once; the next waits until one closes.
        #[arg(long, env = "BAKKAL_MAX_CLIENT_CONNECTIONS", default_value_t = 4096)]
        max_client_connections: usize,
        /// Concurrent calls (HTTP/2 streams) on one connection.
        #[arg(long, env = "BAKKAL_MAX_STREAMS_PER_CONNECTION", default_value_t = 256)]
        max_streams_per_connection: u32,
        /// A new connection that sends nothing for this long is closed (seconds).
        #[arg(long, env = "BAKKAL_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
        handshake_timeout_secs: u64,
        /// A connection that sends nothing for this long is closed (seconds; the server pings
        /// live ones every minute).
        #[arg(long, env = "BAKKAL_IDLE_TIMEOUT_SECS", default_value_t = 300)]
        idle_timeout_secs: u64,
        /// How far ahead of the server's clock an order's placed time may be (seconds): a
        /// source system whose clock runs ahead.
        #[arg(long, env = "BAKKAL_FUTURE_TOLERANCE_SECS", default_value_t = 300)]
        future_tolerance_secs: u64,
        /// The business's currency (ISO 4217, e.g. TRY): used for an order that names none.
        /// Without it, an order must name its currency.
        #[arg(long, env = "BAKKAL_DEFAULT_CURRENCY")]
        default_currency: Option<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics (unauthenticated: bind a private or
        /// loopback address). Off when not given.
        #[arg(long, env = "BAKKAL_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        #[command(flatten)]
        backups: BackupArgs,
    },
    /// API keys, written straight to the database (no server needed): the first admin key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Tools for marketers' Rhai scripts.
    Script {
        #[command(subcommand)]
        command: ScriptCommand,
    },
    /// Back up a SQLite database to FILE (online: a server may be serving it), with a manifest
    /// beside it (FILE.manifest.json). PostgreSQL: pg_dump (README: Backups).
    Backup {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The backup file; an older backup there is replaced only once the new one is complete.
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Restore a backup as the SQLite database, after verifying it; refused while a server
    /// uses the database. The database replaced is kept as `{db}.pre-restore-{time}`.
    Restore {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The backup file (with its FILE.manifest.json).
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Check a backup against its manifest: checksum, SQLite integrity, schema version, row
    /// counts. Exits non-zero when it does not hold.
    VerifyBackup {
        /// The backup file (with its FILE.manifest.json).
        file: std::path::PathBuf,
    },
}

/// Backups `bakkal serve` takes (SQLite): on request (BackupService) and on a schedule.
#[derive(clap::Args, Clone)]
struct BackupArgs {
    /// Directory of backups (`bakkal-YYYYMMDDTHHMMSSZ.db` with manifests): where
    /// BackupService.CreateBackup and scheduled backups write.
    #[arg(long, env = "BAKKAL_BACKUP_DIR")]
    backup_dir: Option<std::path::PathBuf>,
    /// Take a backup this often: `6h`, `30m`, `90s`, `1d` or seconds (needs --backup-dir).
    #[arg(long, env = "BAKKAL_BACKUP_EVERY", requires = "backup_dir",
          value_parser = bakkal::backup::schedule::parse_every)]
    backup_every: Option<std::time::Duration>,
    /// Complete backups kept in --backup-dir, the newest; older ones are removed after each
    /// backup (0: keep all).
    #[arg(long, env = "BAKKAL_BACKUP_KEEP", default_value_t = 7)]
    backup_keep: usize,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for the service account `--name` (created with `--role` when missing) and
    /// print it, once: only a hash of it is stored.
    Create {
        #[command(flatten)]
        db: DatabaseArgs,
        /// A built-in role: admin, integration, marketer, analyst, agent, agent_lead,
        /// sales_rep, sales_manager, auditor.
        #[arg(long, default_value = "admin")]
        role: String,
        /// The service account's display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum ScriptCommand {
    /// Validate script files offline, as the server would: prints `file:line:col: message`
    /// for each problem and exits non-zero if there is any.
    Check {
        /// SEGMENT, OFFER, MESSAGE or ROUTING; default: each file's `// KIND:` header, else
        /// the entry point it defines.
        #[arg(long)]
        kind: Option<String>,
        /// The `.rhai` files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Print the Rhai definition file (`.d.rhai`) of bakkal's script API, for editors.
    Defs {
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// mimalloc rather than the system allocator: campaign runs, scripts and the SQLite workers
/// allocate from many threads at once, where glibc's allocator spent a sixth of the CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // one rustls crypto provider for the whole process (TLS, the NATS client)
    bakkal::tls::install_crypto_provider();
    // Log lines are formatted on the calling thread and written by a background one, so a slow
    // terminal or pipe never stalls a request; nothing is dropped (lossy: false).
    let cli = Cli::parse();
    // The server logs to standard output; the other commands to standard error, so that what
    // they print (a key, a definition file) is all that standard output holds.
    let out: Box<dyn std::io::Write + Send> = match cli.command {
        Command::Serve { .. } => Box::new(std::io::stdout()),
        _ => Box::new(std::io::stderr()),
    };
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(out);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(writer)
        .init();
    match cli.command {
        Command::Serve {
            listen,
            db,
            outbox_file,
            desk_message_script,
            delivery,
            tls,
            scheduler_tick_ms,
            loyalty_sweep_secs,
            require_auth,
            insecure_no_auth,
            oidc,
            limits,
            no_audit_trail,
            max_client_connections,
            max_streams_per_connection,
            handshake_timeout_secs,
            idle_timeout_secs,
            future_tolerance_secs,
            default_currency,
            metrics_listen,
            backups,
        } => {
            use std::time::Duration;
            let config = Config {
                listen,
                database_url: db.database_url,
                max_connections: db.max_connections,
                customer_cache: db.customer_cache,
                outbox_file,
                desk: bakkal::config::DeskConfig {
                    message_script: desk_message_script,
                    ..Default::default()
                },
                delivery: delivery.into_config(),
                scheduler_tick: std::time::Duration::from_millis(scheduler_tick_ms.max(10)),
                loyalty_sweep: (loyalty_sweep_secs > 0)
                    .then(|| std::time::Duration::from_secs(loyalty_sweep_secs)),
                auth: AuthConfig {
                    require: require_auth,
                    insecure_no_auth,
                    oidc: oidc.into_config(),
                },
                connections: bakkal::connections::ConnectionLimits {
                    max_connections: max_client_connections.max(1),
                    max_streams: max_streams_per_connection.max(1),
                    handshake_timeout: Duration::from_secs(handshake_timeout_secs.max(1)),
                    idle_timeout: Duration::from_secs(idle_timeout_secs.max(1)),
                    ..Default::default()
                },
                limits: bakkal::limits::LimitsConfig {
                    rates: limits.rate_limits,
                    max_in_flight: (limits.max_in_flight > 0).then_some(limits.max_in_flight),
                },
                future_tolerance: Duration::from_secs(future_tolerance_secs),
                default_currency: default_currency.map(|c| c.trim().to_uppercase()),
                metrics: bakkal::metrics::MetricsConfig {
                    listen: metrics_listen,
                    ..Default::default()
                },
                tls: tls.into_config(),
                backup: bakkal::backup::BackupConfig {
                    dir: backups.backup_dir,
                    every: backups.backup_every,
                    keep: backups.backup_keep,
                },
                audit_trail: !no_audit_trail,
                sales_clock: Default::default(),
            };
            let listener = tokio::net::TcpListener::bind(listen).await?;
            server::run(config, listener, server::shutdown_signal()).await
        }
        Command::Script {
            command: ScriptCommand::Check { kind, files },
        } => {
            let forced = match kind.as_deref().map(str::to_uppercase) {
                Some(k) => Some(bakkal_script::ScriptKind::parse(&k).ok_or_else(|| {
                    anyhow::anyhow!("unknown kind {k}: SEGMENT, OFFER, MESSAGE or ROUTING")
                })?),
                None => None,
            };
            let host = bakkal_script::ScriptHost::default();
            let mut report = String::new();
            let mut problems = 0;
            for f in &files {
                let shown = f.display();
                let source = match std::fs::read_to_string(f) {
                    Ok(s) => s,
                    Err(e) => {
                        report.push_str(&format!("{shown}:0:0: cannot read: {e}\n"));
                        problems += 1;
                        continue;
                    }
                };
                let Some(kind) = forced.or_else(|| bakkal_script::ScriptKind::of_file(&source))
                else {
                    report.push_str(&format!(
                        "{shown}:1:1: unknown kind: start with `// SEGMENT: …` (or OFFER, \
                         MESSAGE, ROUTING) or pass --kind\n"
                    ));
                    problems += 1;
                    continue;
                };
                for d in host.validate(kind, &source) {
                    report.push_str(&format!("{shown}:{}:{}: {}\n", d.line, d.column, d.message));
                    problems += 1;
                }
            }
            let mut out = std::io::stdout();
            std::io::Write::write_all(&mut out, report.as_bytes())?;
            std::io::Write::flush(&mut out)?;
            if problems > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Script {
            command: ScriptCommand::Defs { out },
        } => {
            let defs = bakkal_script::ScriptHost::default().definitions();
            match out {
                Some(path) => std::fs::write(&path, defs)?,
                None => std::io::Write::write_all(&mut std::io::stdout(), defs.as_bytes())?,
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Create { db, role, name },
        } => {
            if bakkal::auth::permissions::BuiltIn::parse(&role).is_none() {
                anyhow::bail!(
                    "unknown role '{role}': use a built-in role (see docs/permissions.md)"
                );
            }
            let config = Config {
                max_connections: 1,
                customer_cache: 0,
                ..Config::new(DEFAULT_LISTEN.parse()?, db.database_url)
            };
            let store = server::open_store(&config).await?;
            let (key, text) = bakkal::auth::keys::bootstrap(
                &store,
                &name,
                &role,
                bakkal_domain::time::now_micros(),
            )
            .await?;
            store.close().await;
            tracing::info!(key_id = %key.key_id, owner = %key.parent(), role = %role, "API key created");
            std::io::Write::write_all(&mut std::io::stdout(), format!("{text}\n").as_bytes())?;
            Ok(())
        }
        Command::Backup { db, to } => {
            let m = bakkal::backup::cli::backup(&db.database_url, &to).await?;
            tracing::info!(database = %server::redact(&db.database_url), "backup complete");
            println_out(&bakkal::backup::cli::summary(&to, &m))
        }
        Command::VerifyBackup { file } => {
            let m = bakkal::backup::cli::verify(&file).await?;
            println_out(&format!("ok {}", bakkal::backup::cli::summary(&file, &m)))
        }
        Command::Restore { db, from } => {
            let r = bakkal::backup::cli::restore(&db.database_url, &from).await?;
            if let Some(old) = &r.replaced_moved_to {
                tracing::info!(kept = %old.display(), "the database replaced is kept");
            }
            println_out(&format!(
                "restored {}",
                bakkal::backup::cli::summary(&from, &r.manifest)
            ))
        }
        Command::Migrate { db } => {
            let config = Config {
                listen: DEFAULT_LISTEN.parse()?,
                database_url: db.database_url,
                max_connections: 1,
                customer_cache: 0,
                outbox_file: None,
                desk: Default::default(),
                delivery: DeliveryConfig::default(),
                scheduler_tick: std::time::Duration::from_secs(1),
                loyalty_sweep: None,
                auth: AuthConfig::default(),
                connections: Default::default(),
                limits: Default::default(),
                future_tolerance: std::time::Duration::from_secs(300),
                default_currency: None,
                metrics: Default::default(),
                tls: None,
                backup: Default::default(),
                audit_trail: true,
                sales_clock: Default::default(),
            };
            let store = server::open_store(&config).await?;
            store.close().await;
            tracing::info!(database = %server::redact(&config.database_url), "migrations applied");
            Ok(())
        }
    }
}

/// A line on standard output (the commands' result; logs go to standard error).
fn println_out(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}
