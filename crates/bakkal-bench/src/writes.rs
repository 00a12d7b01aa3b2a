//! CreateCustomer and RecordOrder with their audit events, against the same calls on a server
//! started with `--no-audit-trail`, in the same run. Every write and its audit event share one
//! transaction, so this is what the trail costs a writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::{self};
use tonic::transport::Channel;

use crate::process::{serve_command, Server};

struct Target {
    label: &'static str,
    server: Server,
    /// Customers created so far on this server (their names), for RecordOrder.
    customers: Vec<String>,
    next: Arc<AtomicU64>,
}

async fn start(
    dir: &std::path::Path,
    label: &'static str,
    audit: bool,
    postgres: Option<&str>,
) -> anyhow::Result<Target> {
    let file = if audit { "audit-on" } else { "audit-off" };
    let url = match postgres {
        Some(base) => crate::process::fresh_postgres_database(base, file).await?,
        None => format!("sqlite://{}", dir.join(format!("{file}.db")).display()),
    };
    let (mut cmd, port) = serve_command(&url)?;
    if !audit {
        cmd.arg("--no-audit-trail");
    }
    let server = Server::start(cmd, port)?;
    let mut c = CustomerServiceClient::new(server.channel().await?);
    for _ in 0..300 {
        if c.list_customers(proto::ListCustomersRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Target {
        label,
        server,
        customers: Vec::new(),
        next: Arc::new(AtomicU64::new(0)),
    })
}

fn customer(i: u64) -> proto::Customer {
    let mut c = crate::import::generated_customer(i as usize);
    c.email = format!("writer{i}@example.com");
    c.phone = format!("+90533{i:07}");
    c
}

/// CreateCustomer from `clients` tasks for `seconds`: the calls per second, and the names made.
async fn create_load(
    ch: &Channel,
    next: &Arc<AtomicU64>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(f64, Vec<String>)> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = CustomerServiceClient::new(ch.clone());
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            while Instant::now() < end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let made = c
                    .create_customer(proto::CreateCustomerRequest {
                        customer: Some(customer(i)),
                        request_id: String::new(),
                    })
                    .await?
                    .into_inner();
                names.push(made.name);
            }
            Ok::<_, tonic::Status>(names)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as f64 / seconds as f64, all))
}

/// RecordOrder on the customers made so far from `clients` tasks for `seconds`.
async fn order_load(
    ch: &Channel,
    customers: &Arc<Vec<String>>,
    next: &Arc<AtomicU64>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = CustomerServiceClient::new(ch.clone());
        let next = next.clone();
        let customers = customers.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let parent = customers[(i as usize * 7919) % customers.len()].clone();
                c.record_order(proto::RecordOrderRequest {
                    parent,
                    order: Some(proto::Order {
                        order_id: format!("bench-order-{i}"),
                        currency: "TRY".into(),
                        lines: vec![proto::OrderLine {
                            sku: format!("SKU-{}", i % 50),
                            category: "tea".into(),
                            quantity: 1,
                            unit_price: 12.5,
                        }],
                        ..Default::default()
                    }),
                })
                .await?;
                done += 1;
            }
            Ok::<_, tonic::Status>(done)
        }));
    }
    let mut all = 0;
    for t in tasks {
        all += t.await??;
    }
    Ok(all as f64 / seconds as f64)
}

pub async fn run(
    seconds: u64,
    clients: usize,
    rounds: usize,
    postgres: Option<String>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pg = postgres.as_deref();
    let mut targets = [
        start(dir.path(), "audit off (--no-audit-trail)", false, pg).await?,
        start(dir.path(), "audit on (default)", true, pg).await?,
    ];
    let orders_next = Arc::new(AtomicU64::new(0));
    println!(
        "CreateCustomer and RecordOrder at {clients} concurrent clients, {seconds} s a call a \
         round, on {}",
        if pg.is_some() {
            "PostgreSQL"
        } else {
            "SQLite (WAL)"
        }
    );
    println!(
        "{:<34} {:>18} {:>16}",
        "server", "CreateCustomer/s", "RecordOrder/s"
    );
    let mut create = vec![Vec::new(); targets.len()];
    let mut order = vec![Vec::new(); targets.len()];
    for round in 1..=rounds {
        for (i, t) in targets.iter_mut().enumerate() {
            let ch = t.server.channel().await?;
            let (c_rate, names) = create_load(&ch, &t.next, clients, seconds).await?;
            t.customers.extend(names);
            let customers = Arc::new(t.customers.clone());
            let o_rate = order_load(&ch, &customers, &orders_next, clients, seconds).await?;
            println!(
                "{:<34} {:>18.0} {:>16.0}",
                format!("{} #{round}", t.label),
                c_rate,
                o_rate
            );
            create[i].push(c_rate);
            order[i].push(o_rate);
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "ratio audit on/off: CreateCustomer {:.2}, RecordOrder {:.2} (best round each; target >= 0.8)",
        best(&create[1]) / best(&create[0]),
        best(&order[1]) / best(&order[0]),
    );
    Ok(())
}
