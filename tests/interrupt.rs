//! Ctrl-C stops cleanly: the batch in flight is committed, no intent is left pending, the exit
//! code is 130, and the next run finishes exactly. Real Dovecot servers. The run is held at the
//! `after-append` failpoint of its fourth batch and signalled there, so where it stops does not
//! depend on the machine's speed.

mod common;

use common::{append_config, spawn_imapshift, DovecotPair, Pause, StderrLog, TestImap};
use std::process::Command;
use std::time::Duration;

#[test]
fn sigint_stops_cleanly_and_the_next_run_finishes() {
    let m = DovecotPair::alice();
    let mut c = TestImap::connect(m.old.port(), "alice", "old-a");
    for i in 0..300 {
        let msg = format!(
            "Subject: m{i}\r\nMessage-ID: <int{i}@example.com>\r\n\r\n{}\r\n",
            "y".repeat(20_000 + i)
        );
        c.append("INBOX", &[], None, msg.as_bytes()).unwrap();
    }
    c.logout();
    append_config(&m.cfg, "[sync]\nbatch_messages = 3\n");
    // Held right after the fourth batch (messages 10 to 12) was appended, before it is
    // committed: Ctrl-C arrives with that batch in flight.
    let pause = Pause::new("after-append", 4);
    let mut env: Vec<(&str, String)> = m.envs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.extend(pause.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = spawn_imapshift(
        &["sync", "--config", m.cfg.to_str().unwrap(), "--json"],
        &env,
    );
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
    let st = m.run_cmd("status", &["--json"]);
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(s[0]["pending_intents"], 0, "{s}");
    assert_eq!(s[0]["mapped_messages"].as_u64().unwrap(), copied, "{s}");
    // The next run copies exactly the rest.
    let j = m.sync_ok(&[]);
    assert_eq!(j["copied"].as_u64().unwrap(), 300 - copied, "{j}");
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 300);
}
