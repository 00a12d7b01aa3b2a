//! The real `bakkal serve` binary as a child process, for tests that SIGKILL a server and
//! start another on the same database (`tests/faults_import_kill.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;

/// A running `bakkal serve`; SIGKILLed when dropped, so a failed test leaves no server behind.
pub struct BakkalProcess {
    child: Child,
    pub addr: SocketAddr,
    pub channel: Channel,
    /// Where its log goes, when started with `start_logged`.
    log: Option<PathBuf>,
}

/// A loopback address nobody listens on (for a moment).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl BakkalProcess {
    /// Start `bakkal serve` on `url` with its outbox file in `dir` and `extra` flags, and wait
    /// (up to 20 s) until it answers health.
    pub async fn start(url: &str, dir: &Path, extra: &[&str]) -> BakkalProcess {
        Self::spawn(url, dir, extra, None).await
    }

    /// `start`, with the server's log (warnings and up) written to a file in `dir` for the
    /// test to read (`log`).
    pub async fn start_logged(url: &str, dir: &Path, extra: &[&str]) -> BakkalProcess {
        let log = dir.join(format!("bakkal-{}.log", uuid::Uuid::new_v4().simple()));
        Self::spawn(url, dir, extra, Some(log)).await
    }

    async fn spawn(url: &str, dir: &Path, extra: &[&str], log: Option<PathBuf>) -> BakkalProcess {
        let addr = free_addr();
        // `serve` logs to stdout
        let stdout = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_bakkal"))
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--database-url",
                url,
            ])
            .arg("--outbox-file")
            .arg(dir.join("outbox.jsonl"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bakkal");
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri");
        for _ in 0..400 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("bakkal serve exited at start: {status}");
            }
            if let Ok(ch) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
                let up = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok();
                if up {
                    return BakkalProcess {
                        child,
                        addr,
                        channel: ch,
                        log,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("bakkal at {addr} did not come up");
    }

    /// What the server logged so far (started with `start_logged`; else nothing).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// SIGKILL the server and reap it: no shutdown code of its own runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reap");
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for BakkalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
