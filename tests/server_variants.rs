//! The copy path on servers that lack the fast extensions, and exactly-once under abrupt exits.
//!
//! Dovecot's `imap_capability` hides MULTIAPPEND or LITERAL+ so the pipelined single-APPEND
//! path and the synchronizing-literal path run against a real server. Failpoints abort the
//! process right after the journal write and right after an APPEND (before the commit); the
//! re-run must resolve the intents and leave exactly the old server's messages, no duplicate.

mod common;

use common::{
    append_config, dovecot_opts, run_imapshift, sum_over_folders, Dovecot, DovecotOpts,
    DovecotPair, TestImap, ALICE_ENVS as ENVS,
};
use std::path::Path;

fn seed(old: &Dovecot, n: usize) {
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    c.create("Work");
    for i in 0..n {
        let folder = if i % 3 == 0 { "Work" } else { "INBOX" };
        let flags: &[&str] = if i % 2 == 0 {
            &["\\Seen"]
        } else {
            &["$Important"]
        };
        let m = format!(
            "From: a@example.com\r\nSubject: message {i}\r\nMessage-ID: <v{i}@example.com>\r\n\r\n{}\r\n",
            "body ".repeat(50 + i * 20)
        );
        c.append(
            folder,
            flags,
            Some("05-May-2020 05:05:05 +0000"),
            m.as_bytes(),
        )
        .unwrap();
    }
    // A byte-identical twin: exactly-once must not merge it with its sibling.
    let twin =
        b"From: a@example.com\r\nSubject: twin\r\nMessage-ID: <twin@example.com>\r\n\r\ntwin\r\n";
    c.append("INBOX", &[], Some("06-Jun-2021 06:06:06 +0000"), twin)
        .unwrap();
    c.append("INBOX", &[], Some("06-Jun-2021 06:06:06 +0000"), twin)
        .unwrap();
    c.logout();
}

fn assert_identical(old: &Dovecot, new: &Dovecot) {
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    for f in ["INBOX", "Work"] {
        let a = o.fetch_all(f);
        let b = n.fetch_all(f);
        let ka: Vec<_> = a
            .iter()
            .map(|m| (m.body.clone(), m.flags.clone(), m.instant()))
            .collect();
        let kb: Vec<_> = b
            .iter()
            .map(|m| (m.body.clone(), m.flags.clone(), m.instant()))
            .collect();
        assert_eq!(
            ka.len(),
            kb.len(),
            "{f}: {} on old, {} on new (duplicate or gap)",
            ka.len(),
            kb.len()
        );
        assert_eq!(ka, kb, "{f}: contents differ");
    }
}

/// alice's servers (the new one with `new_opts`), `n` messages [`seed`]ed on the old one, and
/// a config that copies `batch_messages` at a time.
fn seeded(new_opts: DovecotOpts, n: usize, batch_messages: usize) -> DovecotPair {
    let m = DovecotPair::alice_with(DovecotOpts::default(), new_opts);
    seed(&m.old, n);
    append_config(
        &m.cfg,
        &format!("[sync]\nbatch_messages = {batch_messages}\n"),
    );
    m
}

fn sync(cfg: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], envs);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn variant(caps: &str) {
    let m = seeded(dovecot_opts(&format!("imap_capability = {caps}\n")), 30, 7);
    let (old, new, cfg) = (&m.old, &m.new, &m.cfg);
    let (code, out, err) = sync(cfg, ENVS);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let j: serde_json::Value = common::sync_report(out.as_bytes()).unwrap();
    assert_eq!(j["copied"], 32, "{j}");
    assert_identical(old, new);
    let (code, out, _) = sync(cfg, ENVS);
    assert_eq!(code, Some(0));
    let j: serde_json::Value = common::sync_report(out.as_bytes()).unwrap();
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn without_multiappend_pipelined_single_appends() {
    variant("IMAP4rev1 LITERAL+ UIDPLUS");
}

#[test]
fn without_literal_plus_synchronizing_literals() {
    variant("IMAP4rev1 MULTIAPPEND UIDPLUS");
}

#[test]
fn bare_imap4rev1_server() {
    variant("IMAP4rev1");
}

/// Aborts at `point` on its `hit`-th pass, then re-runs until done; the result must be exact.
fn crash_and_resume(point: &str, hit: &str) {
    let m = seeded(DovecotOpts::default(), 40, 5);
    let (old, new, cfg) = (&m.old, &m.new, &m.cfg);
    let mut envs = ENVS.to_vec();
    envs.push(("IMAPSHIFT_FAILPOINT", point));
    envs.push(("IMAPSHIFT_FAILPOINT_HIT", hit));
    let (code, out, err) = sync(cfg, &envs);
    assert_ne!(
        code,
        Some(0),
        "the failpoint must stop the run: {out}\n{err}"
    );
    assert!(err.contains(&format!("failpoint {point} reached")), "{err}");
    // Resume without the failpoint.
    let (code, out, err) = sync(cfg, ENVS);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let j: serde_json::Value = common::sync_report(out.as_bytes()).unwrap();
    let recovered = sum_over_folders(&j, "recovered");
    if point == "after-append" {
        assert_eq!(
            recovered, 5,
            "the appended batch must be found, not copied again: {j}"
        );
    } else {
        assert_eq!(recovered, 0, "nothing was appended before the abort: {j}");
    }
    assert_identical(old, new);
    let (_, out, _) = sync(cfg, ENVS);
    let j: serde_json::Value = common::sync_report(out.as_bytes()).unwrap();
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn abort_after_append_before_commit_is_exactly_once() {
    crash_and_resume("after-append", "3");
}

#[test]
fn abort_after_journal_before_append_is_exactly_once() {
    crash_and_resume("after-journal", "2");
}

/// Regression: an error on the new side while the old side had a batch ready used to leave the
/// fetching half blocked on the channel forever (the run hung). Now the user reconnects and
/// finishes, exactly once.
#[test]
fn new_side_error_mid_copy_reconnects_and_finishes() {
    let m = seeded(DovecotOpts::default(), 40, 5);
    let mut envs = ENVS.to_vec();
    envs.push(("IMAPSHIFT_FAILPOINT", "after-append"));
    envs.push(("IMAPSHIFT_FAILPOINT_HIT", "2"));
    envs.push(("IMAPSHIFT_FAILPOINT_ACTION", "error"));
    envs.push(("IMAPSHIFT_TEST_TIMEOUT_SECS", "60"));
    let (code, out, err) = sync(&m.cfg, &envs);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let j: serde_json::Value = common::sync_report(out.as_bytes()).unwrap();
    assert_eq!(j["users"][0]["retries"], 1, "{j}");
    // Counts survive the reconnect: every message is copied or recovered once, none "skipped".
    let sum = |k: &str| sum_over_folders(&j, k);
    assert_eq!(sum("copied") + sum("recovered"), 42, "{j}");
    assert_eq!(sum("skipped"), 0, "{j}");
    assert_identical(&m.old, &m.new);
}
