//! `imapshift preflight`: the checks an admin runs before the cutover, as a pass/warn/fail list.
//!
//! A failed cutover costs downtime; most causes are known in advance: a user whose password is
//! wrong on one side, a server without an extension the plan relies on, a new mailbox whose
//! quota cannot hold the old one, an MX TTL too long to wait out in the window, a parking
//! target that accepts mail (senders would deliver into a void instead of retrying later), or a
//! new MX target that does not accept SMTP yet. Each check names what it found and the fix.
//! Nothing is changed anywhere: the old server is only examined, the new one only asked.

use crate::config::{Config, UserConfig};
use crate::dns;
use crate::imap::ImapSession;
use crate::store::{MailStore, StorageQuota};
use futures::StreamExt;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

/// One line of the list.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub level: Level,
    /// What was checked: `login old alice`, `quota alice`, `mx ttl example.com @ 192.0.2.53:53`.
    pub check: String,
    pub detail: String,
}

fn check(level: Level, check: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        level,
        check: check.into(),
        detail: detail.into(),
    }
}

/// Every check, in a stable order: servers, users, DNS, SMTP.
pub async fn run(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let users = futures::stream::iter(cfg.users.iter())
        .map(|u| user_checks(cfg, u))
        .buffered(cfg.sync.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut caps_old = None;
    let mut caps_new = None;
    for (checks, co, cn) in users {
        caps_old = caps_old.or(co);
        caps_new = caps_new.or(cn);
        out.extend(checks);
    }
    let mut server = Vec::new();
    for (side, facts, sc) in [("old", caps_old, &cfg.old), ("new", caps_new, &cfg.new)] {
        if let Some((caps, software)) = facts {
            server.push(check(Level::Pass, format!("software {side}"), software));
            let mut c = caps_check(side, &caps);
            if !sc.quirks.ignore_capabilities.is_empty() {
                let ignored: Vec<&str> = sc
                    .quirks
                    .ignore_capabilities
                    .iter()
                    .map(String::as_str)
                    .collect();
                c.detail.push_str(&format!(
                    "; ignored by [{side}.quirks]: {}",
                    ignored.join(" ")
                ));
            }
            server.push(c);
        }
    }
    server.push(security_check(&cfg.old));
    server.push(security_check(&cfg.new));
    server.extend(out);
    let mut out = server;
    if let Some(mx) = &cfg.mx {
        out.extend(dns_checks(cfg, mx).await);
    } else {
        out.push(check(
            Level::Warn,
            "mx",
            "no [mx] table in the configuration: MX TTL, parking and new target not checked",
        ));
    }
    out
}

/// The exit code for a list: 0 unless a check failed.
pub fn exit_code(checks: &[Check]) -> i32 {
    if checks.iter().any(|c| c.level == Level::Fail) {
        crate::error::exit::PREFLIGHT
    } else {
        crate::error::exit::OK
    }
}

/// The list for people.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let word = match c.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        s.push_str(&format!("{word}  {}: {}\n", c.check, c.detail));
    }
    let count = |l| checks.iter().filter(|c| c.level == l).count();
    s.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        count(Level::Pass),
        count(Level::Warn),
        count(Level::Fail)
    ));
    s
}

/// How the connection to a side is protected, from its configuration (a certificate that
/// fails its check already failed the logins above).
fn security_check(sc: &crate::config::ServerConfig) -> Check {
    use crate::config::Security;
    let name = format!("security {}", sc.side);
    let how = match sc.security {
        Security::Tls => "TLS",
        Security::Starttls => "STARTTLS",
        Security::Plain => {
            let loopback = sc.host == "localhost"
                || sc
                    .host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            return if loopback {
                check(Level::Pass, name, "plain, on this host (loopback)")
            } else {
                check(
                    Level::Warn,
                    name,
                    format!(
                        "plain: passwords and mail cross the network unencrypted; use security = \"tls\" or \"starttls\" unless [{}] is on a network you trust",
                        sc.side
                    ),
                )
            };
        }
    };
    if sc.accept_invalid_certs {
        return check(
            Level::Warn,
            name,
            format!(
                "{how}, but the certificate is NOT checked ([{}].accept_invalid_certs = true): trust its CA with ca_file instead",
                sc.side
            ),
        );
    }
    let roots = match &sc.ca {
        Some(ca) => format!("the system's CAs and {}", ca.path.display()),
        None => "the system's CAs".to_string(),
    };
    check(
        Level::Pass,
        name,
        format!("{how}, certificate checked against {roots}"),
    )
}

fn caps_check(side: &str, caps: &crate::store::Capabilities) -> Check {
    // What each missing extension costs (docs/server-quirks.md).
    let wanted: &[(&str, &str)] = if side == "old" {
        &[
            (
                "CONDSTORE",
                "every run lists every folder's flags (slower deltas)",
            ),
            (
                "BINARY",
                "messages with NUL bytes are copied as the server shows them",
            ),
        ]
    } else {
        &[
            ("UIDPLUS", "new UIDs found by fingerprint after each batch (slower); deletions cannot be propagated"),
            ("MULTIAPPEND", "one APPEND per message (slower)"),
            ("LITERAL+", "a round trip per message literal (slower)"),
            ("BINARY", "messages with NUL bytes cannot be stored"),
        ]
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(c, _)| !caps.has(c))
        .map(|(c, why)| format!("no {c}: {why}"))
        .collect();
    let has: Vec<String> = [
        "UIDPLUS",
        "CONDSTORE",
        "QRESYNC",
        "MULTIAPPEND",
        "LITERAL+",
        "BINARY",
        "SPECIAL-USE",
        "QUOTA",
    ]
    .iter()
    .filter(|c| caps.has(c))
    .map(|c| c.to_string())
    .collect();
    let name = format!("capabilities {side}");
    if missing.is_empty() {
        check(Level::Pass, name, has.join(" "))
    } else {
        check(
            Level::Warn,
            name,
            format!("{}; has {}", missing.join("; "), has.join(" ")),
        )
    }
}

/// A side's capabilities and its software with the workarounds switched on.
type ServerFacts = (crate::store::Capabilities, String);

type UserResult = (Vec<Check>, Option<ServerFacts>, Option<ServerFacts>);

fn facts(s: &ImapSession) -> ServerFacts {
    (s.caps().clone(), s.quirks().describe())
}

async fn user_checks(cfg: &Config, u: &UserConfig) -> UserResult {
    let mut out = Vec::new();
    let (o, n) = tokio::join!(
        ImapSession::connect(&cfg.old, &u.old_login, u.old_password.as_ref(), true),
        ImapSession::connect(&cfg.new, &u.new_login, u.new_password.as_ref(), false),
    );
    let login = |side: &str, login: &str, r: &crate::error::Result<ImapSession>| match r {
        Ok(_) => check(Level::Pass, format!("login {side} {login}"), "logged in"),
        Err(e) => check(Level::Fail, format!("login {side} {login}"), e.to_string()),
    };
    out.push(login("old", &u.old_login, &o));
    out.push(login("new", &u.new_login, &n));
    let (mut o, mut n) = match (o, n) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => {
            let co = o.as_ref().ok().map(facts);
            let cn = n.as_ref().ok().map(facts);
            for mut s in [o.ok(), n.ok()].into_iter().flatten() {
                s.logout().await;
            }
            return (out, co, cn);
        }
    };
    let caps = (Some(facts(&o)), Some(facts(&n)));
    match mailbox_checks(cfg, u, &mut o, &mut n).await {
        Ok(c) => out.extend(c),
        Err(e) => out.push(check(
            Level::Fail,
            format!("folders {}", u.old_login),
            e.to_string(),
        )),
    }
    o.logout().await;
    n.logout().await;
    (out, caps.0, caps.1)
}

/// The folder plan and the quota against the size of the old mailbox.
async fn mailbox_checks(
    cfg: &Config,
    u: &UserConfig,
    old: &mut ImapSession,
    new: &mut ImapSession,
) -> crate::error::Result<Vec<Check>> {
    let mut out = Vec::new();
    // Before a first sync there is no earlier mapping; after one, the sync's own keeps it.
    let plan = crate::engine::folder_view(
        old,
        new,
        &cfg.filters,
        &cfg.folder_rules,
        &Default::default(),
    )
    .await?
    .plan;
    let name = format!("folders {}", u.old_login);
    if plan.conflicts.is_empty() {
        out.push(check(
            Level::Pass,
            name.clone(),
            format!(
                "{} folders to take, {} to create on the new server",
                plan.mappings.len(),
                plan.create.len()
            ),
        ));
    } else {
        let list: Vec<String> = plan
            .conflicts
            .iter()
            .map(|(n, why)| format!("{}: {why}", n.display()))
            .collect();
        out.push(check(Level::Fail, name.clone(), list.join("; ")));
    }
    // Collisions resolved by the plan: the admin should know where those folders go.
    let notes: Vec<String> = plan
        .mappings
        .iter()
        .filter_map(|m| {
            m.note()
                .map(|n| format!("{} -> {}: {n}", m.old.display(), m.new.display()))
        })
        .collect();
    if !notes.is_empty() {
        out.push(check(Level::Warn, name, notes.join("; ")));
    }
    // The whole old mailbox must fit: the new server keeps what it has and gets all of it.
    let names: Vec<_> = plan.mappings.iter().map(|m| m.old.clone()).collect();
    let mut bytes = 0u64;
    let mut messages = 0u64;
    let limit = new.append_limit();
    let mut too_big: Vec<String> = Vec::new();
    let mut too_big_count = 0usize;
    for (m, st) in plan.mappings.iter().zip(old.status_many(&names).await?) {
        let Ok(st) = st else { continue };
        if st.messages == 0 {
            continue;
        }
        let st = old.examine(&m.old).await?;
        let list = old.list_messages(&st).await?;
        messages += list.len() as u64;
        bytes += list.iter().map(|s| u64::from(s.size)).sum::<u64>();
        if let Some(max) = limit {
            for s in list.iter().filter(|s| u64::from(s.size) > max) {
                too_big_count += 1;
                if too_big.len() < 20 {
                    too_big.push(format!(
                        "\"{}\" old UID {} ({} bytes)",
                        m.old.display(),
                        s.uid,
                        s.size
                    ));
                }
            }
        }
    }
    if let Some(max) = limit {
        let name = format!("size limit {}", u.new_login);
        out.push(if too_big_count == 0 {
            check(
                Level::Pass,
                name,
                format!("every message fits the new server's APPENDLIMIT ({max} bytes)"),
            )
        } else {
            check(
                Level::Fail,
                name,
                format!(
                    "{too_big_count} messages are larger than the new server's APPENDLIMIT ({max} bytes) and cannot be copied: {}{}; raise the new server's limit, or leave them out with [filters].max_size",
                    too_big.join(", "),
                    if too_big_count > too_big.len() { ", ..." } else { "" }
                ),
            )
        });
    }
    let inbox = crate::types::MailboxPath::new("INBOX").expect("INBOX is a valid name");
    let name = format!("quota {}", u.new_login);
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    out.push(match new.storage_quota(&inbox).await {
        Ok(None) => check(
            Level::Pass,
            name,
            format!("no storage quota on the new server; the old mailbox holds {messages} messages, {}", mb(bytes)),
        ),
        Ok(Some(StorageQuota { used, limit })) => {
            let free = limit.saturating_sub(used);
            let detail = format!(
                "the old mailbox holds {messages} messages, {}; the new quota allows {} ({} used, {} free)",
                mb(bytes),
                mb(limit),
                mb(used),
                mb(free)
            );
            // After pre-syncs, `used` already holds copies: what is still to come is at least
            // `bytes - used` and at most `bytes`.
            let least = bytes.saturating_sub(used);
            if bytes > limit {
                check(Level::Fail, name, format!("{detail}: the quota is smaller than the old mailbox; raise the quota of {} on the new server", u.new_login))
            } else if least > free {
                check(Level::Fail, name, format!("{detail}: not enough room left; raise the quota of {} on the new server", u.new_login))
            } else if bytes > free {
                check(Level::Warn, name, format!("{detail}: enough only if most of the old mailbox is already copied (as after a pre-sync)"))
            } else if bytes.saturating_mul(10) > free.saturating_mul(9) {
                check(Level::Warn, name, format!("{detail}: less than 10 % to spare"))
            } else {
                check(Level::Pass, name, detail)
            }
        }
        Err(e) => check(Level::Warn, name, format!("cannot read the quota: {e}")),
    });
    Ok(out)
}

async fn dns_checks(cfg: &Config, mx: &crate::config::MxConfig) -> Vec<Check> {
    let timeout = Duration::from_secs(3);
    let mut out = Vec::new();
    let resolver = match mx.resolver.map(Ok).unwrap_or_else(dns::system_resolver) {
        Ok(r) => Some(r),
        Err(e) => {
            out.push(check(Level::Warn, "resolver", e));
            None
        }
    };
    // The same nameservers as the cutover's: each domain's own, else discovered per domain.
    match crate::mx::spec_from_config(mx, Duration::from_secs(5), timeout).await {
        Ok(spec) => out.extend(mx_ttl_checks(cfg, mx, &spec).await),
        Err(e) => out.push(check(Level::Fail, "nameservers", e)),
    }
    let Some(resolver) = resolver else {
        return out;
    };
    if let Some(t) = &mx.parking_target {
        out.extend(smtp_checks(resolver, t, mx.smtp_port, false, timeout).await);
    } else {
        out.push(check(
            Level::Warn,
            "parking target",
            "[mx].parking_target is not set",
        ));
    }
    if let Some(t) = &mx.new_target {
        out.extend(smtp_checks(resolver, t, mx.smtp_port, true, timeout).await);
    } else {
        out.push(check(
            Level::Warn,
            "new target",
            "[mx].new_target is not set",
        ));
    }
    out
}

/// The MX TTL of every (domain, nameserver) pair: an authoritative answer within `max_ttl`
/// passes; anything else fails. What was seen goes into the TTL log of the state directory, and
/// an older, larger TTL still alive there is named: the cutover waits for it.
async fn mx_ttl_checks(
    cfg: &Config,
    mx: &crate::config::MxConfig,
    spec: &crate::mx::WatchSpec,
) -> Vec<Check> {
    let snap = crate::mx::poll(spec).await;
    let mut out: Vec<Check> = snap.asked.iter().map(|a| mx_ttl_check(mx, a)).collect();
    let recorded = crate::mx::ttl::TtlLog::open(&cfg.state_dir).and_then(|mut log| {
        log.record("preflight", &snap)?;
        Ok(log.binding(snap.unix))
    });
    match recorded {
        Err(e) => out.push(check(Level::Fail, "mx ttl log", e)),
        Ok(Some(b)) if Some(b.ttl) > snap.max_ttl() => out.push(check(
            Level::Warn,
            "mx ttl history",
            format!(
                "{}: resolvers may hand out that record until {}; the cutover waits for it",
                b.describe(),
                crate::timefmt::rfc3339(b.ends_unix())
            ),
        )),
        Ok(_) => {}
    }
    out
}

fn mx_ttl_check(mx: &crate::config::MxConfig, a: &crate::mx::Asked) -> Check {
    let (d, o) = (&a.domain, &a.outcome);
    let name = format!("mx ttl {d} @ {}", a.nameserver);
    match (o, o.max_ttl()) {
        (dns::Outcome::Answer { authoritative: false, .. }, _) => check(
            Level::Fail,
            name,
            format!("{}: this nameserver is not authoritative for {d} (lame): fix the delegation or the nameserver list", o.describe()),
        ),
        (dns::Outcome::Refused, _) => check(
            Level::Fail,
            name,
            format!("{}: this nameserver does not serve {d}: name its own nameservers in [mx.domain_nameservers]", o.describe()),
        ),
        (dns::Outcome::Unreachable { .. }, _) => check(
            Level::Fail,
            name,
            format!("{}: name nameservers of {d} that this host can reach in [mx.domain_nameservers]", o.describe()),
        ),
        (_, Some(ttl)) if ttl > mx.max_ttl => check(
            Level::Fail,
            name,
            format!("{}: TTL {ttl}s is above max_ttl {}s: lower the MX TTL now and wait the old TTL before the cutover", o.describe(), mx.max_ttl),
        ),
        (_, Some(_)) => check(Level::Pass, name, o.describe()),
        (dns::Outcome::Answer { .. }, None) => check(Level::Fail, name, format!("{d} has no MX records here")),
        _ => check(Level::Fail, name, o.describe()),
    }
}

/// The parking target must refuse SMTP (senders get a temporary failure and retry); the new
/// target must accept it (greet with 220).
async fn smtp_checks(
    resolver: SocketAddr,
    target: &str,
    port: u16,
    must_accept: bool,
    timeout: Duration,
) -> Vec<Check> {
    let what = if must_accept {
        "new target"
    } else {
        "parking target"
    };
    let addrs = match dns::resolve_addresses(resolver, target, timeout).await {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            return vec![check(
                Level::Fail,
                format!("{what} {target}"),
                format!("{target} has no A or AAAA record at {resolver}: senders cannot reach it"),
            )]
        }
        Err(e) => return vec![check(Level::Fail, format!("{what} {target}"), e)],
    };
    let mut out = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let name = format!("{what} {target} ({addr})");
        let p = probe_smtp(addr, timeout).await;
        out.push(match (must_accept, p) {
            (false, Probe::Refused) => check(Level::Pass, name, "connection refused: senders will retry later"),
            (false, Probe::Silent) => check(Level::Warn, name, "no answer (filtered): senders will retry, but only after their connection timeout"),
            (false, Probe::Greeting(g)) => check(Level::Fail, name, format!("something accepts SMTP here ({g}): mail sent during the cutover would not reach the old or the new server; point the parking MX at an address where nothing listens on port {port}")),
            (true, Probe::Greeting(g)) if g.starts_with("220") => check(Level::Pass, name, format!("accepts SMTP: {g}")),
            (true, Probe::Greeting(g)) => check(Level::Fail, name, format!("answers but does not greet with 220: {g}")),
            (true, Probe::Refused) => check(Level::Fail, name, format!("connection refused: the new server must accept SMTP on port {port} before the MX points to it")),
            (true, Probe::Silent) => check(Level::Fail, name, "no answer: a firewall? the new server must accept SMTP before the MX points to it"),
            (_, Probe::Error(e)) => check(Level::Warn, name, e),
        });
    }
    out
}

/// What an SMTP port did.
#[derive(Debug)]
pub(crate) enum Probe {
    Refused,
    /// No connection or no greeting within the timeout.
    Silent,
    /// The first line the server sent.
    Greeting(String),
    Error(String),
}

/// Connects to an SMTP port and reads its first line (the cutover probes the parking target too).
pub(crate) async fn probe_smtp(addr: SocketAddr, timeout: Duration) -> Probe {
    use tokio::io::AsyncBufReadExt;
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return Probe::Silent,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
        Ok(Err(e)) => return Probe::Error(format!("cannot connect: {e}")),
        Ok(Ok(t)) => t,
    };
    let mut line = String::new();
    let mut r = tokio::io::BufReader::new(tcp);
    match tokio::time::timeout(timeout, r.read_line(&mut line)).await {
        Err(_) => Probe::Greeting("(connected, but no greeting)".into()),
        Ok(Err(e)) => Probe::Greeting(format!("(connected, then {e})")),
        Ok(Ok(_)) => Probe::Greeting(line.trim_end().chars().take(120).collect()),
    }
}
