//! `imapshift cutover`: the downtime window as one unattended command.
//!
//! 1. Wait until every nameserver serves the parking MX for every domain (the first sighting
//!    starts the downtime clock). 2. Wait the largest MX TTL that may still be cached: the
//!    largest seen by this watch, by earlier `preflight` and `watch-mx` runs (recorded in the
//!    state directory) whose lifetime has not ended, and at least `[mx].max_ttl`. 3. Check again
//!    that every nameserver serves the parking MX and that nothing accepts SMTP at the parking
//!    target. 4. The final delta sync of every user. 5. The verification (old against new by
//!    content). 6. Check the DNS once more, then decide (see [`verdict`]): NEXT STEP only when the
//!    final sync left nothing undone, the verification passed and the MX is still parked;
//!    otherwise the report names what is left and the command to fix it, and the exit code is
//!    not 0. 7. With `--follow`, keep carrying mail that still reaches the old server from
//!    senders with stale DNS. Ctrl-C or SIGTERM stops any phase with exit 130, and never leads to
//!    verification or NEXT STEP.

pub mod parking;
pub mod verdict;

use crate::config::Config;
use crate::engine::EngineOptions;
use crate::error::{exit, Error, Result};
use crate::imap::ImapSession;
use crate::mx::WatchSpec;
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
    /// This machine's part of the users (`--shard K/N`).
    pub shard: Option<crate::config::Shard>,
}

/// Everything a cutover needs.
pub struct Cutover<'a> {
    pub cfg: &'a Config,
    /// The final sync's options (deletions as configured).
    pub sync_opts: &'a EngineOptions,
    /// The follow passes' options (never delete).
    pub follow_opts: &'a EngineOptions,
    pub progress: &'a Progress,
    pub options: &'a CutoverOptions,
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
    /// Follow passes run, and the exit code of each that was not 0.
    pub follow_passes: u64,
    pub follow_failures: Vec<i32>,
    pub next_step: Option<String>,
    /// What is left when there is no next step, one line each.
    pub left: Vec<String>,
    /// The command that finishes the job when something is left.
    pub fix: Option<String>,
    /// `K/N` for a shard's cutover: it covers only its own users.
    pub shard: Option<String>,
    pub users: usize,
    pub users_total: usize,
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

/// The nameservers to watch: each domain's own, else the default ones, else its NS records.
async fn spec(cfg: &Config, interval: Duration) -> Result<WatchSpec> {
    let mx = cfg.mx.as_ref().ok_or_else(|| {
        Error::config("cutover needs an [mx] table (domains, nameservers, parking_target, new_target): see docs/cutover.md")
    })?;
    crate::mx::spec_from_config(mx, interval, Duration::from_secs(2))
        .await
        .map_err(Error::config)
}

/// The pairs that do not serve `target` in a fresh poll, one line each (empty: all do).
async fn not_parked(spec: &WatchSpec, target: &str) -> Vec<String> {
    crate::mx::poll(spec).await.not_serving(target)
}

/// The TTL to wait from the moment every nameserver serves the parking MX, and why: the largest
/// of the TTLs this watch saw, the largest remembered TTL whose lifetime has not ended, and
/// `[mx].max_ttl` (pure).
fn ttl_to_wait(
    watched: Option<u32>,
    remembered: Option<&crate::mx::ttl::TtlSeen>,
    max_ttl: u32,
) -> (u32, String) {
    let mut best = (max_ttl, format!("[mx].max_ttl ({max_ttl}s)"));
    if let Some(w) = watched.filter(|&w| w > best.0) {
        best = (w, format!("the largest MX TTL seen by this watch ({w}s)"));
    }
    if let Some(r) = remembered.filter(|r| r.ttl > best.0) {
        best = (
            r.ttl,
            format!(
                "the largest MX TTL a resolver may still hold: {} (until {})",
                r.describe(),
                rfc3339(r.ends_unix())
            ),
        );
    }
    best
}

/// Waits for `fut` unless Ctrl-C or SIGTERM comes first (`None` then; `fut` is dropped).
async fn unless_stopped<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        v = fut => Some(v),
        _ = async {
            while !crate::failpoint::stop_requested() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } => None,
    }
}

impl CutoverReport {
    fn new(cfg: &Config, shard: Option<crate::config::Shard>) -> CutoverReport {
        CutoverReport {
            phases: Vec::new(),
            downtime_seconds: None,
            final_sync: None,
            verification: None,
            followed: 0,
            follow_passes: 0,
            follow_failures: Vec::new(),
            next_step: None,
            left: Vec::new(),
            fix: None,
            shard: shard.map(|s| format!("{}/{}", s.k, s.n)),
            users: cfg.users.len(),
            users_total: cfg.users_total,
            exit_code: exit::OK,
        }
    }

    /// Ends the report at `name`: stopped by the admin (exit 130).
    fn interrupted(mut self, name: &str, from: u64) -> CutoverReport {
        self.phases.push(phase(
            name,
            from,
            "interrupted (Ctrl-C or SIGTERM)".to_string(),
        ));
        self.left.push(format!(
            "the cutover was interrupted during the {name} phase: nothing after it ran"
        ));
        self.exit_code = exit::INTERRUPTED;
        self
    }

    /// Ends the report with what is left, the fix and `code`.
    fn stop(mut self, left: Vec<String>, fix: String, code: i32) -> CutoverReport {
        self.left.extend(left);
        self.fix = Some(fix);
        self.exit_code = code;
        self
    }
}

/// `imapshift cutover --config F [--shard K/N]`, for the fix lines.
fn rerun_command(cfg: &Config, shard: Option<crate::config::Shard>) -> String {
    format!(
        "imapshift cutover --config {}{}",
        cfg.path.display(),
        shard
            .map(|s| format!(" --shard {}/{}", s.k, s.n))
            .unwrap_or_default()
    )
}

/// Who the verification covered: "2 users", or "the 2 users of shard 1/3 (of 5 in the file)".
fn coverage(cfg: &Config, shard: Option<crate::config::Shard>) -> String {
    match shard {
        None => format!("{} users", cfg.users.len()),
        Some(s) => format!(
            "the {} users of shard {}/{} (of {} in the file; the other shards' cutovers cover the rest)",
            cfg.users.len(),
            s.k,
            s.n,
            cfg.users_total
        ),
    }
}

/// Runs the window.
pub async fn run(c: &Cutover<'_>) -> Result<CutoverReport> {
    let (cfg, co) = (c.cfg, c.options);
    let mx = cfg.mx.clone().unwrap_or_default();
    let parking = mx.parking_target.clone().ok_or_else(|| {
        Error::config("[mx].parking_target is not set: the cutover waits for the MX to point there")
    })?;
    let spec = spec(cfg, co.dns_interval).await?;
    let mut report = CutoverReport::new(cfg, co.shard);
    let rerun = rerun_command(cfg, co.shard);

    // 1. The parking MX on every nameserver.
    let t = now_unix();
    tracing::info!(
        "cutover: waiting until {} nameserver(s) serve {parking} for {}",
        spec.nameserver_count(),
        spec.domains().join(", ")
    );
    // Every MX TTL seen is remembered with its time: the next cutover, or this one's TTL wait,
    // counts it for as long as a resolver may hold it.
    let mut ttl_log = crate::mx::ttl::TtlLog::open(&cfg.state_dir).map_err(Error::state)?;
    let mut log_failed = false;
    let mut tell = |e: &crate::mx::Event, _: &WatchSpec, snap: &crate::mx::Snapshot| {
        if let crate::mx::Event::MxPolled { .. } = e {
            if let Err(err) = ttl_log.record("cutover", snap) {
                if !log_failed {
                    tracing::warn!("cutover: cannot record the MX TTLs seen: {err}");
                    log_failed = true;
                }
            }
            return;
        }
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
        return Ok(report.interrupted("parking MX", t));
    }
    if !end.reached && !end.unreachable.is_empty() {
        let lines: Vec<String> = end.unreachable.iter().map(|u| u.describe()).collect();
        report.phases.push(phase(
            "parking MX",
            t,
            format!(
                "stopped: {} nameserver(s) cannot be asked from this host",
                lines.len()
            ),
        ));
        return Ok(report.stop(
            lines,
            format!("name nameservers this host can reach in [mx].nameservers or [mx.domain_nameservers], then run `{rerun}`"),
            exit::NOT_PROPAGATED,
        ));
    }
    if !end.reached {
        let (k, n) = end.last.serving(&parking);
        report.phases.push(phase(
            "parking MX",
            t,
            format!("gave up: {k} of {n} nameserver/domain pairs serve {parking}"),
        ));
        return Ok(report.stop(
            vec![format!("the MX is not parked: {k} of {n} nameserver/domain pairs serve {parking}; nothing was synced")],
            format!("point the MX of every domain at {parking} on every nameserver, then run `{rerun}`"),
            exit::NOT_PROPAGATED,
        ));
    }
    let first = end.first_sighting.unwrap_or(t);
    let reached = now_unix();
    report.phases.push(phase(
        "parking MX",
        t,
        format!("every nameserver serves {parking}"),
    ));

    // 2. One more TTL, from the moment every nameserver serves the parking MX: the largest a
    //    resolver may still hold. That is the largest seen by this watch, or remembered from
    //    preflight, watch-mx or an earlier cutover while its lifetime lasts, and at least
    //    [mx].max_ttl (when the MX was parked before anything here saw it).
    let remembered = ttl_log.binding(reached);
    let (ttl, why) = ttl_to_wait(end.max_ttl_seen, remembered.as_ref(), mx.max_ttl);
    let t = now_unix();
    tracing::info!("cutover: waiting {ttl}s for caches to expire: {why}");
    let wait_until = tokio::time::Instant::now()
        + Duration::from_secs(u64::from(ttl)).saturating_sub(Duration::from_secs(t - reached));
    if unless_stopped(tokio::time::sleep_until(wait_until))
        .await
        .is_none()
    {
        return Ok(report.interrupted("TTL wait", t));
    }
    report
        .phases
        .push(phase("TTL wait", t, format!("{ttl}s: {why}")));

    // 3. Right before acting: still parked, and nothing accepts SMTP at the parking target.
    let t = now_unix();
    crate::failpoint::hit("cutover-before-final-sync")?;
    let back = match unless_stopped(not_parked(&spec, &parking)).await {
        Some(b) => b,
        None => return Ok(report.interrupted("re-check", t)),
    };
    if !back.is_empty() {
        report.phases.push(phase(
            "re-check",
            t,
            format!("{} pair(s) no longer serve {parking}", back.len()),
        ));
        let mut left = vec![format!(
            "the MX went back from {parking} before the final sync (nothing was synced):"
        )];
        left.extend(back.iter().map(|l| format!("  {l}")));
        return Ok(report.stop(
            left,
            format!("park the MX again on every nameserver, then run `{rerun}`"),
            exit::NOT_PROPAGATED,
        ));
    }
    let smtp = match unless_stopped(parking::check_parking(&mx, &parking)).await {
        Some(p) => p,
        None => return Ok(report.interrupted("re-check", t)),
    };
    let smtp_detail = match &smtp {
        parking::Parking::Accepts(why) => {
            report.phases.push(phase("re-check", t, why.clone()));
            return Ok(report.stop(
                vec![format!("{why} (nothing was synced)")],
                format!("make {parking} refuse SMTP, then run `{rerun}`"),
                exit::PREFLIGHT,
            ));
        }
        parking::Parking::Safe(d) => d.clone(),
        parking::Parking::Unknown(d) => {
            tracing::warn!("cutover: the parking target could not be checked: {d}");
            format!("could not check the parking target: {d}")
        }
    };
    report.phases.push(phase(
        "re-check",
        t,
        format!("every nameserver still serves {parking}; {smtp_detail}"),
    ));

    // 4. The final delta. The age filters' "now" is fixed here, for the sync and its check.
    let t = now_unix();
    let mut sync_opts = c.sync_opts.clone();
    sync_opts.as_of_unix = t;
    let run = crate::runner::run_sync(cfg, &sync_opts, c.progress, &[]).await?;
    let mut facts = verdict::Facts {
        interrupted: run.exit_code == exit::INTERRUPTED || crate::failpoint::stop_requested(),
        sync_exit: run.exit_code,
        sync_left: verdict::sync_left(&run),
        ..Default::default()
    };
    report.phases.push(phase(
        "final sync",
        t,
        format!(
            "{} users, {} copied, {} failed (exit {})",
            run.users.len(),
            run.copied,
            run.failed,
            run.exit_code
        ),
    ));
    report.final_sync = Some(run);
    if facts.interrupted {
        let d = verdict::decide(&facts);
        return Ok(report.stop(
            d.left,
            format!("run `{rerun}` again: it resumes where the final sync stopped"),
            exit::INTERRUPTED,
        ));
    }

    // 5. The verification.
    let t = now_unix();
    crate::failpoint::hit("cutover-before-verification")?;
    // The age filters cut where the final sync cut (no false "missing" across midnight).
    let vopts = crate::verify::VerifyOptions {
        deep: false,
        as_of_unix: sync_opts.as_of_unix,
    };
    let Some(v) = unless_stopped(crate::verify::verify(cfg, &vopts)).await else {
        return Ok(report.interrupted("verification", t));
    };
    report.phases.push(phase(
        "verification",
        t,
        if v.ok {
            // "OK" never covers what the filters left out: it is said.
            match crate::verify::left_out(&v.totals.counts, &[], &v.filters) {
                None => format!(
                    "OK: every message of {} is on the new server",
                    coverage(cfg, co.shard)
                ),
                Some(l) => format!(
                    "OK: every message of {} that [filters] take is on the new server; {l} (not migrated)",
                    coverage(cfg, co.shard)
                ),
            }
        } else {
            format!(
                "FAILED: {} differences ({} messages missing); see the report",
                v.users.iter().map(|u| u.problems()).sum::<usize>(),
                v.missing()
            )
        },
    ));
    facts.verification = Some(verdict::Checked {
        ok: v.ok,
        exit: v.exit_code(),
        left: v
            .users
            .iter()
            .filter(|u| u.status != "ok")
            .map(|u| {
                format!(
                    "user {}: {}",
                    u.old_login,
                    u.error.clone().unwrap_or_else(|| format!(
                        "{} missing, {} changed, {} duplicates",
                        u.counts.messages.missing,
                        u.counts.changed(),
                        u.counts.messages.duplicates
                    ))
                )
            })
            .collect(),
    });
    report.verification = Some(v);
    report.downtime_seconds = Some(now_unix().saturating_sub(first));

    // 6. The MX still parked, then the verdict.
    let t = now_unix();
    crate::failpoint::hit("cutover-before-next-step")?;
    let Some(back) = unless_stopped(not_parked(&spec, &parking)).await else {
        return Ok(report.interrupted("re-check", t));
    };
    facts.dns_back = back;
    let d = verdict::decide(&facts);
    if !d.next_step {
        let fix = if facts.dns_back.is_empty() {
            format!("fix what is listed, then run `{rerun}` again: the parking MX is seen at once and the final sync copies only what is left. Do not point the MX to the new server yet.")
        } else {
            format!("park the MX again on every nameserver, then run `{rerun}`: the final sync carries what reached the old server meanwhile. Do not point the MX to the new server yet.")
        };
        for l in &d.left {
            c.progress.println(&format!("NOT DONE: {l}"));
        }
        c.progress.println(&format!("FIX: {fix}"));
        return Ok(report.stop(d.left, fix, d.exit_code));
    }
    let targets = spec.domains().join(", ");
    let mut next = match &mx.new_target {
        Some(n) => format!(
            "point the MX of {targets} to {n} now (then `imapshift watch-mx --config {} --until {n}` shows it spreading)",
            cfg.path.display()
        ),
        None => format!("point the MX of {targets} to the new server now"),
    };
    if let Some(s) = co.shard {
        next = format!(
            "shard {}/{} is done ({} of {} users); once the cutover of every shard has said so, {next}",
            s.k,
            s.n,
            cfg.users.len(),
            cfg.users_total
        );
    }
    tracing::info!("cutover: NEXT STEP: {next}");
    c.progress.println(&format!("NEXT STEP: {next}"));
    report.next_step = Some(next);

    // 7. Follow: stray mail from stale DNS still reaching the old server.
    if let Some(d) = co.follow {
        let t = now_unix();
        let passes = follow(cfg, c.follow_opts, c.progress, d, co.follow_interval).await;
        report.followed = passes.carried;
        report.follow_passes = passes.passes;
        report.follow_failures = passes.failures.clone();
        report.phases.push(phase(
            "follow",
            t,
            format!(
                "{} messages carried from the old server in {} passes{}",
                passes.carried,
                passes.passes,
                if passes.failures.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} failed (exit codes {})",
                        passes.failures.len(),
                        passes
                            .failures
                            .iter()
                            .map(i32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ));
        // The verification passed; a follow pass that failed, or a Ctrl-C, still shows.
        let code = verdict::worst(&passes.failures);
        if code != exit::OK {
            report.exit_code = code;
            report.left.push(format!(
                "{} follow pass(es) failed: mail that reached the old server after NEXT STEP may not be on the new server yet",
                passes.failures.len()
            ));
            report.fix = Some(format!(
                "run `imapshift sync --config {}` (it carries what is new, exactly once)",
                cfg.path.display()
            ));
        }
    }
    Ok(report)
}

/// Users whose old INBOX is watched with IDLE during `--follow` (more would hold too many
/// connections; the interval passes still cover everyone).
pub const IDLE_MAX_USERS: usize = 50;

/// What the follow passes did.
#[derive(Clone, Debug, Default)]
struct FollowPasses {
    carried: u64,
    passes: u64,
    /// The exit code of every pass that was not 0 (130 for a Ctrl-C between passes).
    failures: Vec<i32>,
}

/// Passes until `duration` is over: one every `interval`, one at once when IDLE on an old INBOX
/// reports new mail, and a last one that starts at (or after) the deadline, so mail that arrived
/// during the pass before it is carried too.
async fn follow(
    cfg: &Config,
    opts: &EngineOptions,
    progress: &Progress,
    duration: Duration,
    interval: Duration,
) -> FollowPasses {
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
    let mut done = FollowPasses::default();
    loop {
        let now = tokio::time::Instant::now();
        if now < deadline {
            tokio::select! {
                _ = tokio::time::sleep(interval.min(deadline - now)) => {}
                _ = wake.notified() => {
                    tracing::info!("follow: new mail on the old server (IDLE)");
                }
                // Ctrl-C between passes: no need to wait for the interval.
                _ = async {
                    while !crate::failpoint::stop_requested() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                } => {}
            }
        }
        if crate::failpoint::stop_requested() {
            done.failures.push(exit::INTERRUPTED);
            break;
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = crate::failpoint::hit("follow-pass") {
            done.failures.push(crate::runner::exit_code_for(&e));
            continue;
        }
        let mut pass_opts = opts.clone();
        pass_opts.as_of_unix = now_unix();
        done.passes += 1;
        match crate::runner::run_sync(cfg, &pass_opts, progress, &[]).await {
            Ok(r) => {
                if r.copied > 0 {
                    tracing::info!("follow: carried {} messages", r.copied);
                }
                done.carried += r.copied;
                if r.exit_code != exit::OK {
                    tracing::warn!(
                        "follow: pass {} ended with exit {}",
                        done.passes,
                        r.exit_code
                    );
                    done.failures.push(r.exit_code);
                }
            }
            Err(e) => {
                tracing::warn!("follow: pass {} failed: {e}", done.passes);
                done.failures.push(crate::runner::exit_code_for(&e));
            }
        }
        // The pass that started at or after the deadline was the last one.
        if started >= deadline || done.failures.contains(&exit::INTERRUPTED) {
            break;
        }
    }
    for w in watchers {
        w.abort();
    }
    done
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
    if !r.left.is_empty() {
        s.push_str(&if r.next_step.is_some() {
            format!("LEFT after the next step (exit {}):\n", r.exit_code)
        } else {
            format!(
                "NOT DONE (exit {}): do not point the MX to the new server yet\n",
                r.exit_code
            )
        });
        for l in &r.left {
            s.push_str(&format!("  {l}\n"));
        }
    }
    if let Some(f) = &r.fix {
        s.push_str(&format!("fix: {f}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(ttl: u32) -> crate::mx::ttl::TtlSeen {
        crate::mx::ttl::TtlSeen {
            ttl,
            seen_unix: 1_700_000_000,
            domain: "example.com".into(),
            nameserver: "ns1".into(),
            source: "preflight".into(),
            targets: "10 old-mx.example.net".into(),
        }
    }

    /// The largest of the watch's TTL, the remembered one and [mx].max_ttl wins, and says why.
    #[test]
    fn the_ttl_to_wait_is_the_largest_that_may_be_cached() {
        assert_eq!(ttl_to_wait(None, None, 300).0, 300);
        assert!(ttl_to_wait(None, None, 300).1.contains("[mx].max_ttl"));
        let (t, why) = ttl_to_wait(Some(600), None, 300);
        assert_eq!(t, 600);
        assert!(why.contains("this watch"), "{why}");
        let r = seen(86_400);
        let (t, why) = ttl_to_wait(Some(600), Some(&r), 300);
        assert_eq!(t, 86_400);
        assert!(why.contains("seen by preflight"), "{why}");
        let small = seen(60);
        assert_eq!(ttl_to_wait(Some(120), Some(&small), 300).0, 300);
    }
}
