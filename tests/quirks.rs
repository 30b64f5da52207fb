//! Server quirks switched per session (src/imap/quirks.rs, docs/server-quirks.md), against real
//! Dovecot, Cyrus and Courier servers in different time zones:
//!
//! * `preflight` names each side's software as its greeting tells and the workarounds switched
//!   on, with where each value came from; `[new.quirks]` forces a switch and hides a capability.
//! * A Courier whose greeting does not give it away (rewritten by a proxy) starts without the
//!   `append-to-examined` workaround; when its refusal shows up (APPENDs into the folder examined
//!   for a map rebuild after a lost state store), the session learns the quirk and sends the
//!   refused messages again: nothing fails, nothing is copied twice, verify agrees.
//! * Forced off by the configuration, the workaround is not learned: the same APPENDs fail, each
//!   named with Courier's words, and the run exits 1 (nothing is dropped silently).

mod common;

use common::proxy::Proxy;
use common::*;
use std::path::{Path, PathBuf};

const PW: &str = "pw";

fn msg(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@example.com>\r\n\
         Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\nbody of {tag} {i}\r\n"
    )
    .into_bytes()
}

fn write_cfg(dir: &Path, old_port: u16, new_port: u16, new_extra: &str) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    let text = plain_config(old_port, new_port, "", "", "[sync]\njobs = 1\n", &["alice"]);
    // `[new.quirks]` is a sub-table of [new]: it goes after the last [[users]].
    std::fs::write(&cfg, format!("{text}{new_extra}")).unwrap();
    cfg
}

fn run(args: &[&str], cfg: &Path) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--config", cfg.to_str().unwrap(), "--json"]);
    let out = run_imapshift(&all, &[("PW", PW)]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The detail of preflight check `name`.
fn detail(checks: &serde_json::Value, name: &str) -> String {
    checks
        .as_array()
        .unwrap_or_else(|| panic!("preflight --json: {checks:#}"))
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

fn preflight(cfg: &Path) -> serde_json::Value {
    let (_, out, err) = run(&["preflight"], cfg);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("preflight --json: {e}\n{out}\n{err}"))
}

#[test]
fn preflight_names_the_software_and_its_switches() {
    let old = Dovecot::start("old", &[("alice", PW)], DovecotOpts::default());
    let courier = Courier::start("new", &[("alice", PW)], CourierOpts::default());
    let cyrus = Cyrus::start("new", &[("alice", PW)], CyrusOpts::default());
    let dir = tempfile::tempdir().unwrap();

    let cfg = write_cfg(dir.path(), old.port(), courier.port(), "");
    let checks = preflight(&cfg);
    assert_eq!(
        detail(&checks, "software old"),
        "Dovecot; append-to-examined off (software), delayed-continuation off (software), \
         nul-as-0x80 on (software)"
    );
    assert_eq!(
        detail(&checks, "software new"),
        "Courier-IMAP; append-to-examined on (software), delayed-continuation on (software), \
         nul-as-0x80 off (software)"
    );

    let cfg = write_cfg(dir.path(), old.port(), cyrus.port(), "");
    let checks = preflight(&cfg);
    assert_eq!(
        detail(&checks, "software new"),
        "Cyrus IMAP; append-to-examined off (software), delayed-continuation off (software), \
         nul-as-0x80 off (software)"
    );
    assert!(
        detail(&checks, "capabilities new").contains("UIDPLUS"),
        "{checks:#}"
    );

    // Forced by the configuration; a capability hidden.
    let cfg = write_cfg(
        dir.path(),
        old.port(),
        cyrus.port(),
        "[new.quirks]\nappend-to-examined = true\nignore-capabilities = [\"uidplus\"]\n",
    );
    let checks = preflight(&cfg);
    assert_eq!(
        detail(&checks, "software new"),
        "Cyrus IMAP; append-to-examined on (config), delayed-continuation off (software), \
         nul-as-0x80 off (software)"
    );
    let caps = detail(&checks, "capabilities new");
    assert!(
        caps.contains("no UIDPLUS") && caps.ends_with("ignored by [new.quirks]: UIDPLUS"),
        "{caps}"
    );

    // An unknown switch is a configuration error naming the line and the known ones.
    let cfg = write_cfg(
        dir.path(),
        old.port(),
        cyrus.port(),
        "[new.quirks]\nappend_to_examined = true\n",
    );
    let (code, _, err) = run(&["preflight"], &cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[new.quirks].append_to_examined")
            && err.contains("append-to-examined, delayed-continuation, nul-as-0x80"),
        "{err}"
    );
}

/// Old Dovecot with mail in INBOX and `Work`; new Courier behind a proxy that hides its name in
/// the greeting. Returns the servers, the proxy and the config.
struct Setup {
    old: Dovecot,
    _new: Courier,
    new_port: u16,
    _proxy: Proxy,
    dir: tempfile::TempDir,
}

fn setup(new_extra: &str) -> (Setup, PathBuf) {
    let old = Dovecot::start("old", &[("alice", PW)], DovecotOpts::default());
    let new = Courier::start("new", &[("alice", PW)], CourierOpts::default());
    let proxy = Proxy::start("courier", new.port());
    proxy.rewrite_downstream(|r: &[u8]| {
        let text = String::from_utf8_lossy(r);
        if r.starts_with(b"* OK") && text.contains("Courier-IMAP ready") {
            b"* OK IMAP4rev1 server ready.\r\n".to_vec()
        } else {
            r.to_vec()
        }
    });
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.create("Work");
    for i in 0..3 {
        c.append("INBOX", &["\\Seen"], None, &msg("inbox", i))
            .unwrap();
        c.append("Work", &[], None, &msg("work", i)).unwrap();
    }
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), old.port(), proxy.port(), new_extra);
    let new_port = new.port();
    (
        Setup {
            old,
            _new: new,
            new_port,
            _proxy: proxy,
            dir,
        },
        cfg,
    )
}

/// First copy, then the state store lost and new mail in both folders: the next run rebuilds the
/// maps (EXAMINE on the new side) and appends into the folders it just examined.
fn copy_then_lose_state(s: &Setup, cfg: &Path) -> (i32, serde_json::Value, String) {
    let (code, out, err) = run(&["sync"], cfg);
    let j = sync_report(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert_eq!((code, j["copied"].as_u64()), (0, Some(6)), "{j:#}\n{err}");
    let checks = preflight(cfg);
    assert!(
        detail(&checks, "software new").starts_with("unknown software; append-to-examined off"),
        "the proxy hides Courier: {checks:#}"
    );
    std::fs::remove_dir_all(s.dir.path().join("state")).unwrap();
    let mut c = TestImap::connect(s.old.port(), "alice", PW);
    c.append("INBOX", &[], None, &msg("late-inbox", 0)).unwrap();
    c.append("Work", &["\\Flagged"], None, &msg("late-work", 0))
        .unwrap();
    c.logout();
    let (code, out, err) = run(&["sync"], cfg);
    let j = sync_report(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{err}"));
    (code, j, err)
}

fn count(port: u16, folder: &str) -> u32 {
    let mut c = TestImap::connect(port, "alice", PW);
    let (messages, _, _) = c.status(folder);
    c.logout();
    messages
}

#[test]
fn an_unrecognised_server_refusing_append_into_examined_is_learned() {
    let (s, cfg) = setup("");
    let (code, j, err) = copy_then_lose_state(&s, &cfg);
    assert_eq!((code, j["copied"].as_u64()), (0, Some(2)), "{j:#}\n{err}");
    assert!(
        err.contains("leaving it first from now on (quirk append-to-examined)"),
        "{err}"
    );
    assert_eq!(count(s.new_port, "INBOX"), 4);
    assert_eq!(count(s.new_port, "INBOX.Work"), 4);
    let (code, out, err) = run(&["verify"], &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    // Nothing left to copy; a third run agrees.
    let (code, out, err) = run(&["sync"], &cfg);
    let j = sync_report(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert_eq!((code, j["copied"].as_u64()), (0, Some(0)), "{j:#}\n{err}");
}

#[test]
fn a_workaround_switched_off_by_the_configuration_is_not_learned() {
    let (s, cfg) = setup("[new.quirks]\nappend-to-examined = false\n");
    let (code, j, err) = copy_then_lose_state(&s, &cfg);
    assert_eq!(code, 1, "{j:#}\n{err}");
    let failures = j["users"][0]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{j:#}");
    for f in failures {
        assert!(
            f["reason"].as_str().unwrap().contains("READ-ONLY"),
            "Courier's words: {j:#}"
        );
    }
    assert!(!err.contains("quirk append-to-examined"), "{err}");
    assert_eq!(count(s.new_port, "INBOX"), 3);
    assert_eq!(count(s.new_port, "INBOX.Work"), 3);
}
