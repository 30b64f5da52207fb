//! `Dovecot`: a real, private Dovecot instance per test.
//!
//! Each instance lives in its own temp dir (`/tmp/dvXXXXXX`, short on
//! purpose: Dovecot puts unix sockets in `base_dir` and socket paths are
//! limited to ~108 bytes), listens on free loopback ports, runs in the
//! foreground as our child (`dovecot -F -c <conf>`) in its own process group,
//! and is stopped on Drop: SIGTERM to the master, wait (SIGKILL after 10 s),
//! then SIGTERM/SIGKILL whatever is left of its process group (the master
//! does not wait for imap processes that still have a client) and check via
//! /proc that nothing survives.
//!
//! Layout of the temp dir:
//! `dovecot.conf`, `passwd` (passwd-file, `{PLAIN}` passwords),
//! `run/` (base_dir), `state/` (state_dir), `home/<login>/Maildir`,
//! `dovecot.log` (log_path), `dovecot.stderr` (master's stdout/stderr, which
//! is where configuration errors go), `ssl/{cert,key}.pem` when TLS.
//!
//! Running as root: Dovecot refuses to run mail processes as uid 0, so the
//! userdb maps every user to `nobody` (uid/gid looked up in /etc/passwd,
//! default 65534, which is >= the default `first_valid_uid = 500`) and
//! `home/` is chowned to it. Not running as root: everything (login, auth,
//! mail processes) runs as the current user, without chroots.
//!
//! Time zones: each instance runs its server processes with its own `TZ`
//! (`import_environment = TZ=<zone>`), and Dovecot spells every INTERNALDATE
//! in that zone (Maildir keeps only the instant, as the file mtime). Real
//! migrations go between servers in different zones, so by default the
//! source and the target of every test differ: the zone is
//! [`DovecotOpts::tz`] if set, else chosen by the instance name, by its first
//! word (split at anything not a letter or digit) that starts with `old` or
//! `new`:
//!
//! | name | zone | offsets |
//! |---|---|---|
//! | a word starts with `old` (`old`, `old-tls`, `corpus-old`) | `Europe/Berlin` | `+0100` / `+0200` |
//! | a word starts with `new` (`new`, `new1`, `cfg-new`) | `America/New_York` | `-0500` / `-0400` |
//! | any other (`rt0`, `caps`) | `Asia/Kolkata` | `+0530` |
//!
//! The three zones never share an offset, so an INTERNALDATE compared as text
//! between two such servers differs: compare instants
//! ([`super::internaldate_secs`], `TestMsg::instant`). A named zone must
//! exist under `/usr/share/zoneinfo` (Debian's `tzdata`; scripts/test
//! installs it), else `start` panics: without the file glibc would silently
//! use UTC.
//!
//! Set `IMAPSHIFT_KEEP_TMP=1` to keep the temp dirs for debugging (their
//! paths are printed on stderr). `IMAPSHIFT_DOVECOT` overrides the path of
//! the dovecot binary (default `/usr/sbin/dovecot`).

use super::procgroup::{
    end_group, group_members, keep_tmp_if_asked, log_tail_on_panic, spawn_in_group, stop_server,
    wait_started, Started, TermTo,
};
use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`Dovecot::start`].
#[derive(Debug, Clone, Default)]
pub struct DovecotOpts {
    /// Also listen for implicit TLS (`tls_port()`) and offer STARTTLS on the
    /// plain port, with a self-signed certificate (CN=localhost,
    /// SAN DNS:localhost + IP:127.0.0.1) made by `openssl req -x509` ([`super::tls::self_signed`]).
    /// Plaintext LOGIN stays allowed on the plain port either way.
    pub tls: bool,
    /// With `tls`: the certificate and key (PEM files) to serve instead of the self-signed
    /// one, e.g. from [`super::tls::TestCa`].
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Appended verbatim at the end of the config, e.g.
    /// `"imap_capability = IMAP4rev1 LITERAL+"`. Later settings override
    /// earlier ones.
    pub extra_conf: String,
    /// `TZ` of the server processes, e.g. `"UTC"` or `"Asia/Tokyo"`; `None`
    /// chooses by the instance name (see the module docs and
    /// [`default_tz`]).
    pub tz: Option<String>,
}

/// Two folders of one special use, as Dovecot's stock 15-mailboxes.conf has for `\Sent`
/// (`Sent` and `Sent Messages`), and the same for `\Trash` (`Trash` and `Deleted Messages`).
pub const STOCK_SPECIAL_USE_NS: &str = "namespace inbox {\n  inbox = yes\n\
    mailbox Sent {\n    special_use = \\Sent\n  }\n\
    mailbox \"Sent Messages\" {\n    special_use = \\Sent\n  }\n\
    mailbox Trash {\n    special_use = \\Trash\n  }\n\
    mailbox \"Deleted Messages\" {\n    special_use = \\Trash\n  }\n}\n";

/// A new server whose admin prepared `Sent` and `Trash` (one folder of each kind).
pub const SENT_AND_TRASH_NS: &str = "namespace inbox {\n  inbox = yes\n\
    mailbox Sent {\n    special_use = \\Sent\n  }\n\
    mailbox Trash {\n    special_use = \\Trash\n  }\n}\n";

/// The zone an instance named `name` gets when [`DovecotOpts::tz`] is `None`:
/// the first word of the name (split at anything not an ASCII letter or
/// digit) that starts with `old` gives `Europe/Berlin`, with `new`
/// `America/New_York`; a name with neither gets `Asia/Kolkata`. So a test's
/// source and target (`old`/`new`, `corpus-old`/`corpus-new`, ...) are in
/// different zones, with offsets that never coincide.
pub fn default_tz(name: &str) -> &'static str {
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let word = word.to_ascii_lowercase();
        if word.starts_with("old") {
            return "Europe/Berlin";
        }
        if word.starts_with("new") {
            return "America/New_York";
        }
    }
    "Asia/Kolkata"
}

/// A running private Dovecot. See the module docs.
pub struct Dovecot {
    name: String,
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    opts: DovecotOpts,
    child: Option<Child>,
    pid: u32,
}

impl Dovecot {
    /// Starts an instance with the given `(login, password)` users. Panics
    /// (with the log tail) if dovecot is missing or does not come up within
    /// 10 s: tests must fail, never skip.
    pub fn start(name: &str, users: &[(&str, &str)], opts: DovecotOpts) -> Dovecot {
        let bin = dovecot_bin();
        let tmp = tempfile::Builder::new()
            .prefix("dv")
            .tempdir_in("/tmp")
            .expect("create temp dir for dovecot");
        let dir = tmp.path().to_path_buf();
        if let Some(tz) = &opts.tz {
            assert!(
                !tz.is_empty() && !tz.chars().any(|c| c.is_whitespace() || c == '#'),
                "DovecotOpts::tz {tz:?}: not a usable TZ value"
            );
        }
        let mut d = Dovecot {
            name: name.to_string(),
            tmp: Some(tmp),
            dir,
            port: 0,
            tls_port: None,
            opts,
            child: None,
            pid: 0,
        };
        check_zone(&d.tz());
        d.prepare_dir(users);
        let mut attempt = 0;
        loop {
            attempt += 1;
            d.port = free_port();
            d.tls_port = d.opts.tls.then(free_port);
            d.write_dovecot_conf();
            let log_before = d.log().len();
            match d.spawn(&bin) {
                Ok(()) => return d,
                // Another process may have grabbed a port between
                // free_port() and dovecot's bind(): retry with new ports.
                Err(e)
                    if attempt < 4
                        && d.log()
                            .get(log_before..)
                            .is_some_and(|new| new.contains("Address already in use")) =>
                {
                    eprintln!("dovecot {name}: port clash ({e}), retrying");
                }
                Err(e) => panic!(
                    "dovecot instance {name:?} failed to start: {e}\n\
                     dir: {}\n--- log tail ---\n{}",
                    d.dir.display(),
                    d.log_tail(40)
                ),
            }
        }
    }

    /// Plain IMAP port (offers STARTTLS when `tls`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Implicit-TLS (imaps) port, when started with `tls`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the dovecot master (also its process group id); 0 if stopped.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `TZ` the server processes run with (see the module docs).
    pub fn tz(&self) -> String {
        self.opts
            .tz
            .clone()
            .unwrap_or_else(|| default_tz(&self.name).to_string())
    }

    /// Self-signed certificate (PEM) of a `tls` instance.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.join("ssl/cert.pem"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    /// On-disk Maildir of `login` (exists once the user has logged in).
    pub fn maildir(&self, login: &str) -> PathBuf {
        self.dir.join("home").join(login).join("Maildir")
    }

    /// Adds a user to the passwd-file; Dovecot notices the change on the
    /// next login (it re-reads the file when its mtime/size change).
    pub fn add_user(&self, login: &str, password: &str) {
        assert!(
            !login.is_empty()
                && !login
                    .bytes()
                    .any(|b| b == b':' || b == b'/' || b.is_ascii_whitespace() || b < 0x20),
            "unsupported login for passwd-file: {login:?}"
        );
        // Plain `{PLAIN}secret` when that is unambiguous in passwd-file
        // syntax, otherwise hex-encoded (`{PLAIN.hex}`), which Dovecot
        // decodes to the exact bytes.
        let pw = if !password.is_empty()
            && password
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b':')
        {
            format!("{{PLAIN}}{password}")
        } else {
            format!("{{PLAIN.hex}}{}", hex::encode(password))
        };
        let path = self.dir.join("passwd");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open passwd-file");
        writeln!(f, "{login}:{pw}").expect("write passwd-file");
    }

    /// Contents of the log file, plus the master's stdout/stderr if any.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.join("dovecot.stderr")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            s.push_str("--- dovecot stdout/stderr ---\n");
            s.push_str(&stderr);
        }
        s
    }

    /// Last `n` lines of [`Dovecot::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Live (non-zombie) processes of this instance: the master and
    /// everything in its process group. Empty once stopped.
    pub fn processes(&self) -> Vec<u32> {
        if self.pid == 0 {
            return Vec::new();
        }
        group_members(self.pid)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the instance (idempotent): SIGTERM to the master, wait up to
    /// 10 s for it (then SIGKILL), then SIGTERM / SIGKILL whatever is left
    /// of its process group and check via /proc that nothing survives.
    /// Panics if something does (unless already panicking).
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let what = format!("dovecot {}", self.name);
        stop_server(child, self.pid, TermTo::Leader, &what, "master");
        self.pid = 0;
    }

    /// Stops and starts again with the same config, ports and data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn(&dovecot_bin()) {
            panic!(
                "dovecot instance {:?} failed to restart: {e}\n--- log tail ---\n{}",
                self.name,
                self.log_tail(40)
            );
        }
    }

    // ----- internals -----

    fn prepare_dir(&mut self, users: &[(&str, &str)]) {
        let dir = &self.dir;
        // Mail processes run as an unprivileged user and must traverse it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["state", "home"] {
            fs::create_dir(dir.join(sub)).unwrap();
        }
        let (uid, gid) = mail_ids();
        if is_root() {
            std::os::unix::fs::chown(dir.join("home"), Some(uid), Some(gid))
                .expect("chown home dir to the mail user");
        }
        let passwd = dir.join("passwd");
        fs::write(&passwd, "").unwrap();
        fs::set_permissions(&passwd, fs::Permissions::from_mode(0o644)).unwrap();
        for (login, pw) in users {
            self.add_user(login, pw);
        }
        if self.opts.tls {
            match &self.opts.cert {
                None => {
                    super::tls::self_signed(&dir.join("ssl"));
                }
                Some((cert, key)) => {
                    fs::create_dir_all(dir.join("ssl")).unwrap();
                    fs::copy(cert, dir.join("ssl/cert.pem")).expect("copy the test certificate");
                    fs::copy(key, dir.join("ssl/key.pem")).expect("copy the test key");
                }
            }
        }
    }

    fn write_dovecot_conf(&self) {
        let d = self.dir.display();
        let (uid, gid) = mail_ids();
        let instance: String = self
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(24)
            .collect();
        let mut c = format!(
            "# Generated by tests/common/dovecot.rs for test instance {name:?}\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             instance_name = dv-{instance}\n\
             log_path = {d}/dovecot.log\n\
             import_environment = TZ={tz}\n\
             auth_verbose = yes\n\
             auth_mechanisms = plain login\n\
             disable_plaintext_auth = no\n\
             mail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/home/%u\n}}\n",
            name = self.name,
            tz = self.tz(),
        );
        if self.opts.tls {
            c.push_str(&format!(
                "ssl = yes\nssl_cert = <{d}/ssl/cert.pem\nssl_key = <{d}/ssl/key.pem\n"
            ));
        } else {
            c.push_str("ssl = no\n");
        }
        let chroot = if is_root() { "" } else { "  chroot =\n" };
        c.push_str(&format!(
            "service imap-login {{\n{chroot}  inet_listener imap {{\n    port = {}\n  }}\n  \
             inet_listener imaps {{\n    port = {}\n    ssl = yes\n  }}\n}}\n",
            self.port,
            self.tls_port.unwrap_or(0)
        ));
        if !is_root() {
            let user = name_for_id("/etc/passwd", uid).unwrap_or_else(|| {
                panic!("running as uid {uid}, which has no /etc/passwd entry; dovecot needs one")
            });
            let group = name_for_id("/etc/group", gid).unwrap_or_else(|| user.clone());
            c.push_str(&format!(
                "default_login_user = {user}\ndefault_internal_user = {user}\n\
                 default_internal_group = {group}\nservice anvil {{\n  chroot =\n}}\n"
            ));
        }
        if !self.opts.extra_conf.is_empty() {
            c.push_str("# extra_conf\n");
            c.push_str(&self.opts.extra_conf);
            c.push('\n');
        }
        fs::write(self.config_path(), c).expect("write dovecot.conf");
    }

    /// Spawns `dovecot -F` and waits for the greeting on the plain port
    /// (and a TCP accept on the TLS port).
    fn spawn(&mut self, bin: &Path) -> Result<(), String> {
        assert!(self.child.is_none(), "dovecot already running");
        let child = spawn_in_group(
            Command::new(bin)
                .arg("-F")
                .arg("-c")
                .arg(self.config_path()),
            &self.dir.join("dovecot.stderr"),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot run dovecot ({}): {e}; integration tests need Debian's \
                     dovecot-imapd (or set IMAPSHIFT_DOVECOT)",
                bin.display()
            )
        });
        self.pid = child.id();
        let child = self.child.insert(child);
        let (port, tls_port) = (self.port, self.tls_port);
        let ready = || {
            greeting_ok(port)
                && tls_port.is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok())
        };
        match wait_started(child, START_TIMEOUT, ready) {
            Started::Ready => Ok(()),
            Started::Exited(status) => {
                self.child = None;
                sweep_group(self.pid, &self.name);
                self.pid = 0;
                Err(format!("dovecot exited during startup ({status})"))
            }
            Started::TimedOut => {
                self.stop();
                Err(format!(
                    "no `* OK` greeting on 127.0.0.1:{} within {START_TIMEOUT:?}",
                    self.port
                ))
            }
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        log_tail_on_panic(
            "dovecot",
            &self.name,
            &self.dir,
            self.child.is_some(),
            || self.log_tail(30),
        );
        self.stop();
        keep_tmp_if_asked("dovecot", &mut self.tmp);
    }
}

/// A free TCP port on 127.0.0.1 (bind :0, read the port, drop the
/// listener). Never returns the same port twice within this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut set = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if set.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Panics unless glibc can load `tz`: a named zone (`Area/City`, ...) needs
/// its file under `$TZDIR` or `/usr/share/zoneinfo` (Debian's `tzdata`);
/// without it glibc silently falls back to UTC and the zone tests would pass
/// for the wrong reason. `UTC` and POSIX rule strings (with a digit, e.g.
/// `<+03>-3`) are not checked.
pub(super) fn check_zone(tz: &str) {
    let name = tz.strip_prefix(':').unwrap_or(tz);
    let posix_rule =
        !tz.starts_with(':') && !name.contains('/') && name.chars().any(|c| c.is_ascii_digit());
    if name == "UTC" || posix_rule {
        return;
    }
    let dir = std::env::var_os("TZDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/zoneinfo"));
    let file = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        dir.join(name)
    };
    assert!(
        file.is_file(),
        "time zone {tz:?} for a test Dovecot: {} does not exist; install Debian's tzdata \
         (scripts/test does)",
        file.display()
    );
}

fn dovecot_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IMAPSHIFT_DOVECOT") {
        return PathBuf::from(p);
    }
    let default = PathBuf::from("/usr/sbin/dovecot");
    if default.exists() {
        return default;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("dovecot"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "dovecot not found (/usr/sbin/dovecot, $PATH, or $IMAPSHIFT_DOVECOT): \
             install Debian's dovecot-imapd; integration tests need a real IMAP server"
        )
    })
}

/// Connects and checks that the server greets with `* OK`.
pub(super) fn greeting_ok(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("* OK");
    let _ = (&s).write_all(b"x LOGOUT\r\n");
    ok
}

/// After the master is gone: the master does not wait for its children, and
/// an imap process with a connected client only notices ~10 s later that
/// the master died. So SIGTERM what is left of the group (imap then sends
/// `* BYE Server shutting down.` and exits), SIGKILL as a last resort, and
/// panic (unless already panicking) if anything survives.
fn sweep_group(pgid: u32, name: &str) {
    end_group(pgid, &format!("dovecot {name}"));
}

extern "C" {
    fn geteuid() -> u32;
    fn getegid() -> u32;
}

pub(super) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { geteuid() == 0 }
}

/// uid/gid that owns the mail: `nobody` when root, else ourselves.
fn mail_ids() -> (u32, u32) {
    if is_root() {
        passwd_ids("nobody").unwrap_or((65534, 65534))
    } else {
        // SAFETY: geteuid/getegid cannot fail.
        unsafe { (geteuid(), getegid()) }
    }
}

pub(super) fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Name for a numeric id in /etc/passwd or /etc/group.
fn name_for_id(file: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
    })
}
