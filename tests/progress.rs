//! Progress is reported in all three modes: indicatif bars on a terminal (run under a
//! pseudo-terminal with `script`), `tracing` progress lines when stderr is not a terminal, and
//! JSON Lines events on stdout with `--json`.

mod common;

use common::{
    append_config, imapshift_bin, run_imapshift, write_config, Dovecot, DovecotOpts, TestImap,
};
use std::process::Command;

fn setup() -> (Dovecot, Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let old = Dovecot::start("old", &[("alice", "old-a")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "new-a")], DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for i in 0..60 {
        let m = format!(
            "Subject: p{i}\r\nMessage-ID: <p{i}@example.com>\r\n\r\n{}\r\n",
            "q".repeat(3000)
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
    append_config(&cfg, "[sync]\nbatch_messages = 5\n");
    (old, new, dir, cfg)
}

#[test]
fn progress_lines_without_a_terminal() {
    let (_old, _new, _dir, cfg) = setup();
    let out = run_imapshift(
        &[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--progress-interval",
            "0",
        ],
        &[("A_OLD", "old-a"), ("A_NEW", "new-a")],
    );
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("progress:") && l.contains("user=alice"))
        .collect();
    assert!(lines.len() >= 3, "expected periodic progress lines:\n{err}");
    assert!(lines.iter().any(|l| l.contains("/60 messages")), "{err}");
    assert!(!err.contains('\u{1b}'), "no terminal escapes in a log file");
    // The overall line (users done, totals) and the user's last line.
    assert!(
        err.contains("progress: 0/1 users done, 1 active, 0 waiting"),
        "{err}"
    );
    assert!(err.contains("alice: ok, 60 copied, 0 failed"), "{err}");
}

#[test]
fn json_events_on_stdout() {
    let (_old, _new, _dir, cfg) = setup();
    let out = run_imapshift(
        &[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
            "--progress-interval",
            "0",
        ],
        &[("A_OLD", "old-a"), ("A_NEW", "new-a")],
    );
    assert_eq!(out.status.code(), Some(0));
    // Every line an event; the last the summary (checked by sync_report).
    let report = common::sync_report(&out.stdout).unwrap();
    assert_eq!(report["copied"], 60, "{report}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "run_started", "{kinds:?}");
    assert_eq!(events[0]["users"], 1);
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in {kinds:?}"))
    };
    assert!(pos("user_started") < pos("folder_started"));
    assert!(pos("folder_started") < pos("progress"));
    assert!(pos("progress") < pos("user_finished"));
    assert!(kinds.contains(&"run_progress"), "{kinds:?}");
    let progress: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "progress").collect();
    assert!(
        progress.len() >= 3,
        "one per batch with interval 0: {kinds:?}"
    );
    assert_eq!(progress.last().unwrap()["messages_done"], 60);
    assert_eq!(progress[0]["messages_total"], 60);
    assert_eq!(progress[0]["user"], "alice");
    assert_eq!(progress[0]["folder"], "INBOX");
    let fin = &events[pos("user_finished")];
    assert_eq!(
        (fin["status"].as_str(), fin["copied"].as_u64()),
        (Some("ok"), Some(60)),
        "{fin}"
    );
    // Timestamps never go back.
    let ts: Vec<f64> = events.iter().map(|e| e["ts"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

#[test]
fn progress_bars_on_a_terminal() {
    let (_old, _new, dir, cfg) = setup();
    let typescript = dir.path().join("typescript");
    let cmd = format!(
        "{} sync --config {}",
        imapshift_bin().display(),
        cfg.display()
    );
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, typescript.to_str().unwrap()])
        .env("A_OLD", "old-a")
        .env("A_NEW", "new-a")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .status()
        .expect("script (util-linux) runs a command under a pseudo-terminal");
    assert!(status.success());
    let screen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(
        screen.contains("alice") && screen.contains("msgs"),
        "no progress bar drawn:\n{screen}"
    );
    assert!(
        screen.contains("/60 msgs"),
        "the bar shows the user's total:\n{screen}"
    );
    assert!(
        screen.contains("all users") && screen.contains("ETA"),
        "the overall bar is drawn:\n{screen}"
    );
    assert!(
        screen.contains("alice: ok, 60 copied, 0 failed"),
        "a finished user's bar becomes a line:\n{screen}"
    );
    assert!(
        screen.contains("OK       alice -> alice"),
        "the summary follows:\n{screen}"
    );
}
