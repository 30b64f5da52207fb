//! A server restarted in the middle of a sync: the user's sync reconnects with backoff and
//! finishes, exactly once. Real Dovecot, restarted by PID at an exact step: the run is held at
//! the `after-append` failpoint (`IMAPSHIFT_FAILPOINT_ACTION=pause`, third batch of three
//! messages) while the server restarts, so nothing depends on how fast the sync runs.

mod common;

use common::{append_config, diff_folder, spawn_imapshift, DovecotPair, Pause, TestImap};
use std::time::Duration;

/// Messages on the old server: enough batches of three that most of the run is still ahead
/// when it is held after the third one.
const MESSAGES: usize = 60;

fn restart_during_sync(restart_old: bool) {
    let mut m = DovecotPair::alice();
    let mut c = TestImap::connect(m.old.port(), "alice", "old-a");
    for i in 0..MESSAGES {
        let msg = format!(
            "Subject: s{i}\r\nMessage-ID: <rs{i}@example.com>\r\n\r\n{}\r\n",
            "w".repeat(15_000 + i)
        );
        let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
        c.append("INBOX", flags, None, msg.as_bytes()).unwrap();
    }
    c.logout();
    append_config(&m.cfg, "[sync]\nbatch_messages = 3\n");
    let pause = Pause::new("after-append", 3);
    let pause_env = pause.env();
    let mut envs = m.envs.to_vec();
    envs.extend(pause_env.iter().map(|(k, v)| (*k, v.as_str())));
    let child = spawn_imapshift(
        &["sync", "--config", m.cfg.to_str().unwrap(), "--json"],
        &envs,
    );
    assert_eq!(pause.wait_reached(Duration::from_secs(120)), "after-append");
    // Held right after the third APPEND: nine messages are on the new server, the rest of the
    // run is still ahead, and both connections are open.
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    assert_eq!(n.status("INBOX").0, 9, "three batches of three appended");
    n.logout();
    if restart_old {
        m.old.restart();
    } else {
        m.new.restart();
    }
    pause.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert!(
        j["users"][0]["retries"].as_u64().unwrap() >= 1,
        "the restart forced a reconnect: {j}\n{stderr}"
    );
    let mut o = TestImap::connect(m.old.port(), "alice", "old-a");
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    let a = o.fetch_all("INBOX");
    let b = n.fetch_all("INBOX");
    assert_eq!(a.len(), MESSAGES);
    if let Err(e) = diff_folder("INBOX", &a, &b) {
        panic!("after the restart: {e}\n{stderr}");
    }
    let j = m.sync_ok(&[]);
    assert_eq!(j["copied"], 0, "{j}");
}

/// The old server restarts while the run is held after its third APPEND: the next FETCH finds
/// the connection gone, the user reconnects (retries >= 1), exit 0, the new server holds
/// exactly the old server's messages (bytes, flags, INTERNALDATE instant, order), and a re-run
/// copies nothing.
#[test]
fn old_server_restarted_mid_sync() {
    restart_during_sync(true);
}

/// The same with the new server restarted: the next APPEND finds the connection gone.
#[test]
fn new_server_restarted_mid_sync() {
    restart_during_sync(false);
}
