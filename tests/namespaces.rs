//! Namespaces between servers that name folders differently (issue 12), against real Dovecots
//! configured the way Courier and Cyrus name folders: a personal namespace with the prefix
//! `INBOX.` and the separator `.` on one side, Dovecot's `` and `/` on the other. Folders keep
//! their place in the tree (`INBOX.Archive.2019` is `Archive/2019`, never `INBOX/Archive/2019`),
//! subscriptions follow, a name holding the other side's separator gets its look-alike, a
//! public namespace is left out and listed, a folder rule renames, `imapshift folders` shows
//! every mapping with its reason, verify passes and a re-run copies nothing. And the other way
//! round.

mod common;

use common::{plain_config, run_imapshift, Dovecot, DovecotOpts, TestImap};
use std::path::{Path, PathBuf};

const PW: &str = "pw";

/// Courier's and Cyrus's layout: `INBOX.` prefix, `.` separator; `a/b` storable (listescape);
/// and a public namespace `Public.` (shared folders of no user).
fn courier_like(name: &str, public: &Path) -> Dovecot {
    // The mail processes run as an unprivileged user: the public folders must be theirs to write.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(public, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = format!(
        "namespace inbox {{\n  inbox = yes\n  prefix = INBOX.\n  separator = .\n}}\n\
         namespace public {{\n  type = public\n  prefix = Public.\n  separator = .\n  \
         location = maildir:{}\n  list = yes\n  subscriptions = no\n}}\n\
         mail_plugins = $mail_plugins listescape\nplugin {{\n  listescape_char = \"\\\\\"\n}}\n",
        public.display()
    );
    Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: conf,
            ..Default::default()
        },
    )
}

/// Dovecot's own layout: no prefix, `/` separator.
fn dovecot_like(name: &str) -> Dovecot {
    Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: "namespace inbox {\n  inbox = yes\n  separator = /\n}\n\
                         mail_plugins = $mail_plugins listescape\nplugin {\n  listescape_char = \"\\\\\"\n}\n"
                .into(),
            ..Default::default()
        },
    )
}

fn msg(folder: &str, i: usize) -> Vec<u8> {
    format!(
        "Subject: {folder} {i}\r\nMessage-ID: <{i}.{}@x>\r\n\r\nin {folder}\r\n",
        folder.len()
    )
    .into_bytes()
}

fn fill(port: u16, folders: &[(&str, usize)]) {
    let mut c = TestImap::connect(port, "alice", PW);
    for (f, n) in folders {
        if !f.eq_ignore_ascii_case("INBOX") {
            c.create(f);
        }
        for i in 0..*n {
            c.append(f, &["\\Seen", "$Label1"], None, &msg(f, i))
                .unwrap();
        }
    }
    c.logout();
}

fn config(dir: &Path, old: &Dovecot, new: &Dovecot, rules: &str) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    std::fs::write(
        &cfg,
        plain_config(old.port(), new.port(), "", "", rules, &["alice"]),
    )
    .unwrap();
    cfg
}

fn run(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let mut a = vec![args[0], "--config", cfg.to_str().unwrap()];
    a.extend_from_slice(&args[1..]);
    let out = run_imapshift(&a, &[("PW", PW)]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Old folder -> new folder: the same messages (bodies, flags, INTERNALDATE instants).
fn assert_moved(old: &Dovecot, new: &Dovecot, pairs: &[(&str, &str)]) {
    let mut o = TestImap::connect(old.port(), "alice", PW);
    let mut n = TestImap::connect(new.port(), "alice", PW);
    for (a, b) in pairs {
        if let Err(e) = common::diff_folder(a, &o.fetch_all(a), &n.fetch_all(b)) {
            panic!("{a} -> {b}: {e}");
        }
    }
    o.logout();
    n.logout();
}

/// Courier's layout to Dovecot's: the `INBOX.` prefix is taken off, not nested under INBOX.
#[test]
fn from_an_inbox_prefix_to_none() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    std::fs::create_dir_all(&public).unwrap();
    let old = courier_like("old", &public);
    let new = dovecot_like("new");
    fill(
        old.port(),
        &[
            ("INBOX", 2),
            ("INBOX.Sent Items", 3),
            ("INBOX.Archive", 1),
            ("INBOX.Archive.2019", 2),
            ("INBOX.Entw&APw-rfe", 1),
            ("INBOX.a/b", 1),
            ("Public.Announcements", 2),
        ],
    );
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.subscribe("INBOX.Archive.2019");
    c.subscribe("INBOX.Sent Items");
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    // A folder rule: the yearly archives go into "Old mail".
    let rules = "[[folder_rules]]\nmatch = '^Archive/(\\d{4})$'\nto = 'Old mail/$1'\n";
    let cfg = config(dir.path(), &old, &new, rules);

    // Before anything is copied: where every folder goes, and why.
    let (code, text, err) = run(&cfg, &["folders"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("prefix \"INBOX.\""), "{text}");
    assert!(
        text.contains("INBOX.Archive.2019") && text.contains("-> Old mail/2019 (created)  [rule:"),
        "{text}"
    );
    assert!(text.contains("[namespace: the name translated"), "{text}");
    assert!(
        text.contains("Public.Announcements") && text.contains("not migrated  [other namespace"),
        "{text}"
    );
    assert!(text.contains("look-alike"), "{text}");
    let (_, json, _) = run(&cfg, &["folders", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(j[0]["folders"].as_array().unwrap().len() >= 7, "{j:#}");

    let (code, text, err) = run(&cfg, &["sync"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains("not migrated (other users' or shared folders)"),
        "{text}"
    );
    assert_moved(
        &old,
        &new,
        &[
            ("INBOX", "INBOX"),
            ("INBOX.Sent Items", "Sent Items"),
            ("INBOX.Archive", "Archive"),
            ("INBOX.Archive.2019", "Old mail/2019"),
            ("INBOX.Entw&APw-rfe", "Entw&APw-rfe"),
            ("INBOX.a/b", "a&IhU-b"),
        ],
    );
    let mut n = TestImap::connect(new.port(), "alice", PW);
    let names: Vec<String> = n.list().into_iter().map(|(_, _, x)| x).collect();
    assert!(
        !names
            .iter()
            .any(|x| x.starts_with("INBOX/") || x.starts_with("Public")),
        "nothing nested under INBOX, no public folder: {names:?}"
    );
    let subs = n.lsub();
    assert!(
        subs.contains(&"Old mail/2019".to_string()) && subs.contains(&"Sent Items".to_string()),
        "{subs:?}"
    );
    n.logout();
    let (code, text, err) = run(&cfg, &["verify"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("other users' or shared folders"), "{text}");
    let (code, text, _) = run(&cfg, &["sync", "--json"]);
    assert_eq!(code, 0);
    let j = common::sync_report(text.as_bytes()).unwrap();
    assert_eq!(j["copied"], 0, "a re-run copies nothing: {j}");
}

/// Dovecot's layout to Cyrus's: folders go under the `INBOX.` prefix with `.` (CREATE and
/// SUBSCRIBE of `Sent` alone would fail there).
#[test]
fn from_no_prefix_to_an_inbox_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    std::fs::create_dir_all(&public).unwrap();
    let old = dovecot_like("old");
    let new = courier_like("new", &public);
    fill(
        old.port(),
        &[("INBOX", 1), ("Sent", 2), ("Archive/2019", 2), ("x.y", 1)],
    );
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.subscribe("Sent");
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &old, &new, "");
    let (code, text, err) = run(&cfg, &["sync"]);
    assert_eq!(code, 0, "{text}{err}");
    assert_moved(
        &old,
        &new,
        &[
            ("INBOX", "INBOX"),
            ("Sent", "INBOX.Sent"),
            ("Archive/2019", "INBOX.Archive.2019"),
            ("x.y", "INBOX.x&ICQ-y"),
        ],
    );
    let mut n = TestImap::connect(new.port(), "alice", PW);
    assert!(n.lsub().contains(&"INBOX.Sent".to_string()));
    n.logout();
    let (code, text, err) = run(&cfg, &["verify"]);
    assert_eq!(code, 0, "{text}{err}");
}
