//! One run per state directory. Two runs on one store would each journal and map the same
//! messages: sled's own lock stops the second at open, but with an error that names nothing. The
//! commands that use the store (`sync`, `cutover`, `verify`, `folders`, `status`) first take
//! `<state_dir>/lock`: an advisory `flock` the kernel drops when the holder ends, however it
//! ends, and the holder's PID, command and start time written inside, so the second run is
//! refused at once with a message naming the first.
//!
//! The holder empties the file when it ends normally; a file still naming a process whose lock is
//! free is a stale lock (that run was killed or crashed): it is taken over, with a warning. The
//! file itself is never removed: removing it would let two runs lock two different files.

use crate::error::{Error, Result};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock of one state directory, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    file: std::fs::File,
    path: PathBuf,
    /// What the file said when the lock was taken over from a run that did not end normally.
    pub stale: Option<String>,
}

fn holder_text(raw: &str) -> String {
    let field = |k: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(k).map(str::trim))
            .unwrap_or("?")
            .to_string()
    };
    let since = field("since ")
        .parse::<u64>()
        .map(crate::timefmt::rfc3339)
        .unwrap_or_else(|_| "?".into());
    format!(
        "imapshift {}, PID {}, since {since}",
        field("command "),
        field("pid ")
    )
}

impl StateLock {
    /// Takes the lock of `dir` for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<StateLock> {
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                let why = super::files::write_error(dir, &e);
                let fix = if super::files::is_disk_full(&e) {
                    ""
                } else {
                    " (state_dir must be a writable folder)"
                };
                Error::state(format!("cannot open {}: {why}{fix}", path.display()))
            })?;
        let mut before = String::new();
        // SAFETY: flock on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let _ = file.read_to_string(&mut before);
            if err.kind() == std::io::ErrorKind::WouldBlock {
                let pid = before
                    .lines()
                    .find_map(|l| l.strip_prefix("pid "))
                    .map(str::trim)
                    .unwrap_or("?")
                    .to_string();
                return Err(Error::state(format!(
                    "the state directory {} is in use by {}: wait for it to finish, or stop it (kill {pid}); two runs never share a state directory",
                    dir.display(),
                    holder_text(&before)
                )));
            }
            return Err(Error::state(format!(
                "cannot lock {}: {err}",
                path.display()
            )));
        }
        let _ = file.read_to_string(&mut before);
        let stale = (!before.trim().is_empty()).then(|| holder_text(&before));
        let me = format!(
            "pid {}\ncommand {command}\nsince {}\n",
            std::process::id(),
            crate::timefmt::now_unix()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                Error::state(format!(
                    "cannot write {}: {}",
                    path.display(),
                    super::files::write_error(dir, &e)
                ))
            })?;
        Ok(StateLock { file, path, stale })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A normal end: the next run finds the file empty (not stale). The lock itself goes
        // with the file descriptor.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_first_and_a_stale_one_is_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(t.path(), "sync").unwrap();
        assert_eq!(first.stale, None);
        let err = StateLock::acquire(t.path(), "verify")
            .unwrap_err()
            .to_string();
        let me = format!("imapshift sync, PID {}, since ", std::process::id());
        assert!(err.contains(&me) && err.contains("kill "), "{err}");
        drop(first);
        // Ended normally: not stale.
        let again = StateLock::acquire(t.path(), "verify").unwrap();
        assert_eq!(again.stale, None);
        drop(again);
        // A run that was killed leaves its lines behind.
        std::fs::write(
            t.path().join("lock"),
            "pid 4242\ncommand cutover\nsince 0\n",
        )
        .unwrap();
        let taken = StateLock::acquire(t.path(), "sync").unwrap();
        assert_eq!(
            taken.stale.as_deref(),
            Some("imapshift cutover, PID 4242, since 1970-01-01T00:00:00Z")
        );
    }
}
