//! Ctrl-C stops cleanly: the batch in flight is committed, no intent is left pending, the exit
//! code is 130, and the next run finishes exactly. Real Dovecot servers. The run is held at the
//! `after-append` failpoint of its fourth batch and signalled there, so where it stops does not
//! depend on the machine's speed.

mod common;

use common::{
    append_config, run_imapshift, spawn_imapshift, write_config, Dovecot, DovecotOpts, Pause,
    StderrLog, TestImap,
};
use std::process::Command;
use std::time::Duration;

#[test]
fn sigint_stops_cleanly_and_the_next_run_finishes() {
    let old = Dovecot::start("old", &[("alice", "old-a")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "new-a")], DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for i in 0..300 {
        let m = format!(
            "Subject: m{i}\r\nMessage-ID: <int{i}@example.com>\r\n\r\n{}\r\n",
            "y".repeat(20_000 + i)
        );
        c.append("INBOX", &[], None, m.as_bytes()).unwrap();
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
    let envs = [("A_OLD", "old-a"), ("A_NEW", "new-a")];
    // Held right after the fourth batch (messages 10 to 12) was appended, before it is
    // committed: Ctrl-C arrives with that batch in flight.
    let pause = Pause::new("after-append", 4);
    let mut env: Vec<(&str, String)> = envs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.extend(pause.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = spawn_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], &env);
    let log = StderrLog::of(&mut child);
    pause.wait_reached(Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    log.wait_for(&["stopping cleanly"], Duration::from_secs(20));
    pause.release();
    let out = child.wait_with_output().unwrap();
    let stderr = log.finish();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    let copied = j["copied"].as_u64().unwrap();
    assert!(
        (12..300).contains(&copied),
        "stopped in the middle, the held batch committed: {j}"
    );
    // Nothing pending: the batch in flight was committed.
    let st = run_imapshift(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        &envs,
    );
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(s[0]["pending_intents"], 0, "{s}");
    assert_eq!(s[0]["mapped_messages"].as_u64().unwrap(), copied, "{s}");
    // The next run copies exactly the rest.
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &envs,
    );
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"].as_u64().unwrap(), 300 - copied, "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 300);
}
