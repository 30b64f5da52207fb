//! Process groups of the test servers (Dovecot, Knot): who is still alive, waiting for the
//! group to empty, and signals that can never hit "all processes" or the test's own group.
//! One copy for every harness that starts a server in its own process group.

use std::fs;
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
