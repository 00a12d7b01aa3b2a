//! The advisory lock on `<db>.lock` (flock): every server, and `bakkal backup`, holds it
//! shared for as long as it has the database open; `bakkal restore` takes it exclusively
//! without waiting, so it never replaces a database a server is using. Several servers on one
//! database share it. The kernel drops a lock with its process, so a killed server leaves
//! none behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::{display, BackupError, Result};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
    pub path: PathBuf,
}

impl DatabaseLock {
    /// `<db>.lock` beside the database.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut s = database.as_os_str().to_os_string();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Shared: refused only while a restore holds it.
    pub fn shared(database: &Path) -> Result<DatabaseLock> {
        Self::take(database, FlockOperation::NonBlockingLockShared).map_err(|e| match e {
            Taken::Busy(path) => BackupError::Refused(format!(
                "{} is being restored ({} is locked): start again when the restore is done",
                display(database),
                display(&path)
            )),
            Taken::Failed(e) => e,
        })
    }

    /// Exclusive: refused while a server or a backup holds it.
    pub fn exclusive(database: &Path) -> Result<DatabaseLock> {
        Self::take(database, FlockOperation::NonBlockingLockExclusive).map_err(|e| match e {
            Taken::Busy(path) => BackupError::Refused(format!(
                "{} is in use by a bakkal server or backup ({} is locked): stop the server \
                 first",
                display(database),
                display(&path)
            )),
            Taken::Failed(e) => e,
        })
    }

    fn take(database: &Path, op: FlockOperation) -> Result<DatabaseLock, Taken> {
        let path = Self::path_for(database);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                Taken::Failed(BackupError::Io {
                    what: format!("cannot open the lock file {}", display(&path)),
                    source: e,
                })
            })?;
        match flock(&file, op) {
            Ok(()) => Ok(DatabaseLock { _file: file, path }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Taken::Busy(path)),
            Err(e) => Err(Taken::Failed(BackupError::Io {
                what: format!("cannot lock {}", display(&path)),
                source: e.into(),
            })),
        }
    }
}

enum Taken {
    Busy(PathBuf),
    Failed(BackupError),
}
