//! ImportCustomers of generated customers into SQLite, against the sqlite3 shell's own `.import`
//! of the same rows into a table with the same columns and the same unique indexes.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::{self, import_customers_request::Row};

use crate::process::{admin_key, serve_command, Server};

const REGIONS: [(&str, &str); 6] = [
    ("Marmara", "İstanbul"),
    ("Ege", "İzmir"),
    ("İç Anadolu", "Ankara"),
    ("Akdeniz", "Antalya"),
    ("Karadeniz", "Trabzon"),
    ("Güneydoğu", "Gaziantep"),
];

/// Customer `i` of the generated data set: unique email and phone, a region and city, a birth
/// date and a tag.
pub fn generated_customer(i: usize) -> proto::Customer {
    let (region, city) = REGIONS[i % REGIONS.len()];
    proto::Customer {
        display_name: format!("Customer {i}"),
        email: format!("customer{i}@example.com"),
        phone: format!("+90532{i:07}"),
        country_code: "TR".into(),
        region: region.into(),
        city: city.into(),
        birth_date: format!("{}-{:02}-{:02}", 1950 + i % 50, 1 + i % 12, 1 + i % 28),
        tags: vec![if i.is_multiple_of(10) {
            "vip".into()
        } else {
            "regular".into()
        }],
        ..Default::default()
    }
}

/// How many orders customer `i` has with `--orders`: 2 or 3, 2.3 on average.
pub fn orders_of(i: usize) -> usize {
    if i % 10 < 3 {
        3
    } else {
        2
    }
}

/// Order `k` of customer `i`.
pub fn generated_order(i: usize, k: usize) -> proto::Order {
    proto::Order {
        order_id: format!("O-{i}-{k}"),
        currency: "TRY".into(),
        placed_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + (i as i64 % 86_400) * 300 + k as i64 * 86_400,
            nanos: 0,
        }),
        lines: vec![proto::OrderLine {
            sku: format!("SKU-{}", (i + k) % 50),
            category: if k.is_multiple_of(2) { "tea" } else { "coffee" }.into(),
            quantity: 1 + (k as i64 % 3),
            unit_price: ((i * 37 + k * 53) % 200) as f64 + 0.5,
        }],
        ..Default::default()
    }
}

/// The import stream: each customer, followed by its orders when `orders`.
fn import_rows(rows: usize, orders: bool) -> impl Iterator<Item = proto::ImportCustomersRequest> {
    (0..rows).flat_map(move |i| {
        let customer = std::iter::once(proto::ImportCustomersRequest {
            row: Some(Row::Customer(generated_customer(i))),
        });
        let n = if orders { orders_of(i) } else { 0 };
        let email = format!("customer{i}@example.com");
        customer.chain((0..n).map(move |k| proto::ImportCustomersRequest {
            row: Some(Row::Order(proto::ImportOrder {
                order: Some(generated_order(i, k)),
                customer_email: email.clone(),
            })),
        }))
    })
}

/// Customer `i`'s orders as the server stores them, as CSV for sqlite3 (the customer's rowid
/// is `i + 1`).
fn csv_orders(i: usize, out: &mut impl Write) -> std::io::Result<()> {
    for k in 0..orders_of(i) {
        let o = generated_order(i, k);
        let line = &o.lines[0];
        let total = (line.unit_price * line.quantity as f64 * 100.0).round() as i64;
        writeln!(
            out,
            "{},{},TRY,{},PAID,{},\"[{{\"\"sku\"\":\"\"{}\"\",\"\"category\"\":\"\"{}\"\",\"\"quantity\"\":{},\"\"unit_price\"\":{}}}]\",{}",
            o.order_id,
            i + 1,
            o.placed_time.map_or(0, |t| t.seconds * 1_000_000),
            total,
            line.sku,
            line.category,
            line.quantity,
            (line.unit_price * 100.0).round() as i64,
            1_700_000_000_000_000i64
        )?;
    }
    Ok(())
}

/// The same row as the server stores it, as CSV for sqlite3.
fn csv_row(i: usize, out: &mut impl Write) -> std::io::Result<()> {
    let c = generated_customer(i);
    writeln!(
        out,
        "{},{},{},{},{},{},{},{},\",{},\",{{}},0,0,0,0,{},{}",
        c.display_name,
        c.display_name.to_lowercase(),
        c.email,
        c.phone,
        c.country_code,
        c.region,
        c.city,
        c.birth_date,
        c.tags[0],
        1_700_000_000_000_000i64,
        1_700_000_000_000_000i64
    )
}

const BASELINE_SCHEMA: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
    CREATE TABLE customers (display_name TEXT NOT NULL, name_key TEXT NOT NULL, email TEXT, \
    phone TEXT, country_code TEXT, region TEXT NOT NULL, city TEXT NOT NULL, birth_date TEXT, \
    tags TEXT NOT NULL, attributes TEXT NOT NULL, consent_email INTEGER NOT NULL, \
    consent_sms INTEGER NOT NULL, consent_push INTEGER NOT NULL, consent_phone INTEGER NOT NULL, \
    create_time INTEGER NOT NULL, update_time INTEGER NOT NULL); \
    CREATE UNIQUE INDEX customers_email ON customers (email); \
    CREATE UNIQUE INDEX customers_phone ON customers (phone); \
    CREATE INDEX customers_name_key ON customers (name_key);";

const BASELINE_ORDERS_SCHEMA: &str = "CREATE TABLE orders (order_id TEXT PRIMARY KEY, \
    customer_id INTEGER NOT NULL, currency TEXT NOT NULL, placed_time INTEGER NOT NULL, \
    status TEXT NOT NULL, total INTEGER NOT NULL, lines TEXT NOT NULL, \
    create_time INTEGER NOT NULL); \
    CREATE INDEX orders_customer ON orders (customer_id, placed_time DESC, order_id DESC);";

pub async fn run(rows: usize, orders: bool, auth: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    // Baseline: sqlite3's .import of the same rows.
    let csv = dir.path().join("rows.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        for i in 0..rows {
            csv_row(i, &mut w)?;
        }
        w.flush()?;
    }
    let orders_csv = dir.path().join("orders.csv");
    let order_rows: usize = if orders {
        (0..rows).map(orders_of).sum()
    } else {
        0
    };
    if orders {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&orders_csv)?);
        for i in 0..rows {
            csv_orders(i, &mut w)?;
        }
        w.flush()?;
    }
    let base_db = dir.path().join("baseline.db");
    let status = Command::new("sqlite3")
        .arg(&base_db)
        .arg(if orders {
            format!("{BASELINE_SCHEMA} {BASELINE_ORDERS_SCHEMA}")
        } else {
            BASELINE_SCHEMA.to_string()
        })
        .status()?;
    anyhow::ensure!(status.success(), "sqlite3 schema failed");
    let t0 = Instant::now();
    let mut import = Command::new("sqlite3");
    import
        .arg(&base_db)
        .arg(".mode csv")
        .arg(format!(".import {} customers", csv.display()));
    if orders {
        import.arg(format!(".import {} orders", orders_csv.display()));
    }
    let out = import.output()?;
    let base_secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "sqlite3 .import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counted = Command::new("sqlite3")
        .arg(&base_db)
        .arg("SELECT COUNT(*) FROM customers")
        .output()?;
    let base_count: usize = String::from_utf8_lossy(&counted.stdout).trim().parse()?;
    anyhow::ensure!(
        base_count == rows,
        "sqlite3 imported {base_count} of {rows} rows"
    );

    // bakkal: the same rows streamed to ImportCustomers, generated on the fly.
    let (bakkal_secs, peak, idle_mib) =
        bakkal_import(dir.path(), "bakkal", rows, orders, Mode::Default).await?;
    let compared = match auth {
        false => None,
        true => Some((
            bakkal_import(dir.path(), "bare", rows, orders, Mode::Neither).await?,
            bakkal_import(dir.path(), "secured", rows, orders, Mode::AuthAndAudit).await?,
        )),
    };
    // rows/s counts every row of the stream, customers and orders alike
    let rows_in = rows;
    let rows = rows + order_rows;

    let base_rate = rows as f64 / base_secs;
    let bakkal_rate = rows as f64 / bakkal_secs;
    println!(
        "ImportCustomers of {rows_in} generated customers and {order_rows} orders into SQLite (WAL)"
    );
    println!("{:<36} {:>9} {:>12}", "importer", "seconds", "rows/s");
    println!(
        "{:<36} {:>9.2} {:>12.0}",
        "sqlite3 .import (baseline)", base_secs, base_rate
    );
    println!(
        "{:<36} {:>9.2} {:>12.0}",
        "bakkal ImportCustomers (gRPC stream)", bakkal_secs, bakkal_rate
    );
    println!(
        "ratio bakkal/sqlite3 rows/s: {:.2} (target >= 0.5)",
        bakkal_rate / base_rate
    );
    println!("bakkal server peak memory: {peak:.0} MiB (after start-up: {idle_mib:.0} MiB)");
    if let Some(((neither, _, _), (secured, _, _))) = compared {
        println!(
            "{:<36} {:>9.2} {:>12.0}",
            "open, --no-audit-trail",
            neither,
            rows as f64 / neither
        );
        println!(
            "{:<36} {:>9.2} {:>12.0}",
            "API key required, audit trail on",
            secured,
            rows as f64 / secured
        );
        println!(
            "ratio auth+audit/neither rows/s: {:.2} (target >= 0.9)",
            neither / secured
        );
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `bakkal serve` as it starts by default on loopback: open, audit trail on.
    Default,
    /// Open and `--no-audit-trail`: the import as it was before access control.
    Neither,
    /// `--require-auth` with an admin key on every call, audit trail on.
    AuthAndAudit,
}

/// ImportCustomers of `rows` generated customers into a fresh SQLite file `{file}.db`:
/// (seconds, the server's peak MiB, its MiB after start-up).
async fn bakkal_import(
    dir: &std::path::Path,
    file: &str,
    rows: usize,
    orders: bool,
    mode: Mode,
) -> anyhow::Result<(f64, f64, f64)> {
    let url = format!("sqlite://{}", dir.join(format!("{file}.db")).display());
    let (mut cmd, port) = serve_command(&url)?;
    let mut bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = None;
    match mode {
        Mode::Default => {}
        Mode::Neither => {
            cmd.arg("--no-audit-trail");
        }
        Mode::AuthAndAudit => {
            let key = admin_key(&url)?;
            bearer = Some(format!("Bearer {key}").parse()?);
            cmd.arg("--require-auth");
        }
    }
    let server = Server::start(cmd, port)?;
    let with_key = |mut r: tonic::Request<()>| {
        if let Some(v) = &bearer {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    };
    let mut client = CustomerServiceClient::with_interceptor(server.channel().await?, with_key);
    // wait for migrations
    for _ in 0..300 {
        if client
            .list_customers(proto::ListCustomersRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let idle_mib = server.peak_rss_mib();
    let stream = tokio_stream::iter(import_rows(rows, orders));
    let t0 = Instant::now();
    let res = client.import_customers(stream).await?.into_inner();
    let secs = t0.elapsed().as_secs_f64();
    let want_orders: usize = if orders {
        (0..rows).map(orders_of).sum()
    } else {
        0
    };
    anyhow::ensure!(
        res.created as usize == rows
            && res.orders_recorded as usize == want_orders
            && res.rejected == 0,
        "bakkal created {} of {rows} customers, recorded {} of {want_orders} orders, rejected {}",
        res.created,
        res.orders_recorded,
        res.rejected
    );
    Ok((secs, server.peak_rss_mib(), idle_mib))
}
