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
    let (dir, cfg) = alice_config(&old, &new, 5);
    (old, new, dir, cfg)
}

/// The config migrating alice (`A_OLD`, `A_NEW`) in batches of `batch_messages`.
fn alice_config(
    old: &Dovecot,
    new: &Dovecot,
    batch_messages: usize,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        old,
        new,
        &[("alice", "alice", "A_OLD", "A_NEW")],
    );
    append_config(
        &cfg,
        &format!("[sync]\nbatch_messages = {batch_messages}\n"),
    );
    (dir, cfg)
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

/// `sync --json` with a `progress` event after every batch.
fn json_sync(cfg: &std::path::Path) -> [&str; 6] {
    [
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "--progress-interval",
        "0",
    ]
}

#[test]
fn json_events_on_stdout() {
    let (_old, _new, _dir, cfg) = setup();
    let out = run_imapshift(&json_sync(&cfg), &[("A_OLD", "old-a"), ("A_NEW", "new-a")]);
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

// ----- a `--json` reader that stops reading (issue 11, item 10) -----

/// Messages for the stalled-reader runs: with one message per batch and `--progress-interval
/// 0`, each batch sends a `progress` and a `run_progress` event (about 400 bytes), so the events
/// of this many messages fill a 64 KiB pipe and the writer's queue several times over.
const STALL_MESSAGES: usize = 2500;

/// An old server with `STALL_MESSAGES` small messages in INBOX (dropped into its Maildir:
/// thousands of APPENDs would only slow the test down), an empty new server, the config.
fn stall_setup() -> (Dovecot, Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let old = Dovecot::start("old", &[("alice", "old-a")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "new-a")], DovecotOpts::default());
    // The first login creates the Maildir.
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    c.select("INBOX");
    c.logout();
    let dir = old.maildir("alice").join("new");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..STALL_MESSAGES {
        let m = format!("Subject: s{i}\nMessage-ID: <stall{i}@example.com>\n\nbody {i}\n");
        std::fs::write(dir.join(format!("1700000000.M{i}P1.stall")), m).unwrap();
    }
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    assert_eq!(c.status("INBOX").0 as usize, STALL_MESSAGES);
    c.logout();
    let (tmp, cfg) = alice_config(&old, &new, 1);
    (old, new, tmp, cfg)
}

/// The run under test, killed if the test fails before it exits (a hung run leaves nothing).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `sync --json --progress-interval 0` with stdout a pipe that nobody reads yet (the read end is
/// held open) and stderr read line by line into a channel.
fn spawn_stalled(
    cfg: &std::path::Path,
    extra_env: &[(&str, String)],
) -> (
    Running,
    std::process::ChildStdout,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut envs: Vec<(&str, &str)> = vec![("A_OLD", "old-a"), ("A_NEW", "new-a")];
    envs.extend(extra_env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = common::spawn_imapshift(&json_sync(cfg), &envs);
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Running(child), stdout, rx)
}

/// Waits for a stderr line containing `needle`; `guard` only bounds a failure (the run hangs).
fn wait_stderr(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    guard: std::time::Duration,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + guard;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => {
                panic!(
                    "no stderr line with {needle:?} within {guard:?} (the run hangs on its \
                     unread stdout?); stderr so far:\n{}",
                    tail(&seen)
                );
            }
        }
    }
}

fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Waits for the exit; `guard` only bounds a failure.
fn wait_exit(run: &mut Running, guard: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + guard;
    loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            panic!("imapshift did not exit within {guard:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Everything the pipe holds, once the writer is done (the process exited or is delivering).
fn read_all(mut stdout: std::process::ChildStdout) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    })
}

#[test]
fn a_stalled_json_reader_never_stalls_the_copy() {
    let (_old, new, _tmp, cfg) = stall_setup();
    let (mut child, stdout, rx) = spawn_stalled(&cfg, &[]);
    // The copy finishes while nobody reads stdout.
    wait_stderr(
        &rx,
        "finished: alice: ok",
        std::time::Duration::from_secs(240),
    );
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.status("INBOX").0 as usize, STALL_MESSAGES);
    n.logout();
    // The run is done but waits for the reader to take its final report.
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "exited before its report was read: the events did not fill the pipe"
    );
    let out = read_all(stdout);
    let status = wait_exit(&mut child, std::time::Duration::from_secs(60));
    let stderr: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(0), "{}", tail(&stderr));
    let out = out.join().unwrap();
    // Every line an event, the last the summary (sync_report checks both).
    let report = common::sync_report(&out).unwrap();
    assert_eq!(report["copied"].as_u64(), Some(STALL_MESSAGES as u64));
    let dropped = report["events_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "progress events were dropped: {report}");
    let text = String::from_utf8_lossy(&out);
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect();
    assert_eq!(kinds[0], "\"run_started\"");
    assert!(
        kinds.iter().any(|k| k == "\"user_finished\""),
        "user_finished is kept"
    );
    assert!(out.len() > 64 * 1024, "{} bytes", out.len());
}

#[test]
fn ctrl_c_ends_a_run_whose_json_reader_stalled() {
    let (_old, _new, _tmp, cfg) = stall_setup();
    // Held after the APPEND of message 1500: by then its events overfilled the pipe.
    let pause = common::Pause::new("after-append", 1500);
    let (mut child, stdout, rx) = spawn_stalled(&cfg, &pause.env());
    pause.wait_reached(std::time::Duration::from_secs(240));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_stderr(&rx, "stopping cleanly", std::time::Duration::from_secs(30));
    pause.release();
    // Nobody reads stdout: the final report waits FINAL_WAIT_AFTER_STOP (5 s), then exit 130.
    let status = wait_exit(&mut child, std::time::Duration::from_secs(60));
    let stderr: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{}", tail(&stderr));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("did not take the final report")),
        "{}",
        tail(&stderr)
    );
    // What the pipe holds are whole events, without the report nobody took.
    let out = read_all(stdout).join().unwrap();
    let text = String::from_utf8_lossy(&out);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_ne!(v["event"], "summary");
    }
    assert!(out.len() > 60 * 1024, "{} bytes", out.len());
}
