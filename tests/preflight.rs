//! `imapshift preflight` against real servers: two Dovecots (the new one with a storage quota),
//! a Knot DNS nameserver for the MX and the targets' addresses, nothing listening on the parking
//! target's SMTP port and a small SMTP greeter on the new target's. Everything right: exit 0 and
//! PASS lines. Each thing wrong is named as a FAIL and the exit code is 6.

mod common;

use common::{imapshift_bin, zone_text, Dovecot, DovecotOpts, Knot, TestImap};
use std::io::Write;
use std::net::TcpListener;
use std::process::Command;

const QUOTA: &str = "mail_plugins = $mail_plugins quota\n\
protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n\
plugin {\n  quota = maildir:User quota\n  quota_rule = *:storage=QUOTA_KIB\n}\n";

struct Setup {
    _old: Dovecot,
    _new: Dovecot,
    _ns: Knot,
    dir: tempfile::TempDir,
    base: String,
}

/// alice has about 60 KB of mail; the new quota is `quota_kib`; the MX TTL is `mx_ttl`.
fn setup(quota_kib: u32, mx_ttl: u32, smtp_on_parking: bool) -> Setup {
    let old = Dovecot::start(
        "old",
        &[("alice", "pw"), ("bob", "pw")],
        DovecotOpts::default(),
    );
    let new = Dovecot::start(
        "new",
        &[("alice", "pw"), ("bob", "pw")],
        DovecotOpts {
            tls: false,
            extra_conf: QUOTA.replace("QUOTA_KIB", &format!("{quota_kib}K")),
            ..Default::default()
        },
    );
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    c.create("Archive");
    for i in 0..20 {
        let m = format!(
            "Subject: {i}\r\nMessage-ID: <{i}@x>\r\n\r\n{}\r\n",
            "q".repeat(3000)
        );
        c.append(
            if i % 2 == 0 { "INBOX" } else { "Archive" },
            &[],
            None,
            m.as_bytes(),
        )
        .unwrap();
    }
    c.logout();
    // The new target greets on 127.0.0.4:P; P is then the SMTP port of both targets, and on
    // the parking target's address (127.0.0.3) nothing listens on it (unless asked to).
    let smtp_port = common::smtp_greeter("127.0.0.4:0");
    if smtp_on_parking {
        let l = TcpListener::bind(("127.0.0.3", smtp_port)).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let _ = c.write_all(b"220 parking accepts mail (wrong)\r\n");
            }
        });
    }
    let com = zone_text("example.com", &[], &[(10, "old-mx.example.net.")], mx_ttl);
    let net = zone_text("example.net", &[], &[], 300)
        + "park 300 IN A 127.0.0.3\nnew-mx 300 IN A 127.0.0.4\nold-mx 300 IN A 127.0.0.5\n";
    let ns = Knot::start(
        "ns",
        "127.0.0.1",
        0,
        &[("example.com", com.as_str()), ("example.net", net.as_str())],
    );
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "state_dir = \"state\"\n\
         [old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [mx]\ndomains = [\"example.com\"]\nnameservers = [\"{}\"]\nresolver = \"{}\"\n\
         parking_target = \"park.example.net\"\nnew_target = \"new-mx.example.net\"\n\
         max_ttl = 300\nsmtp_port = {smtp_port}\n",
        old.port(),
        new.port(),
        ns.addr(),
        ns.addr()
    );
    Setup {
        _old: old,
        _new: new,
        _ns: ns,
        dir,
        base,
    }
}

fn preflight(s: &Setup, users: &str) -> (Option<i32>, String, serde_json::Value) {
    let cfg = s.dir.path().join("imapshift.toml");
    std::fs::write(&cfg, format!("{}{users}", s.base)).unwrap();
    let human = Command::new(imapshift_bin())
        .args(["preflight", "--config", cfg.to_str().unwrap()])
        .env("PW", "pw")
        .output()
        .unwrap();
    let json = Command::new(imapshift_bin())
        .args(["preflight", "--json", "--config", cfg.to_str().unwrap()])
        .env("PW", "pw")
        .output()
        .unwrap();
    assert_eq!(human.status.code(), json.status.code());
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    let j: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stderr)));
    (human.status.code(), text, j)
}

fn level_of<'a>(j: &'a serde_json::Value, check: &str) -> &'a str {
    j.as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"].as_str().unwrap().starts_with(check))
        .unwrap_or_else(|| panic!("no check {check:?} in {j:#}"))["level"]
        .as_str()
        .unwrap()
}

const ALICE: &str =
    "[[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\n";

#[test]
fn all_checks_pass() {
    let s = setup(10_000, 300, false);
    let (code, text, j) = preflight(&s, ALICE);
    assert_eq!(code, Some(0), "{text}");
    for c in [
        "login old alice",
        "login new alice",
        "folders alice",
        "quota alice",
        "mx ttl example.com",
        "parking target park.example.net",
        "new target new-mx.example.net",
    ] {
        assert_eq!(level_of(&j, c), "pass", "{c}:\n{text}");
    }
    assert!(text.contains("2 folders to take, 1 to create"), "{text}");
    assert!(
        text.contains("connection refused: senders will retry later"),
        "{text}"
    );
    assert!(
        text.contains("accepts SMTP: 220 new-mx.example.net"),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
}

#[test]
fn each_problem_is_named() {
    // A 30 KiB quota for 60 KB of mail, a TTL above max_ttl, a listener on the parking
    // target, and a user whose old password is wrong.
    let s = setup(30, 3600, true);
    let users = format!(
        "{ALICE}[[users]]\nold = \"bob\"\nnew = \"bob\"\nold_password = \"env:WRONG\"\nnew_password = \"env:PW\"\n"
    );
    let cfg = s.dir.path().join("imapshift.toml");
    std::fs::write(&cfg, format!("{}{users}", s.base)).unwrap();
    let out = Command::new(imapshift_bin())
        .args(["preflight", "--json", "--config", cfg.to_str().unwrap()])
        .env("PW", "pw")
        .env("WRONG", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(level_of(&j, "login old bob"), "fail", "{j:#}");
    assert_eq!(level_of(&j, "login new bob"), "pass", "{j:#}");
    assert_eq!(level_of(&j, "quota alice"), "fail", "{j:#}");
    assert_eq!(level_of(&j, "mx ttl example.com"), "fail", "{j:#}");
    assert_eq!(
        level_of(&j, "parking target park.example.net"),
        "fail",
        "{j:#}"
    );
    assert_eq!(
        level_of(&j, "new target new-mx.example.net"),
        "pass",
        "{j:#}"
    );
    let text = j.to_string();
    assert!(text.contains("raise the quota of alice"), "{text}");
    assert!(text.contains("above max_ttl 300s"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "no secret in the report"
    );
}
