//! Process groups of the test servers (Dovecot, Knot, Courier): who is still alive, waiting for
//! the group to empty, ending what is left of it, signals that can never hit "all processes" or
//! the test's own group, and what a server's Drop does around its stop. One copy for every
//! harness that starts a server in its own process group.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

/// Live members of process group `pgid`, from /proc (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces/parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" && f[0] != "X" {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// Waits until the group is empty or `timeout` passes; returns who is left.
pub fn wait_group_empty(pgid: u32, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let m = group_members(pgid);
        if m.is_empty() || Instant::now() > deadline {
            return m;
        }
        sleep(Duration::from_millis(10));
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// kill(2) on a process (or, negative, a group).
pub fn signal(pid: i32, sig: i32) {
    // Never signal "all processes" (-1) or our own group (0).
    assert!(pid != 0 && pid != -1, "refusing to kill({pid})");
    // SAFETY: plain syscall wrapper; ESRCH (already gone) is fine.
    unsafe {
        kill(pid, sig);
    }
}

/// After a server's main process is gone: SIGTERM what is left of its group (5 s), SIGKILL as
/// a last resort (5 s), and panic (unless already panicking) if anything survives. `what`
/// names the server in messages, e.g. `dovecot old`.
pub fn end_group(pgid: u32, what: &str) {
    let mut left = group_members(pgid);
    if !left.is_empty() {
        signal(-(pgid as i32), SIGTERM);
        left = wait_group_empty(pgid, Duration::from_secs(5));
    }
    if !left.is_empty() {
        eprintln!("{what}: {left:?} ignored SIGTERM, sending SIGKILL");
        signal(-(pgid as i32), SIGKILL);
        left = wait_group_empty(pgid, Duration::from_secs(5));
    }
    if !left.is_empty() {
        let msg = format!("{what}: processes of group {pgid} survived stop: {left:?}");
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// Starts a server in a process group of its own (its PID is the group's id), stdin closed,
/// stdout and stderr appended to `log`.
pub fn spawn_in_group(
    cmd: &mut std::process::Command,
    log: &Path,
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
}

/// Where a server's stop request goes: to its main process alone (it stops its children:
/// Dovecot's and Cyrus's masters, knotd) or to its whole process group (Courier).
#[derive(Clone, Copy, Debug)]
pub enum TermTo {
    Leader,
    Group,
}

/// How long a server's main process gets to exit after SIGTERM before its group gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops a server whose main process `child` leads process group `pgid`: SIGTERM (to `to`),
/// up to [`STOP_TIMEOUT`] for it to exit, else SIGKILL to the group; then [`end_group`] for
/// whatever is left (and its panic if anything survives). `what` names the server (`dovecot
/// old`), `leader` its main process (`master`, `knotd`, `couriertcpd`).
pub fn stop_server(
    mut child: std::process::Child,
    pgid: u32,
    to: TermTo,
    what: &str,
    leader: &str,
) {
    let pid = pgid as i32;
    signal(
        match to {
            TermTo::Leader => pid,
            TermTo::Group => -pid,
        },
        SIGTERM,
    );
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
        sleep(Duration::from_millis(10));
    }
    if !matches!(child.try_wait(), Ok(Some(_))) {
        eprintln!("{what}: {leader} {pid} ignored SIGTERM for {STOP_TIMEOUT:?}, sending SIGKILL");
        signal(-pid, SIGKILL);
        let _ = child.wait();
    }
    end_group(pgid, what);
}

/// For a test server's Drop, before it stops: when the test panics while the server runs,
/// prints the server's log tail. `kind` is e.g. `"courier"`.
pub fn log_tail_on_panic(
    kind: &str,
    name: &str,
    dir: &Path,
    running: bool,
    log_tail: impl FnOnce() -> String,
) {
    if std::thread::panicking() && running {
        eprintln!(
            "--- {kind} {name:?} ({}) log tail ---\n{}",
            dir.display(),
            log_tail()
        );
    }
}

/// For a test server's Drop, after it stopped: with `IMAPSHIFT_KEEP_TMP` set, keeps its temp
/// dir (and prints where).
pub fn keep_tmp_if_asked(kind: &str, tmp: &mut Option<tempfile::TempDir>) {
    if std::env::var_os("IMAPSHIFT_KEEP_TMP").is_some() {
        if let Some(tmp) = tmp.take() {
            eprintln!("keeping {kind} dir {}", tmp.keep().display());
        }
    }
}

/// How a server's start ended, see [`wait_started`].
pub enum Started {
    Ready,
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Polls every 50 ms, for at most `timeout` (a failure guard), until `ready()` says the server
/// serves or its process `child` exited.
pub fn wait_started(
    child: &mut std::process::Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Started {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Started::Exited(status);
        }
        if ready() {
            return Started::Ready;
        }
        if Instant::now() > deadline {
            return Started::TimedOut;
        }
        sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a server's log.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
