//! APPENDs on synchronizing literals (issue 12: "no MULTIAPPEND and no LITERAL+ ... APPENDs
//! pipelined on synchronizing literals, never one round trip per message"), against real servers:
//! an old Dovecot, then the proxy of tests/common/proxy.rs, then a new Courier-IMAP 5.0 (which has
//! neither extension) or a new Dovecot advertising neither. Pipelining is the default; against
//! Courier, quirk `delayed-continuation` (docs/server-quirks.md) makes imapshift wait for each
//! APPEND's reply instead, because Courier's `+` waits for the ACK of that reply.
//!
//! Without LITERAL+ a client must wait for the server's `+` before each message's bytes, but not
//! for APPEND n's tagged reply before it sends APPEND n+1's command line. The proxy's pacing rule
//! (`Proxy::pace_appends`) makes the difference visible without timing anything: it holds each
//! APPEND's tagged reply until the client has started its next command. imapshift sends the next
//! APPEND's line right after the message, so it releases every reply itself; only the last
//! APPEND of each batch is honestly waited for (its APPENDUID is committed before the next batch
//! is journaled), and the test declares exactly those (batches of 20: APPENDs 20, 40, 60). A
//! client that waited for every reply would stall on each of the others until the guard passed:
//! the test fails then (checked by making imapshift's single-APPEND loop wait for each reply).
//! The Courier test switches the quirk off (`[new.quirks] delayed-continuation = false`) to keep
//! proving the pipelined path there.
//!
//! With the quirk on (Courier's default), the proxy only observes (`Proxy::observe_appends`): for
//! each APPEND, whether the client's next APPEND line came before or after the proxy forwarded
//! that APPEND's tagged reply. A client that waits for each reply can only ever show *after*
//! (it cannot send what it has not decided to send before receiving the reply), so that verdict
//! does not depend on timing; a pipelining client shows *before* (checked with the quirk off).
//!
//! The messages: 60 of mixed sizes, some above the 8192 bytes Courier takes in a literal outside
//! APPEND and one above the wire layer's 256 KiB write chunk, with flags, keywords and
//! INTERNALDATEs in several zones; each arrives byte for byte with its flags and INTERNALDATE
//! instant; a re-run appends nothing; verify is OK.
//!
//! `measure_append_pipelining` (ignored; run it by name with `--ignored`) times 1000 small
//! messages to Courier on loopback and with 2 ms added to every round trip by the proxy, with the
//! quirk off (pipelined) and on (waiting); its figures are in docs/imap-layer.md and
//! docs/server-quirks.md: against Courier, whose sockets lack TCP_NODELAY, pipelining costs
//! about 40 ms of delayed ACK per message, so it is slower than waiting for each reply.

mod common;

use common::proxy::{AppendOrder, AppendPacing, PacingReport, Proxy};
use common::{diff_folder, plain_config, run_imapshift, Courier, Dovecot, DovecotOpts, TestImap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PW: &str = "pw";
const MESSAGES: usize = 60;
const BATCH: usize = 20;
/// How long the proxy holds a reply for a client that sends nothing more: a failure guard (a
/// pipelining client releases its replies by sending, within microseconds).
const STALL_GUARD: Duration = Duration::from_secs(10);

/// Dovecot 2.3's post-login capabilities without LITERAL+ and MULTIAPPEND.
const NO_LITERAL_PLUS_NO_MULTIAPPEND: &str = "imap_capability = IMAP4rev1 SASL-IR \
     LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS \
     THREAD=ORDEREDSUBJECT URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS \
     LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH \
     LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE NOTIFY\n";

fn dovecot(name: &str, extra: &str) -> Dovecot {
    Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            extra_conf: extra.into(),
            ..Default::default()
        },
    )
}

/// Message `i`: every fifth one about 20 kB (over Courier's 8192-byte non-APPEND literal
/// limit), number 7 about 300 kB, the others a few hundred bytes to 2 kB.
fn message(i: usize, filler: usize) -> Vec<u8> {
    let lines = match i {
        7 => 6_000,
        _ if i % 5 == 0 => 300 + i,
        _ => 2 + (i * 7) % 30,
    };
    let mut m = format!(
        "From: Sender {i} <s{i}@old.example>\r\nTo: alice@old.example\r\n\
         Subject: pipelined {i}\r\nMessage-ID: <pipelined-{i}@old.example>\r\n\
         Date: Mon, 1 Jan 2024 10:{:02}:00 +0000\r\n\r\n",
        i % 60
    )
    .into_bytes();
    for l in 0..lines.min(filler) {
        m.extend_from_slice(
            format!("line {l} of message {i}, some text to fill it up\r\n").as_bytes(),
        );
    }
    m
}

fn flags(i: usize) -> Vec<&'static str> {
    match i % 4 {
        0 => vec!["\\Seen"],
        1 => vec!["\\Seen", "\\Flagged", "$Forwarded"],
        2 => vec!["\\Answered", "project-x"],
        _ => vec![],
    }
}

fn date(i: usize) -> String {
    const ZONES: [&str; 4] = ["+0000", "+0530", "-0700", "+0100"];
    format!(
        "{:>2}-Mar-2023 {:02}:{:02}:17 {}",
        1 + i % 28,
        i % 24,
        (i * 13) % 60,
        ZONES[i % 4]
    )
}

/// `n` messages in the old server's INBOX; `filler` caps each one's lines.
fn seed(old: &Dovecot, n: usize, filler: usize) {
    let mut c = TestImap::connect(old.port(), "alice", PW);
    for i in 0..n {
        c.append("INBOX", &flags(i), Some(&date(i)), &message(i, filler))
            .unwrap_or_else(|e| panic!("APPEND {i} to the old server: {e}"));
    }
    c.logout();
}

/// Switches quirk `delayed-continuation` off on the new side: APPENDs pipelined on Courier too.
const PIPELINED: &str = "[new.quirks]\ndelayed-continuation = false\n";

/// `quirks`: a `[new.quirks]` table, or "".
fn config(dir: &Path, old_port: u16, new_port: u16, quirks: &str) -> PathBuf {
    let cfg = dir.join("imapshift.toml");
    let text = plain_config(
        old_port,
        new_port,
        "",
        "",
        &format!("[sync]\njobs = 1\nbatch_messages = {BATCH}\n"),
        &["alice"],
    );
    // `[new.quirks]` is a sub-table of [new]: it goes after the last [[users]].
    std::fs::write(&cfg, format!("{text}{quirks}")).unwrap();
    cfg
}

/// `imapshift <cmd> --config cfg --json`: exit code, stdout as JSON (the sync summary), stderr.
fn run(cmd: &str, cfg: &Path) -> (i32, serde_json::Value, String) {
    let out = run_imapshift(
        &[cmd, "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", PW)],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let j = if cmd == "sync" {
        common::sync_report(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{err}"))
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{cmd} --json: {e}\n{err}"))
    };
    (out.status.code().unwrap_or(-1), j, err)
}

/// The last APPEND of each batch: the only replies imapshift must wait for.
fn batch_ends(n: usize) -> Vec<usize> {
    (1..=n).filter(|k| k % BATCH == 0 || *k == n).collect()
}

/// Old Dovecot -> pacing proxy -> `new_port` with `quirks`: the copy pipelines every APPEND but
/// the last of each batch, on synchronizing literals; every message arrives exactly; a re-run
/// appends nothing; verify OK.
fn assert_pipelined_copy(what: &str, new_port: u16, quirks: &str) {
    let old = dovecot("old", "");
    seed(&old, MESSAGES, usize::MAX);
    let proxy = Proxy::start("new", new_port);
    proxy.pace_appends(AppendPacing {
        batch_ends: batch_ends(MESSAGES),
        guard: STALL_GUARD,
        max_stalls: 3,
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), proxy.port(), quirks);
    let (code, j, err) = run("sync", &cfg);
    assert_eq!(
        (code, j["copied"].as_u64()),
        (0, Some(MESSAGES as u64)),
        "{what}: {j:#}\n{err}"
    );
    let r = proxy.pacing();
    let want = PacingReport {
        appends: MESSAGES,
        synchronizing: MESSAGES,
        pipelined: MESSAGES - batch_ends(MESSAGES).len(),
        batch_ends: batch_ends(MESSAGES),
        stalls: vec![],
        gave_up: false,
    };
    assert_eq!(
        r,
        want,
        "{what}: a stall is an APPEND whose reply imapshift waited for before sending the next \
         command\n{:#?}",
        proxy.log()
    );
    assert_exact_copy(what, &old, new_port, &cfg, || proxy.pacing().appends);
}

/// Every message of the old INBOX (at least 10 over 8192 bytes, one over 256 KiB) is on the
/// new server at `new_port` byte for byte with its flags and INTERNALDATE instant; a re-run of
/// `cfg` copies nothing (`appends`: the APPENDs the proxy has seen, unchanged); verify is OK.
fn assert_exact_copy(
    what: &str,
    old: &Dovecot,
    new_port: u16,
    cfg: &Path,
    appends: impl Fn() -> usize,
) {
    let mut o = TestImap::connect(old.port(), "alice", PW);
    let olds = o.fetch_all("INBOX");
    o.logout();
    assert_eq!(olds.len(), MESSAGES);
    let sizes: Vec<usize> = olds.iter().map(|m| m.body.len()).collect();
    assert!(
        sizes.iter().filter(|&&s| s > 8192).count() >= 10 && sizes.iter().any(|&s| s > 256 << 10),
        "{sizes:?}"
    );
    let mut n = TestImap::connect(new_port, "alice", PW);
    let news = n.fetch_all("INBOX");
    n.logout();
    if let Err(e) = diff_folder("INBOX", &olds, &news) {
        panic!("{what}: {e}");
    }
    let before = appends();
    let (code, j, err) = run("sync", cfg);
    assert_eq!(
        (code, j["copied"].as_u64()),
        (0, Some(0)),
        "{what}: re-run: {j:#}\n{err}"
    );
    assert_eq!(appends(), before, "{what}: re-run appended");
    let (code, v, err) = run("verify", cfg);
    assert_eq!(code, 0, "{what}: verify: {v:#}\n{err}");
}

/// Dovecot to Courier (no LITERAL+, no MULTIAPPEND) with quirk `delayed-continuation` switched
/// off: 60 single APPENDs on synchronizing literals, 57 of them pipelined, the 3 batch ends
/// waited for; copied exactly; verify OK.
#[test]
fn dovecot_to_courier_pipelines_appends() {
    let new = Courier::start("new", &[("alice", PW)], Default::default());
    assert_pipelined_copy("Courier, quirk off", new.port(), PIPELINED);
}

/// Dovecot to Courier with its defaults: `preflight` shows quirk `delayed-continuation` on for
/// the new server, and the copy waits for each APPEND's tagged reply before it sends the next
/// APPEND: the proxy saw every APPEND's reply forwarded before the next APPEND line came (all
/// 59 but the last; causal for a waiting client). Copied exactly; a re-run copies nothing;
/// verify OK.
#[test]
fn dovecot_to_courier_waits_for_each_append() {
    let old = dovecot("old", "");
    seed(&old, MESSAGES, usize::MAX);
    let new = Courier::start("new", &[("alice", PW)], Default::default());
    let proxy = Proxy::start("new", new.port());
    proxy.observe_appends();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), old.port(), proxy.port(), "");
    let (_, checks, err) = run("preflight", &cfg);
    let software = checks
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == "software new"))
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_else(|| panic!("preflight --json: {checks:#}\n{err}"))
        .to_string();
    assert!(
        software.starts_with("Courier-IMAP;")
            && software.contains("delayed-continuation on (software)"),
        "{software}\n{err}"
    );
    let (code, j, err) = run("sync", &cfg);
    assert_eq!(
        (code, j["copied"].as_u64()),
        (0, Some(MESSAGES as u64)),
        "{j:#}\n{err}"
    );
    let want = AppendOrder {
        appends: MESSAGES,
        synchronizing: MESSAGES,
        next_before_reply: vec![],
        next_after_reply: (1..MESSAGES).collect(),
        last: vec![MESSAGES],
    };
    assert_eq!(
        proxy.append_order(),
        want,
        "next_before_reply: APPENDs whose reply imapshift did not wait for\n{:#?}",
        proxy.log()
    );
    assert_exact_copy("Courier, quirk on", &old, new.port(), &cfg, || {
        proxy.append_order().appends
    });
}

/// The same path against a Dovecot that advertises neither LITERAL+ nor MULTIAPPEND
/// (`imap_capability`).
#[test]
fn dovecot_without_literal_plus_pipelines_appends() {
    let new = dovecot("new", NO_LITERAL_PLUS_NO_MULTIAPPEND);
    let mut c = TestImap::connect(new.port(), "alice", PW);
    let caps = c.capabilities();
    c.logout();
    assert!(
        !caps.iter().any(|c| c == "LITERAL+" || c == "MULTIAPPEND"),
        "{caps:?}"
    );
    assert_pipelined_copy("Dovecot without LITERAL+", new.port(), "");
}

/// Seconds for a first sync of `n` small messages to a fresh Courier (`quirks`: a `[new.quirks]`
/// table, or ""), directly or through a proxy adding `delay` to every round trip.
fn time_copy(old: &Dovecot, n: usize, delay: Option<Duration>, quirks: &str) -> f64 {
    let new = Courier::start("new", &[("alice", PW)], Default::default());
    let proxy = Proxy::start("new", new.port());
    let port = match delay {
        Some(d) => {
            proxy.delay_downstream(d);
            proxy.port()
        }
        None => new.port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}{quirks}",
            plain_config(old.port(), port, "", "", "[sync]\njobs = 1\n", &["alice"])
        ),
    )
    .unwrap();
    let t = Instant::now();
    let (code, j, err) = run("sync", &cfg);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        (code, j["copied"].as_u64()),
        (0, Some(n as u64)),
        "{j:#}\n{err}"
    );
    secs
}

fn runs() -> usize {
    std::env::var("MEASURE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// A measurement, not a test: 1000 small messages (a few hundred bytes each) to Courier, on
/// loopback and with 2 ms added to every round trip, pipelined (quirk `delayed-continuation`
/// off) and waiting for each reply (on, the default), `MEASURE_RUNS` (3) runs each; prints the
/// times (see docs/imap-layer.md).
#[test]
#[ignore]
fn measure_append_pipelining() {
    const N: usize = 1000;
    let old = dovecot("old", "");
    seed(&old, N, 3);
    for delay in [None, Some(Duration::from_millis(2))] {
        for (how, quirks) in [("pipelined", PIPELINED), ("waiting for each reply", "")] {
            let runs: Vec<f64> = (0..runs())
                .map(|_| time_copy(&old, N, delay, quirks))
                .collect();
            eprintln!(
                "MEASURE {N} messages to Courier, {how}, round trip +{:?}: {:?} s",
                delay.unwrap_or_default(),
                runs
            );
        }
    }
}
