//! Issue 13: what imapshift writes about a migration is private, and one state directory serves
//! one run at a time. Against real Dovecots (old and new in different time zones):
//!
//! * With the admin's umask at 000, every directory under the state directory is 0700 and every
//!   file 0600 (the sled store, the run reports, the lock), and so is `verify --html`'s report.
//!   A state directory that already exists with mode 0755 is named in a warning, not changed.
//! * A second `sync`, `verify`, `cutover`, `folders` or `status` on the state directory of a
//!   running sync (held at a failpoint) is refused at once, exit 4, naming the running command
//!   and its PID. After that run is SIGKILLed, the next run takes over the stale lock with a
//!   warning, and every message is on the new server exactly once.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PW: &str = "pw";

/// alice's two servers and the config (password [`PW`]), with the methods below.
type World = DovecotPair;

fn world(messages: usize) -> World {
    // A parking MX so that `cutover` gets as far as the state directory (it is refused there,
    // before any DNS question).
    let mx = "[sync]\njobs = 1\nbatch_messages = 2\n\
              [mx]\ndomains = [\"example.com\"]\nnameservers = [\"127.0.0.1:1\"]\n\
              parking_target = \"parking.example.net\"\n";
    let w = DovecotPair::plain(&["alice"], mx);
    let mut c = TestImap::connect(w.old.port(), "alice", PW);
    c.create("Work");
    for i in 0..messages {
        let m = format!(
            "From: a@example.com\r\nSubject: private {i}\r\nMessage-ID: <p{i}@example.com>\r\n\r\nbody {i}\r\n"
        );
        let folder = if i % 2 == 0 { "INBOX" } else { "Work" };
        c.append(folder, &["\\Seen"], None, m.as_bytes()).unwrap();
    }
    c.logout();
    w
}

impl World {
    /// `imapshift ARGS --config CFG` with umask 000, as an admin's careless shell might have.
    fn run_wide_umask(&self, args: &[&str]) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(imapshift_bin())
            .args(args)
            .args(["--config", self.cfg.to_str().unwrap()])
            .current_dir(self.dir.path())
            .env("PW", PW)
            .output()
            .expect("run imapshift under sh")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--config", self.cfg.to_str().unwrap()]);
        run_imapshift_in(self.dir.path(), &all, &[("PW", PW)])
    }

    fn count_new(&self) -> (u32, u32) {
        let mut c = TestImap::connect(self.new.port(), "alice", PW);
        let inbox = c.status("INBOX").0;
        let work = c.status("Work").0;
        c.logout();
        (inbox, work)
    }
}

/// Every path under `root` (itself included) whose mode lets others in, with its mode.
fn not_private(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o777;
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        if mode & 0o077 != 0 || (m.is_dir() && mode != want) {
            out.push(format!("{} {mode:04o}", p.display()));
        }
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn everything_written_is_owner_only_whatever_the_umask() {
    let w = world(6);
    let out = w.run_wide_umask(&["sync"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let html = w.dir.path().join("report.html");
    let out = w.run_wide_umask(&["verify", "--html", html.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for cmd in ["status", "folders"] {
        let out = w.run_wide_umask(&[cmd]);
        assert_eq!(code(&out), 0, "{cmd}: {}", stderr(&out));
    }
    let state = w.state();
    for f in ["db", "last-run.json", "lock", "runs"] {
        assert!(state.join(f).exists(), "{f} under {}", state.display());
    }
    assert_eq!(not_private(&state), Vec::<String>::new());
    assert_eq!(not_private(&html), Vec::<String>::new());

    // An existing state directory open to others is named, and left as the admin made it.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = w.run(&["sync"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("can be read by other local users (mode 0755)")
            && err.contains(&format!("chmod 700 {}", state.display())),
        "{err}"
    );
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

#[test]
fn a_second_run_on_one_state_directory_is_refused_naming_the_first() {
    let w = world(8);
    let pause = Pause::new("after-append", 2);
    let mut envs: Vec<(&str, String)> = pause.env();
    envs.push(("PW", PW.into()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut held = std::process::Command::new(imapshift_bin())
        .args(["sync", "--config", w.cfg.to_str().unwrap()])
        .current_dir(w.dir.path())
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    pause.wait_reached(Duration::from_secs(60));
    let pid = held.id();
    for cmd in ["sync", "verify", "cutover", "folders", "status"] {
        let out = w.run(&[cmd]);
        let err = stderr(&out);
        assert_eq!(code(&out), 4, "{cmd}: {err}");
        assert!(
            err.contains(&format!("is in use by imapshift sync, PID {pid}, since "))
                && err.contains(&format!("kill {pid}")),
            "{cmd}: {err}"
        );
    }
    // The held run dies without cleaning up: its lock goes with it.
    held.kill().unwrap();
    held.wait().unwrap();
    let out = w.run(&["sync"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains(&format!("(imapshift sync, PID {pid}, since "))
            && err.contains("did not end normally"),
        "{err}"
    );
    assert_eq!(w.count_new(), (4, 4), "every message exactly once");
    let out = w.run(&["verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    drop(w.old);
}
