//! Keywords a target folder cannot take (issue 12, quirk `cyrus-keyword-limit`), against a real
//! Dovecot (old, Europe/Berlin) and a real Cyrus 3.6 (new, America/New_York).
//!
//! Cyrus holds at most 100 keywords ("user flags") per folder. The APPEND (or `UID STORE
//! +FLAGS`) that would create the 101st is answered `NO Too many user flags in mailbox`, with no
//! response code, while its SELECT still says `PERMANENTFLAGS (... \*)`. An old Dovecot folder of
//! 120 messages, each with a keyword of its own (and `\Seen` on some), then five with keywords
//! the folder already holds and one with a held and a new keyword, moves to Cyrus: every message
//! is copied byte for byte with its INTERNALDATE and system flags; the first 100 distinct
//! keywords are kept, only the 20 later ones dropped (never the held ones of a message with
//! both); one warning names the folder, the count and the keywords; exit 0 (a dropped keyword is
//! a warning, like every `flags_dropped`). A re-run appends nothing and warns of nothing.
//! `verify` lists the copies without those keywords as `keywords_refused` (exit 0), not as
//! flags that differ. A keyword added later on the old side is dropped the same way by the flag
//! update, whose other changes (a `\Flagged`, a held keyword, also one in the same STORE as a
//! new keyword) are carried, and the folder does not fail.

mod common;

use common::cyrus::{Cyrus, CyrusOpts};
use common::{plain_config, run_imapshift, Dovecot, DovecotOpts, TestImap, TestMsg};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PW: &str = "pw";
/// Messages with a keyword each: 20 more than Cyrus's folder takes.
const DISTINCT: usize = 120;
const CYRUS_LIMIT: usize = 100;

fn msg(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: tagged {i}\r\nMessage-ID: <tagged.{i}@example.com>\r\n\
         Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

/// The old flags of message `i` (0-based, in UID order).
fn old_flags(i: usize) -> Vec<String> {
    let mut f: Vec<String> = if i < DISTINCT {
        vec![format!("kw{i}")]
    } else if i < DISTINCT + 5 {
        vec!["kw3".into(), "kw7".into(), "\\Flagged".into()]
    } else {
        vec!["kw5".into(), "kw110".into()]
    };
    if i % 3 == 0 {
        f.push("\\Seen".into());
    }
    f
}

const MESSAGES: usize = DISTINCT + 6;

/// Keywords the Cyrus folder cannot take: those first seen after the 100th.
fn refused(f: &str) -> bool {
    f.strip_prefix("kw")
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n >= CYRUS_LIMIT)
}

fn lower_set(v: &[String]) -> BTreeSet<String> {
    v.iter().map(|f| f.to_ascii_lowercase()).collect()
}

/// One user, one job: the folder's messages in one session pair.
fn config(dir: &Path, old: u16, new: u16) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    let text = plain_config(old, new, "", "", "[sync]\njobs = 1\n", &["alice"]);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

struct Run {
    code: i32,
    report: serde_json::Value,
    stderr: String,
}

/// Runs `imapshift <command> --config cfg --json`: exit code, stdout, stderr.
fn imapshift(command: &str, cfg: &Path) -> (i32, Vec<u8>, String) {
    let out = run_imapshift(
        &[command, "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), out.stdout, stderr)
}

fn sync(cfg: &Path) -> Run {
    let (code, stdout, stderr) = imapshift("sync", cfg);
    let report = common::sync_report(&stdout).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    Run {
        code,
        report,
        stderr,
    }
}

impl Run {
    fn failures(&self) -> &[serde_json::Value] {
        self.report["users"][0]["failures"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    fn folder(&self, old: &str) -> &serde_json::Value {
        self.report["users"][0]["folders"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["old"] == old))
            .unwrap_or_else(|| panic!("no folder {old} in {:#}", self.report))
    }

    /// The warning lines about dropped flags of a folder.
    fn drop_warnings(&self, folder: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains("without flags the new server refused"))
            .filter(|l| l.contains(&format!("folder {folder} ")))
            .collect()
    }
}

fn verify(cfg: &Path) -> (i32, serde_json::Value) {
    let (code, stdout, stderr) = imapshift("verify", cfg);
    let j =
        serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("verify --json: {e}\n{stderr}"));
    (code, j)
}

/// The new folder holds every old message byte for byte with its INTERNALDATE (as an
/// instant), and with exactly the flags `want(i, old flags)` says. Matched by bytes: a message
/// sent again without a refused keyword comes after the others of its batch.
fn assert_copied(old: &[TestMsg], new: &[TestMsg], want: impl Fn(usize, &[String]) -> Vec<String>) {
    assert_eq!(old.len(), new.len(), "every message copied, once");
    let mut wrong = Vec::new();
    for (i, o) in old.iter().enumerate() {
        let copies: Vec<&TestMsg> = new.iter().filter(|n| n.body == o.body).collect();
        let [n] = copies[..] else {
            wrong.push(format!("message {i}: {} copies", copies.len()));
            continue;
        };
        if o.instant() != n.instant() {
            wrong.push(format!(
                "message {i}: INTERNALDATE {} became {}",
                o.internaldate, n.internaldate
            ));
        }
        let expected = lower_set(&want(i, &o.flags));
        if lower_set(&n.flags) != expected {
            wrong.push(format!(
                "message {i}: flags {:?}, expected {expected:?} (old {:?})",
                n.flags, o.flags
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn without_refused(_: usize, flags: &[String]) -> Vec<String> {
    flags.iter().filter(|f| !refused(f)).cloned().collect()
}

#[test]
fn dovecot_to_cyrus_drops_only_keywords_a_full_folder_cannot_take() {
    // Zones by name: Europe/Berlin and America/New_York (`common::default_tz`).
    let old = Dovecot::start("old", &[("alice", PW)], DovecotOpts::default());
    let new = Cyrus::start("new", &[("alice", PW)], CyrusOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.create("Tags");
    for i in 0..MESSAGES {
        let flags = old_flags(i);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let date = format!("{:>2}-Mar-2023 0{}:15:00 +0000", 1 + i % 28, i % 10);
        c.append("Tags", &flags, Some(&date), &msg(i))
            .unwrap_or_else(|e| panic!("APPEND {i} to the old Dovecot: {e}"));
    }
    let olds = c.fetch_all("Tags");
    c.logout();
    assert_eq!(olds.len(), MESSAGES);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), new.port());

    // First run: everything copied, 20 keywords dropped, the held ones kept.
    let r = sync(&cfg);
    assert_eq!(
        r.code, 0,
        "a dropped keyword is a warning: {:#}\n{}",
        r.report, r.stderr
    );
    let mut n = TestImap::connect(new.port(), "alice", PW);
    assert_copied(&olds, &n.fetch_all("INBOX.Tags"), without_refused);
    n.logout();
    let f = r.folder("Tags");
    assert_eq!(f["new"], "INBOX.Tags", "{f:#}");
    assert_eq!(f["copied"], MESSAGES, "{f:#}\n{}", r.stderr);
    assert_eq!(f["failed"], 0, "{f:#}");
    // Messages 100..119, and the last one (kw5 kept, kw110 dropped).
    assert_eq!(f["flags_dropped"], DISTINCT - CYRUS_LIMIT + 1, "{f:#}");
    let names: Vec<String> = (CYRUS_LIMIT..DISTINCT).map(|i| format!("kw{i}")).collect();
    let named: BTreeSet<String> = f["flags_dropped_names"]
        .as_array()
        .unwrap_or_else(|| panic!("no flags_dropped_names: {f:#}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        named,
        names.iter().cloned().collect::<BTreeSet<_>>(),
        "{f:#}"
    );
    let warnings = r.drop_warnings("Tags");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the folder:\n{}",
        r.stderr
    );
    assert!(
        warnings[0].contains("21 messages") && warnings[0].contains("kw100"),
        "the warning names the count and the keywords: {}",
        warnings[0]
    );
    assert!(r.failures().is_empty(), "{:#}", r.report);

    // A re-run appends nothing and does not warn again.
    let r = sync(&cfg);
    assert_eq!(r.code, 0, "{:#}\n{}", r.report, r.stderr);
    assert_eq!(r.report["copied"], 0, "{:#}", r.report);
    assert!(r.drop_warnings("Tags").is_empty(), "{}", r.stderr);

    // verify: nothing missing, nothing with other flags; the 21 copies named and explained.
    let (code, v) = verify(&cfg);
    assert_eq!(code, 0, "{v:#}");
    let t = &v["totals"];
    assert_eq!(
        (t["missing"].as_u64(), t["flags_differ"].as_u64()),
        (Some(0), Some(0)),
        "{v:#}"
    );
    assert_eq!(t["keywords_refused"], DISTINCT - CYRUS_LIMIT + 1, "{v:#}");
    let diffs = v["users"][0]["differences"].as_array().unwrap();
    let last = diffs
        .iter()
        .find(|d| d["old_uid"] == MESSAGES as u64)
        .unwrap_or_else(|| panic!("the last message is listed: {v:#}"));
    assert_eq!(last["kind"], "keywords_refused", "{v:#}");
    let detail = last["detail"].as_str().unwrap();
    assert!(
        detail.contains("removed kw110") && !detail.contains("kw5"),
        "only the refused keyword is named: {detail}"
    );

    // On the old side: message 2 gets \Flagged and a new keyword, message 4 a held keyword,
    // message 6 a held and a new one (one STORE: the held one must still arrive).
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.store_flags("Tags", olds[2].uid, "+FLAGS", &["\\Flagged", "late-kw"]);
    c.store_flags("Tags", olds[4].uid, "+FLAGS", &["kw9"]);
    c.store_flags("Tags", olds[6].uid, "+FLAGS", &["kw11", "late-kw2"]);
    let olds_now = c.fetch_all("Tags");
    c.logout();
    let r = sync(&cfg);
    assert_eq!(r.code, 0, "{:#}\n{}", r.report, r.stderr);
    let f = r.folder("Tags");
    assert_eq!(f["copied"], 0, "{f:#}");
    assert_eq!(f["flags_updated"], 3, "{f:#}");
    assert_eq!(f["flags_dropped"], 2, "{f:#}");
    assert!(
        r.failures().is_empty(),
        "the folder does not fail: {:#}",
        r.report
    );
    let warnings = r.drop_warnings("Tags");
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains("2 messages") && warnings[0].contains("late-kw late-kw2"),
        "{}",
        warnings[0]
    );
    let mut n = TestImap::connect(new.port(), "alice", PW);
    assert_copied(&olds_now, &n.fetch_all("INBOX.Tags"), |_, flags| {
        without_refused(0, flags)
            .into_iter()
            .filter(|f| !f.starts_with("late-kw"))
            .collect()
    });
    n.logout();
    let (code, v) = verify(&cfg);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        v["totals"]["keywords_refused"],
        DISTINCT - CYRUS_LIMIT + 3,
        "{v:#}"
    );
    assert_eq!(v["totals"]["flags_differ"], 0, "{v:#}");
}
