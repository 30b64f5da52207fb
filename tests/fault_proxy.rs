//! Exactly once over a flaky network.
//!
//! A small fault-injecting TCP proxy ([`FaultProxy`], std threads and `std::net` only) sits
//! between `imapshift` and one of the two real Dovecots. It forwards bytes both ways and, on the
//! first few connections it accepts, injects one fault each at a deterministic pseudo-random point
//! (xorshift seeded per test): a cut of both sockets after a byte budget (during the greeting /
//! LOGIN / LIST, or in the middle of a FETCH), a stall (the server's bytes stop flowing, the
//! client must time out), a cut in the middle of an APPEND literal (inside a MULTIAPPEND batch),
//! or a lost reply (the whole APPEND reaches the server, which stores it, but its tagged OK is
//! swallowed and the connection cut). Later connections are clean, so with at most three faults
//! the 4-attempt reconnect budget of a user is respected and the run can finish.
//!
//! In the end the new server must hold exactly the old server's messages (bytes, flags,
//! INTERNALDATE, count per folder, in order: no duplicate, no gap), and one more run must copy
//! nothing.
//!
//! The fault points are fixed per test; set `IMAPSHIFT_FAULT_SEED=<n>` to explore other ones (the
//! seed is mixed into every test's seeds and printed).

mod common;

use common::gen::{self, folder_sum, MailGen, SeedMsg};
use common::{diff_folder, literal_at_end, run_imapshift, Dovecot, DovecotOpts, Rng, TestMsg};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The folders that hold mail (same names on both sides: no hierarchy).
const FOLDERS: [&str; 3] = ["INBOX", "Work", "Archive"];
const OLD_PW: &str = "old-pw";
const NEW_PW: &str = "new-pw";
const ENVS: &[(&str, &str)] = &[("OLD_PW", OLD_PW), ("NEW_PW", NEW_PW)];
const MESSAGES: usize = 150;
/// `[sync] batch_messages`.
const BATCH: usize = 10;
/// The first run plus up to three re-runs by the admin.
const MAX_RUNS: usize = 4;
/// A stalled connection the client has not given up on after this long is cut by the proxy
/// (and the test fails): imapshift's `timeout_secs` must notice a stall long before.
const STALL_LIMIT: Duration = Duration::from_secs(20);
/// How long the proxy keeps a connection open after swallowing an APPEND's reply.
const LOST_REPLY_CUT_AFTER: Duration = Duration::from_millis(800);

// ----- deterministic randomness -----

/// `seed` mixed with `$IMAPSHIFT_FAULT_SEED` if set.
fn seed_for(seed: u64) -> u64 {
    let extra: u64 = std::env::var("IMAPSHIFT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if extra != 0 {
        println!("IMAPSHIFT_FAULT_SEED={extra}");
    }
    seed ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

// ----- the proxy -----

/// The fault injected into one proxied connection.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Shut both sockets down once this many bytes went server -> client.
    CutDownstream(u64),
    /// After this many bytes server -> client, forward nothing more from the server but keep both
    /// sockets open: only the client's timeout ends this.
    StallDownstream(u64),
    /// Shut both sockets down in the middle of an APPEND literal going client -> server: the
    /// first literal of an APPEND command (MULTIAPPEND counts each message) whose 1-based index on
    /// this connection is >= `nth` and whose size is >= `min_size`, after `permille`/1000 of it.
    CutMidLiteral {
        nth: u64,
        min_size: u64,
        permille: u64,
    },
    /// Forward the `nth` APPEND command of this connection completely, then swallow everything
    /// the server sends (its tagged OK included) and cut [`LOST_REPLY_CUT_AFTER`] later: the
    /// server has stored the messages, the client never learns it.
    LoseAppendReply { nth: u64 },
}

/// Counters shared by the proxy threads.
#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    /// Connections cut by the proxy (every kind of fault but stalls).
    cuts: AtomicUsize,
    mid_literal_cuts: AtomicUsize,
    lost_replies: AtomicUsize,
    stalls: AtomicUsize,
    /// Stalls that reached [`STALL_LIMIT`] before the client gave up.
    stalls_expired: AtomicUsize,
    log: Mutex<Vec<String>>,
}

impl Stats {
    fn note(&self, s: String) {
        eprintln!("{s}");
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    fn faults(&self) -> usize {
        self.cuts.load(SeqCst) + self.stalls.load(SeqCst)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A listening proxy on 127.0.0.1:<ephemeral port> forwarding to 127.0.0.1:`target`.
/// Connection k (0-based, in accept order) gets `faults[k]`; later ones are clean.
struct FaultProxy {
    port: u16,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    fn start(name: &'static str, target: u16, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if sp.load(SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let id = st.accepted.fetch_add(1, SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    st.note(format!(
                        "{name} proxy: conn #{id}: cannot reach port {target}"
                    ));
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let fault = faults.get(id).copied();
                st.note(format!(
                    "{name} proxy: conn #{id} accepted, fault {fault:?}"
                ));
                let conn = Arc::new(Conn {
                    name,
                    id,
                    client,
                    server,
                    fired: AtomicBool::new(false),
                    client_gone: AtomicBool::new(false),
                    swallow: AtomicBool::new(false),
                    stats: st.clone(),
                });
                let c = conn.clone();
                thread::spawn(move || pump_up(c, fault));
                thread::spawn(move || pump_down(conn, fault));
            }
        });
        FaultProxy {
            port,
            stats,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// One proxied connection.
struct Conn {
    name: &'static str,
    id: usize,
    client: TcpStream,
    server: TcpStream,
    /// The fault was injected.
    fired: AtomicBool,
    /// The client closed its side (or the connection broke).
    client_gone: AtomicBool,
    /// Discard what the server sends.
    swallow: AtomicBool,
    stats: Arc<Stats>,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Injects a cut (once).
    fn cut(&self, what: String) {
        if !self.fired.swap(true, SeqCst) {
            self.stats.cuts.fetch_add(1, SeqCst);
            self.stats.note(format!(
                "{} proxy: conn #{}: CUT {what}",
                self.name, self.id
            ));
        }
        self.close();
    }
}

/// What [`AppendTracker`] saw at a byte.
enum Seen {
    /// The header `{n}` of the `index`-th APPEND literal of the connection ended at this byte.
    LiteralStart { index: u64, size: u64 },
    /// The `index`-th APPEND command of the connection ended at this byte.
    AppendEnd { index: u64 },
}

/// Follows the client -> server byte stream: command lines, literals, and which commands are
/// APPENDs.
#[derive(Default)]
struct AppendTracker {
    line: Vec<u8>,
    literal_left: u64,
    /// The current command continues after a literal.
    in_command: bool,
    command_is_append: bool,
    append_literals: u64,
    appends: u64,
}

impl AppendTracker {
    fn feed(&mut self, b: u8) -> Option<Seen> {
        if self.literal_left > 0 {
            self.literal_left -= 1;
            return None;
        }
        if b != b'\n' {
            self.line.push(b);
            return None;
        }
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if !self.in_command {
            // "tag VERB ...".
            let mut words = line.split(|&c| c == b' ');
            let _tag = words.next();
            self.command_is_append = words
                .next()
                .is_some_and(|v| v.eq_ignore_ascii_case(b"APPEND"));
        }
        match literal_at_end(line) {
            Some(n) => {
                self.in_command = true;
                self.literal_left = n as u64;
                if self.command_is_append && n > 0 {
                    self.append_literals += 1;
                    return Some(Seen::LiteralStart {
                        index: self.append_literals,
                        size: n as u64,
                    });
                }
                None
            }
            None => {
                self.in_command = false;
                if std::mem::take(&mut self.command_is_append) {
                    self.appends += 1;
                    return Some(Seen::AppendEnd {
                        index: self.appends,
                    });
                }
                None
            }
        }
    }
}

/// Client -> server.
fn pump_up(c: Arc<Conn>, fault: Option<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut tracker = AppendTracker::default();
    // Bytes forwarded so far.
    let mut pos: u64 = 0;
    // Absolute stream position (bytes forwarded) at which to cut, and why.
    let mut cut_at: Option<(u64, String)> = None;
    loop {
        let n = match (&c.client).read(&mut buf) {
            Ok(0) => {
                c.client_gone.store(true, SeqCst);
                let _ = c.server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        let mut end = n;
        let mut fire = None;
        for (i, &b) in buf[..n].iter().enumerate() {
            let at = pos + i as u64 + 1;
            match (fault, tracker.feed(b)) {
                (
                    Some(Fault::CutMidLiteral {
                        nth,
                        min_size,
                        permille,
                    }),
                    Some(Seen::LiteralStart { index, size }),
                ) if cut_at.is_none() && index >= nth && size >= min_size => {
                    let off = (size * permille / 1000).clamp(1, size - 1);
                    cut_at = Some((
                        at + off,
                        format!(
                            "mid-literal: APPEND literal #{index} of {size} bytes, after {off} \
                             of its bytes ({} bytes client -> server)",
                            at + off
                        ),
                    ));
                }
                (Some(Fault::LoseAppendReply { nth }), Some(Seen::AppendEnd { index }))
                    if index == nth && !c.swallow.load(SeqCst) =>
                {
                    // Set before the command's last bytes are forwarded: the server cannot
                    // answer before that.
                    c.swallow.store(true, SeqCst);
                    let c2 = c.clone();
                    thread::spawn(move || {
                        thread::sleep(LOST_REPLY_CUT_AFTER);
                        c2.stats.lost_replies.fetch_add(1, SeqCst);
                        c2.cut(format!(
                            "lost reply: APPEND command #{nth} sent in full, its reply swallowed"
                        ));
                    });
                }
                _ => {}
            }
            if let Some((cut, why)) = &cut_at {
                if at == *cut {
                    end = i + 1;
                    fire = Some(why.clone());
                    break;
                }
            }
        }
        if (&c.server).write_all(&buf[..end]).is_err() {
            break;
        }
        pos += end as u64;
        if let Some(why) = fire {
            c.stats.mid_literal_cuts.fetch_add(1, SeqCst);
            c.cut(why);
            break;
        }
    }
    c.client_gone.store(true, SeqCst);
    c.close();
}

/// Server -> client.
fn pump_down(c: Arc<Conn>, fault: Option<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pos: u64 = 0;
    loop {
        let n = match (&c.server).read(&mut buf) {
            Ok(0) => {
                let _ = c.client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        if c.swallow.load(SeqCst) {
            continue;
        }
        let budget = match fault {
            Some(Fault::CutDownstream(b)) | Some(Fault::StallDownstream(b)) => Some(b),
            _ => None,
        };
        let Some(budget) = budget.filter(|&b| pos + n as u64 >= b) else {
            if (&c.client).write_all(&buf[..n]).is_err() {
                break;
            }
            pos += n as u64;
            continue;
        };
        let part = (budget - pos) as usize;
        let _ = (&c.client).write_all(&buf[..part]);
        if let Some(Fault::StallDownstream(_)) = fault {
            c.fired.store(true, SeqCst);
            c.stats.stalls.fetch_add(1, SeqCst);
            c.stats.note(format!(
                "{} proxy: conn #{}: STALL after {budget} bytes server -> client",
                c.name, c.id
            ));
            let t0 = Instant::now();
            while !c.client_gone.load(SeqCst) && t0.elapsed() < STALL_LIMIT {
                thread::sleep(Duration::from_millis(20));
            }
            if c.client_gone.load(SeqCst) {
                c.stats.note(format!(
                    "{} proxy: conn #{}: client gave up on the stall after {:.1}s",
                    c.name,
                    c.id,
                    t0.elapsed().as_secs_f64()
                ));
            } else {
                c.stats.stalls_expired.fetch_add(1, SeqCst);
                c.stats.note(format!(
                    "{} proxy: conn #{}: stall NOT noticed by the client within {STALL_LIMIT:?}",
                    c.name, c.id
                ));
            }
        } else {
            c.cut(format!("after {budget} bytes server -> client"));
        }
        break;
    }
    c.close();
}

// ----- the mailbox -----

/// 1-30 KB messages (mostly small, a third 8-30 KB) over [`FOLDERS`] in append order; `Work`
/// also holds a pair of byte-identical twins (same bytes, flags, date) in different batches.
const MAIL: MailGen = MailGen {
    words: "migration server quarterly report invoice meeting Grüße naïve budget deadline \
            zürich draft backup ticket",
    flags: "\\Seen \\Answered \\Flagged \\Draft $Forwarded $Important Project-X",
    years: (2008, 17),
    sizes: &[(1, (8 * 1024, 22 * 1024)), (2, (1024, 7 * 1024))],
    extra_words: 12,
    folders: &[(5, "INBOX"), (3, "Work"), (2, "Archive")],
    twins: ("Work", [3, 3 + BATCH + 2]),
    twin_to: false,
};

fn seed(old: &Dovecot, msgs: &[SeedMsg]) {
    gen::seed(old.port(), "alice", OLD_PW, &FOLDERS[1..], msgs);
}

// ----- comparing -----

/// Every message of every folder in [`FOLDERS`] (empty for a folder that does not exist), read
/// directly from the server (never through a proxy).
fn snapshot(server: &Dovecot, pw: &str) -> BTreeMap<String, Vec<TestMsg>> {
    gen::snapshot_folders(server.port(), "alice", pw, &FOLDERS, str::to_string)
}

/// The new server holds exactly the old server's messages, folder by folder.
fn assert_exact(old: &Dovecot, new: &Dovecot, seeded: &[SeedMsg], what: &str) {
    let want = snapshot(old, OLD_PW);
    let got = snapshot(new, NEW_PW);
    // The old side is what was seeded (the judge reads the right thing).
    for f in FOLDERS {
        let n = seeded.iter().filter(|m| m.folder == f).count();
        assert_eq!(want[f].len(), n, "{what}: old {f} does not hold the seed");
    }
    let errs: Vec<String> = FOLDERS
        .iter()
        .filter_map(|f| diff_folder(f, &want[*f], &got[*f]).err())
        .collect();
    assert!(
        errs.is_empty(),
        "{what}: the new server is not an exact copy of the old one:\n{}",
        errs.join("\n")
    );
    let counts: Vec<String> = FOLDERS
        .iter()
        .map(|f| format!("{f} {}", got[*f].len()))
        .collect();
    println!("{what}: new == old exactly ({})", counts.join(", "));
}

// ----- running imapshift -----

/// Config for old -> new where either side may be a proxy port.
fn config(dir: &Path, old_port: u16, new_port: u16, old_timeout: u32) -> PathBuf {
    let text = format!(
        "state_dir = \"state\"\n\
         [old]\nhost = \"127.0.0.1\"\nport = {old_port}\nsecurity = \"plain\"\n\
         timeout_secs = {old_timeout}\n\
         [new]\nhost = \"127.0.0.1\"\nport = {new_port}\nsecurity = \"plain\"\n\
         timeout_secs = 5\n\
         [[users]]\nold = \"alice\"\nnew = \"alice\"\n\
         old_password = \"env:OLD_PW\"\nnew_password = \"env:NEW_PW\"\n\
         [sync]\nbatch_messages = {BATCH}\n"
    );
    let path = dir.join("imapshift.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn show(out: &Output) -> String {
    gen::show_tail(out, 60)
}

fn run_sync(cfg: &Path) -> (Output, serde_json::Value) {
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap(), "--json"], ENVS);
    let j = common::sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("sync: stdout is not JSON ({e})\n{}", show(&out)));
    (out, j)
}

/// Runs sync until it succeeds, re-running (as an admin would) after a run whose user failed
/// once its reconnect attempts were exhausted. Prints one line per run. Returns the number of
/// runs and the messages copied + recovered over all of them.
fn sync_until_done(what: &str, cfg: &Path, proxy: &FaultProxy) -> (usize, u64) {
    let mut moved = 0;
    for run in 1..=MAX_RUNS {
        let faults_before = proxy.stats.faults();
        let conns_before = proxy.stats.accepted.load(SeqCst);
        let t0 = Instant::now();
        let (out, j) = run_sync(cfg);
        let u = &j["users"][0];
        let status = u["status"].as_str().unwrap_or("?").to_string();
        let copied = j["copied"].as_u64().unwrap_or(0);
        let recovered = folder_sum(&j, "recovered");
        moved += copied + recovered;
        println!(
            "{what}: run {run}: exit {:?} (exit_code {}), user {status}, retries {}, \
             copied {copied}, recovered {recovered}; this run: {} connections, {} faults; \
             total: {} cuts ({} mid-literal, {} lost replies), {} stalls; {:.1}s",
            out.status.code(),
            j["exit_code"],
            u["retries"],
            proxy.stats.accepted.load(SeqCst) - conns_before,
            proxy.stats.faults() - faults_before,
            proxy.stats.cuts.load(SeqCst),
            proxy.stats.mid_literal_cuts.load(SeqCst),
            proxy.stats.lost_replies.load(SeqCst),
            proxy.stats.stalls.load(SeqCst),
            t0.elapsed().as_secs_f64()
        );
        if out.status.success() && status == "ok" {
            assert_eq!(j["exit_code"], 0, "{what}: {j}");
            assert_eq!(folder_sum(&j, "failed"), 0, "{what}: {j}");
            return (run, moved);
        }
        assert!(
            status == "failed" && run < MAX_RUNS,
            "{what}: run {run} ended neither ok nor with a user that exhausted its reconnect \
             attempts (or {MAX_RUNS} runs were not enough)\n{}",
            show(&out)
        );
        assert_ne!(
            j["exit_code"], 0,
            "{what}: a failed user must fail the run: {j}"
        );
    }
    unreachable!()
}

/// The closing run: through the (now clean) proxy, exit 0, nothing copied, no reconnect, no
/// intent left in the state.
fn final_run_copies_nothing(what: &str, cfg: &Path, proxy: &FaultProxy) {
    let faults = proxy.stats.faults();
    let (out, j) = run_sync(cfg);
    assert!(out.status.success(), "{what}: final run\n{}", show(&out));
    println!(
        "{what}: final run: copied {}, retries {}",
        j["copied"], j["users"][0]["retries"]
    );
    assert_eq!(j["copied"], 0, "{what}: the final run copied again: {j}");
    assert_eq!(folder_sum(&j, "recovered"), 0, "{what}: {j}");
    assert_eq!(j["users"][0]["retries"], 0, "{what}: {j}");
    assert_eq!(
        proxy.stats.faults(),
        faults,
        "the proxy must be clean by now"
    );
    gen::assert_no_intents(what, cfg, ENVS);
}

fn servers() -> (Dovecot, Dovecot) {
    (
        Dovecot::start("old", &[("alice", OLD_PW)], DovecotOpts::default()),
        Dovecot::start("new", &[("alice", NEW_PW)], DovecotOpts::default()),
    )
}

// ----- the tests -----

/// What the two tests differ in.
struct Case {
    what: &'static str,
    /// Seeds of the mailbox and of the fault points (each mixed with `$IMAPSHIFT_FAULT_SEED`).
    mail_seed: u64,
    fault_seed: u64,
    /// Names the generated messages.
    tag: &'static str,
    /// The proxy stands in front of the old server (else in front of the new one).
    proxy_old: bool,
    /// `[old] timeout_secs`.
    old_timeout: u32,
}

impl Case {
    /// Seeds the old server, syncs through a proxy that injects `faults(rng)` until a run
    /// succeeds, and checks: the new server is an exact copy, the reports counted every message
    /// once, the proxy cut at least two connections, `check` holds for its counters, and a
    /// final run copies nothing.
    fn run(&self, faults: impl FnOnce(&mut Rng) -> Vec<Fault>, check: impl FnOnce(&Stats)) {
        let what = self.what;
        let t0 = Instant::now();
        let (old, new) = servers();
        let msgs = MAIL.generate(MESSAGES, seed_for(self.mail_seed), self.tag);
        seed(&old, &msgs);
        let faults = faults(&mut Rng::new(seed_for(self.fault_seed)));
        let dir = tempfile::tempdir().unwrap();
        let (proxy, cfg) = if self.proxy_old {
            let proxy = FaultProxy::start("old", old.port(), faults);
            let cfg = config(dir.path(), proxy.port, new.port(), self.old_timeout);
            (proxy, cfg)
        } else {
            let proxy = FaultProxy::start("new", new.port(), faults);
            let cfg = config(dir.path(), old.port(), proxy.port, self.old_timeout);
            (proxy, cfg)
        };
        let (runs, moved) = sync_until_done(what, &cfg, &proxy);
        let s = &proxy.stats;
        println!(
            "{what}: {runs} run(s); {} connections, {} cuts ({} mid-literal, {} lost replies), \
             {} stalls; {moved} messages copied or recovered over the runs\n  {}",
            s.accepted.load(SeqCst),
            s.cuts.load(SeqCst),
            s.mid_literal_cuts.load(SeqCst),
            s.lost_replies.load(SeqCst),
            s.stalls.load(SeqCst),
            s.log().join("\n  ")
        );
        // No duplicate, no gap: count per folder and content, in order.
        assert_exact(&old, &new, &msgs, what);
        assert_eq!(
            moved,
            msgs.len() as u64,
            "{what}: the reports must count every message copied or recovered exactly once"
        );
        assert!(
            s.cuts.load(SeqCst) >= 2,
            "{what}: the proxy cut only {} connection(s)",
            s.cuts.load(SeqCst)
        );
        check(s);
        final_run_copies_nothing(what, &cfg, &proxy);
        println!("{what}: test took {:.1}s", t0.elapsed().as_secs_f64());
    }
}

#[test]
fn cut_connections_to_the_old_server() {
    let case = Case {
        what: "old-side faults",
        mail_seed: 0x01D5_1DE5,
        fault_seed: 0xF0_0001,
        tag: "cut-old",
        proxy_old: true,
        old_timeout: 3,
    };
    let what = case.what;
    case.run(
        |rng| {
            vec![
                // During the greeting / CAPABILITY / LOGIN / LIST.
                Fault::CutDownstream(rng.range(120, 700)),
                // In the middle of a FETCH of message bodies.
                Fault::CutDownstream(rng.range(20_000, 200_000)),
                // The old server goes silent mid-FETCH: only `timeout_secs` ends it.
                Fault::StallDownstream(rng.range(5_000, 60_000)),
            ]
        },
        |s| {
            assert_eq!(s.stalls.load(SeqCst), 1, "{what}: the stall did not happen");
            assert_eq!(
                s.stalls_expired.load(SeqCst),
                0,
                "{what}: imapshift did not time out a stalled connection within {STALL_LIMIT:?}"
            );
        },
    );
}

#[test]
fn cut_connections_to_the_new_server_mid_append() {
    let case = Case {
        what: "new-side faults",
        mail_seed: 0x0A99_E4D5,
        fault_seed: 0xF0_0002,
        tag: "cut-new",
        proxy_old: false,
        old_timeout: 5,
    };
    let what = case.what;
    case.run(
        |rng| {
            vec![
                // Inside the first MULTIAPPEND batch, not at its first message.
                Fault::CutMidLiteral {
                    nth: rng.range(2, 7),
                    min_size: 8 * 1024,
                    permille: rng.range(150, 850),
                },
                // The server stores a whole batch; its OK never arrives.
                Fault::LoseAppendReply {
                    nth: rng.range(1, 4),
                },
                // Some batches later, again inside a large literal.
                Fault::CutMidLiteral {
                    nth: rng.range(8, 30),
                    min_size: 8 * 1024,
                    permille: rng.range(150, 850),
                },
            ]
        },
        |s| {
            assert!(
                s.mid_literal_cuts.load(SeqCst) >= 2,
                "{what}: only {} cut(s) landed inside an APPEND literal",
                s.mid_literal_cuts.load(SeqCst)
            );
            assert_eq!(
                s.lost_replies.load(SeqCst),
                1,
                "{what}: the lost-reply fault did not happen"
            );
        },
    );
}
