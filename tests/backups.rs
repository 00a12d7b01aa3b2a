//! Backups through the public API and the `bakkal` binary: a backup taken while writes go on
//! restores exactly the snapshot it saw; restore refuses a database a server uses and a
//! backup that does not match its manifest; a kill -9 mid-backup leaves the previous backup
//! intact; scheduled backups keep the newest N; PostgreSQL round-trips through pg_dump and
//! pg_restore.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bakkal::proto;
use bakkal::proto::backup_service_client::BackupServiceClient;
use common::{Backend, TestDb, TestServer};
use tonic::transport::Channel;
use tonic::Code;

fn bakkal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bakkal"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run bakkal")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn backups(server: &TestServer) -> BackupServiceClient<Channel> {
    BackupServiceClient::new(server.channel.clone())
}

fn db_file(url: &str) -> PathBuf {
    bakkal_store::backup::sqlite_path(url).expect("a sqlite url")
}

async fn create(server: &TestServer, email: &str) -> Result<proto::Customer, tonic::Status> {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: format!("Customer {email}"),
                email: email.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn get(server: &TestServer, name: &str) -> Result<proto::Customer, tonic::Status> {
    server
        .customers()
        .get_customer(proto::GetCustomerRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

/// Creates customers one after another until stopped; their names in the order they were
/// committed.
fn start_writer(
    server: &TestServer,
    stop: Arc<AtomicBool>,
    done: Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let channel = server.channel.clone();
    tokio::spawn(async move {
        let mut client = proto::customer_service_client::CustomerServiceClient::new(channel);
        let mut names = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let c = client
                .create_customer(proto::CreateCustomerRequest {
                    customer: Some(proto::Customer {
                        display_name: format!("Writer {i}"),
                        email: format!("writer{i}@example.com"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .expect("a write during the backup");
            names.push(c.into_inner().name);
            done.fetch_add(1, Ordering::SeqCst);
            i += 1;
        }
        names
    })
}

async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_go_on_restores_the_snapshot_it_saw() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let dir = tempfile::tempdir().expect("temp dir");
    let backup_dir = dir.path().join("backups");
    let bd = backup_dir.clone();
    let server = TestServer::start_at(&db.url, move |c| c.backup.dir = Some(bd)).await;
    let mut before = Vec::new();
    for i in 0..100 {
        before.push(
            create(&server, &format!("before{i}@example.com"))
                .await
                .unwrap(),
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = start_writer(&server, stop.clone(), done.clone());
    let d = done.clone();
    wait_until("the writer to start", || d.load(Ordering::SeqCst) >= 20).await;
    // one backup through the API and one by the command line, both while the writer writes
    let file = dir.path().join("cli.db");
    let cli = {
        let (url, file) = (db.url.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            bakkal(&[
                "backup",
                "--database-url",
                &url,
                "--to",
                file.to_str().unwrap(),
            ])
        })
    };
    let taken = backups(&server)
        .create_backup(proto::CreateBackupRequest {
            request_id: "nightly-1".into(),
        })
        .await
        .expect("CreateBackup")
        .into_inner();
    let cli = cli.await.unwrap();
    assert!(cli.status.success(), "bakkal backup: {}", text(&cli));
    // the writer was not stopped by the backups: it goes on after them
    let after_backup = done.load(Ordering::SeqCst);
    let d = done.clone();
    wait_until("writes after the backup", || {
        d.load(Ordering::SeqCst) >= after_backup + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();

    // a retry with the same request id is the same backup
    let again = backups(&server)
        .create_backup(proto::CreateBackupRequest {
            request_id: "nightly-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, taken);
    let listed = backups(&server)
        .list_backups(proto::ListBackupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.backups, vec![taken.clone()]);
    let in_backup = taken.row_counts["customers"];
    assert!(
        in_backup >= 120 && in_backup < 100 + written.len() as i64,
        "the snapshot holds {in_backup} customers of {}",
        100 + written.len()
    );
    let path = backup_dir.join(taken.name.strip_prefix("backups/").unwrap());
    let verified = bakkal(&["verify-backup", path.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("ok "));

    // as the server answered before the restore
    let mut originals = Vec::new();
    for c in &before {
        originals.push(get(&server, &c.name).await.unwrap());
    }

    // no restore over a database a server uses
    let refused = bakkal(&[
        "restore",
        "--database-url",
        &db.url,
        "--from",
        path.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("in use"), "{}", text(&refused));
    server.stop().await;

    let restored = bakkal(&[
        "restore",
        "--database-url",
        &db.url,
        "--from",
        path.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", text(&restored));
    let server = TestServer::start_at(&db.url, |_| {}).await;
    assert_eq!(
        common::count(&db.url, "SELECT COUNT(*) FROM customers").await,
        in_backup
    );
    for c in &originals {
        assert_eq!(&get(&server, &c.name).await.expect("restored customer"), c);
    }
    // consistent: the writer's customers in the snapshot are exactly the first ones it wrote
    let kept = (in_backup - 100) as usize;
    for (i, name) in written.iter().enumerate() {
        let found = get(&server, name).await;
        if i < kept {
            found.unwrap_or_else(|e| panic!("{name} ({i} of {kept}) missing: {e}"));
        } else {
            assert_eq!(found.unwrap_err().code(), Code::NotFound, "{name} ({i})");
        }
    }
    server.stop().await;

    // the command line's backup restores too, as a new database
    let fresh = dir.path().join("fresh.db");
    let fresh_url = format!("sqlite://{}", fresh.display());
    let restored = bakkal(&[
        "restore",
        "--database-url",
        &fresh_url,
        "--from",
        file.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", text(&restored));
    let n = common::count(&fresh_url, "SELECT COUNT(*) FROM customers").await;
    assert!(n >= 120, "{n}");
}

/// Copy a backup and its manifest to `to`, changing one byte of the copy's data.
fn tampered_copy(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x55;
    std::fs::write(to, bytes).unwrap();
    let manifest = |p: &Path| PathBuf::from(format!("{}.manifest.json", p.display()));
    std::fs::copy(manifest(from), manifest(to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_does_not_match_its_manifest_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start_at(&db.url, |_| {}).await;
    create(&server, "one@example.com").await.unwrap();
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    let out = bakkal(&[
        "backup",
        "--database-url",
        &db.url,
        "--to",
        good.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bad = dir.path().join("bad.db");
    tampered_copy(&good, &bad);
    let out = bakkal(&["verify-backup", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not match its manifest"),
        "{}",
        text(&out)
    );
    let before = std::fs::read(db_file(&db.url)).unwrap();
    let out = bakkal(&[
        "restore",
        "--database-url",
        &db.url,
        "--from",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(db_file(&db.url)).unwrap(), before);
    // without a manifest it is no backup
    let bare = dir.path().join("bare.db");
    std::fs::copy(&good, &bare).unwrap();
    let out = bakkal(&["verify-backup", bare.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("has no manifest"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_backup_leaves_the_previous_backup_intact() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start_at(&db.url, |_| {}).await;
    create(&server, "first@example.com").await.unwrap();
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nightly.db");
    let out = bakkal(&[
        "backup",
        "--database-url",
        &db.url,
        "--to",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let old = std::fs::read(&target).unwrap();
    let old_manifest = std::fs::read(format!("{}.manifest.json", target.display())).unwrap();

    // make the database big enough that the next backup takes a while: 200 MB of ballast
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE ballast (b BLOB); \
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000) \
             INSERT INTO ballast SELECT randomblob(4096) FROM n;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakkal"))
        .args([
            "backup",
            "--database-url",
            &db.url,
            "--to",
            target.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait until the backup is under way: a new file beside the target, or the target
    // itself touched; then kill it
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let untouched = stamp(&target);
    let known = ["nightly.db", "nightly.db.manifest.json"];
    let mut seen = false;
    for _ in 0..20_000 {
        let others = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| !known.iter().any(|k| e.file_name() == *k));
        if others || stamp(&target) != untouched {
            seen = true;
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before it could be killed: more ballast");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen, "the backup did not start");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());

    // the old backup, byte for byte, with its manifest, and it verifies
    assert_eq!(std::fs::read(&target).unwrap(), old);
    assert_eq!(
        std::fs::read(format!("{}.manifest.json", target.display())).unwrap(),
        old_manifest
    );
    let out = bakkal(&["verify-backup", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // the next backup replaces it
    let out = bakkal(&[
        "backup",
        "--database-url",
        &db.url,
        "--to",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read(&target).unwrap(), old);
    let out = bakkal(&["verify-backup", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let dir = tempfile::tempdir().unwrap();
    // neither a file without a manifest nor a partial one is a backup
    std::fs::write(
        dir.path().join("bakkal-20000101T000000Z.db"),
        b"not a backup",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bakkal-20000102T000000Z.db.partial-1"),
        b"x",
    )
    .unwrap();
    let d = dir.path().to_path_buf();
    let server = TestServer::start_at(&db.url, move |c| {
        c.backup.dir = Some(d);
        c.backup.every = Some(Duration::from_secs(1));
        c.backup.keep = 2;
    })
    .await;
    create(&server, "someone@example.com").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut rounds = 0;
    while seen.len() < 4 {
        rounds += 1;
        assert!(rounds < 600, "scheduled backups did not come: {seen:?}");
        let listed = backups(&server)
            .list_backups(proto::ListBackupsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .backups;
        assert!(listed.len() <= 2, "{} kept", listed.len());
        for b in &listed {
            assert_eq!(b.row_counts["customers"], 1);
            seen.insert(b.name.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = backups(&server)
        .list_backups(proto::ListBackupsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.backups.len(), 1);
    assert!(!listed.next_page_token.is_empty());
    let newest = listed.backups[0].name.clone();
    let rest = backups(&server)
        .list_backups(proto::ListBackupsRequest {
            page_size: 1,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rest.backups.len() <= 1);
    assert!(rest.backups.iter().all(|b| b.name < newest));
    // the oldest seen were pruned from the directory, the stranger files were left alone
    let oldest = seen
        .iter()
        .next()
        .unwrap()
        .strip_prefix("backups/")
        .unwrap();
    assert!(!dir.path().join(oldest).exists());
    assert!(dir.path().join("bakkal-20000101T000000Z.db").exists());
    server.stop().await;
}

async fn create_backup_needs_a_directory_and_sqlite(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let err = backups(&server)
        .create_backup(proto::CreateBackupRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("--backup-dir"), "{}", err.message());
    let listed = backups(&server)
        .list_backups(proto::ListBackupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.backups.is_empty());
    server.stop().await;
    if backend == Backend::Postgres {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let Some(server) = TestServer::start_with(backend, move |c| c.backup.dir = Some(d)).await
        else {
            return;
        };
        let err = backups(&server)
            .create_backup(proto::CreateBackupRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("pg_dump"), "{}", err.message());
        server.stop().await;
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The README's PostgreSQL procedure: pg_dump -Fc, pg_restore into a fresh database, and a
/// server on it answers as the first did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_through_pg_dump_and_pg_restore() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
        return;
    };
    if !on_path("pg_dump") || !on_path("pg_restore") {
        eprintln!("pg_dump / pg_restore not on PATH: PostgreSQL backup test skipped");
        return;
    }
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let mut made = Vec::new();
    for i in 0..60 {
        let c = create(&server, &format!("pg{i}@example.com"))
            .await
            .unwrap();
        if i % 3 == 0 {
            server
                .customers()
                .record_order(proto::RecordOrderRequest {
                    parent: c.name.clone(),
                    order: Some(proto::Order {
                        order_id: format!("o-{i}"),
                        currency: "TRY".into(),
                        lines: vec![proto::OrderLine {
                            sku: "C-1".into(),
                            category: "coffee".into(),
                            quantity: 1,
                            unit_price: 10.0 + i as f64,
                        }],
                        ..Default::default()
                    }),
                })
                .await
                .expect("record order");
        }
        made.push(c.name);
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("bakkal.dump");
    // taken while the server is up
    let out = Command::new("pg_dump")
        .args(["-Fc", "-f", dump.to_str().unwrap(), &db.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", text(&out));
    let fresh = TestDb::new(Backend::Postgres).await.unwrap();
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--no-privileges", "-d", &fresh.url])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_restore: {}", text(&out));
    let restored = TestServer::start_at(&fresh.url, |_| {}).await;
    for table in bakkal_store::backup::COUNTED_TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        assert_eq!(
            common::count(&fresh.url, &sql).await,
            common::count(&db.url, &sql).await,
            "{table}"
        );
    }
    assert_eq!(
        common::count(&fresh.url, "SELECT COUNT(*) FROM customers").await,
        60
    );
    for name in made.iter().step_by(7) {
        assert_eq!(
            get(&restored, name).await.unwrap(),
            get(&server, name).await.unwrap()
        );
    }
    // the restored database takes writes: its sequences came along
    create(&restored, "after-restore@example.com")
        .await
        .unwrap();
    restored.stop().await;
    server.stop().await;
}

for_each_backend!(create_backup_needs_a_directory_and_sqlite);
