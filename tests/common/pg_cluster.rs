//! A PostgreSQL cluster of the test's own, in a temporary directory on a free port, which the
//! test may stop and start under traffic (`tests/faults_postgres_restart.rs`). Made with the
//! server's `initdb` and `pg_ctl` (`/usr/lib/postgresql/{15,…}/bin`), as the `postgres` user
//! when the test runs as root (PostgreSQL refuses to run as root).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    /// Run the binaries as `postgres` (the test runs as root).
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`: `BAKKAL_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` that has them.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BAKKAL_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl PgCluster {
    /// A new cluster, initialised and started; `Err` saying why when this machine cannot make
    /// one (no PostgreSQL binaries, no `postgres` user to run them as root).
    pub fn start() -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) found")?;
        let as_postgres = std::fs::metadata("/proc/self")
            .map_err(|e| e.to_string())?
            .uid()
            == 0;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err("cannot give the cluster's directory to the postgres user".into());
            }
        }
        let port = super::process::free_addr().port();
        let cluster = PgCluster {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=50",
            self.port,
            self.path().display()
        );
        let log = self.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    /// Start the stopped cluster again, on the same port; returns once it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl_start().expect("pg_ctl start");
    }

    /// Stop it the way an operator restarting it does (`-m fast`: sessions are terminated,
    /// a checkpoint is written); returns once it is down.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
            .expect("pg_ctl stop");
    }

    /// The server's log so far (for a failed assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}
