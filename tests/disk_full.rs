//! Issue 13: disk full for the state directory. The state directory is a small tmpfs mounted for
//! the test; a filler file takes its space, exactly (written until ENOSPC, then shortened to the
//! margin a case wants), at an exact step: a sync held at the `after-append` failpoint has the
//! disk filled under it, then goes on. Against real Dovecots (different time zones).
//!
//! What must hold: the run stops with exit 4 and an error naming the state directory, "disk
//! full" and the fix, never a panic or a Rust debug form; the users not yet started are not
//! started; the `--json` summary is still printed and says why; a run report that cannot be
//! written is a warning (and an earlier `last-run.json` is not left to pass for this run's); the
//! new server holds no message twice; and once there is space again the next `sync` resumes
//! exactly (each old message once, `verify` OK).
//!
//! Needs root (CAP_SYS_ADMIN) to mount the tmpfs: without it the test FAILS, naming that.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PW: &str = "pw";
const PAGE: u64 = 4096;
/// New messages for alice in the run whose disk fills up.
const ALICE_MORE: usize = 1000;

/// A small tmpfs mounted on a temp dir; unmounted on drop (also when the test panics), lazily if
/// a process still holds it.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(bytes: u64) -> SmallFs {
        SmallFs::mount_with(&format!("size={bytes},mode=0700"))
    }

    /// Mounts a tmpfs with `options` (`size=...,nr_inodes=...`).
    fn mount_with(options: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("temp dir for the tmpfs");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "tests/disk_full.rs needs root (CAP_SYS_ADMIN) to mount a small tmpfs ({options}) as \
             the state directory; `mount -t tmpfs` said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Free bytes for an unprivileged writer (statvfs).
    fn available(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().to_str().unwrap()).unwrap();
        // SAFETY: statvfs writes into the zeroed struct it is given; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path().display());
        st.f_bavail as u64 * st.f_frsize as u64
    }

    /// Takes all space but `margin` bytes (a multiple of the page size) with the filler file:
    /// written until ENOSPC, then shortened by `margin`.
    fn fill(&self, margin: u64) {
        assert_eq!(margin % PAGE, 0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("create the filler");
        let chunk = vec![0x5au8; PAGE as usize];
        // Bounded: the file system has at most available() / PAGE pages left.
        let pages = self.available() / PAGE + 2;
        let mut full = false;
        for _ in 0..pages {
            match f.write(&chunk) {
                Ok(n) if n == chunk.len() => {}
                Ok(_) => {
                    full = true;
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("write the filler: {e}"),
            }
        }
        assert!(full, "the filler never met ENOSPC");
        let len = f.metadata().unwrap().len();
        f.set_len(len - len % PAGE - margin).unwrap();
        assert_eq!(self.available(), margin, "free space after filling");
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let p = self.path().to_path_buf();
        let ok = std::process::Command::new("umount")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let lazy = std::process::Command::new("umount")
                .arg("-l")
                .arg(&p)
                .status();
            if !lazy.is_ok_and(|s| s.success()) {
                eprintln!("cannot unmount the test tmpfs {}", p.display());
            }
        }
    }
}

/// Old and new Dovecot, users alice and bob, a config whose state directory is on `fs`.
struct World {
    old: Dovecot,
    new: Dovecot,
    _cfg_dir: tempfile::TempDir,
    cfg: PathBuf,
    state: PathBuf,
    sent: usize,
}

const USERS: [&str; 2] = ["alice", "bob"];
const FOLDERS: [&str; 2] = ["INBOX", "Work"];

impl World {
    fn new(fs: &SmallFs) -> World {
        let old = Dovecot::start("old", &[("alice", PW), ("bob", PW)], DovecotOpts::default());
        let new = Dovecot::start("new", &[("alice", PW), ("bob", PW)], DovecotOpts::default());
        for u in USERS {
            let mut c = TestImap::connect(old.port(), u, PW);
            c.create("Work");
            c.logout();
        }
        let cfg_dir = tempfile::tempdir().unwrap();
        let cfg = cfg_dir.path().join("imapshift.toml");
        let mut w = World {
            old,
            new,
            _cfg_dir: cfg_dir,
            cfg,
            state: PathBuf::new(),
            sent: 0,
        };
        w.use_state_dir(fs);
        w
    }

    /// Points the configuration at a state directory on `fs`.
    fn use_state_dir(&mut self, fs: &SmallFs) {
        self.state = fs.path().join("state");
        let text = plain_config(
            self.old.port(),
            self.new.port(),
            "",
            "",
            "[sync]\njobs = 1\nbatch_messages = 20\n",
            &USERS,
        )
        .replace(
            "state_dir = \"state\"",
            &format!("state_dir = {}", toml_str(self.state.to_str().unwrap())),
        );
        std::fs::write(&self.cfg, text).unwrap();
    }

    /// `n` more messages for `user` on the old server (INBOX and Work).
    fn mail(&mut self, user: &str, n: usize) {
        let mut c = TestImap::connect(self.old.port(), user, PW);
        for _ in 0..n {
            let i = self.sent;
            self.sent += 1;
            let m = format!(
                "From: a@example.com\r\nSubject: m {i}\r\nMessage-ID: <m{i}@example.com>\r\n\r\nbody {i} {}\r\n",
                "x".repeat(200)
            );
            let folder = FOLDERS[usize::from(i % 3 == 0)];
            c.append(folder, &["\\Seen"], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }

    fn sync_args(&self) -> Vec<&str> {
        vec!["sync", "--config", self.cfg.to_str().unwrap(), "--json"]
    }

    /// A sync to its end: (exit code, the summary if printed, stderr).
    fn sync(&self) -> (i32, Option<serde_json::Value>, String) {
        let out = run_imapshift(&self.sync_args(), &[("PW", PW)]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_clean(&err);
        (
            out.status.code().unwrap_or(-1),
            sync_report(&out.stdout).ok(),
            err,
        )
    }

    /// Messages per user and folder on the new server.
    fn new_count(&self) -> u32 {
        let mut total = 0;
        for u in USERS {
            let mut n = TestImap::connect(self.new.port(), u, PW);
            for f in names(&mut n) {
                total += n.status(&f).0;
            }
            n.logout();
        }
        total
    }

    /// Each folder on the new server holds a prefix of the old one's messages (copies go in UID
    /// order): none twice, none foreign. Returns how many are there.
    fn assert_prefix(&self) -> usize {
        let mut total = 0;
        for u in USERS {
            let mut o = TestImap::connect(self.old.port(), u, PW);
            let mut n = TestImap::connect(self.new.port(), u, PW);
            for f in FOLDERS {
                let old = o.fetch_all(f);
                let new = if f == "INBOX" || names(&mut n).iter().any(|x| x == f) {
                    n.fetch_all(f)
                } else {
                    vec![]
                };
                assert!(new.len() <= old.len(), "{u} {f}: more on new than on old");
                if let Err(e) = diff_folder(f, &old[..new.len()], &new) {
                    panic!("{u}: the new server holds no prefix of the old folder: {e}");
                }
                total += new.len();
            }
        }
        total
    }

    /// Each folder on the new server holds each old message exactly once, and `verify` agrees.
    fn assert_exact(&self) {
        for u in USERS {
            let mut o = TestImap::connect(self.old.port(), u, PW);
            let mut n = TestImap::connect(self.new.port(), u, PW);
            for f in FOLDERS {
                if let Err(e) = diff_folder(f, &o.fetch_all(f), &n.fetch_all(f)) {
                    panic!("{u}: {e}");
                }
            }
        }
        let out = run_imapshift(
            &["verify", "--config", self.cfg.to_str().unwrap()],
            &[("PW", PW)],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The folder names of a session's account.
fn names(c: &mut TestImap) -> Vec<String> {
    c.list().into_iter().map(|(_, _, name)| name).collect()
}

/// No panic, no Rust debug form of an I/O error.
fn assert_clean(stderr: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "Os {", "StorageFull"] {
        assert!(!stderr.contains(bad), "{bad:?} on stderr:\n{stderr}");
    }
}

/// The words a disk-full error carries: "disk full", the directory and the fix (`floor`: the
/// refusal to start with less than 1 MiB free; else the error of a write that met ENOSPC).
fn says_disk_full(text: &str, state: &Path, floor: bool) -> bool {
    let what = if floor {
        "KiB free for the state directory".to_string()
    } else {
        "disk full (ENOSPC): no space left for the state directory".to_string()
    };
    let fix = ": free space on that file system, or move state_dir to one with space";
    text.lines().any(|l| {
        l.contains(&format!("{what} {}", state.display()))
            && l.contains(fix)
            && l.contains("disk full")
    })
}

/// The disk fills up in the middle of a sync (held after its second APPEND, before the commit):
/// the run stops with exit 4 and says why, in the summary and for every user, starts no other
/// user, copies nothing twice; with space again the next sync resumes exactly.
#[test]
fn enospc_in_the_middle_of_a_sync_stops_the_run_and_the_next_run_resumes_exactly() {
    let fs = SmallFs::mount(4 << 20);
    let mut w = World::new(&fs);
    w.mail("alice", 6);
    w.mail("bob", 6);
    let (code, sum, err) = w.sync();
    assert_eq!(code, 0, "first sync: {err}");
    assert_eq!(sum.unwrap()["copied"], 12);
    assert!(w.state.join("last-run.json").exists());
    w.assert_exact();

    // More than sled's slack: a reopened store has a whole segment (512 KiB) of its data file
    // allocated, which takes some 450 messages' journal and maps.
    w.mail("alice", ALICE_MORE);
    w.mail("bob", 10);
    let pause = Pause::new("after-append", 2);
    let penv = pause.env();
    let mut envs: Vec<(&str, &str)> = penv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.push(("PW", PW));
    let mut child = spawn_imapshift(&w.sync_args(), &envs);
    let stderr = StderrLog::of(&mut child);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    pause.wait_reached(Duration::from_secs(120));
    fs.fill(0);
    pause.release();
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let err = stderr.finish();
    let out = reader.join().unwrap();
    eprintln!("--- the run that met the full disk ---\n{err}");
    assert_clean(&err);
    assert_eq!(
        code,
        Some(4),
        "the run did not stop (if it copied everything, sled's slack held all of its writes: \
         raise ALICE_MORE); stderr:\n{err}"
    );
    let sum = sync_report(&out).unwrap_or_else(|e| panic!("{e}; stderr:\n{err}"));
    assert_eq!(sum["exit_code"], 4, "{sum}");
    let why = sum["state_error"].as_str().unwrap_or_default();
    assert!(says_disk_full(why, &w.state, false), "state_error: {why}");
    let users = sum["users"].as_array().unwrap();
    for u in users {
        let e = u["error"].as_str().unwrap_or_default();
        assert_eq!(u["status"], "failed", "{u}");
        assert!(
            says_disk_full(e, &w.state, false),
            "{}: {e}",
            u["old_login"]
        );
    }
    // bob was never started: no folder of his was looked at (his error has no folder context).
    let bob = &users[1];
    assert!(
        bob["copied"] == 0
            && bob["folders_synced"] == 0
            && bob["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("cannot write the state store: disk full")),
        "bob was started after the store failed: {bob}"
    );
    assert!(
        err.contains("cannot write the run report")
            && err.contains("the earlier report there was removed"),
        "no warning about the run report:\n{err}"
    );
    assert!(
        !w.state.join("last-run.json").exists(),
        "the first run's last-run.json passes for this run's"
    );
    let there = w.assert_prefix();
    assert!(
        there >= 12 + 40,
        "two batches of alice were appended before the disk filled, but only {there} messages are on the new server"
    );
    assert!(
        there < 12 + ALICE_MORE + 10,
        "everything was copied: {there}"
    );

    fs.free();
    let (code, sum, err) = w.sync();
    assert_eq!(code, 0, "the run with space again: {err}");
    let sum = sum.expect("a summary");
    assert!(sum["state_error"].is_null(), "{sum}");
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state.join("last-run.json")).unwrap()).unwrap();
    assert_eq!(last["exit_code"], 0);
    w.assert_exact();
    let (code, sum, err) = w.sync();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sum.unwrap()["copied"],
        0,
        "a run after the resume copies nothing"
    );
}

/// A run with a new state directory on a disk that is full or has less than the 1 MiB a sync
/// needs to start: exit 4 with the disk-full error (from the lock file when not even its PID
/// fits, else from the check before the store is opened), nothing copied; with space again the
/// run copies everything exactly once.
#[test]
fn a_run_on_a_full_disk_stops_before_anything_is_copied() {
    let first = SmallFs::mount(1 << 20);
    let mut w = World::new(&first);
    let mut said = Vec::new();
    for margin in [0, PAGE, 4 * PAGE, 1 << 19, (1 << 20) - PAGE] {
        let fs = SmallFs::mount(2 << 20);
        w.use_state_dir(&fs);
        w.mail("alice", 4);
        w.mail("bob", 2);
        fs.fill(margin);
        let before = w.new_count();
        let (code, _sum, err) = w.sync();
        assert_eq!(code, 4, "{margin} bytes free: {err}");
        // Not even the lock file's PID fits, or the check before the store opens refuses it.
        let floor = margin > 0;
        assert!(
            says_disk_full(&err, &w.state, floor),
            "{margin} bytes free: {err}"
        );
        assert_eq!(
            w.new_count(),
            before,
            "{margin} bytes free: something was copied"
        );
        let line = err
            .lines()
            .find(|l| says_disk_full(l, &w.state, floor))
            .unwrap()
            .to_string();
        said.push(format!("{margin} bytes free: {line}"));
        fs.free();
        let (code, _, err) = w.sync();
        assert_eq!(code, 0, "{margin} bytes free, then space: {err}");
        w.assert_exact();
    }
    eprintln!("{}", said.join("\n"));
}

/// A file system out of inodes (ENOSPC from `mkdir`): a state directory that cannot even be
/// created is the same disk-full error and exit 4 (not a configuration error), before any server
/// is contacted.
#[test]
fn a_state_directory_that_cannot_be_created_on_a_full_disk_is_exit_4() {
    let fs = SmallFs::mount_with("size=1m,nr_inodes=16,mode=0700");
    // Bounded: at most nr_inodes files fit.
    let mut full = false;
    for i in 0..32 {
        match std::fs::File::create(fs.path().join(format!("f{i}"))) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                full = true;
                break;
            }
            Err(e) => panic!("create a file: {e}"),
        }
    }
    assert!(full, "the tmpfs never ran out of inodes");
    let state = fs.path().join("state");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("imapshift.toml");
    // Nothing listens there: the run must stop before contacting a server.
    let port = free_port();
    let text = plain_config(port, port, "", "", "", &["alice"]).replace(
        "state_dir = \"state\"",
        &format!("state_dir = {}", toml_str(state.to_str().unwrap())),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_clean(&err);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "cannot create the state directory {}",
            state.display()
        )) && says_disk_full(&err, &state, false),
        "{err}"
    );
    assert!(!state.exists());
}
