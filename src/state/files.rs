//! Private files: everything imapshift writes about a migration (the state store, run and verify
//! reports, spill files) holds folder names, Message-IDs, subjects and failure reasons of every
//! user, so it is owner-only (directories 0700, files 0600) whatever the umask.
//!
//! The binary narrows its umask to 077 at start ([`restrict_umask`]), which covers files other
//! code creates (sled's own files among them); the writers here set the mode explicitly as well,
//! so a library caller with a wide umask gets the same. A state directory that already exists
//! with wider permissions is not changed (it is the admin's), but named in a warning.
//!
//! A write that fails because the file system is full (ENOSPC, or the owner's quota: EDQUOT) is
//! said in one way everywhere ([`write_error`]): `disk full`, the state directory, and the fix.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Whether `e` says the file system is full (ENOSPC) or the owner's disk quota is used up
/// (EDQUOT). sled hands on copies of its I/O errors that keep only the kind, so both the kind and
/// the OS code are looked at.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// What to tell the admin when the state directory `dir` is full.
pub fn disk_full_text(dir: &Path) -> String {
    with_fix(format!(
        "disk full (ENOSPC): no space left for the state directory {}",
        dir.display()
    ))
}

/// `what` (a full disk), then the fix.
fn with_fix(what: String) -> String {
    format!("{what}: free space on that file system, or move state_dir to one with space, then run again: it resumes where this run stopped and copies nothing twice")
}

/// The free space a sync needs in its state directory to start at all (1 MiB). It promises
/// nothing about the run (a write that finds the disk full stops it cleanly, see
/// [`write_error`]): it refuses a disk that is already full before a single message is copied.
/// sled alone takes a 512 KiB segment of its data file when it opens an existing store.
pub const MIN_FREE: u64 = 1 << 20;

/// Bytes the process may still write on the file system of `dir` (statvfs `f_bavail`: blocks
/// reserved for root do not count), if it can be asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given; `c` is NUL-terminated and lives on.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `Err` (the disk-full text, with what is free) when the file system of the state directory
/// `dir` has less than [`MIN_FREE`] left; `Ok` when it has enough or cannot be asked.
pub fn check_room(dir: &Path) -> Result<(), String> {
    match free_bytes(dir) {
        Some(free) if free < MIN_FREE => Err(with_fix(format!(
            "disk full: only {} KiB free for the state directory {} (a sync needs {} KiB to start)",
            free / 1024,
            dir.display(),
            MIN_FREE / 1024
        ))),
        _ => Ok(()),
    }
}

/// A failed write under the state directory `dir`, in words: a full disk names the fix; any
/// other error its OS text (never a Rust debug form, which sled's copies of errors carry).
pub fn write_error(dir: &Path, e: &std::io::Error) -> String {
    if is_disk_full(e) {
        disk_full_text(dir)
    } else if e.raw_os_error().is_some() {
        e.to_string()
    } else {
        e.kind().to_string()
    }
}

/// Makes every file and directory this process creates owner-only.
pub fn restrict_umask() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (and missing parents) with mode 0700. Returns a warning when `dir` already
/// existed and others may read or enter it.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Ok(Some(format!(
                    "the state directory {} can be read by other local users (mode {mode:04o}): it holds every user's folder names, Message-IDs and subjects; run chmod 700 {}",
                    dir.display(),
                    dir.display()
                )));
            }
            Ok(None)
        }
        _ => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            // The umask may have narrowed it further, never widened it; make it exact.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            Ok(None)
        }
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, renamed over
/// it), with mode 0600. A reader never sees a half-written report.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            // An earlier temporary file of this name may have had another mode.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(bytes)?;
            f.sync_data()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS's ENOSPC and EDQUOT, and sled's copy of such an error (the kind kept, the text a
    /// debug form), all read as a full disk, said with the directory and the fix.
    #[test]
    fn a_full_disk_is_named_whatever_form_the_error_takes() {
        let dir = Path::new("/srv/state");
        let sled_copy = std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "Os { code: 28, kind: StorageFull, message: \"No space left on device\" }",
        );
        for e in [
            std::io::Error::from_raw_os_error(libc::ENOSPC),
            std::io::Error::from_raw_os_error(libc::EDQUOT),
            sled_copy,
        ] {
            assert!(is_disk_full(&e), "{e}");
            let text = write_error(dir, &e);
            assert!(
                text.starts_with("disk full (ENOSPC): no space left for the state directory /srv/state: free space")
                    && text.contains("move state_dir"),
                "{text}"
            );
        }
        let other = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Os { code: 13 }");
        assert!(!is_disk_full(&other));
        assert_eq!(write_error(dir, &other), "permission denied");
        let os = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(write_error(dir, &os), os.to_string());
    }

    /// A directory with room passes; one whose file system cannot be asked is not refused.
    #[test]
    fn room_is_checked_only_where_it_can_be() {
        let t = tempfile::tempdir().unwrap();
        assert!(free_bytes(t.path()).is_some());
        assert_eq!(check_room(&t.path().join("missing")), Ok(()));
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_dirs_and_files_are_owner_only_and_wide_dirs_are_named() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/state");
        assert_eq!(private_dir(&d).unwrap(), None);
        assert_eq!(mode(&d), 0o700);
        let f = d.join("last-run.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"{}").unwrap();
        assert_eq!(
            (mode(&f), std::fs::read(&f).unwrap()),
            (0o600, b"{}".to_vec())
        );
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = private_dir(&d).unwrap().expect("a warning");
        assert!(w.contains("mode 0755") && w.contains("chmod 700"), "{w}");
        assert_eq!(mode(&d), 0o755, "the admin's directory is not changed");
    }
}
