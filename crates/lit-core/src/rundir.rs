//! Run directories (`<root>/<name>/version_N/`) and atomic file writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use lit_data::HParams;

use crate::{Error, Result};

/// Creates the next free `<root>/<name>/version_N` directory, as Lightning's loggers number runs.
pub fn create_version_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let base = root.join(name);
    std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
    for n in 0.. {
        let dir = base.join(format!("version_{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                remove_stale_temporaries(&base);
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("version numbers are unbounded")
}

/// Deletes the temporary files that writers killed mid-write left in `<base>/version_*/` and
/// their `checkpoints/` (see [`write_atomic`]): those ten minutes old whose process is gone, or an
/// hour old where that cannot be told. (A write takes seconds; the age also spares a live writer
/// on another machine sharing the folder, whose process this machine cannot see.)
pub fn remove_stale_temporaries(base: &Path) {
    let Ok(runs) = std::fs::read_dir(base) else {
        return;
    };
    for run in runs.flatten().map(|e| e.path()) {
        for dir in [run.join("checkpoints"), run] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if is_stale_temporary(&path) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::info!(path = %path.display(), "removed a stale temporary file")
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), "removing a stale temporary file: {e}")
                        }
                    }
                }
            }
        }
    }
}

/// Whether `path` is a temporary file of [`write_atomic`] whose writer is gone.
fn is_stale_temporary(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(pid) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.rsplit_once('.'))
        .and_then(|(_, pid)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |age| age.as_secs());
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        age >= 600 && !proc.join(pid.to_string()).exists()
    } else {
        age >= 3600
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder that is flushed to disk
/// and renamed over `path`, so a crash leaves either the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, |_| Ok(()))
}

/// [`write_atomic`] with a hook that runs between the fsync of the temporary file and the rename;
/// an error from it aborts the write as a crash at that point would (tests use it).
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let tmp_path = tmp.as_path();
    let write = move || -> std::io::Result<()> {
        let mut f = std::fs::File::create(tmp_path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        before_rename(tmp_path)?;
        std::fs::rename(tmp_path, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Whether `path` names this process's standard output (`-`, `/dev/stdout`, its fd 1 links),
/// which [`write_output`] writes through the open handle: reopening it would truncate a file
/// the shell opened for appending, or fail on a pipe.
pub fn is_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|p| path == Path::new(p))
}

/// Writes a file a user named (such as `predict --output`) without replacing what the name is:
/// standard output ([`is_stdout`]) through its handle; a regular file or a new name atomically
/// ([`write_atomic`]); a symbolic link to a regular file by writing its target so; and a device
/// or FIFO (`/dev/null`, a named pipe), or a link to one, which a rename would replace with a
/// regular file, by writing into it.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdout(path) {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| Error::io(path, e));
    }
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::Config(format!(
            "{}: is a folder; expected a file name",
            path.display()
        ))),
        Ok(m) if m.is_file() && link => {
            let target = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
            write_atomic(&target, bytes)
        }
        Ok(m) if !m.is_file() => {
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
                f.write_all(bytes)?;
                f.flush()
            };
            write().map_err(|e| Error::io(path, e))
        }
        Err(_) if link => Err(Error::Config(format!(
            "{}: a symbolic link to a missing file ({}); name the file itself",
            path.display(),
            std::fs::read_link(path).map_or("?".into(), |t| t.display().to_string())
        ))),
        _ => write_atomic(path, bytes),
    }
}

/// Writes `hparams.yaml` in `dir`.
pub fn write_hparams(dir: &Path, hparams: &HParams) -> Result<PathBuf> {
    let path = dir.join("hparams.yaml");
    let yaml = serde_yaml::to_string(hparams)
        .map_err(|e| Error::Config(format!("serialising hyperparameters: {e}")))?;
    write_atomic(&path, yaml.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up() {
        let root = tempfile::tempdir().unwrap();
        let a = create_version_dir(root.path(), "net").unwrap();
        let b = create_version_dir(root.path(), "net").unwrap();
        assert!(a.ends_with("net/version_0") && b.ends_with("net/version_1"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("f.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
