//! Files made durable: temporary names beside the target, fsync of a file and of its
//! directory, atomic replacement, and SHA-256 of a file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{display, BackupError, Result};

/// The temporary name a file is written under before it takes `target`'s name: beside it
/// (so the rename stays in one file system), `{name}.partial-{pid}`, never `target` itself.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    target.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flush a file's data and metadata to stable storage.
pub fn fsync_file(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(BackupError::io(format!("cannot open {}", display(path))))?;
    f.sync_all()
        .map_err(BackupError::io(format!("cannot fsync {}", display(path))))
}

/// Flush a directory, so that a rename or removal in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(BackupError::io(format!("cannot open {}", display(dir))))?;
    d.sync_all()
        .map_err(BackupError::io(format!("cannot fsync {}", display(dir))))
}

/// Rename `from` to `to` (replacing it) and fsync their directory.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(BackupError::io(format!(
        "cannot rename {} to {}",
        display(from),
        display(to)
    )))?;
    fsync_dir(&parent_dir(to))
}

/// Write `bytes` to `target` atomically: a partial file, fsynced, renamed over `target`, the
/// directory fsynced. A crash leaves `target` as it was or as written, never in between.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(target);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::Io {
            what: format!("cannot write {}", display(&partial)),
            source: e,
        });
    }
    rename_durably(&partial, target)
}

/// The SHA-256 of a file's bytes, in lower-case hex, and its size.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f =
        File::open(path).map_err(BackupError::io(format!("cannot open {}", display(path))))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(BackupError::io(format!("cannot read {}", display(path))))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}
