//! `Courier`: a real, private Courier-IMAP 5.0 instance per test, for the cross-vendor
//! migrations (Courier's personal namespace is `INBOX.` with separator `.`, and it lacks
//! CONDSTORE, LITERAL+ and MULTIAPPEND: the point is to test imapshift against exactly that).
//!
//! Debian's `courier-imap` conflicts with the installed `dovecot-imapd` (both Provide and
//! Conflict `imap-server`), so Courier is never installed: `scripts/vendor/courier.sh install`
//! unpacks Debian bookworm's packages into a prefix, `$IMAPSHIFT_COURIER_PREFIX` (default
//! `$HOME/.cache/imapshift/courier-5.0`), and the binaries run from there with `LD_LIBRARY_PATH`
//! pointing at the prefix's libraries (libltdl finds authdaemond's `libauthuserdb` module through
//! it too).
//!
//! Courier hard-codes `/etc/courier` (authdaemonrc, userdb) and `/run/courier` (authdaemond's
//! socket), so each instance runs in a private mount namespace (`unshare -m --propagation
//! private`, root only): an overlay over `/etc` and one over `/run` (their upper dirs in the
//! instance's temp dir, so the mount points can be made without touching the host), then the
//! instance's `etc/` bound over `/etc/courier` and `run/` over `/run/courier`, and the prefix
//! bound onto `prefix/` in the temp dir (root's `$HOME` is mode 700; the mail processes run as
//! nobody and must reach imapd). Nothing of it is visible outside the namespace, which goes
//! away with its last process.
//!
//! Inside, `start.sh` does what Debian's init scripts do, with Debian's stock
//! `/etc/courier/imapd` (only `ADDRESS`, `PORT` and [`CourierOpts::extra_env`] appended): builds
//! `userdb.dat` and `userdbshadow.dat` with Courier's own `makeuserdb` (its `makedatprog` path
//! pointed at the prefix), starts `authdaemond` (module `authuserdb`) and waits for its socket,
//! sources the imapd config with `set -a`, applies its `umask` and `ulimit -v`, and execs
//! `couriertcpd` on 127.0.0.1 running `imaplogin` -> `imapd Maildir` per connection. So Courier
//! speaks IMAP from the greeting on and checks every LOGIN against the userdb (passwords hashed
//! by Courier's `userdbpw -md5`). Not started: courierlogger (all logs go to `courier.log`),
//! STARTTLS (no certificate; the stock config would offer it), the access file.
//!
//! Users: every login maps to uid/gid `nobody` (Courier's mail processes then run as nobody),
//! home `home/<login>`, mail in `home/<login>/Maildir`, made by Courier's `maildirmake`.
//! Folders are Maildir++ (`Maildir/.Sent/`), so `INBOX.Sent` on the wire.
//!
//! Layout of the temp dir (`/tmp/cuXXXXXX`): `etc/` (/etc/courier: `imapd`, `authdaemonrc`,
//! `userdb`), `run/` (/run/courier), `overlay/`, `prefix/`, `home/`, `start.sh`, `makeuserdb`,
//! `courier.log` (stdout and stderr of every Courier process).
//!
//! Process group and stop: the launcher (unshare, then `sh start.sh`, which execs couriertcpd)
//! is our child in its own process group, and so are authdaemond and every imaplogin/imapd.
//! Drop sends SIGTERM to the whole group, waits (SIGKILL after 10 s) and checks via /proc that
//! nothing of the group survives.
//!
//! Time zone: the processes run with `TZ` = [`CourierOpts::tz`] or, by default, the zone the
//! Dovecot harness gives the same name ([`default_tz`]: `old...` Europe/Berlin, `new...`
//! America/New_York, else Asia/Kolkata).
//!
//! `IMAPSHIFT_KEEP_TMP=1` keeps the temp dir (its path is printed on stderr).

use super::cyrus::Instance;
use super::dovecot::{check_zone, free_port, greeting_ok, is_root, passwd_ids};
/// Live members of a process group (for checking that a stopped instance left nothing).
pub use super::procgroup::group_members;
use super::procgroup::{end_group, spawn_in_group, wait_started, Started, TermTo};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(20);
/// What `scripts/vendor/courier.sh install` writes last into a complete prefix.
const COMPLETE_MARKER: &str = ".imapshift-complete";

/// Options for [`Courier::start`].
#[derive(Debug, Clone, Default)]
pub struct CourierOpts {
    /// `TZ` of the Courier processes; `None` chooses by the instance name ([`default_tz`]).
    pub tz: Option<String>,
    /// Settings appended to Debian's stock `/etc/courier/imapd` (so they override it), e.g.
    /// `("IMAP_CAPABILITY", "IMAP4rev1 CHILDREN NAMESPACE")`. Names are shell variable names;
    /// values are quoted.
    pub extra_env: Vec<(String, String)>,
}

/// A running private Courier-IMAP. See the module docs.
pub type Courier = Instance<CourierOpts>;

impl Courier {
    /// Starts an instance with the given `(login, password)` users. Panics (with the log
    /// tail) if the unpacked Courier is missing, we are not root, or it does not greet within
    /// 20 s: tests must fail, never skip.
    pub fn start(name: &str, users: &[(&str, &str)], opts: CourierOpts) -> Courier {
        assert!(
            is_root(),
            "the Courier test harness needs root (a private mount namespace with `unshare -m`)"
        );
        let mut c = Courier::new(
            ("courier", "cu"),
            (name, opts.tz.clone()),
            courier_prefix(),
            (TermTo::Group, "couriertcpd"),
            |dir| fs::read_to_string(dir.join("courier.log")).unwrap_or_default(),
            opts,
        );
        check_zone(&c.tz());
        c.prepare_dir(users);
        let mut attempt = 0;
        loop {
            attempt += 1;
            c.port = free_port();
            c.write_imapd_conf();
            let log_before = c.log().len();
            match c.spawn() {
                Ok(()) => return c,
                // Another process may have taken the port between free_port() and
                // couriertcpd's bind(): retry with another.
                Err(e)
                    if attempt < 4
                        && c.log()
                            .get(log_before..)
                            .is_some_and(|new| new.contains("in use")) =>
                {
                    eprintln!("courier {name}: port clash ({e}), retrying");
                }
                Err(e) => panic!(
                    "courier instance {name:?} failed to start: {e}\ndir: {}\n--- log tail ---\n{}",
                    c.dir.display(),
                    c.log_tail(40)
                ),
            }
        }
    }

    /// On-disk Maildir of `login` (its folders are `.Name` subdirectories).
    pub fn maildir(&self, login: &str) -> PathBuf {
        self.dir.join("home").join(login).join("Maildir")
    }

    // ----- internals -----

    fn prepare_dir(&self, users: &[(&str, &str)]) {
        let dir = &self.dir;
        // Courier's mail processes run as nobody and must traverse it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "etc",
            "run/authdaemon",
            "home",
            "overlay/etc-upper",
            "overlay/etc-work",
            "overlay/run-upper",
            "overlay/run-work",
        ] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::write(
            dir.join("etc/authdaemonrc"),
            "# Generated by tests/common/courier.rs\n\
             authmodulelist=\"authuserdb\"\nauthmodulelistorig=\"authuserdb\"\n\
             daemons=2\nauthdaemonvar=/run/courier/authdaemon\n\
             DEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n",
        )
        .expect("write authdaemonrc");
        self.write_userdb(users);
        self.write_makeuserdb();
        self.write_start_script();
    }

    /// `etc/userdb` (mode 600, as makeuserdb demands): one line per user, the password as
    /// Courier's `userdbpw -md5` hashes it.
    fn write_userdb(&self, users: &[(&str, &str)]) {
        let (uid, gid) = passwd_ids("nobody").unwrap_or((65534, 65534));
        let mut text = String::new();
        for (login, password) in users {
            assert!(
                !login.is_empty()
                    && !login
                        .bytes()
                        .any(|b| b == b'|' || b == b'/' || b.is_ascii_whitespace() || b < 0x20),
                "login {login:?} cannot be a Courier userdb key: use one without spaces, `|`, `/`"
            );
            let home = self.dir.join("home").join(login);
            self.make_maildir(login, uid, gid);
            text.push_str(&format!(
                "{login}\tuid={uid}|gid={gid}|home={}|systempw={}\n",
                home.display(),
                self.hash_password(login, password)
            ));
        }
        let path = self.dir.join("etc/userdb");
        fs::write(&path, text).expect("write userdb");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `userdbpw -md5`, the password on its stdin (never in arguments).
    fn hash_password(&self, login: &str, password: &str) -> String {
        assert!(
            !password.contains(['\n', '\r', '\0']),
            "the password of {login:?} has a line break or NUL: userdbpw reads one line"
        );
        let mut child = self
            .tool("usr/sbin/userdbpw")
            .arg("-md5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Courier's userdbpw: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .expect("write the password to userdbpw");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for userdbpw");
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && hash.starts_with("$1$"),
            "userdbpw -md5 for {login:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        hash
    }

    /// `home/<login>/Maildir` by Courier's maildirmake, owned by the mail user.
    fn make_maildir(&self, login: &str, uid: u32, gid: u32) {
        let home = self.dir.join("home").join(login);
        fs::create_dir_all(&home).unwrap();
        let maildir = self.maildir(login);
        let out = self
            .tool("usr/bin/maildirmake.courier")
            .arg(&maildir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run Courier's maildirmake: {e}"));
        assert!(
            out.status.success(),
            "maildirmake {} failed: {}",
            maildir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        for p in [home.clone(), maildir.clone()]
            .into_iter()
            .chain(["cur", "new", "tmp"].map(|d| maildir.join(d)))
        {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to nobody: {e}", p.display()));
        }
    }

    /// Courier's makeuserdb (perl), with its hard-coded makedatprog path pointed at the prefix.
    fn write_makeuserdb(&self) {
        let src = self.prefix.join("usr/sbin/makeuserdb");
        let text =
            fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let makedat = "/usr/lib/courier/courier-authlib/makedatprog";
        assert!(
            text.contains(makedat),
            "{} no longer names {makedat}: the Courier package changed",
            src.display()
        );
        let ours = self.prefix.join(makedat.trim_start_matches('/'));
        fs::write(
            self.dir.join("makeuserdb"),
            text.replace(makedat, &ours.display().to_string()),
        )
        .expect("write makeuserdb");
    }

    /// Debian's stock `/etc/courier/imapd`, then our address, port and extra settings.
    fn write_imapd_conf(&self) {
        let stock = self.prefix.join("etc/courier/imapd");
        let mut text =
            fs::read_to_string(&stock).unwrap_or_else(|e| panic!("read {}: {e}", stock.display()));
        text.push_str(&format!(
            "\n# Added by tests/common/courier.rs for test instance {:?}\n\
             ADDRESS=127.0.0.1\nPORT={}\n",
            self.name, self.port
        ));
        for (key, value) in &self.opts.extra_env {
            assert!(
                !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !key.as_bytes()[0].is_ascii_digit(),
                "CourierOpts::extra_env: {key:?} is not a shell variable name"
            );
            text.push_str(&format!("{key}={}\n", sh_quote(value)));
        }
        fs::write(self.dir.join("etc/imapd"), text).expect("write etc/imapd");
    }

    fn write_start_script(&self) {
        let d = sh_quote(&self.dir.display().to_string());
        let p = sh_quote(&self.prefix.display().to_string());
        let script = format!(
            "# Generated by tests/common/courier.rs; runs inside `unshare -m`.\n\
             set -eu\n\
             D={d}\n\
             mkdir -p \"$D/prefix\"\n\
             mount --bind {p} \"$D/prefix\"\n\
             P=\"$D/prefix\"\n\
             mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$D/overlay/etc-upper,workdir=$D/overlay/etc-work\" /etc\n\
             mkdir -p /etc/courier\n\
             mount --bind \"$D/etc\" /etc/courier\n\
             mount -t overlay overlay -o \"lowerdir=/run,upperdir=$D/overlay/run-upper,workdir=$D/overlay/run-work\" /run\n\
             mkdir -p /run/courier\n\
             mount --bind \"$D/run\" /run/courier\n\
             export LD_LIBRARY_PATH=\"$P/usr/lib:$P/usr/lib/courier-authlib\"\n\
             perl \"$D/makeuserdb\"\n\
             \"$P/usr/lib/courier/courier-authlib/authdaemond\" &\n\
             i=0\n\
             while [ ! -S /run/courier/authdaemon/socket ]; do\n\
             \x20 i=$((i + 1))\n\
             \x20 if [ \"$i\" -gt 300 ]; then echo 'start.sh: authdaemond made no socket in 15 s' >&2; exit 1; fi\n\
             \x20 sleep 0.05\n\
             done\n\
             set -a\n\
             . /etc/courier/imapd\n\
             set +a\n\
             umask \"$IMAP_UMASK\"\n\
             ulimit -v \"$IMAP_ULIMITD\"\n\
             exec \"$P/usr/sbin/couriertcpd\" -address=\"$ADDRESS\" -maxprocs=\"$MAXDAEMONS\" \
             -maxperip=\"$MAXPERIP\" $TCPDOPTS \"$PORT\" \
             \"$P/usr/lib/courier/courier/imaplogin\" \"$P/usr/bin/imapd\" \"$MAILDIRPATH\"\n"
        );
        fs::write(self.dir.join("start.sh"), script).expect("write start.sh");
    }

    /// A command for one of the prefix's tools, with its libraries.
    fn tool(&self, rel: &str) -> Command {
        let mut cmd = Command::new(self.prefix.join(rel));
        cmd.env("LD_LIBRARY_PATH", self.lib_path());
        cmd
    }

    fn lib_path(&self) -> String {
        format!(
            "{0}/usr/lib:{0}/usr/lib/courier-authlib",
            self.prefix.display()
        )
    }

    /// Runs start.sh in a private mount namespace, in its own process group, and waits for
    /// the greeting.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "courier already running");
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "--", "/bin/sh"])
            .arg(self.dir.join("start.sh"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TZ", self.tz());
        let child = spawn_in_group(&mut cmd, &self.dir.join("courier.log"))
            .unwrap_or_else(|e| panic!("cannot run unshare (util-linux) for courier: {e}"));
        self.pid = child.id();
        let port = self.port;
        let child = self.child.insert(child);
        match wait_started(child, START_TIMEOUT, || greeting_ok(port)) {
            Started::Ready => Ok(()),
            Started::Exited(status) => {
                self.stop_after_failed_start();
                Err(format!("courier exited during startup ({status})"))
            }
            Started::TimedOut => {
                self.stop();
                Err(format!(
                    "no `* OK` greeting on 127.0.0.1:{port} within {START_TIMEOUT:?}"
                ))
            }
        }
    }

    /// The launcher died (e.g. the port was taken): end what it left (authdaemond).
    fn stop_after_failed_start(&mut self) {
        self.child = None;
        end_group(self.pid, &format!("courier {}", self.name));
        self.pid = 0;
    }
}

/// The unpacked Courier: `$IMAPSHIFT_COURIER_PREFIX`, default
/// `$HOME/.cache/imapshift/courier-5.0`. Panics unless `scripts/vendor/courier.sh install`
/// completed there.
pub fn courier_prefix() -> PathBuf {
    let prefix = std::env::var_os("IMAPSHIFT_COURIER_PREFIX")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/imapshift/courier-5.0")
        });
    assert!(
        prefix.join(COMPLETE_MARKER).is_file(),
        "Courier-IMAP is not unpacked in {} (no {COMPLETE_MARKER}): run \
         `scripts/vendor/courier.sh install` (scripts/test does), or set \
         IMAPSHIFT_COURIER_PREFIX",
        prefix.display()
    );
    prefix
}

/// `s` in single quotes for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
