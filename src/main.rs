//! `bakkal`: the CRM back end. `bakkal serve` runs the gRPC server; `bakkal migrate` applies
//! database migrations and exits.

use bakkal::config::{Config, DEFAULT_DATABASE_URL, DEFAULT_LISTEN};
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

#[derive(Subcommand)]
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
        /// How often the campaign scheduler looks for due runs, events and stopped runs
        /// (milliseconds); a stopped server's run is resumed after 30 ticks.
        #[arg(long, env = "BAKKAL_SCHEDULER_TICK_MS", default_value_t = 1000)]
        scheduler_tick_ms: u64,
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
}

#[derive(Subcommand)]
enum ScriptCommand {
    /// Print the Rhai definition file (`.d.rhai`) of bakkal's script API, for editors.
    Defs {
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Log lines are formatted on the calling thread and written by a background one, so a slow
    // terminal or pipe never stalls a request; nothing is dropped (lossy: false).
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(writer)
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            db,
            outbox_file,
            desk_message_script,
            scheduler_tick_ms,
        } => {
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
                scheduler_tick: std::time::Duration::from_millis(scheduler_tick_ms.max(10)),
            };
            let listener = tokio::net::TcpListener::bind(listen).await?;
            server::run(config, listener, server::shutdown_signal()).await
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
        Command::Migrate { db } => {
            let config = Config {
                listen: DEFAULT_LISTEN.parse()?,
                database_url: db.database_url,
                max_connections: 1,
                customer_cache: 0,
                outbox_file: None,
                desk: Default::default(),
                scheduler_tick: std::time::Duration::from_secs(1),
            };
            let store = server::open_store(&config).await?;
            store.close().await;
            tracing::info!(database = %server::redact(&config.database_url), "migrations applied");
            Ok(())
        }
    }
}
