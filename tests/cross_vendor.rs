//! Migrations between different server software (issue 12), against real servers of three
//! vendors: Dovecot 2.3, Cyrus IMAP 3.6 and Courier-IMAP 5.0 (Debian's packages; Cyrus and
//! Courier unpacked into prefixes by scripts/vendor/*.sh and started by tests/common/cyrus.rs and
//! tests/common/courier.rs). Courier and Cyrus name the user's folders under `INBOX.` with `.`;
//! Dovecot here has no prefix and `/`. Nested folders, a non-ASCII name, special-use folders (by
//! attribute, and by name on Courier, which has none), keywords, a name holding the other side's
//! separator and a message the target refuses: every other message arrives byte for byte with
//! its flags and INTERNALDATE, in the folder of its old name; the refused one is named; a re-run
//! copies nothing; verify agrees. The servers run in different time zones.

mod common;

use common::cyrus::{Cyrus, CyrusOpts};
use common::{plain_config, run_imapshift, Dovecot, DovecotOpts, TestImap};
use std::path::{Path, PathBuf};

const PW: &str = "pw";

/// Dovecot with alice and `extra_conf`.
fn dovecot_with(name: &str, extra_conf: &str) -> Dovecot {
    Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: extra_conf.into(),
            ..Default::default()
        },
    )
}

/// Dovecot with no prefix and `/`; `Sent` and `Drafts` marked special-use; listescape lets a
/// name hold `.` (Cyrus's separator).
fn dovecot(name: &str) -> Dovecot {
    dovecot_with(
        name,
        "namespace inbox {\n  inbox = yes\n  separator = /\n\
         mailbox Sent {\n    special_use = \\Sent\n  }\n\
         mailbox Drafts {\n    special_use = \\Drafts\n  }\n}\n\
         mail_plugins = $mail_plugins listescape\n\
         plugin {\n  listescape_char = \"\\\\\"\n}\n",
    )
}

fn cyrus(name: &str) -> Cyrus {
    Cyrus::start(name, &[("alice", PW)], CyrusOpts::default())
}

/// Cyrus taking messages of at most 20,000 bytes (it announces `APPENDLIMIT=20000`).
fn small_cyrus(name: &str) -> Cyrus {
    Cyrus::start(
        name,
        &[("alice", PW)],
        CyrusOpts {
            extra_conf: "maxmessagesize: 20000\n".into(),
            ..Default::default()
        },
    )
}

fn msg(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@example.com>\r\n\
         Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\nbody of {tag} {i}\r\n{}\r\n",
        "line\r\n".repeat(i)
    )
    .into_bytes()
}

/// APPENDs `n` messages to `folder` (created unless INBOX), each with a date and keywords.
fn fill(c: &mut TestImap, folder: &str, tag: &str, n: usize) {
    if !folder.eq_ignore_ascii_case("INBOX") {
        c.create(folder);
    }
    for i in 0..n {
        let flags: &[&str] = match i % 3 {
            0 => &["\\Seen"],
            1 => &["\\Seen", "\\Flagged", "$Forwarded"],
            _ => &["project-x", "$Label1"],
        };
        let date = format!("{:>2}-Mar-2023 0{}:15:00 +0000", 1 + i, i % 10);
        c.append(folder, flags, Some(&date), &msg(tag, i))
            .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
    }
}

/// A session of alice's on the server at `port`, after filling `folders` (`(folder, tag, n)`,
/// see [`fill`]).
fn filled(port: u16, folders: &[(&str, &str, usize)]) -> TestImap {
    let mut c = TestImap::connect(port, "alice", PW);
    for &(folder, tag, n) in folders {
        fill(&mut c, folder, tag, n);
    }
    c
}

/// Alice's mailbox on a Dovecot (no prefix, `/`): special-use, nested and non-ASCII folders and
/// a name holding Cyrus's separator; `(folder, tag, n)` as [`filled`] takes them.
const DOVECOT_MAILBOX: [(&str, &str, usize); 7] = [
    ("INBOX", "inbox", 3),
    ("Sent", "sent", 4),
    ("Drafts", "drafts", 1),
    ("Archive", "archive", 1),
    ("Archive/2019", "y2019", 3),
    ("Entw&APw-rfe", "entwurf", 2),
    ("x.y", "dotted", 2),
];

/// The same kind of mailbox where folders are named under `INBOX.` with `.` (Cyrus, Courier):
/// `inbox` messages in INBOX, the sent folder `sent`, a nested and a non-ASCII folder.
fn dotted_mailbox(inbox: usize, sent: &'static str) -> [(&'static str, &'static str, usize); 5] {
    [
        ("INBOX", "inbox", inbox),
        (sent, "sent", 3),
        ("INBOX.Archive", "archive", 1),
        ("INBOX.Archive.2019", "y2019", 2),
        ("INBOX.Entw&APw-rfe", "entwurf", 2),
    ]
}

/// A message of about 40 kB, over both 20 kB limits the targets set.
fn big_message() -> Vec<u8> {
    format!(
        "Subject: big\r\nMessage-ID: <big@example.com>\r\n\r\n{}",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(600)
    )
    .into_bytes()
}

fn config(dir: &Path, old_port: u16, new_port: u16) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    std::fs::write(
        &cfg,
        plain_config(old_port, new_port, "", "", "[sync]\njobs = 1\n", &["alice"]),
    )
    .unwrap();
    cfg
}

fn sync(cfg: &Path) -> (i32, serde_json::Value, String) {
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let j = common::sync_report(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    (out.status.code().unwrap_or(-1), j, stderr)
}

fn verify(cfg: &Path) -> (i32, serde_json::Value) {
    let out = run_imapshift(
        &["verify", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let j = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), j)
}

/// One migration between two servers: their ports and its configuration (in a temp dir of its
/// own).
struct Migration {
    old_port: u16,
    new_port: u16,
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl Migration {
    fn new(old_port: u16, new_port: u16) -> Migration {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), old_port, new_port);
        Migration {
            old_port,
            new_port,
            dir,
            cfg,
        }
    }

    /// See [`assert_moved`].
    fn assert_moved(&self, pairs: &[(&str, &str)], skip: &[Vec<u8>]) {
        assert_moved(self.old_port, self.new_port, pairs, skip);
    }

    /// See [`assert_new_folders`].
    fn assert_new_folders(&self, subscribed: &str, forbidden: &[&str]) {
        assert_new_folders(self.new_port, subscribed, forbidden);
    }

    /// A sync that must exit `code`; its report.
    fn sync(&self, code: i32) -> serde_json::Value {
        let (got, j, err) = sync(&self.cfg);
        assert_eq!(got, code, "{j:#}\n{err}");
        j
    }

    /// A re-run copies nothing (exit `code`: 1 while a refused message stays refused), and
    /// verify exits `verify_code` with exactly `missing` messages missing. Verify's report.
    fn rerun_and_verify(&self, code: i32, verify_code: i32, missing: u64) -> serde_json::Value {
        let j = self.sync(code);
        assert_eq!(j["copied"], 0, "a re-run copies nothing: {j:#}");
        let (got, v) = verify(&self.cfg);
        assert_eq!(got, verify_code, "{v:#}");
        assert_eq!(v["totals"]["missing"], missing, "{v:#}");
        v
    }
}

/// The one failure of a sync report: `folder`, old UID `uid`, the big message's Message-ID.
fn assert_one_refused<'a>(
    j: &'a serde_json::Value,
    folder: &str,
    uid: u64,
) -> &'a serde_json::Value {
    let failures = j["users"][0]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{j:#}");
    let f = &failures[0];
    assert_eq!(
        (f["folder"].as_str(), f["old_uid"].as_u64()),
        (Some(folder), Some(uid)),
        "{j:#}"
    );
    assert_eq!(f["message_id"], "<big@example.com>", "{j:#}");
    f
}

/// The new server's folder names and subscriptions: `subscribed` is subscribed, and no name
/// starts with one of `forbidden` or is one of them (`INBOX/`: nothing nested under INBOX).
fn assert_new_folders(port: u16, subscribed: &str, forbidden: &[&str]) {
    let mut n = TestImap::connect(port, "alice", PW);
    let names: Vec<String> = n.list().into_iter().map(|(_, _, x)| x).collect();
    assert!(
        !names
            .iter()
            .any(|x| forbidden.iter().any(|f| x.starts_with(f))),
        "none of {forbidden:?}: {names:?}"
    );
    let subs = n.lsub();
    assert!(subs.contains(&subscribed.to_string()), "{subs:?}");
    n.logout();
}

/// Every (old folder, new folder) pair holds the same messages (bodies, flags, INTERNALDATE
/// instants); `skip` bodies are expected on the old side only.
fn assert_moved(old_port: u16, new_port: u16, pairs: &[(&str, &str)], skip: &[Vec<u8>]) {
    let mut o = TestImap::connect(old_port, "alice", PW);
    let mut n = TestImap::connect(new_port, "alice", PW);
    for (a, b) in pairs {
        let olds: Vec<_> = o
            .fetch_all(a)
            .into_iter()
            .filter(|m| !skip.contains(&m.body))
            .collect();
        if let Err(e) = common::diff_folder(a, &olds, &n.fetch_all(b)) {
            panic!("{a} -> {b}: {e}");
        }
    }
    o.logout();
    n.logout();
}

/// Dovecot to Cyrus: every folder goes under Cyrus's `INBOX.` with `.`; `x.y` keeps its dot as
/// a look-alike; a message over Cyrus's APPENDLIMIT is not sent (Cyrus would answer it with
/// BYE) but named by UID, Message-ID and size, and verify counts exactly it missing.
#[test]
fn dovecot_to_cyrus() {
    let old = dovecot("old");
    let new = small_cyrus("new");
    let mut c = filled(old.port(), &DOVECOT_MAILBOX);
    let big = big_message();
    c.append("INBOX", &[], None, &big).unwrap();
    c.subscribe("Archive/2019");
    c.logout();
    let m = Migration::new(old.port(), new.port());

    // Before the cutover, preflight names what will not fit.
    let out = run_imapshift(
        &["preflight", "--config", m.cfg.to_str().unwrap()],
        &[("PW", PW)],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  size limit alice")
            && text.contains("\"INBOX\" old UID 4")
            && text.contains("APPENDLIMIT (20000 bytes)"),
        "{text}"
    );

    // One message refused.
    let j = m.sync(1);
    let failure = assert_one_refused(&j, "INBOX", 4);
    assert_eq!(failure["size"], big.len(), "{j:#}");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("APPENDLIMIT (20000 bytes)"),
        "{j:#}"
    );
    assert_eq!(j["users"][0]["retries"], 0, "no connection was lost: {j:#}");
    m.assert_moved(
        &[
            ("INBOX", "INBOX"),
            ("Sent", "INBOX.Sent"),
            ("Drafts", "INBOX.Drafts"),
            ("Archive", "INBOX.Archive"),
            ("Archive/2019", "INBOX.Archive.2019"),
            ("Entw&APw-rfe", "INBOX.Entw&APw-rfe"),
            ("x.y", "INBOX.x&ICQ-y"),
        ],
        &[big],
    );
    m.assert_new_folders("INBOX.Archive.2019", &[]);

    // Only the refused one is missing.
    let v = m.rerun_and_verify(1, 7, 1);
    let d = &v["users"][0]["differences"][0];
    assert_eq!(
        (d["kind"].as_str(), d["old_uid"].as_u64()),
        (Some("missing"), Some(4)),
        "{v:#}"
    );
    assert!(
        d["detail"].as_str().unwrap().contains("APPENDLIMIT"),
        "verify names why: {v:#}"
    );
}

/// Cyrus to Dovecot: `INBOX.` taken off, `.` becomes `/`: nothing lands under `INBOX/`.
#[test]
fn cyrus_to_dovecot() {
    let old = cyrus("old");
    let new = dovecot("new");
    let mut c = filled(old.port(), &dotted_mailbox(2, "INBOX.Sent"));
    c.subscribe("INBOX.Sent");
    c.logout();
    let m = Migration::new(old.port(), new.port());
    m.sync(0);
    m.assert_moved(
        &[
            ("INBOX", "INBOX"),
            ("INBOX.Sent", "Sent"),
            ("INBOX.Archive", "Archive"),
            ("INBOX.Archive.2019", "Archive/2019"),
            ("INBOX.Entw&APw-rfe", "Entw&APw-rfe"),
        ],
        &[],
    );
    m.assert_new_folders("Sent", &["INBOX/"]);
    m.rerun_and_verify(0, 0, 0);
}

/// A Dovecot that refuses messages over 20 kB (quota plugin: `NO [LIMIT]`).
fn small_dovecot(name: &str) -> Dovecot {
    dovecot_with(
        name,
        "namespace inbox {\n  inbox = yes\n  separator = /\n\
         mailbox Sent {\n    special_use = \\Sent\n  }\n}\n\
         mail_plugins = $mail_plugins quota\nplugin {\n  quota = count:User quota\n  \
         quota_vsizes = yes\n  quota_max_mail_size = 20k\n}\n",
    )
}

fn courier(name: &str) -> common::Courier {
    common::Courier::start(name, &[("alice", PW)], Default::default())
}

/// Fills a Courier mailbox the way its users have it: everything under `INBOX.`, no special-use
/// attributes (Courier has no SPECIAL-USE), `Sent Items` as Outlook names it, a nested and a
/// non-ASCII folder, keywords, and one message of 40 kB.
fn fill_courier(port: u16) -> Vec<u8> {
    let mut c = filled(port, &dotted_mailbox(3, "INBOX.Sent Items"));
    let big = big_message();
    c.append("INBOX.Archive", &[], None, &big).unwrap();
    c.subscribe("INBOX.Archive.2019");
    c.logout();
    big
}

/// The folders [`fill_courier`] makes.
fn courier_folders() -> [&'static str; 5] {
    dotted_mailbox(3, "INBOX.Sent Items").map(|(folder, _, _)| folder)
}

/// A Courier mailbox ([`fill_courier`]) migrated to the server at `new_port`, which refuses the
/// big message: that one is named; every other message is in the new folder `new_names` gives
/// its old one (in [`courier_folders`] order); the new server's folders are as
/// [`assert_new_folders`] with `subscribed` and `forbidden` says; a re-run copies nothing and
/// verify counts exactly the big one missing.
fn from_courier(new_port: u16, new_names: [&str; 5], subscribed: &str, forbidden: &[&str]) {
    let old = courier("old");
    let big = fill_courier(old.port());
    let m = Migration::new(old.port(), new_port);
    // The big one refused.
    assert_one_refused(&m.sync(1), "INBOX.Archive", 2);
    let pairs: Vec<(&str, &str)> = courier_folders().into_iter().zip(new_names).collect();
    m.assert_moved(&pairs, &[big]);
    m.assert_new_folders(subscribed, forbidden);
    // Only the refused one is missing.
    m.rerun_and_verify(1, 7, 1);
}

/// Courier to Dovecot, the double-`INBOX.` trap: nothing lands under `INBOX/`; Outlook's
/// `Sent Items` (no attribute on Courier, recognised by name) goes into Dovecot's `\Sent` folder
/// `Sent`; the message Dovecot refuses is named; a re-run copies nothing; verify agrees.
#[test]
fn courier_to_dovecot() {
    let new = small_dovecot("new");
    let mut n = TestImap::connect(new.port(), "alice", PW);
    n.create("Sent");
    n.logout();
    from_courier(
        new.port(),
        ["INBOX", "Sent", "Archive", "Archive/2019", "Entw&APw-rfe"],
        // `Sent Items` went into `Sent`: no folder of that name (nor one starting with it).
        "Archive/2019",
        &["INBOX/", "Sent Items"],
    );
}

/// Courier to Cyrus: both name folders under `INBOX.` with `.`, so names stay; the message
/// over Cyrus's APPENDLIMIT is named; a re-run copies nothing.
#[test]
fn courier_to_cyrus() {
    let new = small_cyrus("new");
    from_courier(new.port(), courier_folders(), "INBOX.Archive.2019", &[]);
}

/// Dovecot to Courier: Courier has neither MULTIAPPEND nor LITERAL+ (APPENDs go one by one on
/// synchronizing literals) and refuses an APPEND to the folder the session has EXAMINEd; folders
/// go under `INBOX.`; a re-run copies nothing; verify OK.
#[test]
fn dovecot_to_courier() {
    let old = dovecot("old");
    let new = courier("new");
    // The Dovecot mailbox without Drafts, Archive (the parent) and `x.y`.
    let folders: Vec<_> = DOVECOT_MAILBOX
        .into_iter()
        .filter(|(f, _, _)| !["Drafts", "Archive", "x.y"].contains(f))
        .collect();
    filled(old.port(), &folders).logout();
    let m = Migration::new(old.port(), new.port());
    m.sync(0);
    m.assert_moved(
        &[
            ("INBOX", "INBOX"),
            ("Sent", "INBOX.Sent"),
            ("Archive/2019", "INBOX.Archive.2019"),
            ("Entw&APw-rfe", "INBOX.Entw&APw-rfe"),
        ],
        &[],
    );
    // New mail on the old side, then a second run: only it is copied.
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.append("INBOX", &[], None, &msg("late", 1)).unwrap();
    c.logout();
    assert_eq!(m.sync(0)["copied"], 1);
    assert_eq!(m.sync(0)["copied"], 0, "a re-run copies nothing");
    // The state store lost, and new mail: the maps are rebuilt by matching (EXAMINE on Courier's
    // side), then the new message is appended to the folder just examined.
    std::fs::remove_dir_all(m.dir.path().join("state")).unwrap();
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.append("INBOX", &[], None, &msg("after-loss", 1)).unwrap();
    c.logout();
    assert_eq!(m.sync(0)["copied"], 1);
    let (code, v) = verify(&m.cfg);
    assert_eq!(code, 0, "{v:#}");
}
