//! The file sink: appends one JSON line per message to a local file (synced before the
//! messages count as delivered).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bakkal_store::OutboxMessage;

use super::{payload, Attempt};

pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn deliver(&self, messages: &[OutboxMessage]) -> Vec<Attempt> {
        let mut out = String::new();
        for m in messages {
            out.push_str(&payload(m).to_string());
            out.push('\n');
        }
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, out.as_bytes())).await;
        let result = match written {
            Ok(Ok(())) => Attempt::Delivered,
            Ok(Err(e)) => Attempt::Retry(format!("outbox file {}: {e}", self.path.display())),
            Err(e) => Attempt::Retry(format!("outbox file task: {e}")),
        };
        vec![result; messages.len()]
    }
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}
