//! Disk full, on SQLite: the database lives on a small filesystem the test mounts (a tmpfs of
//! a few MiB; as root only, skipped saying so otherwise), which the test then fills. Writes
//! fail RESOURCE_EXHAUSTED (or UNAVAILABLE) with a message saying the disk is full, an import
//! stops with that status instead of rejecting every row, reads keep working, and
//! `PRAGMA integrity_check` finds the file sound. Once the space is freed, writes succeed
//! again on the same server, without a restart.

mod common;

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bakkal::proto::import_customers_request::Row;
use bakkal::proto::{self};
use common::{count, TestServer};
use sqlx::{Connection, SqliteConnection};
use tonic::Code;

/// A tmpfs of `size_mib` MiB mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mib: u32) -> Result<SmallDisk, String> {
        let root = std::fs::metadata("/proc/self")
            .map_err(|e| e.to_string())?
            .uid()
            == 0;
        if !root {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs was refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Write zeros to `path` until the filesystem has no room left; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler file");
    let mut written = 0u64;
    for chunk in [1 << 16, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    written
}

fn customer(tag: &str, i: usize) -> proto::Customer {
    proto::Customer {
        display_name: format!("Disk {tag} {i}"),
        email: format!("{tag}{i}@example.com"),
        city: "Ankara".into(),
        tags: vec!["disk".into(), tag.into()],
        ..Default::default()
    }
}

async fn create(server: &TestServer, tag: &str, i: usize) -> Result<String, tonic::Status> {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(customer(tag, i)),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().name)
}

async fn import(server: &TestServer, tag: &str, n: usize) -> Result<i64, tonic::Status> {
    let rows: Vec<proto::ImportCustomersRequest> = (0..n)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(customer(tag, i))),
        })
        .collect();
    server
        .customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .map(|r| r.into_inner().created)
}

/// A write refused for a full disk: RESOURCE_EXHAUSTED or UNAVAILABLE, saying why.
fn assert_disk_full(s: &tonic::Status) {
    assert!(
        matches!(s.code(), Code::ResourceExhausted | Code::Unavailable),
        "a write on a full disk: {s:?}"
    );
    if s.code() == Code::ResourceExhausted {
        assert!(s.message().contains("disk is full"), "{s:?}");
    }
}

async fn integrity(db: &Path) -> String {
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url).await.expect("connect");
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check");
    conn.close().await.expect("close");
    ok
}

async fn list_all(server: &TestServer) -> usize {
    server
        .customers()
        .list_customers(proto::ListCustomersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("a read on a full disk")
        .into_inner()
        .customers
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_refuses_writes_and_recovers() {
    let disk = match SmallDisk::mount(16) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("disk-full test skipped: {why}");
            return;
        }
    };
    let db: PathBuf = disk.path().join("bakkal.db");
    let url = format!("sqlite://{}", db.display());
    let server = TestServer::start_at(&url, |_| {}).await;
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(create(&server, "before", i).await.expect("write with room"));
    }

    // full: writes refused with a clear status, the import stopped rather than every row rejected
    let filler = disk.path().join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    let mut refused = Vec::new();
    for i in 0..10 {
        match create(&server, "full", i).await {
            Ok(name) => eprintln!("{name} fitted in the last free bytes"),
            Err(s) => refused.push(s),
        }
    }
    assert!(
        refused.len() >= 9,
        "writes went on on a full disk: {refused:?}"
    );
    refused.iter().for_each(assert_disk_full);
    let imported = import(&server, "bulk", 2000).await;
    let err = imported.expect_err("an import on a full disk");
    assert_disk_full(&err);
    assert!(err.message().contains("import stopped"), "{err:?}");

    // reads keep working
    for name in &before {
        let got = server
            .customers()
            .get_customer(proto::GetCustomerRequest { name: name.clone() })
            .await
            .expect("a read on a full disk")
            .into_inner();
        assert_eq!(got.city, "Ankara");
    }
    let listed = list_all(&server).await;
    assert!(listed >= before.len());
    assert_eq!(integrity(&db).await, "ok");

    // room again: writes succeed on the same server
    std::fs::remove_file(&filler).expect("free the space");
    tokio::time::sleep(Duration::from_millis(50)).await;
    create(&server, "after", 0)
        .await
        .expect("a write once space is freed");
    assert_eq!(import(&server, "bulk", 2000).await.expect("import"), 2000);
    assert_eq!(list_all(&server).await, 1000, "a full page");
    let customers = count(&url, "SELECT COUNT(*) FROM customers").await;
    assert_eq!(customers, (listed + 1 + 2000) as i64);
    assert_eq!(integrity(&db).await, "ok");
    server.stop().await;
    drop(disk);
}
