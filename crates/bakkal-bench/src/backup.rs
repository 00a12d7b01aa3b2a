//! An online backup (BackupService/CreateBackup) of the generated N-customer database while
//! GetCustomer load runs, against the same load without a backup, on one server in one run:
//! the backup's seconds and GetCustomer p99 during it against without (target ≤ 2×).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakkal::proto;
use bakkal::proto::backup_service_client::BackupServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;

use crate::process::{serve_command, Server};

pub async fn run(
    customers: usize,
    dir: Option<PathBuf>,
    connections: usize,
    streams: usize,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let db = crate::segments::seed(customers, &dir).await?;
    let backups_dir = tmp.path().join("backups");
    let (mut cmd, port) = serve_command(&format!("sqlite://{}", db.display()))?;
    cmd.args([
        "--backup-dir",
        &backups_dir.display().to_string(),
        "--backup-keep",
        "1",
    ]);
    let server = Server::start(cmd, port)?;
    let channel = server.channel().await?;
    crate::segments::wait_ready(channel.clone()).await?;
    let first = CustomerServiceClient::new(channel.clone())
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    let first_id: u64 = first.customers[0]
        .name
        .trim_start_matches("customers/")
        .parse()?;
    let db_bytes = std::fs::metadata(&db)?.len();
    println!(
        "online backup of {customers} customers ({:.0} MiB database); GetCustomer at \
         {connections} connections x {streams} streams, random customers",
        db_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "round", "seconds", "req/s", "p50 ms", "p99 ms"
    );
    let mut without = Vec::new();
    let mut during = Vec::new();
    let mut backup_secs = Vec::new();
    for round in 1..=2 {
        // without a backup, as long as the last backup took (at least 5 s)
        let secs = backup_secs.last().copied().unwrap_or(5.0f64).max(5.0);
        let stop = Arc::new(AtomicBool::new(false));
        let load = spawn_load(
            &server,
            connections,
            streams,
            first_id,
            customers as u64,
            stop.clone(),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::SeqCst);
        let r = collect(load, secs).await?;
        println!(
            "{:<34} {:>9.2} {:>9.0} {:>9.2} {:>9.2}",
            format!("GetCustomer, no backup #{round}"),
            secs,
            r.rps,
            r.p50_ms,
            r.p99_ms
        );
        without.push(r.p99_ms);

        // the same load while a backup runs
        let stop = Arc::new(AtomicBool::new(false));
        let load = spawn_load(
            &server,
            connections,
            streams,
            first_id,
            customers as u64,
            stop.clone(),
        )
        .await?;
        let t0 = Instant::now();
        let b = BackupServiceClient::new(channel.clone())
            .create_backup(proto::CreateBackupRequest::default())
            .await?
            .into_inner();
        let secs = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let r = collect(load, secs).await?;
        println!(
            "{:<34} {:>9.2} {:>9.0} {:>9.2} {:>9.2}",
            format!("GetCustomer, during backup #{round}"),
            secs,
            r.rps,
            r.p50_ms,
            r.p99_ms
        );
        println!(
            "  backup {}: {:.0} MiB, {} customers",
            b.name,
            b.size_bytes as f64 / (1 << 20) as f64,
            b.row_counts.get("customers").copied().unwrap_or(0)
        );
        during.push(r.p99_ms);
        backup_secs.push(secs);
    }
    let worst = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "backup seconds: {}; GetCustomer p99 during / without: {:.2} (worst rounds; target <= 2)",
        backup_secs
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" / "),
        worst(&during) / worst(&without)
    );
    Ok(())
}

type Load = Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u32>>>>;

async fn spawn_load(
    server: &Server,
    connections: usize,
    streams: usize,
    first_id: u64,
    customers: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Load> {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let ch = server.channel().await?;
        for s in 0..streams {
            let mut client = CustomerServiceClient::new(ch.clone());
            let stop = stop.clone();
            let mut seed = (c * streams + s) as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let id = first_id + seed % customers;
                    let t0 = Instant::now();
                    client
                        .get_customer(proto::GetCustomerRequest {
                            name: format!("customers/{id}"),
                        })
                        .await?;
                    lat.push(t0.elapsed().as_micros() as u32);
                }
                Ok(lat)
            }));
        }
    }
    Ok(tasks)
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn collect(load: Load, secs: f64) -> anyhow::Result<Figures> {
    let mut all = Vec::new();
    for t in load {
        all.extend(t.await??);
    }
    anyhow::ensure!(!all.is_empty(), "no calls were made");
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    Ok(Figures {
        rps: all.len() as f64 / secs,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}
