//! bakkal's benchmarks. Each prints its figure beside a baseline measured in the same run, and
//! the ratio between them, because absolute numbers on a shared 2-core machine drift.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/bakkal-bench get-customer   # GetCustomer vs a bare tonic server
//! target/release/bakkal-bench import         # ImportCustomers vs sqlite3 .import
//! target/release/bakkal-bench segments       # Preview/RefreshSegment, ComputeScores vs SQL
//! target/release/bakkal-bench tickets        # CreateTicket vs a plain INSERT of the rows
//! target/release/bakkal-bench sla-scan       # the SLA watcher's pass vs its indexed SQL
//! target/release/bakkal-bench get-offers     # GetOffers vs GetCustomer of the same customer
//! target/release/bakkal-bench campaign       # a 1M-customer campaign run vs raw outbox inserts
//! target/release/bakkal-bench backup         # online backup of 1M customers; GetCustomer p99 during vs without
//! target/release/bakkal-bench writes         # CreateCustomer/RecordOrder with the audit trail vs without
//! ```
//! The servers run as separate processes (the release `bakkal` binary next to this one), so
//! their peak memory is their own.

mod backup;
mod campaign;
mod desk;
mod get_customer;
mod get_offers;
mod import;
mod process;
mod segments;
mod writes;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bakkal-bench",
    about = "bakkal benchmarks, each against a baseline in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// GetCustomer throughput and latency at 16 connections x 16 streams, against a bare tonic
    /// server returning a message of the same size.
    GetCustomer {
        /// Seconds of load per round (each server gets two rounds, interleaved).
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 16)]
        streams: usize,
        /// Customers in the database; requests pick among them at random.
        #[arg(long, default_value_t = 10_000)]
        customers: usize,
        /// The server's --customer-cache (0: every GetCustomer reads SQLite).
        #[arg(long, default_value_t = 100_000)]
        cache: usize,
        /// Also run a third server that requires an API key on every call (issue 12: auth on
        /// against auth off, same run).
        #[arg(long)]
        auth: bool,
    },
    /// ImportCustomers of N generated customers into SQLite, against sqlite3's .import of the
    /// same rows.
    Import {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Follow each customer with its 2 or 3 orders (2.3 on average), as a shop's export
        /// would; the baseline imports the same orders into a table with the same indexes.
        #[arg(long)]
        orders: bool,
        /// Also import the rows into a server requiring an API key with the audit trail on, and
        /// into one without either (`--no-audit-trail`, open): auth and audit against neither,
        /// same run (issue 12).
        #[arg(long)]
        auth: bool,
    },
    /// CreateCustomer then RecordOrder at N concurrent clients for a few seconds each, on a
    /// server with the audit trail (the default) and one started with `--no-audit-trail`,
    /// interleaved rounds.
    Writes {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Run on PostgreSQL: a URL naming any database on the server (each server gets a
        /// fresh database of its own); default SQLite files in a temp dir.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// PreviewSegment, RefreshSegment and ComputeScores over N generated customers (0-5
    /// orders each) in SQLite, against the same predicate as SQL through the sqlite3 shell.
    Segments {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Keep the generated database here and reuse it on later runs (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// CreateTicket at N concurrent clients on SQLite (server in this process), against the
    /// plain INSERT of the same ticket rows through a pool of the same size.
    Tickets {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// The SLA watcher's pass over N open tickets (nothing due; ~100 due), against the same
    /// indexed SQL run bare.
    SlaScan {
        #[arg(long, default_value_t = 1_000_000)]
        tickets: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// GetOffers for one customer with N orders and two live offer campaigns, against
    /// GetCustomer of the same customer on the same server (needs the sqlite3 shell).
    GetOffers {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 2)]
        streams: usize,
        #[arg(long, default_value_t = 100)]
        orders: usize,
        #[arg(long, default_value_t = 200)]
        products: usize,
    },
    /// LaunchCampaign over N generated customers (the `segments` database) until COMPLETED,
    /// against the sqlite3 shell inserting the same outbox rows.
    Campaign {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Runs, each on a fresh copy of the generated database.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Keep the generated database here and reuse it on later runs (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// BackupService/CreateBackup of the generated N-customer database (the `segments`
    /// database) while GetCustomer load runs, against the same load without a backup.
    Backup {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Keep the generated database here and reuse it on later runs (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 4)]
        streams: usize,
    },
    /// The baseline server of `get-customer` (started by it; not for direct use).
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Hex of the encoded Customer message to return.
        #[arg(long)]
        message_hex: String,
    },
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Cli::parse().command {
        Command::GetCustomer {
            seconds,
            connections,
            streams,
            customers,
            cache,
            auth,
        } => rt.block_on(get_customer::run(
            seconds,
            connections,
            streams,
            customers,
            cache,
            auth,
        )),
        Command::Import { rows, orders, auth } => rt.block_on(import::run(rows, orders, auth)),
        Command::Writes {
            seconds,
            clients,
            rounds,
            postgres,
        } => rt.block_on(writes::run(seconds, clients, rounds, postgres)),
        Command::GetOffers {
            seconds,
            connections,
            streams,
            orders,
            products,
        } => rt.block_on(get_offers::run(
            seconds,
            connections,
            streams,
            orders,
            products,
        )),
        Command::Segments { customers, dir } => rt.block_on(segments::run(customers, dir)),
        Command::Tickets { count, clients } => rt.block_on(desk::tickets(count, clients)),
        Command::SlaScan { tickets, rounds } => rt.block_on(desk::sla_scan(tickets, rounds)),
        Command::Campaign {
            customers,
            rounds,
            dir,
        } => rt.block_on(campaign::run(customers, rounds, dir)),
        Command::Backup {
            customers,
            dir,
            connections,
            streams,
        } => rt.block_on(backup::run(customers, dir, connections, streams)),
        Command::BareServer {
            listen,
            message_hex,
        } => rt.block_on(get_customer::bare_server(listen, &message_hex)),
    }
}
