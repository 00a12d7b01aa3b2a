//! ImportCustomers of generated customers into SQLite, against the sqlite3 shell's own `.import`
//! of the same rows into a table with the same columns and the same unique indexes.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::{self, import_customers_request::Row};

use crate::process::{free_port, sibling, Server};

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

pub async fn run(rows: usize, auth: bool) -> anyhow::Result<()> {
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
    let base_db = dir.path().join("baseline.db");
    let status = Command::new("sqlite3")
        .arg(&base_db)
        .arg(BASELINE_SCHEMA)
        .status()?;
    anyhow::ensure!(status.success(), "sqlite3 schema failed");
    let t0 = Instant::now();
    let out = Command::new("sqlite3")
        .arg(&base_db)
        .arg(".mode csv")
        .arg(format!(".import {} customers", csv.display()))
        .output()?;
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
        bakkal_import(dir.path(), "bakkal", rows, Mode::Default).await?;
    let compared = match auth {
        false => None,
        true => Some((
            bakkal_import(dir.path(), "bare", rows, Mode::Neither).await?,
            bakkal_import(dir.path(), "secured", rows, Mode::AuthAndAudit).await?,
        )),
    };

    let base_rate = rows as f64 / base_secs;
    let bakkal_rate = rows as f64 / bakkal_secs;
    println!("ImportCustomers of {rows} generated customers into SQLite (WAL)");
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
    mode: Mode,
) -> anyhow::Result<(f64, f64, f64)> {
    let url = format!("sqlite://{}", dir.join(format!("{file}.db")).display());
    let port = free_port()?;
    let mut cmd = Command::new(sibling("bakkal")?);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        &url,
    ]);
    let mut bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = None;
    match mode {
        Mode::Default => {}
        Mode::Neither => {
            cmd.arg("--no-audit-trail");
        }
        Mode::AuthAndAudit => {
            let out = Command::new(sibling("bakkal")?)
                .args(["keys", "create", "--role", "admin", "--name", "bench"])
                .args(["--database-url", &url])
                .stderr(std::process::Stdio::null())
                .output()?;
            anyhow::ensure!(out.status.success(), "bakkal keys create failed");
            let key = String::from_utf8(out.stdout)?.trim().to_string();
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
    let stream = tokio_stream::iter((0..rows).map(|i| proto::ImportCustomersRequest {
        row: Some(Row::Customer(generated_customer(i))),
    }));
    let t0 = Instant::now();
    let res = client.import_customers(stream).await?.into_inner();
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        res.created as usize == rows && res.rejected == 0,
        "bakkal created {} of {rows} rows, rejected {}",
        res.created,
        res.rejected
    );
    Ok((secs, server.peak_rss_mib(), idle_mib))
}
