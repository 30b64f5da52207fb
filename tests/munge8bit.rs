//! A new server that rewrites 8-bit header bytes on APPEND (Debian's Cyrus 3.6 with its default
//! `munge8bit`: each header byte >= 0x80 comes back as `X`, the body and the size unchanged)
//! must not break exactly-once, and `verify` must say what happened, against real servers: an
//! old Dovecot (Europe/Berlin) holding messages with raw UTF-8 and Latin-1 bytes in Subject,
//! From and Message-ID, and plain ASCII ones (one an ASCII twin of an 8-bit one's munged form),
//! migrated to a Cyrus in America/New_York.
//!
//! * The copies are there, the ASCII ones byte for byte, the 8-bit ones exactly as munged.
//! * The state directory lost, a sync appends nothing (the munged copies are recognised);
//!   `verify` (and `--deep`) report exactly the 8-bit ones as altered with the fix, exit 7.
//! * A crash between APPEND and the state write: the re-run finds the munged copies, no
//!   duplicate.
//! * With `munge8bit: no` (a second Cyrus) the same migration verifies OK; and the documented fix
//!   (set `munge8bit: no`, delete the altered copies, move the state directory aside, sync) turns
//!   the first Cyrus's copies identical: verify OK.

mod common;

use common::cyrus::{Cyrus, CyrusOpts};
use common::{plain_config, run_imapshift, Dovecot, DovecotOpts, TestImap, TestMsg};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PW: &str = "pw";

/// The old folders and their names on Cyrus.
const FOLDERS: [(&str, &str); 2] = [("INBOX", "INBOX"), ("Archive", "INBOX.Archive")];

/// One old message: its folder, its header and body, and whether the header has 8-bit bytes.
struct Mail {
    folder: &'static str,
    header: Vec<u8>,
    body: &'static [u8],
}

impl Mail {
    fn bytes(&self) -> Vec<u8> {
        [self.header.as_slice(), self.body].concat()
    }
    fn eight_bit(&self) -> bool {
        self.header.iter().any(|&b| b >= 0x80)
    }
}

fn header(extra: &[u8], id: &str) -> Vec<u8> {
    [
        b"To: alice@example.org\r\n".as_slice(),
        extra,
        format!("Message-ID: <{id}@example.org>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\n")
            .as_bytes(),
    ]
    .concat()
}

/// INBOX: UIDs 2, 3 and 5 have 8-bit headers (UTF-8 Subject, Latin-1 From, UTF-8 Subject);
/// 6 is 5 as Cyrus stores it (`cafXX`), an ASCII twin. Archive: 1 (UTF-8 Subject and body, an
/// 8-bit Message-ID) and 3 (Latin-1 Subject).
fn mails() -> Vec<Mail> {
    let m = |folder, h: Vec<u8>, body| Mail {
        folder,
        header: h,
        body,
    };
    let cafe = header(
        "From: a@example.org\r\nSubject: café\r\n".as_bytes(),
        "cafe",
    );
    let cafe_munged: Vec<u8> = cafe
        .iter()
        .map(|&b| if b >= 0x80 { b'X' } else { b })
        .collect();
    vec![
        m(
            "INBOX",
            header(b"From: a@example.org\r\nSubject: plain one\r\n", "p1"),
            b"plain body\r\n",
        ),
        m(
            "INBOX",
            header(
                "From: a@example.org\r\nSubject: Grüße aus Köln\r\n".as_bytes(),
                "u1",
            ),
            b"body\r\n",
        ),
        m(
            "INBOX",
            header(
                b"From: J\xfcrgen M\xfcller <j@example.de>\r\nSubject: latin-1 sender\r\n",
                "l1",
            ),
            b"body \xe9\r\n",
        ),
        m(
            "INBOX",
            header(b"From: a@example.org\r\nSubject: plain two\r\n", "p2"),
            b"plain body two\r\n",
        ),
        m("INBOX", cafe, b"same body\r\n"),
        m("INBOX", cafe_munged, b"same body\r\n"),
        m(
            "Archive",
            header(
                "From: a@example.org\r\nSubject: Ünïcödé\r\n".as_bytes(),
                "ü-id",
            ),
            "Körper bleibt\r\n".as_bytes(),
        ),
        m(
            "Archive",
            header(b"From: a@example.org\r\nSubject: plain three\r\n", "p3"),
            b"plain\r\n",
        ),
        m(
            "Archive",
            header(
                b"From: a@example.org\r\nSubject: caf\xe9 cr\xe8me\r\n",
                "l2",
            ),
            b"body\r\n",
        ),
    ]
}

/// (old folder, old UID) of the 8-bit messages, as the old server numbers them.
fn eight_bit_uids(mails: &[Mail]) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for (folder, _) in FOLDERS {
        let in_folder = mails.iter().filter(|m| m.folder == folder);
        for (i, m) in in_folder.enumerate() {
            if m.eight_bit() {
                out.insert((folder.to_string(), i as u64 + 1));
            }
        }
    }
    out
}

fn old_dovecot(name: &str) -> (Dovecot, Vec<Mail>) {
    let old = Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            tz: Some("Europe/Berlin".into()),
            ..Default::default()
        },
    );
    let mails = mails();
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.create("Archive");
    for (i, m) in mails.iter().enumerate() {
        // INBOX's 6 is a twin of 5's munged form: the same INTERNALDATE and flags too (on Cyrus
        // their copies are byte-identical, so either copy may stand for either).
        let d = if i == 5 { 4 } else { i };
        let date = format!("{:>2}-Mar-2023 1{d}:15:00 +0100", 1 + d);
        let flags: &[&str] = if d % 2 == 0 { &["\\Seen"] } else { &[] };
        c.append(m.folder, flags, Some(&date), &m.bytes())
            .unwrap_or_else(|e| panic!("APPEND to {}: {e}", m.folder));
    }
    c.logout();
    (old, mails)
}

fn cyrus(name: &str, extra_conf: &str) -> Cyrus {
    Cyrus::start(
        name,
        &[("alice", PW)],
        CyrusOpts {
            tz: Some("America/New_York".into()),
            extra_conf: extra_conf.into(),
        },
    )
}

/// An old Dovecot with [`mails`], a Cyrus with `extra_conf`, and a config for them with `tables`
/// in `[sync]`.
struct Migration {
    old: Dovecot,
    new: Cyrus,
    mails: Vec<Mail>,
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

fn migration(name: &str, extra_conf: &str, tables: &str) -> Migration {
    let (old, mails) = old_dovecot(&format!("{name}-old"));
    let new = cyrus(name, extra_conf);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), new.port(), tables);
    Migration {
        old,
        new,
        mails,
        dir,
        cfg,
    }
}

fn config(dir: &Path, old_port: u16, new_port: u16, tables: &str) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    let tables = format!("[sync]\njobs = 1\n{tables}");
    std::fs::write(
        &cfg,
        plain_config(old_port, new_port, "", "", &tables, &["alice"]),
    )
    .unwrap();
    cfg
}

fn sync(cfg: &Path, envs: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let mut e = vec![("PW", PW)];
    e.extend_from_slice(envs);
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], &e);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let j = common::sync_report(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    (out.status.code().unwrap_or(-1), j, stderr)
}

/// `verify --json` (and `--deep`): the exit code and the report.
fn verify(cfg: &Path, deep: bool) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--config", cfg.to_str().unwrap(), "--json"];
    if deep {
        args.push("--deep");
    }
    let out = run_imapshift(&args, &[("PW", PW)]);
    let j = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), j)
}

/// The text summary of `verify`.
fn verify_text(cfg: &Path) -> (i32, String) {
    let out = run_imapshift(
        &["verify", "--config", cfg.to_str().unwrap()],
        &[("PW", PW)],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The message as a munging server stores it: its header's 8-bit bytes as `X`.
fn munged(m: &Mail) -> Vec<u8> {
    let h: Vec<u8> = m
        .header
        .iter()
        .map(|&b| if b >= 0x80 { b'X' } else { b })
        .collect();
    [h.as_slice(), m.body].concat()
}

/// Every new folder holds exactly its old folder's messages in order, each as `expect` makes it
/// from the original, at the same instant.
fn assert_copies(new_port: u16, mails: &[Mail], expect: impl Fn(&Mail) -> Vec<u8>) {
    let mut n = TestImap::connect(new_port, "alice", PW);
    for (old, new) in FOLDERS {
        let want: Vec<&Mail> = mails.iter().filter(|m| m.folder == old).collect();
        let got: Vec<TestMsg> = n.fetch_all(new);
        assert_eq!(got.len(), want.len(), "{new}: messages on Cyrus");
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(&g.body),
                String::from_utf8_lossy(&expect(w)),
                "{new}: message {k}"
            );
            assert_eq!(g.body, expect(w), "{new}: message {k}, byte for byte");
            // Early March 2023: New York is at -0500, the old server at +0100.
            assert_eq!(g.zone(), "-0500", "{new}: Cyrus spells dates in its zone");
        }
    }
    n.logout();
}

/// Messages per new folder, as Cyrus counts them (STATUS MESSAGES).
fn counts(new_port: u16) -> Vec<u32> {
    let mut n = TestImap::connect(new_port, "alice", PW);
    let c = FOLDERS.iter().map(|(_, new)| n.status(new).0).collect();
    n.logout();
    c
}

fn folder_sum(j: &serde_json::Value, key: &str) -> u64 {
    j["users"][0]["folders"]
        .as_array()
        .map(|fs| fs.iter().map(|f| f[key].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

/// The verify report shows exactly `want` as altered (nothing missing, no duplicate, no
/// other difference) and exits 7.
fn assert_altered(cfg: &Path, want: &BTreeSet<(String, u64)>, deep: bool) {
    let (code, v) = verify(cfg, deep);
    assert_eq!(code, 7, "altered copies are not OK (deep {deep}): {v:#}");
    let t = &v["totals"];
    assert_eq!(t["altered"], want.len(), "deep {deep}: {v:#}");
    for k in [
        "missing",
        "duplicates",
        "body_differs",
        "flags_differ",
        "only_new",
    ] {
        assert_eq!(t[k], 0, "{k} (deep {deep}): {v:#}");
    }
    let diffs = v["users"][0]["differences"].as_array().unwrap();
    let got: BTreeSet<(String, u64)> = diffs
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "altered", "{d:#}");
            let detail = d["detail"].as_str().unwrap();
            assert!(
                detail.contains("replaced by X") && detail.contains("munge8bit: no"),
                "{detail}"
            );
            (
                d["folder"].as_str().unwrap().to_string(),
                d["old_uid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(&got, want, "deep {deep}: {v:#}");
    assert_eq!(v["users"][0]["status"], "differs", "{v:#}");
}

fn assert_verified(cfg: &Path) {
    for deep in [false, true] {
        let (code, v) = verify(cfg, deep);
        assert_eq!(code, 0, "deep {deep}: {v:#}");
        assert_eq!(v["totals"]["altered"], 0, "{v:#}");
    }
}

/// The whole story on a default (munging) Cyrus, then the documented fix on the same server.
#[test]
fn munging_cyrus_exactly_once_and_verify_says_altered() {
    let Migration {
        old: _old,
        mut new,
        mails,
        dir,
        cfg,
    } = migration("munging", "", "");
    let eight = eight_bit_uids(&mails);
    assert_eq!(eight.len(), 5);

    let (code, j, err) = sync(&cfg, &[]);
    assert_eq!(code, 0, "{j:#}\n{err}");
    assert_eq!(j["copied"], mails.len(), "{j:#}");
    assert_copies(new.port(), &mails, munged);
    // The ASCII ones byte for byte (`munged` is the identity for them).
    assert!(mails
        .iter()
        .filter(|m| !m.eight_bit())
        .all(|m| munged(m) == m.bytes()));

    // The state store lost: nothing is appended again.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (code, j, err) = sync(&cfg, &[]);
    assert_eq!(code, 0, "{j:#}\n{err}");
    assert_eq!(j["copied"], 0, "no duplicates after a lost state: {j:#}");
    for (folder, n) in [("INBOX", 3), ("Archive", 2)] {
        let warning = format!("folder {folder}: {n} copies on the new server have each 8-bit header byte replaced by X");
        assert!(err.contains(&warning), "the log names the folder: {err}");
    }
    assert_eq!(
        folder_sum(&j, "remapped"),
        mails.len() as u64,
        "every copy recognised: {j:#}"
    );
    assert_eq!(counts(new.port()), vec![6, 3]);
    assert_copies(new.port(), &mails, munged);

    // verify names exactly the 8-bit ones, with the fix; --deep agrees (no body difference).
    assert_altered(&cfg, &eight, false);
    assert_altered(&cfg, &eight, true);
    let (code, text) = verify_text(&cfg);
    assert_eq!(code, 7, "{text}");
    assert!(
        text.contains("5 altered by the new server")
            && text.contains("FIX: 5 copies have their 8-bit header bytes replaced by X")
            && text.contains("NOT VERIFIED"),
        "{text}"
    );

    // The fix as docs/verify.md ("Altered copies") gives it: munge8bit: no, delete the altered
    // copies (folder and new UID from the report), move the state directory aside, sync.
    let (_, v) = verify(&cfg, false);
    let conf = std::fs::read_to_string(new.config_path()).unwrap();
    std::fs::write(new.config_path(), format!("{conf}munge8bit: no\n")).unwrap();
    new.restart();
    let mut n = TestImap::connect(new.port(), "alice", PW);
    for d in v["users"][0]["differences"].as_array().unwrap() {
        let folder = FOLDERS
            .iter()
            .find(|(o, _)| d["folder"] == *o)
            .map(|(_, n)| *n)
            .unwrap();
        n.expunge_uid(folder, d["new_uid"].as_u64().unwrap() as u32);
    }
    n.logout();
    std::fs::rename(dir.path().join("state"), dir.path().join("state.aside")).unwrap();
    let (code, j, err) = sync(&cfg, &[]);
    assert_eq!(code, 0, "{j:#}\n{err}");
    assert_eq!(
        j["copied"],
        eight.len(),
        "the deleted ones copied again: {j:#}"
    );
    assert_eq!(counts(new.port()), vec![6, 3]);
    assert_verified(&cfg);
}

/// A crash between the APPEND and the state write (`after-append`, the second batch of two:
/// INBOX's UIDs 3 and 4, a Latin-1 From among them): the re-run finds the munged copy by its
/// fingerprint, copies nothing twice; verify: only the 8-bit ones altered.
#[test]
fn munging_cyrus_crash_after_append_no_duplicate() {
    let m = migration("crash", "", "batch_messages = 2\n");
    let (new, mails, cfg) = (&m.new, m.mails.as_slice(), m.cfg.as_path());
    let crash = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[
            ("PW", PW),
            ("IMAPSHIFT_FAILPOINT", "after-append"),
            ("IMAPSHIFT_FAILPOINT_HIT", "2"),
        ],
    );
    let err = String::from_utf8_lossy(&crash.stderr);
    assert!(
        !crash.status.success() && err.contains("failpoint after-append reached"),
        "the run did not stop at the failpoint: {err}"
    );
    assert_eq!(
        counts(new.port()),
        vec![4, 0],
        "two batches before the crash"
    );
    let (code, j, err) = sync(cfg, &[]);
    assert_eq!(code, 0, "{j:#}\n{err}");
    assert_eq!(folder_sum(&j, "recovered"), 2, "both intents found: {j:#}");
    assert_eq!(folder_sum(&j, "requeued"), 0, "{j:#}");
    assert_eq!(counts(new.port()), vec![6, 3], "no duplicate");
    assert_copies(new.port(), mails, munged);
    assert_altered(cfg, &eight_bit_uids(mails), false);
}

/// `munge8bit: no`: the same migration arrives byte for byte and verifies OK.
#[test]
fn cyrus_without_munge8bit_verifies_ok() {
    let m = migration("kept", "munge8bit: no\n", "");
    let (new, mails, cfg) = (&m.new, m.mails.as_slice(), m.cfg.as_path());
    let (code, j, err) = sync(cfg, &[]);
    assert_eq!(code, 0, "{j:#}\n{err}");
    assert_copies(new.port(), mails, Mail::bytes);
    assert_verified(cfg);
}
