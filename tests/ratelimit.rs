//! Rate limits per server hold: a copy of 60 messages at most 40 messages/s on the old server
//! cannot take less than the paced time (a lower bound, so the test is not timing-fragile).

mod common;

use common::{DovecotPair, TestImap};

#[test]
fn messages_per_second_limit_paces_the_copy() {
    let m = DovecotPair::alice();
    let mut c = TestImap::connect(m.old.port(), "alice", "old-a");
    for i in 0..60 {
        let msg = format!("Subject: r{i}\r\nMessage-ID: <r{i}@example.com>\r\n\r\nrate\r\n");
        c.append("INBOX", &[], None, msg.as_bytes()).unwrap();
    }
    c.logout();
    let text = std::fs::read_to_string(&m.cfg).unwrap().replacen(
        "security = \"plain\"\n",
        "security = \"plain\"\nmax_messages_per_sec = 40\n",
        1,
    );
    std::fs::write(&m.cfg, format!("{text}[sync]\nbatch_messages = 5\n")).unwrap();
    let j = m.sync_ok(&[]);
    assert_eq!(j["copied"], 60);
    // 12 batches of 5 at 40 messages/s: the last batch may start 11 × 0.125 s after the first.
    let secs = j["seconds"].as_f64().unwrap();
    assert!(secs >= 1.3, "60 messages at <= 40/s took only {secs:.2} s");
}
