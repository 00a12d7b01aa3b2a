//! The directory of scheduled backups (`--backup-dir`): `bakkal-YYYYMMDDTHHMMSSZ.db` files,
//! each with its manifest. Only a backup whose manifest reads and names its file with the
//! file's size is complete; partial files and files without a manifest are not listed.

use std::path::{Path, PathBuf};

use super::manifest::{manifest_path, Manifest};
use super::{display, files, BackupError, Result};

const PREFIX: &str = "bakkal-";
const SUFFIX: &str = ".db";

/// The file name of a backup taken at `micros`: `bakkal-20261202T010203Z.db`.
pub fn scheduled_name(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    format!("{PREFIX}{}{SUFFIX}", t.format("%Y%m%dT%H%M%SZ"))
}

fn is_scheduled_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|stamp| {
            stamp.len() == 16
                && stamp.as_bytes()[8] == b'T'
                && stamp.ends_with('Z')
                && stamp[..8].bytes().all(|b| b.is_ascii_digit())
                && stamp[9..15].bytes().all(|b| b.is_ascii_digit())
        })
}

/// A complete backup in the directory.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// The complete backups in `dir`, newest first (by name, which is by time).
pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(BackupError::Io {
                what: format!("cannot read the backup directory {}", display(dir)),
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_scheduled_name(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(manifest) = Manifest::read(&path) else {
            continue;
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if manifest.file == name && manifest.size_bytes == size && manifest.previous.is_none() {
            out.push(Listed { path, manifest });
        }
    }
    out.sort_by(|a, b| b.manifest.file.cmp(&a.manifest.file));
    Ok(out)
}

/// Remove the oldest complete backups beyond the newest `keep` (each with its manifest); the
/// names removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for old in list(dir)?.into_iter().skip(keep) {
        // the manifest first: a backup without one is no longer listed as complete
        for p in [manifest_path(&old.path), old.path.clone()] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BackupError::Io {
                        what: format!("cannot remove {}", display(&p)),
                        source: e,
                    })
                }
            }
        }
        removed.push(old.manifest.file);
    }
    if !removed.is_empty() {
        files::fsync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_names_sort_by_time() {
        let a = scheduled_name(1_764_637_323_000_000);
        assert_eq!(a, "bakkal-20251202T010203Z.db");
        assert!(is_scheduled_name(&a));
        assert!(scheduled_name(1_764_637_324_000_000) > a);
        assert!(!is_scheduled_name("bakkal-20251202T010203Z.db.partial-12"));
        assert!(!is_scheduled_name("bakkal.db"));
    }
}
