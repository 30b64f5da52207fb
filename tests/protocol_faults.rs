//! Protocol faults end to end (issue 13, "faults survived"): a server that answers garbage, a
//! literal cut short while the connection stays open, a `* BYE` in the middle of a command, a
//! storm of untagged `* OK` / `* NO` / `* n EXISTS` lines, a server SIGKILLed mid-command and
//! a new server that goes silent past `timeout_secs`, and an old server that trickles its bytes.
//! Each fault is injected on a marker in the bytes (a UID in a FETCH response, the n-th
//! APPENDUID completion, the NAMESPACE reply), never at a moment, by the programmable proxy of
//! tests/common/proxy.rs (its `rewrite_downstream`, and `trickle_downstream_from` for the
//! trickle; a response held back by a [`Gate`] plays a stalled or dying server), and each is followed by a re-run and an
//! exact comparison of old and new (bytes, flags, INTERNALDATE as an instant) and `verify`.
//!
//! The set-up ([`Scenario`]): real Dovecots, the old in `Europe/Berlin`, the new in
//! `America/New_York` (by their names, tests/common/dovecot.rs), three folders, batches of three
//! messages, a proxy in front of each server for every run (the state store keys the account by
//! host and port, so the re-runs must use the same ones). Most cases first sync the seed
//! cleanly, then add three messages per folder and expunge one old message, and run the faulty
//! sync with `--propagate-deletes`: copies of messages the old server still has must never be
//! deleted because of a fault, while the expunged one's copy goes.

mod common;

use common::{show_output, SyncRun as Run};

use common::gen;
use common::proxy::{fetch_uid, Proxy};
use common::{
    diff_folder, key, plain_config, run_imapshift, spawn_imapshift, Dovecot, DovecotOpts, Pause,
    TestImap, TestMsg,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const PW: &str = "pw";
const ENVS: &[(&str, &str)] = &[("PW", PW)];
/// Messages per folder in the first round (all synced cleanly before most faults).
const ROUND1: [(&str, usize); 3] = [("INBOX", 10), ("Archive", 7), ("Work", 5)];
/// Messages added per folder for the faulty run: one batch of [`BATCH`] each.
const ROUND2: usize = 3;
/// `[sync] batch_messages`.
const BATCH: usize = 3;
/// A failure guard for a state the test waits for (never a pacing delay).
const GUARD: Duration = Duration::from_secs(60);

// ----- mail -----

/// A message of about 2-4 KB with a unique Subject and Message-ID.
fn message(tag: &str, folder: &str, i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender {i} <s{i}@old.example>\r\nTo: alice@old.example\r\n\
         Subject: {tag} {folder} {i}\r\nMessage-ID: <{tag}-{folder}-{i}@old.example>\r\n\
         Date: Mon, 1 Jan 2024 10:{:02}:00 +0000\r\n\r\n",
        i % 60
    )
    .into_bytes();
    for l in 0..(30 + (i * 7) % 40) {
        m.extend_from_slice(
            format!("line {l} of message {i}: some words of text here\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(format!("-- \r\nend {i}\r\n").as_bytes());
    m
}

/// Summer and winter dates in several zones, so both offsets of each server's zone show.
fn date(i: usize) -> String {
    let month = ["Jan", "Jul", "Mar", "Oct"][i % 4];
    let zone = ["+0000", "-0930", "+0530", "+1200"][i % 4];
    format!(
        "{:02}-{month}-20{:02} {:02}:{:02}:07 {zone}",
        1 + i % 28,
        10 + i % 15,
        i % 24,
        (i * 7) % 60
    )
}

fn flags(i: usize) -> Vec<&'static str> {
    match i % 3 {
        0 => vec!["\\Seen"],
        1 => vec!["\\Seen", "\\Flagged", "$Label1"],
        _ => vec![],
    }
}

/// Appends messages `from..to` of each folder (creating folders other than INBOX on the first
/// round); returns their UIDs per folder.
fn seed(old: &Dovecot, tag: &str, range: impl Fn(usize) -> (usize, usize)) -> Uids {
    let mut c = TestImap::connect(old.port(), "alice", PW);
    let mut out = Uids::new();
    for (folder, n) in ROUND1 {
        let (from, to) = range(n);
        if folder != "INBOX" && from == 0 {
            c.create(folder);
        }
        for i in from..to {
            let uid = c
                .append(folder, &flags(i), Some(&date(i)), &message(tag, folder, i))
                .unwrap_or_else(|e| panic!("seeding {folder} #{i}: {e}"));
            out.entry(folder.to_string()).or_default().push(uid);
        }
    }
    c.logout();
    out
}

type Uids = BTreeMap<String, Vec<u32>>;
type Snapshot = BTreeMap<String, Vec<TestMsg>>;

/// Every folder of [`ROUND1`], read directly from the server (never through a proxy).
fn snapshot(server: &Dovecot) -> Snapshot {
    gen::snapshot_folders(
        server.port(),
        "alice",
        PW,
        &ROUND1.map(|(f, _)| f),
        str::to_string,
    )
}

// ----- the set-up -----

/// Two Dovecots in different zones, a proxy in front of each, a config through both proxies.
struct Scenario {
    tag: &'static str,
    old: Dovecot,
    new: Dovecot,
    old_proxy: Proxy,
    new_proxy: Proxy,
    cfg: PathBuf,
    _dir: tempfile::TempDir,
    /// UIDs of the messages added for the faulty run, per folder.
    round2: Uids,
    /// The old INBOX message expunged before the faulty run (its copy may go).
    expunged: Option<u32>,
}

impl Scenario {
    /// Seeds round 1; `[old]` / `[new]` get the extra config lines.
    fn start(tag: &'static str, old_extra: &str, new_extra: &str) -> Scenario {
        let old = Dovecot::start("old", &[("alice", PW)], DovecotOpts::default());
        let new = Dovecot::start("new", &[("alice", PW)], DovecotOpts::default());
        seed(&old, tag, |n| (0, n));
        let old_proxy = Proxy::start("old", old.port());
        let new_proxy = Proxy::start("new", new.port());
        let dir = tempfile::tempdir().unwrap();
        let text = plain_config(
            old_proxy.port(),
            new_proxy.port(),
            old_extra,
            new_extra,
            &format!("[sync]\nbatch_messages = {BATCH}\n"),
            &["alice"],
        );
        let cfg = dir.path().join("imapshift.toml");
        std::fs::write(&cfg, text).unwrap();
        Scenario {
            tag,
            old,
            new,
            old_proxy,
            new_proxy,
            cfg,
            _dir: dir,
            round2: Uids::new(),
            expunged: None,
        }
    }

    /// Round 1 synced cleanly, then [`ROUND2`] messages added per folder and old INBOX's
    /// second message expunged: the state a faulty `--propagate-deletes` run starts from.
    fn primed(tag: &'static str, old_extra: &str, new_extra: &str) -> Scenario {
        let mut s = Scenario::start(tag, old_extra, new_extra);
        let r = s.sync(&[]);
        assert_eq!(r.code, Some(0), "{tag}: the clean first sync\n{}", r.show());
        s.assert_exact("after the clean first sync", true);
        s.round2 = seed(&s.old, tag, |n| (n, n + ROUND2));
        let victim = snapshot(&s.old)["INBOX"][1].uid;
        let mut c = TestImap::connect(s.old.port(), "alice", PW);
        c.expunge_uid("INBOX", victim);
        c.logout();
        s.expunged = Some(victim);
        s
    }

    /// The marker of an APPEND completion into `folder` of the new server: `[APPENDUID <its
    /// UIDVALIDITY> ` (the reply names the folder only by it).
    fn appenduid_of(&self, folder: &str) -> Vec<u8> {
        let mut c = TestImap::connect(self.new.port(), "alice", PW);
        let uv = c.status(folder).2;
        c.logout();
        format!("[APPENDUID {uv} ").into_bytes()
    }

    fn sync(&self, extra: &[&str]) -> Run {
        sync_with(&self.cfg, extra, &[])
    }

    /// A sync started in the background (with `more_env` besides the password).
    fn spawn_sync(&self, more_env: &[(&str, &str)]) -> std::process::Child {
        let mut envs = ENVS.to_vec();
        envs.extend_from_slice(more_env);
        spawn_imapshift(
            &["sync", "--config", self.cfg.to_str().unwrap(), "--json"],
            &envs,
        )
    }

    /// The faulty run (`--propagate-deletes`), and its reconnect reasons (printed).
    fn faulty_sync(&self, what: &str) -> (Run, Vec<String>) {
        let r = self.sync(&["--propagate-deletes"]);
        let why = reconnects(&r);
        println!("{what}: reconnects: {why:#?}");
        (r, why)
    }

    /// The new server is exact (in order); then the re-run, verify.
    fn exact_then_rerun(&self, what: &str) {
        self.assert_exact(what, true);
        self.rerun_exact(what, true);
    }

    /// The re-run after the fault: proxies clean, exit 0, nothing failed, the new server an
    /// exact copy; then one more run copies nothing, and `verify` exits 0.
    fn rerun_exact(&self, what: &str, ordered: bool) -> Run {
        self.old_proxy.clear_rules();
        self.new_proxy.clear_rules();
        let r = self.sync(&["--propagate-deletes"]);
        assert_eq!(r.code, Some(0), "{what}: the re-run\n{}", r.show());
        assert!(r.failures().is_empty(), "{what}: the re-run\n{}", r.show());
        self.assert_exact(&format!("{what}: after the re-run"), ordered);
        let again = self.sync(&[]);
        assert_eq!(
            again.code,
            Some(0),
            "{what}: the last run\n{}",
            again.show()
        );
        assert_eq!(
            again.copied(),
            0,
            "{what}: the last run copied\n{}",
            again.show()
        );
        assert_verified(what, &self.cfg);
        r
    }

    /// After a faulty `--propagate-deletes` run that finished: only the expunged message's copy
    /// was deleted, the new server is exact (in order); then the re-run, verify.
    fn settled(&self, what: &str, r: &Run) {
        assert_eq!(
            r.folder_sum("deleted"),
            1,
            "{what}: only the expunged message's copy goes\n{}",
            r.show()
        );
        self.exact_then_rerun(what);
    }

    /// While the spawned run `child` is held at a fault: SIGKILLs the old (`old_side`) or the
    /// new server and starts it again, lets the run go on (`release`), and expects it to
    /// resume ([`Scenario::resumed`]).
    fn restart_then_resume(
        &mut self,
        what: &str,
        child: std::process::Child,
        old_side: bool,
        release: impl FnOnce(),
    ) {
        let (server, side) = if old_side {
            (&mut self.old, "old server")
        } else {
            (&mut self.new, "new server")
        };
        kill_and_restart(server);
        release();
        self.resumed(what, child, side);
    }

    /// The spawned run held at a fault finishes on its own: exit 0 after at least one
    /// reconnect, every reconnect naming `side` (`"old server"`); then exact, re-run, verify.
    fn resumed(&self, what: &str, child: std::process::Child, side: &str) {
        let r = Run::of(wait_output(child), &[]);
        let why = reconnects(&r);
        println!("{what}: reconnects: {why:#?}");
        assert_ok(what, &r);
        assert!(r.retries() >= 1, "{what}: no reconnect\n{}", r.show());
        assert!(why.iter().all(|l| l.contains(side)), "{what}: {why:#?}");
        self.exact_then_rerun(what);
    }

    /// The new server holds exactly the old server's messages, folder by folder (in order if
    /// `ordered`; as a multiset otherwise, for a message copied by a later run than its
    /// neighbours).
    fn assert_exact(&self, what: &str, ordered: bool) {
        let (want, got) = (snapshot(&self.old), snapshot(&self.new));
        gen::assert_zones(want.values().flatten(), got.values().flatten());
        let errs: Vec<String> = want
            .iter()
            .filter_map(|(f, w)| {
                let g = &got[f];
                if ordered {
                    diff_folder(f, w, g).err()
                } else {
                    let (mut w, mut g) = (w.clone(), g.clone());
                    w.sort_by_key(key);
                    g.sort_by_key(key);
                    diff_folder(f, &w, &g).err()
                }
            })
            .collect();
        assert!(
            errs.is_empty(),
            "{}: {what}: the new server is not an exact copy of the old one:\n{}",
            self.tag,
            errs.join("\n")
        );
    }

    /// After a faulty run: no copy of a message the old server still has was deleted, no
    /// message is on the new server twice, and every round-1 message is there. (Round-2
    /// messages not copied yet and the expunged message's copy may or may not be there.)
    fn assert_nothing_lost(&self, what: &str) {
        let (want, got) = (snapshot(&self.old), snapshot(&self.new));
        for (f, w) in &want {
            let mut on_new: BTreeMap<_, usize> = BTreeMap::new();
            for m in &got[f] {
                *on_new.entry(key(m)).or_default() += 1;
            }
            let dup: Vec<_> = on_new.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                dup.is_empty(),
                "{what}: {f}: {} messages twice on the new server",
                dup.len()
            );
            let round2 = self.round2.get(f).cloned().unwrap_or_default();
            let lost: Vec<u32> = w
                .iter()
                .filter(|m| !round2.contains(&m.uid) && !on_new.contains_key(&key(m)))
                .map(|m| m.uid)
                .collect();
            assert!(
                lost.is_empty(),
                "{what}: {f}: the copies of old UIDs {lost:?} (still on the old server) are gone \
                 from the new server"
            );
        }
    }
}

// ----- runs -----

fn sync_with(cfg: &Path, extra: &[&str], more_env: &[(&str, &str)]) -> Run {
    let mut args = vec!["sync", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let mut envs = ENVS.to_vec();
    envs.extend_from_slice(more_env);
    let out = run_imapshift(&args, &envs);
    Run::of(out, extra)
}

fn assert_verified(what: &str, cfg: &Path) {
    let out = run_imapshift(
        &["verify", "--config", cfg.to_str().unwrap(), "--json"],
        ENVS,
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: verify: stdout is not JSON ({e})\n{}",
            show_output(&out)
        )
    });
    let t = &j["totals"];
    println!(
        "{what}: verify exit {:?}: missing {}, duplicates {}",
        out.status.code(),
        t["missing"],
        t["duplicates"]
    );
    assert_eq!(out.status.code(), Some(0), "{what}: verify: {j}");
}

/// The reconnect warnings of a run: the lines that say why the user reconnected.
fn reconnects(r: &Run) -> Vec<String> {
    r.stderr()
        .lines()
        .filter(|l| l.contains("reconnecting in"))
        .map(str::to_string)
        .collect()
}

/// The reconnect reasons are exactly these: the i-th line holds every text of `want[i]`.
fn assert_reasons(what: &str, why: &[String], want: &[&[&str]]) {
    let ok = why.len() == want.len()
        && why
            .iter()
            .zip(want)
            .all(|(l, w)| w.iter().all(|t| l.contains(t)));
    assert!(ok, "{what}: reconnect reasons {why:#?}, expected {want:?}");
}

/// The run exited 0.
fn assert_ok(what: &str, r: &Run) {
    assert_eq!(r.code, Some(0), "{what}\n{}", r.show());
}

/// The run exited 0 after exactly `retries` reconnects.
fn assert_ok_after(what: &str, r: &Run, retries: u64) {
    assert_ok(what, r);
    assert_eq!(r.retries(), retries, "{what}\n{}", r.show());
}

/// The run resolved `n` journaled intents as found on the new server (not copied again).
fn assert_recovered(what: &str, r: &Run, n: usize) {
    assert_eq!(r.folder_sum("recovered"), n as u64, "{what}\n{}", r.show());
}

// ----- rewrite rules -----

/// A FETCH response carrying a message body (`BODY[] {n}`), and its UID.
fn body_response_uid(resp: &[u8]) -> Option<u32> {
    let head = &resp[..resp.len().min(400)];
    head.windows(8)
        .any(|w| w == b"BODY[] {")
        .then(|| fetch_uid(resp))
        .flatten()
}

/// The Message-ID marker of test message `i` of `folder` (unique across folders, unlike a
/// UID), as it shows in a FETCH response of its body.
fn mid(tag: &str, folder: &str, i: usize) -> Vec<u8> {
    format!("<{tag}-{folder}-{i}@old.example>").into_bytes()
}

/// A FETCH response carrying the body of the message whose Message-ID marker is `marker`.
fn is_body_of(resp: &[u8], marker: &[u8]) -> bool {
    body_response_uid(resp).is_some() && resp.windows(marker.len()).any(|w| w == marker)
}

/// A tagged OK with APPENDUID (the new server's completion of an APPEND).
fn is_appenduid_ok(resp: &[u8]) -> bool {
    !resp.starts_with(b"* ")
        && resp.windows(15).any(|w| w == b" OK [APPENDUID ")
        && resp.ends_with(b"\r\n")
}

/// The completion of an APPEND into the folder whose marker ([`Scenario::appenduid_of`]) is
/// `marker`.
fn is_append_into(resp: &[u8], marker: &[u8]) -> bool {
    is_appenduid_ok(resp) && resp.windows(marker.len()).any(|w| w == marker)
}

/// A downstream rule that rewrites the first response `is(resp, marker)` finds for each of
/// `markers`, once each, by `rewrite(k, resp)` (`k`: the marker's index, recorded in `fired`);
/// every other response passes unchanged.
fn once_per_marker(
    markers: Vec<Vec<u8>>,
    is: fn(&[u8], &[u8]) -> bool,
    fired: Arc<Mutex<Vec<usize>>>,
    rewrite: impl Fn(usize, &[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static {
    move |resp| {
        let Some(k) = markers.iter().position(|m| is(resp, m)) else {
            return resp.to_vec();
        };
        let mut f = fired.lock().unwrap();
        if f.contains(&k) {
            return resp.to_vec();
        }
        f.push(k);
        rewrite(k, resp)
    }
}

/// A tagged completion of our raw layer (`x<n> OK ...`).
fn is_tagged_ok(resp: &[u8]) -> bool {
    let Some(rest) = resp.strip_prefix(b"x") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b" OK")
}

/// The response with its first literal cut to `keep` bytes (the `{n}` still announcing all of
/// them) and a line end after them: the server "sent" only part of what it announced and then
/// went on.
fn truncate_literal(resp: &[u8], keep: usize) -> Vec<u8> {
    let at = resp
        .windows(3)
        .position(|w| w == b"}\r\n")
        .expect("a literal")
        + 3;
    let mut out = resp[..at + keep].to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

/// `n` untagged lines: `* OK noise` and `* NO noise` alternating, with an `* m EXISTS` (a
/// count above any folder's: more mail arrived, as a concurrent delivery reports it) every
/// 1000 lines and, if `expunge`, one `* 1 EXPUNGE` in the middle.
fn storm(n: usize, expunge: bool) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * 24);
    for i in 0..n {
        let line = match i {
            i if expunge && i == n / 2 => "* 1 EXPUNGE\r\n".to_string(),
            i if i % 1000 == 999 => format!("* {} EXISTS\r\n", 1000 + i),
            i if i % 2 == 0 => format!("* OK noise {i}\r\n"),
            i => format!("* NO noise {i}\r\n"),
        };
        s.extend_from_slice(line.as_bytes());
    }
    s
}

/// A response held back inside a rewrite function: the proxy's server -> client pump of that
/// connection waits in it (the server's bytes stop flowing, the client's socket stays open)
/// until [`Gate::open`] or the guard passes. Dropped, it opens, so a proxy's Drop can join its
/// threads (declare the gate after the proxy: it drops first).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Default)]
struct GateState {
    reached: bool,
    open: bool,
}

impl Gate {
    /// Called by the rewrite function: notes that the fault point is reached, waits.
    fn hold(&self) {
        let (m, cv) = &*self.0;
        let mut st = m.lock().unwrap();
        st.reached = true;
        cv.notify_all();
        let deadline = Instant::now() + GUARD * 3;
        while !st.open && Instant::now() < deadline {
            st = cv.wait_timeout(st, Duration::from_millis(100)).unwrap().0;
        }
    }

    fn wait_reached(&self, what: &str) {
        let (m, cv) = &*self.0;
        let mut st = m.lock().unwrap();
        let deadline = Instant::now() + GUARD;
        while !st.reached {
            assert!(
                Instant::now() < deadline,
                "{what}: the fault point was never reached"
            );
            st = cv.wait_timeout(st, Duration::from_millis(100)).unwrap().0;
        }
    }

    fn is_reached(&self) -> bool {
        self.0 .0.lock().unwrap().reached
    }

    fn open(&self) {
        let (m, cv) = &*self.0;
        m.lock().unwrap().open = true;
        cv.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// SIGKILL to one process (`-<pgid>`: a whole process group), by `kill(1)`.
fn sigkill(target: &str) {
    assert!(
        target != "-1" && target != "0" && target != "-0",
        "refusing kill {target}"
    );
    let st = std::process::Command::new("kill")
        .args(["-KILL", "--", target])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -KILL {target} failed");
}

/// SIGKILLs a Dovecot's master and every process of its group (imap, login, auth children),
/// waits until the group is empty, and starts it again on the same port and data.
fn kill_and_restart(server: &mut Dovecot) {
    let before = server.processes();
    assert!(
        before.len() > 1,
        "dovecot has no children to kill: {before:?}"
    );
    sigkill(&format!("-{}", server.pid()));
    let deadline = Instant::now() + GUARD;
    while !server.processes().is_empty() {
        assert!(
            Instant::now() < deadline,
            "dovecot survived SIGKILL: {:?}",
            server.processes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "SIGKILLed dovecot {} ({} processes)",
        server.name(),
        before.len()
    );
    server.restart();
}

// ----- case 1: the old server answers garbage in the middle of a FETCH of bodies -----

/// Case 1a: the proxy replaces the old server's FETCH response for one round-2 INBOX message
/// (its body) with garbage bytes, every time it is sent; the run uses `--propagate-deletes`.
/// Proves the scope: the connection is taken as broken (a malformed reply, reconnect), the
/// message is narrowed down and failed alone, named by folder and UID (user `partial`, exit 1);
/// nothing is read as "message gone", no copy of a present message is deleted (the expunged
/// one's copy goes), nothing is copied twice; with the proxy clean, the re-run copies it and
/// the new server is exact, verify 0.
#[test]
fn garbage_instead_of_a_fetch_response() {
    let what = "garbage FETCH response";
    let s = Scenario::primed("garbage", "", "");
    let victim = s.round2["INBOX"][1];
    let marker = mid(s.tag, "INBOX", 11);
    s.old_proxy.rewrite_downstream(move |resp| {
        if is_body_of(resp, &marker) {
            b"* 7 FETCH (UID \x01\x02 ))(( \xff\xfe garbage \"unterminated\r\n".to_vec()
        } else {
            resp.to_vec()
        }
    });
    let (r, why) = s.faulty_sync(what);
    assert!(
        s.old_proxy.responses_rewritten() >= 2,
        "{what}: the rule fired too rarely"
    );
    assert_eq!(
        r.failures(),
        vec![("INBOX".to_string(), Some(u64::from(victim)))],
        "{what}: the report must name exactly old INBOX UID {victim}\n{}",
        r.show()
    );
    assert_eq!(r.user()["status"], "partial", "{what}\n{}", r.show());
    assert_eq!(r.code, Some(1), "{what}\n{}", r.show());
    let reason = r.user()["failures"][0]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!("{what}: the reason: {reason}");
    assert!(reason.contains("malformed"), "{what}: the reason: {reason}");
    assert!(r.retries() >= 2, "{what}: no reconnects\n{}", r.show());
    assert!(
        why.iter()
            .all(|l| l.contains("old server") && l.contains("malformed reply")),
        "{what}: reconnect reasons: {why:#?}"
    );
    assert_eq!(
        r.folder_sum("deleted"),
        1,
        "{what}: only the expunged message's copy goes"
    );
    s.assert_nothing_lost(what);
    s.rerun_exact(what, false);
}

/// Case 1b: the old server's response for one message announces its whole body (`{n}`) but
/// sends 200 bytes and a line end, and the connection stays open: once for Archive's middle
/// round-2 message, whose literal then swallows the start of the next, larger response (the
/// rest of that body follows as if it were FETCH items: a malformed reply); once for Work's
/// last, whose literal swallows the tagged OK and waits for bytes that never come
/// (`timeout_secs = 3`: a timeout). Proves: each is a broken connection, reconnected and
/// resumed in the same run, exit 0; no short or spliced body is ever appended (the new server
/// exact, in order), no copy deleted but the expunged one's, and a re-run copies nothing.
#[test]
fn literal_cut_short_with_the_connection_open() {
    let what = "literal cut short";
    let s = Scenario::primed("short", "timeout_secs = 3\n", "");
    // Archive's middle round-2 message (smaller than the next) and Work's last.
    let markers = vec![mid(s.tag, "Archive", 8), mid(s.tag, "Work", 7)];
    let fired: Arc<Mutex<Vec<usize>>> = Arc::default();
    s.old_proxy.rewrite_downstream(once_per_marker(
        markers,
        is_body_of,
        fired.clone(),
        |_, resp| truncate_literal(resp, 200),
    ));
    let (r, why) = s.faulty_sync(what);
    assert_eq!(
        fired.lock().unwrap().len(),
        2,
        "{what}: both faults fired\n{}",
        r.show()
    );
    assert_ok(what, &r);
    assert!(r.failures().is_empty(), "{what}\n{}", r.show());
    assert!(
        r.retries() >= 2,
        "{what}: two broken connections\n{}",
        r.show()
    );
    assert_reasons(
        what,
        &why,
        &[
            &["folder Archive: old server", "malformed reply"],
            &["folder Work: old server", "(timeout)"],
        ],
    );
    s.settled(what, &r);
}

// ----- case 2: the new server's APPEND completion garbled or cut -----

/// Case 2: the new server stores each round-2 batch (one MULTIAPPEND per folder), but its
/// tagged `OK [APPENDUID ...]` reaches imapshift (1, INBOX) as garbage, (2, Archive) cut inside
/// the APPENDUID code's UID set and ended by a line end, (3, Work) cut there without a line
/// end, the connection left open (`timeout_secs = 3`). The folder is told by the UIDVALIDITY
/// in the APPENDUID. Proves exactly-once through the journal: (1) and (3) break the
/// connection, the intents are resolved after the reconnect (found on the new server,
/// `recovered`, not copied again); (2) is an OK without a usable APPENDUID, whose copies are
/// found by fingerprint; exit 0, the new server exact, a re-run copies nothing, verify 0.
#[test]
fn append_completion_garbled_or_cut() {
    let what = "APPEND completion garbled";
    let s = Scenario::primed("appok", "", "timeout_secs = 3\n");
    // (1) INBOX, (2) Archive, (3) Work: each once.
    let markers: Vec<Vec<u8>> = ["INBOX", "Archive", "Work"]
        .iter()
        .map(|f| s.appenduid_of(f))
        .collect();
    let fired: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let rule = once_per_marker(markers, is_append_into, fired.clone(), move |k, resp| {
        seen2
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(resp).trim_end().to_string());
        // Inside the UID set: `[APPENDUID 1796197036 1` of `... 11:13]`.
        let cut = resp.windows(11).position(|w| w == b"[APPENDUID ").unwrap() + 11;
        let cut = cut + resp[cut..].iter().position(|&b| b == b' ').unwrap() + 2;
        match k {
            0 => b"\x00\x17 ~~~ this is not IMAP \xc3\x28 {{{\r\n".to_vec(),
            1 => [&resp[..cut], b"\r\n"].concat(),
            _ => resp[..cut].to_vec(),
        }
    });
    s.new_proxy.rewrite_downstream(rule);
    let (r, why) = s.faulty_sync(what);
    println!("{what}: completions rewritten: {:#?}", seen.lock().unwrap());
    assert_eq!(
        fired.lock().unwrap().len(),
        3,
        "{what}: the three faults fired"
    );
    assert_ok(what, &r);
    assert!(r.failures().is_empty(), "{what}\n{}", r.show());
    assert_reasons(
        what,
        &why,
        &[
            &["folder INBOX: new server", "malformed reply"],
            &["folder Work: new server", "(timeout)"],
        ],
    );
    assert_recovered(
        &format!("{what}: the two batches whose reply was lost are recovered from the journal"),
        &r,
        2 * ROUND2,
    );
    s.exact_then_rerun(what);
}

// ----- case 3: BYE in the middle of a command -----

/// Case 3: `* BYE` injected once on each side, in the same run: instead of the old server's
/// FETCH response for INBOX's second round-2 message, and instead of the new server's
/// completion of the Archive batch (stored on the server; found by its UIDVALIDITY in the
/// APPENDUID). Proves both are taken as a closed
/// session: the user reconnects (twice, each reason naming its server and the BYE), the
/// FETCH is resumed and the APPEND's intents resolved (recovered, not copied again); exit 0,
/// the new server exact, a re-run copies nothing, verify 0.
#[test]
fn bye_in_the_middle_of_a_command() {
    let what = "BYE mid-command";
    let s = Scenario::primed("bye", "", "");
    let bye = |text: &'static [u8]| move |_, _: &[u8]| text.to_vec();
    let old_fired: Arc<Mutex<Vec<usize>>> = Arc::default();
    s.old_proxy.rewrite_downstream(once_per_marker(
        vec![mid(s.tag, "INBOX", 11)],
        is_body_of,
        old_fired.clone(),
        bye(b"* BYE injected: shutting down mid-FETCH\r\n"),
    ));
    let new_fired: Arc<Mutex<Vec<usize>>> = Arc::default();
    s.new_proxy.rewrite_downstream(once_per_marker(
        vec![s.appenduid_of("Archive")],
        is_append_into,
        new_fired.clone(),
        bye(b"* BYE injected: shutting down mid-APPEND\r\n"),
    ));
    let (r, why) = s.faulty_sync(what);
    let fired = |f: &Mutex<Vec<usize>>| !f.lock().unwrap().is_empty();
    assert!(
        fired(&old_fired) && fired(&new_fired),
        "{what}: the faults fired"
    );
    assert_ok_after(what, &r, 2);
    assert_reasons(
        what,
        &why,
        &[
            &["folder INBOX: old server", "server closed the session: BYE"],
            &[
                "folder Archive: new server",
                "server closed the session: BYE",
            ],
        ],
    );
    assert_recovered(what, &r, ROUND2);
    s.exact_then_rerun(what);
}

// ----- case 4: an untagged storm -----

/// Case 4: 5000 untagged lines (`* OK noise` / `* NO noise`, an `* m EXISTS` every 1000) before
/// the tagged completion of every LOGIN (async-imap's unsolicited channel holds 100) and every
/// APPEND on the new side, and before every tagged OK that ends a FETCH of bodies on the old
/// side (with one `* 1 EXPUNGE` among them). Proves the run neither hangs nor loses data: exit
/// 0 without a reconnect, nothing deleted but the expunged message's copy, the new server
/// exact, a re-run copies nothing, verify 0.
#[test]
fn untagged_storm_before_completions() {
    let what = "untagged storm";
    let s = Scenario::primed("storm", "", "");
    let old_storms = Arc::new(AtomicUsize::new(0));
    let new_storms = Arc::new(AtomicUsize::new(0));
    let (os, ns) = (old_storms.clone(), new_storms.clone());
    let after_body = Arc::new(AtomicBool::new(false));
    let login_ok =
        |resp: &[u8]| !resp.starts_with(b"* ") && resp.windows(9).any(|w| w == b"Logged in");
    s.old_proxy.rewrite_downstream(move |resp| {
        if body_response_uid(resp).is_some() {
            after_body.store(true, SeqCst);
        }
        let before_this = login_ok(resp) || (is_tagged_ok(resp) && after_body.swap(false, SeqCst));
        if !before_this {
            return resp.to_vec();
        }
        os.fetch_add(1, SeqCst);
        [storm(5000, !login_ok(resp)), resp.to_vec()].concat()
    });
    s.new_proxy.rewrite_downstream(move |resp| {
        if !(login_ok(resp) || is_appenduid_ok(resp)) {
            return resp.to_vec();
        }
        ns.fetch_add(1, SeqCst);
        [storm(5000, false), resp.to_vec()].concat()
    });
    let r = s.sync(&["--propagate-deletes"]);
    println!(
        "{what}: {} storms on the old side, {} on the new",
        old_storms.load(SeqCst),
        new_storms.load(SeqCst)
    );
    assert!(
        old_storms.load(SeqCst) >= 4,
        "{what}: LOGIN + three body FETCHes"
    );
    assert!(
        new_storms.load(SeqCst) >= 4,
        "{what}: LOGIN + three APPENDs"
    );
    assert_ok(what, &r);
    assert_eq!(r.retries(), 0, "{what}: a storm is no fault\n{}", r.show());
    s.settled(what, &r);
}

/// Case 4b, the unfair `EXISTS`: the old server (CONDSTORE hidden by `[old.quirks]`, so every
/// folder is listed in full by sequence number) says `* 3 EXISTS` right before the tagged OK
/// of each EXAMINE, after its true count: the count went down inside one reply, which RFC 9051
/// forbids (only EXPUNGE lowers it). Proves, with `--propagate-deletes`: no copy is deleted
/// (before the fix every message past the third looked expunged and its copy was deleted, exit
/// 0); each folder whose listing left out messages the server still has (`UID SEARCH` says so)
/// fails, named, exit 1; with the proxy clean the re-run is exact.
#[test]
fn exists_going_down_in_an_examine_reply_deletes_nothing() {
    let what = "EXISTS down in EXAMINE";
    let s = Scenario::primed(
        "fewer",
        "[old.quirks]\nignore-capabilities = [\"CONDSTORE\", \"QRESYNC\"]\n",
        "",
    );
    s.old_proxy.rewrite_downstream(move |resp| {
        if is_tagged_ok(resp) && resp.windows(11).any(|w| w == b"[READ-ONLY]") {
            [b"* 3 EXISTS\r\n".to_vec(), resp.to_vec()].concat()
        } else {
            resp.to_vec()
        }
    });
    let r = s.sync(&["--propagate-deletes"]);
    assert!(
        s.old_proxy.responses_rewritten() >= 3,
        "{what}: the rule fired too rarely"
    );
    s.assert_nothing_lost(what);
    assert_eq!(
        r.folder_sum("deleted"),
        0,
        "{what}: copies deleted\n{}",
        r.show()
    );
    let failed: Vec<(String, Option<u64>)> = r.failures();
    assert_eq!(
        failed,
        vec![
            ("INBOX".to_string(), None),
            ("Archive".to_string(), None),
            ("Work".to_string(), None)
        ],
        "{what}: each folder fails, by name\n{}",
        r.show()
    );
    let why = r.user()["failures"][0]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!("{what}: {why}");
    assert!(
        why.contains("the listing left out") && why.contains("no copy deleted"),
        "{why}"
    );
    assert_eq!(r.code, Some(1), "{what}\n{}", r.show());
    s.rerun_exact(what, true);
}

// ----- case 5: a server SIGKILLed mid-command -----

/// Case 5a: no first sync; the run is held at `after-journal` of its third batch (the intents
/// of three messages journaled, their APPEND not sent) while the new Dovecot's master and
/// children are SIGKILLed and the server started again. Proves: the APPEND finds the
/// connection dead, the user reconnects, the intents resolve (not on the server: copied
/// again), exit 0 in the same run, the new server exact, a re-run copies nothing, verify 0.
#[test]
fn new_server_killed_between_journal_and_append() {
    let what = "new server SIGKILLed after the journal";
    let mut s = Scenario::start("killnew", "", "");
    let pause = Pause::new("after-journal", 3);
    let penv = pause.env();
    let penv: Vec<(&str, &str)> = penv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = s.spawn_sync(&penv);
    assert_eq!(pause.wait_reached(GUARD * 2), "after-journal");
    let mut n = TestImap::connect(s.new.port(), "alice", PW);
    assert_eq!(
        n.status("INBOX").0,
        2 * BATCH as u32,
        "{what}: two batches appended"
    );
    n.logout();
    s.restart_then_resume(what, child, false, || pause.release());
}

/// Case 5b: no first sync; the old proxy holds back the old server's FETCH response for
/// Work's second message (the client has the batch's first response and waits for the rest)
/// while the old Dovecot's master and children are SIGKILLed and restarted; then the held
/// response is dropped and the dead connection ends. Proves: the FETCH fails as a lost
/// connection, the user reconnects and resumes, exit 0 in the same run, the new server exact,
/// a re-run copies nothing, verify 0.
#[test]
fn old_server_killed_mid_fetch() {
    let what = "old server SIGKILLed mid-FETCH";
    let mut s = Scenario::start("killold", "", "");
    let marker = mid(s.tag, "Work", 1);
    let gate = Gate::default();
    let g = gate.clone();
    // The pump thread of the connection that met the marker: everything it reads after the
    // held response (what the server had sent before it died) is dropped too, so the client
    // sees the connection end in the middle of the FETCH.
    let dead: Arc<Mutex<Option<std::thread::ThreadId>>> = Arc::default();
    s.old_proxy.rewrite_downstream(move |resp| {
        let me = std::thread::current().id();
        let mut d = dead.lock().unwrap();
        if *d == Some(me) {
            return Vec::new();
        }
        if d.is_none() && is_body_of(resp, &marker) {
            *d = Some(me);
            drop(d);
            g.hold();
            return Vec::new();
        }
        resp.to_vec()
    });
    let child = s.spawn_sync(&[]);
    gate.wait_reached(what);
    s.restart_then_resume(what, child, true, || gate.open());
}

// ----- case 6: the new server goes silent -----

/// Case 6: `[new] timeout_secs = 2`; the new proxy holds back the new server's completion of
/// the Archive batch's APPEND (the batch is stored; the socket stays open, no byte comes).
/// Proves: imapshift gives up after the timeout with a reason naming the new server and the
/// timeout, reconnects, resolves the batch's intents (recovered, not copied again), exit 0 in
/// the same run, nothing deleted but the expunged message's copy, the new server exact, a
/// re-run copies nothing, verify 0.
#[test]
fn new_server_silent_past_the_timeout() {
    let what = "new server silent";
    let s = Scenario::primed("silent", "", "timeout_secs = 2\n");
    let archive = s.appenduid_of("Archive");
    let gate = Gate::default();
    let g = gate.clone();
    let fired = Arc::new(AtomicBool::new(false));
    s.new_proxy.rewrite_downstream(move |resp| {
        if is_append_into(resp, &archive) && !fired.swap(true, SeqCst) {
            g.hold();
        }
        resp.to_vec()
    });
    let (r, why) = s.faulty_sync(what);
    assert!(gate.is_reached(), "{what}: the stall never happened");
    gate.open();
    assert_ok_after(what, &r, 1);
    assert_reasons(
        what,
        &why,
        &[&[
            "folder Archive: new server",
            "no data from the server for 2s (timeout)",
        ]],
    );
    assert_recovered(what, &r, ROUND2);
    s.settled(what, &r);
}

// ----- case 7: the old server trickles -----

/// Case 7: `[old] timeout_secs = 2`; on the first connection, the old proxy passes the old
/// server's bytes on one every 300 ms from the NAMESPACE reply on: every byte comes well within
/// the timeout, no line does. Proves: a reply line is bounded like a literal's chunk (each 256
/// KiB within the timeout), so imapshift gives up on that connection after 2 s with a reason
/// naming the trickle (before the fix it read on at 3 bytes a second, for as long as the server
/// liked), reconnects, and finishes in the same run: exit 0, the new server exact, a re-run
/// copies nothing, verify 0.
#[test]
fn old_server_trickling_a_reply_line_times_out() {
    let what = "old server trickles";
    let s = Scenario::primed("trickle", "timeout_secs = 2\n", "");
    s.old_proxy
        .trickle_downstream_from(b"* NAMESPACE", Duration::from_millis(300), 1);
    let (r, why) = s.faulty_sync(what);
    assert!(
        s.old_proxy.log().iter().any(|l| l.contains("TRICKLE")),
        "{what}: the trickle never started"
    );
    assert_ok_after(what, &r, 1);
    assert_reasons(
        what,
        &why,
        &[&[
            "old server",
            "a reply line not complete after 2s",
            "the server stalls or trickles (timeout)",
        ]],
    );
    s.settled(what, &r);
}

/// Waits for a spawned run (a failure guard, never a pacing delay) and collects its output.
fn wait_output(child: std::process::Child) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(GUARD * 5) {
        Ok(out) => out.expect("wait for imapshift"),
        Err(_) => {
            sigkill(&pid.to_string());
            panic!("imapshift did not finish within {:?}", GUARD * 5);
        }
    }
}
