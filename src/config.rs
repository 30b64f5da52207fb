//! The configuration file (`imapshift.toml`) and the users list, validated before any connection.
//!
//! Like ripgrep's split between "low" and "high" arguments, this module turns the raw file into a
//! [`Config`] whose every field has been checked: a bad value is reported with the file, the line
//! and the field, plus what to write instead, and the run stops before touching a server. Passwords
//! are never literals in the file: they are *references* (`env:`, `file:`, `cmd:`) resolved here
//! into [`Secret`]s, so they never reach the command line, the logs or the state store.

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// How the TCP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain TCP upgraded with STARTTLS before login (port 143); refused if the server lacks it.
    Starttls,
    /// No encryption (only sensible on loopback or a trusted network).
    Plain,
}

/// How to log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMech {
    /// The IMAP `LOGIN` command.
    Login,
    /// `AUTHENTICATE PLAIN` (RFC 4616).
    Plain,
}

/// One server (the old or the new side), validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `old` or `new`: used in messages.
    pub side: &'static str,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: AuthMech,
    pub accept_invalid_certs: bool,
    /// `ca_file`: certificates (PEM) trusted as roots for this side in addition to the
    /// system's, e.g. a private CA or the server's own self-signed certificate.
    pub ca: Option<CaFile>,
    /// Limit for any single network wait (connect, a reply line, a literal).
    pub timeout: Duration,
    /// Admin login used for users without a password of their own on this side.
    pub master: Option<MasterLogin>,
    /// At most this many connections to this server at once (all users together).
    pub max_connections: Option<usize>,
    /// Rate limits for this server (all users together).
    pub max_messages_per_sec: Option<f64>,
    pub max_bytes_per_sec: Option<f64>,
    /// `[side.quirks]`: workarounds forced on or off, capabilities to ignore
    /// (docs/server-quirks.md).
    pub quirks: crate::imap::quirks::QuirkOverrides,
}

/// A side's `ca_file`, read and checked when the configuration is loaded.
#[derive(Clone, Debug)]
pub struct CaFile {
    pub path: PathBuf,
    /// Each `BEGIN CERTIFICATE` block of the file, checked to parse.
    pub pem: Vec<String>,
}

/// An administrator's login that opens users' mailboxes: a Dovecot master user (`auth =
/// "login"`: LOGIN as `user<separator>admin` with the admin's password) or a SASL authorization
/// identity (`auth = "plain"`: AUTHENTICATE PLAIN with authzid = user, authcid = admin).
#[derive(Clone, Debug)]
pub struct MasterLogin {
    pub user: String,
    pub password: Secret,
    pub separator: String,
}

/// One account to migrate.
#[derive(Clone, Debug)]
pub struct UserConfig {
    pub old_login: String,
    pub new_login: String,
    /// `None` when the side's master login is used.
    pub old_password: Option<Secret>,
    pub new_password: Option<Secret>,
    /// Where this user was defined, for messages (`imapshift.toml:31` or `users.csv:4`).
    pub origin: String,
    /// `merge = true`: this old account may share its new login with other old accounts that
    /// say so too (their folders meet in the one new account).
    pub merge: bool,
}

/// Tuning of the copy path.
#[derive(Clone, Debug)]
pub struct SyncTuning {
    /// Bodies fetched and appended per round trip, at most this many bytes.
    pub batch_bytes: u64,
    /// And at most this many messages.
    pub batch_messages: usize,
    /// Users synced at the same time.
    pub jobs: usize,
    /// `sync --final` deletes new copies of messages the old server expunged.
    pub propagate_deletes_on_final: bool,
    /// Bytes of message bodies in flight at once, all users together.
    pub memory_budget: u64,
    /// Connections per server one user may use, folders in parallel, when the caps allow.
    pub connections_per_user: usize,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub state_dir: PathBuf,
    pub old: ServerConfig,
    pub new: ServerConfig,
    /// The users this run takes (all, or those of `load_selected`'s choice).
    pub users: Vec<UserConfig>,
    /// How many users the file lists, taken or not.
    pub users_total: usize,
    pub sync: SyncTuning,
    pub filters: crate::filters::Filters,
    /// The cutover's DNS: `[mx]` (optional).
    pub mx: Option<MxConfig>,
    /// `[[folder_rules]]`: where folders go, tried in order before the other rules.
    pub folder_rules: Vec<crate::plan::FolderRule>,
}

/// `[mx]`: the domains whose MX moves at cutover and the nameservers that serve them.
#[derive(Clone, Debug, Default)]
pub struct MxConfig {
    pub domains: Vec<String>,
    /// Empty: discovered from the domains' NS records.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// As written, for messages and tables.
    pub nameserver_labels: Vec<String>,
    /// Where the MX points during the downtime: a host on which nothing accepts SMTP.
    pub parking_target: Option<String>,
    /// Where it points after the cutover: the new mail server.
    pub new_target: Option<String>,
    /// Largest MX TTL (seconds) that preflight accepts before the cutover.
    pub max_ttl: u32,
    /// For discovering nameservers and resolving MX targets (default: /etc/resolv.conf).
    pub resolver: Option<std::net::SocketAddr>,
    /// The SMTP port of the MX targets (25; other values for tests).
    pub smtp_port: u16,
    /// `[mx.domain_nameservers]`: domains with nameservers of their own (the others use
    /// `nameservers`, else their NS records). Every domain here is in `domains`.
    pub domain_nameservers: Vec<DomainNameservers>,
}

/// One domain's own nameservers, from `[mx.domain_nameservers]`.
#[derive(Clone, Debug)]
pub struct DomainNameservers {
    pub domain: String,
    /// As written (for messages and tables) and where it listens.
    pub nameservers: Vec<(String, std::net::SocketAddr)>,
}

impl MxConfig {
    /// The nameservers named for `domain`: its own, else the default `nameservers`; empty:
    /// discover them from its NS records.
    pub fn nameservers_for(&self, domain: &str) -> Vec<(String, std::net::SocketAddr)> {
        match self.domain_nameservers.iter().find(|d| d.domain == domain) {
            Some(d) => d.nameservers.clone(),
            None => self
                .nameserver_labels
                .iter()
                .cloned()
                .zip(self.nameservers.iter().copied())
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<Spanned<String>>,
    old: Option<Spanned<RawServer>>,
    new: Option<Spanned<RawServer>>,
    users: Option<Vec<Spanned<RawUser>>>,
    users_csv: Option<Spanned<String>>,
    sync: Option<RawSync>,
    filters: Option<RawFilters>,
    mx: Option<Spanned<RawMx>>,
    folder_rules: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    merge: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMx {
    domains: Option<Vec<Spanned<String>>>,
    nameservers: Option<Vec<Spanned<String>>>,
    parking_target: Option<Spanned<String>>,
    new_target: Option<Spanned<String>>,
    max_ttl: Option<Spanned<i64>>,
    resolver: Option<Spanned<String>>,
    smtp_port: Option<Spanned<i64>>,
    domain_nameservers: Option<std::collections::BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    include_folders: Option<Vec<Spanned<String>>>,
    exclude_folders: Option<Vec<Spanned<String>>>,
    max_size: Option<Spanned<i64>>,
    max_age_days: Option<Spanned<i64>>,
    min_age_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    security: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    accept_invalid_certs: Option<bool>,
    ca_file: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
    master_user: Option<Spanned<String>>,
    master_password: Option<Spanned<String>>,
    master_separator: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_messages_per_sec: Option<Spanned<i64>>,
    max_bytes_per_sec: Option<Spanned<i64>>,
    quirks: Option<std::collections::BTreeMap<String, Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    old: Option<Spanned<String>>,
    new: Option<Spanned<String>>,
    old_password: Option<Spanned<String>>,
    new_password: Option<Spanned<String>>,
    merge: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    batch_bytes: Option<Spanned<i64>>,
    batch_messages: Option<Spanned<i64>>,
    jobs: Option<Spanned<i64>>,
    propagate_deletes_on_final: Option<bool>,
    memory_budget: Option<Spanned<i64>>,
    connections_per_user: Option<Spanned<i64>>,
}

/// Builds messages of the form `FILE:LINE: FIELD: PROBLEM`.
struct Where<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Where<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }
    fn at<T>(&self, spanned: &Spanned<T>, field: &str, problem: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "{}:{}: {field}: {problem}",
            self.file.display(),
            self.line_of(spanned.span().start)
        ))
    }
    fn missing(&self, span_start: usize, field: &str, fix: &str) -> Error {
        Error::config(format!(
            "{}:{}: {field} is missing: {fix}",
            self.file.display(),
            self.line_of(span_start)
        ))
    }
}

/// One of N machines' part of a migration (`--shard K/N`): a stable subset of the users, chosen
/// by a hash of the old login that does not depend on the order or number of users, with a
/// state directory of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub k: u32,
    pub n: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("\"{s}\" is not K/N with 1 <= K <= N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether this shard takes the user (FNV-1a of the old login, modulo N).
    pub fn takes(&self, old_login: &str) -> bool {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in old_login.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h % u64::from(self.n) == u64::from(self.k - 1)
    }

    /// Keeps this shard's users and gives it its own state directory.
    pub fn apply(&self, cfg: &mut Config) {
        cfg.users.retain(|u| self.takes(&u.old_login));
        cfg.state_dir = cfg
            .state_dir
            .join(format!("shard-{}-of-{}", self.k, self.n));
    }
}

/// Which users a load takes, and whether their password references are resolved.
struct Take<'a> {
    keep: &'a dyn Fn(&str) -> bool,
    /// False: no reference is resolved at all (not even a master password), only checked.
    secrets: bool,
}

impl Take<'_> {
    fn resolves(&self, old_login: &str) -> bool {
        self.secrets && (self.keep)(old_login)
    }
}

/// Reads and validates `path`, resolving every password reference.
pub fn load(path: &Path) -> Result<Config> {
    load_selected(path, &|_| true)
}

/// Reads and validates `path` with every user but resolves no password reference (none is
/// read, no `cmd:` is run; their form is still checked) and leaves the master logins out: for
/// commands that contact no IMAP server (`status`, `watch-mx`). A login with this
/// configuration fails for want of a password.
pub fn load_without_secrets(path: &Path) -> Result<Config> {
    let text = read_config(path)?;
    parse_inner(
        path,
        &text,
        &Take {
            keep: &|_| true,
            secrets: false,
        },
    )
}

fn read_config(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "cannot read the configuration file {}: {e} (pass the right file with --config)",
            path.display()
        ))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::config(format!(
            "{}:{line}: the byte 0x{:02x} is not UTF-8: save the file as UTF-8",
            path.display(),
            bytes[at]
        ))
    })
}

/// Reads and validates `path`, keeping only the users for which `keep(old_login)` holds (a
/// shard, `--user`): every user is validated, but only the kept users' password references are
/// resolved, so a shard never reads (or runs commands for) other shards' secrets.
pub fn load_selected(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Config> {
    parse_selected(path, &read_config(path)?, keep)
}

/// Validates a configuration given as text; `path` names it in messages and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    parse_selected(path, text, &|_| true)
}

/// `parse`, resolving passwords only for the users `keep` takes (see `load_selected`).
pub fn parse_selected(path: &Path, text: &str, keep: &dyn Fn(&str) -> bool) -> Result<Config> {
    parse_inner(
        path,
        text,
        &Take {
            keep,
            secrets: true,
        },
    )
}

fn parse_inner(path: &Path, text: &str, take: &Take) -> Result<Config> {
    let w = Where { file: path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| w.line_of(s.start)).unwrap_or(0);
        let msg = e.message().trim().to_string();
        Error::config(format!(
            "{}:{line}: {msg} (see docs/configuration.md for every field)",
            path.display()
        ))
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };

    let state_dir = match &raw.state_dir {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(w.at(s, "state_dir", "is empty: name a folder, e.g. \"state\""))
        }
        Some(s) => base.join(s.get_ref()),
        None => base.join("state"),
    };

    let old = match &raw.old {
        Some(s) => server(&w, &base, "old", s, take.secrets)?,
        None => {
            return Err(w.missing(
                0,
                "[old]",
                "add an [old] table with host, port and security",
            ))
        }
    };
    let new = match &raw.new {
        Some(s) => server(&w, &base, "new", s, take.secrets)?,
        None => {
            return Err(w.missing(0, "[new]", "add a [new] table with host, port and security"))
        }
    };

    // From the file, not from `old.master`: a load without secrets leaves the logins out.
    let has_master = |s: &Option<Spanned<RawServer>>| {
        s.as_ref()
            .is_some_and(|s| s.get_ref().master_user.is_some())
    };
    let masters = (has_master(&raw.old), has_master(&raw.new));
    let mut users = Vec::new();
    match (&raw.users, &raw.users_csv) {
        (Some(_), Some(csv)) => {
            return Err(w.at(
                csv,
                "users_csv",
                "both [[users]] and users_csv are given: keep one of them",
            ))
        }
        (Some(list), None) => {
            for u in list {
                users.push(inline_user(&w, &base, masters, take, u)?);
            }
        }
        (None, Some(csv)) => {
            let csv_path = base.join(csv.get_ref());
            users = csv_users(&csv_path, &base, masters, take)
                .map_err(|e| e.context(format!("{}: users_csv", path.display())))?;
        }
        (None, None) => {
            return Err(w.missing(
                0,
                "users",
                "add [[users]] tables (old, new, old_password, new_password) or users_csv = \"users.csv\"",
            ))
        }
    }
    if users.is_empty() {
        return Err(Error::config(format!(
            "{}: no users to migrate: add at least one [[users]] entry or CSV row",
            path.display()
        )));
    }
    check_user_collisions(&users)?;
    let users_total = users.len();
    users.retain(|u| (take.keep)(&u.old_login));

    let mut sync = SyncTuning {
        batch_bytes: 8 * 1024 * 1024,
        batch_messages: 1000,
        jobs: 4,
        propagate_deletes_on_final: false,
        memory_budget: 32 * 1024 * 1024,
        connections_per_user: 2,
    };
    if let Some(s) = &raw.sync {
        if let Some(v) = &s.batch_bytes {
            sync.batch_bytes = ranged(&w, v, "[sync].batch_bytes", 65_536, 1 << 30)? as u64;
        }
        if let Some(v) = &s.batch_messages {
            sync.batch_messages = ranged(&w, v, "[sync].batch_messages", 1, 100_000)? as usize;
        }
        if let Some(v) = &s.jobs {
            sync.jobs = ranged(&w, v, "[sync].jobs", 1, 1024)? as usize;
        }
        sync.propagate_deletes_on_final = s.propagate_deletes_on_final.unwrap_or(false);
        if let Some(v) = &s.memory_budget {
            sync.memory_budget = ranged(&w, v, "[sync].memory_budget", 1 << 20, 1 << 40)? as u64;
        }
        if let Some(v) = &s.connections_per_user {
            sync.connections_per_user =
                ranged(&w, v, "[sync].connections_per_user", 1, 16)? as usize;
        }
    }

    let mx = match &raw.mx {
        None => None,
        Some(m) => Some(mx_table(&w, m)?),
    };

    let mut filters = crate::filters::Filters::default();
    if let Some(f) = &raw.filters {
        let patterns = |v: &Option<Vec<Spanned<String>>>, field: &str| -> Result<Vec<String>> {
            let mut out = Vec::new();
            for p in v.iter().flatten() {
                if p.get_ref().trim().is_empty() {
                    return Err(w.at(p, field, "an empty pattern matches nothing: remove it"));
                }
                out.push(p.get_ref().clone());
            }
            Ok(out)
        };
        filters.include_folders = patterns(&f.include_folders, "[filters].include_folders")?;
        filters.exclude_folders = patterns(&f.exclude_folders, "[filters].exclude_folders")?;
        if let Some(v) = &f.max_size {
            filters.max_size = Some(ranged(&w, v, "[filters].max_size", 1, i64::MAX)? as u64);
        }
        if let Some(v) = &f.max_age_days {
            filters.max_age_days = Some(ranged(&w, v, "[filters].max_age_days", 1, 36_500)? as u32);
        }
        if let Some(v) = &f.min_age_days {
            filters.min_age_days = Some(ranged(&w, v, "[filters].min_age_days", 1, 36_500)? as u32);
        }
        if let (Some(min), Some(max), Some(span)) =
            (filters.min_age_days, filters.max_age_days, &f.min_age_days)
        {
            if min >= max {
                return Err(w.at(
                    span,
                    "[filters].min_age_days",
                    format!(
                        "{min} must be less than max_age_days ({max}): nothing would be copied"
                    ),
                ));
            }
        }
    }

    let mut folder_rules = Vec::new();
    for r in raw.folder_rules.iter().flatten() {
        folder_rules.push(folder_rule(&w, r)?);
    }

    Ok(Config {
        filters,
        folder_rules,
        mx,
        path: path.to_path_buf(),
        state_dir,
        old,
        new,
        users,
        users_total,
        sync,
    })
}

/// Logins are compared without case (`Alice@Example.com` is `alice@example.com` on every
/// server we know): an old login listed twice is one account taken twice, and two old accounts
/// onto one new login mix their mail unless both say `merge = true`.
fn check_user_collisions(users: &[UserConfig]) -> Result<()> {
    let mut old_seen: HashMap<String, &UserConfig> = HashMap::new();
    let mut new_seen: HashMap<String, &UserConfig> = HashMap::new();
    for u in users {
        if let Some(first) = old_seen.insert(u.old_login.to_lowercase(), u) {
            return Err(Error::config(format!(
                "{}: user {:?} is listed twice (also as {:?} at {}): logins are compared without case, so both are the same old account; keep one of them",
                u.origin, u.old_login, first.old_login, first.origin
            )));
        }
        match new_seen.get(&u.new_login.to_lowercase()) {
            None => {
                new_seen.insert(u.new_login.to_lowercase(), u);
            }
            Some(first) if first.merge && u.merge => {}
            Some(first) => {
                return Err(Error::config(format!(
                    "{}: the old logins {:?} ({}) and {:?} ({}) both go to the new login {:?}: their mail would be mixed in one account; give each its own new login, or set merge = true on both users to merge them on purpose (docs/configuration.md)",
                    u.origin, first.old_login, first.origin, u.old_login, u.origin, u.new_login
                )));
            }
        }
    }
    Ok(())
}

/// One `[[folder_rules]]` entry: `match` must be a regular expression, `to` a non-empty name
/// whose `$n` refer to groups the expression has.
fn folder_rule(w: &Where, r: &Spanned<RawRule>) -> Result<crate::plan::FolderRule> {
    let raw = r.get_ref();
    let origin = format!("{}:{}", w.file.display(), w.line_of(r.span().start));
    let fix = "write e.g. match = \"^Archive/(\\d{4})$\" and to = \"Archives/$1\" (docs/configuration.md)";
    let Some(m) = &raw.pattern else {
        return Err(w.missing(r.span().start, "[[folder_rules]].match", fix));
    };
    let Some(to) = &raw.to else {
        return Err(w.missing(r.span().start, "[[folder_rules]].to", fix));
    };
    let pattern = regex::Regex::new(m.get_ref()).map_err(|e| {
        w.at(
            m,
            "[[folder_rules]].match",
            format!("is not a regular expression: {e}"),
        )
    })?;
    if to.get_ref().trim().is_empty() || to.get_ref().split('/').any(|p| p.is_empty()) {
        return Err(w.at(
            to,
            "[[folder_rules]].to",
            "must name a folder: levels separated by a single /, none empty",
        ));
    }
    // `$n` / `${n}` beyond the expression's groups would silently expand to nothing.
    let groups = pattern.captures_len() - 1;
    let refs = regex::Regex::new(r"\$\{?(\d+)").expect("static regex");
    for c in refs.captures_iter(to.get_ref()) {
        let n: usize = c[1].parse().unwrap_or(usize::MAX);
        if n > groups {
            return Err(w.at(
                to,
                "[[folder_rules]].to",
                format!("refers to group ${n}, but match has {groups} groups"),
            ));
        }
    }
    Ok(crate::plan::FolderRule {
        pattern,
        to: to.get_ref().clone(),
        merge: raw.merge.unwrap_or(false),
        origin,
    })
}

fn ranged(w: &Where, v: &Spanned<i64>, field: &str, lo: i64, hi: i64) -> Result<i64> {
    let x = *v.get_ref();
    if x < lo || x > hi {
        return Err(w.at(v, field, format!("{x} is out of range: use {lo} to {hi}")));
    }
    Ok(x)
}

fn server(
    w: &Where,
    base: &Path,
    side: &'static str,
    s: &Spanned<RawServer>,
    secrets: bool,
) -> Result<ServerConfig> {
    let raw = s.get_ref();
    let start = s.span().start;
    let host = match &raw.host {
        None => {
            return Err(w.missing(
                start,
                &format!("[{side}].host"),
                "name the IMAP server, e.g. host = \"imap.example.com\"",
            ))
        }
        Some(h) => {
            let v = h.get_ref().trim();
            if v.is_empty()
                || v.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
                || v.contains("://")
            {
                return Err(w.at(
                    h,
                    &format!("[{side}].host"),
                    format!("{v:?} is not a host name or address: write only the name, e.g. \"imap.example.com\" (the port goes in port =)"),
                ));
            }
            v.to_string()
        }
    };
    let security = match &raw.security {
        None => Security::Tls,
        Some(sv) => match sv.get_ref().to_ascii_lowercase().as_str() {
            "tls" | "ssl" | "imaps" => Security::Tls,
            "starttls" => Security::Starttls,
            "plain" | "none" => Security::Plain,
            other => {
                return Err(w.at(
                    sv,
                    &format!("[{side}].security"),
                    format!("\"{other}\" is not one of \"tls\", \"starttls\", \"plain\""),
                ))
            }
        },
    };
    let port = match &raw.port {
        None => {
            if security == Security::Tls {
                993
            } else {
                143
            }
        }
        Some(p) => ranged(w, p, &format!("[{side}].port"), 1, 65535)? as u16,
    };
    let auth = match &raw.auth {
        None => AuthMech::Login,
        Some(a) => match a.get_ref().to_ascii_lowercase().as_str() {
            "login" => AuthMech::Login,
            "plain" => AuthMech::Plain,
            other => {
                return Err(w.at(
                    a,
                    &format!("[{side}].auth"),
                    format!("\"{other}\" is not one of \"login\", \"plain\""),
                ))
            }
        },
    };
    let timeout = match &raw.timeout_secs {
        None => Duration::from_secs(120),
        Some(t) => {
            Duration::from_secs(ranged(w, t, &format!("[{side}].timeout_secs"), 1, 3600)? as u64)
        }
    };
    let master = match (&raw.master_user, &raw.master_password) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            let user = check_login(u.get_ref())
                .map_err(|e| w.at(u, &format!("[{side}].master_user"), e))?;
            let field = format!("[{side}].master_password");
            let password = if secrets {
                Some(resolve_password(p.get_ref(), base).map_err(|e| w.at(p, &field, e))?)
            } else {
                check_reference(p.get_ref()).map_err(|e| w.at(p, &field, e))?;
                None
            };
            let separator = match &raw.master_separator {
                None => "*".to_string(),
                Some(sep)
                    if sep.get_ref().is_empty() || sep.get_ref().contains(char::is_whitespace) =>
                {
                    return Err(w.at(
                        sep,
                        &format!("[{side}].master_separator"),
                        "must be a non-empty string without spaces, e.g. \"*\"",
                    ))
                }
                Some(sep) => sep.get_ref().clone(),
            };
            password.map(|password| MasterLogin {
                user,
                password,
                separator,
            })
        }
        (Some(u), None) => {
            return Err(w.at(
                u,
                &format!("[{side}].master_password"),
                "is missing: master_user needs master_password (env:, file: or cmd:)",
            ))
        }
        (None, Some(p)) => {
            return Err(w.at(
                p,
                &format!("[{side}].master_user"),
                "is missing: master_password needs master_user",
            ))
        }
    };
    let ca = match &raw.ca_file {
        None => None,
        Some(f) => {
            let field = format!("[{side}].ca_file");
            let path = base.join(f.get_ref());
            let pem = crate::imap::read_ca_file(&path).map_err(|e| w.at(f, &field, e))?;
            Some(CaFile { path, pem })
        }
    };
    Ok(ServerConfig {
        side,
        host,
        port,
        security,
        auth,
        accept_invalid_certs: raw.accept_invalid_certs.unwrap_or(false),
        ca,
        timeout,
        master,
        max_connections: match &raw.max_connections {
            None => None,
            Some(v) => {
                Some(ranged(w, v, &format!("[{side}].max_connections"), 1, 100_000)? as usize)
            }
        },
        max_messages_per_sec: match &raw.max_messages_per_sec {
            None => None,
            Some(v) => Some(ranged(
                w,
                v,
                &format!("[{side}].max_messages_per_sec"),
                1,
                10_000_000,
            )? as f64),
        },
        max_bytes_per_sec: match &raw.max_bytes_per_sec {
            None => None,
            Some(v) => {
                Some(ranged(w, v, &format!("[{side}].max_bytes_per_sec"), 1024, i64::MAX)? as f64)
            }
        },
        quirks: {
            let mut o = crate::imap::quirks::QuirkOverrides::default();
            for (key, v) in raw.quirks.iter().flatten() {
                o.set_from_config(key, v.get_ref())
                    .map_err(|e| w.at(v, &format!("[{side}.quirks].{key}"), e))?;
            }
            o
        },
    })
}

fn inline_user(
    w: &Where,
    base: &Path,
    masters: (bool, bool),
    take: &Take,
    u: &Spanned<RawUser>,
) -> Result<UserConfig> {
    let raw = u.get_ref();
    let start = u.span().start;
    let origin = format!("{}:{}", w.file.display(), w.line_of(start));
    let login = |f: &Option<Spanned<String>>, name: &str| -> Result<String> {
        match f {
            None => Err(w.missing(
                start,
                &format!("[[users]].{name}"),
                "every user needs old, new, old_password and new_password",
            )),
            Some(s) => {
                check_login(s.get_ref()).map_err(|p| w.at(s, &format!("[[users]].{name}"), p))
            }
        }
    };
    let old_login = login(&raw.old, "old")?;
    let new_login = login(&raw.new, "new")?;
    let pw = |f: &Option<Spanned<String>>, name: &str, master: bool| -> Result<Option<Secret>> {
        match f {
            None if master => Ok(None),
            None => Err(w.missing(
                start,
                &format!("[[users]].{name}"),
                "give a reference: env:NAME, file:PATH or cmd:COMMAND (or configure a master_user for that server)",
            )),
            Some(s) => resolve_if(take.resolves(&old_login), s.get_ref(), base)
                .map_err(|p| w.at(s, &format!("[[users]].{name} of user \"{old_login}\""), p)),
        }
    };
    Ok(UserConfig {
        old_password: pw(&raw.old_password, "old_password", masters.0)?,
        new_password: pw(&raw.new_password, "new_password", masters.1)?,
        old_login,
        new_login,
        origin,
        merge: raw.merge.unwrap_or(false),
    })
}

fn mx_table(w: &Where, m: &Spanned<RawMx>) -> Result<MxConfig> {
    let raw = m.get_ref();
    let mut mx = MxConfig {
        max_ttl: 300,
        smtp_port: 25,
        ..Default::default()
    };
    for d in raw.domains.iter().flatten() {
        mx.domains
            .push(crate::dns::parse_domain(d.get_ref()).map_err(|p| w.at(d, "[mx].domains", p))?);
    }
    if mx.domains.is_empty() {
        return Err(w.missing(
            m.span().start,
            "[mx].domains",
            "name the domains whose MX moves, e.g. domains = [\"example.com\"]",
        ));
    }
    for n in raw.nameservers.iter().flatten() {
        mx.nameservers.push(
            crate::dns::parse_nameserver(n.get_ref(), 53)
                .map_err(|p| w.at(n, "[mx].nameservers", p))?,
        );
        mx.nameserver_labels.push(n.get_ref().trim().to_string());
    }
    let target = |v: &Option<Spanned<String>>, field: &str| -> Result<Option<String>> {
        v.as_ref()
            .map(|t| crate::dns::parse_domain(t.get_ref()).map_err(|p| w.at(t, field, p)))
            .transpose()
    };
    mx.parking_target = target(&raw.parking_target, "[mx].parking_target")?;
    mx.new_target = target(&raw.new_target, "[mx].new_target")?;
    if let Some(v) = &raw.max_ttl {
        mx.max_ttl = ranged(w, v, "[mx].max_ttl", 0, 7 * 86_400)? as u32;
    }
    if let Some(v) = &raw.smtp_port {
        mx.smtp_port = ranged(w, v, "[mx].smtp_port", 1, 65_535)? as u16;
    }
    if let Some(r) = &raw.resolver {
        mx.resolver = Some(
            crate::dns::parse_nameserver(r.get_ref(), 53)
                .map_err(|p| w.at(r, "[mx].resolver", p))?,
        );
    }
    for (domain, list) in raw.domain_nameservers.iter().flatten() {
        let own = domain_nameservers(w, &mx.domains, domain, list)?;
        if mx.domain_nameservers.iter().any(|d| d.domain == own.domain) {
            return Err(w.at(
                list,
                "[mx.domain_nameservers]",
                format!("{domain:?} is listed twice (names are compared without case and final dot): keep one entry"),
            ));
        }
        mx.domain_nameservers.push(own);
    }
    Ok(mx)
}

/// One entry of `[mx.domain_nameservers]`: `"example.org" = ["192.0.2.1", "192.0.2.2:5353"]`.
fn domain_nameservers(
    w: &Where,
    domains: &[String],
    domain: &str,
    list: &Spanned<Vec<Spanned<String>>>,
) -> Result<DomainNameservers> {
    let field = format!("[mx.domain_nameservers].{domain:?}");
    let name = crate::dns::parse_domain(domain).map_err(|p| w.at(list, &field, p))?;
    if !domains.contains(&name) {
        return Err(w.at(
            list,
            &field,
            format!("{name} is not in [mx].domains: add it to domains = [...] or remove this line"),
        ));
    }
    if list.get_ref().is_empty() {
        return Err(w.at(
            list,
            &field,
            "names no nameserver: give at least one IP[:PORT], or remove the line to use [mx].nameservers",
        ));
    }
    let mut nameservers = Vec::new();
    for n in list.get_ref() {
        let addr = crate::dns::parse_nameserver(n.get_ref(), 53).map_err(|p| w.at(n, &field, p))?;
        nameservers.push((n.get_ref().trim().to_string(), addr));
    }
    Ok(DomainNameservers {
        domain: name,
        nameservers,
    })
}

fn check_login(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() {
        return Err("is empty: give the login name".into());
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{s:?} contains control characters"));
    }
    Ok(s.to_string())
}

fn csv_users(
    path: &Path,
    base: &Path,
    masters: (bool, bool),
    take: &Take,
) -> Result<Vec<UserConfig>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "cannot read {}: {e} (the path is relative to the configuration file's folder)",
            path.display()
        ))
    })?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(&bytes[..]);
    let at = |pos: Option<&csv::Position>| csv_origin(path, &bytes, pos);
    let headers = rdr
        .headers()
        .map_err(|e| Error::config(format!("{}: {}", at(e.position()), csv_problem(&e))))?
        .clone();
    let want = ["old", "new", "old_password", "new_password"];
    let mut idx = [0usize; 4];
    for (i, name) in want.iter().enumerate() {
        idx[i] = headers.iter().position(|h| h == *name).ok_or_else(|| {
            Error::config(format!(
                "{}: the header row lacks the column \"{name}\": it must name old,new,old_password,new_password",
                at(headers.position())
            ))
        })?;
    }
    // Optional: `merge` (true, false or empty).
    let merge_idx = headers.iter().position(|h| h == "merge");
    let mut users = Vec::new();
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| Error::config(format!("{}: {}", at(e.position()), csv_problem(&e))))?;
        let origin = at(rec.position());
        let get = |i: usize, name: &str| -> Result<String> {
            rec.get(idx[i]).map(str::to_string).ok_or_else(|| {
                Error::config(format!("{origin}: column {name} is missing in this row"))
            })
        };
        let old_login = check_login(&get(0, "old")?)
            .map_err(|p| Error::config(format!("{origin}: old: {p}")))?;
        let new_login = check_login(&get(1, "new")?)
            .map_err(|p| Error::config(format!("{origin}: new: {p}")))?;
        let pw = |i: usize, name: &str, master: bool| -> Result<Option<Secret>> {
            let r = get(i, name)?;
            if r.is_empty() && master {
                return Ok(None);
            }
            resolve_if(take.resolves(&old_login), &r, base).map_err(|p| {
                Error::config(format!("{origin}: {name} of user \"{old_login}\": {p}"))
            })
        };
        let old_password = pw(2, "old_password", masters.0)?;
        let new_password = pw(3, "new_password", masters.1)?;
        let merge = match merge_idx.and_then(|i| rec.get(i)).unwrap_or("") {
            v if v.is_empty() || v.eq_ignore_ascii_case("false") => false,
            v if v.eq_ignore_ascii_case("true") => true,
            v => {
                return Err(Error::config(format!(
                    "{origin}: merge: {v:?} is not true, false or empty"
                )))
            }
        };
        users.push(UserConfig {
            old_login,
            new_login,
            old_password,
            new_password,
            origin,
            merge,
        });
    }
    Ok(users)
}

/// `users.csv:LINE` for a record (or a CSV error) at `pos`, just `users.csv` without one. The
/// csv crate's position is where it began to read, before the comment and blank lines it
/// skipped (its line was the comment's), so those are skipped here too.
fn csv_origin(path: &Path, bytes: &[u8], pos: Option<&csv::Position>) -> String {
    let Some(pos) = pos else {
        return path.display().to_string();
    };
    let mut line = pos.line();
    let mut i = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => line += 1,
            b'\r' => {}
            b'#' => match bytes[i..].iter().position(|&b| b == b'\n') {
                Some(n) => {
                    i += n;
                    continue;
                }
                None => break,
            },
            _ => break,
        }
        i += 1;
    }
    format!("{}:{line}", path.display())
}

/// What is wrong with a CSV row, without the csv crate's own line (see [`csv_origin`]).
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "this row has {len} fields, the header row {expected_len}: give every column (quote a value that holds a comma)"
        ),
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "field {} is not UTF-8: save the file as UTF-8",
            err.field() + 1
        ),
        _ => e.to_string(),
    }
}

/// Resolves a user's reference if the run takes the user; otherwise only checks its form.
fn resolve_if(
    taken: bool,
    reference: &str,
    base: &Path,
) -> std::result::Result<Option<Secret>, String> {
    if taken {
        return resolve_password(reference, base).map(Some);
    }
    check_reference(reference).map(|()| None)
}

/// Checks the form of a password reference without reading the secret.
pub fn check_reference(reference: &str) -> std::result::Result<(), String> {
    let (scheme, rest) = reference.split_once(':').ok_or_else(not_a_reference)?;
    match scheme {
        "env" | "file" | "cmd" if rest.trim().is_empty() => {
            Err(format!("{scheme}: needs a value, e.g. env:ALICE_PW, file:secrets/alice.pw or cmd:pass show mail/alice"))
        }
        "env" | "file" | "cmd" => Ok(()),
        _ => Err(unknown_scheme(scheme)),
    }
}

fn not_a_reference() -> String {
    "is not a password reference: write env:NAME, file:PATH or cmd:COMMAND (literal passwords are refused so they never sit in a file or a process list)".to_string()
}

/// The text before ':' is not shown: it may be the start of a literal password.
fn unknown_scheme(_scheme: &str) -> String {
    "is not a password reference (the text before ':' is not env, file or cmd; it is not shown, as it might be a password): write env:NAME, file:PATH or cmd:COMMAND".to_string()
}

/// Turns a password reference into the secret. The error text never contains the secret.
pub fn resolve_password(reference: &str, base: &Path) -> std::result::Result<Secret, String> {
    let (scheme, rest) = reference.split_once(':').ok_or_else(not_a_reference)?;
    let secret = match scheme {
        "env" => {
            if rest.is_empty() {
                return Err("env: needs a variable name, e.g. env:ALICE_PW".into());
            }
            std::env::var(rest).map_err(|_| {
                format!("the environment variable {rest} is not set (export it before running)")
            })?
        }
        "file" => {
            if rest.is_empty() {
                return Err("file: needs a path, e.g. file:secrets/alice.pw".into());
            }
            let p = base.join(rest);
            let mut s = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read the password file {}: {e}", p.display()))?;
            strip_newline(&mut s);
            s
        }
        "cmd" => {
            if rest.trim().is_empty() {
                return Err("cmd: needs a command, e.g. cmd:pass show mail/alice".into());
            }
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(rest);
            if base.is_dir() {
                cmd.current_dir(base);
            }
            let out = cmd
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .map_err(|e| format!("cannot run the password command: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "the password command exited with {} (fix the command; its output is not shown)",
                    out.status
                ));
            }
            let mut stdout = out.stdout;
            let text = String::from_utf8(std::mem::take(&mut stdout));
            zeroize::Zeroize::zeroize(&mut stdout);
            let mut s = text.map_err(|e| {
                let mut bytes = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut bytes);
                "the password command printed bytes that are not UTF-8".to_string()
            })?;
            strip_newline(&mut s);
            s
        }
        _ => return Err(unknown_scheme(scheme)),
    };
    let mut secret = secret;
    if secret.is_empty() {
        return Err(format!("the {scheme}: reference gives an empty password"));
    }
    Ok(Secret::take(&mut secret))
}

fn strip_newline(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config> {
        parse(Path::new("/tmp/x/imapshift.toml"), text)
    }

    const GOOD: &str = r#"
state_dir = "state"
[old]
host = "imap.old.example"
port = 993
security = "tls"
[new]
host = "imap.new.example"
security = "starttls"
auth = "plain"
[[users]]
old = "alice@example.com"
new = "alice@example.com"
old_password = "env:IMAPSHIFT_TEST_PW"
new_password = "cmd:echo s3cret"
"#;

    #[test]
    fn only_taken_users_have_their_passwords_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("ran");
        let t = format!(
            "{GOOD}[[users]]\nold = \"bob\"\nnew = \"bob\"\nold_password = \"cmd:touch {}; echo x\"\nnew_password = \"env:IMAPSHIFT_SURELY_UNSET_TOO\"\n",
            mark.display()
        );
        std::env::set_var("IMAPSHIFT_TEST_PW", "pw1");
        let path = Path::new("/tmp/x/imapshift.toml");
        // bob is not taken: his command never runs and his unset variable is no error.
        let c = parse_selected(path, &t, &|u| u != "bob").unwrap();
        assert_eq!((c.users.len(), c.users_total), (1, 2));
        assert_eq!(c.users[0].old_login, "alice@example.com");
        assert!(
            !mark.exists(),
            "a password command of a user not taken was run"
        );
        // Taken, the same references are resolved (and fail as they should).
        let e = parse_selected(path, &t, &|_| true).unwrap_err().to_string();
        assert!(e.contains("IMAPSHIFT_SURELY_UNSET_TOO is not set"), "{e}");
        assert!(mark.exists());
        // A malformed reference is an error even for a user not taken.
        let bad = t.replace("env:IMAPSHIFT_SURELY_UNSET_TOO", "hunter2");
        let e = parse_selected(path, &bad, &|u| u != "bob")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a password reference"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    fn users(list: &[(&str, &str, Option<bool>)]) -> String {
        let mut t = GOOD.split("[[users]]").next().unwrap().to_string();
        for (old, new, merge) in list {
            t.push_str(&format!(
                "[[users]]\nold = \"{old}\"\nnew = \"{new}\"\nold_password = \"cmd:echo a\"\nnew_password = \"cmd:echo b\"\n"
            ));
            if let Some(m) = merge {
                t.push_str(&format!("merge = {m}\n"));
            }
        }
        t
    }

    #[test]
    fn an_old_login_twice_in_another_case_is_refused() {
        let t = users(&[
            ("Alice@Example.com", "a1@example.net", None),
            ("alice@example.com", "a2@example.net", None),
        ]);
        let e = p(&t).unwrap_err().to_string();
        assert!(
            e.contains("imapshift.toml:11")
                && e.contains("imapshift.toml:16")
                && e.contains("\"Alice@Example.com\"")
                && e.contains("listed twice"),
            "{e}"
        );
    }

    #[test]
    fn two_old_logins_onto_one_new_login_need_merge_on_both() {
        let two = |m1, m2| {
            users(&[
                ("alice@example.com", "team@example.net", m1),
                ("bob@example.com", "Team@Example.net", m2),
            ])
        };
        for (m1, m2) in [(None, None), (Some(true), None), (Some(true), Some(false))] {
            let e = p(&two(m1, m2)).unwrap_err().to_string();
            assert!(
                e.contains("imapshift.toml:11")
                    && e.contains(&format!(
                        "imapshift.toml:{}",
                        16 + usize::from(m1.is_some())
                    ))
                    && e.contains("both go to the new login")
                    && e.contains("merge = true"),
                "{m1:?} {m2:?}: {e}"
            );
        }
        let c = p(&two(Some(true), Some(true))).unwrap();
        assert!(c.users.iter().all(|u| u.merge));
    }

    #[test]
    fn csv_merge_column() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("imapshift.toml");
        let head = GOOD.split("[[users]]").next().unwrap().replacen(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\nusers_csv = \"users.csv\"\n",
            1,
        );
        let csv = |rows: &str| {
            std::fs::write(
                dir.path().join("users.csv"),
                format!("old,new,old_password,new_password,merge\n{rows}"),
            )
            .unwrap();
            parse(&toml, &head)
        };
        let c = csv("a,t,cmd:echo x,cmd:echo y,true\nb,T,cmd:echo x,cmd:echo y,TRUE\nc,c,cmd:echo x,cmd:echo y,\n").unwrap();
        assert_eq!(
            c.users.iter().map(|u| u.merge).collect::<Vec<_>>(),
            [true, true, false]
        );
        let e = csv("a,t,cmd:echo x,cmd:echo y,true\nb,t,cmd:echo x,cmd:echo y,\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users.csv:2") && e.contains("users.csv:3"),
            "{e}"
        );
        let e = csv("a,t,cmd:echo x,cmd:echo y,yes\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("users.csv:2: merge: \"yes\""), "{e}");
    }

    #[test]
    fn a_load_without_secrets_resolves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("ran");
        let t = GOOD
            .replace("env:IMAPSHIFT_TEST_PW", "env:IMAPSHIFT_SURELY_UNSET_3")
            .replace("cmd:echo s3cret", &format!("cmd:touch {}", mark.display()))
            .replace(
                "security = \"tls\"\n",
                &format!("security = \"tls\"\nmaster_user = \"admin\"\nmaster_password = \"cmd:touch {}\"\n", mark.display()),
            );
        let path = dir.path().join("imapshift.toml");
        std::fs::write(&path, &t).unwrap();
        let c = load_without_secrets(&path).unwrap();
        assert_eq!(c.users.len(), 1);
        assert!(c.users[0].old_password.is_none() && c.old.master.is_none());
        assert!(!mark.exists(), "a cmd: reference was run");
        // The form is still checked.
        std::fs::write(&path, t.replace("env:IMAPSHIFT_SURELY_UNSET_3", "hunter2")).unwrap();
        let e = load_without_secrets(&path).unwrap_err().to_string();
        assert!(
            e.contains("not a password reference") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn domain_nameservers_validated() {
        let mx = |extra: &str| {
            p(&format!(
                "{GOOD}[mx]\ndomains = [\"example.com\", \"Example.ORG.\"]\nnameservers = [\"127.0.0.1:5300\"]\n[mx.domain_nameservers]\n{extra}"
            ))
        };
        std::env::set_var("IMAPSHIFT_TEST_PW", "pw1");
        let c = mx("\"example.org\" = [\"192.0.2.1\", \"192.0.2.2:5353\"]\n").unwrap();
        let m = c.mx.unwrap();
        assert_eq!(
            m.nameservers_for("example.org"),
            vec![
                ("192.0.2.1".to_string(), "192.0.2.1:53".parse().unwrap()),
                (
                    "192.0.2.2:5353".to_string(),
                    "192.0.2.2:5353".parse().unwrap()
                )
            ]
        );
        assert_eq!(
            m.nameservers_for("example.com"),
            vec![(
                "127.0.0.1:5300".to_string(),
                "127.0.0.1:5300".parse().unwrap()
            )]
        );
        let e = mx("\"example.net\" = [\"192.0.2.1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("imapshift.toml:20:")
                && e.contains("[mx.domain_nameservers]")
                && e.contains("not in [mx].domains")
                && e.contains("add it"),
            "{e}"
        );
        let e = mx("\"example.org\" = [\"ns1.example.org\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":20:") && e.contains("not a nameserver address"),
            "{e}"
        );
        let e = mx("\"example.org\" = []\n").unwrap_err().to_string();
        assert!(
            e.contains(":20:") && e.contains("names no nameserver"),
            "{e}"
        );
        let e = mx("\"example.org\" = [\"192.0.2.1\"]\n\"EXAMPLE.org\" = [\"192.0.2.1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn good_config_parses() {
        std::env::set_var("IMAPSHIFT_TEST_PW", "pw1");
        let c = p(GOOD).unwrap();
        assert_eq!(c.old.port, 993);
        assert_eq!(c.new.port, 143);
        assert_eq!(c.new.security, Security::Starttls);
        assert_eq!(c.new.auth, AuthMech::Plain);
        assert_eq!(c.users[0].old_password.as_ref().unwrap().expose(), "pw1");
        assert_eq!(c.users[0].new_password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(c.state_dir, PathBuf::from("/tmp/x/state"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn folder_rules_are_checked() {
        let ok = format!("{GOOD}[[folder_rules]]\nmatch = \"^Archive/(\\\\d{{4}})$\"\nto = \"Old/$1\"\nmerge = true\n");
        std::env::set_var("IMAPSHIFT_TEST_PW", "pw1");
        let c = p(&ok).unwrap();
        assert_eq!(c.folder_rules.len(), 1);
        assert!(c.folder_rules[0].merge);
        assert_eq!(
            c.folder_rules[0].apply("Archive/2019").as_deref(),
            Some("Old/2019")
        );
        let bad = ok.replace("^Archive/(", "^Archive/((");
        let e = p(&bad).unwrap_err().to_string();
        assert!(
            e.contains("[[folder_rules]].match") && e.contains("regular expression"),
            "{e}"
        );
        let e = p(&ok.replace("Old/$1", "Old/$2")).unwrap_err().to_string();
        assert!(e.contains("group $2") && e.contains(":18:"), "{e}");
        let e = p(&ok.replace("Old/$1", "Old//$1")).unwrap_err().to_string();
        assert!(e.contains("[[folder_rules]].to"), "{e}");
    }

    #[test]
    fn bad_security_names_line_and_field() {
        let t = GOOD.replace("security = \"tls\"", "security = \"tsl\"");
        let e = p(&t).unwrap_err().to_string();
        assert!(e.contains("imapshift.toml:6:"), "{e}");
        assert!(e.contains("[old].security"), "{e}");
        assert!(e.contains("tsl"), "{e}");
    }

    #[test]
    fn literal_password_refused() {
        let t = GOOD.replace("cmd:echo s3cret", "hunter2");
        let e = p(&t).unwrap_err().to_string();
        assert!(e.contains(":15:"), "{e}");
        assert!(e.contains("new_password"), "{e}");
        assert!(!e.contains("hunter2"), "secret leaked: {e}");
        // Regression: a literal password with ':' showed the part before it.
        let t = GOOD.replace("cmd:echo s3cret", "hunter:2");
        let e = p(&t).unwrap_err().to_string();
        assert!(
            e.contains("new_password") && e.contains("not a password reference"),
            "{e}"
        );
        assert!(!e.contains("hunter"), "secret leaked: {e}");
    }

    #[test]
    fn missing_env_named() {
        let t = GOOD.replace("IMAPSHIFT_TEST_PW", "IMAPSHIFT_SURELY_UNSET");
        let e = p(&t).unwrap_err().to_string();
        assert!(e.contains("IMAPSHIFT_SURELY_UNSET is not set"), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = p("state_dir = \"s\"\n[old\nhost=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("imapshift.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_field_rejected() {
        let t = GOOD.replace("port = 993", "prot = 993");
        let e = p(&t).unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
        assert!(e.contains(":5:"), "{e}");
    }

    #[test]
    fn bad_port_and_host() {
        let e = p(&GOOD.replace("port = 993", "port = 99999"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[old].port") && e.contains("out of range"),
            "{e}"
        );
        let e = p(&GOOD.replace("imap.old.example", "imaps://imap.old.example"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[old].host"), "{e}");
    }

    #[test]
    fn master_user_makes_user_passwords_optional() {
        let t = GOOD.replace(
            "security = \"tls\"\n",
            "security = \"tls\"\nmaster_user = \"admin\"\nmaster_password = \"cmd:echo adminpw\"\n",
        );
        let t = t.replace("old_password = \"env:IMAPSHIFT_TEST_PW\"\n", "");
        let c = p(&t).unwrap();
        assert!(c.users[0].old_password.is_none());
        let m = c.old.master.as_ref().unwrap();
        assert_eq!((m.user.as_str(), m.separator.as_str()), ("admin", "*"));
        assert_eq!(m.password.expose(), "adminpw");
        // Without a master on the new side, new_password stays required.
        let e = p(&t.replace("new_password = \"cmd:echo s3cret\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("new_password") && e.contains("master_user"),
            "{e}"
        );
        let e = p(&t.replace("master_password = \"cmd:echo adminpw\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[old].master_password"), "{e}");
    }

    #[test]
    fn shards_partition_the_users() {
        let shards: Vec<Shard> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        let users: Vec<String> = (0..1000).map(|i| format!("user{i}@example.com")).collect();
        let mut counts = [0usize; 4];
        for u in &users {
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].takes(u)).collect();
            assert_eq!(owners.len(), 1, "{u} must belong to exactly one shard");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 200), "roughly even: {counts:?}");
        // Stable: the same login always lands in the same shard.
        assert!(shards[0].takes("user0@example.com") == shards[0].takes("user0@example.com"));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn failing_cmd_does_not_leak() {
        let e = resolve_password("cmd:echo topsecret; exit 3", Path::new(".")).unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn csv_users_with_lines() {
        let dir = std::env::temp_dir().join(format!("imapshift-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "filepw\n").unwrap();
        std::fs::write(
            dir.join("users.csv"),
            "old,new,old_password,new_password\na,a2,file:pw,file:pw\nb,b2,file:pw,nope\n",
        )
        .unwrap();
        let text =
            GOOD.split("[[users]]").next().unwrap().to_string() + "users_csv = \"users.csv\"\n";
        let text = text.replacen(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\nusers_csv = \"users.csv\"\n",
            1,
        );
        let text = text.trim_end().rsplit_once('\n').unwrap().0.to_string();
        let e = parse(&dir.join("imapshift.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("users.csv:3"), "{e}");
        std::fs::write(
            dir.join("users.csv"),
            "old,new,old_password,new_password\na,a2,file:pw,file:pw\n",
        )
        .unwrap();
        let c = parse(&dir.join("imapshift.toml"), &text).unwrap();
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].old_password.as_ref().unwrap().expose(), "filepw");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Found by tests/fuzz_config.rs: the csv crate numbers a row from where it began to read,
    /// before the comment and blank lines it skipped, so a row after a comment was named with
    /// the comment's line (and the crate's own "(line: N, ...)" in the text said so too).
    #[test]
    fn csv_lines_count_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "filepw\n").unwrap();
        let text = GOOD.split("[[users]]").next().unwrap().replacen(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\nusers_csv = \"users.csv\"\n",
            1,
        );
        let path = dir.path().join("imapshift.toml");
        let csv = dir.path().join("users.csv");
        let write = |rows: &[u8]| std::fs::write(&csv, rows).unwrap();
        write(b"# users\nold,new,old_password,new_password\na,a,file:pw,file:pw\n# b:\n\n\r\n#\nb,b,file:pw,file:pw\n");
        let c = load_without_secrets_text(&path, &text);
        let lines: Vec<&str> = c
            .users
            .iter()
            .map(|u| u.origin.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(lines, ["3", "8"]);
        write(b"old,new,old_password,new_password\n# c\n\nc,c,file:pw\n");
        let e = parse(&path, &text).unwrap_err().to_string();
        assert!(
            e.contains("users.csv:4: this row has 3 fields, the header row 4"),
            "{e}"
        );
        assert!(!e.contains("line:"), "{e}");
        write(b"old,new,old_password,new_password\n\nd\xff,d,file:pw,file:pw\n");
        let e = parse(&path, &text).unwrap_err().to_string();
        assert!(e.contains("users.csv:3: field 1 is not UTF-8"), "{e}");
        write(b"# header next\nold,new,password\n");
        let e = parse(&path, &text).unwrap_err().to_string();
        assert!(e.contains("users.csv:2: the header row lacks"), "{e}");
    }

    /// Found by tests/fuzz_config.rs: a configuration that is not UTF-8 was refused as
    /// unreadable ("pass the right file with --config") without the line of the bad byte.
    #[test]
    fn non_utf8_config_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imapshift.toml");
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("imap.new.example").unwrap();
        bytes.insert(at, 0xe9);
        std::fs::write(&path, bytes).unwrap();
        let e = load_without_secrets(&path).unwrap_err().to_string();
        assert!(
            e.contains("imapshift.toml:8: the byte 0xe9 is not UTF-8"),
            "{e}"
        );
    }

    fn load_without_secrets_text(path: &Path, text: &str) -> Config {
        std::fs::write(path, text).unwrap();
        load_without_secrets(path).unwrap()
    }
}
