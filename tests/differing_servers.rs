//! Exactly once when the two servers differ (issue 10, items 1, 2, 3, 5, 6, 7), end to end
//! against real Dovecot.
//!
//! The promise "a re-run, a crash, a lost state store or a changed UIDVALIDITY never yields a
//! duplicate or a gap" must hold when the old and the new server are NOT alike. So every test
//! here runs the old Dovecot with `TZ=Europe/Berlin` and the new one with `TZ=America/New_York`
//! (a later `import_environment` in `extra_conf` overrides the harness's `TZ=UTC`: the servers
//! then spell every INTERNALDATE in their own zone, `+0200` on one side, `-0400` on the other),
//! and gives messages explicit INTERNALDATEs in various zones. On top of that each test makes the
//! servers differ in one more way: special-use folders and hierarchy separators, a folder name
//! the new server refuses, no UIDPLUS, no BINARY. Messages are compared by body, flags and
//! INTERNALDATE *as an instant*, per folder, as a multiset; `imapshift verify` closes each test.

mod common;

use common::gen::{self, folder_sum};
use common::{plain_config, run_imapshift, sync_report, Dovecot, DovecotOpts, TestImap, TestMsg};
use serde_json::Value;
use std::path::{Path, PathBuf};

const PW: &str = "pw";
const OLD_TZ: &str = "import_environment = TZ=Europe/Berlin\n";
const NEW_TZ: &str = "import_environment = TZ=America/New_York\n";

/// Dovecot 2.3.19's post-login capabilities (tests/harness_selftest.rs), to advertise all but
/// one of them with `imap_capability`.
const DOVECOT_CAPS: &[&str] = &[
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "IDLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "LITERAL+",
    "NOTIFY",
];

/// An `imap_capability` line advertising Dovecot's defaults without `cap`.
fn caps_without(cap: &str) -> String {
    assert!(
        DOVECOT_CAPS.contains(&cap),
        "{cap} is not a default capability"
    );
    let caps: Vec<&str> = DOVECOT_CAPS.iter().copied().filter(|c| *c != cap).collect();
    format!("imap_capability = {}\n", caps.join(" "))
}

/// The listescape plugin lets a `.`-separated Maildir++ store names the file system layout
/// would refuse (`a/b`, `~backup`), as old servers with such folders have.
const LISTESCAPE: &str =
    "mail_plugins = $mail_plugins listescape\nplugin {\n  listescape_char = \"\\\\\"\n}\n";

// ----- servers, config, runs -----

fn server(name: &str, tz: &str, users: &[&str], extra: &str) -> Dovecot {
    let users: Vec<(&str, &str)> = users.iter().map(|u| (*u, PW)).collect();
    Dovecot::start(
        name,
        &users,
        DovecotOpts {
            extra_conf: format!("{tz}{extra}"),
            ..Default::default()
        },
    )
}

/// The old Dovecot, in Europe/Berlin, with `extra` configuration.
fn old_server(users: &[&str], extra: &str) -> Dovecot {
    server("old", OLD_TZ, users, extra)
}

/// The new Dovecot, in America/New_York, with `extra` configuration.
fn new_server(users: &[&str], extra: &str) -> Dovecot {
    server("new", NEW_TZ, users, extra)
}

/// A session of alice's on `server`.
fn alice_at(server: &Dovecot) -> TestImap {
    TestImap::connect(server.port(), "alice", PW)
}

/// Alice on an old and a new Dovecot (`old_extra` / `new_extra` configuration), her old
/// account filled with `folders` (`(folder, messages, base)`, see [`fill`]), and a config for
/// her with batches of `batch` messages.
fn alice(
    old_extra: &str,
    new_extra: &str,
    folders: &[(&str, usize, usize)],
    batch: usize,
) -> (Dovecot, Dovecot, tempfile::TempDir, PathBuf) {
    let old = old_server(&["alice"], old_extra);
    let new = new_server(&["alice"], new_extra);
    let mut o = alice_at(&old);
    for &(folder, n, base) in folders {
        fill(&mut o, "alice", folder, n, base);
    }
    o.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &old, &new, &["alice"], batch);
    (old, new, dir, cfg)
}

/// `imapshift.toml` for `users` (same login on both sides, password `env:PW`), one user at a
/// time (`jobs = 1`, so failpoint counts are deterministic) and `batch` messages per batch.
fn config(dir: &Path, old: &Dovecot, new: &Dovecot, users: &[&str], batch: usize) -> PathBuf {
    let tables = format!("[sync]\njobs = 1\nbatch_messages = {batch}\n");
    let text = plain_config(old.port(), new.port(), "", "", &tables, users);
    let cfg = dir.join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `imapshift sync --json` plus `extra` arguments: the summary, with `exit` and `stderr` added.
fn sync(cfg: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["sync", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run_imapshift(&args, &[("PW", PW)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut j = sync_report(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}"));
    j["exit"] = out.status.code().unwrap_or(-1).into();
    j["stderr"] = tail(&stderr, 40).into();
    j
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The summary without the stderr tail, for assertion messages.
fn brief(j: &Value) -> String {
    let mut j = j.clone();
    let stderr = j["stderr"].take();
    format!(
        "{j}\n--- stderr tail ---\n{}",
        stderr.as_str().unwrap_or("")
    )
}

fn sync_ok(cfg: &Path, extra: &[&str]) -> Value {
    let j = sync(cfg, extra);
    assert_eq!(j["exit"], 0, "sync must succeed: {}", brief(&j));
    assert_eq!(j["failed"], 0, "{}", brief(&j));
    j
}

/// A sync that must succeed for alice without any failure (and verify must agree with a
/// report of failed folders, see [`assert_verify_agrees`]): its summary.
fn sync_without_failures(cfg: &Path) -> Value {
    let j = sync(cfg, &[]);
    assert_verify_agrees(cfg, &j);
    assert_eq!(j["exit"], 0, "{}", brief(&j));
    assert_eq!(
        user(&j, "alice")["failures"],
        serde_json::json!([]),
        "{}",
        brief(&j)
    );
    j
}

/// One more run succeeds and copies nothing (`why` says what that proves).
fn assert_rerun_copies_nothing(cfg: &Path, why: &str) {
    let j = sync_ok(cfg, &[]);
    assert_eq!(j["copied"], 0, "{why}{}", brief(&j));
}

/// `imapshift verify --json`: (exit code, report).
fn verify(cfg: &Path) -> (i32, Value) {
    let out = run_imapshift(
        &["verify", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), j)
}

fn verify_ok(cfg: &Path) {
    let (code, j) = verify(cfg);
    assert_eq!(code, 0, "imapshift verify must pass: {j}");
}

/// Verify never says VERIFIED while the sync left an old folder uncopied: when the run reports a
/// folder failure, `imapshift verify` must exit non-zero.
fn assert_verify_agrees(cfg: &Path, j: &Value) {
    let folder_failures: Vec<&Value> = j["users"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["failures"].as_array().unwrap().iter())
        .filter(|f| f["old_uid"].is_null())
        .collect();
    if folder_failures.is_empty() {
        return;
    }
    let (code, v) = verify(cfg);
    assert_ne!(
        code, 0,
        "verify says VERIFIED although the sync did not copy these folders: {folder_failures:?}\n\
         verify: {v}"
    );
}

/// `imapshift verify` exits 7 and finds exactly one difference: old `uid` of `folder` missing.
fn assert_only_missing(cfg: &Path, login: &str, folder: &str, uid: u32) {
    let (code, v) = verify(cfg);
    assert_eq!(code, 7, "{v}");
    let diffs: Vec<(String, String, u64)> = user(&v, login)["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or("").to_string(),
                d["folder"].as_str().unwrap_or("").to_string(),
                d["old_uid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        diffs,
        vec![("missing".to_string(), folder.to_string(), u64::from(uid))],
        "the one message the new server cannot take is the one difference: {v}"
    );
}

fn user<'a>(j: &'a Value, login: &str) -> &'a Value {
    j["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {j}"))
        .iter()
        .find(|u| u["old_login"] == login)
        .unwrap_or_else(|| panic!("no user {login} in {j}"))
}

/// `renamed_folders` of a user as (from, to) pairs.
fn renamed(j: &Value, login: &str) -> Vec<(String, String)> {
    user(j, login)["renamed_folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ----- messages and dates -----

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A deterministic INTERNALDATE with an explicit zone, spread over years, seasons (daylight
/// saving on either server or not) and zones (whole, half and quarter hours, both signs).
fn date(i: usize) -> String {
    const ZONES: [&str; 8] = [
        "+0900", "-0700", "+0530", "+0000", "-0330", "+1345", "+0100", "-1000",
    ];
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02} {}",
        1 + (i * 5) % 28,
        MONTHS[(i * 7) % 12],
        2012 + i % 11,
        (i * 7) % 24,
        (i * 13) % 60,
        (i * 17) % 60,
        ZONES[i % ZONES.len()]
    )
}

/// A test message: `id` names it in the Subject, `mid` is its Message-ID, `lines` sizes it.
fn message(login: &str, folder: &str, id: &str, mid: &str, lines: usize) -> Vec<u8> {
    let mut s = format!(
        "From: sender-{id}@example.org\r\nTo: {login}@example.com\r\n\
         Subject: {login} {folder} {id}\r\nMessage-ID: <{mid}@example.org>\r\n\
         Date: Mon, 1 Jun 2020 10:00:00 +0000\r\n\r\n"
    );
    for k in 0..lines {
        s.push_str(&format!(
            "line {k} of {id} in {folder}: the quick brown fox\r\n"
        ));
    }
    s.into_bytes()
}

fn flags_of(i: usize) -> Vec<&'static str> {
    let mut f = Vec::new();
    if i % 3 == 0 {
        f.push("\\Seen");
    }
    if i % 5 == 0 {
        f.push("\\Flagged");
    }
    if i % 7 == 0 {
        f.push("$Work");
    }
    f
}

/// Appends `n` distinct messages to `folder` (creating it unless it is INBOX), with flags and
/// INTERNALDATEs varying; `base` keeps ids and dates of different folders apart.
fn fill(c: &mut TestImap, login: &str, folder: &str, n: usize, base: usize) {
    if folder != "INBOX" {
        c.create(folder);
    }
    for i in 0..n {
        let k = base + i;
        let id = format!("m{k}");
        let body = message(login, folder, &id, &format!("{login}-{k}"), 1 + k % 9);
        c.append(folder, &flags_of(k), Some(&date(k)), &body)
            .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
    }
}

// ----- comparing folders -----

/// A folder's messages sorted by (body, flags, INTERNALDATE instant): the multiset the
/// exactly-once promise is about, whatever zone each server spells dates in (the harness's
/// `key` and `diff_folder` compare dates as instants).
fn snapshot(c: &mut TestImap, folder: &str) -> Vec<TestMsg> {
    let mut v: Vec<TestMsg> = c.fetch_all(folder);
    v.sort_by_key(common::key);
    v
}

fn folder_names(c: &mut TestImap) -> Vec<String> {
    c.list().into_iter().map(|(_, _, name)| name).collect()
}

/// `Ok` when the new server's `new_folder` holds exactly the old `old_folder`'s messages
/// (bodies, flags and INTERNALDATE instants; no duplicate, no gap), else a diagnosis.
fn mirror(
    old: &Dovecot,
    new: &Dovecot,
    login: &str,
    old_folder: &str,
    new_folder: &str,
) -> Result<(), String> {
    let mut o = TestImap::connect(old.port(), login, PW);
    let mut n = TestImap::connect(new.port(), login, PW);
    if !folder_names(&mut n).iter().any(|f| f == new_folder) {
        return Err(format!(
            "{login}: the new server has no folder {new_folder:?} (for old {old_folder:?}); it has {:?}",
            folder_names(&mut n)
        ));
    }
    let a = snapshot(&mut o, old_folder);
    let b = snapshot(&mut n, new_folder);
    o.logout();
    n.logout();
    common::diff_folder(&format!("{login} {old_folder} -> {new_folder}"), &a, &b)
}

fn assert_mirror(old: &Dovecot, new: &Dovecot, login: &str, old_folder: &str, new_folder: &str) {
    if let Err(e) = mirror(old, new, login, old_folder, new_folder) {
        panic!("{e}");
    }
}

/// Every selectable old folder of each of [`USERS`] is on the new server under the same name,
/// exactly.
fn assert_users_mirrored(old: &Dovecot, new: &Dovecot) {
    for login in USERS {
        assert_all_mirrored(old, new, login);
    }
}

/// Every selectable old folder of `login` is on the new server under the same name, exactly.
fn assert_all_mirrored(old: &Dovecot, new: &Dovecot, login: &str) {
    let mut o = TestImap::connect(old.port(), login, PW);
    let names: Vec<String> = o
        .list()
        .into_iter()
        .filter(|(attrs, _, _)| !attrs.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect")))
        .map(|(_, _, n)| n)
        .collect();
    o.logout();
    let errors: Vec<String> = names
        .iter()
        .filter_map(|f| mirror(old, new, login, f, f).err())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Both servers really spell INTERNALDATE in their own zone (the premise of these tests).
fn assert_zones_differ(old: &Dovecot, new: &Dovecot, login: &str, folder: &str) {
    let mut o = TestImap::connect(old.port(), login, PW);
    let mut n = TestImap::connect(new.port(), login, PW);
    let (a, b) = (o.fetch_all(folder), n.fetch_all(folder));
    assert!(!b.is_empty(), "no messages in the new {folder}");
    gen::assert_zones(&a, &b);
}

// ----- item 1: dates spelled differently -----

const USERS: &[&str] = &["alice", "bob"];

/// Two users, a few hundred messages in INBOX, Work and Archive; Work holds byte-identical
/// duplicates (same bytes, same date: three pairs, one of them with different flags, and a
/// triple), Archive holds pairs of different messages sharing a Message-ID.
fn seed_accounts(old: &Dovecot) {
    for (u, login) in USERS.iter().enumerate() {
        let mut c = TestImap::connect(old.port(), login, PW);
        let base = u * 1000;
        fill(&mut c, login, "INBOX", 45, base);
        fill(&mut c, login, "Work", 30, base + 100);
        for t in 0..4 {
            let body = message(
                login,
                "Work",
                &format!("twin{t}"),
                &format!("{login}-twin{t}"),
                3,
            );
            let copies = if t == 3 { 3 } else { 2 };
            for k in 0..copies {
                let flags: &[&str] = if t == 1 && k == 1 { &["\\Seen"] } else { &[] };
                c.append("Work", flags, Some(&date(500 + t)), &body)
                    .unwrap();
            }
        }
        c.create("Archive");
        for i in 0..40 {
            let k = base + 200 + i;
            // Pairs share a Message-ID but are different messages.
            let mid = format!("{login}-shared-{}", i / 2);
            let body = message(login, "Archive", &format!("a{i}"), &mid, 1 + i % 5);
            c.append("Archive", &flags_of(k), Some(&date(k)), &body)
                .unwrap();
        }
        c.logout();
    }
}

/// Two users seeded, servers in different zones, a config with batches of `batch` messages.
fn accounts(batch: usize) -> (Dovecot, Dovecot, tempfile::TempDir, PathBuf) {
    let old = old_server(USERS, "");
    let new = new_server(USERS, "");
    seed_accounts(&old);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &old, &new, USERS, batch);
    (old, new, dir, cfg)
}

/// [`accounts`], and one complete and exact sync done.
fn synced_accounts(batch: usize) -> (Dovecot, Dovecot, tempfile::TempDir, PathBuf) {
    let (old, new, dir, cfg) = accounts(batch);
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 2 * (45 + 30 + 9 + 40), "{}", brief(&j));
    assert_zones_differ(&old, &new, "alice", "INBOX");
    assert_users_mirrored(&old, &new);
    (old, new, dir, cfg)
}

/// Item 1: with the servers in different zones, a lost state directory is rebuilt by content:
/// the next run copies nothing and the new server holds exactly the old server's messages
/// (today the fingerprint compares INTERNALDATE as text, nothing matches, and every message is
/// copied a second time).
#[test]
fn lost_state_with_servers_in_different_zones_copies_nothing_again() {
    let (old, new, dir, cfg) = synced_accounts(1000);
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(
        j["copied"],
        0,
        "after losing the state nothing may be copied again: {}",
        brief(&j)
    );
    assert_users_mirrored(&old, &new);
    verify_ok(&cfg);
    assert_rerun_copies_nothing(&cfg, "");
}

/// Item 1: an old folder recreated with the same messages and dates (a new UIDVALIDITY) is
/// recognised on a new server in another zone: nothing copied, no duplicate (today nothing
/// matches, the folder fails with "UIDVALIDITY changed ... only 0 of its messages match").
#[test]
fn old_uidvalidity_change_with_servers_in_different_zones_copies_nothing_again() {
    let (old, new, _dir, cfg) = synced_accounts(1000);
    let mut o = alice_at(&old);
    let (_, _, uv_before) = o.status("Work");
    let before = o.fetch_all("Work");
    o.logout();
    // A fresh session: Dovecot disconnects a client whose selected mailbox is deleted.
    let mut o = alice_at(&old);
    o.delete_mailbox("Work");
    o.create("Work");
    for m in &before {
        let flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
        o.append("Work", &flags, Some(&m.internaldate), &m.body)
            .unwrap();
    }
    let (_, _, uv_after) = o.status("Work");
    o.logout();
    assert_ne!(
        uv_before, uv_after,
        "the recreated folder has a new UIDVALIDITY"
    );
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{}", brief(&j));
    assert_users_mirrored(&old, &new);
    verify_ok(&cfg);
}

/// Item 1: a crash right after the 2nd batch was appended (before its UID maps were committed)
/// is resolved by the re-run on a new server in another zone: the appended batch is found, not
/// copied again (today the intents are matched by INTERNALDATE text, none is found, and the
/// batch is copied twice).
#[test]
fn crash_after_append_with_servers_in_different_zones_is_exactly_once() {
    let (old, new, _dir, cfg) = accounts(10);
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[
            ("PW", PW),
            ("IMAPSHIFT_FAILPOINT", "after-append"),
            ("IMAPSHIFT_FAILPOINT_HIT", "2"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the failpoint must stop the run"
    );
    assert!(
        stderr.contains("failpoint after-append reached"),
        "{}",
        tail(&stderr, 20)
    );
    let mut n = alice_at(&new);
    assert_eq!(
        n.status("INBOX").0,
        20,
        "two batches of 10 reached the new INBOX before the abort"
    );
    n.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(
        folder_sum(&j, "recovered"),
        10,
        "the batch appended before the crash is found, not copied again: {}",
        brief(&j)
    );
    assert_eq!(j["copied"], 2 * (45 + 30 + 9 + 40) - 20, "{}", brief(&j));
    assert_zones_differ(&old, &new, "alice", "INBOX");
    assert_users_mirrored(&old, &new);
    verify_ok(&cfg);
    assert_rerun_copies_nothing(&cfg, "");
}

// ----- item 2: two old folders onto one new folder -----

/// Item 2: Dovecot's stock configuration marks both `Sent` and `Sent Messages` `\Sent`, both
/// `Trash` and `Deleted Messages` `\Trash`; the new server has `Sent` and `Trash` only (created
/// by its admin). Each old folder whose own name exists keeps it, the other keeps its own name:
/// every message ends up in the folder of its old name, the run has no failure, verify passes
/// (today `Sent Messages` and `Trash` are "in conflict", never copied, exit 1 on every run).
#[test]
fn two_special_use_folders_of_one_kind_each_keep_their_own_name() {
    let (old_ns, new_ns) = (common::STOCK_SPECIAL_USE_NS, common::SENT_AND_TRASH_NS);
    let folders = gen::STOCK_SPECIAL_USE_FOLDERS;
    let fills: Vec<(&str, usize, usize)> = (0..folders.len())
        .map(|i| (folders[i], 3 + i, 100 * i))
        .collect();
    let (old, new, _dir, cfg) = alice(old_ns, new_ns, &fills, 1000);
    let mut o = alice_at(&old);
    let list = o.list();
    o.logout();
    for (f, usage) in [
        ("Sent", "\\Sent"),
        ("Sent Messages", "\\Sent"),
        ("Trash", "\\Trash"),
        ("Deleted Messages", "\\Trash"),
    ] {
        assert!(
            list.iter()
                .any(|(a, _, n)| n == f && a.iter().any(|x| x == usage)),
            "the old server marks {f} {usage}: {list:?}"
        );
    }
    let mut n = alice_at(&new);
    n.create("Sent");
    n.create("Trash");
    n.logout();
    sync_without_failures(&cfg);
    for f in folders {
        assert_mirror(&old, &new, "alice", f, f);
    }
    verify_ok(&cfg);
    assert_rerun_copies_nothing(&cfg, "the resolution is stable: ");
}

/// Item 2, mappings are kept: old `Sent Items` (\Sent) goes into the new server's `Sent`; later a
/// client creates an old `Sent`. The next run must leave `Sent Items` where it is (nothing copied
/// again into a new `Sent Items`) and give the new old `Sent` a folder of its own (`Sent (2)`),
/// and verify (which plans with the sync's memory) passes.
#[test]
fn a_folder_keeps_its_new_folder_when_another_old_folder_appears() {
    let old_ns = "namespace inbox {\n  inbox = yes\n\
                  mailbox \"Sent Items\" {\n    special_use = \\Sent\n  }\n}\n";
    let new_ns = "namespace inbox {\n  inbox = yes\n\
                  mailbox Sent {\n    special_use = \\Sent\n  }\n}\n";
    let fills = [("INBOX", 2, 0), ("Sent Items", 4, 100)];
    let (old, new, _dir, cfg) = alice(old_ns, new_ns, &fills, 1000);
    let mut n = alice_at(&new);
    n.create("Sent");
    n.logout();
    sync_ok(&cfg, &[]);
    assert_mirror(&old, &new, "alice", "Sent Items", "Sent");
    let mut o = alice_at(&old);
    fill(&mut o, "alice", "Sent", 3, 200);
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(
        j["copied"],
        3,
        "only the new old Sent is copied: {}",
        brief(&j)
    );
    assert_mirror(&old, &new, "alice", "Sent Items", "Sent");
    assert_mirror(&old, &new, "alice", "Sent", "Sent (2)");
    let mut n = alice_at(&new);
    assert!(
        !folder_names(&mut n).iter().any(|f| f == "Sent Items"),
        "Sent Items was copied anew into a folder of its own"
    );
    n.logout();
    verify_ok(&cfg);
}

/// Item 2, and issue 12's reversible rule: the old `.`-separated folder `a/b` holds the new
/// server's separator `/` inside its name; it becomes `a∕b` (U+2215, the look-alike) on the
/// `/`-separated new server, so it no longer collides with `a_b` (which the `_` substitute made
/// it before): both copied to folders of their own, no failure, verify passes, stable.
#[test]
fn a_name_holding_the_new_separator_gets_its_look_alike() {
    let (old, new, _dir, cfg) = alice(
        &format!("namespace inbox {{\n  inbox = yes\n  separator = .\n}}\n{LISTESCAPE}"),
        "namespace inbox {\n  inbox = yes\n  separator = /\n}\n",
        &[("INBOX", 2, 0), ("a/b", 4, 100), ("a_b", 5, 200)],
        1000,
    );
    let mut o = alice_at(&old);
    let names = folder_names(&mut o);
    assert_eq!(o.delimiter(), Some('.'));
    o.logout();
    assert!(
        names.contains(&"a/b".to_string()) && names.contains(&"a_b".to_string()),
        "{names:?}"
    );
    sync_without_failures(&cfg);
    assert_mirror(&old, &new, "alice", "INBOX", "INBOX");
    assert_mirror(&old, &new, "alice", "a/b", "a&IhU-b");
    assert_mirror(&old, &new, "alice", "a_b", "a_b");
    verify_ok(&cfg);
    assert_rerun_copies_nothing(&cfg, "the resolution is stable: ");
}

/// Item 2: verify fails whenever an old folder has no complete new folder. The new server
/// refuses to CREATE `~backup` ("Invalid mailbox name: Begins with '~'"), which the old one
/// (listescape) holds: the sync reports that folder FAILED (exit 1), and `imapshift verify`
/// exits 7 and lists each of its messages as missing. (The collision tests above check the
/// same rule for folders the plan leaves out: verify must not pass after a run that reported a
/// folder FAILED.)
#[test]
fn verify_fails_when_the_new_server_refuses_an_old_folder() {
    let fills = [("INBOX", 2, 0), ("~backup", 3, 100)];
    let (old, new, _dir, cfg) = alice(LISTESCAPE, "", &fills, 1000);
    let mut n = alice_at(&new);
    let refused = n.try_create("~probe");
    n.logout();
    assert!(
        refused.is_err(),
        "the new server must refuse names beginning with '~'"
    );
    let j = sync(&cfg, &[]);
    assert_eq!(j["exit"], 1, "{}", brief(&j));
    let failures = user(&j, "alice")["failures"].as_array().unwrap().clone();
    assert!(
        failures
            .iter()
            .any(|f| f["folder"] == "~backup" && f["old_uid"].is_null()),
        "the refused folder is reported as failed: {}",
        brief(&j)
    );
    assert_mirror(&old, &new, "alice", "INBOX", "INBOX");
    let (code, v) = verify(&cfg);
    assert_eq!(
        code, 7,
        "verify must fail while an old folder has no new folder: {v}"
    );
    let missing: Vec<u64> = user(&v, "alice")["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "missing" && d["folder"] == "~backup")
        .filter_map(|d| d["old_uid"].as_u64())
        .collect();
    assert_eq!(
        missing,
        vec![1, 2, 3],
        "each message of ~backup is missing: {v}"
    );
}

// ----- item 3: following old-side folder changes -----

/// Item 3 (a): the old parent `Archive` (with messages) is renamed to `Old`, its children
/// `Archive/2019` and `Archive/2020` move with it. The run follows all three renames, copies
/// nothing, fails nothing, and the new server has `Old`, `Old/2019`, `Old/2020` with exactly
/// their messages and no `Archive*` (today the children's RENAME, planned from the stale LIST,
/// gets NO and fails the whole user).
#[test]
fn renaming_a_parent_on_the_old_server_moves_its_children_too() {
    let ns = "namespace inbox {\n  inbox = yes\n  separator = /\n}\n";
    let fills = [
        ("INBOX", 2, 0),
        ("Archive", 3, 100),
        ("Archive/2019", 4, 200),
        ("Archive/2020", 5, 300),
    ];
    let (old, new, _dir, cfg) = alice(ns, ns, &fills, 1000);
    sync_ok(&cfg, &[]);
    let mut o = alice_at(&old);
    let r = o.raw("RENAME \"Archive\" \"Old\"");
    assert!(r.is_ok(), "{} {}", r.status, r.text);
    let names = folder_names(&mut o);
    o.logout();
    assert!(
        names.contains(&"Old/2019".to_string()) && !names.iter().any(|n| n.starts_with("Archive")),
        "the children moved with their parent on the old server: {names:?}"
    );
    let j = sync_without_failures(&cfg);
    assert_eq!(
        j["copied"],
        0,
        "renamed folders are not copied again: {}",
        brief(&j)
    );
    let mut got = renamed(&j, "alice");
    got.sort();
    let want: Vec<(String, String)> = [
        ("Archive", "Old"),
        ("Archive/2019", "Old/2019"),
        ("Archive/2020", "Old/2020"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "the report lists the renames: {}", brief(&j));
    let mut n = alice_at(&new);
    let names = folder_names(&mut n);
    n.logout();
    assert!(
        !names.iter().any(|n| n.starts_with("Archive")),
        "no Archive* left on the new server: {names:?}"
    );
    for f in ["INBOX", "Old", "Old/2019", "Old/2020"] {
        assert_mirror(&old, &new, "alice", f, f);
    }
    verify_ok(&cfg);
    assert_rerun_copies_nothing(&cfg, "");
}

/// Item 3 (b): with `--propagate-deletes` and a new server without UIDPLUS, the copies of a
/// deleted old folder cannot be removed: that folder fails (exit 1), and the rest of the user
/// is synced: the 3 new messages of another folder are copied (today the error ends the whole
/// user and nothing is copied).
#[test]
fn a_folder_that_cannot_be_deleted_fails_alone() {
    let fills = [("INBOX", 2, 0), ("A", 4, 100), ("B", 4, 200)];
    let (old, new, _dir, cfg) = alice("", &caps_without("UIDPLUS"), &fills, 1000);
    sync_ok(&cfg, &[]);
    let mut o = alice_at(&old);
    o.delete_mailbox("B");
    for i in 0..3 {
        let k = 150 + i;
        let body = message(
            "alice",
            "A",
            &format!("late{i}"),
            &format!("alice-late{i}"),
            2,
        );
        o.append("A", &flags_of(k), Some(&date(k)), &body).unwrap();
    }
    o.logout();
    let j = sync(&cfg, &["--propagate-deletes"]);
    assert_eq!(j["exit"], 1, "a failed folder gives exit 1: {}", brief(&j));
    let u = user(&j, "alice");
    assert!(
        u["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["folder"] == "B"),
        "folder B is reported as failed: {}",
        brief(&j)
    );
    assert!(
        !u["deleted_folders"].to_string().contains("\"B\""),
        "B's copies could not be deleted, so B is not reported deleted: {}",
        brief(&j)
    );
    assert_eq!(j["copied"], 3, "A's new messages are copied: {}", brief(&j));
    assert_mirror(&old, &new, "alice", "A", "A");
    assert_mirror(&old, &new, "alice", "INBOX", "INBOX");
    let mut n = alice_at(&new);
    assert_eq!(
        n.status("B").0,
        4,
        "nothing of B was deleted without UID EXPUNGE"
    );
    n.logout();
    verify_ok(&cfg);
}

// ----- item 5: no UIDPLUS on the new server -----

/// Item 5: on a new server without UIDPLUS, a new folder deleted and recreated (a new
/// UIDVALIDITY; one message then delivered to it there) is refilled with exactly the old
/// messages, and later flag changes on the old side reach exactly their copies, never the
/// message delivered to the new side (today the maps never record the new UIDVALIDITY: Work is
/// never refilled, and flag updates go to UIDs that belong to other messages).
#[test]
fn without_uidplus_a_recreated_new_folder_is_refilled_and_flags_follow() {
    // Work's base 101: its first message has no flag, so the flag run changes it.
    let fills = [("INBOX", 6, 0), ("Work", 8, 101)];
    let (old, new, _dir, cfg) = alice("", &caps_without("UIDPLUS"), &fills, 3);
    sync_ok(&cfg, &[]);
    assert_mirror(&old, &new, "alice", "Work", "Work");
    let mut n = alice_at(&new);
    assert!(!n.has_capability("UIDPLUS"));
    let (_, _, uv_before) = n.status("Work");
    n.delete_mailbox("Work");
    n.create("Work");
    let (_, _, uv_after) = n.status("Work");
    assert_ne!(
        uv_before, uv_after,
        "the recreated folder has a new UIDVALIDITY"
    );
    let only_new = b"From: x@example.net\r\nSubject: delivered to the new Work\r\n\
                     Message-ID: <only-new@example.net>\r\n\r\nhello\r\n";
    n.append("Work", &[], Some("02-Feb-2023 02:02:02 +0000"), only_new)
        .unwrap();
    n.logout();

    // Every check is collected, so that one run shows all of the defect.
    let mut problems: Vec<String> = Vec::new();
    let j = sync(&cfg, &[]);
    if j["exit"] != 0 || j["failed"] != 0 {
        problems.push(format!("refill run failed: {}", brief(&j)));
    }
    if j["copied"] != 8 {
        problems.push(format!(
            "refill run copied {} of Work's 8 messages",
            j["copied"]
        ));
    }
    let work_without_only_new = |new: &Dovecot| -> Result<(), String> {
        let mut o = alice_at(&old);
        let mut n = alice_at(new);
        let a = snapshot(&mut o, "Work");
        let mut b = snapshot(&mut n, "Work");
        let pos = b.iter().position(|m| m.body == only_new);
        match pos {
            Some(p) => {
                let m = b.remove(p);
                if !m.flags.is_empty() {
                    return Err(format!(
                        "the message delivered to the new Work got flags {:?}",
                        m.flags
                    ));
                }
            }
            None => return Err("the message delivered to the new Work is gone".into()),
        }
        common::diff_folder("alice Work (besides the new-only message)", &a, &b)
    };
    if let Err(e) = work_without_only_new(&new) {
        problems.push(format!("after the refill: {e}"));
    }

    // Flag changes on the old side: \Flagged added to some, \Seen removed from others, in both
    // folders (the first messages of Work had the lowest new UIDs before the recreation).
    let mut o = alice_at(&old);
    for f in ["Work", "INBOX"] {
        let msgs = o.fetch_all(f);
        for m in &msgs[..3] {
            o.store_flags(f, m.uid, "+FLAGS", &["\\Flagged"]);
        }
        for m in msgs
            .iter()
            .filter(|m| m.flags.iter().any(|x| x == "\\Seen"))
        {
            o.store_flags(f, m.uid, "-FLAGS", &["\\Seen"]);
        }
    }
    o.logout();
    let j = sync(&cfg, &[]);
    if j["exit"] != 0 || j["failed"] != 0 {
        problems.push(format!("flag run failed: {}", brief(&j)));
    }
    if let Err(e) = work_without_only_new(&new) {
        problems.push(format!("after the flag changes: {e}"));
    }
    if let Err(e) = mirror(&old, &new, "alice", "INBOX", "INBOX") {
        problems.push(format!("after the flag changes: {e}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    verify_ok(&cfg);
}

// ----- item 6: a folder with one failed message keeps its state -----

/// Item 6: a folder whose one message the new server cannot take (NUL bytes, and the new server
/// lacks BINARY) keeps its state: renamed on the old server, it is renamed on the new one,
/// nothing is copied again, and only that message fails again, named by its old UID (today the
/// folder's state is forgotten after the failure, so the renamed folder is copied anew and its
/// messages are on the new server twice).
#[test]
fn a_folder_with_one_refused_message_keeps_its_state_across_a_rename() {
    let fills = [("INBOX", 2, 0), ("Lists", 5, 100)];
    let (old, new, _dir, cfg) = alice("", &caps_without("BINARY"), &fills, 1000);
    let mut o = alice_at(&old);
    let nul = b"From: n@example.org\r\nSubject: with a NUL\r\nMessage-ID: <nul@example.org>\r\n\r\nbefore\0after\r\n";
    let nul_uid = o
        .append_binary("Lists", &[], Some("03-Mar-2021 03:03:03 +0300"), nul)
        .unwrap();
    let base = 110;
    for i in 0..4 {
        let k = base + i;
        let body = message("alice", "Lists", &format!("m{k}"), &format!("alice-{k}"), 2);
        o.append("Lists", &flags_of(k), Some(&date(k)), &body)
            .unwrap();
    }
    o.logout();
    let j = sync(&cfg, &[]);
    assert_eq!(j["exit"], 1, "{}", brief(&j));
    assert_eq!(j["copied"], 2 + 9, "{}", brief(&j));
    let failures = user(&j, "alice")["failures"].clone();
    assert_eq!(
        failures.as_array().unwrap().len(),
        1,
        "only the NUL message fails: {}",
        brief(&j)
    );
    assert_eq!(failures[0]["old_uid"], nul_uid, "{}", brief(&j));
    assert_only_missing(&cfg, "alice", "Lists", nul_uid);

    let mut o = alice_at(&old);
    let r = o.raw("RENAME \"Lists\" \"Feeds\"");
    assert!(r.is_ok(), "{} {}", r.status, r.text);
    o.logout();
    let j = sync(&cfg, &[]);
    assert_eq!(
        j["exit"],
        1,
        "the refused message fails again: {}",
        brief(&j)
    );
    assert_eq!(
        j["copied"],
        0,
        "the renamed folder is not copied again: {}",
        brief(&j)
    );
    let failures = user(&j, "alice")["failures"].clone();
    assert_eq!(
        failures.as_array().unwrap().len(),
        1,
        "only the NUL message fails: {}",
        brief(&j)
    );
    assert_eq!(failures[0]["folder"], "Feeds", "{}", brief(&j));
    assert_eq!(failures[0]["old_uid"], nul_uid, "{}", brief(&j));
    assert_eq!(
        renamed(&j, "alice"),
        vec![("Lists".to_string(), "Feeds".to_string())],
        "{}",
        brief(&j)
    );
    let mut n = alice_at(&new);
    let names = folder_names(&mut n);
    assert!(
        names.contains(&"Feeds".to_string()) && !names.contains(&"Lists".to_string()),
        "{names:?}"
    );
    let mut o = alice_at(&old);
    let mut want = snapshot(&mut o, "Feeds");
    want.retain(|m| m.uid != nul_uid);
    let got = snapshot(&mut n, "Feeds");
    o.logout();
    n.logout();
    if let Err(e) = common::diff_folder("alice Feeds (without the NUL message)", &want, &got) {
        panic!("{e}");
    }
    assert_mirror(&old, &new, "alice", "INBOX", "INBOX");
    // Nothing duplicated, and the one message the new server cannot take is the one difference.
    assert_only_missing(&cfg, "alice", "Feeds", nul_uid);
}

// ----- item 7: rename detection -----

/// Item 7: one message of `2019` copied into a new `Keep`, then `2019` deleted on the old server:
/// that is not a rename. Without propagation the new server keeps `2019` with its 60 copies and
/// gets `Keep` with 1 message (today one matching message out of 60 is enough: the new `2019` is
/// renamed to `Keep`, with 59 unmanaged copies in it).
#[test]
fn one_shared_message_is_not_a_rename() {
    let fills = [("INBOX", 2, 0), ("2019", 60, 100)];
    let (old, new, _dir, cfg) = alice("", "", &fills, 1000);
    sync_ok(&cfg, &[]);
    let mut o = alice_at(&old);
    let all_2019 = snapshot(&mut o, "2019");
    let one = o.fetch_all("2019").swap_remove(17);
    o.create("Keep");
    let flags: Vec<&str> = one.flags.iter().map(String::as_str).collect();
    o.append("Keep", &flags, Some(&one.internaldate), &one.body)
        .unwrap();
    o.logout();
    let mut o = alice_at(&old);
    o.delete_mailbox("2019");
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(
        renamed(&j, "alice"),
        Vec::<(String, String)>::new(),
        "not a rename: {}",
        brief(&j)
    );
    assert_eq!(j["copied"], 1, "Keep's message is copied: {}", brief(&j));
    let mut n = alice_at(&new);
    let names = folder_names(&mut n);
    assert!(
        names.contains(&"2019".to_string()) && names.contains(&"Keep".to_string()),
        "{names:?}"
    );
    let got_2019 = snapshot(&mut n, "2019");
    n.logout();
    if let Err(e) = common::diff_folder("alice 2019 (gone on the old server)", &all_2019, &got_2019)
    {
        panic!("{e}");
    }
    assert_mirror(&old, &new, "alice", "Keep", "Keep");
    assert_mirror(&old, &new, "alice", "INBOX", "INBOX");
    verify_ok(&cfg);
}
