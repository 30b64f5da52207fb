//! Exactly once when the two servers, or the wire between them, differ (issue 10, items 1, 4, 9
//! and 11): regression tests against real Dovecot, with the programmable proxy of
//! tests/common/proxy.rs between imapshift and one of the servers where the fault is on the
//! wire.
//!
//! * Item 4: one old message that cannot be read (its file unreadable to the server: Dovecot
//!   answers `NO [SERVERBUG]` with `imap_fetch_failure = no-after`, and drops the connection with
//!   its default `disconnect-immediately`), or a connection cut every time the old server sends
//!   that message's body. The run must narrow the batch down, copy everything else exactly, name
//!   the UID, exit 1; a re-run fails only that UID again and copies nothing.
//! * Item 9: the new server's reply to a MULTIAPPEND does not come in time (the proxy holds the
//!   rest of the command back, keeping the server's socket open); imapshift times out, reconnects
//!   and copies the batch again; after that run the proxy lets the held command through and the
//!   server commits it late. The next run must leave the new server with exactly the old
//!   server's messages.
//! * Item 11: a FETCH listing reply missing `RFC822.SIZE` for one message must never make it look
//!   expunged (with `--propagate-deletes` its copy would be deleted); a `BODY[] NIL` must never be
//!   appended as an empty message.
//! * Item 1 (bytes): a new server that changes the bytes it is given (the proxy adds a trailing
//!   CRLF to every APPEND literal) must not make a copy unrecognisable: after a lost state
//!   directory, or a crash after an APPEND, nothing is copied twice.
//!
//! The old Dovecot runs with `TZ=Europe/Berlin`, the new one with `TZ=America/New_York` (the
//! harness's `TZ=UTC` is overridden: a later `import_environment` wins, checked with doveconf),
//! so INTERNALDATEs are spelled differently on the two sides; the judge compares them as
//! instants. The `proxy_selftest_*` tests check the proxy itself.

mod common;

use common::{show_output, SyncRun as Run};

use common::gen;
use common::proxy::{body_to_nil, drop_fetch_item, fetch_uid, AppendPacing, Proxy};
use common::{run_imapshift, Dovecot, DovecotOpts, TestImap, TestMsg, Tok};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PW: &str = "pw";
const ENVS: &[(&str, &str)] = &[("PW", PW)];
const OLD_TZ: &str = "import_environment = TZ=Europe/Berlin\n";
const NEW_TZ: &str = "import_environment = TZ=America/New_York\n";
/// A failure guard for waiting on a state (never a pacing delay).
const GUARD: Duration = Duration::from_secs(30);

// ----- servers, mail, runs -----

fn dovecot(name: &str, tz: &str, extra: &str) -> Dovecot {
    Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: format!("{tz}{extra}"),
            ..Default::default()
        },
    )
}

fn old_server(extra: &str) -> Dovecot {
    dovecot("old", OLD_TZ, extra)
}

fn new_server(extra: &str) -> Dovecot {
    dovecot("new", NEW_TZ, extra)
}

/// A test message: unique Subject and Message-ID, `extra` in its body.
fn message(tag: &str, folder: &str, i: usize, extra: &str) -> Vec<u8> {
    format!(
        "From: Sender {i} <s{i}@old.example>\r\nTo: alice@old.example\r\n\
         Subject: {tag} {folder} {i}\r\nMessage-ID: <{tag}-{folder}-{i}@old.example>\r\n\
         Date: Mon, 1 Jan 2024 10:{:02}:00 +0000\r\n\r\n{extra}{}\r\n-- \r\nend {i}\r\n",
        i % 60,
        "Some text of the message, repeated. ".repeat(5 + i % 7)
    )
    .into_bytes()
}

/// Summer and winter dates, so both UTC offsets of each zone show up.
fn date(i: usize) -> String {
    let month = ["Jan", "Jul", "Mar", "Oct"][i % 4];
    format!(
        "{:02}-{month}-20{:02} {:02}:{:02}:07 +0000",
        1 + i % 28,
        15 + i % 9,
        i % 24,
        i % 60
    )
}

fn flags(i: usize) -> Vec<&'static str> {
    match i % 3 {
        0 => vec!["\\Seen"],
        1 => vec!["\\Seen", "\\Flagged", "$Label1"],
        _ => vec![],
    }
}

/// Seeds `counts` messages per folder (creating folders other than INBOX); `extra(folder, i)`
/// goes into a message's body. Returns the UIDs per folder, in order.
fn seed(
    old: &Dovecot,
    tag: &str,
    counts: &[(&str, usize)],
    extra: &dyn Fn(&str, usize) -> String,
) -> BTreeMap<String, Vec<u32>> {
    let mut c = TestImap::connect(old.port(), "alice", PW);
    let mut uids = BTreeMap::new();
    for &(folder, n) in counts {
        if folder != "INBOX" {
            c.create(folder);
        }
        let mut v = Vec::new();
        for i in 0..n {
            let body = message(tag, folder, i, &extra(folder, i));
            let uid = c
                .append(folder, &flags(i), Some(&date(i)), &body)
                .unwrap_or_else(|e| panic!("seeding {folder} #{i}: {e}"));
            v.push(uid);
        }
        uids.insert(folder.to_string(), v);
    }
    c.logout();
    uids
}

/// `imapshift.toml` in `dir` (same login and password on both sides).
fn config(dir: &Path, old_port: u16, new_port: u16, new_extra: &str, tables: &str) -> PathBuf {
    let text = common::plain_config(old_port, new_port, "", new_extra, tables, &["alice"]);
    let path = dir.join("imapshift.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A proxy in front of the new server, and a config in a temp dir of its own for old -> that
/// proxy (see [`config`]).
fn via_new_proxy(
    old: &Dovecot,
    new: &Dovecot,
    new_extra: &str,
    tables: &str,
) -> (Proxy, tempfile::TempDir, PathBuf) {
    let proxy = Proxy::start("new", new.port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), proxy.port(), new_extra, tables);
    (proxy, dir, cfg)
}

fn sync(cfg: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut args = vec!["sync", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    Run::of(run_imapshift(&args, envs), extra)
}

/// `imapshift verify --json`: exit code and report.
fn verify(cfg: &Path) -> (Option<i32>, serde_json::Value) {
    let out = run_imapshift(
        &["verify", "--config", cfg.to_str().unwrap(), "--json"],
        ENVS,
    );
    let j = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify: stdout is not JSON ({e})\n{}", show_output(&out)));
    (out.status.code(), j)
}

/// Asserts that verify finds nothing wrong: exit 0, no duplicate, nothing missing.
fn assert_verified(what: &str, cfg: &Path) {
    let (code, j) = verify(cfg);
    let t = &j["totals"];
    println!(
        "{what}: verify exit {code:?}: missing {}, duplicates {}, only_new {}",
        t["missing"], t["duplicates"], t["only_new"]
    );
    assert_eq!(
        t["duplicates"], 0,
        "{what}: verify finds duplicates: {}",
        j["users"][0]["differences"]
    );
    assert_eq!(
        t["missing"], 0,
        "{what}: verify does not recognise the copies: {}",
        j["users"][0]["differences"]
    );
    assert_eq!(code, Some(0), "{what}: verify: {j}");
}

// ----- judging -----

type Snapshot = BTreeMap<String, Vec<TestMsg>>;

/// Every folder's messages, read directly from the server (never through a proxy).
fn snapshot(server: &Dovecot) -> Snapshot {
    let mut c = TestImap::connect(server.port(), "alice", PW);
    let names: Vec<String> = c.list().into_iter().map(|(_, _, n)| n).collect();
    let mut out = BTreeMap::new();
    for n in names {
        let msgs = c.fetch_all(&n);
        out.insert(n, msgs);
    }
    c.logout();
    out
}

fn count(server: &Dovecot, folder: &str) -> u32 {
    let mut c = TestImap::connect(server.port(), "alice", PW);
    let (n, _, _) = c.status(folder);
    c.logout();
    n
}

/// Seconds since the epoch of an INTERNALDATE (`dd-Mon-yyyy hh:mm:ss +zzzz`).
fn instant(date: &str) -> i64 {
    parse_internaldate(date).unwrap_or_else(|| panic!("not an INTERNALDATE: {date:?}"))
}

fn parse_internaldate(date: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (day, rest) = date.trim().split_once('-')?;
    let (mon, rest) = rest.split_once('-')?;
    let mut w = rest.split(' ');
    let (year, time, zone) = (w.next()?, w.next()?, w.next()?);
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let y: i64 = year.parse().ok()?;
    let d: i64 = day.trim().parse().ok()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let z: i64 = zone.get(1..)?.parse().ok()?;
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    Some(days * 86_400 + t.first()? * 3600 + t.get(1)? * 60 + t.get(2)? - offset)
}

fn subject(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .unwrap_or_else(|| "(no subject)".into())
}

/// What a copy must keep: bytes, flags, INTERNALDATE as an instant.
type Judged = (Vec<u8>, Vec<String>, i64);

/// Asserts that every folder of `new` holds exactly `old`'s messages (the same multiset of
/// `transform(bytes)`, flags and instants), leaving out the old messages named in `skip`, and
/// that the two servers really are in different zones (Berlin and New York offsets).
fn assert_copied(
    what: &str,
    old: &Snapshot,
    new: &Snapshot,
    skip: &[(&str, u32)],
    transform: &dyn Fn(&[u8]) -> Vec<u8>,
) {
    let mut errs = Vec::new();
    for (folder, msgs) in old {
        let mut want: Vec<Judged> = msgs
            .iter()
            .filter(|m| !skip.contains(&(folder.as_str(), m.uid)))
            .map(|m| {
                (
                    transform(&m.body),
                    m.flags.clone(),
                    instant(&m.internaldate),
                )
            })
            .collect();
        let mut got: Vec<Judged> = new
            .get(folder)
            .into_iter()
            .flatten()
            .map(|m| (m.body.clone(), m.flags.clone(), instant(&m.internaldate)))
            .collect();
        want.sort();
        got.sort();
        if want == got {
            continue;
        }
        let mut s = format!(
            "folder {folder}: {} expected, {} on the new server",
            want.len(),
            got.len()
        );
        let mut tally: BTreeMap<String, (i32, i32)> = BTreeMap::new();
        for w in &want {
            tally.entry(subject(&w.0)).or_default().0 += 1;
        }
        for g in &got {
            tally.entry(subject(&g.0)).or_default().1 += 1;
        }
        for (subj, (w, g)) in tally {
            if g > w {
                s.push_str(&format!(
                    "\n  DUPLICATED {subj:?}: {g} copies, {w} expected"
                ));
            } else if g < w {
                s.push_str(&format!("\n  MISSING {subj:?}: {g} copies, {w} expected"));
            }
        }
        if let Some((w, g)) = want.iter().zip(&got).find(|(w, g)| w != g) {
            s.push_str(&format!(
                "\n  first difference: expected {:?} {:?} {} / got {:?} {:?} {}",
                subject(&w.0),
                w.1,
                w.2,
                subject(&g.0),
                g.1,
                g.2
            ));
        }
        errs.push(s);
    }
    assert!(
        errs.is_empty(),
        "{what}: the new server does not hold exactly the old server's messages:\n{}",
        errs.join("\n")
    );
    gen::assert_zones(old.values().flatten(), new.values().flatten());
}

fn same(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

/// One more run, `after` which the new server holds exactly `want` (see [`assert_copied`]);
/// the run exits 0 and verify is clean.
fn last_run_exact(
    what: &str,
    after: &str,
    cfg: &Path,
    want: &Snapshot,
    new: &Dovecot,
    transform: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Run {
    let r = sync(cfg, &[], ENVS);
    assert_copied(
        &format!("{what}: {after}"),
        want,
        &snapshot(new),
        &[],
        transform,
    );
    assert_eq!(r.code, Some(0), "{what}\n{}", r.show());
    assert_verified(what, cfg);
    r
}

/// The Maildir file of the old message whose body contains `marker`.
fn maildir_file(server: &Dovecot, marker: &str) -> PathBuf {
    let md = server.maildir("alice");
    let mut found = Vec::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            if b.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "files holding {marker:?}: {found:?}");
    found.pop().unwrap()
}

// ----- item 4: one unreadable old message -----

const UNREADABLE: &str = "UNREADABLE-BODY-MARKER-4f1c";

/// How the one bad message is made bad.
enum Bad {
    /// Its file is unreadable to the server (mode 000; the mail processes are not root).
    File,
    /// The proxy in front of the old server cuts the connection whenever its body goes by.
    CutOnBody,
}

/// Item 4: INBOX (12) and Work (5) on the old server, batches of 4; INBOX's 6th message
/// (second of its batch) cannot be fetched. Expects: exit 1, one failure naming INBOX and that
/// UID, the user `partial` (not failed after its reconnects), every other message copied
/// exactly; a re-run fails only that UID again and copies nothing.
fn one_bad_message(what: &str, old_extra: &str, bad: Bad) {
    let old = old_server(old_extra);
    let new = new_server("");
    let uids = seed(&old, "bad", &[("INBOX", 12), ("Work", 5)], &|f, i| {
        if f == "INBOX" && i == 5 {
            format!("{UNREADABLE}\r\n")
        } else {
            String::new()
        }
    });
    let bad_uid = uids["INBOX"][5];
    let want = snapshot(&old);
    let proxy = match bad {
        Bad::File => {
            let file = maildir_file(&old, UNREADABLE);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
            None
        }
        Bad::CutOnBody => {
            let p = Proxy::start("old", old.port());
            p.cut_when_downstream_contains(UNREADABLE.as_bytes(), None);
            Some(p)
        }
    };
    let old_port = proxy.as_ref().map_or(old.port(), Proxy::port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        old_port,
        new.port(),
        "",
        "[sync]\nbatch_messages = 4\n",
    );

    for run in 1..=2 {
        let r = sync(&cfg, &[], ENVS);
        let failures = r.failures();
        assert_eq!(
            failures,
            vec![("INBOX".to_string(), Some(u64::from(bad_uid)))],
            "{what}: run {run}: the report must name exactly the unreadable message (INBOX, \
             UID {bad_uid}); user status {}, error {}\n{}",
            r.user()["status"],
            r.user()["error"],
            r.show()
        );
        assert_eq!(
            r.user()["status"],
            "partial",
            "{what}: run {run}: {}",
            r.show()
        );
        assert_eq!(r.code, Some(1), "{what}: run {run}: {}", r.show());
        assert_eq!(r.j["exit_code"], 1, "{what}: run {run}");
        if run == 2 {
            assert_eq!(r.copied(), 0, "{what}: the re-run copied again");
        }
        assert_copied(
            &format!("{what}: run {run}"),
            &want,
            &snapshot(&new),
            &[("INBOX", bad_uid)],
            &same,
        );
    }
    // After the cutover mail is delivered to the new INBOX: the next run looks at the unknown
    // new mail for copies made earlier (headers of the old messages to copy, the unreadable one
    // among them). That must still name only the unreadable message, not fail the user.
    let mut n = TestImap::connect(new.port(), "alice", PW);
    n.append(
        "INBOX",
        &[],
        None,
        b"From: x@example.org\r\nSubject: delivered to the new server\r\n\r\nhi\r\n",
    )
    .unwrap();
    n.logout();
    let r = sync(&cfg, &[], ENVS);
    assert_eq!(
        r.failures(),
        vec![("INBOX".to_string(), Some(u64::from(bad_uid)))],
        "{what}: run 3 (new mail on the new server): {}",
        r.show()
    );
    assert_eq!(r.user()["status"], "partial", "{what}: run 3: {}", r.show());
    assert_eq!(r.copied(), 0, "{what}: run 3 copied again: {}", r.show());
    if let Some(p) = &proxy {
        assert!(p.cuts() > 0, "{what}: the proxy never cut");
        println!("{what}: {} connections, {} cuts", p.accepted(), p.cuts());
    }
}

/// Item 4 with a message file the old server cannot read and `imap_fetch_failure = no-after`:
/// the batch's FETCH gets `NO [SERVERBUG]` (the other messages' data come, the bad one has no
/// BODY[]; fetching it again on that connection makes Dovecot disconnect). Proves the run
/// narrows down to that UID, names it, copies the rest, exits 1, and a re-run copies nothing.
#[test]
fn unreadable_old_message_no_serverbug() {
    one_bad_message(
        "unreadable (NO [SERVERBUG])",
        "imap_fetch_failure = no-after\n",
        Bad::File,
    );
}

/// Item 4 with Dovecot's default `imap_fetch_failure = disconnect-immediately`: fetching the
/// unreadable message drops the connection (`* BYE`), at the same UID on every attempt. Proves
/// the same outcome as with a NO: that UID named and skipped, the rest copied, exit 1.
#[test]
fn unreadable_old_message_server_disconnects() {
    one_bad_message("unreadable (BYE)", "", Bad::File);
}

/// Item 4, on the wire: the proxy in front of the old server cuts the connection every time the
/// server sends one message's body. Proves the run names that UID (exit 1, everything else
/// copied exactly) instead of failing the user after its reconnect attempts, on every run.
#[test]
fn connection_cut_at_one_old_message() {
    one_bad_message("cut at one message", "", Bad::CutOnBody);
}

// ----- item 9: a MULTIAPPEND committed after the client timed out -----

/// Item 9: 60 messages, batches of 20, `[new] timeout_secs = 2`. The proxy in front of the new
/// server lets the first APPEND's first 300 literal bytes through and holds the rest, keeping the
/// server's socket open: imapshift times out, reconnects through the proxy (clean), resolves its
/// intents (the held batch is not on the server) and copies the batch again. After that run the
/// proxy forwards the held bytes and the server commits the batch late (checked: 20 more
/// messages). Proves the next run leaves exactly the old server's messages on the new one (the
/// late copies, imapshift's own, removed or never counted twice) and verify finds no duplicate.
#[test]
fn late_multiappend_commit_after_timeout() {
    let what = "late MULTIAPPEND";
    let old = old_server("");
    let new = new_server("");
    seed(&old, "late", &[("INBOX", 60)], &|_, _| String::new());
    let want = snapshot(&old);
    let tables = "[sync]\nbatch_messages = 20\n";
    let (proxy, _dir, cfg) = via_new_proxy(&old, &new, "timeout_secs = 2\n", tables);
    proxy.hold_upstream_after(b"APPEND", 300);
    let r1 = sync(&cfg, &[], ENVS);
    let hs = proxy.hold_status();
    println!("{what}: hold {hs:?}; {} connections", proxy.accepted());
    assert!(hs.engaged, "{what}: the hold never engaged\n{}", r1.show());
    assert!(
        hs.client_gone,
        "{what}: imapshift never gave up the held connection"
    );
    assert!(
        proxy.accepted() >= 2,
        "{what}: no reconnect to the new server\n{}",
        r1.show()
    );
    assert!(
        matches!(r1.code, Some(0) | Some(1)),
        "{what}: first run\n{}",
        r1.show()
    );
    let before = count(&new, "INBOX");
    let reply = proxy
        .release(GUARD)
        .unwrap_or_else(|e| panic!("{what}: release: {e}"));
    let after = count(&new, "INBOX");
    println!("{what}: the held APPEND answered {reply:?}; INBOX {before} -> {after}");
    assert!(
        reply.contains(" OK"),
        "{what}: the server did not commit the late APPEND: {reply}"
    );
    assert_eq!(
        after,
        before + 20,
        "{what}: the late MULTIAPPEND did not add its 20 messages"
    );

    last_run_exact(what, "after the next run", &cfg, &want, &new, &same);
}

// ----- item 11: a FETCH reply missing an item, BODY[] NIL -----

/// Dovecot's capabilities without CONDSTORE and QRESYNC: every run lists a folder in full with
/// `FETCH (UID RFC822.SIZE FLAGS)`.
const NO_CONDSTORE: &str = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE \
     SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND \
     URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 \
     ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE LITERAL+\n";

/// Item 11: the first run copies INBOX (8 messages); the old server then expunges its 6th
/// message; on the second run, with `--propagate-deletes`, the proxy in front of the old server
/// (which lacks CONDSTORE, so the folder is listed in full) drops `RFC822.SIZE` from the listing
/// reply of the 3rd message (only from that first reply: asked again, the server's answer comes
/// through whole). Proves that message is never taken for expunged: its copy is still
/// on the new server (the item refetched or merged, or the folder reported failed: exit 1), while
/// the copy of the really expunged one goes when the run succeeds.
#[test]
fn listing_reply_missing_rfc822_size_deletes_nothing() {
    let what = "FETCH reply without RFC822.SIZE";
    let old = old_server(NO_CONDSTORE);
    let new = new_server("");
    let uids = seed(&old, "size", &[("INBOX", 8)], &|_, _| String::new());
    let (victim, expunged) = (uids["INBOX"][2], uids["INBOX"][5]);
    let proxy = Proxy::start("old", old.port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), proxy.port(), new.port(), "", "");
    let r1 = sync(&cfg, &[], ENVS);
    assert_eq!(r1.code, Some(0), "{what}: first run\n{}", r1.show());
    assert_eq!(count(&new, "INBOX"), 8);

    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.expunge_uid("INBOX", expunged);
    c.logout();
    let want = snapshot(&old);
    // Only the first reply that carries it (the listing): a refetch gets the item.
    let dropped = std::sync::atomic::AtomicBool::new(false);
    proxy.rewrite_downstream(move |resp| {
        let out = drop_fetch_item(resp, "RFC822.SIZE");
        if fetch_uid(resp) == Some(victim) && out != resp && !dropped.swap(true, SeqCst) {
            out
        } else {
            resp.to_vec()
        }
    });
    let r2 = sync(&cfg, &["--propagate-deletes"], ENVS);
    proxy.clear_rules();
    assert!(
        proxy.responses_rewritten() > 0,
        "{what}: the old server's listing never came through the rule"
    );
    let got = snapshot(&new);
    let victim_subject = subject(&message("size", "INBOX", 2, ""));
    let copies = got["INBOX"]
        .iter()
        .filter(|m| subject(&m.body) == victim_subject)
        .count();
    assert_eq!(
        copies,
        1,
        "{what}: the copy of old UID {victim} (present on the old server, its RFC822.SIZE \
         missing from one reply) was deleted from the new server\n{}",
        r2.show()
    );
    match r2.code {
        Some(0) => assert_copied(what, &want, &got, &[], &same),
        Some(1) => assert!(
            r2.failures().iter().any(|(f, _)| f == "INBOX"),
            "{what}: exit 1 without naming INBOX\n{}",
            r2.show()
        ),
        _ => panic!("{what}: second run\n{}", r2.show()),
    }
}

/// Item 11: the proxy in front of the old server replaces the `BODY[]` literal of INBOX's 4th
/// message (of 8) with `NIL`; a second proxy in front of the new server watches every APPEND
/// literal. Proves the message is never appended as an empty message (no empty literal reaches
/// the new server, which would store it if it accepted empty messages; Dovecot refuses them):
/// the run reports that UID failed (exit 1), the other 7 are copied exactly.
#[test]
fn body_nil_is_not_appended_as_empty_message() {
    let what = "BODY[] NIL";
    let old = old_server("");
    let new = new_server("");
    let uids = seed(&old, "nil", &[("INBOX", 8)], &|_, _| String::new());
    let victim = uids["INBOX"][3];
    let want = snapshot(&old);
    let old_proxy = Proxy::start("old", old.port());
    old_proxy.rewrite_downstream(move |resp| {
        if fetch_uid(resp) == Some(victim) {
            body_to_nil(resp)
        } else {
            resp.to_vec()
        }
    });
    let new_proxy = Proxy::start("new", new.port());
    let empty = Arc::new(AtomicUsize::new(0));
    let e = empty.clone();
    new_proxy.rewrite_append_literals(move |body| {
        if body.is_empty() {
            e.fetch_add(1, SeqCst);
        }
        body.to_vec()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old_proxy.port(), new_proxy.port(), "", "");
    let r = sync(&cfg, &[], ENVS);
    assert!(
        old_proxy.responses_rewritten() > 0,
        "{what}: the rule never fired"
    );
    let got = snapshot(&new);
    assert!(
        got["INBOX"].iter().all(|m| !m.body.is_empty()),
        "{what}: an empty message is on the new server"
    );
    assert_eq!(
        empty.load(SeqCst),
        0,
        "{what}: imapshift sent the new server an empty APPEND literal for old UID {victim} \
         (BODY[] NIL taken for an empty message)\n{}",
        r.show()
    );
    assert_eq!(
        r.failures(),
        vec![("INBOX".to_string(), Some(u64::from(victim)))],
        "{what}: the report must name UID {victim}\n{}",
        r.show()
    );
    assert_eq!(r.code, Some(1), "{what}\n{}", r.show());
    assert_copied(what, &want, &got, &[("INBOX", victim)], &same);
}

// ----- item 1: bytes rewritten on APPEND -----

fn add_crlf(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

/// Seeds INBOX (8) and Work (5), one INBOX message with bare LF line ends; checks that the old
/// Dovecot serves that one with CRLF (it converts bare LF itself, so imapshift never sees bare
/// LF from it: only the trailing-CRLF rewrite is a case here). Returns the old snapshot.
fn seed_for_rewrite(old: &Dovecot, tag: &str) -> Snapshot {
    seed(old, tag, &[("INBOX", 8), ("Work", 5)], &|_, _| {
        String::new()
    });
    let mut c = TestImap::connect(old.port(), "alice", PW);
    let lf = format!(
        "From: lf@old.example\nSubject: {tag} bare LF\nMessage-ID: <{tag}-lf@old.example>\n\n\
         line one\nline two\n"
    );
    c.append("INBOX", &["\\Seen"], Some(&date(3)), lf.as_bytes())
        .unwrap();
    c.logout();
    let snap = snapshot(old);
    let served = snap["INBOX"].last().unwrap();
    assert_eq!(
        served.body,
        lf.replace('\n', "\r\n").as_bytes(),
        "the old Dovecot no longer converts bare LF to CRLF: add a bare-LF rewrite case"
    );
    snap
}

/// Old and new servers, the old one seeded, and a proxy in front of the new one that adds a
/// CRLF to every APPENDed message: the set-up of the rewritten-bytes tests.
struct Rewriting {
    old: Dovecot,
    new: Dovecot,
    want: Snapshot,
    proxy: Proxy,
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

fn rewriting(tag: &str) -> Rewriting {
    let old = old_server("");
    let new = new_server("");
    let want = seed_for_rewrite(&old, tag);
    let (proxy, dir, cfg) = via_new_proxy(&old, &new, "", "[sync]\nbatch_messages = 3\n");
    proxy.rewrite_append_literals(add_crlf);
    Rewriting {
        old,
        new,
        want,
        proxy,
        dir,
        cfg,
    }
}

/// Item 1: the proxy in front of the new server adds a trailing CRLF to every APPEND literal (a
/// new server that changes the bytes it is given). After a first sync, the state directory is
/// deleted and sync runs again through the proxy. Proves the copies are recognised despite the
/// changed bytes and the different time zones: nothing copied, no folder holds a message twice,
/// verify finds no duplicate and nothing missing.
#[test]
fn append_bytes_rewritten_then_state_lost() {
    let what = "bytes rewritten, state lost";
    let Rewriting {
        old: _old,
        new,
        want,
        proxy,
        dir,
        cfg,
    } = rewriting("rw");
    let r1 = sync(&cfg, &[], ENVS);
    assert_eq!(r1.code, Some(0), "{what}: first run\n{}", r1.show());
    assert_eq!(proxy.literals_rewritten(), 14, "{what}: literals rewritten");
    assert_copied(
        &format!("{what}: first run"),
        &want,
        &snapshot(&new),
        &[],
        &add_crlf,
    );
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let after = "after the run without state";
    let r2 = last_run_exact(what, after, &cfg, &want, &new, &add_crlf);
    assert_eq!(r2.copied(), 0, "{what}: copied again\n{}", r2.show());
}

/// Item 1, crash variant: the same rewriting proxy; the first run aborts right after the second
/// batch's APPEND (`IMAPSHIFT_FAILPOINT=after-append`, hit 2: the copies are on the server, the
/// maps not committed); the re-run resolves the intents through the proxy. Proves the rewritten
/// copies are recognised as the intents' copies: no duplicate, verify clean.
#[test]
fn append_bytes_rewritten_then_crash_after_append() {
    let what = "bytes rewritten, crash after APPEND";
    let Rewriting {
        old: _old,
        new,
        want,
        proxy: _proxy,
        dir: _dir,
        cfg,
    } = rewriting("rwc");
    let crash = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[
            ("PW", PW),
            ("IMAPSHIFT_FAILPOINT", "after-append"),
            ("IMAPSHIFT_FAILPOINT_HIT", "2"),
        ],
    );
    assert!(
        !crash.status.success() && String::from_utf8_lossy(&crash.stderr).contains("failpoint"),
        "{what}: the run did not stop at the failpoint\n{}",
        show_output(&crash)
    );
    let on_new: u32 = snapshot(&new).values().map(|v| v.len() as u32).sum();
    assert_eq!(on_new, 6, "{what}: two batches of 3 before the crash");
    last_run_exact(what, "after the re-run", &cfg, &want, &new, &add_crlf);
}

// ----- the proxy itself -----

/// The untagged responses of a command and its tagged line.
type Tagged = (Vec<Vec<u8>>, String);

/// A raw IMAP connection for the proxy's selftests (bytes exactly as written).
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut raw = Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        };
        let g = raw.line().expect("greeting");
        assert!(g.starts_with(b"* OK"), "{:?}", String::from_utf8_lossy(&g));
        raw
    }

    fn login(port: u16) -> Raw {
        let mut r = Raw::connect(port);
        r.send(format!("L LOGIN alice {PW}\r\n").as_bytes());
        r.tagged("L").unwrap();
        r
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    /// One line (with its CRLF); `None` at EOF or on a reset.
    fn line(&mut self) -> Option<Vec<u8>> {
        let mut l = Vec::new();
        match self.r.read_until(b'\n', &mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l),
        }
    }

    /// Responses until the tagged one (literals inline); `Err` with what came if the
    /// connection ended first.
    fn tagged(&mut self, tag: &str) -> Result<Tagged, Vec<Vec<u8>>> {
        let mut untagged = Vec::new();
        loop {
            let Some(mut resp) = self.line() else {
                return Err(untagged);
            };
            while let Some(n) = common::literal_at_end(resp.strip_suffix(b"\r\n").unwrap_or(&resp))
            {
                let mut lit = vec![0; n];
                if self.r.read_exact(&mut lit).is_err() {
                    return Err(untagged);
                }
                resp.extend_from_slice(&lit);
                let Some(more) = self.line() else {
                    return Err(untagged);
                };
                resp.extend_from_slice(&more);
            }
            if resp.starts_with(format!("{tag} ").as_bytes()) {
                return Ok((untagged, String::from_utf8_lossy(&resp).trim_end().into()));
            }
            untagged.push(resp);
        }
    }
}

/// Waits (bounded) until `cond` holds: for a state the proxy reaches, never a pacing delay.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pure helpers for downstream rules (`fetch_uid`, `body_to_nil`, `drop_fetch_item` on
/// FETCH responses as Dovecot spells them) and the judge's INTERNALDATE instants.
#[test]
fn proxy_selftest_fetch_helpers() {
    let body = b"* 2 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE \"01-Jan-2020 00:00:00 +0100\" \
                 BODY[] {12}\r\nSubject: x\r\n)\r\n";
    assert_eq!(fetch_uid(body), Some(7));
    assert_eq!(
        body_to_nil(body),
        b"* 2 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE \"01-Jan-2020 00:00:00 +0100\" \
          BODY[] NIL)\r\n"
            .to_vec()
    );
    let listing = b"* 3 FETCH (UID 3 RFC822.SIZE 55 FLAGS (\\Seen))\r\n";
    assert_eq!(fetch_uid(listing), Some(3));
    assert_eq!(
        drop_fetch_item(listing, "RFC822.SIZE"),
        b"* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n".to_vec()
    );
    assert_eq!(
        drop_fetch_item(listing, "UID"),
        b"* 3 FETCH (RFC822.SIZE 55 FLAGS (\\Seen))\r\n".to_vec()
    );
    assert_eq!(
        drop_fetch_item(b"* 1 FETCH (RFC822.SIZE 9)\r\n", "RFC822.SIZE"),
        b"* 1 FETCH ()\r\n".to_vec()
    );
    assert_eq!(fetch_uid(b"* 3 EXISTS\r\n"), None);
    assert_eq!(
        fetch_uid(b"* 3 FETCH (FLAGS (\\Seen) UID 12)\r\n"),
        Some(12)
    );
    assert_eq!(body_to_nil(listing), listing.to_vec());
    // The judge's INTERNALDATE instants.
    assert_eq!(instant("10-Jul-2022 12:10:10 +0200"), 1_657_447_810);
    assert_eq!(instant("10-Jul-2022 06:10:10 -0400"), 1_657_447_810);
    assert_eq!(instant(" 1-Jan-2000 00:59:59 +0100"), 946_684_799);
}

/// Pass-through, APPEND literal rewriting (`{n+}` from TestImap; a MULTIAPPEND with a
/// synchronizing `{n}` answered by the proxy and a literal8 `~{n+}`), downstream rewriting
/// (`BODY[] NIL`, a dropped item) and a cut at a marker on the first connection only, against a
/// real Dovecot; each checked directly on the server.
#[test]
fn proxy_selftest_rewrites_and_cut() {
    let d = dovecot("proxied", OLD_TZ, "");
    let p = Proxy::start("self", d.port());
    // Pass-through: the same messages through the proxy as directly.
    let mut c = TestImap::connect(d.port(), "alice", PW);
    for i in 0..3 {
        c.append(
            "INBOX",
            &flags(i),
            Some(&date(i)),
            &message("px", "INBOX", i, ""),
        )
        .unwrap();
    }
    c.append(
        "INBOX",
        &[],
        None,
        &message("px", "INBOX", 3, "CUT-HERE-MARKER\r\n"),
    )
    .unwrap();
    let direct = c.fetch_all("INBOX");
    let mut via = TestImap::connect(p.port(), "alice", PW);
    assert_eq!(via.fetch_all("INBOX"), direct, "pass-through");
    via.logout();

    // APPEND literals rewritten: TestImap sends `{n+}` (Dovecot has LITERAL+).
    p.rewrite_append_literals(|b| {
        let mut v = b"X-Proxied: yes\r\n".to_vec();
        v.extend_from_slice(b);
        v
    });
    let mut via = TestImap::connect(p.port(), "alice", PW);
    via.create("Rw");
    let m1 = message("px", "Rw", 1, "");
    via.append("Rw", &["\\Seen"], Some(&date(1)), &m1).unwrap();
    via.logout();
    // A MULTIAPPEND: a synchronizing literal (the proxy sends the `+`) and a literal8.
    let (m2, m3) = (message("px", "Rw", 2, ""), message("px", "Rw", 3, ""));
    let mut raw = Raw::login(p.port());
    raw.send(format!("A APPEND Rw (\\Flagged) {{{}}}\r\n", m2.len()).as_bytes());
    let cont = raw.line().expect("continuation");
    assert!(
        cont.starts_with(b"+ "),
        "{:?}",
        String::from_utf8_lossy(&cont)
    );
    raw.send(&m2);
    raw.send(format!(" () ~{{{}+}}\r\n", m3.len()).as_bytes());
    raw.send(&m3);
    raw.send(b"\r\n");
    let (_, done) = raw.tagged("A").expect("MULTIAPPEND reply");
    assert!(done.starts_with("A OK [APPENDUID"), "{done}");
    drop(raw);
    assert_eq!(p.literals_rewritten(), 3);
    let rw = c.fetch_all("Rw");
    let bodies: Vec<&[u8]> = rw.iter().map(|m| m.body.as_slice()).collect();
    let expect: Vec<Vec<u8>> = [&m1, &m2, &m3]
        .iter()
        .map(|m| [b"X-Proxied: yes\r\n".as_slice(), m].concat())
        .collect();
    assert_eq!(
        bodies,
        expect.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "rewritten literals as stored"
    );
    assert_eq!(rw[1].flags, vec!["\\Flagged".to_string()]);

    // Downstream: UID 1's BODY[] becomes NIL, UID 2 loses RFC822.SIZE.
    p.clear_rules();
    p.rewrite_downstream(|resp| match fetch_uid(resp) {
        Some(1) => body_to_nil(resp),
        Some(2) => drop_fetch_item(resp, "RFC822.SIZE"),
        _ => resp.to_vec(),
    });
    let mut via = TestImap::connect(p.port(), "alice", PW);
    let items = via.uid_fetch("INBOX", "1:3", "(UID RFC822.SIZE BODY.PEEK[])");
    via.logout();
    assert_eq!(items[0].get("BODY[]"), Some(&Tok::Nil));
    assert!(items[0].contains_key("RFC822.SIZE"));
    assert!(!items[1].contains_key("RFC822.SIZE"), "{:?}", items[1]);
    assert!(matches!(items[1].get("BODY[]"), Some(Tok::Str(_))));
    assert_eq!(
        items[2].get("BODY[]"),
        Some(&Tok::Str(direct[2].body.clone()))
    );
    assert!(p.responses_rewritten() >= 2);

    // Cut at a marker, on the first connection that shows it only.
    p.clear_rules();
    p.cut_when_downstream_contains(b"CUT-HERE-MARKER", Some(1));
    let fetch = "F UID FETCH 1:* (UID BODY.PEEK[])\r\n";
    let mut raw = Raw::login(p.port());
    raw.send(b"S EXAMINE INBOX\r\n");
    raw.tagged("S").unwrap();
    raw.send(fetch.as_bytes());
    let seen = raw.tagged("F").expect_err("the connection must be cut");
    assert!(
        seen.iter()
            .all(|r| !r.windows(15).any(|w| w == b"CUT-HERE-MARKER")),
        "the marker reached the client"
    );
    assert_eq!(p.cuts(), 1);
    let mut raw = Raw::login(p.port());
    raw.send(b"S EXAMINE INBOX\r\n");
    raw.tagged("S").unwrap();
    raw.send(fetch.as_bytes());
    let (msgs, done) = raw.tagged("F").expect("the second connection is not cut");
    assert!(done.starts_with("F OK"), "{done}");
    assert_eq!(msgs.len(), 4);
    assert_eq!(p.cuts(), 1);
    // 1 pass-through + 2 rewriting + 1 downstream + 2 cut tests.
    assert_eq!(p.accepted(), 6, "{:#?}", p.log());
    c.logout();
}

/// The hold: the proxy forwards an APPEND up to its pattern + 40 bytes, then nothing; the client
/// gives up and closes; the server has not stored the message; `release` forwards the rest,
/// returns the server's tagged OK, and the message is there.
#[test]
fn proxy_selftest_hold_and_release() {
    let d = dovecot("held", NEW_TZ, "");
    let p = Proxy::start("self", d.port());
    p.hold_upstream_after(b"APPEND", 40);
    let m = message("hold", "INBOX", 1, "");
    let mut raw = Raw::login(p.port());
    raw.send(format!("H1 APPEND INBOX (\\Seen) {{{}+}}\r\n", m.len()).as_bytes());
    raw.send(&m);
    raw.send(b"\r\n");
    wait_until("the hold to engage and buffer the rest", || {
        let s = p.hold_status();
        s.engaged && s.buffered > 0
    });
    let s = p.hold_status();
    assert_eq!(s.tag, "H1");
    // "H1 APPEND " + 40 bytes went through; the rest is held.
    let sent_before = "H1 APPEND".len() + 40;
    let total = format!("H1 APPEND INBOX (\\Seen) {{{}+}}\r\n", m.len()).len() + m.len() + 2;
    assert_eq!(s.buffered, total - sent_before, "{s:?}");
    drop(raw);
    wait_until("the client to be gone", || p.hold_status().client_gone);
    assert_eq!(count(&d, "INBOX"), 0, "nothing stored while held");
    let reply = p.release(GUARD).expect("release");
    assert!(reply.starts_with("H1 OK"), "{reply}");
    let mut c = TestImap::connect(d.port(), "alice", PW);
    let got = c.fetch_all("INBOX");
    c.logout();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, m);
    assert_eq!(p.accepted(), 1);
    // The hold was one-shot: the next connection is clean.
    let mut via = TestImap::connect(p.port(), "alice", PW);
    via.append("INBOX", &[], None, &m).unwrap();
    via.logout();
    assert_eq!(count(&d, "INBOX"), 2);
    assert!(p.release(GUARD).is_err(), "a second release");
}

/// Pacing (`pace_appends`): a pipelining client (the next APPEND's command line right after the
/// literal, on synchronizing literals) releases each held reply itself; a client that waits for
/// each reply (TestImap) stalls on every APPEND that is not a declared batch end; a declared end
/// goes out at once. Against a real Dovecot.
#[test]
fn proxy_selftest_pace_appends() {
    let d = dovecot("paced", NEW_TZ, "");
    let p = Proxy::start("self", d.port());
    p.pace_appends(AppendPacing {
        batch_ends: vec![3, 5],
        guard: Duration::from_secs(2),
        max_stalls: 5,
    });
    let m: Vec<Vec<u8>> = (1..=5).map(|i| message("pace", "INBOX", i, "")).collect();
    let mut raw = Raw::login(p.port());
    // Until the `+` for the command just sent; the replies before it are the earlier APPENDs'.
    let continuation = |raw: &mut Raw| -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let l = raw.line().expect("a continuation");
            let l = String::from_utf8_lossy(&l).trim_end().to_string();
            if l.starts_with('+') {
                return before;
            }
            before.push(l);
        }
    };
    raw.send(format!("P1 APPEND INBOX {{{}}}\r\n", m[0].len()).as_bytes());
    assert!(continuation(&mut raw).is_empty());
    for (k, tag) in [(1, "P2"), (2, "P3")] {
        let mut b = m[k - 1].clone();
        b.extend_from_slice(format!("\r\n{tag} APPEND INBOX {{{}}}\r\n", m[k].len()).as_bytes());
        raw.send(&b);
        let before = continuation(&mut raw);
        assert!(
            before.len() == 1 && before[0].starts_with(&format!("P{k} OK")),
            "{before:?}"
        );
    }
    raw.send(&[m[2].as_slice(), b"\r\n"].concat());
    let (_, done) = raw.tagged("P3").expect("APPEND #3 answered");
    assert!(done.starts_with("P3 OK"), "{done}");
    drop(raw);
    let r = p.pacing();
    assert_eq!(
        (
            r.appends,
            r.synchronizing,
            r.pipelined,
            r.batch_ends.clone()
        ),
        (3, 3, 2, vec![3]),
        "{r:?}\n{:#?}",
        p.log()
    );
    assert!(r.stalls.is_empty(), "{r:?}");
    // One reply at a time (TestImap sends `{n+}`: Dovecot has LITERAL+): #4 stalls, #5 is a
    // declared end.
    let mut c = TestImap::connect(p.port(), "alice", PW);
    c.append("INBOX", &[], None, &m[3]).unwrap();
    c.append("INBOX", &[], None, &m[4]).unwrap();
    c.logout();
    let r = p.pacing();
    assert_eq!(
        (r.appends, r.synchronizing, r.pipelined),
        (5, 3, 2),
        "{r:?}"
    );
    assert_eq!(
        (r.batch_ends, r.stalls, r.gave_up),
        (vec![3, 5], vec![4], false),
        "{:#?}",
        p.log()
    );
    assert_eq!(count(&d, "INBOX"), 5);
}
