//! Regression tests for issue 10, items 10 and 8, against real Dovecot servers that run in
//! different time zones (old: Europe/Berlin, new: America/New_York, as real hosts often do).
//!
//! Item 10, *flag updates carry the old side's changes*: after the cutover the user works on the
//! new server (flags a message, adds a keyword) while imapshift still follows the old one. The
//! next sync must carry only what changed on the old side since the last sync (`+FLAGS` /
//! `-FLAGS`), never replace the whole flag set: a flag that only the new side set is never
//! removed, also when the maps were rebuilt after a lost state directory.
//!
//! Item 8, *a message refused for a flag or keyword is still copied*: the new server refuses an
//! APPEND because of one of its flags; the message must still be copied, without the refused
//! flag but with its others, the drop reported (`flags_dropped` in the folder's report), and
//! the folder not failed. Likewise a refusal (NO or BAD) of a whole MULTIAPPEND must not fail
//! the folder: the other messages of the batch are copied. Each case runs against the stock new
//! server (MULTIAPPEND + LITERAL+), one without MULTIAPPEND (pipelined single APPENDs: the
//! fallback path of `tests/server_variants.rs`, there only tested with clean messages) and one
//! without LITERAL+ (synchronizing literals).
//!
//! How Dovecot 2.3.19 answers, recorded with `TestImap` and a raw socket (LITERAL+ literals):
//!
//! * A keyword longer than `mail_max_keyword_length` (default 50; the old server here has 200):
//!   `x NO [CANNOT] Keyword length too long`. The connection and the rest of the pipeline are
//!   fine. A MULTIAPPEND of three messages whose second has such a keyword gets one
//!   `m NO [CANNOT] Keyword length too long` and stores *none* of the three (all or nothing).
//! * Keywords with invalid characters (`a]b`, `a%b`, `a*b`): `NO [CANNOT] Invalid characters in
//!   keyword`, same behaviour.
//! * An unknown system flag (`\Foo`, also `\Recent`, `\*`) in APPEND or in any message of a
//!   MULTIAPPEND: `m BAD Error in IMAP command APPEND: Invalid system flag \FOO`. Worse: Dovecot
//!   then skips only the rest of the *line*, so the bytes of the LITERAL+ literal (and of every
//!   later message of the MULTIAPPEND) are read as IMAP commands:
//!   `From: BAD Error in IMAP command A@B: Unknown command`,
//!   `* BAD Error in IMAP tag: Invalid tag` (for the empty line), and so on, one reply per line
//!   of the message. A message line that looks like a command (`inj7 CREATE Injected-7`) is
//!   executed. With synchronizing literals the BAD comes before the literal is sent.
//! * 300 keywords on one message: accepted (no keyword count limit). `\Seen \Seen` and
//!   `\Deleted`: accepted.
//! * Can the old Dovecot hand out a flag the new one refuses? Yes: the long keyword (a larger
//!   `mail_max_keyword_length` on the old side), and any name written into the old Maildir's
//!   `dovecot-keywords` file (another tool, a converted Courier Maildir): with the line `0 \Foo`
//!   there, `FETCH FLAGS` returns `\Foo` (also `a]b`, `two words`, `(paren`, which break the
//!   FETCH grammar and are left to item 4). The `\Foo` tests below use that.

mod common;

use common::{plain_config, run_imapshift, sync_report, Dovecot, DovecotOpts, TestImap, TestMsg};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const PW: &str = "pw";
const ENVS: &[(&str, &str)] = &[("PW", PW)];
const OLD_ZONE: &str = "Europe/Berlin";
const NEW_ZONE: &str = "America/New_York";
/// Summer time in both zones: the old server shows it as `+0200`, the new one as `-0400`.
const DATE: &str = "10-Oct-2022 10:10:10 +0000";
/// The old server without CONDSTORE: every sync lists the whole folder (`list_old`) instead of
/// asking for the changes since the recorded HIGHESTMODSEQ (`incremental_listing`).
const NO_CONDSTORE: &str = "imap_capability = IMAP4rev1 SASL-IR LITERAL+ UIDPLUS BINARY\n";

/// A Dovecot for alice (password [`PW`]) whose processes run in `zone`, with `extra` appended
/// to its configuration. The harness writes `import_environment = TZ=UTC` first; the later
/// setting overrides it, which doveconf confirms here.
fn dovecot(name: &str, zone: &str, extra: &str) -> Dovecot {
    let d = Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: format!("import_environment = TZ={zone}\n{extra}"),
            ..Default::default()
        },
    );
    let out = Command::new("doveconf")
        .arg("-c")
        .arg(d.config_path())
        .args(["-h", "import_environment"])
        .output()
        .expect("run doveconf");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("TZ={zone}"),
        "{name}: the zone setting of extra_conf did not override the harness's: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn config(dir: &Path, old: &Dovecot, new: &Dovecot) -> PathBuf {
    let path = dir.join("imapshift.toml");
    std::fs::write(
        &path,
        plain_config(old.port(), new.port(), "", "", "", &["alice"]),
    )
    .unwrap();
    path
}

/// One `sync --json` run.
struct Run {
    code: i32,
    report: Value,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The report of the folder whose old name is `old`.
    fn folder(&self, old: &str) -> &Value {
        self.report["users"][0]["folders"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["old"] == old))
            .unwrap_or_else(|| panic!("no folder {old:?} in the report: {}", self))
    }

    /// Failures that name `folder` but no message: the whole folder failed.
    fn folder_failures(&self, folder: &str) -> Vec<&Value> {
        self.report["users"][0]["failures"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|f| f["folder"] == folder && f["old_uid"].is_null())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn sync(cfg: &Path) -> Run {
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], ENVS);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e})\n{stdout}\n{stderr}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        stdout,
        stderr,
    }
}

fn subject(m: &TestMsg) -> String {
    common::subject(m)
}

/// The flags of every message of `folder`, by Subject: one entry per copy (two entries are a
/// duplicate).
fn flags_by_subject(d: &Dovecot, folder: &str) -> BTreeMap<String, Vec<BTreeSet<String>>> {
    let mut c = TestImap::connect(d.port(), "alice", PW);
    let msgs = c.fetch_all(folder);
    c.logout();
    let mut out: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    for m in &msgs {
        out.entry(subject(m))
            .or_default()
            .push(m.flags.iter().cloned().collect());
    }
    out
}

fn set(flags: &[&str]) -> BTreeSet<String> {
    flags.iter().map(|f| f.to_string()).collect()
}

/// The UID of the message with Subject `subj` in `folder`.
fn uid_of(c: &mut TestImap, folder: &str, subj: &str) -> u32 {
    c.fetch_all(folder)
        .iter()
        .find(|m| subject(m) == subj)
        .unwrap_or_else(|| panic!("no message {subj:?} in {folder:?}"))
        .uid
}

/// Differences between what `d` holds in INBOX and `want`, one line each.
fn diff_flags(d: &Dovecot, want: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let got = flags_by_subject(d, "INBOX");
    let mut out = Vec::new();
    for (s, w) in want {
        match got.get(s).map(Vec::as_slice) {
            None => out.push(format!("{}: {s:?} is missing", d.name())),
            Some([g]) if g != w => out.push(format!(
                "{}: {s:?} has flags {g:?}, expected {w:?} (lost {:?}, extra {:?})",
                d.name(),
                w.difference(g).collect::<Vec<_>>(),
                g.difference(w).collect::<Vec<_>>()
            )),
            Some([_]) => {}
            Some(copies) => out.push(format!(
                "{}: {s:?} is there {} times (duplicates)",
                d.name(),
                copies.len()
            )),
        }
    }
    for s in got.keys().filter(|s| !want.contains_key(*s)) {
        out.push(format!("{}: unexpected message {s:?}", d.name()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Item 10: flag updates carry the old side's changes.
// ---------------------------------------------------------------------------------------------

/// The flags of the ten messages `flags 1` .. `flags 10` when first synced.
const INITIAL: [&[&str]; 10] = [
    &[],
    &["$Old"],
    &["\\Seen"],
    &["\\Seen", "$Todo"],
    &["\\Seen"],
    &["$Todo"],
    &[],
    &["\\Seen", "\\Flagged"],
    &["\\Draft"],
    &["\\Seen", "$Old"],
];

fn flag_subject(i: usize) -> String {
    format!("flags {i}")
}

fn initial() -> BTreeMap<String, BTreeSet<String>> {
    (1..=10)
        .map(|i| (flag_subject(i), set(INITIAL[i - 1])))
        .collect()
}

/// Old server (extra config `old_extra`) with the ten messages, new server, one complete sync
/// (checked: all ten with their flags, INTERNALDATEs shown in each server's own zone).
fn synced_ten(old_extra: &str) -> (Dovecot, Dovecot, tempfile::TempDir, PathBuf) {
    let old = dovecot("old", OLD_ZONE, old_extra);
    let new = dovecot("new", NEW_ZONE, "");
    let mut c = TestImap::connect(old.port(), "alice", PW);
    for i in 1..=10 {
        let body = format!(
            "From: f{i}@example.com\r\nTo: alice@example.com\r\nSubject: {}\r\n\
             Message-ID: <flags{i}@example.com>\r\n\r\nbody of message {i}\r\n",
            flag_subject(i)
        );
        c.append("INBOX", INITIAL[i - 1], Some(DATE), body.as_bytes())
            .unwrap();
    }
    c.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &old, &new);
    let r = sync(&cfg);
    assert_eq!(r.code, 0, "first sync: {r}");
    assert_eq!(r.report["copied"], 10, "first sync: {r}");
    let wrong = diff_flags(&new, &initial());
    assert!(
        wrong.is_empty(),
        "after the first sync:\n{}",
        wrong.join("\n")
    );
    // The zones really differ (else a date-as-text comparison would go unnoticed).
    for (d, offset) in [(&old, "+0200"), (&new, "-0400")] {
        let mut c = TestImap::connect(d.port(), "alice", PW);
        let msgs = c.fetch_all("INBOX");
        c.logout();
        assert!(
            msgs.iter().all(|m| m.internaldate.ends_with(offset)),
            "{}: INTERNALDATEs not in its zone ({offset}): {:?}",
            d.name(),
            msgs.iter().map(|m| &m.internaldate).collect::<Vec<_>>()
        );
    }
    (old, new, dir, cfg)
}

/// Changes on both sides between two syncs: the new side's additions stay, the old side's
/// additions and removals are carried, nothing else changes; a further sync changes nothing.
fn both_sides_changed(old_extra: &str) {
    let (old, new, _dir, cfg) = synced_ten(old_extra);

    // The user, on the new server after the cutover.
    let mut n = TestImap::connect(new.port(), "alice", PW);
    for (i, flag) in [(1, "\\Flagged"), (2, "$Label1"), (4, "\\Answered")] {
        let uid = uid_of(&mut n, "INBOX", &flag_subject(i));
        n.store_flags("INBOX", uid, "+FLAGS", &[flag]);
    }
    n.logout();
    // Meanwhile on the old server.
    let mut o = TestImap::connect(old.port(), "alice", PW);
    for (i, op, flag) in [
        (1, "+FLAGS", "\\Seen"),
        (3, "-FLAGS", "\\Seen"),
        (2, "+FLAGS", "$Work"),
        (4, "-FLAGS", "$Todo"),
    ] {
        let uid = uid_of(&mut o, "INBOX", &flag_subject(i));
        o.store_flags("INBOX", uid, op, &[flag]);
    }
    o.logout();

    let mut want_old = initial();
    let mut want_new = initial();
    want_old.insert(flag_subject(1), set(&["\\Seen"]));
    want_old.insert(flag_subject(2), set(&["$Old", "$Work"]));
    want_old.insert(flag_subject(3), set(&[]));
    want_old.insert(flag_subject(4), set(&["\\Seen"]));
    want_new.insert(flag_subject(1), set(&["\\Seen", "\\Flagged"]));
    want_new.insert(flag_subject(2), set(&["$Old", "$Label1", "$Work"]));
    want_new.insert(flag_subject(3), set(&[]));
    want_new.insert(flag_subject(4), set(&["\\Seen", "\\Answered"]));
    let wrong = diff_flags(&old, &want_old);
    assert!(wrong.is_empty(), "test setup: {}", wrong.join("\n"));

    // A sync that copies nothing and leaves the new server's flags as `want_new`; `after` says
    // which one failed.
    let sync_to_wanted = |after: &str| {
        let r = sync(&cfg);
        assert_eq!(r.code, 0, "{r}");
        assert_eq!(r.report["copied"], 0, "{r}");
        let wrong = diff_flags(&new, &want_new);
        assert!(
            wrong.is_empty(),
            "after {after}:\n{}\n{r}",
            wrong.join("\n")
        );
        r
    };
    let r = sync_to_wanted(
        "the sync, the new server's flags are wrong (a flag set only on the new side must \
         stay; the old side's changes are carried)",
    );
    assert_eq!(
        r.folder("INBOX")["flags_updated"],
        4,
        "four old messages changed: {r}"
    );

    // Nothing changed since on either side: the next sync leaves everything as it is.
    sync_to_wanted("a further sync");
    assert!(
        diff_flags(&old, &want_old).is_empty(),
        "the old server changed"
    );
}

/// Item 10 with CONDSTORE on the old server (the incremental listing: flags changed since the
/// recorded HIGHESTMODSEQ): the old side's additions and removals are carried as changes, the
/// flags and keywords the user set on the new server since the last sync stay.
#[test]
fn flag_changes_on_both_sides_are_merged_condstore() {
    both_sides_changed("");
}

/// Item 10 with an old server without CONDSTORE (every sync lists the whole old folder): the
/// same merge of both sides' changes.
#[test]
fn flag_changes_on_both_sides_are_merged_without_condstore() {
    both_sides_changed(NO_CONDSTORE);
}

/// Item 10 after a lost state directory: the maps are rebuilt by content, and a flag set only
/// on the new server (`\Flagged` on message 5) is not removed; nothing is copied again and no
/// other message changes.
#[test]
fn lost_state_keeps_flags_set_only_on_the_new_side() {
    let (old, new, dir, cfg) = synced_ten("");
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let mut n = TestImap::connect(new.port(), "alice", PW);
    let uid = uid_of(&mut n, "INBOX", &flag_subject(5));
    n.store_flags("INBOX", uid, "+FLAGS", &["\\Flagged"]);
    n.logout();

    let r = sync(&cfg);
    assert_eq!(r.code, 0, "{r}");
    let mut want_new = initial();
    want_new.insert(flag_subject(5), set(&["\\Seen", "\\Flagged"]));
    let wrong = diff_flags(&new, &want_new);
    assert!(
        wrong.is_empty(),
        "after the sync with a lost state directory:\n{}\n{r}",
        wrong.join("\n")
    );
    assert_eq!(r.report["copied"], 0, "nothing may be copied again: {r}");
    assert!(
        diff_flags(&old, &initial()).is_empty(),
        "the old server changed"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 8: a message refused for a flag or keyword is still copied.
// ---------------------------------------------------------------------------------------------

/// The new server's capabilities for one variant: `None` is the stock list (MULTIAPPEND and
/// LITERAL+: the whole batch is one APPEND whose literals are sent without waiting).
const STOCK: Option<&str> = None;
/// No MULTIAPPEND: the engine's fallback, single APPENDs pipelined with LITERAL+.
const SINGLE_APPENDS: Option<&str> = Some("IMAP4rev1 SASL-IR LITERAL+ UIDPLUS BINARY");
/// No LITERAL+: MULTIAPPEND with synchronizing literals (the server answers a refused flag list
/// before the message is sent).
const SYNC_LITERALS: Option<&str> = Some("IMAP4rev1 SASL-IR MULTIAPPEND UIDPLUS BINARY");

/// Messages `refusal 1` .. `refusal 20` in one batch; `refusal 7` carries `\Seen`, `$Work` and
/// the offending flag.
const VICTIM: usize = 7;

fn refusal_subject(i: usize) -> String {
    format!("refusal {i}")
}

fn refusal_flags(i: usize) -> Vec<&'static str> {
    match i % 3 {
        0 => vec!["\\Seen"],
        1 => vec!["$Normal"],
        _ => vec![],
    }
}

/// A message line that is an IMAP command, to see whether the new server ever runs message
/// bytes as commands (Dovecot does after a BAD to an APPEND with LITERAL+ literals).
fn injection_folder(i: usize) -> String {
    format!("Injected-{i}")
}

fn refusal_body(i: usize) -> Vec<u8> {
    format!(
        "From: r{i}@example.com\r\nTo: alice@example.com\r\nSubject: {}\r\n\
         Message-ID: <refusal{i}@example.com>\r\n\r\nA line about IMAP:\r\n\
         inj{i} CREATE {}\r\nend of message {i}\r\n",
        refusal_subject(i),
        injection_folder(i)
    )
    .into_bytes()
}

/// Seeds the twenty messages on `old`; the victim gets `\Seen $Work <offending>`.
fn seed_refusals(old: &Dovecot, offending: &str) {
    let mut c = TestImap::connect(old.port(), "alice", PW);
    for i in 1..=20 {
        let flags = if i == VICTIM {
            vec!["\\Seen", "$Work", offending]
        } else {
            refusal_flags(i)
        };
        c.append("INBOX", &flags, Some(DATE), &refusal_body(i))
            .unwrap_or_else(|e| panic!("seed {i} with {flags:?} on the old server: {e}"));
    }
    c.logout();
}

fn new_server(caps: Option<&str>) -> Dovecot {
    let extra = caps
        .map(|c| format!("imap_capability = {c}\n"))
        .unwrap_or_default();
    dovecot("new", NEW_ZONE, &extra)
}

/// Syncs and checks what the fixed engine must do: all twenty copied, the victim without the
/// refused flag `dropped` but with `\Seen` and `$Work`, the others with their flags; the drop
/// reported in `flags_dropped`; exit 0 or 1 without a failure of the whole folder; no message
/// line run as a command; a second sync copies nothing and fails nothing.
fn expect_copied_without(old: &Dovecot, new: &Dovecot, dropped: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old, new);
    let mut want: BTreeMap<String, BTreeSet<String>> = (1..=20)
        .map(|i| (refusal_subject(i), set(&refusal_flags(i))))
        .collect();
    want.insert(refusal_subject(VICTIM), set(&["\\Seen", "$Work"]));

    for run in ["first", "second"] {
        let r = sync(&cfg);
        let mut wrong = diff_flags(new, &want);
        if ![0, 1].contains(&r.code) {
            wrong.push(format!("exit code {}, expected 0 or 1", r.code));
        }
        let whole = r.folder_failures("INBOX");
        if !whole.is_empty() {
            wrong.push(format!("the whole folder failed: {whole:?}"));
        }
        if run == "first" {
            // Found again after a reconnect within the run counts too.
            let f = r.folder("INBOX");
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            if n("copied") + n("recovered") != 20 {
                wrong.push(format!(
                    "INBOX copied {} (+ recovered {}), expected 20",
                    f["copied"], f["recovered"]
                ));
            }
            if f["flags_dropped"].as_u64().unwrap_or(0) < 1 {
                wrong.push(format!(
                    "flags_dropped is {}, expected >= 1 (the refused {dropped:?})",
                    f["flags_dropped"]
                ));
            }
        } else if r.report["copied"] != 0 {
            wrong.push(format!("copied {} again", r.report["copied"]));
        }
        let mut c = TestImap::connect(new.port(), "alice", PW);
        let names: Vec<String> = c.list().into_iter().map(|(_, _, n)| n).collect();
        c.logout();
        let injected: Vec<&String> = names.iter().filter(|n| n.starts_with("Injected")).collect();
        if !injected.is_empty() {
            wrong.push(format!(
                "the new server ran message lines as commands: it now has {injected:?}"
            ));
        }
        assert!(
            wrong.is_empty(),
            "{run} sync, refused flag {dropped:?}:\n{}\nfolder report: {}\n{r}",
            wrong.join("\n"),
            r.folder("INBOX")
        );
    }
    assert!(
        flags_by_subject(old, "INBOX")[&refusal_subject(VICTIM)][0].contains(dropped),
        "the old server changed"
    );
}

/// A 100-character keyword: the old server allows it (`mail_max_keyword_length = 200`), the
/// new one (default 50) answers `NO [CANNOT] Keyword length too long`, to the whole MULTIAPPEND
/// too.
fn long_keyword(caps: Option<&str>) {
    let old = dovecot("old", OLD_ZONE, "mail_max_keyword_length = 200\n");
    let new = new_server(caps);
    let long = format!("$Long{}", "k".repeat(95));
    assert_eq!(long.len(), 100);
    seed_refusals(&old, &long);
    expect_copied_without(&old, &new, &long);
}

/// Item 8: in one MULTIAPPEND of twenty, a message with a keyword too long for the new server
/// is still copied, without that keyword but with `\Seen` and its other keyword, and reported;
/// the other nineteen are copied with their flags.
#[test]
fn long_keyword_message_is_copied_without_it_multiappend() {
    long_keyword(STOCK);
}

/// Item 8 on the fallback path without MULTIAPPEND (pipelined single APPENDs).
#[test]
fn long_keyword_message_is_copied_without_it_single_appends() {
    long_keyword(SINGLE_APPENDS);
}

/// Item 8 with synchronizing literals (no LITERAL+).
#[test]
fn long_keyword_message_is_copied_without_it_sync_literals() {
    long_keyword(SYNC_LITERALS);
}

/// The old server hands out `\Foo` as a flag of the victim: its Maildir's `dovecot-keywords`
/// names the victim's keyword `\Foo` (as another tool may have written it), and the indexes
/// are removed so that Dovecot reads the file again. The new server answers any APPEND (or
/// MULTIAPPEND) with `\Foo` in it `BAD ... Invalid system flag \FOO`.
fn invalid_system_flag(caps: Option<&str>) {
    let old = dovecot("old", OLD_ZONE, "");
    let new = new_server(caps);
    seed_refusals(&old, "$BecomesFoo");
    let md = old.maildir("alice");
    let kw_path = md.join("dovecot-keywords");
    let kw = std::fs::read_to_string(&kw_path).unwrap();
    assert!(kw.contains(" $BecomesFoo\n"), "dovecot-keywords: {kw:?}");
    std::fs::write(&kw_path, kw.replace(" $BecomesFoo\n", " \\Foo\n")).unwrap();
    for e in std::fs::read_dir(&md).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dovecot.index") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let victim = &flags_by_subject(&old, "INBOX")[&refusal_subject(VICTIM)];
    assert_eq!(
        victim,
        &[set(&["\\Seen", "$Work", "\\Foo"])],
        "the old server must now show \\Foo"
    );
    expect_copied_without(&old, &new, "\\Foo");
}

/// Item 8: a BAD to the MULTIAPPEND (an invalid system flag in one of twenty messages) fails
/// neither the folder nor the other messages: all twenty are copied, the victim without
/// `\Foo` but with `\Seen` and `$Work`; no message line reaches the new server as a command.
#[test]
fn invalid_system_flag_message_is_copied_without_it_multiappend() {
    invalid_system_flag(STOCK);
}

/// The same on the fallback path without MULTIAPPEND (pipelined single APPENDs, LITERAL+).
#[test]
fn invalid_system_flag_message_is_copied_without_it_single_appends() {
    invalid_system_flag(SINGLE_APPENDS);
}

/// The same with synchronizing literals (the BAD arrives before the message is sent).
#[test]
fn invalid_system_flag_message_is_copied_without_it_sync_literals() {
    invalid_system_flag(SYNC_LITERALS);
}

/// A keyword the new server refuses, added on the old side after the copy, must not fail the
/// folder on every run: the flag change is carried without it (`\Flagged` arrives), the folder
/// reports no failure, and the next run has nothing left to do.
#[test]
fn refused_keyword_in_a_flag_update_does_not_fail_the_folder() {
    let (old, new, _dir, cfg) = synced_ten("mail_max_keyword_length = 200\n");
    let long = format!("$Long{}", "k".repeat(90));
    let mut o = TestImap::connect(old.port(), "alice", PW);
    let uid = uid_of(&mut o, "INBOX", &flag_subject(3));
    o.store_flags("INBOX", uid, "+FLAGS", &[long.as_str(), "\\Flagged"]);
    o.logout();
    let r = sync(&cfg);
    assert!(
        r.folder_failures("INBOX").is_empty(),
        "a refused keyword failed the folder: {r}"
    );
    assert_eq!(r.code, 0, "{r}");
    let mut want = initial();
    want.get_mut(&flag_subject(3))
        .unwrap()
        .insert("\\Flagged".to_string());
    let wrong = diff_flags(&new, &want);
    assert!(wrong.is_empty(), "{}\n{r}", wrong.join("\n"));
    let again = sync(&cfg);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.folder_failures("INBOX").is_empty(), "{again}");
    assert_eq!(again.folder("INBOX")["flags_updated"], 0, "{again}");
}
