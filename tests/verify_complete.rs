//! `imapshift verify` trusts no short listing and never says OK for mail it did not compare
//! (issue 11, items 1 and 7), against real Dovecots with the programmable proxy of
//! tests/common/proxy.rs in front of the old server:
//!
//! * the old server's `UID SEARCH` answer leaves out one UID: verify reports an error for that
//!   user (exit 3), never OK over a folder listed shorter than its EXAMINE count;
//! * a FETCH reply of the header listing lacks RFC822.SIZE (or its UID): an error, never a
//!   message counted missing or present by accident;
//! * the server splits one message's items over two FETCH replies (RFC 3501 allows it): they are
//!   merged and the verification is OK;
//! * `[filters]` leave out a folder, large messages and old ones: the text, JSON and HTML reports
//!   say what was not compared, with counts, and the HTML never says "Nothing is missing".

mod common;

use common::proxy::{drop_fetch_item, fetch_uid, Proxy};
use common::{run_imapshift, Dovecot, DovecotOpts, TestImap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

const DATE: &str = "14-Mar-2024 09:26:53 +0000";

fn msg(id: &str, body: &str) -> Vec<u8> {
    format!("Subject: Note {id}\r\nMessage-ID: <{id}@example.com>\r\nFrom: a@example.com\r\n\r\n{body}\r\n").into_bytes()
}

/// Old and new Dovecot with `n` messages in alice's INBOX, synced; returns the UIDs on the old
/// server.
fn migrated(n: usize, tables: &str) -> (Dovecot, Dovecot, tempfile::TempDir, Vec<u32>) {
    let users = [("alice", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    let uids = (0..n)
        .map(|i| {
            c.append(
                "INBOX",
                &["\\Seen"],
                Some(DATE),
                &msg(&format!("m{i}"), "x"),
            )
            .unwrap()
        })
        .collect();
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), new.port(), tables);
    sync(&cfg);
    (old, new, dir, uids)
}

/// `imapshift <command> --config cfg <extra>`.
fn imapshift(command: &str, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![command, "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_imapshift(&args, &[("PW", "pw")])
}

/// A sync that must succeed.
fn sync(cfg: &Path) {
    let out = imapshift("sync", cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

fn config(dir: &Path, old_port: u16, new_port: u16, tables: &str) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    let text = common::plain_config(old_port, new_port, "", "", tables, &["alice"]);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn verify(cfg: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = imapshift("verify", cfg, &args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let j = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{err}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), j, err)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `* SEARCH 1 2 3 ...` without `uid`.
fn drop_search_uid(resp: &[u8], uid: u32) -> Vec<u8> {
    let Some(line) = resp.strip_prefix(b"* SEARCH") else {
        return resp.to_vec();
    };
    let text = String::from_utf8_lossy(line);
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|u| *u != uid.to_string())
        .collect();
    let mut out = b"* SEARCH".to_vec();
    for u in kept {
        out.extend_from_slice(format!(" {u}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `* n FETCH (UID u ... BODY[HEADER] {k}\r\n...)` as two replies: the items before the header,
/// then `* n FETCH (UID u BODY[HEADER] {k}...)`.
fn split_fetch(resp: &[u8]) -> Vec<u8> {
    let (Some(uid), Some(at)) = (fetch_uid(resp), find(resp, b" BODY[HEADER] {")) else {
        return resp.to_vec();
    };
    let seq_end = find(resp, b" FETCH (").expect("a FETCH reply");
    let mut out = resp[..at].to_vec();
    out.extend_from_slice(b")\r\n");
    out.extend_from_slice(&resp[..seq_end]);
    out.extend_from_slice(format!(" FETCH (UID {uid}").as_bytes());
    out.extend_from_slice(&resp[at..]);
    out
}

/// The old server's UID SEARCH leaves out one message: the folder's listing is shorter than
/// EXAMINE says, and verify reports an error for alice (exit 3), never OK. (Before: verify
/// compared the 7 messages it was told about and said OK.)
#[test]
fn a_search_answer_shorter_than_exists_is_an_error() {
    let (old, new, dir, uids) = migrated(8, "");
    let victim = uids[5];
    let proxy = Proxy::start("old", old.port());
    let cfg = config(dir.path(), proxy.port(), new.port(), "");
    let (code, j, _) = verify(&cfg, &[]);
    assert_eq!(code, Some(0), "clean through the proxy: {j:#}");
    proxy.rewrite_downstream(move |resp| drop_search_uid(resp, victim));
    let (code, j, err) = verify(&cfg, &[]);
    assert!(proxy.responses_rewritten() > 0, "no SEARCH reply rewritten");
    assert_eq!(code, Some(3), "{j:#}\n{err}");
    assert_eq!(j["ok"], false);
    let u = &j["users"][0];
    assert_eq!(u["status"], "error", "{u:#}");
    let e = u["error"].as_str().unwrap();
    assert!(
        e.contains("INBOX") && e.contains("EXAMINE said the folder has 8"),
        "{e}"
    );
}

/// A header-listing reply without RFC822.SIZE (every time it is asked), then one without its
/// UID: each is an error for alice (exit 3) naming the UID, never OK and never "missing".
#[test]
fn a_fetch_reply_missing_an_item_is_an_error() {
    let (old, new, dir, uids) = migrated(8, "");
    let victim = uids[2];
    let proxy = Proxy::start("old", old.port());
    let cfg = config(dir.path(), proxy.port(), new.port(), "");
    for item in ["RFC822.SIZE", "UID"] {
        proxy.rewrite_downstream(move |resp| {
            if fetch_uid(resp) == Some(victim) && find(resp, b"BODY[HEADER]").is_some() {
                drop_fetch_item(resp, item)
            } else {
                resp.to_vec()
            }
        });
        let before = proxy.responses_rewritten();
        let (code, j, err) = verify(&cfg, &[]);
        assert!(
            proxy.responses_rewritten() > before,
            "{item}: no reply rewritten"
        );
        assert_eq!(code, Some(3), "{item}: {j:#}\n{err}");
        let u = &j["users"][0];
        assert_eq!(u["status"], "error", "{item}: {u:#}");
        assert_eq!(u["missing"], 0, "{item}: {u:#}");
        assert!(
            u["error"]
                .as_str()
                .unwrap()
                .contains(&format!("UIDs {victim}")),
            "{item}: {u:#}"
        );
    }
}

/// The old server sends each message's items in two FETCH replies (sizes, dates and flags,
/// then the header): merged, the verification is OK.
#[test]
fn items_split_over_two_fetch_replies_are_merged() {
    let (old, new, dir, _) = migrated(8, "");
    let proxy = Proxy::start("old", old.port());
    let cfg = config(dir.path(), proxy.port(), new.port(), "");
    let once = AtomicBool::new(false);
    proxy.rewrite_downstream(move |resp| {
        let out = split_fetch(resp);
        if out != resp && !once.swap(true, SeqCst) {
            eprintln!("split:\n{}", String::from_utf8_lossy(&out));
        }
        out
    });
    let (code, j, err) = verify(&cfg, &[]);
    assert!(proxy.responses_rewritten() >= 8, "replies not split");
    assert_eq!(code, Some(0), "{j:#}\n{err}");
    assert_eq!(j["totals"]["old_messages"], 8);
}

/// `[filters]` leave out the folder Trash (3 messages), one message over max_size and (age
/// window of 30 days) the 4 old ones: every report says so with counts; the HTML does not say
/// "Nothing is missing"; the JSON keeps the reference time and the criteria.
#[test]
fn what_filters_leave_out_is_stated() {
    let users = [("alice", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    c.create("Trash");
    for i in 0..3 {
        c.append("Trash", &[], None, &msg(&format!("t{i}"), "x"))
            .unwrap();
    }
    for i in 0..5 {
        c.append("INBOX", &[], None, &msg(&format!("new{i}"), "x"))
            .unwrap();
    }
    c.append("INBOX", &[], None, &msg("big", &"y".repeat(5000)))
        .unwrap();
    for i in 0..4 {
        c.append("INBOX", &[], Some(DATE), &msg(&format!("old{i}"), "x"))
            .unwrap();
    }
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let tables = "[filters]\nexclude_folders = [\"Trash\"]\nmax_size = 2000\nmax_age_days = 30\n";
    let cfg = config(dir.path(), old.port(), new.port(), tables);
    sync(&cfg);
    let (code, j, _) = verify(&cfg, &[]);
    assert_eq!(code, Some(0), "{j:#}");
    let t = &j["totals"];
    assert_eq!(t["old_messages"], 5, "{t:#}");
    assert_eq!(
        (
            &t["filtered_size"],
            &t["filtered_age"],
            &t["folders_excluded"],
            &t["excluded_messages"]
        ),
        (&1.into(), &4.into(), &1.into(), &3.into()),
        "{t:#}"
    );
    assert_eq!(j["users"][0]["excluded_folders"][0]["name"], "Trash");
    assert!(j["filters"]["age_criteria"]
        .as_str()
        .unwrap()
        .starts_with("SINCE "));
    assert!(j["as_of_unix"].as_u64().unwrap() > 0);

    let text = imapshift("verify", &cfg, &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("not compared, as [filters] leave them out: 1 messages over max_size (2000 bytes); 4 messages outside the age window (received on or after"),
        "{text}"
    );
    assert!(text.contains("Trash (3 messages)"), "{text}");
    assert!(text.contains("VERIFIED ONLY WHAT WAS COMPARED"), "{text}");

    let html = dir.path().join("r.html");
    let out = imapshift("verify", &cfg, &["--html", html.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("Nothing is missing"), "{page}");
    assert!(page.contains("1 messages over max_size"), "{page}");
    assert!(page.contains("Trash (3 messages)"), "{page}");
}
