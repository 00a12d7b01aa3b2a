//! Segments at scale: N generated customers with 0–5 orders each, imported into SQLite through
//! ImportCustomers; then a three-clause SEGMENT rule timed through PreviewSegment and
//! RefreshSegment, and ComputeScores, each beside the same predicate run as SQL by the sqlite3
//! shell on the same database file in the same run. The server is restarted after the import
//! so that its peak memory (VmHWM) is that of the segment work alone.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, import_customers_request::Row, preview_segment_request::Target};

use crate::import::generated_customer;
use crate::process::{serve_command, sibling, Server};

const RULE: &str =
    "fn matches(c) {\n    c.total_spent > 300.0 && c.region == \"Ege\" && c.order_count >= 2\n}\n";
const RULE_SQL: &str = "SELECT COUNT(*) FROM customers WHERE merged_into IS NULL AND \
    deleted_time IS NULL AND total_spent > 300000000 AND region = 'Ege' AND order_count >= 2";
/// What ComputeScores reads and ranks, as SQL: the same numbers of every live customer,
/// sorted by the monetary key (the baseline for one pass over the scoring inputs).
const SCORE_SQL: &str = "SELECT COUNT(*) FROM (SELECT id, total_spent, order_count, \
    first_order_time, last_order_time, referral_count FROM customers WHERE merged_into IS NULL \
    AND deleted_time IS NULL ORDER BY total_spent DESC, id)";

const DAY_MICROS: i64 = 86_400_000_000;

/// Orders of generated customer `i`: 0–5, amounts 0.5–199.5, placed over the last 400 days.
fn generated_orders(i: usize, now: i64) -> impl Iterator<Item = proto::ImportOrder> {
    let n = (i * 7 + i / 3) % 6;
    (0..n).map(move |k| {
        let placed = now - ((i * 13 + k * 29) % 400) as i64 * DAY_MICROS;
        proto::ImportOrder {
            order: Some(proto::Order {
                order_id: format!("G-{i}-{k}"),
                currency: "TRY".into(),
                placed_time: Some(prost_types::Timestamp {
                    seconds: placed / 1_000_000,
                    nanos: 0,
                }),
                lines: vec![proto::OrderLine {
                    sku: format!("SKU-{}", (i + k) % 50),
                    category: if k % 2 == 0 { "tea" } else { "coffee" }.into(),
                    quantity: 1,
                    unit_price: ((i * 37 + k * 53) % 200) as f64 + 0.5,
                }],
                ..Default::default()
            }),
            customer_email: format!("customer{i}@example.com"),
        }
    })
}

pub fn start(db: &Path) -> anyhow::Result<Server> {
    let (cmd, port) = serve_command(&format!("sqlite://{}", db.display()))?;
    Server::start(cmd, port)
}

/// Run `sql` with the sqlite3 shell; (seconds, the number it printed).
pub fn sqlite_count(db: &Path, sql: &str) -> anyhow::Result<(f64, i64)> {
    let t0 = Instant::now();
    let out = Command::new("sqlite3").arg(db).arg(sql).output()?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((secs, String::from_utf8_lossy(&out.stdout).trim().parse()?))
}

pub async fn wait_ready(channel: tonic::transport::Channel) -> anyhow::Result<()> {
    let mut client = CustomerServiceClient::new(channel);
    for _ in 0..600 {
        if client
            .list_customers(proto::ListCustomersRequest::default())
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("server did not become ready")
}

/// The generated database of `customers` customers (0–5 orders each) in `dir`: imported
/// through ImportCustomers on first use, reused after. Also the `campaign` benchmark's.
pub async fn seed(customers: usize, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let db = dir.join(format!("segments-{customers}.db"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;

    if !db.exists() {
        let server = start(&db)?;
        let channel = server.channel().await?;
        wait_ready(channel.clone()).await?;
        let rows = (0..customers)
            .map(|i| proto::ImportCustomersRequest {
                row: Some(Row::Customer(generated_customer(i))),
            })
            .chain((0..customers).flat_map(move |i| {
                generated_orders(i, now).map(|o| proto::ImportCustomersRequest {
                    row: Some(Row::Order(o)),
                })
            }));
        let t0 = Instant::now();
        let res = CustomerServiceClient::new(channel)
            .import_customers(tokio_stream::iter(rows))
            .await?
            .into_inner();
        anyhow::ensure!(
            res.created as usize == customers && res.rejected == 0,
            "imported {} of {customers} customers, {} rejected",
            res.created,
            res.rejected
        );
        println!(
            "imported {customers} customers and {} orders in {:.1} s (ImportCustomers)",
            res.orders_recorded,
            t0.elapsed().as_secs_f64()
        );
        drop(server);
    } else {
        println!("reusing {}", db.display());
        // a database seeded by an older build: bring its schema up to this one's
        let out = Command::new(sibling("bakkal")?)
            .args([
                "migrate",
                "--database-url",
                &format!("sqlite://{}", db.display()),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "bakkal migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(db)
}

pub async fn run(customers: usize, dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let db = seed(customers, &dir).await?;

    // A fresh server: its peak memory is the segment work's.
    let server = start(&db)?;
    let channel = server.channel().await?;
    wait_ready(channel.clone()).await?;
    let idle = server.peak_rss_mib();
    let mut scripts = ScriptServiceClient::new(channel.clone());
    let mut segments = SegmentServiceClient::new(channel);
    let script = scripts
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "bench rule".into(),
                kind: proto::ScriptKind::Segment as i32,
                source: RULE.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .name;
    let mut new_segment = async |display_name: &str| -> anyhow::Result<String> {
        Ok(segments
            .create_segment(proto::CreateSegmentRequest {
                segment: Some(proto::Segment {
                    display_name: display_name.into(),
                    script: script.clone(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .name)
    };
    let in_db = new_segment("bench (SQL path)").await?;
    let interpreted = new_segment("bench (interpreter)").await?;

    let (sql_secs, sql_count) = sqlite_count(&db, RULE_SQL)?;
    let (score_sql_secs, score_sql_count) = sqlite_count(&db, SCORE_SQL)?;

    let mut lines: Vec<(String, f64, f64, f64)> = Vec::new();
    for (label, interpreter_only) in [
        ("PreviewSegment (in database)", false),
        ("PreviewSegment (interpreter)", true),
    ] {
        let t0 = Instant::now();
        let preview = segments
            .preview_segment(proto::PreviewSegmentRequest {
                target: Some(Target::Name(in_db.clone())),
                interpreter_only,
                ..Default::default()
            })
            .await?
            .into_inner();
        let secs = t0.elapsed().as_secs_f64();
        anyhow::ensure!(
            preview.matched_count == sql_count && preview.error_count == 0,
            "PreviewSegment matched {} (errors {}), SQL counted {sql_count}",
            preview.matched_count,
            preview.error_count
        );
        anyhow::ensure!(preview.evaluated_in_database != interpreter_only);
        lines.push((label.into(), secs, sql_secs, server.peak_rss_mib()));
    }

    for (label, segment, interpreter_only) in [
        ("RefreshSegment (in database, first)", &in_db, false),
        ("RefreshSegment (in database, again)", &in_db, false),
        ("RefreshSegment (interpreter, first)", &interpreted, true),
        ("RefreshSegment (interpreter, again)", &interpreted, true),
    ] {
        let t0 = Instant::now();
        let r = segments
            .refresh_segment(proto::RefreshSegmentRequest {
                name: segment.clone(),
                interpreter_only,
            })
            .await?
            .into_inner();
        let secs = t0.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.member_count == sql_count,
            "RefreshSegment: {} members, SQL counted {sql_count}",
            r.member_count
        );
        lines.push((label.into(), secs, sql_secs, server.peak_rss_mib()));
    }

    for label in ["ComputeScores (first)", "ComputeScores (again)"] {
        let t0 = Instant::now();
        let r = segments
            .compute_scores(proto::ComputeScoresRequest {})
            .await?
            .into_inner();
        let secs = t0.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.scored_count == score_sql_count,
            "ComputeScores scored {}, SQL counted {score_sql_count}",
            r.scored_count
        );
        lines.push((label.into(), secs, score_sql_secs, server.peak_rss_mib()));
    }

    println!(
        "Segments over {customers} customers in SQLite; rule: total_spent > 300 AND region = Ege \
         AND order_count >= 2 ({sql_count} members)"
    );
    println!(
        "{:<38} {:>9} {:>12} {:>9} {:>14}",
        "call", "seconds", "SQL seconds", "ratio", "peak MiB"
    );
    for (label, secs, base, peak) in &lines {
        println!(
            "{label:<38} {secs:>9.2} {base:>12.3} {:>9.1} {peak:>14.0}",
            secs / base
        );
    }
    println!(
        "SQL baselines (sqlite3 shell, same file): the rule as COUNT(*) {sql_secs:.3} s; the \
         scoring inputs read and sorted {score_sql_secs:.3} s"
    );
    println!(
        "bakkal server peak memory: {:.0} MiB (after start-up: {idle:.0} MiB); targets: \
         RefreshSegment of 1M <= 2 s, ComputeScores of 1M <= 5 s, peak <= 300 MB",
        server.peak_rss_mib()
    );
    Ok(())
}
