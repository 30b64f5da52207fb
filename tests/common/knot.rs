//! `Knot`: a real, private Knot DNS authoritative server per test.
//!
//! Tests of DNS-driven behaviour (MX lookups, a nameserver that changes its
//! answer, one that stops answering) need a real nameserver that we control
//! completely: Knot DNS serves zones from plain zone files and changes them
//! at runtime through its control socket (`knotc zone-begin/set/commit`),
//! which is exactly "the operator edits the zone" without restarts.
//!
//! Each instance lives in its own temp dir (`/tmp/knXXXXXX`, short on
//! purpose: the control socket is a unix socket and those paths are limited
//! to ~108 bytes), listens on one `ip@port` (UDP and TCP; any 127.0.0.0/8
//! address works on Linux without configuration, so two servers can share a
//! port number on 127.0.0.1 and 127.0.0.2), runs in the foreground as our
//! child (`knotd -c <conf>`, no `-d`) in its own process group, and is
//! stopped on Drop: SIGCONT (if paused), SIGTERM, wait (SIGKILL after 10 s),
//! then check via /proc that nothing of its process group survives.
//!
//! Layout of the temp dir:
//! `knot.conf`, `knot.log` (Knot's log, `any: info`), `knotd.stderr`
//! (knotd's stdout/stderr: messages from before the log is set up, e.g.
//! config errors), `knot.pid` (rundir), `knot.sock` (control socket),
//! `db/` (database storage: timers; the journal is disabled),
//! `zones/<origin>.zone` (one file per zone, as given to [`Knot::start`]).
//!
//! Runtime changes ([`Knot::set_mx`], [`Knot::set_rrset`]) live in memory
//! only: `zonefile-sync: -1` (never write back), `journal-content: none`,
//! so the zone files keep what the test wrote. Knot's default
//! `serial-policy: increment` bumps the SOA serial by one on every commit
//! that changes something (an empty commit leaves it unchanged).
//!
//! Users: with no `server.user`, knotd keeps the uid it was started with
//! (root or not), so the temp dir (ours, mode 0700) is always readable; no
//! `user: knot:knot` as in Debian's packaged config.
//!
//! Worker threads are kept at 1 each (UDP, TCP, background): the defaults
//! scale with the CPU count and slow down shutdown (~1.3 s instead of a few
//! ms). Note that Knot binds UDP with SO_REUSEPORT, so a clash on the UDP
//! port alone would go unnoticed; the TCP bind (no reuseport by default)
//! is what fails on a clash, and [`Knot::free_port`] checks both.
//!
//! Set `IMAPSHIFT_KEEP_TMP=1` to keep the temp dirs for debugging (their
//! paths are printed on stderr). A missing `knotd`/`knotc`/`kdig` is a
//! panic naming the Debian packages: tests must fail, never skip.

use super::procgroup::{
    group_members, keep_tmp_if_asked, log_tail_on_panic, signal, spawn_in_group, stop_server,
    TermTo,
};
use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// `knotc -t`: a paused server must not hang a test for knotc's default 60 s.
const KNOTC_TIMEOUT_SECS: &str = "5";
const INSTALL_HINT: &str = "install Knot DNS: apt-get install -y knot knot-dnsutils";
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

/// A running private Knot DNS server. See the module docs.
pub struct Knot {
    name: String,
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    addr: SocketAddr,
    origins: Vec<String>,
    child: Option<Child>,
    pid: u32,
    paused: AtomicBool,
}

impl Knot {
    /// Starts knotd on `ip@port` (UDP and TCP) serving `zones`, each
    /// `(origin, zone file text)`; the origin may omit the final dot, and
    /// the text should set `$ORIGIN` or use absolute names (see
    /// [`zone_text`]). `port` 0 picks a free one (see [`Knot::free_port`]),
    /// retrying on a clash. Returns once every zone's SOA is answered over
    /// UDP and the control socket accepts connections; panics (with the
    /// log tail) if knotd is missing, a zone fails to load, or it is not
    /// ready within 10 s.
    pub fn start(name: &str, ip: &str, port: u16, zones: &[(&str, &str)]) -> Knot {
        let bin = find_bin("knotd", "/usr/sbin/knotd");
        let ip: IpAddr = ip
            .parse()
            .unwrap_or_else(|e| panic!("Knot::start({name:?}): bad ip {ip:?}: {e}"));
        let tmp = tempfile::Builder::new()
            .prefix("kn")
            .tempdir_in("/tmp")
            .expect("create temp dir for knot");
        let dir = tmp.path().to_path_buf();
        let mut k = Knot {
            name: name.to_string(),
            tmp: Some(tmp),
            dir,
            addr: SocketAddr::new(ip, port),
            origins: zones.iter().map(|(o, _)| fqdn(o)).collect(),
            child: None,
            pid: 0,
            paused: AtomicBool::new(false),
        };
        let unique: HashSet<&String> = k.origins.iter().collect();
        assert!(
            unique.len() == k.origins.len(),
            "Knot::start({name:?}): duplicate zone origins {:?}",
            k.origins
        );
        for sub in ["db", "zones"] {
            fs::create_dir(k.dir.join(sub)).unwrap();
        }
        for (origin, text) in zones {
            let path = k.zone_path(origin);
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let ip_str = ip.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if port == 0 {
                k.addr.set_port(Knot::free_port(&[&ip_str]));
            }
            k.write_conf();
            let log_before = k.log().len();
            match k.spawn(&bin) {
                Ok(()) => return k,
                Err(e)
                    if port == 0
                        && attempt < 4
                        && k.log()
                            .get(log_before..)
                            .is_some_and(|new| new.contains("address already in use")) =>
                {
                    eprintln!("knot {name}: port clash ({e}), retrying");
                }
                Err(e) => {
                    let hint = if k.log().contains("address already in use") {
                        "\n(port clash: choose the port with Knot::free_port, or pass 0)"
                    } else {
                        ""
                    };
                    panic!(
                        "knot instance {name:?} failed to start on {}: {e}{hint}\n\
                         dir: {}\n--- log tail ---\n{}",
                        k.addr,
                        k.dir.display(),
                        k.log_tail(40)
                    )
                }
            }
        }
    }

    /// A port number free for both UDP and TCP on every one of `ips` (so
    /// `127.0.0.1:P` and `127.0.0.2:P` can be two nameservers). Never
    /// returns the same port twice within this process. Like any such
    /// probe it is racy: another process may take the port before knotd
    /// binds it.
    pub fn free_port(ips: &[&str]) -> u16 {
        static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
        let ips: Vec<IpAddr> = ips
            .iter()
            .map(|ip| {
                ip.parse()
                    .unwrap_or_else(|e| panic!("Knot::free_port: bad ip {ip:?}: {e}"))
            })
            .collect();
        let first = ips.first().copied().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..1000 {
            let port = TcpListener::bind((first, 0))
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("bind {first}:0: {e}"))
                .port();
            // Hold every socket at once, then let them all go.
            let held: Vec<_> = ips
                .iter()
                .map(|ip| (TcpListener::bind((*ip, port)), UdpSocket::bind((*ip, port))))
                .collect();
            let all_free = held.iter().all(|(t, u)| t.is_ok() && u.is_ok());
            drop(held);
            if !all_free {
                continue;
            }
            let mut set = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
            if set.get_or_insert_with(HashSet::new).insert(port) {
                return port;
            }
        }
        panic!("Knot::free_port: no port free for UDP and TCP on all of {ips:?}")
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PID of knotd (also its process group id); 0 once stopped.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("knot.conf")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("knot.sock")
    }

    /// Contents of `knot.log`, plus knotd's stdout/stderr if any.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.join("knot.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.join("knotd.stderr")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            s.push_str("--- knotd stdout/stderr ---\n");
            s.push_str(&stderr);
        }
        s
    }

    /// Last `n` lines of [`Knot::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Replaces the MX RRset of `owner` (`"@"` for the apex, or a name
    /// relative to / inside `origin`) with `records`, each `(preference,
    /// exchange)` (exchange absolute, with the final dot). Empty `records`
    /// deletes the RRset. See [`Knot::set_rrset`].
    pub fn set_mx(&self, origin: &str, owner: &str, ttl: u32, records: &[(u16, &str)]) {
        let rdata: Vec<String> = records.iter().map(|(p, x)| format!("{p} {x}")).collect();
        let rdata: Vec<&str> = rdata.iter().map(String::as_str).collect();
        self.set_rrset(origin, owner, ttl, "MX", &rdata);
    }

    /// Replaces the `rtype` RRset of `owner` at runtime, in one transaction:
    /// `knotc zone-begin`, `zone-unset <owner> <rtype>` (a missing RRset is
    /// fine), `zone-set <owner> <ttl> <rtype> <rdata>` for each, then
    /// `zone-commit`. On commit Knot bumps the SOA serial and serves the new
    /// data at once. Any failure aborts the transaction and panics with
    /// knotc's output. Panics (after knotc's 5 s timeout) while paused.
    pub fn set_rrset(&self, origin: &str, owner: &str, ttl: u32, rtype: &str, rdata: &[&str]) {
        let z = fqdn(origin);
        self.knotc_ok(&["zone-begin", &z]);
        let fail = |what: String| -> ! {
            let abort = self.knotc(&["zone-abort", &z]);
            panic!(
                "knot {:?}: {what}\n(transaction aborted: {})\n--- log tail ---\n{}",
                self.name,
                abort.unwrap_or_else(|e| e),
                self.log_tail(20)
            )
        };
        if let Err(e) = self.knotc(&["zone-unset", &z, owner, rtype]) {
            // knotc says "(not exists)" when the node has no such RRset and
            // "(no such node in zone found)" when the name has no records.
            if !(e.contains("(not exists)") || e.contains("no such node")) {
                fail(e);
            }
        }
        let ttl = ttl.to_string();
        for rd in rdata {
            if let Err(e) = self.knotc(&["zone-set", &z, owner, &ttl, rtype, rd]) {
                fail(e);
            }
        }
        if let Err(e) = self.knotc(&["zone-commit", &z]) {
            fail(e);
        }
    }

    /// Current SOA serial of `origin`, as Knot holds it (`knotc zone-read`).
    pub fn serial(&self, origin: &str) -> u32 {
        let z = fqdn(origin);
        let out = self.knotc_ok(&["zone-read", &z, "@", "SOA"]);
        // "[example.com.] example.com. 300 SOA ns1... hostmaster... 2 3600 ..."
        let f: Vec<&str> = out.split_whitespace().collect();
        f.iter()
            .position(|w| *w == "SOA")
            .and_then(|i| f.get(i + 3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("knot {:?}: cannot parse zone-read SOA: {out}", self.name))
    }

    /// `kdig @ip -p port <name> <rtype> +short +timeout=1 +retry=0` over
    /// UDP: `Ok(rdata lines)` (empty for NXDOMAIN/NODATA), `Err(kdig's
    /// output)` when there is no answer (e.g. while paused, after ~1 s).
    pub fn query(&self, name: &str, rtype: &str) -> Result<Vec<String>, String> {
        kdig(self.addr, name, rtype)
    }

    /// SIGSTOP knotd: it stays bound but answers nothing (queries time out,
    /// TCP connects still complete in the kernel), like an unreachable
    /// nameserver. Undo with [`Knot::resume`]; Drop resumes too.
    pub fn pause(&self) {
        assert!(self.pid != 0, "knot {:?}: not running", self.name);
        signal(self.pid as i32, SIGSTOP);
        self.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONT knotd after [`Knot::pause`]; it answers again at once.
    pub fn resume(&self) {
        assert!(self.pid != 0, "knot {:?}: not running", self.name);
        signal(self.pid as i32, SIGCONT);
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Live (non-zombie) processes of this instance's process group. Empty
    /// once stopped.
    pub fn processes(&self) -> Vec<u32> {
        if self.pid == 0 {
            return Vec::new();
        }
        group_members(self.pid)
    }

    /// Stops the server (idempotent): SIGCONT if paused, SIGTERM, wait up
    /// to 10 s (then SIGKILL the group), and check via /proc that nothing
    /// of its process group survives. Panics if something does (unless
    /// already panicking).
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        if self.paused.swap(false, Ordering::SeqCst) {
            signal(self.pid as i32, SIGCONT);
        }
        let what = format!("knot {}", self.name);
        stop_server(child, self.pid, TermTo::Leader, &what, "knotd");
        self.pid = 0;
    }

    // ----- internals -----

    fn zone_path(&self, origin: &str) -> PathBuf {
        let bare = fqdn(origin);
        let bare = bare.trim_end_matches('.');
        let bare = if bare.is_empty() { "root" } else { bare };
        self.dir.join("zones").join(format!("{bare}.zone"))
    }

    fn write_conf(&self) {
        let d = self.dir.display();
        let ip = self.addr.ip();
        let port = self.addr.port();
        let mut c = format!(
            "# Generated by tests/common/knot.rs for test instance {name:?}\n\
             server:\n    rundir: \"{d}\"\n    listen: [ {ip}@{port} ]\n\
             \x20   udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             control:\n    listen: \"{d}/knot.sock\"\n\
             log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
             database:\n    storage: \"{d}/db\"\n\
             template:\n  - id: default\n    storage: \"{d}/zones\"\n\
             \x20   zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
             \x20   serial-policy: increment\n\
             zone:\n",
            name = self.name,
        );
        for o in &self.origins {
            let file = self.zone_path(o);
            c.push_str(&format!(
                "  - domain: \"{o}\"\n    file: \"{}\"\n",
                file.display()
            ));
        }
        fs::write(self.config_path(), c).expect("write knot.conf");
    }

    /// Spawns knotd and waits until every zone's SOA is answered over UDP,
    /// TCP accepts and the control socket accepts.
    fn spawn(&mut self, bin: &Path) -> Result<(), String> {
        assert!(self.child.is_none(), "knot already running");
        let child = spawn_in_group(
            Command::new(bin).arg("-c").arg(self.config_path()),
            &self.dir.join("knotd.stderr"),
        )
        .unwrap_or_else(|e| panic!("cannot run knotd ({}): {e}; {INSTALL_HINT}", bin.display()));
        self.pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.pid = 0;
                return Err(format!("knotd exited during startup ({status})"));
            }
            let log = self.log();
            if let Some(o) = self.origins.iter().find(|o| {
                log.contains(&format!("[{o}] zone event 'load' failed"))
                    || log.contains(&format!("[{o}] failed to parse zone file"))
            }) {
                let o = o.clone();
                self.stop();
                return Err(format!("zone {o} failed to load (see the log)"));
            }
            let ready = self
                .origins
                .iter()
                .all(|o| soa_answered(self.addr, o, Duration::from_millis(200)))
                && std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                    .is_ok()
                && UnixStream::connect(self.socket_path()).is_ok();
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "zones {:?} not answered on {} (or control socket not up) within \
                     {START_TIMEOUT:?}",
                    self.origins, self.addr
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Runs `knotc -c conf -s sock -t 5 -x args...`: Ok(stdout) on success,
    /// Err(description with stdout and stderr) otherwise.
    fn knotc(&self, args: &[&str]) -> Result<String, String> {
        let bin = find_bin("knotc", "/usr/sbin/knotc");
        let out = Command::new(&bin)
            .arg("-c")
            .arg(self.config_path())
            .arg("-s")
            .arg(self.socket_path())
            .args(["-t", KNOTC_TIMEOUT_SECS, "-x"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run knotc ({}): {e}; {INSTALL_HINT}", bin.display())
            });
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "knotc {args:?} failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn knotc_ok(&self, args: &[&str]) -> String {
        self.knotc(args).unwrap_or_else(|e| {
            panic!(
                "knot {:?}: {e}\n--- log tail ---\n{}",
                self.name,
                self.log_tail(20)
            )
        })
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        log_tail_on_panic("knot", &self.name, &self.dir, self.child.is_some(), || {
            self.log_tail(30)
        });
        self.stop();
        keep_tmp_if_asked("knot", &mut self.tmp);
    }
}

/// Text of a simple zone for `origin`: `$ORIGIN`, `$TTL`, an SOA (serial 1,
/// primary = the first NS, or `ns1.<origin>` if `ns` is empty), the NS
/// records, the MX records `(preference, exchange)` at the apex, and an A
/// record for every NS name inside the zone (the i-th NS gets
/// `127.0.0.<i+1>`), so Knot's checks pass. Names may omit the final dot;
/// they are taken as absolute. Everything uses `ttl`.
pub fn zone_text(origin: &str, ns: &[&str], mx: &[(u16, &str)], ttl: u32) -> String {
    let origin = fqdn(origin);
    let default_ns = format!("ns1.{origin}");
    let ns: Vec<String> = if ns.is_empty() {
        vec![default_ns]
    } else {
        ns.iter().map(|n| fqdn(n)).collect()
    };
    let mut s = format!(
        "$ORIGIN {origin}\n$TTL {ttl}\n\
         @ {ttl} IN SOA {} hostmaster.{origin} 1 3600 900 604800 {ttl}\n",
        ns[0]
    );
    for n in &ns {
        s.push_str(&format!("@ {ttl} IN NS {n}\n"));
    }
    for (pref, x) in mx {
        s.push_str(&format!("@ {ttl} IN MX {pref} {}\n", fqdn(x)));
    }
    for (i, n) in ns.iter().enumerate() {
        if n == &origin || n.ends_with(&format!(".{origin}")) {
            s.push_str(&format!("{n} {ttl} IN A 127.0.0.{}\n", i + 1));
        }
    }
    s
}

/// `kdig @server <name> <rtype> +short +timeout=1 +retry=0` (UDP, no
/// recursion wanted): `Ok(rdata lines)`, or `Err(kdig's output)` when it
/// gets no answer. Panics if kdig is missing.
pub fn kdig(server: SocketAddr, name: &str, rtype: &str) -> Result<Vec<String>, String> {
    let bin = find_bin("kdig", "/usr/bin/kdig");
    let out = Command::new(&bin)
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([
            name,
            rtype,
            "+short",
            "+norecurse",
            "+timeout=1",
            "+retry=0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run kdig ({}): {e}; {INSTALL_HINT}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !stderr.contains("ERROR") {
        Ok(stdout.lines().map(str::to_string).collect())
    } else {
        Err(format!(
            "kdig @{server} {name} {rtype}: {} {}{}",
            out.status,
            stdout.trim(),
            stderr.trim()
        ))
    }
}

/// `name` with exactly one final dot (`"."` for the root).
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn find_bin(name: &str, default: &str) -> PathBuf {
    let default = PathBuf::from(default);
    if default.is_file() {
        return default;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} not found ({}, $PATH): {INSTALL_HINT} \
             (DNS integration tests need a real nameserver)",
            default.display()
        )
    })
}

/// Sends one raw UDP `SOA <origin>` query (no recursion) and checks for a
/// NOERROR response with an answer. Knot answers only once zones are
/// loaded (no `async-start`).
fn soa_answered(server: SocketAddr, origin: &str, timeout: Duration) -> bool {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(bind) else {
        return false;
    };
    if sock.connect(server).is_err() || sock.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    static NEXT_ID: AtomicU16 = AtomicU16::new(0);
    let id = (std::process::id() as u16) ^ NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // flags 0, QD=1
    for label in origin
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 6, 0, 1]); // SOA, IN
    if sock.send(&q).is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    let Ok(n) = sock.recv(&mut buf) else {
        return false;
    };
    n >= 12
        && buf[0..2] == id.to_be_bytes()
        && buf[2] & 0x80 != 0 // QR
        && buf[3] & 0x0f == 0 // RCODE NOERROR
        && u16::from_be_bytes([buf[6], buf[7]]) >= 1 // ANCOUNT
}
