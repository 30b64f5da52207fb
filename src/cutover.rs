//! `imapshift cutover`: the downtime window as one unattended command.
//!
//! 1. Wait until every nameserver serves the parking MX for every domain (the first sighting
//!    starts the downtime clock). 2. Wait the largest MX TTL seen, so no resolver still hands
//!    out the old MX from its cache. 3. The final delta sync of every user. 4. The verification
//!    (old against new by content). 5. Tell the admin to point the MX at the new server, and with
//!    `--follow`, keep carrying mail that still reaches the old server from senders with stale
//!    DNS: a pass every `--follow-interval`, at once when IDLE on an old INBOX reports new mail,
//!    and a last pass when the duration ends. Each phase is logged with its times; the report
//!    gives the downtime (first parking sighting to the end of the verification).

use crate::config::Config;
use crate::engine::EngineOptions;
use crate::error::{exit, Error, Result};
use crate::imap::ImapSession;
use crate::mx::{Nameserver, WatchSpec};
use crate::progress::Progress;
use crate::store::MailStore;
use crate::timefmt::{now_unix, rfc3339};
use serde::Serialize;
use std::time::Duration;

/// How the cutover runs.
#[derive(Clone, Debug)]
pub struct CutoverOptions {
    /// Seconds between DNS polls.
    pub dns_interval: Duration,
    /// Give up waiting for the parking MX after this long (exit 5).
    pub max_wait: Option<Duration>,
    /// Keep syncing this long after the verification.
    pub follow: Option<Duration>,
    pub follow_interval: Duration,
}

/// One phase and its times.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub started: String,
    pub ended: String,
    pub seconds: u64,
    pub detail: String,
}

/// The cutover's report.
#[derive(Clone, Debug, Serialize)]
pub struct CutoverReport {
    pub phases: Vec<Phase>,
    /// First sighting of the parking MX to the end of the verification.
    pub downtime_seconds: Option<u64>,
    pub final_sync: Option<crate::runner::RunReport>,
    pub verification: Option<crate::verify::Verdict>,
    /// Messages carried by `--follow` passes.
    pub followed: u64,
    pub next_step: Option<String>,
    pub exit_code: i32,
}

fn phase(name: &str, from: u64, detail: String) -> Phase {
    let to = now_unix();
    tracing::info!(
        "cutover: {name} done ({}s, {} to {}): {detail}",
        to.saturating_sub(from),
        rfc3339(from),
        rfc3339(to)
    );
    Phase {
        name: name.to_string(),
        started: rfc3339(from),
        ended: rfc3339(to),
        seconds: to.saturating_sub(from),
        detail,
    }
}

/// The nameservers to watch: configured, else discovered from NS records.
async fn spec(cfg: &Config, interval: Duration) -> Result<WatchSpec> {
    let mx = cfg.mx.as_ref().ok_or_else(|| {
        Error::config("cutover needs an [mx] table (domains, nameservers, parking_target, new_target): see docs/cutover.md")
    })?;
    let timeout = Duration::from_secs(2);
    let mut nameservers: Vec<Nameserver> = mx
        .nameserver_labels
        .iter()
        .zip(&mx.nameservers)
        .map(|(label, addr)| Nameserver {
            label: label.clone(),
            addr: *addr,
        })
        .collect();
    if nameservers.is_empty() {
        let resolver = match mx.resolver {
            Some(r) => r,
            None => crate::dns::system_resolver().map_err(Error::config)?,
        };
        for d in &mx.domains {
            let found = crate::dns::discover_nameservers(resolver, d, 53, timeout)
                .await
                .map_err(Error::config)?;
            for (name, addr) in found {
                if !nameservers.iter().any(|n| n.addr == addr) {
                    nameservers.push(Nameserver {
                        label: format!("{name} ({addr})"),
                        addr,
                    });
                }
            }
        }
    }
    Ok(WatchSpec {
        domains: mx.domains.clone(),
        nameservers,
        interval,
        timeout,
    })
}

/// Runs the window. `sync_opts` are the final sync's options (deletions as configured).
pub async fn run(
    cfg: &Config,
    sync_opts: &EngineOptions,
    follow_opts: &EngineOptions,
    progress: &Progress,
    co: &CutoverOptions,
) -> Result<CutoverReport> {
    let mx = cfg.mx.clone().unwrap_or_default();
    let parking = mx.parking_target.clone().ok_or_else(|| {
        Error::config("[mx].parking_target is not set: the cutover waits for the MX to point there")
    })?;
    let spec = spec(cfg, co.dns_interval).await?;
    let mut report = CutoverReport {
        phases: Vec::new(),
        downtime_seconds: None,
        final_sync: None,
        verification: None,
        followed: 0,
        next_step: None,
        exit_code: exit::OK,
    };

    // 1. The parking MX on every nameserver.
    let t = now_unix();
    tracing::info!(
        "cutover: waiting until {} nameserver(s) serve {parking} for {}",
        spec.nameservers.len(),
        spec.domains.join(", ")
    );
    let mut tell = |e: &crate::mx::Event, _: &WatchSpec, _: &crate::mx::Snapshot| {
        if let Some(line) = crate::mx::event_line(e) {
            tracing::info!("{line}");
        } else if let crate::mx::Event::MxState {
            nameserver,
            domain,
            outcome,
            ..
        } = e
        {
            tracing::info!("{nameserver}  {domain}: {}", outcome.describe());
        }
    };
    let end = crate::mx::watch(&spec, Some(&parking), co.max_wait, None, &mut tell).await;
    if crate::failpoint::stop_requested() {
        return Err(crate::failpoint::interrupted());
    }
    if !end.reached {
        let (k, n) = end.last.serving(&parking);
        report.phases.push(phase(
            "parking MX",
            t,
            format!("gave up: {k} of {n} nameserver/domain pairs serve {parking}"),
        ));
        report.exit_code = exit::NOT_PROPAGATED;
        return Ok(report);
    }
    let first = end.first_sighting.unwrap_or(t);
    report.phases.push(phase(
        "parking MX",
        t,
        format!("every nameserver serves {parking}"),
    ));

    // 2. One more TTL: the largest seen, and at least [mx].max_ttl: when the MX was parked
    //    before this command started, the old record's TTL was never seen here, and preflight
    //    made sure it is at most max_ttl.
    let ttl = end.max_ttl_seen.unwrap_or(0).max(mx.max_ttl);
    let t = now_unix();
    tracing::info!(
        "cutover: waiting {ttl}s (the largest MX TTL seen, at least [mx].max_ttl) for caches to expire"
    );
    let wait_until = tokio::time::Instant::now() + Duration::from_secs(u64::from(ttl));
    while tokio::time::Instant::now() < wait_until {
        if crate::failpoint::stop_requested() {
            return Err(crate::failpoint::interrupted());
        }
        tokio::time::sleep_until(
            wait_until.min(tokio::time::Instant::now() + Duration::from_millis(250)),
        )
        .await;
    }
    report.phases.push(phase("TTL wait", t, format!("{ttl}s")));

    // 3. The final delta.
    let t = now_unix();
    let run = crate::runner::run_sync(cfg, sync_opts, progress, &[]).await?;
    let detail = format!(
        "{} users, {} copied, {} failed (exit {})",
        run.users.len(),
        run.copied,
        run.failed,
        run.exit_code
    );
    report.phases.push(phase("final sync", t, detail));
    report.final_sync = Some(run);

    // 4. The verification.
    let t = now_unix();
    let verdict = crate::verify::verify(cfg, &crate::verify::VerifyOptions::now(false)).await;
    let ok = verdict.ok;
    report.phases.push(phase(
        "verification",
        t,
        if ok {
            format!(
                "OK: every message of {} users is on the new server",
                verdict.users.len()
            )
        } else {
            format!(
                "FAILED: {} differences ({} messages missing); see the report",
                verdict.users.iter().map(|u| u.problems()).sum::<usize>(),
                verdict.missing()
            )
        },
    ));
    let code = verdict.exit_code();
    report.verification = Some(verdict);
    report.downtime_seconds = Some(now_unix().saturating_sub(first));
    if !ok {
        // 7: something missing or changed; 3: a user could not be compared.
        report.exit_code = if code == exit::OK {
            exit::VERIFY_FAILED
        } else {
            code
        };
        return Ok(report);
    }
    let next = match &mx.new_target {
        Some(n) => format!(
            "point the MX of {} to {n} now (then `imapshift watch-mx --config ... --until {n}` shows it spreading)",
            spec.domains.join(", ")
        ),
        None => format!("point the MX of {} to the new server now", spec.domains.join(", ")),
    };
    tracing::info!("cutover: NEXT STEP: {next}");
    progress.println(&format!("NEXT STEP: {next}"));
    report.next_step = Some(next);

    // 5. Follow: stray mail from stale DNS still reaching the old server.
    if let Some(d) = co.follow {
        let t = now_unix();
        let (followed, code) = follow(cfg, follow_opts, progress, d, co.follow_interval).await;
        report.followed = followed;
        report.phases.push(phase(
            "follow",
            t,
            format!("{followed} messages carried from the old server"),
        ));
        // The verification passed; a follow pass that failed, or a Ctrl-C, still shows.
        if code != exit::OK {
            report.exit_code = code;
        }
    }
    Ok(report)
}

/// Users whose old INBOX is watched with IDLE during `--follow` (more would hold too many
/// connections; the interval passes still cover everyone).
pub const IDLE_MAX_USERS: usize = 50;

async fn follow(
    cfg: &Config,
    opts: &EngineOptions,
    progress: &Progress,
    duration: Duration,
    interval: Duration,
) -> (u64, i32) {
    let deadline = tokio::time::Instant::now() + duration;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    // IDLE connections come on top of the passes' own; within the old server's cap.
    let room = match cfg.old.max_connections {
        Some(max) => max.saturating_sub(cfg.sync.jobs * cfg.sync.connections_per_user),
        None => IDLE_MAX_USERS,
    };
    let idle_users = if cfg.users.len() <= IDLE_MAX_USERS.min(room) {
        cfg.users.clone()
    } else {
        tracing::info!(
            "follow: {} users, room for {} IDLE connections: passes every {}s only, no IDLE",
            cfg.users.len(),
            IDLE_MAX_USERS.min(room),
            interval.as_secs()
        );
        Vec::new()
    };
    let mut watchers = Vec::new();
    for u in idle_users {
        let (server, wake) = (cfg.old.clone(), wake.clone());
        watchers.push(tokio::spawn(async move {
            idle_watch(&server, &u, &wake, deadline).await;
        }));
    }
    let mut carried = 0u64;
    let mut last_code;
    // A pass after each interval or IDLE wake-up; the pass after the deadline is the last one.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {
                tracing::info!("follow: new mail on the old server (IDLE)");
            }
            _ = tokio::time::sleep_until(deadline) => {}
            // Ctrl-C between passes: no need to wait for the interval.
            _ = async {
                while !crate::failpoint::stop_requested() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            } => {}
        }
        if crate::failpoint::stop_requested() {
            last_code = exit::INTERRUPTED;
            break;
        }
        match crate::runner::run_sync(cfg, opts, progress, &[]).await {
            Ok(r) => {
                if r.copied > 0 {
                    tracing::info!("follow: carried {} messages", r.copied);
                }
                carried += r.copied;
                last_code = r.exit_code;
            }
            Err(e) => {
                tracing::warn!("follow: pass failed: {e}");
                last_code = crate::runner::exit_code_for(&e);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    for w in watchers {
        w.abort();
    }
    (carried, last_code)
}

/// IDLE on one user's old INBOX until `deadline`, waking the follow loop on new mail.
/// Reconnects after errors; gives up quietly if the server has no IDLE.
async fn idle_watch(
    server: &crate::config::ServerConfig,
    u: &crate::config::UserConfig,
    wake: &tokio::sync::Notify,
    deadline: tokio::time::Instant,
) {
    let inbox = crate::types::MailboxPath::new("INBOX").expect("valid");
    while tokio::time::Instant::now() < deadline {
        let mut s =
            match ImapSession::connect(server, &u.old_login, u.old_password.as_ref(), true).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("follow: no IDLE session for {}: {e}", u.old_login);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
        if s.examine(&inbox).await.is_err() {
            s.logout().await;
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                s.logout().await;
                return;
            }
            // Servers end IDLE after 30 minutes; renew well before.
            match s.idle(left.min(Duration::from_secs(25 * 60))).await {
                Ok(None) => {
                    s.logout().await;
                    return;
                }
                Ok(Some(true)) => wake.notify_one(),
                Ok(Some(false)) => {}
                Err(e) => {
                    tracing::debug!("follow: IDLE for {} ended: {e}", u.old_login);
                    // No login storm against a server that keeps ending IDLE.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    break;
                }
            }
        }
    }
}

/// The report for people.
pub fn render(r: &CutoverReport) -> String {
    let mut s = String::new();
    for p in &r.phases {
        s.push_str(&format!(
            "{:<13} {} .. {} ({:>4}s)  {}\n",
            p.name, p.started, p.ended, p.seconds, p.detail
        ));
    }
    if let Some(d) = r.downtime_seconds {
        s.push_str(&format!(
            "downtime: {d}s (first parking MX sighting to the end of the verification)\n"
        ));
    }
    if let Some(v) = &r.verification {
        s.push_str(&crate::verify::render(v));
    }
    if let Some(n) = &r.next_step {
        s.push_str(&format!("next step: {n}\n"));
    }
    s
}
