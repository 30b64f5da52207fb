//! Rate limits per server hold: a copy of 60 messages at most 40 messages/s on the old server
//! cannot take less than the paced time (a lower bound, so the test is not timing-fragile).

mod common;

use common::{run_imapshift, write_config, Dovecot, DovecotOpts, TestImap};

#[test]
fn messages_per_second_limit_paces_the_copy() {
    let old = Dovecot::start("old", &[("alice", "old-a")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "new-a")], DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for i in 0..60 {
        let m = format!("Subject: r{i}\r\nMessage-ID: <r{i}@example.com>\r\n\r\nrate\r\n");
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
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "security = \"plain\"\n",
        "security = \"plain\"\nmax_messages_per_sec = 40\n",
        1,
    );
    std::fs::write(&cfg, format!("{text}[sync]\nbatch_messages = 5\n")).unwrap();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("A_OLD", "old-a"), ("A_NEW", "new-a")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 60);
    // 12 batches of 5 at 40 messages/s: the last batch may start 11 × 0.125 s after the first.
    let secs = j["seconds"].as_f64().unwrap();
    assert!(secs >= 1.3, "60 messages at <= 40/s took only {secs:.2} s");
}
