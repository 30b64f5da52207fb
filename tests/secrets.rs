//! Issue 13: no password anywhere imapshift writes or shows. A migration between real Dovecots
//! (different time zones) with every kind of credential: AUTHENTICATE PLAIN with the users' own
//! passwords on the old side (one from a `cmd:` reference, one from a `file:`), a Dovecot master
//! user with LOGIN on the new side (`env:`). Every command runs at the most verbose level
//! (`IMAPSHIFT_LOG=trace`, `-vv`: the IMAP conversation is logged): sync (twice), verify
//! `--deep --html`, preflight, folders, status and a whole cutover; plus a wrong password. The
//! passwords, and the base64 forms a PLAIN exchange would carry, appear in no stdout, no stderr,
//! no file under the state directory, the HTML report, nor the command line of a run held at a
//! failpoint, whose core dumps are off (`/proc/PID/limits`).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ALICE_PW: &str = "Alice-Old-9f3kQ";
const BOB_PW: &str = "Bob-Old-7x2qW";
const ADMIN_PW: &str = "Admin-New-5m1zE";

/// Every form in which a password could leak: as is, and base64 of the PLAIN exchange.
fn forbidden() -> Vec<String> {
    let b64 = |s: &[u8]| -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in s.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..=c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    };
    let mut v: Vec<String> = [ALICE_PW, BOB_PW, ADMIN_PW]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (u, pw) in [("alice", ALICE_PW), ("bob", BOB_PW)] {
        v.push(b64(format!("\0{u}\0{pw}").as_bytes()));
        v.push(b64(pw.as_bytes()));
    }
    v.push(b64(ADMIN_PW.as_bytes()));
    v
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for f in forbidden() {
        assert!(
            !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
            "{what} holds {f:?}"
        );
    }
}

fn files_under(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![d.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.push(p);
        }
    }
    out
}

fn master_conf(dir: &std::path::Path) -> String {
    common::dovecot_master_conf(dir, ADMIN_PW)
}

#[test]
fn no_password_in_any_output_file_or_command_line() {
    let mdir = tempfile::tempdir().unwrap();
    let users = [("alice", ALICE_PW), ("bob", BOB_PW)];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start(
        "new",
        &[("alice", "unknown-1"), ("bob", "unknown-2")],
        DovecotOpts {
            extra_conf: master_conf(mdir.path()),
            ..Default::default()
        },
    );
    for (u, pw) in users {
        let mut c = TestImap::connect(old.port(), u, pw);
        c.create("Work");
        for i in 0..4 {
            let m = format!("From: x@example.com\r\nSubject: {u} {i}\r\nMessage-ID: <{u}{i}@example.com>\r\n\r\nbody {i}\r\n");
            let folder = if i % 2 == 0 { "INBOX" } else { "Work" };
            c.append(folder, &["\\Seen"], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }
    let smtp_port = smtp_greeter("127.0.0.4:0");
    let ns = parking_dns("park.example.net.", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bob.pw"), format!("{BOB_PW}\n")).unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        format!(
            "[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nauth = \"plain\"\n\
             [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nauth = \"login\"\n\
             master_user = \"admin\"\nmaster_password = \"env:ADMIN_PW\"\n\
             [mx]\ndomains = [\"example.com\"]\nnameservers = [\"{2}\"]\nresolver = \"{2}\"\n\
             parking_target = \"park.example.net\"\nnew_target = \"new-mx.example.net\"\n\
             max_ttl = 1\nsmtp_port = {smtp_port}\n\
             [[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"cmd:printf %s {ALICE_PW}\"\n\
             [[users]]\nold = \"bob\"\nnew = \"bob\"\nold_password = \"file:bob.pw\"\n",
            old.port(),
            new.port(),
            ns.addr()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let envs = [("ADMIN_PW", ADMIN_PW), ("IMAPSHIFT_LOG", "trace")];
    let html = dir.path().join("report.html");
    let runs: [(&str, Vec<&str>); 8] = [
        ("sync", vec!["-vv", "sync", "--config", cfg_s, "--json"]),
        ("sync again", vec!["-vv", "sync", "--config", cfg_s]),
        (
            "verify",
            vec![
                "-vv",
                "verify",
                "--deep",
                "--config",
                cfg_s,
                "--html",
                html.to_str().unwrap(),
            ],
        ),
        (
            "preflight",
            vec!["-vv", "preflight", "--config", cfg_s, "--json"],
        ),
        (
            "folders",
            vec!["-vv", "folders", "--config", cfg_s, "--json"],
        ),
        ("status", vec!["-vv", "status", "--config", cfg_s, "--json"]),
        (
            "cutover",
            vec![
                "-vv",
                "cutover",
                "--config",
                cfg_s,
                "--dns-interval",
                "0.2s",
                "--json",
            ],
        ),
        (
            "watch-mx",
            vec!["-vv", "watch-mx", "--config", cfg_s, "--count", "1"],
        ),
    ];
    for (what, args) in runs {
        let out = run_imapshift(&args, &envs);
        let err = String::from_utf8_lossy(&out.stderr);
        if what == "sync" {
            assert!(err.contains(" C: "), "the IMAP trace is on: {err}");
            assert_eq!(out.status.code(), Some(0), "{err}");
        }
        if what == "cutover" {
            assert_eq!(out.status.code(), Some(0), "{err}");
        }
        assert_clean(&format!("{what}: stdout"), &out.stdout);
        assert_clean(&format!("{what}: stderr"), &out.stderr);
    }
    // A wrong password: the user fails, and neither password is shown.
    let out = run_imapshift(
        &["-vv", "sync", "--config", cfg_s],
        &[("ADMIN_PW", "Wrong-Admin-3v8p"), ("IMAPSHIFT_LOG", "trace")],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_clean("wrong password: stderr", &out.stderr);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Wrong-Admin-3v8p"));

    for f in files_under(&dir.path().join("state")) {
        assert_clean(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
    assert_clean("the HTML report", &std::fs::read(&html).unwrap());

    // A run held at a failpoint: its command line holds no password; no core dumps.
    let mut o = TestImap::connect(old.port(), "alice", ALICE_PW);
    o.append(
        "INBOX",
        &[],
        None,
        b"Subject: late\r\nMessage-ID: <late@x>\r\n\r\nb\r\n",
    )
    .unwrap();
    o.logout();
    let pause = Pause::new("after-append", 1);
    let mut penv: Vec<(&str, String)> = pause.env();
    penv.push(("ADMIN_PW", ADMIN_PW.into()));
    let penv: Vec<(&str, &str)> = penv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut held = spawn_imapshift(&["sync", "--config", cfg_s], &penv);
    pause.wait_reached(Duration::from_secs(60));
    let pid = held.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_clean("the command line", &cmdline);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().nth(4) == Some("0"),
        "core dumps are off: {core}"
    );
    pause.release();
    let status = held.wait().unwrap();
    assert!(status.success());
}
