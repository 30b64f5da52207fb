//! Runs a whole migration: every user, in parallel, with reconnects, and the run report.
//!
//! This is where the IMAP sessions are opened for the engine: a user whose connection breaks
//! (timeout, BYE, malformed reply) is reconnected with backoff and resumed; every engine step is
//! idempotent, so a resumed user copies nothing twice. A user that cannot be synced (wrong
//! password, unreachable host) is reported, and the other users go on.

use crate::config::{Config, UserConfig};
use crate::engine::{self, AccountTotals, EngineOptions, Failure, FolderReport};
use crate::error::{exit, Error, Result, Retry, Scope};
use crate::imap::ImapSession;
use crate::progress::Progress;
use crate::state::{AccountKey, StateStore};
use crate::store::{self as engine_store, MailStore};
use futures::StreamExt;
use serde::Serialize;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Connection attempts in a row without progress per user before giving up on transient errors.
const MAX_ATTEMPTS: u32 = 4;

/// Connection attempts per user in one run, progress or not.
const MAX_TOTAL_ATTEMPTS: u32 = 32;

/// The outcome of one user.
#[derive(Clone, Debug, Serialize)]
pub struct UserReport {
    pub old_login: String,
    pub new_login: String,
    /// `ok`, `partial` (some messages or folders failed) or `failed` (the user could not be synced).
    pub status: &'static str,
    pub error: Option<String>,
    pub error_scope: Option<Scope>,
    pub folders_synced: usize,
    pub folders_created: u64,
    pub subscribed: u64,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub retries: u32,
    /// The most connections per server this user had open at once (folders in parallel).
    pub connections: usize,
    pub finished_unix: u64,
    /// Folders renamed on the old server and followed on the new one: (from, to).
    pub renamed_folders: Vec<(String, String)>,
    /// Folders deleted on the old server, deleted on the new one (--propagate-deletes).
    pub deleted_folders: Vec<String>,
    /// Folders deleted on the old server whose copies were kept.
    pub gone_folders: Vec<String>,
    /// Messages `[filters]` left out (size, age): not copied, by the configuration.
    pub filtered: u64,
    /// Old folders `[filters]` left out by name: not synced, by the configuration.
    pub folders_excluded: Vec<String>,
    /// Old folders in other users' or shared namespaces: never synced.
    pub folders_outside: Vec<String>,
    pub failures: Vec<Failure>,
    pub folders: Vec<FolderReport>,
}

/// The outcome of the run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub started_unix: u64,
    pub seconds: f64,
    pub users: Vec<UserReport>,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub exit_code: i32,
    /// Why the state store failed in this run (a full disk: the fix named), if it did: the run
    /// stopped starting users and exits 4; the next run resumes.
    pub state_error: Option<String>,
}

pub(crate) fn account_key(cfg: &Config, u: &UserConfig) -> AccountKey {
    AccountKey::new(
        &format!("{}:{}", cfg.old.host, cfg.old.port),
        &u.old_login,
        &format!("{}:{}", cfg.new.host, cfg.new.port),
        &u.new_login,
    )
}

/// Connection caps per server, shared by all users of the run.
struct ConnectionCaps {
    old: std::sync::Arc<tokio::sync::Semaphore>,
    new: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Extra session pairs for one user (folders in parallel): only when both servers' caps have a
/// free slot right now, so they never make another user wait for its first connection.
struct ExtraPairs<'a> {
    cfg: &'a Config,
    user: &'a UserConfig,
    caps: &'a ConnectionCaps,
}

impl engine_store::SessionSource<ImapSession, ImapSession> for ExtraPairs<'_> {
    async fn open_pair(&self) -> Option<engine_store::SessionPair<ImapSession, ImapSession>> {
        let old_slot = self.caps.old.clone().try_acquire_owned().ok()?;
        let new_slot = self.caps.new.clone().try_acquire_owned().ok()?;
        let (u, cfg) = (self.user, self.cfg);
        let (o, n) = tokio::join!(
            ImapSession::connect(&cfg.old, &u.old_login, u.old_password.as_ref(), true),
            ImapSession::connect(&cfg.new, &u.new_login, u.new_password.as_ref(), false),
        );
        match (o, n) {
            (Ok(old), Ok(new)) => Some(engine_store::SessionPair {
                old,
                new,
                hold: Box::new((old_slot, new_slot)),
            }),
            (o, n) => {
                // The main pair goes on alone; a real problem shows on it.
                for e in [o.err(), n.err()].into_iter().flatten() {
                    tracing::debug!("no extra connection: {e}");
                }
                None
            }
        }
    }
}

async fn sync_user(
    cfg: &Config,
    user: &UserConfig,
    state: &StateStore,
    opts: &EngineOptions,
    progress: &Progress,
    caps: &ConnectionCaps,
) -> UserReport {
    let started = Instant::now();
    let acct = account_key(cfg, user);
    let up = progress.user(&user.old_login);
    let mut totals = AccountTotals::default();
    let mut attempt = 0;
    // Attempts in a row that got nowhere: the reconnect budget. An attempt that copied or
    // narrowed something down (one unreadable message costs a reconnect or two when the server
    // drops the connection on it) starts the count again, up to MAX_TOTAL_ATTEMPTS.
    let mut fruitless = 0;
    let mut error: Option<Error> = None;
    loop {
        attempt += 1;
        let mark = totals.progress_mark();
        let res: Result<()> = async {
            // A store that failed (a full disk) records nothing more: start nothing.
            state.usable()?;
            // One connection per side, within each server's cap (held until logout).
            let _old_slot = caps.old.acquire().await.expect("semaphore never closed");
            let _new_slot = caps.new.acquire().await.expect("semaphore never closed");
            let (o, n) = tokio::join!(
                ImapSession::connect(&cfg.old, &user.old_login, user.old_password.as_ref(), true),
                ImapSession::connect(&cfg.new, &user.new_login, user.new_password.as_ref(), false),
            );
            let (mut o, mut n) = match (o, n) {
                (Ok(o), Ok(n)) => (o, n),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
                // Both sides failed: say both, and retry only if both may recover.
                (Err(a), Err(b)) => {
                    let retry = if a.retry == Retry::Transient && b.retry == Retry::Transient {
                        Retry::Transient
                    } else {
                        Retry::Fix
                    };
                    return Err(Error::new(Scope::Account, retry, format!("{a}; and {b}")));
                }
            };
            let extra = ExtraPairs { cfg, user, caps };
            let r =
                engine::sync_account(&mut o, &mut n, &extra, state, &acct, opts, &up, &mut totals)
                    .await;
            o.logout().await;
            n.logout().await;
            r
        }
        .await;
        match res {
            Ok(()) => break,
            Err(e)
                if e.retry == Retry::Transient
                    && attempt < MAX_TOTAL_ATTEMPTS
                    && (totals.progress_mark() > mark || fruitless + 1 < MAX_ATTEMPTS) =>
            {
                let wait = if totals.progress_mark() > mark {
                    fruitless = 0;
                    Duration::from_millis(500)
                } else {
                    fruitless += 1;
                    Duration::from_millis(500 * (1 << (fruitless - 1).min(5)))
                };
                tracing::warn!(
                    "{e}; reconnecting in {:.1}s (attempt {}, {fruitless} of {MAX_ATTEMPTS} in a row without progress)",
                    wait.as_secs_f64(),
                    attempt + 1
                );
                up.retry(attempt + 1, wait, &e.to_string());
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    totals.dedup_failures();
    // A folder cut short (interrupted, or the last attempt failed) still reports what it did.
    let cut_short: Vec<FolderReport> = totals.partial.drain(..).collect();
    totals.folders.extend(cut_short);
    let status = if error.is_some() {
        "failed"
    } else if !totals.failures.is_empty() {
        "partial"
    } else {
        "ok"
    };
    if let Some(e) = &error {
        tracing::error!("user not synced: {e}");
    }
    let error_text = error.as_ref().map(|e| e.message.clone());
    up.finish(&crate::progress::UserOutcome {
        status,
        copied: totals.copied(),
        skipped: totals.skipped(),
        failed: totals.failed(),
        bytes: totals.bytes(),
        retries: attempt - 1,
        error: error_text.as_deref(),
    });
    UserReport {
        old_login: user.old_login.clone(),
        new_login: user.new_login.clone(),
        status,
        error_scope: error.as_ref().map(|e| e.scope),
        error: error.map(|e| e.message),
        folders_synced: totals.folders.len(),
        folders_created: totals.folders_created,
        subscribed: totals.subscribed,
        copied: totals.copied(),
        skipped: totals.skipped(),
        failed: totals.failed(),
        bytes: totals.bytes(),
        seconds: started.elapsed().as_secs_f64(),
        retries: attempt - 1,
        connections: totals.connection_pairs.max(1),
        finished_unix: unix_now(),
        renamed_folders: totals.renamed.clone(),
        deleted_folders: totals.folders_deleted.clone(),
        gone_folders: totals.folders_gone.clone(),
        filtered: totals.filtered(),
        folders_excluded: totals.folders_excluded.clone(),
        folders_outside: totals.folders_outside.clone(),
        failures: totals.failures,
        folders: totals.folders,
    }
}

/// Syncs the users (all, or those named in `only`).
pub async fn run_sync(
    cfg: &Config,
    opts: &EngineOptions,
    progress: &Progress,
    only: &[String],
) -> Result<RunReport> {
    for name in only {
        if !cfg.users.iter().any(|u| &u.old_login == name) {
            return Err(Error::config(format!(
                "--user \"{name}\" is not in {}: name an old login from the users list",
                cfg.path.display()
            )));
        }
    }
    // A disk that is already full is refused before anything is copied.
    crate::state::files::check_room(&cfg.state_dir).map_err(Error::state)?;
    let state = StateStore::open(&cfg.state_dir)?;
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let users: Vec<(usize, &UserConfig)> = cfg
        .users
        .iter()
        .enumerate()
        .filter(|(_, u)| only.is_empty() || only.contains(&u.old_login))
        .collect();
    progress.start_run(users.len(), cfg.sync.jobs, opts.dry_run);
    let state_ref = &state;
    let unlimited = tokio::sync::Semaphore::MAX_PERMITS;
    let caps = ConnectionCaps {
        old: std::sync::Arc::new(tokio::sync::Semaphore::new(
            cfg.old.max_connections.unwrap_or(unlimited),
        )),
        new: std::sync::Arc::new(tokio::sync::Semaphore::new(
            cfg.new.max_connections.unwrap_or(unlimited),
        )),
    };
    let caps = &caps;
    let mut reports: Vec<(usize, UserReport)> = futures::stream::iter(users)
        .filter(|_| std::future::ready(!crate::failpoint::stop_requested()))
        .map(|(i, u)| async move {
            // Every log line of this user's sync names the user.
            let span = tracing::info_span!("sync", user = %u.old_login);
            let report = sync_user(cfg, u, state_ref, opts, progress, caps)
                .instrument(span)
                .await;
            (i, report)
        })
        .buffer_unordered(cfg.sync.jobs)
        .collect()
        .await;
    reports.sort_by_key(|(i, _)| *i);
    let users: Vec<UserReport> = reports.into_iter().map(|(_, r)| r).collect();
    if !opts.dry_run {
        record_last_runs(cfg, &state, &users);
    }
    // A failed flush marks the store failed: said in the report, never a lost report.
    let _ = state.flush().await;
    let state_error = state.failure().map(|e| e.message);
    if let Some(e) = &state_error {
        tracing::error!("{e}");
    }
    let exit_code = if crate::failpoint::stop_requested() {
        exit::INTERRUPTED
    } else if state_error.is_some() || users.iter().any(|u| u.error_scope == Some(Scope::Fatal)) {
        exit::FATAL
    } else if users.iter().any(|u| u.error.is_some()) {
        exit::ACCOUNT
    } else if users.iter().any(|u| u.failed > 0 || !u.failures.is_empty()) {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let report = RunReport {
        dry_run: opts.dry_run,
        started_unix,
        seconds: started.elapsed().as_secs_f64(),
        copied: users.iter().map(|u| u.copied).sum(),
        skipped: users.iter().map(|u| u.skipped).sum(),
        failed: users.iter().map(|u| u.failed).sum(),
        bytes: users.iter().map(|u| u.bytes).sum(),
        users,
        exit_code,
        state_error,
    };
    if !opts.dry_run {
        write_run_reports(&cfg.state_dir, &report);
    }
    Ok(report)
}

/// Each user's report into the state store (for `imapshift status`), while the store works.
fn record_last_runs(cfg: &Config, state: &StateStore, users: &[UserReport]) {
    for u in users {
        if state.failure().is_some() {
            return;
        }
        let acct = cfg
            .users
            .iter()
            .find(|c| c.old_login == u.old_login)
            .map(|c| account_key(cfg, c));
        if let Some(a) = acct {
            // A failure marks the store failed, which the run report says.
            let _ = state.set_last_run(&a, &serde_json::to_vec(u).unwrap_or_default());
        }
    }
}

/// The last run, for `verify` and people; and every run kept under runs/ by start time. A
/// report that cannot be written (a full disk) is a warning; an earlier `last-run.json` is then
/// removed, so that it is never read as this run's.
fn write_run_reports(state_dir: &std::path::Path, report: &RunReport) {
    use crate::state::files;
    let json = serde_json::to_vec_pretty(report).unwrap_or_default();
    let runs = state_dir.join("runs");
    let last = state_dir.join("last-run.json");
    let kept = runs.join(format!(
        "{}.json",
        crate::timefmt::rfc3339(report.started_unix).replace(':', "")
    ));
    for path in [&last, &kept] {
        let r = files::private_dir(&runs).and_then(|_| files::write_private(path, &json));
        let Err(e) = r else { continue };
        let why = files::write_error(state_dir, &e);
        if path == &last && std::fs::remove_file(&last).is_ok() {
            tracing::warn!(
                "cannot write the run report {}: {why}; the earlier report there was removed, so it is not taken for this run's",
                path.display()
            );
        } else {
            tracing::warn!("cannot write the run report {}: {why}", path.display());
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What `imapshift status` shows for one user.
#[derive(Clone, Debug, Serialize)]
pub struct UserStatus {
    pub old_login: String,
    pub new_login: String,
    pub folders: usize,
    pub mapped_messages: usize,
    pub pending_intents: usize,
    /// The last run's report of this user, if any.
    pub last_run: Option<serde_json::Value>,
}

/// Reads the state store; contacts no server.
pub fn status(cfg: &Config) -> Result<Vec<UserStatus>> {
    let state = StateStore::open(&cfg.state_dir)?;
    let mut out = Vec::new();
    for u in &cfg.users {
        let acct = account_key(cfg, u);
        let last_run = state
            .last_run(&acct)?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        out.push(UserStatus {
            old_login: u.old_login.clone(),
            new_login: u.new_login.clone(),
            folders: state.folder_states(&acct)?.len(),
            mapped_messages: state.mapped_count(&acct),
            pending_intents: state.intent_count(&acct),
            last_run,
        });
    }
    Ok(out)
}

/// The table printed by `imapshift status`.
pub fn render_status(users: &[UserStatus]) -> String {
    let mut out = format!(
        "{:<24} {:>7} {:>8} {:>7}  {}\n",
        "user", "folders", "mapped", "pending", "last run"
    );
    for u in users {
        let last = match &u.last_run {
            None => "never".to_string(),
            Some(r) => {
                let ago = unix_now().saturating_sub(r["finished_unix"].as_u64().unwrap_or(0));
                format!(
                    "{} {}s ago: {} copied, {} failed",
                    r["status"].as_str().unwrap_or("?"),
                    ago,
                    r["copied"].as_u64().unwrap_or(0),
                    r["failed"].as_u64().unwrap_or(0)
                )
            }
        };
        out.push_str(&format!(
            "{:<24} {:>7} {:>8} {:>7}  {last}\n",
            u.old_login, u.folders, u.mapped_messages, u.pending_intents
        ));
    }
    out
}

/// `5 copied, 1 skipped, 0 failed, 2.3 MB`, of a user's or the whole run's `[copied, skipped,
/// failed, bytes]`.
fn tally(verb: &str, [copied, skipped, failed, bytes]: [u64; 4]) -> String {
    format!(
        "{copied} {verb}, {skipped} skipped, {failed} failed, {:.1} MB",
        bytes as f64 / 1e6
    )
}

/// The human summary printed at the end of `sync`.
pub fn render_summary(r: &RunReport) -> String {
    let mut out = String::new();
    let verb = if r.dry_run { "to copy" } else { "copied" };
    for u in &r.users {
        out.push_str(&format!(
            "{:<8} {} -> {}: {} folders, {}, {:.1} s{}\n",
            u.status.to_uppercase(),
            u.old_login,
            u.new_login,
            u.folders_synced,
            tally(verb, [u.copied, u.skipped, u.failed, u.bytes]),
            u.seconds,
            if u.retries > 0 {
                format!(", {} reconnects", u.retries)
            } else {
                String::new()
            }
        ));
        if let Some(e) = &u.error {
            out.push_str(&format!("         error: {e}\n"));
        }
        if let Some(l) = filtered_line(u) {
            out.push_str(&l);
        }
        if !u.folders_outside.is_empty() {
            out.push_str(&format!(
                "         not migrated (other users' or shared folders): {}\n",
                u.folders_outside
                    .iter()
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if r.dry_run {
            for f in u
                .folders
                .iter()
                .filter(|f| f.copied + f.flags_updated + f.deleted + f.kept > 0 || f.note.is_some())
            {
                out.push_str(&dry_run_line(f));
            }
        }
        for f in &u.failures {
            out.push_str(&failed_line(&u.old_login, f));
        }
    }
    out.push_str(&format!(
        "total: {} users, {} in {:.1} s\n",
        r.users.len(),
        tally(verb, [r.copied, r.skipped, r.failed, r.bytes]),
        r.seconds
    ));
    if let Some(e) = &r.state_error {
        out.push_str(&format!("STOPPED: {e}\n"));
    }
    let filtered: u64 = r.users.iter().map(|u| u.filtered).sum();
    let excluded: usize = r.users.iter().map(|u| u.folders_excluded.len()).sum();
    if filtered + excluded as u64 > 0 {
        out.push_str(&format!(
            "left out by [filters] (not copied, by the configuration): {filtered} messages, {excluded} folders\n"
        ));
    }
    out
}

/// What `[filters]` left out of one user, if anything: never silently.
fn filtered_line(u: &UserReport) -> Option<String> {
    if u.filtered == 0 && u.folders_excluded.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if u.filtered > 0 {
        parts.push(format!("{} messages (size or age)", u.filtered));
    }
    if !u.folders_excluded.is_empty() {
        parts.push(format!(
            "{} folders ({})",
            u.folders_excluded.len(),
            u.folders_excluded
                .iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Some(format!(
        "         left out by [filters]: {}\n",
        parts.join(", ")
    ))
}

/// A folder of the dry-run summary: names as people read them (`Entwürfe -> Entwürfe`), the
/// counts, and where a collision put it.
fn dry_run_line(f: &FolderReport) -> String {
    let note = f
        .note
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!(
        "         {} -> {}: {} to copy ({:.1} MB), {} flag updates, {} to delete, {} expunged on old kept{note}\n",
        f.old,
        f.new,
        f.copied,
        f.bytes as f64 / 1e6,
        f.flags_updated,
        f.deleted,
        f.kept
    )
}

/// A failure of the summary: the folder's name in quotes (as people read it, never escaped).
fn failed_line(login: &str, f: &Failure) -> String {
    let uid = f
        .old_uid
        .map(|u| format!(" old UID {u}"))
        .unwrap_or_default();
    let mut which = Vec::new();
    if let Some(id) = &f.message_id {
        which.push(format!("Message-ID {id}"));
    }
    if let Some(n) = f.size {
        which.push(format!("{n} bytes"));
    }
    let which = if which.is_empty() {
        String::new()
    } else {
        format!(" ({})", which.join(", "))
    };
    format!(
        "         FAILED user {login} folder \"{}\"{uid}{which}: {}\n",
        f.folder, f.reason
    )
}

/// Exit code for an error that stopped the run before any user was synced.
pub fn exit_code_for(e: &Error) -> i32 {
    // Whatever stopped a run the admin interrupted, the run was interrupted.
    if crate::failpoint::stop_requested() {
        return exit::INTERRUPTED;
    }
    match (e.scope, e.retry) {
        (Scope::Fatal, Retry::Fix) => exit::CONFIG,
        (Scope::Fatal, _) => exit::FATAL,
        _ => exit::ACCOUNT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FolderInfo;
    use crate::types::MailboxPath;

    fn folder(wire: &str, attrs: &[&str]) -> FolderInfo {
        FolderInfo {
            name: MailboxPath::new(wire).unwrap(),
            delimiter: Some('/'),
            attrs: attrs.iter().map(|s| s.to_string()).collect(),
            subscribed: false,
        }
    }

    fn user(folders: Vec<FolderReport>, failures: Vec<Failure>) -> UserReport {
        UserReport {
            old_login: "alice".into(),
            new_login: "alice".into(),
            status: if failures.is_empty() { "ok" } else { "partial" },
            error: None,
            error_scope: None,
            folders_synced: folders.len(),
            folders_created: 0,
            subscribed: 0,
            copied: folders.iter().map(|f| f.copied).sum(),
            skipped: 0,
            failed: failures.len() as u64,
            bytes: 0,
            seconds: 0.5,
            retries: 0,
            connections: 1,
            finished_unix: 0,
            renamed_folders: vec![],
            deleted_folders: vec![],
            gone_folders: vec![],
            filtered: folders.iter().map(|f| f.filtered).sum(),
            folders_excluded: vec![],
            folders_outside: vec![],
            failures,
            folders,
        }
    }

    fn run(dry_run: bool, users: Vec<UserReport>) -> RunReport {
        RunReport {
            dry_run,
            started_unix: 0,
            seconds: 1.0,
            copied: users.iter().map(|u| u.copied).sum(),
            skipped: 0,
            failed: users.iter().map(|u| u.failed).sum(),
            bytes: 0,
            users,
            exit_code: 0,
            state_error: None,
        }
    }

    /// What [filters] left out is said per user and in the total, never silently.
    #[test]
    fn the_summary_states_what_filters_left_out() {
        let f = FolderReport {
            old: "INBOX".into(),
            new: "INBOX".into(),
            copied: 3,
            filtered: 2,
            ..Default::default()
        };
        let mut u = user(vec![f], vec![]);
        u.folders_excluded = vec!["Spam".into()];
        let text = render_summary(&run(false, vec![u]));
        assert!(
            text.contains("left out by [filters]: 2 messages (size or age), 1 folders (\"Spam\")"),
            "{text}"
        );
        assert!(
            text.contains(
                "left out by [filters] (not copied, by the configuration): 2 messages, 1 folders"
            ),
            "{text}"
        );
        let plain = render_summary(&run(false, vec![user(vec![], vec![])]));
        assert!(!plain.contains("left out"), "{plain}");
    }

    /// The dry-run summary of a real folder plan (Dovecot's stock `Sent` and `Sent Messages`, a
    /// non-ASCII folder in mUTF-7 on the wire) names folders as people read them, with the note
    /// where a collision put one; a failure quotes the name without escaping it.
    #[test]
    fn summaries_print_folder_names_not_debug_forms() {
        let old = [
            folder("INBOX", &[]),
            folder("Entw&APw-rfe", &["\\Drafts"]),
            folder("Sent", &["\\Sent"]),
            folder("Sent Messages", &["\\Sent"]),
        ];
        let new = [folder("INBOX", &[]), folder("Sent", &["\\Sent"])];
        let plan = crate::plan::plan_folders(&old, &new);
        // As the engine reports a folder.
        let folders: Vec<FolderReport> = plan
            .mappings
            .iter()
            .map(|m| FolderReport {
                old: m.old.display(),
                new: m.new.display(),
                copied: 7,
                note: m.note(),
                ..Default::default()
            })
            .collect();
        let failures = vec![Failure {
            folder: MailboxPath::new("Entw&APw-rfe").unwrap().display(),
            old_uid: Some(5),
            reason: "NO [LIMIT] message too large".into(),
            ..Default::default()
        }];
        let out = render_summary(&run(true, vec![user(folders, failures)]));
        let has = |line: &str| {
            assert!(out.contains(line), "no {line:?} in:\n{out}");
        };
        has("         INBOX -> INBOX: 7 to copy (0.0 MB), 0 flag updates");
        has("         Entwürfe -> Entwürfe: 7 to copy");
        has("         Sent -> Sent: 7 to copy");
        has(
            " Sent Messages -> Sent Messages: 7 to copy (0.0 MB), 0 flag updates, 0 to delete, \
             0 expunged on old kept (keeps its own name: the new \\Sent folder \"Sent\" holds \
             \"Sent\")\n",
        );
        has("         FAILED user alice folder \"Entwürfe\" old UID 5: NO [LIMIT] message too large\n");
        for debug in ["MailboxPath(", "\\u{", "&APw-", "\\\""] {
            assert!(!out.contains(debug), "{debug} in:\n{out}");
        }
        // Not a dry run: no per-folder lines, the failure still named.
        let mut real = run(false, vec![user(vec![], vec![])]);
        real.users[0].failures.push(Failure {
            folder: "Sent \"old\"".into(),
            old_uid: None,
            reason: "why".into(),
            ..Default::default()
        });
        let out = render_summary(&real);
        assert!(out.contains("folder \"Sent \"old\"\": why"), "{out}");
        assert!(!out.contains(" -> Sent"), "{out}");
    }

    #[test]
    fn status_table_counts_are_numbers() {
        let users = [UserStatus {
            old_login: "bob".into(),
            new_login: "bob".into(),
            folders: 2,
            mapped_messages: 10,
            pending_intents: 0,
            last_run: Some(serde_json::json!({"status": "ok", "copied": 10})),
        }];
        let out = render_status(&users);
        assert!(out.contains("ok "), "{out}");
        assert!(out.contains(": 10 copied, 0 failed"), "{out}");
    }
}
