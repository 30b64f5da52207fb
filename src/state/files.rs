//! Private files: everything imapshift writes about a migration (the state store, run and verify
//! reports, spill files) holds folder names, Message-IDs, subjects and failure reasons of every
//! user, so it is owner-only (directories 0700, files 0600) whatever the umask.
//!
//! The binary narrows its umask to 077 at start ([`restrict_umask`]), which covers files other
//! code creates (sled's own files among them); the writers here set the mode explicitly as well,
//! so a library caller with a wide umask gets the same. A state directory that already exists
//! with wider permissions is not changed (it is the admin's), but named in a warning.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
