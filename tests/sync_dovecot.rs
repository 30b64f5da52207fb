//! End-to-end sync between two real Dovecot servers, checked by an independent IMAP client.
//!
//! The old server uses `.` as hierarchy delimiter, the new one `/` with special-use folders, so
//! every test also exercises delimiter translation. Mail is generated here: the edge cases of
//! issue 2 (nested and non-ASCII folders, an empty folder, keywords, a shared Message-ID,
//! byte-identical twins) each have a message or folder of their own.

mod common;

use common::{
    alice_config, dovecot_opts, run_imapshift, sync_json_ok, write_config, Dovecot, DovecotOpts,
    TestImap, TestMsg,
};
use std::path::Path;

const NEW_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = /\n  mailbox Sent {\n    auto = subscribe\n    special_use = \\Sent\n  }\n  mailbox Trash {\n    auto = subscribe\n    special_use = \\Trash\n  }\n}\n";

/// The old server: `.` delimiter, and `Sent Items` marked `\Sent` (as Outlook-era setups have).
const OLD_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = .\n  mailbox \"Sent Items\" {\n    special_use = \\Sent\n  }\n}\n";

fn old_server(users: &[(&str, &str)]) -> Dovecot {
    Dovecot::start("old", users, dovecot_opts(OLD_NS))
}

fn new_server(users: &[(&str, &str)]) -> Dovecot {
    Dovecot::start("new", users, dovecot_opts(NEW_NS))
}

/// A server with implicit TLS and STARTTLS (self-signed), `extra_conf` in its configuration.
fn tls_server(name: &str, user: (&str, &str), extra_conf: &str) -> Dovecot {
    let opts = DovecotOpts {
        tls: true,
        ..dovecot_opts(extra_conf)
    };
    Dovecot::start(name, &[user], opts)
}

/// alice's and bob's entries for [`write_config`], passwords from [`ENVS`].
const ALICE: (&str, &str, &str, &str) = ("alice", "alice", "A_OLD", "A_NEW");
const BOB: (&str, &str, &str, &str) = ("bob", "bob", "B_OLD", "B_NEW");

fn msg(i: usize, subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender {i} <s{i}@example.com>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 10:{:02}:00 +0000\r\n{extra_headers}\r\n{body}\r\n",
        i % 60
    )
    .into_bytes()
}

/// The old folders of [`seed_alice`]: INBOX, then the ones it creates.
const ALICE_FOLDERS: &[&str] = &[
    "INBOX",
    "Archive",
    "Archive.2024",
    "Entw&APw-rfe",
    "Empty",
    "Sent Items",
    "Lists.rust.announce",
];

/// Fills alice's old mailbox with the edge cases; returns the old folder names used.
fn seed_alice(old: &Dovecot) -> Vec<&'static str> {
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for f in &ALICE_FOLDERS[1..] {
        c.create(f);
    }
    for f in ["Archive.2024", "Entw&APw-rfe", "Sent Items"] {
        c.subscribe(f);
    }
    for i in 0..25 {
        let flags: &[&str] = match i % 4 {
            0 => &[],
            1 => &["\\Seen"],
            2 => &["\\Seen", "\\Flagged", "$Forwarded"],
            _ => &["\\Answered", "project-x", "$Label1"],
        };
        let date = format!(
            "{:02}-Mar-2023 08:{:02}:{:02} +0100",
            1 + i % 28,
            i % 60,
            (i * 7) % 60
        );
        let m = msg(
            i,
            &format!("inbox message {i}"),
            &format!("Message-ID: <m{i}@example.com>\r\n"),
            &"line of text\r\n".repeat(i * 3 + 1),
        );
        c.append("INBOX", flags, Some(&date), &m).unwrap();
    }
    // Two different messages sharing one Message-ID: both must arrive.
    c.append(
        "INBOX",
        &[],
        Some("02-Feb-2022 10:00:00 +0000"),
        &msg(
            100,
            "shared id A",
            "Message-ID: <shared@example.com>\r\n",
            "first",
        ),
    )
    .unwrap();
    c.append(
        "INBOX",
        &[],
        Some("02-Feb-2022 10:00:00 +0000"),
        &msg(
            101,
            "shared id B",
            "Message-ID: <shared@example.com>\r\n",
            "second",
        ),
    )
    .unwrap();
    // Two byte-identical messages in one folder: both must arrive.
    let twin = msg(
        200,
        "twin",
        "Message-ID: <twin@example.com>\r\n",
        "same bytes",
    );
    for _ in 0..2 {
        c.append(
            "Archive.2024",
            &["\\Seen"],
            Some("03-Mar-2021 11:11:11 -0500"),
            &twin,
        )
        .unwrap();
    }
    // Bare-LF message and one without Message-ID.
    c.append(
        "Archive.2024",
        &[],
        None,
        b"Subject: lf only\n\nbody with LF\n",
    )
    .unwrap();
    c.append(
        "Entw&APw-rfe",
        &["\\Draft"],
        None,
        &msg(300, "Entwurf \u{fc}", "", "no message-id here"),
    )
    .unwrap();
    c.append(
        "Sent Items",
        &["\\Seen"],
        None,
        &msg(
            400,
            "sent",
            "Message-ID: <sent@example.com>\r\n",
            "sent body",
        ),
    )
    .unwrap();
    c.append(
        "Lists.rust.announce",
        &[],
        None,
        &msg(500, "deep", "Message-ID: <deep@example.com>\r\n", "deep"),
    )
    .unwrap();
    c.logout();
    ALICE_FOLDERS.to_vec()
}

/// The same folder on the new server (delimiter `/`, `Sent Items` onto the special-use `Sent`).
fn new_name(old: &str) -> String {
    if old == "Sent Items" {
        return "Sent".into();
    }
    old.replace('.', "/")
}

/// Body, flags and INTERNALDATE as an instant (the servers spell it in different zones).
fn key(m: &TestMsg) -> (Vec<u8>, Vec<String>, i64) {
    (m.body.clone(), m.flags.clone(), m.instant())
}

/// Asserts that every old folder's messages are on the new server, byte for byte, in order,
/// with flags and INTERNALDATE.
fn assert_same(
    old: &Dovecot,
    new: &Dovecot,
    user: &str,
    old_pw: &str,
    new_pw: &str,
    folders: &[&str],
) {
    let mut o = TestImap::connect(old.port(), user, old_pw);
    let mut n = TestImap::connect(new.port(), user, new_pw);
    for f in folders {
        let a = o.fetch_all(f);
        let b = n.fetch_all(&new_name(f));
        assert_eq!(
            a.len(),
            b.len(),
            "{user} folder {f}: {} on old, {} on new",
            a.len(),
            b.len()
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                key(x),
                key(y),
                "{user} folder {f}: old UID {} differs from new UID {}",
                x.uid,
                y.uid
            );
        }
    }
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    common::sync_report(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sync_json(cfg: &Path, envs: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], envs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), summary(&out), stderr)
}

const ENVS: &[(&str, &str)] = &[
    ("A_OLD", "old-a"),
    ("A_NEW", "new-a"),
    ("B_OLD", "old-b"),
    ("B_NEW", "new-b"),
];

#[test]
fn full_migration_then_incremental_reruns() {
    let old = old_server(&[("alice", "old-a"), ("bob", "old-b")]);
    let new = new_server(&[("alice", "new-a"), ("bob", "new-b")]);
    let folders = seed_alice(&old);
    {
        let mut c = TestImap::connect(old.port(), "bob", "old-b");
        c.append(
            "INBOX",
            &["\\Seen"],
            None,
            &msg(1, "for bob", "Message-ID: <bob1@example.com>\r\n", "hi bob"),
        )
        .unwrap();
        c.logout();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &old, &new, &[ALICE, BOB]);

    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 0, "first sync failed: {j}\n{stderr}");
    assert_eq!(j["copied"], 27 + 3 + 1 + 1 + 1 + 1, "{j}");
    assert_eq!(j["failed"], 0);
    assert_same(&old, &new, "alice", "old-a", "new-a", &folders);
    assert_same(&old, &new, "bob", "old-b", "new-b", &["INBOX"]);

    // Folder tree: translated delimiter, non-ASCII name kept, empty folder created, subscriptions.
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let names: Vec<String> = n.list().into_iter().map(|(_, _, name)| name).collect();
    for want in [
        "Archive/2024",
        "Entw&APw-rfe",
        "Empty",
        "Lists/rust/announce",
        "Sent",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing on new: {names:?}"
        );
    }
    // Implied parents on the old server stay implied (not selectable) on the new one.
    let lists = n.list();
    let parent = lists
        .iter()
        .find(|(_, _, name)| name == "Lists")
        .expect("Lists listed");
    assert!(
        parent.0.iter().any(
            |a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        ),
        "Lists should remain a non-selectable parent: {parent:?}"
    );
    assert!(
        !names.contains(&"Sent Items".to_string()),
        "special-use Sent should absorb Sent Items: {names:?}"
    );
    let subs = n.lsub();
    for want in ["Archive/2024", "Entw&APw-rfe", "Sent"] {
        assert!(
            subs.contains(&want.to_string()),
            "{want} not subscribed on new: {subs:?}"
        );
    }
    let (_, uidnext_before, _) = n.status("INBOX");
    n.logout();

    // Second run: nothing changed, nothing copied, no APPEND reached the server.
    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 0, "{j}\n{stderr}");
    assert_eq!(j["copied"], 0, "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(
        n.status("INBOX").1,
        uidnext_before,
        "second run appended to INBOX"
    );
    n.logout();
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], ENVS);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 copied"), "human summary: {text}");

    // New mail on the old side: exactly that is copied.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.append(
        "INBOX",
        &["\\Seen"],
        None,
        &msg(900, "late", "Message-ID: <late@example.com>\r\n", "late"),
    )
    .unwrap();
    o.append(
        "Archive.2024",
        &[],
        None,
        &msg(901, "late2", "Message-ID: <late2@example.com>\r\n", "late2"),
    )
    .unwrap();
    o.logout();
    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 0, "{j}\n{stderr}");
    assert_eq!(j["copied"], 2, "{j}");
    assert_same(&old, &new, "alice", "old-a", "new-a", &folders);

    // Secrets never printed.
    for pw in ["old-a", "new-a", "old-b", "new-b"] {
        assert!(
            !stderr.contains(pw) && !j.to_string().contains(pw),
            "password {pw} leaked"
        );
    }
    // Not even the most verbose log shows a password (async-imap traces LOGIN in clear).
    for filter in ["trace", "async_imap=trace", "debug"] {
        let mut envs = ENVS.to_vec();
        envs.push(("IMAPSHIFT_LOG", filter));
        let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "-vv"], &envs);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains(" C: ") || filter == "debug" || filter.starts_with("async"),
            "the trace is on"
        );
        for pw in ["old-a", "new-a", "old-b", "new-b"] {
            assert!(
                !all.contains(pw),
                "password {pw} in the log with IMAPSHIFT_LOG={filter}"
            );
        }
    }
    // The state store holds no password either.
    let state = dir.path().join("state");
    for entry in walk(&state) {
        let bytes = std::fs::read(&entry).unwrap();
        for pw in ["old-a", "new-a"] {
            assert!(
                !contains(&bytes, pw.as_bytes()),
                "password in state file {}",
                entry.display()
            );
        }
    }
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn wrong_password_fails_that_user_only() {
    let old = old_server(&[("alice", "old-a"), ("bob", "old-b")]);
    let new = new_server(&[("alice", "new-a"), ("bob", "new-b")]);
    let folders = seed_alice(&old);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &old, &new, &[BOB, ALICE]);
    let envs = [
        ("A_OLD", "old-a"),
        ("A_NEW", "new-a"),
        ("B_OLD", "WRONG-pass"),
        ("B_NEW", "new-b"),
    ];
    let (code, j, stderr) = sync_json(&cfg, &envs);
    assert_eq!(
        code, 3,
        "a user that cannot log in gives exit 3: {j}\n{stderr}"
    );
    let bob = &j["users"][0];
    assert_eq!(bob["status"], "failed");
    let err = bob["error"].as_str().unwrap();
    assert!(
        err.contains("login failed") && err.contains("bob") && err.contains("old server"),
        "{err}"
    );
    assert!(
        !err.contains("WRONG-pass") && !stderr.contains("WRONG-pass"),
        "password leaked"
    );
    assert_eq!(j["users"][1]["status"], "ok", "{j}");
    assert_same(&old, &new, "alice", "old-a", "new-a", &folders);
}

#[test]
fn unreachable_host_is_a_clear_account_error() {
    let new = new_server(&[("alice", "new-a")]);
    let dir = tempfile::tempdir().unwrap();
    let dead_port = common::free_port();
    let text = format!(
        "[old]\nhost = \"127.0.0.1\"\nport = {dead_port}\nsecurity = \"plain\"\ntimeout_secs = 5\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:A_OLD\"\nnew_password = \"env:A_NEW\"\n",
        new.port()
    );
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, j, _) = sync_json(&cfg, ENVS);
    assert_eq!(code, 3, "{j}");
    let err = j["users"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("connection refused") && err.contains(&dead_port.to_string()),
        "{err}"
    );

    // A host name that does not resolve: named, with the field to fix, and not retried.
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "host = \"127.0.0.1\"",
        "host = \"imap.nonexistent.invalid\"",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, j, _) = sync_json(&cfg, ENVS);
    assert_eq!(code, 3, "{j}");
    let err = j["users"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("cannot resolve the host name \"imap.nonexistent.invalid\"")
            && err.contains("[old].host"),
        "{err}"
    );
    assert_eq!(
        j["users"][0]["retries"], 0,
        "a name that does not resolve is not retried: {j}"
    );
}

#[test]
fn malformed_config_names_line_and_field_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        "state_dir = \"state\"\n[old]\nhost = \"a.example\"\nsecurity = \"tsl\"\n[new]\nhost = \"b.example\"\n\
         [[users]]\nold = \"a\"\nnew = \"a\"\nold_password = \"env:X\"\nnew_password = \"env:Y\"\n",
    )
    .unwrap();
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imapshift.toml:4") && err.contains("[old].security") && err.contains("tsl"),
        "{err}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "a bad config must not create state"
    );

    std::fs::write(&cfg, "[old\nhost=").unwrap();
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("imapshift.toml:1"));

    let out = run_imapshift(
        &[
            "sync",
            "--config",
            dir.path().join("nope.toml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn refused_message_fails_alone_and_is_reported() {
    let old = old_server(&[("alice", "old-a")]);
    // The new server refuses messages over 20 kB (quota plugin).
    let quota = "mail_plugins = $mail_plugins quota\nplugin {\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_max_mail_size = 20k\n}\n";
    let new = Dovecot::start(
        "new-quota",
        &[("alice", "new-a")],
        dovecot_opts(&format!("{NEW_NS}{quota}")),
    );
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    for i in 0..10 {
        let body = if i == 4 {
            "x".repeat(100) + "\r\n"
        } else {
            "small\r\n".into()
        };
        let body = if i == 4 { body.repeat(400) } else { body };
        c.append(
            "INBOX",
            &[],
            None,
            &msg(
                i,
                &format!("m{i}"),
                &format!("Message-ID: <q{i}@example.com>\r\n"),
                &body,
            ),
        )
        .unwrap();
    }
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = alice_config(dir.path(), &old, &new);
    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 1, "one refused message gives exit 1: {j}\n{stderr}");
    assert_eq!(j["copied"], 9, "{j}");
    assert_eq!(j["failed"], 1, "{j}");
    let f = &j["users"][0]["failures"][0];
    assert_eq!(f["folder"], "INBOX");
    assert_eq!(f["old_uid"], 5);
    assert!(f["reason"].as_str().unwrap().starts_with("NO"), "{f}");
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], ENVS);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED user alice folder \"INBOX\" old UID 5"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the refused message is retried and fails again"
    );
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 9);
}

#[test]
fn tls_and_starttls_with_self_signed_certs() {
    let old = tls_server("old-tls", ("alice", "old-a"), "");
    let new = tls_server("new-tls", ("alice", "new-a"), NEW_NS);
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    c.append(
        "INBOX",
        &["\\Seen"],
        None,
        &msg(
            1,
            "over tls",
            "Message-ID: <tls@example.com>\r\n",
            "secret stuff",
        ),
    )
    .unwrap();
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let write = |accept: bool| {
        let text = format!(
            "[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\naccept_invalid_certs = {accept}\ntimeout_secs = 10\n\
             [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nauth = \"plain\"\naccept_invalid_certs = {accept}\n\
             [[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:A_OLD\"\nnew_password = \"env:A_NEW\"\n",
            old.tls_port().unwrap(),
            new.port()
        );
        let cfg = dir.path().join("imapshift.toml");
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    // A self-signed certificate is refused by default, with advice.
    let cfg = write(false);
    let (code, j, _) = sync_json(&cfg, ENVS);
    assert_eq!(code, 3, "{j}");
    let err = j["users"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("TLS") && err.contains("accept_invalid_certs"),
        "{err}"
    );
    // Accepted when the admin says so.
    let cfg = write(true);
    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 0, "{j}\n{stderr}");
    assert_eq!(j["copied"], 1);
    assert_same(&old, &new, "alice", "old-a", "new-a", &["INBOX"]);
}

#[test]
fn users_from_csv_with_file_and_cmd_passwords() {
    let old = old_server(&[("alice", "old-a"), ("bob", "old-b")]);
    let new = new_server(&[("alice2", "new-a"), ("bob", "new-b")]);
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    c.append(
        "INBOX",
        &[],
        None,
        &msg(1, "csv", "Message-ID: <csv@example.com>\r\n", "csv"),
    )
    .unwrap();
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/a.pw"), "old-a\n").unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "old,new,old_password,new_password\nalice,alice2,file:secrets/a.pw,cmd:printf new-a\nbob,bob,env:B_OLD,env:B_NEW\n",
    )
    .unwrap();
    let text = format!(
        "users_csv = \"users.csv\"\n[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
        old.port(),
        new.port()
    );
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, j, stderr) = sync_json(&cfg, ENVS);
    assert_eq!(code, 0, "{j}\n{stderr}");
    assert_eq!(j["copied"], 1);
    assert_eq!(j["users"][0]["new_login"], "alice2");
    let mut n = TestImap::connect(new.port(), "alice2", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 1);
}

#[test]
fn dry_run_changes_nothing() {
    let old = old_server(&[("alice", "old-a")]);
    let new = new_server(&[("alice", "new-a")]);
    seed_alice(&old);
    let dir = tempfile::tempdir().unwrap();
    let cfg = alice_config(dir.path(), &old, &new);
    let j = sync_json_ok(&cfg, &["--dry-run"], ENVS);
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["copied"], 33, "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let names: Vec<String> = n.list().into_iter().map(|(_, _, name)| name).collect();
    assert!(
        !names.iter().any(|x| x.starts_with("Archive")),
        "dry run created folders: {names:?}"
    );
    assert_eq!(n.fetch_all("INBOX").len(), 0);
}
