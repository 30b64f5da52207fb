//! The old server is never changed (issue 13, "old server untouched"): whatever imapshift does,
//! an observer sees on the old server exactly what was there before it ran. Before and after
//! every step `TestImap::snapshot` records each account of the old server read-only (EXAMINE and
//! `BODY.PEEK[]`, never SELECT or `BODY[]`): the folder list with attributes, the subscriptions,
//! per folder STATUS (MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN), HIGHESTMODSEQ and the flags
//! EXAMINE announces, and per message its UID, flags (with `\Seen`), INTERNALDATE, size, MODSEQ
//! and a hash of its bytes, and which messages are `\Recent`. `\Recent` belongs to a session
//! (RFC 3501 2.3.2), but EXAMINE leaves it where it is (Dovecot keeps it across any number of
//! snapshots), so it is compared: it is the one trace a SELECT would leave even with
//! `BODY.PEEK[]`. The LIST hints `\Marked` / `\UnMarked` are not (Dovecot shows them or not as
//! its list index happens to be).
//!
//! Steps on an old Dovecot (in another zone than the new one): a full `sync`, a delta after mail
//! and flag changes on the old side, a `sync` with nothing new, `verify`, `verify --deep`,
//! `preflight`, `folders`, a run aborted at a failpoint and one SIGKILLed while held after an
//! APPEND, the resuming `sync`, `sync --propagate-deletes` after an expunge on the old side, a
//! lost state directory (the maps rebuilt by matching), and `cutover --follow` held at its follow
//! passes (IDLE on the old INBOX) and stopped by SIGINT. Then with Cyrus and with Courier (no
//! CONDSTORE) as the old server: `preflight`, a full sync, a sync with nothing new, `verify`,
//! `verify --deep`, `folders`, a delta after mail and a flag change (and verify), and a lost
//! state directory. The accounts hold what makes the `\Seen`
//! trap visible (unseen mail that a plain `BODY[]` would mark read), flagged mail, keywords, a
//! message flagged `\Deleted` but not expunged, nested and non-ASCII (mUTF-7) folders, a
//! `\Noselect` parent, an empty folder, an unsubscribed folder, a subscription without a folder,
//! and a folder that `[filters]` leaves out.
//!
//! The snapshots are no empty ritual: after each change the test makes itself, the diff must name
//! exactly that change.

mod common;

use common::cyrus::{Cyrus, CyrusOpts};
use common::{
    plain_config, run_imapshift, Courier, CourierOpts, Dovecot, DovecotOpts, Knot, Pause, Running,
    ServerSnapshot, TestImap,
};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const PW: &str = "pw";
const USERS: [&str; 2] = ["alice", "bob"];
const PARK: &str = "park.example.net.";

/// The old Dovecot's namespace: separator `.` (Maildir++ style, as Courier and Cyrus have).
const OLD_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = .\n}\n";
/// The new Dovecot's: `/`.
const NEW_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = /\n}\n";

/// Sync tuning and filters of every config here: small batches (a crash lands mid-run), two
/// connection pairs per user (the extra old sessions too), and `Junk` left out.
const TABLES: &str = "[sync]\nbatch_messages = 2\nconnections_per_user = 2\n\
                      [filters]\nexclude_folders = [\"*Junk\"]\n";

fn msg(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.org\r\nSubject: {tag} {i} Gr\u{fc}\u{df}e\r\n\
         Message-ID: <{tag}.{i}@example.com>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\n\
         body of {tag} {i}\r\n{}",
        "some line of text\r\n".repeat(1 + i * 7)
    )
    .into_bytes()
}

/// An INTERNALDATE in one of several zones.
fn date(i: usize) -> String {
    let zones = ["+0000", "-0930", "+0530", "+1300", "-0500"];
    format!(
        "{:02}-Mar-2023 {:02}:15:00 {}",
        1 + i % 28,
        i % 24,
        zones[i % zones.len()]
    )
}

/// Flags by position: unseen, seen, flagged, keywords, `\Deleted` (never expunged), answered
/// drafts.
fn flags(i: usize) -> &'static [&'static str] {
    match i % 6 {
        0 => &[],
        1 => &["\\Seen"],
        2 => &["\\Seen", "\\Flagged"],
        3 => &["$Forwarded", "project-x"],
        4 => &["\\Deleted"],
        _ => &["\\Answered", "\\Draft", "\\Seen"],
    }
}

/// Fills one account of an old server. `p` is the personal namespace prefix (`""` on Dovecot,
/// `"INBOX."` on Cyrus and Courier); the separator is `.` on all three. `Lonely.Child` (whose
/// parent does not exist: `\Noselect`) only when `lonely`: Courier lists such a parent as
/// subscribed, which imapshift once tried to subscribe on the new server every run (fixed:
/// `plan::tests::a_subscribed_noselect_parent_is_subscribed_only_where_it_exists`).
fn seed(c: &mut TestImap, p: &str, tag: &str, lonely: bool) {
    let f = |rel: &str| format!("{p}{rel}");
    let folders: [(String, usize); 6] = [
        ("INBOX".into(), 7),
        (f("Archive"), 2),
        (f("Archive.2024"), 3),
        (f("Archive.2024.Q1"), 1),
        (f("Entw&APw-rfe"), 2),
        (f("Junk"), 3),
    ];
    let mut n = 0;
    for (folder, count) in &folders {
        if folder != "INBOX" {
            c.create(folder);
        }
        for _ in 0..*count {
            c.append(folder, flags(n), Some(&date(n)), &msg(tag, n))
                .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
            n += 1;
        }
    }
    for extra in ["Empty", "Unsubscribed", "Ghost"] {
        c.create(&f(extra));
    }
    if lonely {
        c.create(&f("Lonely.Child"));
        c.subscribe(&f("Lonely.Child"));
    }
    for sub in ["Archive", "Archive.2024", "Entw&APw-rfe", "Junk", "Ghost"] {
        c.subscribe(&f(sub));
    }
    c.subscribe("INBOX");
    // A subscription without a folder: some servers keep it when the folder goes.
    c.delete_mailbox(&f("Ghost"));
}

/// A [`ServerSnapshot`] of every account, by login.
type Snapshots = BTreeMap<String, ServerSnapshot>;

fn snapshot_all(port: u16, users: &[&str]) -> Snapshots {
    users
        .iter()
        .map(|u| {
            let mut c = TestImap::connect(port, u, PW);
            let s = c.snapshot();
            c.logout();
            (u.to_string(), s)
        })
        .collect()
}

/// The old server's accounts as last seen, and what checks them after each step.
struct Watch {
    port: u16,
    users: Vec<&'static str>,
    before: Snapshots,
}

impl Watch {
    fn new(port: u16, users: &[&'static str]) -> Watch {
        let before = snapshot_all(port, users);
        Watch {
            port,
            users: users.to_vec(),
            before,
        }
    }

    /// Panics, naming `step`, the user and every difference, unless the old server is as before.
    fn unchanged(&self, step: &str) {
        let after = snapshot_all(self.port, &self.users);
        for (u, b) in &self.before {
            b.assert_unchanged(&after[u], &format!("{step} (user {u})"));
        }
    }

    /// Runs each `imapshift <args> --config cfg` (each must exit 0), checking the old server
    /// after each (the step named by its label).
    fn steps(&self, cfg: &str, steps: &[(&[&str], &str)]) {
        for (args, label) in steps {
            let mut all = args.to_vec();
            all.extend(["--config", cfg]);
            run_ok(&all, 0);
            self.unchanged(label);
        }
    }

    fn snapshot(&self, user: &str) -> &ServerSnapshot {
        &self.before[user]
    }
}

/// Runs imapshift with the password variable; panics with its output unless it exits `want`.
fn run_ok(args: &[&str], want: i32) -> Output {
    run_env(args, &[], want)
}

fn run_env(args: &[&str], env: &[(&str, &str)], want: i32) -> Output {
    let mut envs = vec![("PW", PW)];
    envs.extend_from_slice(env);
    let out = run_imapshift(args, &envs);
    assert_eq!(
        out.status.code(),
        Some(want),
        "imapshift {args:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Old and new Dovecot, a Knot serving example.com (MX already at the parking target, TTL 1)
/// and example.net (the targets' addresses), and the config.
struct World {
    old: Dovecot,
    new: Dovecot,
    _ns: Knot,
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl World {
    fn start() -> World {
        let users: Vec<(&str, &str)> = USERS.iter().map(|u| (*u, PW)).collect();
        let dovecot = |name: &str, ns: &str| {
            Dovecot::start(
                name,
                &users,
                DovecotOpts {
                    extra_conf: ns.into(),
                    ..Default::default()
                },
            )
        };
        let old = dovecot("old", OLD_NS);
        let new = dovecot("new", NEW_NS);
        assert_ne!(old.tz(), new.tz(), "the servers run in different zones");
        // The new target (127.0.0.4) greets on this port; nothing listens on it at the parking
        // address (127.0.0.3).
        let smtp_port = common::smtp_greeter("127.0.0.4:0");
        let ns = common::parking_dns(PARK, 1);
        let mx = format!(
            "[mx]\ndomains = [\"example.com\"]\nnameservers = [\"{0}\"]\nresolver = \"{0}\"\n\
             parking_target = \"park.example.net\"\nnew_target = \"new-mx.example.net\"\n\
             max_ttl = 1\nsmtp_port = {smtp_port}\n",
            ns.addr()
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imapshift.toml");
        let text = plain_config(
            old.port(),
            new.port(),
            "",
            "",
            &format!("{TABLES}{mx}"),
            &USERS,
        );
        std::fs::write(&cfg, text).unwrap();
        World {
            old,
            new,
            _ns: ns,
            dir,
            cfg,
        }
    }

    fn cfg(&self) -> &str {
        self.cfg.to_str().unwrap()
    }

    fn old(&self, user: &str) -> TestImap {
        TestImap::connect(self.old.port(), user, PW)
    }
}

/// `imapshift args...` in the background with the password variable and `env`.
fn spawn(args: &[&str], env: &[(&'static str, String)]) -> Running {
    let mut envs = vec![("PW", PW)];
    envs.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    common::spawn_logged(args, &envs)
}

/// The test's own change on the old side (new mail in INBOX, `\\Flagged` added in
/// `Archive.2024` by a session that SELECTs it): the snapshot must see exactly that, down to the
/// `\\Recent` the SELECT took, so the comparisons after each step can see such a change. Then it is
/// the new baseline.
fn change_and_see_it(w: &World, watch: &mut Watch) {
    let mut a = w.old("alice");
    let new_uid = a
        .append("INBOX", &[], Some(&date(40)), &msg("delta", 0))
        .unwrap();
    a.store_flags("Archive.2024", 1, "+FLAGS", &["\\Flagged"]);
    a.logout();
    let before = watch.snapshot("alice").clone();
    let after = snapshot_all(w.old.port(), &["alice"])
        .remove("alice")
        .unwrap();
    let (bi, ai) = (&before.folders["INBOX"], &after.folders["INBOX"]);
    let (ba, aa) = (
        &before.folders["Archive.2024"],
        &after.folders["Archive.2024"],
    );
    let st = |s: &Option<[u64; 4]>| {
        let [m, n, v, u] = s.unwrap();
        format!("MESSAGES {m} UIDNEXT {n} UIDVALIDITY {v} UNSEEN {u}")
    };
    assert!(!ba.recent.is_empty(), "appended, never selected: \\Recent");
    let mut recent = bi.recent.clone();
    recent.push(new_uid);
    let (bm, am) = (&ba.messages[&1], &aa.messages[&1]);
    let mut expected = vec![
        format!(
            "folder \"INBOX\": STATUS {} -> {}",
            st(&bi.status),
            st(&ai.status)
        ),
        format!(
            "folder \"INBOX\": HIGHESTMODSEQ {:?} -> {:?}",
            bi.highestmodseq, ai.highestmodseq
        ),
        format!("folder \"INBOX\": \\Recent UIDs {:?} -> {recent:?}", bi.recent),
        format!("folder \"INBOX\" UID {new_uid}: new"),
        format!(
            "folder \"Archive.2024\": HIGHESTMODSEQ {:?} -> {:?}",
            ba.highestmodseq, aa.highestmodseq
        ),
        format!("folder \"Archive.2024\": \\Recent UIDs {:?} -> []", ba.recent),
        "folder \"Archive.2024\" UID 1: flags ($Forwarded project-x) -> ($Forwarded \\Flagged project-x)"
            .to_string(),
        format!(
            "folder \"Archive.2024\" UID 1: MODSEQ {:?} -> {:?}",
            bm.modseq, am.modseq
        ),
    ];
    expected.sort();
    let mut got = before.diff(&after);
    got.sort();
    assert_eq!(got, expected, "the snapshot sees the test's own change");
    watch.before.insert("alice".into(), after);
}

/// Every step of a migration, cutover included, against an old Dovecot: not one flag, UID,
/// counter, folder or subscription of the old server changes.
#[test]
fn no_command_changes_the_old_dovecot() {
    let w = World::start();
    let mut a = w.old("alice");
    seed(&mut a, "", "alice", true);
    a.logout();
    let mut b = w.old("bob");
    seed(&mut b, "", "bob", true);
    b.logout();
    let mut watch = Watch::new(w.old.port(), &USERS);
    let s = watch.snapshot("alice");
    assert_eq!(s.message_count(), 18, "{s:#?}");
    assert!(s.folders["Lonely"].status.is_none(), "a \\Noselect parent");
    assert!(s.subscriptions.contains(&"Ghost".to_string()), "{s:#?}");
    assert!(!s.folders.contains_key("Ghost"), "{s:#?}");
    assert!(s.folders["INBOX"].highestmodseq.is_some(), "CONDSTORE");
    assert!(s.folders["INBOX"]
        .messages
        .values()
        .any(|m| m.flags.is_empty()));
    // The snapshot's own sessions leave the rest unchanged: compared against itself at once.
    watch.unchanged("nothing (two snapshots in a row)");

    let cfg = w.cfg();
    run_ok(&["sync", "--config", cfg], 0);
    watch.unchanged("the full sync");

    change_and_see_it(&w, &mut watch);
    watch.steps(
        cfg,
        &[
            (&["sync"], "the delta sync"),
            (&["sync"], "a sync with nothing new"),
            (&["verify"], "verify"),
            (&["verify", "--deep"], "verify --deep"),
            (&["preflight"], "preflight"),
            (&["folders"], "folders"),
        ],
    );

    // Crashes mid-run: an abort after the first journal write, then SIGKILL while held after an
    // APPEND, then the resuming sync. First something to copy.
    let mut a = w.old("alice");
    for i in 0..6 {
        a.append("Archive.2024", flags(i), Some(&date(i)), &msg("crash", i))
            .unwrap();
    }
    a.logout();
    watch.before = snapshot_all(w.old.port(), &USERS);
    let out = run_imapshift(
        &["sync", "--config", cfg],
        &[("PW", PW), ("IMAPSHIFT_FAILPOINT", "after-journal")],
    );
    assert_eq!(
        out.status.signal(),
        Some(6),
        "aborted (SIGABRT) at the failpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    watch.unchanged("a sync aborted after a journal write");
    let pause = Pause::new("after-append", 2);
    let penv = pause.env();
    let mut run = spawn(&["sync", "--config", cfg], &penv);
    pause.wait_reached(Duration::from_secs(60));
    watch.unchanged("a sync held after an APPEND");
    run.child.kill().unwrap(); // SIGKILL
    let end = run.finish();
    assert_eq!(end.code, None, "killed by SIGKILL: {}", end.stderr);
    watch.unchanged("a sync SIGKILLed after an APPEND");
    run_ok(&["sync", "--config", cfg], 0);
    watch.unchanged("the sync resuming after the crashes");

    // An expunge on the old side carried with --propagate-deletes (the new side only).
    let mut a = w.old("alice");
    a.expunge_uid("Archive", 1);
    a.logout();
    watch.before = snapshot_all(w.old.port(), &USERS);
    assert!(
        watch
            .snapshot("alice")
            .flags("INBOX", 5)
            .contains(&"\\Deleted".to_string()),
        "the \\Deleted message stays"
    );
    run_ok(&["sync", "--propagate-deletes", "--config", cfg], 0);
    watch.unchanged("sync --propagate-deletes");

    // The state directory lost: the maps are rebuilt by matching.
    std::fs::remove_dir_all(w.dir.path().join("state")).unwrap();
    run_ok(&["sync", "--config", cfg], 0);
    watch.unchanged("a sync after the state directory was lost");
    run_ok(&["verify", "--config", cfg], 0);
    watch.unchanged("verify after the map rebuild");

    cutover_follow(&w, &mut watch);
}

/// `cutover --follow`, held at its first follow pass (the IDLE session on the old INBOX open),
/// stray mail delivered to the old server, then held at the second pass and stopped by SIGINT.
fn cutover_follow(w: &World, watch: &mut Watch) {
    let pause = Pause::new_at("follow-pass", &[1, 2]);
    let run = spawn(
        &[
            "cutover",
            "--config",
            w.cfg(),
            "--dns-interval",
            "0.2s",
            "--follow",
            "10m",
            "--follow-interval",
            "1s",
            "--json",
        ],
        &pause.env(),
    );
    pause.wait_reached(Duration::from_secs(120));
    assert!(run.log().contains("NEXT STEP"), "{}", run.log());
    watch.unchanged("cutover (parking wait, final sync, verification) up to the follow");

    let mut a = w.old("alice");
    a.append("INBOX", &["\\Seen"], None, &msg("stray", 0))
        .unwrap();
    a.append("INBOX", &[], None, &msg("stray", 1)).unwrap();
    a.logout();
    watch.before = snapshot_all(w.old.port(), &USERS);
    pause.release();
    pause.wait_reached_nth(2, Duration::from_secs(60));
    let mut n = TestImap::connect(w.new.port(), "alice", PW);
    let carried = n
        .fetch_all("INBOX")
        .iter()
        .filter(|m| common::subject(m).starts_with("stray"))
        .count();
    n.logout();
    assert_eq!(
        carried,
        2,
        "the first follow pass carried the stray mail:\n{}",
        run.log()
    );
    watch.unchanged("a follow pass that carried stray mail");
    run.signal("INT");
    run.wait_for("stopping cleanly", 20);
    pause.release_nth(2);
    let end = run.finish();
    assert_eq!(
        end.code,
        Some(130),
        "SIGINT during --follow\n{}\n{}",
        end.stdout,
        end.stderr
    );
    watch.unchanged("cutover --follow stopped by SIGINT");
}

/// A full sync and verify (and their re-runs) from an old server of another vendor into a new
/// Dovecot, each checked against the old server's snapshot.
fn other_vendor_untouched(old_port: u16, prefix: &str) {
    let user = USERS[0];
    let mut c = TestImap::connect(old_port, user, PW);
    seed(&mut c, prefix, user, true);
    c.logout();
    let new = Dovecot::start(
        "new",
        &[(user, PW)],
        DovecotOpts {
            extra_conf: NEW_NS.into(),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        plain_config(old_port, new.port(), "", "", TABLES, &[user]),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let mut watch = Watch::new(old_port, &[USERS[0]]);
    assert_eq!(watch.snapshot(user).message_count(), 18);
    watch.unchanged("nothing (two snapshots in a row)");
    watch.steps(
        cfg,
        &[
            (&["preflight"], "preflight"),
            (&["sync"], "the full sync"),
            (&["sync"], "a sync with nothing new"),
            (&["verify"], "verify"),
            (&["verify", "--deep"], "verify --deep"),
            (&["folders"], "folders"),
        ],
    );
    // New mail and a flag changed on the old side by the test's own session (the new baseline),
    // then the delta that carries them.
    let mut c = TestImap::connect(old_port, user, PW);
    c.append("INBOX", &[], Some(&date(41)), &msg("delta", 1))
        .unwrap();
    c.store_flags("INBOX", 1, "+FLAGS", &["\\Flagged"]);
    c.logout();
    let after = snapshot_all(old_port, &[user]);
    assert_ne!(
        watch.before[user].diff(&after[user]),
        Vec::<String>::new(),
        "the snapshot sees the test's own change"
    );
    watch.before = after;
    watch.steps(
        cfg,
        &[
            (&["sync"], "the delta after new mail and a flag change"),
            (&["verify"], "verify after the delta"),
        ],
    );
    std::fs::remove_dir_all(Path::new(cfg).parent().unwrap().join("state")).unwrap();
    run_ok(&["sync", "--config", cfg], 0);
    watch.unchanged("a sync after the state directory was lost");
}

/// Cyrus 3.6 as the old server (CONDSTORE, folders under `INBOX.`).
#[test]
fn preflight_sync_delta_and_verify_leave_an_old_cyrus_untouched() {
    let old = Cyrus::start("old", &[("alice", PW)], CyrusOpts::default());
    other_vendor_untouched(old.port(), "INBOX.");
}

/// Courier-IMAP 5.0 as the old server (no CONDSTORE: no MODSEQ to compare, so flags and counters
/// carry the proof).
#[test]
fn preflight_sync_delta_and_verify_leave_an_old_courier_untouched() {
    let old = Courier::start("old", &[("alice", PW)], CourierOpts::default());
    other_vendor_untouched(old.port(), "INBOX.");
}
