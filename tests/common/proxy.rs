//! `Proxy`: a programmable TCP proxy between `imapshift` and ONE real server, for tests of what
//! happens when the wire between them misbehaves in a chosen, deterministic way.
//!
//! It listens on an ephemeral loopback port and, per accepted connection, opens one connection
//! to `127.0.0.1:<target>` and moves bytes both ways on two std threads (no async runtime, no
//! timing of its own: every fault fires at a byte the test names; the only clocks are the
//! pacing rule's failure guard and the measurement delay below). What it does to the bytes is
//! set by rules, which the test may change between runs; a connection takes a snapshot of the
//! rules when it is accepted:
//!
//! * [`Proxy::cut_when_downstream_contains`]: shut both sockets down as soon as the server ->
//!   client bytes contain a marker (the bytes of the read that holds it are not forwarded), on
//!   every connection or on the first K that show it.
//! * [`Proxy::hold_upstream_after`]: on the next connection accepted, once the client -> server
//!   bytes showed a pattern and then n more bytes, stop forwarding client -> server (the rest is
//!   buffered) and keep the server's socket open even after the client closes its side, until
//!   [`Proxy::release`] forwards the buffer, waits for the server's tagged reply to the held
//!   command and closes. The server thus completes a command its client gave up on.
//! * [`Proxy::rewrite_append_literals`]: rewrite the body of every APPEND literal (`{n}`, `{n+}`,
//!   literal8 `~{n}`; each message of a MULTIAPPEND) with a function, fixing the length in the
//!   literal header. The literal is sent to the server non-synchronizing (`{m+}`, `~{m+}`: the
//!   server must accept LITERAL+ syntax, as Dovecot always does); for a synchronizing literal
//!   the proxy itself sends the client the `+` continuation.
//! * [`Proxy::rewrite_downstream`]: rewrite each complete server -> client response (a line
//!   plus the literals it announces, CRLF included) with a function; [`fetch_uid`],
//!   [`body_to_nil`] and [`drop_fetch_item`] help to write one for FETCH responses.
//! * [`Proxy::pace_appends`]: make a client's waiting visible. The server's tagged reply to each
//!   APPEND (and everything the server sends after it) is held until the client has started its
//!   NEXT command on that connection; a client that pipelines (sends the next APPEND's command
//!   line without waiting for the reply) releases it itself, at once. A client that waits for
//!   the reply sends nothing, so the reply goes out only when a guard timeout passes, recorded as
//!   a *stall* with the APPEND's number. What comes before the reply (`+` continuations,
//!   untagged data) goes out at once. The APPENDs the test declares batch ends (where the client
//!   honestly must wait: it needs the reply to go on) are forwarded at once. The verdict never
//!   depends on speed: a reply is released early only by a command the client sent without
//!   having seen it; the guard only decides how long a waiting client is kept waiting.
//!   [`Proxy::pacing`] reports the counts.
//! * [`Proxy::observe_appends`]: hold nothing, only record the order of events: for each
//!   APPEND, whether the client's next APPEND command line on that connection reached the proxy
//!   before or after the proxy forwarded that APPEND's tagged reply (the reply is marked
//!   forwarded just before it is written to the client). *After* is what a client that waits for
//!   each reply always shows: it cannot send APPEND n+1 before it received reply n, which the
//!   proxy marked first, so that verdict is causal, never a matter of speed. *Before* proves the
//!   client did not wait. [`Proxy::append_order`] reports them.
//! * [`Proxy::trickle_downstream_from`]: from the first server -> client read that holds a
//!   marker on, forward the server's bytes one at a time with a pause between them, on the
//!   first K connections that show it (a server that trickles: each byte comes well within any
//!   inactivity timeout, a line never does). The bytes before the marker pass at once.
//! * [`Proxy::delay_downstream`]: forward every server -> client read a fixed time after it
//!   arrived, in order (a longer round trip). For measurements only, never a test's verdict.
//!
//! Counters: connections accepted, cuts, literals and responses rewritten; a log of events.
//! Drop stops everything: the acceptor, every connection (both sockets shut down) and joins all
//! threads. Tests of the proxy itself: `proxy_selftest_*` in tests/differing_faults.rs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A function that rewrites bytes (an APPEND literal's body, or one server response).
pub type Rewrite = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
struct CutRule {
    marker: Vec<u8>,
    /// At most this many connections are cut (`None`: every one that shows the marker).
    limit: Option<usize>,
    fired: Arc<AtomicUsize>,
}

#[derive(Clone, Default)]
struct Rules {
    cut: Option<CutRule>,
    /// One-shot: the next connection accepted takes it.
    hold: Option<Arc<Hold>>,
    append: Option<Rewrite>,
    downstream: Option<Rewrite>,
    pace: Option<Arc<Pace>>,
    observe: Option<Arc<Observe>>,
    delay: Option<Duration>,
    trickle: Option<TrickleRule>,
}

/// See [`Proxy::trickle_downstream_from`].
#[derive(Clone)]
struct TrickleRule {
    marker: Vec<u8>,
    pause: Duration,
    limit: usize,
    fired: Arc<AtomicUsize>,
}

/// The hold of one connection (see [`Proxy::hold_upstream_after`]).
struct Hold {
    pattern: Vec<u8>,
    after: usize,
    conn: Mutex<Option<Arc<Conn>>>,
    up: Mutex<HoldUp>,
    /// Every byte the server sent on the held connection.
    down: Mutex<Vec<u8>>,
    down_cv: Condvar,
}

#[derive(Default)]
struct HoldUp {
    /// The pattern and the n bytes after it went through: nothing more is forwarded.
    engaged: bool,
    /// Tag of the command during which the hold engaged.
    tag: String,
    buffered: Vec<u8>,
    released: bool,
    client_gone: bool,
}

/// What a hold has done so far (see [`Proxy::hold_status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldStatus {
    /// A connection took the hold.
    pub taken: bool,
    /// The pattern and the n bytes after it went through; the rest is held back.
    pub engaged: bool,
    /// Tag of the held command.
    pub tag: String,
    /// Client -> server bytes held back.
    pub buffered: usize,
    /// The client closed its side (or its socket broke).
    pub client_gone: bool,
}

/// How [`Proxy::pace_appends`] judges a client.
#[derive(Clone, Debug)]
pub struct AppendPacing {
    /// APPEND numbers (1-based, counted over all connections in the order their command lines
    /// reach the proxy) whose reply the client honestly must wait for, e.g. the last of each
    /// batch: their replies go out at once.
    pub batch_ends: Vec<usize>,
    /// How long a held reply waits for the client's next command before it goes out as a stall.
    /// A failure guard only: a pipelining client releases its reply by sending, whatever the
    /// machine's speed.
    pub guard: Duration,
    /// After this many stalls the rule stops holding (and judging), so a failing run stays short.
    pub max_stalls: usize,
}

/// What [`Proxy::pace_appends`] saw (see [`Proxy::pacing`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacingReport {
    /// APPEND commands the clients started.
    pub appends: usize,
    /// Of these, the ones whose first line ends with a synchronizing literal `{n}` (the client
    /// waited for `+` before sending the message).
    pub synchronizing: usize,
    /// Replies released by the client's next command: it had not waited for them.
    pub pipelined: usize,
    /// Declared batch ends, in the order their replies went out (at once).
    pub batch_ends: Vec<usize>,
    /// APPENDs whose reply was held for the whole guard: the client was waiting for it.
    pub stalls: Vec<usize>,
    /// The rule stopped holding after `max_stalls` stalls; later replies were not judged.
    pub gave_up: bool,
}

/// The state of [`Proxy::pace_appends`], shared by the pumps of every connection.
struct Pace {
    cfg: AppendPacing,
    st: Mutex<PaceState>,
    cv: Condvar,
}

#[derive(Default)]
struct PaceState {
    report: PacingReport,
    conns: HashMap<usize, ConnPace>,
    /// The proxy is being dropped: hold nothing more.
    stopped: bool,
}

/// One connection as the pacing rule follows it.
#[derive(Default)]
struct ConnPace {
    /// Commands the client started on it.
    commands: usize,
    /// APPENDs not answered yet, by tag: (APPEND number, `commands` once it had started).
    appends: HashMap<String, (usize, usize)>,
    /// The client's side ended: nothing more will come from it.
    client_gone: bool,
}

impl Pace {
    /// The up pump read the first line of a command (before forwarding it, so its reply can
    /// never arrive first).
    fn started(&self, conn: usize, tag: &str, verb: &str, sync_literal: bool) {
        let mut st = lock(&self.st);
        let number = (verb == "APPEND").then(|| {
            st.report.appends += 1;
            st.report.synchronizing += usize::from(sync_literal);
            st.report.appends
        });
        let c = st.conns.entry(conn).or_default();
        c.commands += 1;
        if let Some(n) = number {
            let at = c.commands;
            c.appends.insert(tag.to_string(), (n, at));
        }
        self.cv.notify_all();
    }

    fn client_gone(&self, conn: usize) {
        lock(&self.st).conns.entry(conn).or_default().client_gone = true;
        self.cv.notify_all();
    }

    fn stop(&self) {
        lock(&self.st).stopped = true;
        self.cv.notify_all();
    }

    /// Called by the down pump with each complete server response before it goes to the
    /// client: returns when it may go (see [`Proxy::pace_appends`]).
    fn before_forward(&self, sh: &Shared, conn: usize, resp: &[u8]) {
        let Some(sp) = resp.iter().position(|&b| b == b' ') else {
            return;
        };
        let tag = String::from_utf8_lossy(&resp[..sp]);
        let mut st = lock(&self.st);
        if st.report.gave_up {
            return;
        }
        let Some((n, at)) = st
            .conns
            .get_mut(&conn)
            .and_then(|c| c.appends.remove(tag.as_ref()))
        else {
            return;
        };
        if self.cfg.batch_ends.contains(&n) {
            st.report.batch_ends.push(n);
            return;
        }
        let deadline = Instant::now() + self.cfg.guard;
        loop {
            let c = &st.conns[&conn];
            if c.commands > at {
                st.report.pipelined += 1;
                return;
            }
            if c.client_gone || st.stopped {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.report.stalls.push(n);
                st.report.gave_up = st.report.stalls.len() >= self.cfg.max_stalls;
                let gave_up = st.report.gave_up;
                drop(st);
                sh.note(format!(
                    "conn #{conn}: STALL: the client sent nothing for {:?} while the reply to \
                     APPEND #{n} (tag {tag}) was held{}",
                    self.cfg.guard,
                    if gave_up {
                        "; pacing stops holding"
                    } else {
                        ""
                    }
                ));
                return;
            }
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What [`Proxy::observe_appends`] saw (see [`Proxy::append_order`]). APPEND numbers are
/// 1-based, counted over all connections in the order their command lines reach the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOrder {
    /// APPEND commands the clients started.
    pub appends: usize,
    /// Of these, the ones whose first line ends with a synchronizing literal `{n}`.
    pub synchronizing: usize,
    /// APPENDs whose connection's next APPEND line came before their tagged reply was forwarded:
    /// the client had not waited for the reply.
    pub next_before_reply: Vec<usize>,
    /// APPENDs whose connection's next APPEND line came after their tagged reply was forwarded
    /// (always so for a client that waits for each reply).
    pub next_after_reply: Vec<usize>,
    /// APPENDs after which their connection started no other APPEND, in ascending order.
    pub last: Vec<usize>,
}

/// The state of [`Proxy::observe_appends`], shared by the pumps of every connection.
#[derive(Default)]
struct Observe {
    st: Mutex<ObserveState>,
}

#[derive(Default)]
struct ObserveState {
    report: AppendOrder,
    /// Per connection, its latest APPEND: (number, tag, its tagged reply was forwarded).
    latest: HashMap<usize, (usize, String, bool)>,
}

impl Observe {
    /// The up pump read the first line of a command, before forwarding it.
    fn started(&self, conn: usize, tag: &str, verb: &str, sync_literal: bool) {
        if verb != "APPEND" {
            return;
        }
        let mut st = lock(&self.st);
        st.report.appends += 1;
        st.report.synchronizing += usize::from(sync_literal);
        let n = st.report.appends;
        if let Some((prev, _, replied)) = st.latest.insert(conn, (n, tag.to_string(), false)) {
            match replied {
                true => st.report.next_after_reply.push(prev),
                false => st.report.next_before_reply.push(prev),
            }
        }
    }

    /// The down pump is about to forward a complete server response to the client.
    fn before_forward(&self, conn: usize, resp: &[u8]) {
        let Some(sp) = resp.iter().position(|&b| b == b' ') else {
            return;
        };
        let tag = &resp[..sp];
        if let Some((_, t, replied)) = lock(&self.st).latest.get_mut(&conn) {
            *replied |= t.as_bytes() == tag;
        }
    }

    fn report(&self) -> AppendOrder {
        let st = lock(&self.st);
        let mut r = st.report.clone();
        r.last = st.latest.values().map(|(n, _, _)| *n).collect();
        r.last.sort_unstable();
        r
    }
}

struct Shared {
    name: String,
    target: u16,
    rules: Mutex<Rules>,
    /// The hold last armed (kept after a connection took it, for `release`).
    hold: Mutex<Option<Arc<Hold>>>,
    /// The pacing rule armed last (kept for `pacing` and to wake it on Drop).
    pace: Mutex<Option<Arc<Pace>>>,
    /// The observing rule armed last (kept for `append_order`).
    observe: Mutex<Option<Arc<Observe>>>,
    accepted: AtomicUsize,
    cuts: AtomicUsize,
    literals_rewritten: AtomicUsize,
    responses_rewritten: AtomicUsize,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    log: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn note(&self, s: String) {
        let s = format!("{} proxy: {s}", self.name);
        eprintln!("{s}");
        lock(&self.log).push(s);
    }
}

/// One proxied connection.
struct Conn {
    id: usize,
    client: TcpStream,
    server: TcpStream,
    /// Both pumps may write to the client (the up pump sends `+` for synchronizing literals).
    client_w: Mutex<()>,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn to_client(&self, b: &[u8]) -> std::io::Result<()> {
        let _g = lock(&self.client_w);
        (&self.client).write_all(b)
    }
}

/// A running proxy. See the module docs.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1:<ephemeral> and forwards to 127.0.0.1:`target`, with no rules yet
    /// (a clean pass-through).
    pub fn start(name: &str, target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            target,
            rules: Mutex::new(Rules::default()),
            hold: Mutex::new(None),
            pace: Mutex::new(None),
            observe: Mutex::new(None),
            accepted: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            literals_rewritten: AtomicUsize::new(0),
            responses_rewritten: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, sh));
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port to point the client at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(SeqCst)
    }

    /// Connections cut by [`Proxy::cut_when_downstream_contains`].
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(SeqCst)
    }

    /// APPEND literals rewritten by [`Proxy::rewrite_append_literals`].
    pub fn literals_rewritten(&self) -> usize {
        self.shared.literals_rewritten.load(SeqCst)
    }

    /// Server responses that [`Proxy::rewrite_downstream`]'s function changed.
    pub fn responses_rewritten(&self) -> usize {
        self.shared.responses_rewritten.load(SeqCst)
    }

    /// What happened, one line per event.
    pub fn log(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// Connections accepted from now on are cut (both sockets shut down) when the server ->
    /// client bytes contain `marker`; with `first: Some(k)` only the first k connections that
    /// show it are cut, later ones pass it through.
    pub fn cut_when_downstream_contains(&self, marker: &[u8], first: Option<usize>) {
        assert!(!marker.is_empty(), "an empty marker");
        lock(&self.shared.rules).cut = Some(CutRule {
            marker: marker.to_vec(),
            limit: first,
            fired: Arc::new(AtomicUsize::new(0)),
        });
    }

    /// The next connection accepted forwards client -> server bytes until they have shown
    /// `pattern` and then `n_bytes` more, and holds back everything after that (see the module
    /// docs and [`Proxy::release`]).
    pub fn hold_upstream_after(&self, pattern: &[u8], n_bytes: usize) {
        assert!(!pattern.is_empty(), "an empty pattern");
        let hold = Arc::new(Hold {
            pattern: pattern.to_vec(),
            after: n_bytes,
            conn: Mutex::new(None),
            up: Mutex::new(HoldUp::default()),
            down: Mutex::new(Vec::new()),
            down_cv: Condvar::new(),
        });
        lock(&self.shared.rules).hold = Some(hold.clone());
        *lock(&self.shared.hold) = Some(hold);
    }

    /// What the hold armed last has done.
    pub fn hold_status(&self) -> HoldStatus {
        let Some(h) = lock(&self.shared.hold).clone() else {
            return HoldStatus::default();
        };
        let taken = lock(&h.conn).is_some();
        let up = lock(&h.up);
        HoldStatus {
            taken,
            engaged: up.engaged,
            tag: up.tag.clone(),
            buffered: up.buffered.len(),
            client_gone: up.client_gone,
        }
    }

    /// Forwards what the hold kept back to the server, waits (up to `timeout`) for the server's
    /// tagged reply to the held command, then closes the connection. Returns that reply line
    /// (without CRLF); `Err` with what the server sent if the hold never engaged or no reply came.
    pub fn release(&self, timeout: Duration) -> Result<String, String> {
        let hold = lock(&self.shared.hold).clone().ok_or("no hold was armed")?;
        let conn = lock(&hold.conn)
            .clone()
            .ok_or("no connection took the hold")?;
        let tag = {
            let mut up = lock(&hold.up);
            if !up.engaged {
                return Err("the hold never engaged (pattern + n bytes not seen)".into());
            }
            if up.released {
                return Err("already released".into());
            }
            up.released = true;
            let buffered = std::mem::take(&mut up.buffered);
            self.shared.note(format!(
                "conn #{}: RELEASE: {} held bytes forwarded to the server",
                conn.id,
                buffered.len()
            ));
            // Under the lock: bytes the client may still send go after these.
            (&conn.server)
                .write_all(&buffered)
                .map_err(|e| format!("forwarding the held bytes: {e}"))?;
            up.tag.clone()
        };
        let deadline = Instant::now() + timeout;
        let mut down = lock(&hold.down);
        let reply = loop {
            if let Some(line) = tagged_line(&down, &tag) {
                break Ok(line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(format!(
                    "no tagged reply {tag:?} within {timeout:?}; the server sent: {:?}",
                    String::from_utf8_lossy(&down)
                ));
            }
            down = hold
                .down_cv
                .wait_timeout(down, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(down);
        self.shared.note(format!(
            "conn #{}: released; the server answered {reply:?}; closing",
            conn.id
        ));
        conn.close();
        reply
    }

    /// Connections accepted from now on rewrite every APPEND literal's body with `f`.
    pub fn rewrite_append_literals(&self, f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) {
        lock(&self.shared.rules).append = Some(Arc::new(f));
    }

    /// Connections accepted from now on pass every complete server response (line + literals,
    /// CRLF included) through `f`.
    pub fn rewrite_downstream(&self, f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) {
        lock(&self.shared.rules).downstream = Some(Arc::new(f));
    }

    /// Connections accepted from now on pace APPEND replies (see the module docs): the
    /// server's tagged reply to an APPEND, and all it sends after it, waits until the client
    /// starts another command on that connection, or `cfg.guard` passes (a stall). The APPENDs
    /// numbered in `cfg.batch_ends` are answered at once. Read the verdict with
    /// [`Proxy::pacing`].
    pub fn pace_appends(&self, cfg: AppendPacing) {
        let pace = Arc::new(Pace {
            cfg,
            st: Mutex::new(PaceState::default()),
            cv: Condvar::new(),
        });
        lock(&self.shared.rules).pace = Some(pace.clone());
        *lock(&self.shared.pace) = Some(pace);
    }

    /// What the pacing rule armed last saw (all zero if none was armed).
    pub fn pacing(&self) -> PacingReport {
        lock(&self.shared.pace)
            .as_ref()
            .map(|p| lock(&p.st).report.clone())
            .unwrap_or_default()
    }

    /// Connections accepted from now on record the order of APPEND lines and APPEND replies
    /// (see the module docs), holding nothing. Read it with [`Proxy::append_order`].
    pub fn observe_appends(&self) {
        let observe = Arc::new(Observe::default());
        lock(&self.shared.rules).observe = Some(observe.clone());
        *lock(&self.shared.observe) = Some(observe);
    }

    /// What the observing rule armed last saw (all zero if none was armed).
    pub fn append_order(&self) -> AppendOrder {
        lock(&self.shared.observe)
            .as_ref()
            .map(|o| o.report())
            .unwrap_or_default()
    }

    /// Connections accepted from now on forward each server -> client read `d` after it
    /// arrived, in order: every round trip takes `d` longer. For measurements only.
    pub fn delay_downstream(&self, d: Duration) {
        lock(&self.shared.rules).delay = Some(d);
    }

    /// Connections accepted from now on: on the first `first` of them whose server sends
    /// `marker` (within one read), everything from the marker on goes to the client one byte
    /// every `pause`, until either side closes. Not combined with the framing rules.
    pub fn trickle_downstream_from(&self, marker: &[u8], pause: Duration, first: usize) {
        lock(&self.shared.rules).trickle = Some(TrickleRule {
            marker: marker.to_vec(),
            pause,
            limit: first,
            fired: Arc::new(AtomicUsize::new(0)),
        });
    }

    /// Connections accepted from now on are clean pass-throughs (an armed hold not yet taken is
    /// dropped too; a taken one stays releasable).
    pub fn clear_rules(&self) {
        *lock(&self.shared.rules) = Rules::default();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(p) = lock(&self.shared.pace).as_ref() {
            p.stop();
        }
        // Wake the blocking accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in lock(&self.shared.conns).drain(..) {
            c.close();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    for client in listener.incoming() {
        if sh.stop.load(SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let id = sh.accepted.fetch_add(1, SeqCst);
        let server = match TcpStream::connect(("127.0.0.1", sh.target)) {
            Ok(s) => s,
            Err(e) => {
                sh.note(format!("conn #{id}: cannot reach port {}: {e}", sh.target));
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let rules = {
            let mut r = lock(&sh.rules);
            let snapshot = r.clone();
            r.hold = None;
            snapshot
        };
        let conn = Arc::new(Conn {
            id,
            client,
            server,
            client_w: Mutex::new(()),
        });
        if let Some(h) = &rules.hold {
            *lock(&h.conn) = Some(conn.clone());
        }
        sh.note(format!(
            "conn #{id} accepted{}{}{}{}{}{}{}",
            if rules.cut.is_some() {
                ", cut rule"
            } else {
                ""
            },
            if rules.hold.is_some() { ", HOLD" } else { "" },
            if rules.append.is_some() {
                ", rewriting APPEND literals"
            } else {
                ""
            },
            if rules.downstream.is_some() {
                ", rewriting responses"
            } else {
                ""
            },
            if rules.pace.is_some() {
                ", pacing APPEND replies"
            } else {
                ""
            },
            if rules.observe.is_some() {
                ", observing APPEND order"
            } else {
                ""
            },
            match rules.delay {
                Some(d) => format!(", replies delayed {d:?}"),
                None => String::new(),
            },
        ));
        lock(&sh.conns).push(conn.clone());
        let (c1, s1, r1) = (conn.clone(), sh.clone(), rules.clone());
        let up = thread::spawn(move || pump_up(&s1, &c1, &r1));
        let (c2, s2) = (conn, sh.clone());
        let down = thread::spawn(move || pump_down(&s2, c2, &rules));
        lock(&sh.threads).extend([up, down]);
    }
}

// ----- client -> server -----

/// Where the up pump's output goes.
enum Out<'a> {
    /// To the server, as part of the command with this tag.
    Server(&'a [u8], &'a str),
    /// To the client (a continuation the proxy answers itself).
    Client(&'a [u8]),
    /// Nothing to send: the client started a command (tag, upper-cased verb, whether its first
    /// line ends with a synchronizing literal `{n}`). Comes before the command's first bytes go
    /// to the server.
    Started(&'a str, &'a str, bool),
}

/// A literal header at the end of a line: `{n}`, `{n+}`, `~{n}`, `~{n+}`.
struct LiteralHeader {
    /// Where the header starts in the line (at `~` or `{`).
    start: usize,
    size: usize,
    plus: bool,
    tilde: bool,
}

/// `text` is a line without its CRLF.
fn literal_header(text: &[u8]) -> Option<LiteralHeader> {
    let inner = text.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let (digits, plus) = match digits.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (digits, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let tilde = open > 0 && text[open - 1] == b'~';
    Some(LiteralHeader {
        start: if tilde { open - 1 } else { open },
        size,
        plus,
        tilde,
    })
}

/// An APPEND literal being collected for rewriting.
struct Capture {
    /// The line up to the literal header.
    prefix: Vec<u8>,
    tilde: bool,
    body: Vec<u8>,
}

/// Follows the client -> server stream: command lines (tag, verb) and literals, and rewrites
/// APPEND literals when asked to.
struct Upstream<'a> {
    rewrite: Option<Rewrite>,
    /// Counts rewritten literals as they go out.
    rewritten: &'a AtomicUsize,
    line: Vec<u8>,
    /// The current command continues after a literal.
    in_command: bool,
    tag: String,
    verb: String,
    literal_left: usize,
    capture: Option<Capture>,
}

impl<'a> Upstream<'a> {
    fn new(rewrite: Option<Rewrite>, rewritten: &'a AtomicUsize) -> Upstream<'a> {
        Upstream {
            rewrite,
            rewritten,
            line: Vec::new(),
            in_command: false,
            tag: String::new(),
            verb: String::new(),
            literal_left: 0,
            capture: None,
        }
    }

    fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(Out<'_>)) {
        let mut i = 0;
        while i < input.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min(input.len() - i);
                let part = &input[i..i + take];
                match &mut self.capture {
                    Some(c) => c.body.extend_from_slice(part),
                    None => out(Out::Server(part, &self.tag)),
                }
                self.literal_left -= take;
                i += take;
                if self.literal_left == 0 {
                    self.finish_capture(out);
                }
                continue;
            }
            match input[i..].iter().position(|&b| b == b'\n') {
                None => {
                    self.line.extend_from_slice(&input[i..]);
                    return;
                }
                Some(p) => {
                    self.line.extend_from_slice(&input[i..i + p + 1]);
                    i += p + 1;
                    self.end_of_line(out);
                }
            }
        }
    }

    fn end_of_line(&mut self, out: &mut dyn FnMut(Out<'_>)) {
        let line = std::mem::take(&mut self.line);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !self.in_command {
            let mut words = text.split(|&c| c == b' ');
            self.tag = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
            self.verb = String::from_utf8_lossy(words.next().unwrap_or_default()).to_uppercase();
            let sync = literal_header(text).is_some_and(|h| !h.plus);
            out(Out::Started(&self.tag, &self.verb, sync));
        }
        match literal_header(text) {
            Some(h) => {
                self.in_command = true;
                self.literal_left = h.size;
                if self.rewrite.is_some() && self.verb == "APPEND" {
                    if !h.plus {
                        out(Out::Client(b"+ proxy: ready for the literal\r\n"));
                    }
                    self.capture = Some(Capture {
                        prefix: text[..h.start].to_vec(),
                        tilde: h.tilde,
                        body: Vec::with_capacity(h.size),
                    });
                    if h.size == 0 {
                        self.finish_capture(out);
                    }
                } else {
                    out(Out::Server(&line, &self.tag));
                }
            }
            None => {
                self.in_command = false;
                out(Out::Server(&line, &self.tag));
            }
        }
    }

    fn finish_capture(&mut self, out: &mut dyn FnMut(Out<'_>)) {
        let Some(c) = self.capture.take() else { return };
        let f = self
            .rewrite
            .as_ref()
            .expect("capturing only when rewriting");
        let body = f(&c.body);
        let mut b = c.prefix;
        b.extend_from_slice(
            format!("{}{{{}+}}\r\n", if c.tilde { "~" } else { "" }, body.len()).as_bytes(),
        );
        b.extend_from_slice(&body);
        out(Out::Server(&b, &self.tag));
        self.rewritten.fetch_add(1, SeqCst);
    }
}

/// Finds where a hold engages: after `pattern` and then `after` more bytes.
struct HoldScan {
    pattern: Vec<u8>,
    after: usize,
    window: Vec<u8>,
    /// Bytes still to let through after the pattern (`None`: not seen yet).
    left: Option<usize>,
}

impl HoldScan {
    /// How many bytes of `b` may still go to the server.
    fn allowed(&mut self, b: &[u8]) -> usize {
        for (i, &x) in b.iter().enumerate() {
            match &mut self.left {
                Some(0) => return i,
                Some(n) => *n -= 1,
                None => {
                    self.window.push(x);
                    if self.window.len() > self.pattern.len() {
                        self.window.remove(0);
                    }
                    if self.window == self.pattern {
                        self.left = Some(self.after);
                    }
                }
            }
        }
        b.len()
    }

    fn engaged(&self) -> bool {
        self.left == Some(0)
    }
}

fn pump_up(sh: &Shared, c: &Conn, rules: &Rules) {
    let hold = rules.hold.clone();
    let mut up = Upstream::new(rules.append.clone(), &sh.literals_rewritten);
    let mut scan = hold.as_ref().map(|h| HoldScan {
        pattern: h.pattern.clone(),
        after: h.after,
        window: Vec::new(),
        left: None,
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut failed = false;
    loop {
        let n = match (&c.client).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut send = |o: Out<'_>| {
            let (bytes, tag) = match o {
                Out::Client(b) => {
                    if c.to_client(b).is_err() {
                        failed = true;
                    }
                    return;
                }
                Out::Server(b, tag) => (b, tag),
                Out::Started(tag, verb, sync) => {
                    if let Some(p) = &rules.pace {
                        p.started(c.id, tag, verb, sync);
                    }
                    if let Some(o) = &rules.observe {
                        o.started(c.id, tag, verb, sync);
                    }
                    return;
                }
            };
            let (Some(h), Some(scan)) = (&hold, &mut scan) else {
                failed |= (&c.server).write_all(bytes).is_err();
                return;
            };
            let mut st = lock(&h.up);
            if st.released {
                failed |= (&c.server).write_all(bytes).is_err();
                return;
            }
            let ok = if st.engaged { 0 } else { scan.allowed(bytes) };
            if ok > 0 {
                failed |= (&c.server).write_all(&bytes[..ok]).is_err();
            }
            if ok < bytes.len() || (scan.engaged() && !st.engaged) {
                if !st.engaged {
                    st.engaged = true;
                    st.tag = tag.to_string();
                    sh.note(format!(
                        "conn #{}: HOLD engaged in command {tag:?} after {:?} + {} bytes: \
                         nothing more goes to the server until release",
                        c.id,
                        String::from_utf8_lossy(&h.pattern),
                        h.after
                    ));
                }
                st.buffered.extend_from_slice(&bytes[ok..]);
            }
        };
        up.feed(&buf[..n], &mut send);
        if failed {
            break;
        }
    }
    if let Some(p) = &rules.pace {
        p.client_gone(c.id);
    }
    match &hold {
        Some(h) => {
            // Keep the server's side open: release() (or Drop) closes it.
            lock(&h.up).client_gone = true;
            sh.note(format!(
                "conn #{}: the client is gone (held connection)",
                c.id
            ));
        }
        None if failed => c.close(),
        None => {
            // Let the server answer what it has (e.g. LOGOUT), then it closes.
            let _ = c.server.shutdown(Shutdown::Write);
        }
    }
}

// ----- server -> client -----

/// Splits the server -> client stream into complete responses (a line plus the literals it
/// announces, with the lines that follow them, up to the final CRLF).
#[derive(Default)]
struct Framer {
    resp: Vec<u8>,
    line_start: usize,
    literal_left: usize,
}

impl Framer {
    fn feed(&mut self, input: &[u8], done: &mut dyn FnMut(Vec<u8>)) {
        let mut i = 0;
        while i < input.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min(input.len() - i);
                self.resp.extend_from_slice(&input[i..i + take]);
                self.literal_left -= take;
                i += take;
                if self.literal_left == 0 {
                    self.line_start = self.resp.len();
                }
                continue;
            }
            match input[i..].iter().position(|&b| b == b'\n') {
                None => {
                    self.resp.extend_from_slice(&input[i..]);
                    return;
                }
                Some(p) => {
                    self.resp.extend_from_slice(&input[i..i + p + 1]);
                    i += p + 1;
                    let line = &self.resp[self.line_start..];
                    let text = line.strip_suffix(b"\n").unwrap_or(line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    match literal_header(text) {
                        Some(h) if h.size > 0 => {
                            self.literal_left = h.size;
                        }
                        Some(_) => self.line_start = self.resp.len(),
                        None => {
                            self.line_start = 0;
                            done(std::mem::take(&mut self.resp));
                        }
                    }
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Server -> client bytes forwarded a fixed time after they arrived (see
/// [`Proxy::delay_downstream`]), in order, by a thread of their own.
struct DelayLine {
    tx: Option<std::sync::mpsc::Sender<(Instant, Vec<u8>)>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl DelayLine {
    fn start(c: Arc<Conn>) -> DelayLine {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        let failed = Arc::new(AtomicBool::new(false));
        let f = failed.clone();
        let thread = thread::spawn(move || {
            for (due, bytes) in rx {
                thread::sleep(due.saturating_duration_since(Instant::now()));
                if c.to_client(&bytes).is_err() {
                    f.store(true, SeqCst);
                    return;
                }
            }
        });
        DelayLine {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        }
    }

    fn send(&self, d: Duration, b: &[u8]) -> bool {
        let due = Instant::now() + d;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((due, b.to_vec())).is_ok());
        sent && !self.failed.load(SeqCst)
    }

    /// Waits until everything queued went out.
    fn drain(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump_down(sh: &Shared, c: Arc<Conn>, rules: &Rules) {
    let hold = rules.hold.clone();
    let framed = rules.downstream.is_some() || rules.pace.is_some() || rules.observe.is_some();
    let mut framer = framed.then(Framer::default);
    let mut delay = rules.delay.map(|d| (d, DelayLine::start(c.clone())));
    let mut cut = rules.cut.clone();
    // The end of the previous read, for a marker split across reads.
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut client_ok = true;
    let mut trickling = false;
    loop {
        let n = match (&c.server).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        if let Some(h) = &hold {
            lock(&h.down).extend_from_slice(data);
            h.down_cv.notify_all();
        }
        if let Some(rule) = &cut {
            let mut hay = std::mem::take(&mut tail);
            hay.extend_from_slice(data);
            if find(&hay, &rule.marker).is_some() {
                let go = rule
                    .fired
                    .fetch_update(SeqCst, SeqCst, |f| {
                        rule.limit.is_none_or(|k| f < k).then_some(f + 1)
                    })
                    .is_ok();
                if go {
                    sh.cuts.fetch_add(1, SeqCst);
                    sh.note(format!(
                        "conn #{}: CUT: the server sent {:?}",
                        c.id,
                        String::from_utf8_lossy(&rule.marker)
                    ));
                    c.close();
                    return;
                }
                // Over the limit: this connection passes it through.
                cut = None;
            } else {
                let keep = rule.marker.len() - 1;
                tail = hay[hay.len().saturating_sub(keep)..].to_vec();
            }
        }
        if !client_ok {
            continue;
        }
        if let Some(rule) = &rules.trickle {
            let from = if trickling {
                Some(0)
            } else {
                find(data, &rule.marker).filter(|_| {
                    rule.fired
                        .fetch_update(SeqCst, SeqCst, |f| (f < rule.limit).then_some(f + 1))
                        .is_ok()
                })
            };
            if let Some(from) = from {
                if !trickling {
                    trickling = true;
                    sh.note(format!(
                        "conn #{}: TRICKLE: one byte every {:?} from {:?} on",
                        c.id,
                        rule.pause,
                        String::from_utf8_lossy(&rule.marker)
                    ));
                }
                let mut ok = c.to_client(&data[..from]).is_ok();
                for b in &data[from..] {
                    if !ok || sh.stop.load(SeqCst) {
                        break;
                    }
                    thread::sleep(rule.pause);
                    ok = c.to_client(std::slice::from_ref(b)).is_ok();
                }
                if !ok {
                    break;
                }
                continue;
            }
        }
        let forward = |b: &[u8]| match &delay {
            Some((d, line)) => line.send(*d, b),
            None => c.to_client(b).is_ok(),
        };
        let mut ok = true;
        match &mut framer {
            Some(fr) => fr.feed(data, &mut |resp| {
                if let Some(p) = &rules.pace {
                    p.before_forward(sh, c.id, &resp);
                }
                if let Some(o) = &rules.observe {
                    o.before_forward(c.id, &resp);
                }
                match &rules.downstream {
                    Some(f) => {
                        let out = f(&resp);
                        if out != resp {
                            sh.responses_rewritten.fetch_add(1, SeqCst);
                        }
                        ok &= forward(&out);
                    }
                    None => ok &= forward(&resp),
                }
            }),
            None => ok = forward(data),
        }
        if !ok {
            client_ok = false;
            if hold.is_none() {
                break;
            }
            // A held connection keeps reading the server for release().
        }
    }
    if let Some((_, line)) = &mut delay {
        line.drain();
    }
    // The server is done: the client reads what it sent, then EOF.
    if client_ok {
        let _ = c.client.shutdown(Shutdown::Write);
    } else if hold.is_none() {
        c.close();
    }
}

/// The line (without CRLF) of `stream` that starts with `tag ` (at a line start), if any.
fn tagged_line(stream: &[u8], tag: &str) -> Option<String> {
    let mut at = 0;
    let want = format!("{tag} ");
    while at < stream.len() {
        let end = stream[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(stream.len(), |p| at + p + 1);
        let line = &stream[at..end];
        if line.starts_with(want.as_bytes()) && line.ends_with(b"\n") {
            let l = String::from_utf8_lossy(line);
            return Some(l.trim_end().to_string());
        }
        at = end;
    }
    None
}

// ----- helpers for rewrite_downstream -----

/// The part of a response before its first literal's data.
fn head(resp: &[u8]) -> &[u8] {
    match find(resp, b"}\r\n") {
        Some(p) => &resp[..p + 1],
        None => resp,
    }
}

/// The UID of a `* n FETCH (... UID u ...)` response (looked for before the first literal).
pub fn fetch_uid(resp: &[u8]) -> Option<u32> {
    let h = head(resp);
    let rest = h.strip_prefix(b"* ")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    if !rest[..sp].iter().all(u8::is_ascii_digit) || !rest[sp + 1..].starts_with(b"FETCH (") {
        return None;
    }
    let items = &rest[sp + 1 + b"FETCH (".len()..];
    let at = if items.starts_with(b"UID ") {
        0
    } else {
        find(items, b" UID ")? + 1
    };
    let digits: Vec<u8> = items[at + 4..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The response with its `BODY[] {n}\r\n<n bytes>` replaced by `BODY[] NIL` (unchanged if it
/// has none).
pub fn body_to_nil(resp: &[u8]) -> Vec<u8> {
    let key = b"BODY[] {";
    let Some(at) = find(head(resp), key) else {
        return resp.to_vec();
    };
    let open = at + key.len() - 1;
    let Some(close) = resp[open..]
        .iter()
        .position(|&b| b == b'}')
        .map(|p| open + p)
    else {
        return resp.to_vec();
    };
    let Some(n) = std::str::from_utf8(&resp[open + 1..close])
        .ok()
        .and_then(|s| s.trim_end_matches('+').parse::<usize>().ok())
    else {
        return resp.to_vec();
    };
    let data_start = close + 3; // "}\r\n"
    let mut out = resp[..at].to_vec();
    out.extend_from_slice(b"BODY[] NIL");
    out.extend_from_slice(&resp[(data_start + n).min(resp.len())..]);
    out
}

/// The response without `ITEM value` (an item with an atom value, e.g. `RFC822.SIZE 123`),
/// looked for before the first literal; unchanged if it has none.
pub fn drop_fetch_item(resp: &[u8], item: &str) -> Vec<u8> {
    let h = head(resp);
    let value_end = |from: usize| {
        from + h[from..]
            .iter()
            .position(|&b| b == b' ' || b == b')')
            .unwrap_or(h.len() - from)
    };
    // " ITEM value" inside the list.
    if let Some(at) = find(h, format!(" {item} ").as_bytes()) {
        let end = value_end(at + item.len() + 2);
        let mut out = resp[..at].to_vec();
        out.extend_from_slice(&resp[end..]);
        return out;
    }
    // "(ITEM value " or "(ITEM value)" at the start of the list.
    if let Some(open) = find(h, format!("({item} ").as_bytes()) {
        let at = open + 1;
        let mut end = value_end(at + item.len() + 1);
        if h.get(end) == Some(&b' ') {
            end += 1;
        }
        let mut out = resp[..at].to_vec();
        out.extend_from_slice(&resp[end..]);
        return out;
    }
    resp.to_vec()
}
