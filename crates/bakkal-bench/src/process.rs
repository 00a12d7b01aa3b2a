//! Starting the server processes under test and reading their peak memory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A binary built next to this one (`target/release/NAME`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release --workspace`",
            path.display()
        );
    }
    Ok(path)
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Start `cmd`; its output goes to the file named by `BAKKAL_BENCH_SERVER_LOG`, if set.
    pub fn start(mut cmd: Command, port: u16) -> anyhow::Result<Server> {
        let out = match std::env::var_os("BAKKAL_BENCH_SERVER_LOG") {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Stdio::null(),
        };
        let child = cmd
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .context("start server")?;
        Ok(Server {
            child,
            addr: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Peak resident memory (VmHWM) in MiB, read while the process still runs.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }

    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        let endpoint = tonic::transport::Endpoint::from_shared(self.addr.clone())?;
        for _ in 0..300 {
            if let Ok(ch) = endpoint.connect().await {
                return Ok(ch);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server at {} did not come up", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new, empty database on the PostgreSQL server at `base` (a URL naming any database there),
/// named for `label` and this process; its URL.
pub async fn fresh_postgres_database(base: &str, label: &str) -> anyhow::Result<String> {
    use sqlx::{Connection, Executor};
    let name = format!("bakkal_bench_{label}_{}", std::process::id()).replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .with_context(|| format!("connect to {base}"))?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let cut = base
        .rfind('/')
        .filter(|&i| i > base.find("://").map_or(0, |s| s + 2))
        .unwrap_or(base.len());
    let query = base.find('?').map(|q| &base[q..]).unwrap_or("");
    Ok(format!("{}/{name}{query}", &base[..cut]))
}

/// `bakkal serve` (the release binary next to this one) on a free loopback port over the
/// database at `url`; more flags may be added before it starts: (the command, its port).
pub fn serve_command(url: &str) -> anyhow::Result<(Command, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new(sibling("bakkal")?);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        url,
    ]);
    Ok((cmd, port))
}

/// A new admin API key made straight in the database at `url` (`bakkal keys create`), as an
/// operator bootstraps a server that requires keys.
pub fn admin_key(url: &str) -> anyhow::Result<String> {
    let out = Command::new(sibling("bakkal")?)
        .args(["keys", "create", "--role", "admin", "--name", "bench"])
        .args(["--database-url", url])
        .stderr(Stdio::null())
        .output()?;
    anyhow::ensure!(out.status.success(), "bakkal keys create failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
