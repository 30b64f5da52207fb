//! A server restarted in the middle of a sync: the user's sync reconnects with backoff and
//! finishes, exactly once. Real Dovecot, restarted by PID.

mod common;

use common::{
    append_config, run_imapshift, spawn_imapshift, wait_for_messages, write_config, Dovecot,
    DovecotOpts, TestImap,
};
use std::time::Duration;

fn restart_during_sync(restart_old: bool) {
    let mut old = Dovecot::start("old", &[("alice", "old-a")], DovecotOpts::default());
    let mut new = Dovecot::start("new", &[("alice", "new-a")], DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for i in 0..300 {
        let m = format!(
            "Subject: s{i}\r\nMessage-ID: <rs{i}@example.com>\r\n\r\n{}\r\n",
            "w".repeat(15_000 + i)
        );
        c.append("INBOX", &["\\Seen"], None, m.as_bytes()).unwrap();
    }
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &old,
        &new,
        &[("alice", "alice", "A_OLD", "A_NEW")],
    );
    append_config(&cfg, "[sync]\nbatch_messages = 3\n");
    let child = spawn_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("A_OLD", "old-a"), ("A_NEW", "new-a")],
    );
    wait_for_messages(
        new.port(),
        "alice",
        "new-a",
        "INBOX",
        15,
        Duration::from_secs(20),
    );
    if restart_old {
        old.restart();
    } else {
        new.restart();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert!(
        j["users"][0]["retries"].as_u64().unwrap() >= 1,
        "the restart forced a reconnect: {j}\n{stderr}"
    );
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let a: Vec<_> = o
        .fetch_all("INBOX")
        .into_iter()
        .map(|m| (m.body, m.flags))
        .collect();
    let b: Vec<_> = n
        .fetch_all("INBOX")
        .into_iter()
        .map(|m| (m.body, m.flags))
        .collect();
    assert_eq!(a.len(), b.len(), "duplicate or gap after the restart");
    assert_eq!(a, b);
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("A_OLD", "old-a"), ("A_NEW", "new-a")],
    );
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn old_server_restarted_mid_sync() {
    restart_during_sync(true);
}

#[test]
fn new_server_restarted_mid_sync() {
    restart_during_sync(false);
}
