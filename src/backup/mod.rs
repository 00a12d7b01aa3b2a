//! Backups in the transport: `BackupService` (CreateBackup, ListBackups), the scheduled
//! backups task (`schedule.rs`) and the `bakkal backup` / `restore` / `verify-backup`
//! commands (`cli.rs`). The snapshot, manifest, verification and restore are the store's
//! (`crates/bakkal-store/src/backup/`).

pub mod cli;
pub mod schedule;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bakkal_store::backup::{self as store_backup, BackupError, DatabaseLock, Listed, Manifest};
use bakkal_store::{Cursor, Store};
use tonic::{Request, Response, Status};

use crate::convert::timestamp;
use crate::page_token;
use crate::proto::backup_service_server::BackupService;
use crate::proto::{self};
use crate::status::{from_backup, invalid_field};

/// Backups settings of `bakkal serve`.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where CreateBackup and scheduled backups go (`--backup-dir`); `None`: no backups.
    pub dir: Option<PathBuf>,
    /// How often a scheduled backup is taken (`--backup-every`); `None`: only on request.
    pub every: Option<std::time::Duration>,
    /// Complete backups kept in the directory, the newest (`--backup-keep`; 0: all).
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: None,
            every: None,
            keep: 7,
        }
    }
}

/// The server's lock on its SQLite database, held for its life (none for PostgreSQL):
/// `bakkal restore` refuses to replace a database whose lock is held.
pub fn lock_database(database_url: &str) -> anyhow::Result<Option<DatabaseLock>> {
    match store_backup::sqlite_path(database_url) {
        Some(path) => Ok(Some(DatabaseLock::shared(&path)?)),
        None => Ok(None),
    }
}

const REPLAYED: usize = 100;
const MAX_REQUEST_ID: usize = 128;

/// Takes backups into the backup directory, one at a time, and prunes after each.
pub struct Backups {
    store: Store,
    config: BackupConfig,
    /// The turn to back up, and the last backups taken by request id (for replays).
    turn: tokio::sync::Mutex<VecDeque<(String, proto::Backup)>>,
}

impl Backups {
    pub fn new(store: Store, config: BackupConfig) -> Self {
        Self {
            store,
            config,
            turn: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// One backup now, named for the time, then the oldest beyond `keep` removed.
    pub async fn take(&self) -> Result<Listed, BackupError> {
        let _turn = self.turn.lock().await;
        self.take_in_turn().await
    }

    async fn take_in_turn(&self) -> Result<Listed, BackupError> {
        let Some(dir) = &self.config.dir else {
            return Err(BackupError::Refused(
                "this server has no backup directory: start it with --backup-dir DIR".into(),
            ));
        };
        std::fs::create_dir_all(dir).map_err(|e| BackupError::Io {
            what: format!("cannot create the backup directory '{}'", dir.display()),
            source: e,
        })?;
        let name = store_backup::scheduled_name(bakkal_domain::time::now_micros());
        let path = dir.join(&name);
        let manifest = self.store.backup_to(&path).await?;
        if self.config.keep > 0 {
            let removed = store_backup::prune(dir, self.config.keep)?;
            if !removed.is_empty() {
                tracing::info!(removed = ?removed, keep = self.config.keep, "old backups removed");
            }
        }
        Ok(Listed { path, manifest })
    }
}

/// `backups/{file}`.
fn backup_to_proto(m: &Manifest) -> proto::Backup {
    proto::Backup {
        name: format!("backups/{}", m.file),
        create_time: Some(timestamp(m.created_at_micros)),
        size_bytes: m.size_bytes.min(i64::MAX as u64) as i64,
        schema_version: m.schema_version,
        row_counts: m.counts.clone().into_iter().collect(),
        sha256: m.sha256.clone(),
    }
}

pub struct BackupApi {
    backups: Arc<Backups>,
}

impl BackupApi {
    pub fn new(backups: Arc<Backups>) -> Self {
        Self { backups }
    }
}

const LIST_QUERY: &[&str] = &["backups"];

#[tonic::async_trait]
impl BackupService for BackupApi {
    async fn create_backup(
        &self,
        request: Request<proto::CreateBackupRequest>,
    ) -> Result<Response<proto::Backup>, Status> {
        let request_id = request.into_inner().request_id;
        if request_id.chars().count() > MAX_REQUEST_ID {
            return Err(invalid_field(
                "request_id",
                format!("is longer than {MAX_REQUEST_ID} characters"),
            ));
        }
        let mut turn = self.backups.turn.lock().await;
        if !request_id.is_empty() {
            if let Some((_, b)) = turn.iter().find(|(id, _)| *id == request_id) {
                return Ok(Response::new(b.clone()));
            }
        }
        let listed = self.backups.take_in_turn().await.map_err(from_backup)?;
        let backup = backup_to_proto(&listed.manifest);
        if !request_id.is_empty() {
            if turn.len() == REPLAYED {
                turn.pop_front();
            }
            turn.push_back((request_id, backup.clone()));
        }
        Ok(Response::new(backup))
    }

    async fn list_backups(
        &self,
        request: Request<proto::ListBackupsRequest>,
    ) -> Result<Response<proto::ListBackupsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let after = match page_token::decode(&req.page_token, LIST_QUERY)? {
            Some(Cursor::Text(name, _)) => Some(name),
            Some(_) => {
                return Err(invalid_field(
                    "page_token",
                    "is not a page token of this list; start again without one",
                ))
            }
            None => None,
        };
        let Some(dir) = self.backups.config.dir.clone() else {
            return Ok(Response::new(proto::ListBackupsResponse::default()));
        };
        let all = tokio::task::spawn_blocking(move || store_backup::list(&dir))
            .await
            .map_err(|_| Status::internal("listing the backups failed"))?
            .map_err(from_backup)?;
        let mut page: Vec<Manifest> = all
            .into_iter()
            .map(|l| l.manifest)
            .filter(|m| after.as_ref().is_none_or(|a| m.file < *a))
            .take(size + 1)
            .collect();
        let next = (page.len() > size).then(|| {
            page.truncate(size);
            Cursor::Text(page[size - 1].file.clone(), 0)
        });
        Ok(Response::new(proto::ListBackupsResponse {
            backups: page.iter().map(backup_to_proto).collect(),
            next_page_token: page_token::encode(next, LIST_QUERY),
        }))
    }
}
