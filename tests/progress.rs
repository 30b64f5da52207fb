//! Progress is reported in both modes: indicatif bars on a terminal (run under a pseudo-terminal
//! with `script`), and `tracing` progress lines when stderr is not a terminal.

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
        screen.contains("60/60"),
        "the bar reaches the total:\n{screen}"
    );
    assert!(
        screen.contains("OK       alice -> alice"),
        "the summary follows:\n{screen}"
    );
}
