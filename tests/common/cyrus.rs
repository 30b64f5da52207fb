//! `Cyrus`: a real, private Cyrus IMAP 3.6 instance per test, for the cross-vendor migrations.
//!
//! Debian's `cyrus-imapd` conflicts with `dovecot-imapd` (both provide `imap-server`), so Cyrus is
//! not installed: `scripts/vendor/cyrus.sh install` unpacks Debian's `cyrus-common` and
//! `cyrus-imapd` packages into a prefix (`$IMAPSHIFT_CYRUS_PREFIX`, default
//! `/var/cache/imapshift/cyrus-3.6` as root, `$HOME/.cache/imapshift/cyrus-3.6` otherwise) and
//! installs with apt only the libraries its binaries need. [`cyrus_prefix`] finds it; a missing
//! prefix fails the test with the command to run.
//!
//! Each instance lives in its own temp dir (`/tmp/cyXXXXXX`), listens on a free loopback port,
//! runs in the foreground as our child (`master -D -C imapd.conf -M cyrus.conf`, whose only
//! service is `imapd` on `127.0.0.1:PORT`) in its own process group with its own `TZ`
//! ([`super::default_tz`] by name unless [`CyrusOpts::tz`]), and is stopped on Drop: SIGTERM to
//! the master (which stops its imapd children), SIGKILL after 10 s, then SIGKILL to whatever is
//! left of the group and a check via /proc that nothing survives.
//!
//! Layout of the temp dir: `imapd.conf`, `cyrus.conf`, `sasldb2` (the users' passwords,
//! realm `localhost`), `conf/` (configdirectory: mailboxes.db, `socket/` for imapd's idle
//! sockets, `log/<login>/` for protocol telemetry), `spool/` (partition-default), `run/`
//! (proc_path, mboxname_lockpath, master.pid), `cyrus.stderr` (the master's stdout/stderr).
//!
//! Running as root: Cyrus refuses to, so it switches to `cyrus_user: mail` and the temp dir is
//! chowned to `mail`. Users authenticate from the sasldb file (`sasl_pwcheck_method: auxprop`,
//! `sasl_auxprop_plugin: sasldb`, `saslpasswd2 -f FILE -u localhost`), LOGIN and AUTHENTICATE
//! PLAIN/LOGIN over plain TCP (`allowplaintext: yes`). Each user's INBOX (`user.<login>`) is
//! made by Cyrus itself at the user's first login (`autocreate_quota: 0`: no quota), which
//! [`Cyrus::start`] and [`Cyrus::add_user`] do. Debian's namespace defaults are kept on
//! purpose: separator `.`, personal namespace `INBOX.` (`unixhierarchysep: no`,
//! `altnamespace: no`), other users `user.`, shared `""`. The admin [`CYRUS_ADMIN`] (password
//! [`CYRUS_ADMIN_PASSWORD`]) sees every mailbox as `user.<login>...`.
//!
//! Logs: Cyrus logs only to syslog, and there is no `/dev/log` on the test machines, so its own
//! messages are lost. What [`Cyrus::log`] shows instead is the master's stdout/stderr and the
//! protocol telemetry Cyrus writes for every session of a user whose `conf/log/<login>/` exists
//! (the harness makes one per user): every command and response after LOGIN, one file per imapd
//! process. So a failing test shows the conversation that failed.
//!
//! `extra_conf` lines are imapd.conf settings; Cyrus refuses a key given twice, so a key in
//! `extra_conf` replaces the harness's line for it. Set `IMAPSHIFT_KEEP_TMP=1` to keep the temp
//! dirs (their paths are printed on stderr).

use super::dovecot::{check_zone, is_root, passwd_ids};
use super::procgroup::{
    group_members, keep_tmp_if_asked, log_tail_on_panic, signal, spawn_in_group, stop_server,
    tail_lines, wait_group_empty, TermTo, SIGKILL,
};
use super::{default_tz, free_port, TestImap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const SERIES: &str = "3.6";
/// Written by scripts/vendor/cyrus.sh when a prefix is complete (the package versions).
const MARKER: &str = ".imapshift-complete";
/// The user Cyrus switches to when started as root.
const RUN_AS: &str = "mail";

/// The Cyrus administrator of every instance (`admins: cyrus`).
pub const CYRUS_ADMIN: &str = "cyrus";
/// Its password (a loopback test server's).
pub const CYRUS_ADMIN_PASSWORD: &str = "cyrus-admin";

/// Options for [`Cyrus::start`].
#[derive(Debug, Clone, Default)]
pub struct CyrusOpts {
    /// `TZ` of the server processes; `None` chooses by the instance name like Dovecot's
    /// ([`super::default_tz`]). Cyrus spells every INTERNALDATE in this zone.
    pub tz: Option<String>,
    /// imapd.conf lines (`key: value`) appended to the generated config; a key given here
    /// replaces the harness's line for it (e.g. `"suppress_capabilities: UIDPLUS\n"`).
    pub extra_conf: String,
}

/// Where scripts/vendor/cyrus.sh unpacked Cyrus: `$IMAPSHIFT_CYRUS_PREFIX`, else
/// `/var/cache/imapshift/cyrus-3.6` as root, else `$HOME/.cache/imapshift/cyrus-3.6`.
pub fn cyrus_prefix() -> PathBuf {
    if let Some(p) = std::env::var_os("IMAPSHIFT_CYRUS_PREFIX").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if is_root() {
        return PathBuf::from(format!("/var/cache/imapshift/cyrus-{SERIES}"));
    }
    let home = std::env::var_os("HOME").expect("HOME is not set: cannot find the Cyrus prefix");
    Path::new(&home).join(format!(".cache/imapshift/cyrus-{SERIES}"))
}

/// A private server instance of the vendor harnesses, [`Cyrus`] and [`super::Courier`]: what
/// they share is here (name, temp dir, the prefix the binaries run from, port, `TZ`, process
/// group, how it stops), what differs is in `opts` and in their own `impl`s. Dropping it stops
/// the server (with the log tail if the test is panicking) and honours `IMAPSHIFT_KEEP_TMP`.
pub struct Instance<O> {
    pub(super) name: String,
    tmp: Option<tempfile::TempDir>,
    pub(super) dir: PathBuf,
    pub(super) prefix: PathBuf,
    pub(super) port: u16,
    tz: String,
    pub(super) child: Option<Child>,
    pub(super) pid: u32,
    /// `"cyrus"`, `"courier"`: names the instance in messages.
    kind: &'static str,
    /// Where SIGTERM goes, and the name of the process it must end.
    term_to: TermTo,
    leader: &'static str,
    /// Everything the server wrote, read from its temp dir.
    read_log: fn(&Path) -> String,
    pub(super) opts: O,
}

impl<O> Instance<O> {
    /// A fresh temp dir `/tmp/<tmp_prefix>XXXXXX` for instance `name` of the `kind` server
    /// unpacked in `prefix`; `tz` `None` chooses by the name ([`default_tz`]). Not started.
    pub(super) fn new(
        (kind, tmp_prefix): (&'static str, &str),
        (name, tz): (&str, Option<String>),
        prefix: PathBuf,
        (term_to, leader): (TermTo, &'static str),
        read_log: fn(&Path) -> String,
        opts: O,
    ) -> Instance<O> {
        let tmp = tempfile::Builder::new()
            .prefix(tmp_prefix)
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("create temp dir for {kind}: {e}"));
        Instance {
            name: name.to_string(),
            dir: tmp.path().to_path_buf(),
            tmp: Some(tmp),
            prefix,
            port: 0,
            tz: tz.unwrap_or_else(|| default_tz(name).to_string()),
            child: None,
            pid: 0,
            kind,
            term_to,
            leader,
            read_log,
            opts,
        }
    }

    /// The IMAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the server's main process (also its process group id); 0 if stopped.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The `TZ` the server processes run with: the server spells every INTERNALDATE in it.
    pub fn tz(&self) -> String {
        self.tz.clone()
    }

    /// Everything the server wrote (see the module docs of each harness).
    pub fn log(&self) -> String {
        (self.read_log)(&self.dir)
    }

    /// Last `n` lines of [`Instance::log`].
    pub fn log_tail(&self, n: usize) -> String {
        tail_lines(&self.log(), n)
    }

    /// Live processes of this instance (its main process and its children). Empty once
    /// stopped.
    pub fn processes(&self) -> Vec<u32> {
        match self.pid {
            0 => Vec::new(),
            pgid => group_members(pgid),
        }
    }

    /// Whether the server was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the instance (idempotent): SIGTERM to its main process (Cyrus's master stops its
    /// children) or its whole group (Courier); after 10 s SIGKILL to the group; then SIGKILL
    /// whatever is left and check via /proc that nothing survives. Panics if something does
    /// (unless already panicking).
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let what = format!("{} {}", self.kind, self.name);
        stop_server(child, self.pid, self.term_to, &what, self.leader);
        self.pid = 0;
    }
}

impl<O> Drop for Instance<O> {
    fn drop(&mut self) {
        let running = self.is_running();
        log_tail_on_panic(self.kind, &self.name, &self.dir, running, || {
            self.log_tail(30)
        });
        self.stop();
        keep_tmp_if_asked(self.kind, &mut self.tmp);
    }
}

/// A running private Cyrus. See the module docs.
pub type Cyrus = Instance<CyrusOpts>;

impl Cyrus {
    /// Starts an instance with the given `(login, password)` users, each with an INBOX.
    /// Panics (with the log tail) if Cyrus is not installed or does not come up within 10 s:
    /// tests must fail, never skip.
    pub fn start(name: &str, users: &[(&str, &str)], opts: CyrusOpts) -> Cyrus {
        let mut c = Cyrus::new(
            ("cyrus", "cy"),
            (name, opts.tz.clone()),
            installed_prefix(),
            (TermTo::Leader, "master"),
            read_log,
            opts,
        );
        let tz = c.tz();
        assert!(
            !tz.is_empty() && !tz.chars().any(char::is_whitespace),
            "CyrusOpts::tz {tz:?}: not a usable TZ value"
        );
        check_zone(&tz);
        c.prepare_dir();
        c.set_password(CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD);
        for (login, pw) in users {
            c.register(login, pw);
        }
        c.start_on_free_port();
        for (login, pw) in users {
            c.create_inbox(login, pw);
        }
        c
    }

    /// The prefix the binaries run from (see [`cyrus_prefix`]).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("imapd.conf")
    }

    /// Adds a user (password in the sasldb, protocol telemetry, INBOX made by a first login).
    pub fn add_user(&self, login: &str, password: &str) {
        self.register(login, password);
        self.create_inbox(login, password);
    }

    /// Stops and starts again with the same config, port and mail.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!(
                "cyrus instance {:?} failed to restart: {e}\n--- log tail ---\n{}",
                self.name,
                self.log_tail(40)
            );
        }
    }

    // ----- internals -----

    fn prepare_dir(&self) {
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
            .expect("chmod the cyrus temp dir");
        for sub in ["conf/socket", "conf/log", "spool", "run/proc", "run/lock"] {
            fs::create_dir_all(self.dir.join(sub)).expect("create cyrus dirs");
        }
        self.hand_over(&self.dir);
    }

    /// Sets `login`'s password in the sasldb and makes its telemetry dir.
    fn register(&self, login: &str, password: &str) {
        assert!(
            !login.is_empty()
                && login != CYRUS_ADMIN
                && login
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
            "unsupported Cyrus test login {login:?}: ASCII letters, digits, - and _ only \
             (`.` is Cyrus's separator; {CYRUS_ADMIN:?} is the admin)"
        );
        self.set_password(login, password);
        let log = self.dir.join("conf/log").join(login);
        fs::create_dir_all(&log).expect("create telemetry dir");
        self.hand_over(&log);
    }

    fn set_password(&self, login: &str, password: &str) {
        assert!(
            !password.is_empty() && !password.contains(['\n', '\r', '\0']),
            "unsupported password for Cyrus test user {login:?}: empty or with CR, LF or NUL"
        );
        let sasldb = self.dir.join("sasldb2");
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-u", "localhost", "-f"])
            .arg(&sasldb)
            .arg(login)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run saslpasswd2 ({e}): run scripts/vendor/cyrus.sh install")
            });
        let mut stdin = child.stdin.take().expect("saslpasswd2 stdin");
        stdin
            .write_all(password.as_bytes())
            .expect("write the password to saslpasswd2");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for saslpasswd2");
        assert!(
            out.status.success(),
            "saslpasswd2 for {login:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o600)).expect("chmod sasldb");
        self.hand_over(&sasldb);
    }

    /// A first login makes the user's INBOX (`autocreate_quota`), and checks the password.
    fn create_inbox(&self, login: &str, password: &str) {
        match TestImap::try_connect(self.port, login, password) {
            Ok(c) => c.logout(),
            Err(e) => panic!(
                "cyrus {}: first LOGIN of {login:?} (which makes its INBOX) failed: {e}\n\
                 --- log tail ---\n{}",
                self.name,
                self.log_tail(40)
            ),
        }
    }

    /// As root, gives `path` (recursively) to the user Cyrus runs as.
    fn hand_over(&self, path: &Path) {
        if !is_root() {
            return;
        }
        let (uid, gid) = passwd_ids(RUN_AS).unwrap_or_else(|| {
            panic!("no user {RUN_AS:?} in /etc/passwd: Cyrus needs one to run as")
        });
        chown_tree(path, uid, gid);
    }

    fn start_on_free_port(&mut self) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port();
            self.write_config();
            match self.spawn() {
                Ok(()) => return,
                // Another process may have taken the port between free_port() and the master's
                // bind() (the master then runs without its service, saying so only to syslog).
                Err(e) if attempt < 4 && e.contains("is not ours") => {
                    eprintln!("cyrus {}: {e}; retrying on another port", self.name);
                }
                Err(e) => panic!(
                    "cyrus instance {:?} failed to start: {e}\ndir: {}\n--- log tail ---\n{}",
                    self.name,
                    self.dir.display(),
                    self.log_tail(40)
                ),
            }
        }
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let defaults = format!(
            "configdirectory: {d}/conf\n\
             partition-default: {d}/spool\n\
             defaultpartition: default\n\
             proc_path: {d}/run/proc\n\
             mboxname_lockpath: {d}/run/lock\n\
             idlesocket: {d}/conf/socket/idle\n\
             lmtpsocket: {d}/conf/socket/lmtp\n\
             notifysocket: {d}/conf/socket/notify\n\
             servername: localhost\n\
             cyrus_user: {RUN_AS}\n\
             admins: {CYRUS_ADMIN}\n\
             altnamespace: no\n\
             unixhierarchysep: no\n\
             allowplaintext: yes\n\
             sasl_pwcheck_method: auxprop\n\
             sasl_auxprop_plugin: sasldb\n\
             sasl_sasldb_path: {d}/sasldb2\n\
             sasl_mech_list: PLAIN LOGIN\n\
             autocreate_quota: 0\n\
             hashimapspool: true\n\
             umask: 077\n"
        );
        let conf = merge_conf(&defaults, &self.opts.extra_conf);
        let text = format!(
            "# Generated by tests/common/cyrus.rs for test instance {:?}\n{conf}",
            self.name
        );
        write_file(&self.config_path(), &text);
        let services = format!(
            "# Generated by tests/common/cyrus.rs: imapd only, on loopback.\n\
             SERVICES {{\n  imap cmd=\"{} -C {}\" listen=\"127.0.0.1:{}\" prefork=0\n}}\n",
            self.prefix.join("usr/lib/cyrus/bin/imapd").display(),
            self.config_path().display(),
            self.port
        );
        write_file(&self.dir.join("cyrus.conf"), &services);
    }

    fn spawn(&mut self) -> Result<(), String> {
        let master = self.prefix.join("usr/lib/cyrus/bin/master");
        let mut cmd = Command::new(&master);
        cmd.arg("-D")
            .arg("-C")
            .arg(self.config_path())
            .arg("-M")
            .arg(self.dir.join("cyrus.conf"))
            .arg("-p")
            .arg(self.dir.join("run/master.pid"))
            .env("LD_LIBRARY_PATH", lib_path(&self.prefix))
            .env("TZ", self.tz())
            .current_dir(&self.dir);
        let child = spawn_in_group(&mut cmd, &self.dir.join("cyrus.stderr")).unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/vendor/cyrus.sh install",
                master.display()
            )
        });
        self.pid = child.id();
        self.child = Some(child);
        self.wait_listening()
    }

    /// Waits until the master listens on our port (its own socket, seen in /proc), then for
    /// the `* OK` greeting.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a started master");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.stop_group();
                return Err(format!("the cyrus master exited during startup ({status})"));
            }
            match listener_owner(self.port, self.pid) {
                Listener::Ours => return self.check_greeting(),
                Listener::Theirs => {
                    self.stop();
                    return Err(format!(
                        "the listener on 127.0.0.1:{} is not ours",
                        self.port
                    ));
                }
                Listener::None if Instant::now() > deadline => {
                    self.stop();
                    return Err(format!(
                        "the master did not listen on 127.0.0.1:{} within {START_TIMEOUT:?}",
                        self.port
                    ));
                }
                Listener::None => sleep(Duration::from_millis(20)),
            }
        }
    }

    fn check_greeting(&mut self) -> Result<(), String> {
        let c = TestImap::connect_unauthenticated(self.port);
        let greeting = c.greeting().to_string();
        c.logout();
        if greeting.contains("Cyrus IMAP") {
            Ok(())
        } else {
            self.stop();
            Err(format!("unexpected greeting {greeting:?}"))
        }
    }

    /// After the master died on its own: nothing of its group may stay.
    fn stop_group(&mut self) {
        if !group_members(self.pid).is_empty() {
            signal(-(self.pid as i32), SIGKILL);
            wait_group_empty(self.pid, Duration::from_secs(5));
        }
        self.pid = 0;
    }
}

/// The master's stdout/stderr, then the protocol telemetry of every session (oldest first), of
/// the instance in `dir`.
fn read_log(dir: &Path) -> String {
    let mut s = fs::read_to_string(dir.join("cyrus.stderr")).unwrap_or_default();
    for file in telemetry_files(&dir.join("conf/log")) {
        let bytes = fs::read(&file).unwrap_or_default();
        let rel = file.strip_prefix(dir).unwrap_or(&file);
        s.push_str(&format!("--- telemetry {} ---\n", rel.display()));
        s.push_str(&String::from_utf8_lossy(&bytes));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// The prefix, checked: complete (scripts/vendor/cyrus.sh wrote its marker) with a master.
fn installed_prefix() -> PathBuf {
    let prefix = cyrus_prefix();
    let ok = prefix.join(MARKER).is_file() && prefix.join("usr/lib/cyrus/bin/master").is_file();
    assert!(
        ok,
        "Cyrus IMAP {SERIES} is not installed in {}: run `scripts/vendor/cyrus.sh install` \
         (scripts/test does), or set IMAPSHIFT_CYRUS_PREFIX to where it is",
        prefix.display()
    );
    if is_root() {
        // The master runs imapd as `mail`: every folder above the binaries must let it pass.
        let closed = prefix
            .ancestors()
            .find(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0));
        if let Some(dir) = closed {
            panic!(
                "Cyrus in {} cannot run as {RUN_AS:?}: {} is closed to other users; install it \
                 elsewhere (IMAPSHIFT_CYRUS_PREFIX, default /var/cache/imapshift/cyrus-{SERIES})",
                prefix.display(),
                dir.display()
            );
        }
    }
    prefix
}

fn lib_path(prefix: &Path) -> String {
    let libs = prefix.join("usr/lib/x86_64-linux-gnu");
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", libs.display()),
        _ => libs.display().to_string(),
    }
}

/// `defaults` with every line whose key `extra` sets left out, then `extra`.
fn merge_conf(defaults: &str, extra: &str) -> String {
    let key = |line: &str| line.split(':').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra
        .lines()
        .filter(|l| l.contains(':') && !l.trim_start().starts_with('#'))
        .map(key)
        .collect();
    let mut out: String = defaults
        .lines()
        .filter(|l| !overridden.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(extra);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        let entries = fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for e in entries.flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// Telemetry files under `conf/log/<login>/`, oldest first.
fn telemetry_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for user in fs::read_dir(root).into_iter().flatten().flatten() {
        for f in fs::read_dir(user.path()).into_iter().flatten().flatten() {
            let modified = f.metadata().and_then(|m| m.modified());
            files.push((modified.unwrap_or(std::time::UNIX_EPOCH), f.path()));
        }
    }
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

enum Listener {
    /// Our master holds the listening socket.
    Ours,
    /// Some other process listens on the port.
    Theirs,
    /// Nobody listens (yet).
    None,
}

/// Who listens on 127.0.0.1:`port`: the socket inode from /proc/net/tcp, looked up among
/// `pid`'s open files.
fn listener_owner(port: u16, pid: u32) -> Listener {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
    });
    let Some(inode) = inode else {
        return Listener::None;
    };
    let wanted = format!("socket:[{inode}]");
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten();
    let ours = fds
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .any(|target| target.as_os_str() == wanted.as_str());
    if ours {
        Listener::Ours
    } else {
        Listener::Theirs
    }
}
