//! Exactly once under crashes: kill `imapshift sync` at any instant, re-run, and the new server
//! must hold exactly the old server's messages (same bytes, flags, INTERNALDATE; no duplicate,
//! no gap), and mail that exists only on the new server must be left alone.
//!
//! `sigkill_at_random_moments_then_resume` SIGKILLs real runs at pseudo-random moments spread
//! over the duration of a whole sync (some resumed runs are killed a second time), then runs to
//! completion and compares. `failpoint_at_every_journal_step` stops the process at each journaled
//! step (`IMAPSHIFT_FAILPOINT`) and checks the exact end state after the re-run.
//!
//! The old server uses `.` as hierarchy delimiter and the new one `/`, so `Archive.2024` becomes
//! `Archive/2024`. Both tests take a process-wide lock: the random-kill test calibrates its delays
//! on the duration of one sync, which another test competing for the 2 cores would distort.
//! Every account is registered when its Dovecot starts (see [`old_server`]).

mod common;

use common::gen::{self, folder_sum, MailGen, SeedMsg};
use common::{
    diff_folder, imapshift_bin, run_imapshift, subject, write_config, Dovecot, DovecotOpts, Rng,
    TestImap, TestMsg,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const OLD_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = .\n}\n";
const NEW_NS: &str = "namespace inbox {\n  inbox = yes\n  separator = /\n}\n";

/// The old folders that hold mail (old names).
const FOLDERS: [&str; 3] = ["INBOX", "Work", "Archive.2024"];

/// Password of every new-side account.
const NEW_PW: &str = "pw";

/// `[sync] batch_messages` of every config here: a full sync has many batches.
const BATCH: usize = 7;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The same folder on the new server.
fn new_name(old: &str) -> String {
    old.replace('.', "/")
}

/// Every account is registered when the server starts: Dovecot's passwd-file backend re-reads
/// the file at most once a second, so a user added later may be refused for a moment.
fn old_server(users: &[&str], pw: &str) -> Dovecot {
    let users: Vec<(&str, &str)> = users.iter().map(|u| (*u, pw)).collect();
    Dovecot::start(
        "old",
        &users,
        DovecotOpts {
            tls: false,
            extra_conf: OLD_NS.into(),
            ..Default::default()
        },
    )
}

fn new_server(users: &[String]) -> Dovecot {
    let users: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), NEW_PW)).collect();
    Dovecot::start(
        "new",
        &users,
        DovecotOpts {
            tls: false,
            extra_conf: NEW_NS.into(),
            ..Default::default()
        },
    )
}

// ----- the generated mailbox -----

/// Bodies of 1-40 KB (mostly small, some large) over [`FOLDERS`]; `Work` holds two
/// byte-identical twins (same bytes, flags and INTERNALDATE) far enough apart to land in
/// different batches.
const MAIL: MailGen = MailGen {
    words: "migration server quarterly report invoice meeting Grüße naïve budget deadline \
            zürich draft résumé release backup ticket",
    flags: "\\Seen \\Answered \\Flagged \\Draft $Forwarded $Important Project-X todo",
    years: (2005, 20),
    sizes: &[
        (6, (1024, 5 * 1024)),
        (3, (6 * 1024, 14 * 1024)),
        (1, (20 * 1024, 20 * 1024)),
    ],
    extra_words: 14,
    folders: &[(9, "INBOX"), (6, "Work"), (5, "Archive.2024")],
    twins: ("Work", [4, 4 + 2 * BATCH + 1]),
    twin_to: true,
};

/// Creates the folders of `login` on the old server and appends `msgs` in order.
fn seed(old: &Dovecot, login: &str, pw: &str, msgs: &[SeedMsg]) {
    gen::seed(old.port(), login, pw, &FOLDERS[1..], msgs);
}

/// Every message of every folder in [`FOLDERS`], keyed by old folder name. `new_side` reads the
/// translated names.
fn snapshot(
    server: &Dovecot,
    login: &str,
    pw: &str,
    new_side: bool,
) -> BTreeMap<String, Vec<TestMsg>> {
    let name = |f: &str| if new_side { new_name(f) } else { f.to_string() };
    gen::snapshot_folders(server.port(), login, pw, &FOLDERS, name)
}

/// Messages per folder on the new side right now (0 for a folder not created yet).
fn new_counts(new: &Dovecot, login: &str) -> Vec<u32> {
    let mut c = TestImap::connect(new.port(), login, NEW_PW);
    let names: Vec<String> = c.list().into_iter().map(|(_, _, n)| n).collect();
    let counts = FOLDERS
        .iter()
        .map(|f| {
            let n = new_name(f);
            if names.contains(&n) {
                c.status(&n).0
            } else {
                0
            }
        })
        .collect();
    c.logout();
    counts
}

fn diff_all(
    want: &BTreeMap<String, Vec<TestMsg>>,
    got: &BTreeMap<String, Vec<TestMsg>>,
) -> Result<(), String> {
    let errs: Vec<String> = FOLDERS
        .iter()
        .filter_map(|f| diff_folder(f, &want[*f], &got[*f]).err())
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

// ----- running imapshift -----

/// Writes the config for old `old_login` -> new `new_login` in `dir` (state in `dir/state`).
fn config(dir: &Path, old: &Dovecot, new: &Dovecot, old_login: &str, new_login: &str) -> PathBuf {
    let cfg = write_config(dir, old, new, &[(old_login, new_login, "OLD_PW", "NEW_PW")]);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}[sync]\nbatch_messages = {BATCH}\n")).unwrap();
    cfg
}

fn envs(old_pw: &str) -> Vec<(&str, &str)> {
    vec![("OLD_PW", old_pw), ("NEW_PW", NEW_PW)]
}

fn sync_args(cfg: &Path, propagate: bool) -> Vec<String> {
    let mut a = vec![
        "sync".to_string(),
        "--config".to_string(),
        cfg.to_str().unwrap().to_string(),
        "--json".to_string(),
    ];
    if propagate {
        a.push("--propagate-deletes".to_string());
    }
    a
}

fn run_sync(cfg: &Path, propagate: bool, envs: &[(&str, &str)]) -> Output {
    let args = sync_args(cfg, propagate);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_imapshift(&args, envs)
}

fn show(out: &Output) -> String {
    gen::show_tail(out, 60)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts exit 0 and returns the JSON summary.
fn expect_ok(out: &Output, what: &str) -> serde_json::Value {
    assert!(out.status.success(), "{what}: sync failed\n{}", show(out));
    let j: serde_json::Value = common::sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", show(out)));
    assert_eq!(j["exit_code"], 0, "{what}: {j}");
    j
}

/// The closing run of every scenario: must copy (and change) nothing, and leave no intent.
fn final_sync_copies_nothing(cfg: &Path, propagate: bool, envs: &[(&str, &str)], what: &str) {
    let out = run_sync(cfg, propagate, envs);
    let j = expect_ok(&out, &format!("{what}: final sync"));
    assert_eq!(j["copied"], 0, "{what}: the final sync copied again: {j}");
    assert_eq!(folder_sum(&j, "flags_updated"), 0, "{what}: {j}");
    assert_eq!(folder_sum(&j, "deleted"), 0, "{what}: {j}");
    gen::assert_no_intents(what, cfg, envs);
}

/// One interrupted run of the random-kill test.
struct Kill {
    delay: Duration,
    /// SIGKILL hit a running process (it had not finished yet).
    killed: bool,
    /// When the run was not killed: how long it took.
    finished_after: Option<Duration>,
    status: ExitStatus,
    /// Messages on the new side per folder right after the kill.
    on_new: Vec<u32>,
    stderr: PathBuf,
}

/// Spawns a sync, waits `delay`, SIGKILLs it (if still running) and reaps it. Watches the child
/// while waiting, so a run that ends before the kill is timed.
fn spawn_and_kill(
    cfg: &Path,
    dir: &Path,
    label: &str,
    delay: Duration,
    envs: &[(&str, &str)],
    new: &Dovecot,
    new_login: &str,
) -> Kill {
    let stdout = dir.join(format!("{label}.stdout"));
    let stderr = dir.join(format!("{label}.stderr"));
    let mut child = Command::new(imapshift_bin())
        .args(sync_args(cfg, false))
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", imapshift_bin().display()));
    let t0 = Instant::now();
    let mut finished_after = None;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for imapshift") {
            finished_after = Some(t0.elapsed());
            break st;
        }
        let left = delay.saturating_sub(t0.elapsed());
        if left.is_zero() {
            // On unix this is SIGKILL.
            child.kill().expect("kill imapshift");
            break child.wait().expect("wait for imapshift");
        }
        std::thread::sleep(left.min(Duration::from_millis(2)));
    };
    let killed = status.signal() == Some(9);
    if !killed {
        assert!(
            status.success(),
            "{label}: run exited on its own before the kill, but not with 0: {status}\n{}",
            tail(&std::fs::read_to_string(&stderr).unwrap_or_default(), 60)
        );
    }
    Kill {
        delay,
        killed,
        finished_after,
        status,
        on_new: new_counts(new, new_login),
        stderr,
    }
}

#[test]
fn sigkill_at_random_moments_then_resume() {
    let _serial = serial();
    const TRIALS: usize = 36;
    const TOTAL: usize = 240;
    let started = Instant::now();
    let old = old_server(&["alice"], "old-a");
    const CALIB: [&str; 3] = ["calib1", "calib2", "calib3"];
    let mut logins: Vec<String> = CALIB.iter().map(|s| s.to_string()).collect();
    logins.extend((0..TRIALS).map(|t| format!("t{t}")));
    let new = new_server(&logins);
    let msgs = MAIL.generate(TOTAL - 2, 1, "kr");
    assert_eq!(msgs.len(), TOTAL);
    seed(&old, "alice", "old-a", &msgs);
    let want = snapshot(&old, "alice", "old-a", false);
    let per_folder: Vec<usize> = FOLDERS.iter().map(|f| want[*f].len()).collect();
    assert_eq!(per_folder.iter().sum::<usize>(), TOTAL);
    let bytes: usize = want.values().flatten().map(|m| m.body.len()).sum();
    let envs = envs("old-a");

    // Calibration: uninterrupted syncs into fresh accounts. Other work on the machine only
    // makes a sync slower, so the fastest run is the best estimate of its duration; runs of the
    // trials that end before their kill refine it (see below).
    let mut times = Vec::new();
    for login in CALIB {
        let cdir = tempfile::tempdir().unwrap();
        let cfg = config(cdir.path(), &old, &new, "alice", login);
        let t0 = Instant::now();
        let out = run_sync(&cfg, false, &envs);
        times.push(t0.elapsed());
        let j = expect_ok(&out, &format!("calibration {login}"));
        assert_eq!(j["copied"], TOTAL, "calibration {login}: {j}");
        if let Err(d) = diff_all(&want, &snapshot(&new, login, NEW_PW, true)) {
            panic!("calibration {login} (uninterrupted sync) is not exact:\n{d}");
        }
    }
    let full = times.iter().copied().min().unwrap();
    eprintln!(
        "seeded {TOTAL} messages ({bytes} bytes; {per_folder:?} in {FOLDERS:?}); \
         uninterrupted syncs took {times:?}"
    );
    let mut full = full;

    let mut hits = 0;
    let mut mid_copy = 0;
    for t in 0..TRIALS {
        let login = format!("t{t}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &old, &new, "alice", &login);
        let mut rng = Rng::new(t as u64 + 1);
        // Stratified: each trial draws its delay from its own slice of [0, 1.2 x the duration
        // of a sync], so the kills cover the whole sync from process start to after its end.
        // The slices are visited in a scrambled order (7 is coprime with TRIALS), so that runs
        // that end before their kill, which time a whole sync, come early and keep the
        // estimate of its duration honest when the calibration ran on a busy machine.
        let span = full.mul_f64(1.2);
        let slice = (t * 7) % TRIALS;
        let first = span.mul_f64((slice as f64 + rng.unit()) / TRIALS as f64);
        let mut kills = vec![spawn_and_kill(
            &cfg,
            dir.path(),
            "run1",
            first,
            &envs,
            &new,
            &login,
        )];
        if t % 3 == 2 && kills[0].killed {
            // The resumed run has less to do: draw from the part of the span still ahead
            // (at least a fifth of it: the run starts up and resolves intents first).
            let done = kills[0].on_new.iter().sum::<u32>() as f64 / TOTAL as f64;
            let second = span.mul_f64((1.0 - done).max(0.2) * rng.unit());
            kills.push(spawn_and_kill(
                &cfg,
                dir.path(),
                "run2",
                second,
                &envs,
                &new,
                &login,
            ));
        }
        let ctx = {
            let parts: Vec<String> = kills
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    format!(
                        "kill {} after {:?}: {} (new side then held {:?})",
                        i + 1,
                        k.delay,
                        match k.finished_after {
                            _ if k.killed => "killed while running".to_string(),
                            Some(d) => format!("had already finished after {d:?} ({})", k.status),
                            None => format!("had already finished ({})", k.status),
                        },
                        k.on_new
                    )
                })
                .collect();
            format!("trial {t} (new account {login}): {}", parts.join("; "))
        };
        let stderr_of_kills = || {
            kills
                .iter()
                .map(|k| {
                    format!(
                        "--- stderr of the run killed after {:?} ---\n{}",
                        k.delay,
                        tail(&std::fs::read_to_string(&k.stderr).unwrap_or_default(), 40)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let out = run_sync(&cfg, false, &envs);
        if !out.status.success() {
            panic!(
                "{ctx}: the resumed run failed\n{}\n{}",
                show(&out),
                stderr_of_kills()
            );
        }
        let j = expect_ok(&out, &ctx);
        let got = snapshot(&new, &login, NEW_PW, true);
        if let Err(d) = diff_all(&want, &got) {
            panic!(
                "{ctx}: after the resumed run the new side differs from the old:\n{d}\n\
                 resumed run summary: {j}\n--- stderr of the resumed run ---\n{}\n{}",
                tail(&String::from_utf8_lossy(&out.stderr), 40),
                stderr_of_kills()
            );
        }
        final_sync_copies_nothing(&cfg, false, &envs, &ctx);
        let k1 = &kills[0];
        if let Some(d) = k1.finished_after {
            full = full.min(d);
        }
        if k1.killed {
            hits += 1;
            let n: u32 = k1.on_new.iter().sum();
            if n > 0 && (n as usize) < TOTAL {
                mid_copy += 1;
            }
        }
        eprintln!(
            "{ctx}; resumed run copied {} recovered {} => exact",
            j["copied"],
            folder_sum(&j, "recovered")
        );
    }
    eprintln!(
        "{TRIALS} trials in {:?}: {hits} first kills hit a running process, {mid_copy} of them \
         in the middle of the copy",
        started.elapsed()
    );
    assert!(
        mid_copy >= 10,
        "only {mid_copy} of {TRIALS} trials were killed while messages were being copied \
         (one sync took {full:?}): the test proves too little"
    );
    assert!(
        hits >= 20,
        "only {hits} of {TRIALS} trials killed a running process (one sync took {full:?}): \
         the test proves too little"
    );
}

// ----- failpoints -----

/// Runs a sync that must stop at `point`, then checks it did.
fn crash_at(cfg: &Path, point: &str, hit: u32, propagate: bool, old_pw: &str, what: &str) {
    let hit_s = hit.to_string();
    let mut e = envs(old_pw);
    e.push(("IMAPSHIFT_FAILPOINT", point));
    e.push(("IMAPSHIFT_FAILPOINT_HIT", &hit_s));
    let out = run_sync(cfg, propagate, &e);
    assert!(
        !out.status.success(),
        "{what}: the failpoint did not stop the run\n{}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("failpoint {point} reached")),
        "{what}: the run failed, but not at the failpoint\n{}",
        show(&out)
    );
}

/// The messages of a folder that are not one of the twins.
fn plain(ms: &[TestMsg]) -> Vec<&TestMsg> {
    ms.iter()
        .filter(|m| !subject(m).ends_with(" twin"))
        .collect()
}

/// A fresh pair of accounts after a complete first sync, see [`synced_pair`].
struct Pair {
    old_login: String,
    new_login: String,
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    /// The old account after the first sync.
    before: BTreeMap<String, Vec<TestMsg>>,
}

/// Seeds old account `o-<name>` with `msgs`, writes a config migrating it to new account
/// `n-<name>` (both registered when their server started) and runs a first sync, which must
/// copy every message.
fn synced_pair(old: &Dovecot, new: &Dovecot, name: &str, msgs: &[SeedMsg], what: &str) -> Pair {
    let old_login = format!("o-{name}");
    let new_login = format!("n-{name}");
    seed(old, &old_login, "old-pw", msgs);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old, new, &old_login, &new_login);
    let j = expect_ok(
        &run_sync(&cfg, false, &envs("old-pw")),
        &format!("{what}: first sync"),
    );
    assert_eq!(j["copied"], msgs.len(), "{what}: {j}");
    let before = snapshot(old, &old_login, "old-pw", false);
    Pair {
        old_login,
        new_login,
        _dir: dir,
        cfg,
        before,
    }
}

impl Pair {
    /// A run stopped at `point` (hit `hit`), then the resumed run, which must succeed without
    /// copying anything: its output and summary.
    fn crash_and_resume(
        &self,
        point: &str,
        hit: u32,
        propagate: bool,
        what: &str,
    ) -> (Output, serde_json::Value) {
        crash_at(&self.cfg, point, hit, propagate, "old-pw", what);
        let out = run_sync(&self.cfg, propagate, &envs("old-pw"));
        let j = expect_ok(&out, &format!("{what}: resumed run"));
        assert_eq!(j["copied"], 0, "{what}: the resumed run copied: {j}");
        (out, j)
    }
}

#[test]
fn failpoint_at_every_journal_step() {
    let _serial = serial();
    let started = Instant::now();
    const POINTS: [&str; 2] = ["after-journal", "after-append"];
    const HITS: [u32; 3] = [1, 2, 5];
    let scenarios = ["shared", "store1", "store2", "expunge1", "expunge2"];
    let old_logins: Vec<String> = scenarios.iter().map(|s| format!("o-{s}")).collect();
    let old_logins: Vec<&str> = old_logins.iter().map(String::as_str).collect();
    let old = old_server(&old_logins, "old-pw");
    let mut new_logins: Vec<String> = scenarios[1..].iter().map(|s| format!("n-{s}")).collect();
    for p in POINTS {
        new_logins.extend(HITS.iter().map(|h| format!("n-{p}-{h}")));
    }
    let new = new_server(&new_logins);
    let msgs = MAIL.generate(70, 2, "fp");
    let total = msgs.len();
    let envs_ = envs("old-pw");

    // after-journal / after-append: the old account is only read, so one serves all cases.
    seed(&old, "o-shared", "old-pw", &msgs);
    let want = snapshot(&old, "o-shared", "old-pw", false);
    for point in POINTS {
        for hit in HITS {
            let what = format!("{point} hit {hit}");
            let new_login = format!("n-{point}-{hit}");
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), &old, &new, "o-shared", &new_login);
            crash_at(&cfg, point, hit, false, "old-pw", &what);
            let before: u32 = new_counts(&new, &new_login).iter().sum();
            let out = run_sync(&cfg, false, &envs_);
            let j = expect_ok(&out, &format!("{what}: resumed run"));
            if let Err(d) = diff_all(&want, &snapshot(&new, &new_login, NEW_PW, true)) {
                panic!(
                    "{what}: after the resumed run the new side differs from the old \
                     ({before} messages on new after the abort):\n{d}\nresumed run: {}",
                    show(&out)
                );
            }
            let recovered = folder_sum(&j, "recovered");
            let copied = j["copied"].as_u64().unwrap();
            if point == "after-append" {
                assert!(
                    recovered >= 1,
                    "{what}: the batch appended before the abort was not recovered: {j}"
                );
            } else {
                assert_eq!(
                    recovered, 0,
                    "{what}: nothing was appended before the abort: {j}"
                );
            }
            assert_eq!(
                u64::from(before) + copied,
                total as u64,
                "{what}: {before} messages on new after the abort, but the resumed run \
                 copied {copied} of {total}: {j}"
            );
            final_sync_copies_nothing(&cfg, false, &envs_, &what);
            eprintln!(
                "{what}: {before} messages on new after the abort; resumed run copied {copied}, \
                 recovered {recovered} => exact"
            );
        }
    }

    // after-store: flag changes on the old side, in every folder, one twin only.
    for hit in [1u32, 2] {
        let what = format!("after-store hit {hit}");
        let pair = synced_pair(&old, &new, &format!("store{hit}"), &msgs, &what);
        let (ol, nl, before) = (&pair.old_login, &pair.new_login, &pair.before);
        let mut c = TestImap::connect(old.port(), ol, "old-pw");
        // Every change really changes something: the new flags are the old ones with `toggle`
        // flipped. Four messages per folder, plus the second twin only.
        let mut picks: Vec<(&str, &TestMsg, &[&str])> = Vec::new();
        for f in FOLDERS {
            let ms = plain(&before[f]);
            let toggles: [&[&str]; 4] = [
                &["\\Flagged", "todo"],
                &["\\Seen"],
                &["$Important", "\\Answered"],
                &["Project-X"],
            ];
            for (i, toggle) in [1, 3, 5, 8].into_iter().zip(toggles) {
                picks.push((f, ms[i % ms.len()], toggle));
            }
        }
        let twins: Vec<&TestMsg> = before["Work"]
            .iter()
            .filter(|m| subject(m) == "fp twin")
            .collect();
        assert_eq!(twins.len(), 2, "{what}: twins in Work");
        picks.push(("Work", twins[1], &["\\Flagged"]));
        for (f, m, toggle) in &picks {
            let mut flags: Vec<&str> = m
                .flags
                .iter()
                .map(String::as_str)
                .filter(|x| !toggle.contains(x))
                .collect();
            flags.extend(toggle.iter().filter(|t| !m.flags.iter().any(|x| x == *t)));
            c.store_flags(f, m.uid, "FLAGS", &flags);
        }
        c.logout();
        let want = snapshot(&old, ol, "old-pw", false);
        let changed: Vec<usize> = FOLDERS
            .iter()
            .map(|f| {
                let (a, b) = (&before[*f], &want[*f]);
                a.iter().zip(b).filter(|(x, y)| x.flags != y.flags).count()
            })
            .collect();
        assert_eq!(
            changed,
            [4, 5, 4],
            "{what}: flag changes per folder {FOLDERS:?} on the old server"
        );
        let (out, j) = pair.crash_and_resume("after-store", hit, false, &what);
        if let Err(d) = diff_all(&want, &snapshot(&new, nl, NEW_PW, true)) {
            panic!(
                "{what}: after the resumed run the new side differs from the old:\n{d}\n\
                 resumed run: {}",
                show(&out)
            );
        }
        final_sync_copies_nothing(&pair.cfg, false, &envs_, &what);
        eprintln!(
            "{what}: flags changed on old in {changed:?} messages; resumed run updated {} => exact",
            folder_sum(&j, "flags_updated")
        );
    }

    // after-expunge: old messages expunged (one twin among them) in every folder, one message
    // only on the new side, deletions propagated.
    for hit in [1u32, 2] {
        let what = format!("after-expunge hit {hit}");
        let pair = synced_pair(&old, &new, &format!("expunge{hit}"), &msgs, &what);
        let (ol, nl, before) = (&pair.old_login, &pair.new_login, &pair.before);
        let mut c = TestImap::connect(old.port(), ol, "old-pw");
        let mut expunged: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for f in FOLDERS {
            let ms = plain(&before[f]);
            for i in [0, 2, ms.len() - 1] {
                c.expunge_uid(f, ms[i].uid);
                expunged.entry(f).or_default().push(subject(ms[i]));
            }
        }
        let twin = before["Work"]
            .iter()
            .rev()
            .find(|m| subject(m) == "fp twin")
            .expect("twin in Work");
        c.expunge_uid("Work", twin.uid);
        expunged.entry("Work").or_default().push(subject(twin));
        c.logout();
        let want = snapshot(&old, ol, "old-pw", false);
        for f in FOLDERS {
            assert_eq!(
                want[f].len(),
                before[f].len() - expunged[f].len(),
                "{what}: expunge on old in {f}"
            );
        }
        // Mail delivered to the new server directly: must survive everything.
        let only_new = b"From: someone@new.example\r\nTo: alice@new.example\r\n\
            Subject: delivered to the new server only\r\n\
            Message-ID: <only-new@new.example>\r\n\r\nnot on the old server\r\n";
        let mut n = TestImap::connect(new.port(), nl, NEW_PW);
        n.append(
            "INBOX",
            &["\\Flagged"],
            Some("07-Jul-2022 07:07:07 +0000"),
            only_new,
        )
        .expect("append the new-side-only message");
        n.append("Work", &[], Some("08-Aug-2022 08:08:08 +0000"), only_new)
            .expect("append the new-side-only message");
        n.logout();

        let (out, j) = pair.crash_and_resume("after-expunge", hit, true, &what);
        let mut got = snapshot(&new, nl, NEW_PW, true);
        // The new-side-only messages: still there, once, untouched; then compare the rest.
        for (f, flags, date) in [
            (
                "INBOX",
                vec!["\\Flagged".to_string()],
                "07-Jul-2022 07:07:07 +0000",
            ),
            ("Work", vec![], "08-Aug-2022 08:08:08 +0000"),
        ] {
            let ms = got.get_mut(f).unwrap();
            let idx: Vec<usize> = (0..ms.len())
                .filter(|&i| ms[i].body == only_new.as_slice())
                .collect();
            assert_eq!(
                idx.len(),
                1,
                "{what}: folder {f}: the new-side-only message must be there exactly once \
                 (found {}); resumed run: {}",
                idx.len(),
                show(&out)
            );
            let m = ms.remove(idx[0]);
            // The same instant (the server spells it in its own zone).
            assert_eq!(
                (m.flags.clone(), m.instant()),
                (flags, common::internaldate_secs(date)),
                "{what}: folder {f}: the new-side-only message was changed: {:?}",
                m.internaldate
            );
        }
        if let Err(d) = diff_all(&want, &got) {
            panic!(
                "{what}: after the resumed run the new side differs from the old \
                 (expunged on old: {expunged:?}):\n{d}\nresumed run: {}",
                show(&out)
            );
        }
        final_sync_copies_nothing(&pair.cfg, true, &envs_, &what);
        eprintln!(
            "{what}: expunged {:?} on old; resumed run deleted {} => exact, new-side-only \
             mail kept",
            expunged.values().map(Vec::len).collect::<Vec<_>>(),
            folder_sum(&j, "deleted")
        );
    }
    eprintln!("failpoint scenarios done in {:?}", started.elapsed());
}
