//! A run's output directory, checked and locked before any work: created if missing, refused
//! (naming the path) when it is not a writable directory or another live run holds it, and
//! cleared of the temporary files an interrupted checkpoint write leaves behind.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the output directory (it holds the owner's process id).
pub const LOCK_NAME: &str = ".swarmgrad.lock";

/// A locked output directory; the lock goes when this is dropped (a killed process leaves it,
/// and the next run recovers it when its process is gone).
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    lock: PathBuf,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::param("out", format!("{}: {why}", path.display()))
}

/// Whether process `pid` is alive, where the system says (Linux's /proc); elsewhere a lock is
/// assumed live and the error says how to remove it.
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

impl RunDir {
    /// Creates `path` if needed, checks it is a writable directory, takes its lock and removes
    /// stale `.checkpoint.bin.tmp<PID>` files. Errors name the path ([`Error::BadParameter`] of
    /// `out`).
    pub fn prepare(path: &Path) -> Result<Self> {
        if path.exists() && !path.is_dir() {
            return Err(bad(path, "exists and is not a directory"));
        }
        std::fs::create_dir_all(path).map_err(|e| bad(path, format!("cannot create it: {e}")))?;
        let lock = path.join(LOCK_NAME);
        let mut recovered = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    f.write_all(std::process::id().to_string().as_bytes())
                        .map_err(|e| bad(path, format!("not writable: {e}")))?;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !recovered => {
                    let owner = std::fs::read_to_string(&lock)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if alive(pid) => {
                            return Err(bad(
                                path,
                                format!(
                                    "in use by another run (process {pid}); give another --out, \
                                     or delete {} if no such run is going on",
                                    lock.display()
                                ),
                            ))
                        }
                        // A dead owner's (or an unreadable) lock: take it over once.
                        _ => {
                            let _ = std::fs::remove_file(&lock);
                            recovered = true;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(bad(path, "in use by another run that has just started"));
                }
                Err(e) => return Err(bad(path, format!("not writable: {e}"))),
            }
        }
        let dir = RunDir {
            path: path.to_path_buf(),
            lock,
        };
        // Holding the lock, no other writer is live: temporary checkpoint files are stale.
        let prefix = format!(".{}.tmp", crate::train::checkpoint::FILE_NAME);
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}
