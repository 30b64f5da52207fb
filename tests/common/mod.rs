//! Shared integration-test harness for `imapshift`.
//!
//! It exists so that every test exercises the real thing: real Dovecot
//! servers (private instances started per test, see [`Dovecot`]) and the
//! real `imapshift` binary (see [`run_imapshift`]), with an independent,
//! from-scratch IMAP client ([`TestImap`]) as the judge of what ended up on
//! a server. Nothing here uses the crate under test.
//!
//! Each test binary does `mod common;` and uses a subset, hence the
//! `dead_code` allowance. `tests/harness_selftest.rs` tests this harness.

#![allow(dead_code, unused_imports)]

mod compare;
pub mod courier;
pub mod cyrus;
mod dovecot;
pub mod gen;
mod imap;
mod knot;
mod lame_dns;
mod procgroup;
pub mod proxy;
mod rng;
mod run;
pub mod tls;

pub use compare::{diff_folder, internaldate_secs, key, parse_internaldate, subject, Key};
pub use courier::{courier_prefix, Courier, CourierOpts};
pub use cyrus::{cyrus_prefix, Cyrus, CyrusOpts, CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD};
pub use dovecot::{
    default_tz, free_port, Dovecot, DovecotOpts, SENT_AND_TRASH_NS, STOCK_SPECIAL_USE_NS,
};
pub use imap::{
    literal_at_end, tokenize, FetchItems, FolderSnapshot, MsgSnapshot, Reply, ServerSnapshot,
    TestImap, TestMsg, Tok,
};
pub use knot::{kdig, zone_text, Knot};
pub use lame_dns::LameDns;
pub use rng::Rng;
pub use run::*;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The optional real-mail corpus: `$IMAPSHIFT_CORPUS` if set (and
/// non-empty), in which case `<dir>/real` must exist or we panic (a
/// misconfigured corpus must fail the run, not silently skip it).
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IMAPSHIFT_CORPUS").filter(|v| !v.is_empty())?;
    let dir = PathBuf::from(dir);
    let real = dir.join("real");
    assert!(
        real.is_dir(),
        "IMAPSHIFT_CORPUS={} but {} is not a directory",
        dir.display(),
        real.display()
    );
    Some(dir)
}

/// All regular files under `<dir>/real`, recursively, sorted by path.
/// (Symlinks to files count; symlinked directories are not followed.)
pub fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()));
        for e in entries {
            let p = e.expect("read_dir entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("stat corpus entry");
            if meta.is_dir() {
                walk(&p, out);
            } else if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("real"), &mut out);
    out.sort();
    out
}

/// Path of the `imapshift` binary built for these tests.
/// The run report of `sync --json`. Its stdout is JSON Lines: one event object per line, each
/// with `event` and `ts`, the last one `"event": "summary"` carrying the report. Checks that
/// every line is such an event; the error names the line that is not.
pub fn sync_report(stdout: &[u8]) -> Result<serde_json::Value, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut last = None;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("stdout line {} is not JSON ({e}): {line}", i + 1))?;
        let event = v["event"]
            .as_str()
            .ok_or_else(|| format!("stdout line {} has no \"event\": {line}", i + 1))?;
        if v["ts"].as_f64().is_none() {
            return Err(format!("stdout line {} has no \"ts\": {line}", i + 1));
        }
        last = Some((event.to_string(), v));
    }
    match last {
        Some((e, v)) if e == "summary" => Ok(v),
        Some((e, _)) => Err(format!("the last event is {e:?}, not \"summary\"")),
        None => Err("stdout is empty: no summary event".into()),
    }
}

pub fn imapshift_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imapshift"))
}

/// Runs `imapshift args...` with extra environment variables, stdin closed,
/// in the current directory. Panics if it runs longer than
/// `$IMAPSHIFT_TEST_TIMEOUT_SECS` (default 300 s), showing its output.
pub fn run_imapshift(args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_imapshift_impl(None, args, envs)
}

/// Like [`run_imapshift`] but with `cwd` as the working directory.
pub fn run_imapshift_in(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_imapshift_impl(Some(cwd), args, envs)
}

fn run_imapshift_impl(cwd: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let timeout = std::env::var("IMAPSHIFT_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let mut cmd = Command::new(imapshift_bin());
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", imapshift_bin().display()));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for imapshift") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "imapshift {args:?} still running after {timeout:?}; killed.\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Writes `<dir>/imapshift.toml` (the tool's config contract) for migrating
/// from `old` to `new`, both plain IMAP on 127.0.0.1. `users` are
/// `(old login, new login, old password env var, new password env var)`.
pub fn write_config(
    dir: &Path,
    old: &Dovecot,
    new: &Dovecot,
    users: &[(&str, &str, &str, &str)],
) -> PathBuf {
    let mut s = format!(
        "state_dir = \"state\"\n\
         [old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
        old.port(),
        new.port()
    );
    for (old_login, new_login, old_env, new_env) in users {
        s.push_str(&format!(
            "[[users]]\nold = {}\nnew = {}\nold_password = {}\nnew_password = {}\n",
            toml_str(old_login),
            toml_str(new_login),
            toml_str(&format!("env:{old_env}")),
            toml_str(&format!("env:{new_env}")),
        ));
    }
    let path = dir.join("imapshift.toml");
    std::fs::write(&path, s).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// The text of an `imapshift.toml` for plain IMAP on 127.0.0.1: `state_dir = "state"`,
/// `[old]` and `[new]` with the ports and `old_extra` / `new_extra` lines, then `tables` (e.g.
/// `[sync]` or `[mx]` sections), then one `[[users]]` per login (same login on both sides,
/// passwords `env:PW`).
pub fn plain_config(
    old_port: u16,
    new_port: u16,
    old_extra: &str,
    new_extra: &str,
    tables: &str,
    users: &[&str],
) -> String {
    let mut s = format!(
        "state_dir = \"state\"\n\
         [old]\nhost = \"127.0.0.1\"\nport = {old_port}\nsecurity = \"plain\"\n{old_extra}\
         [new]\nhost = \"127.0.0.1\"\nport = {new_port}\nsecurity = \"plain\"\n{new_extra}\
         {tables}"
    );
    for u in users {
        s.push_str(&format!(
            "[[users]]\nold = {0}\nnew = {0}\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\n",
            toml_str(u)
        ));
    }
    s
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Appends lines (e.g. a `[sync]` table) to a configuration file written by [`write_config`].
pub fn append_config(cfg: &Path, text: &str) {
    let old =
        std::fs::read_to_string(cfg).unwrap_or_else(|e| panic!("read {}: {e}", cfg.display()));
    std::fs::write(cfg, format!("{old}{text}"))
        .unwrap_or_else(|e| panic!("write {}: {e}", cfg.display()));
}

/// Starts `imapshift args...` in the background (stdout and stderr piped), for tests that
/// signal, kill or disturb it while it runs.
pub fn spawn_imapshift(args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
    Command::new(imapshift_bin())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", imapshift_bin().display()))
}

/// A running child's stderr, read line by line by a thread: what it said so far, and a wait for
/// a line (an observed state, never a moment).
pub struct StderrLog {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl StderrLog {
    /// Takes `child`'s piped stderr.
    pub fn of(child: &mut std::process::Child) -> StderrLog {
        use std::io::BufRead;
        let err = child.stderr.take().expect("stderr piped");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let t = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                t.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        StderrLog {
            text,
            lines,
            reader: Some(reader),
        }
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits for the next line that holds every one of `what` (lines before it are passed
    /// over). `guard` is only a failure guard: it panics with the log.
    pub fn wait_for(&self, what: &[&str], guard: Duration) {
        let deadline = Instant::now() + guard;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if what.iter().all(|w| l.contains(w)) => return,
                Ok(_) => {}
                Err(_) => panic!("no line with {what:?} within {guard:?}:\n{}", self.text()),
            }
        }
    }

    /// All of stderr, once the child has closed it (exited).
    pub fn finish(mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.text()
    }
}

/// Waits for `child` to exit and returns its exit code (`None`: killed by a signal). `guard` is
/// only a failure guard: past it the child is killed and the test fails.
pub fn wait_exit(child: &mut std::process::Child, guard: Duration) -> Option<i32> {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("imapshift did not exit within {guard:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run held at a failpoint (`IMAPSHIFT_FAILPOINT_ACTION=pause`, see src/failpoint.rs): the
/// `hit`-th time the binary reaches `point` it writes `<dir>/reached` and waits until the test
/// calls [`Pause::release`] (or drops the `Pause`: the binary aborts when the directory is gone).
/// So a test acts (restarts a server, changes mail) at an exact step,
/// never after a guessed delay.
pub struct Pause {
    dir: tempfile::TempDir,
    point: String,
    /// `IMAPSHIFT_FAILPOINT_HIT`: one pass (`3`) or several (`1,3`).
    hit: String,
}

impl Pause {
    /// Arms `point` (e.g. `"after-append"`) at its `hit`-th pass (1-based).
    pub fn new(point: &str, hit: u64) -> Pause {
        Pause::new_at(point, &[hit])
    }

    /// Arms `point` at several passes (1-based): the run holds at each in turn.
    pub fn new_at(point: &str, hits: &[u64]) -> Pause {
        Pause {
            dir: tempfile::tempdir().expect("temp dir for a pause failpoint"),
            point: point.to_string(),
            hit: hits
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The environment variables that arm the pause, for [`spawn_imapshift`].
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IMAPSHIFT_FAILPOINT", self.point.clone()),
            ("IMAPSHIFT_FAILPOINT_HIT", self.hit.clone()),
            ("IMAPSHIFT_FAILPOINT_ACTION", "pause".into()),
            (
                "IMAPSHIFT_FAILPOINT_DIR",
                self.dir.path().to_str().expect("UTF-8 temp dir").into(),
            ),
        ]
    }

    /// Whether the run has reached the point (and is waiting).
    pub fn is_reached(&self) -> bool {
        self.dir.path().join("reached").exists()
    }

    /// Waits until the run has reached the point. `timeout` is only a failure guard: panics
    /// with a clear message if the point is not reached in time (e.g. the run finished or
    /// failed before its `hit`-th pass). Returns the point's name as the binary wrote it.
    pub fn wait_reached(&self, timeout: Duration) -> String {
        self.wait_reached_nth(1, timeout)
    }

    /// Lets the paused run continue (idempotent).
    pub fn release(&self) {
        self.release_nth(1)
    }

    /// With several passes armed (`Pause::new_at(point, &[1, 3])`): waits until the run holds at
    /// the `i`-th of them (1-based; a failure guard as in [`Pause::wait_reached`]).
    pub fn wait_reached_nth(&self, i: usize, timeout: Duration) -> String {
        let name = if i == 1 {
            "reached".to_string()
        } else {
            format!("reached-{i}")
        };
        let path = self.dir.path().join(name);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(name) = std::fs::read_to_string(&path) {
                return name;
            }
            assert!(
                Instant::now() < deadline,
                "failpoint {} (armed pass {i} of IMAPSHIFT_FAILPOINT_HIT={}) not reached within \
                 {timeout:?}: the run finished or failed before it, or never passes there",
                self.point,
                self.hit
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the run continue from the `i`-th armed pass.
    pub fn release_nth(&self, i: usize) {
        let name = if i == 1 {
            "release".to_string()
        } else {
            format!("release-{i}")
        };
        let path = self.dir.path().join(name);
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// A tiny SMTP greeter: accepts connections on `addr` (e.g. `"127.0.0.4:0"`) and says 220, as a
/// new MX target that takes mail. Returns the port.
pub fn smtp_greeter(addr: &str) -> u16 {
    use std::io::Write;
    let l = std::net::TcpListener::bind(addr).expect("bind the SMTP greeter");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.write_all(b"220 new-mx.example.net ESMTP test\r\n");
        }
    });
    port
}

/// `imapshift` running in the background ([`spawn_logged`]) with its stderr collected as it
/// comes, for tests that wait for a log line, signal it, then read its end.
pub struct Running {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// How a [`Running`] ended.
pub struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Starts `imapshift args...` with `IMAPSHIFT_LOG=info` and `envs`, stdin closed, stdout piped,
/// stderr collected (see [`Running::log`]).
pub fn spawn_logged(args: &[&str], envs: &[(&str, &str)]) -> Running {
    use std::io::BufRead;
    let mut child = Command::new(imapshift_bin())
        .args(args)
        .env("IMAPSHIFT_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", imapshift_bin().display()));
    let err = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        })
    };
    Running {
        child,
        log,
        reader: Some(reader),
    }
}

impl Running {
    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (a failure guard only) until stderr shows `what`.
    pub fn wait_for(&self, what: &str, secs: u64) {
        let t = Instant::now();
        while !self.log().contains(what) {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "no {what:?} within {secs}s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` (`"INT"`, `"TERM"`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the exit (guard: 120 s, then SIGKILL and panic) and reads stdout and all of
    /// stderr.
    pub fn finish(mut self) -> Finished {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                panic!("imapshift did not end within 120s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Finished {
            code: status.code(),
            stdout,
            stderr: self.log(),
        }
    }
}

/// Knot `ns1` on 127.0.0.1 serving example.com (MX 10 `mx` with `ttl`) and example.net with the
/// cutover tests' targets: `park` 127.0.0.3, `new-mx` 127.0.0.4, `old-mx` 127.0.0.5.
pub fn parking_dns(mx: &str, ttl: u32) -> Knot {
    let com = zone_text("example.com", &[], &[(10, mx)], ttl);
    let net = zone_text("example.net", &[], &[], 300)
        + "park 300 IN A 127.0.0.3\nnew-mx 300 IN A 127.0.0.4\nold-mx 300 IN A 127.0.0.5\n";
    let port = Knot::free_port(&["127.0.0.1"]);
    Knot::start(
        "ns1",
        "127.0.0.1",
        port,
        &[("example.com", com.as_str()), ("example.net", net.as_str())],
    )
}

/// Dovecot configuration text for a master user `admin` with `password` (passwd-file in `dir`,
/// made readable for Dovecot's auth process), `auth_master_user_separator = *`.
pub fn dovecot_master_conf(dir: &Path, password: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("master-users");
    std::fs::write(&file, format!("admin:{{PLAIN}}{password}\n")).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    format!(
        "auth_master_user_separator = *\npassdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {}\n  result_success = continue\n}}\n",
        file.display()
    )
}
