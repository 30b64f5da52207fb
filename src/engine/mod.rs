//! The executor: applies a plan to two [`MailStore`]s, journaling before every side effect.
//!
//! For each folder it examines the old side, resolves intents left by an interrupted run, asks
//! the planner what to copy, then streams batches: the old side fetches batch k+1 while the new
//! side appends batch k (MULTIAPPEND), so both connections stay busy and no message costs a round
//! trip of its own. Before each APPEND the intents are journaled and flushed; after it the UID
//! maps are committed. One refused message fails that message; one broken folder fails that
//! folder; the account goes on.

mod folder;
mod follow;
mod recover;

use crate::error::{Error, Result, Scope};
use crate::folders::delimiter_of;
use crate::plan::{plan_folders_in, FolderMapping, Mapped};
use crate::progress::UserProgress;
use crate::state::{AccountKey, FolderState, MapEntry, StateStore};
use crate::store::{FolderStatus, MailStore, MsgSummary, SessionPair, SessionSource};
use crate::types::{MailboxPath, Uid};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What the engine needs to know besides the stores.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub batch_bytes: u64,
    pub batch_messages: usize,
    /// Plan only: no CREATE, SUBSCRIBE, APPEND, no state change.
    pub dry_run: bool,
    /// Delete new copies of messages the old server expunged.
    pub propagate_deletes: bool,
    /// Accept a changed old UIDVALIDITY even when few messages are recognised.
    pub force_remap: bool,
    /// Folders and messages to take.
    pub filters: crate::filters::Filters,
    /// Where folders go (`[[folder_rules]]`).
    pub folder_rules: Vec<crate::plan::FolderRule>,
    /// The run's budget for message bodies in flight, shared by all users.
    pub memory: Option<std::sync::Arc<MemoryBudget>>,
    /// Rate limits of the old and the new server, shared by all users.
    pub old_rate: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
    pub new_rate: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
    /// Session pairs one account may use at once (folders in parallel), 1 = one pair.
    pub connections_per_user: usize,
    /// The "now" of the age filters (Unix seconds), fixed once per run so that every folder of
    /// the run, and the verification that checks it, cut at the same instant.
    pub as_of_unix: u64,
}

/// An account opens extra session pairs only when its folders to read hold at least this many
/// messages not yet copied (a login costs more than it saves on a small delta).
pub const PARALLEL_MIN_MESSAGES: u64 = 500;

/// Bytes of message bodies in flight across all users (fetched and not yet appended), so peak
/// memory does not grow with the number of users. Counted in KiB; a batch larger than the whole
/// budget takes all of it (and runs alone).
#[derive(Debug)]
pub struct MemoryBudget {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
    total_kib: u32,
}

impl MemoryBudget {
    pub fn new(bytes: u64) -> MemoryBudget {
        let total_kib = (bytes / 1024).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        MemoryBudget {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits until `bytes` fit in the budget.
    pub async fn acquire(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let want = (bytes.div_ceil(1024).max(1)).min(u64::from(self.total_kib)) as u32;
        self.kib
            .clone()
            .acquire_many_owned(want)
            .await
            .expect("the budget semaphore is never closed")
    }
}

/// Batches in flight per user: one being fetched, one waiting, one being appended.
pub const BATCHES_IN_FLIGHT: u64 = 3;

/// What one active user costs besides message bodies (two connections with their buffers,
/// folder listings, parser state, allocator slack). Measured with heaptrack and peak RSS at 1,
/// 4 and 16 parallel users: about 0.85 MiB; rounded up.
pub const USER_RESERVE: u64 = 1024 * 1024;

/// Message bodies always get at least this much of the budget.
pub const MIN_BODY_BUDGET: u64 = 4 * 1024 * 1024;

/// How a run splits `[sync] memory_budget`: a fixed reserve per active user, the rest for message
/// bodies in flight; and the batch size that lets every active user keep its batches in flight
/// within that (otherwise users would take turns instead of overlapping fetch and append).
/// With it, peak memory stays near the budget whatever `jobs` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Bytes of message bodies in flight, all users together.
    pub bodies: u64,
    /// Bytes per batch (FETCH and MULTIAPPEND).
    pub batch_bytes: u64,
    /// The budget is too small for `jobs` users: memory will exceed it by about this much.
    pub over_by: u64,
}

impl MemoryPlan {
    pub fn new(memory_budget: u64, batch_bytes: u64, active_users: usize) -> MemoryPlan {
        let users = active_users.max(1) as u64;
        let reserve = users * USER_RESERVE;
        let bodies = memory_budget.saturating_sub(reserve).max(MIN_BODY_BUDGET);
        let over_by = (reserve + bodies).saturating_sub(memory_budget);
        // Never below 256 KiB: past that, round trips and the new server's commit (fsync) per
        // APPEND cost more than the memory saves. A user-chosen smaller batch_bytes stays.
        let per_user = bodies / (BATCHES_IN_FLIGHT * users);
        MemoryPlan {
            bodies,
            batch_bytes: batch_bytes.min(per_user.max(256 * 1024)),
            over_by,
        }
    }
}

/// A message or folder that failed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failure {
    pub folder: String,
    pub old_uid: Option<u32>,
    pub reason: String,
    /// A message's Message-ID and size, when known (a message the new server refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// Per-folder counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderReport {
    pub old: String,
    pub new: String,
    /// Messages in the old folder.
    pub messages: u32,
    /// Copied in this run (or, with --dry-run, to copy).
    pub copied: u64,
    /// Already on the new server from earlier runs.
    pub skipped: u64,
    pub failed: u64,
    /// Disappeared from the old server between listing and fetching.
    pub vanished: u64,
    pub bytes: u64,
    /// New copies whose flags were changed to the old message's.
    pub flags_updated: u64,
    /// New copies deleted because the old server expunged the message (--propagate-deletes).
    pub deleted: u64,
    /// Copies of messages expunged on the old server, kept (deletions not propagated).
    pub kept: u64,
    /// Messages left out by [filters] (size, age).
    pub filtered: u64,
    /// Map entries rebuilt by matching content (state lost, UIDVALIDITY changed).
    pub remapped: u64,
    /// Intents of an interrupted run resolved: found on the new server / not found.
    pub recovered: u64,
    pub requeued: u64,
    /// Messages copied or updated without some flags or keywords the new server refused (named
    /// in one warning per folder, and in `flags_dropped_names`).
    pub flags_dropped: u64,
    /// The flags and keywords the new server refused in this folder (in this run).
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub flags_dropped_names: std::collections::BTreeSet<String>,
    /// Late copies of an interrupted APPEND (committed by the new server after imapshift had
    /// given up on it and copied the message again) found: removed as duplicates, or taken as
    /// the copy.
    pub late_copies: u64,
    /// Why the folder does not simply go where its name takes it, in words
    /// ([`crate::plan::FolderMapping::note`]: a collision resolved, a rule, an earlier run, a
    /// look-alike), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Old UIDs that were in a batch when a connection broke: fetched and appended alone on the
    /// retry, so that one message that breaks the connection is found (carried across attempts).
    #[serde(skip)]
    pub suspects: std::collections::BTreeSet<Uid>,
    /// The old server's headers could not be read to look for copies made by an earlier run
    /// whose state is lost: not looked for again in this run.
    #[serde(skip)]
    pub skip_adoption: bool,
    /// How often each old UID broke the connection while handled alone.
    #[serde(skip)]
    pub broke_alone: std::collections::BTreeMap<Uid, u32>,
    /// Old UIDs that broke the connection twice when handled alone: skipped (and failed) for the
    /// rest of this run.
    #[serde(skip)]
    pub unreadable: std::collections::BTreeMap<Uid, String>,
}

/// What happened to one account.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountTotals {
    pub folders: Vec<FolderReport>,
    pub folders_created: u64,
    pub subscribed: u64,
    pub failures: Vec<Failure>,
    /// Folders renamed on the old server, renamed on the new one too: (old name, new name).
    pub renamed: Vec<(String, String)>,
    /// Folders deleted on the old server: their copies deleted on the new one (propagation on).
    pub folders_deleted: Vec<String>,
    /// Folders deleted on the old server whose copies are kept (propagation off).
    pub folders_gone: Vec<String>,
    /// The most session pairs used at once (folders in parallel).
    pub connection_pairs: usize,
    /// Old folders `[filters]` leave out (include_folders / exclude_folders): not synced.
    pub folders_excluded: Vec<String>,
    /// Old folders in other users' or shared namespaces: never synced.
    pub folders_outside: Vec<String>,
    /// Folders interrupted by a lost connection: their counts carry over to the retry.
    #[serde(skip)]
    pub partial: Vec<FolderReport>,
}

impl AccountTotals {
    pub fn copied(&self) -> u64 {
        self.folders.iter().map(|f| f.copied).sum()
    }
    pub fn skipped(&self) -> u64 {
        self.folders.iter().map(|f| f.skipped).sum()
    }
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }
    pub fn bytes(&self) -> u64 {
        self.folders.iter().map(|f| f.bytes).sum()
    }
    /// Messages `[filters]` left out (size, age).
    pub fn filtered(&self) -> u64 {
        self.folders.iter().map(|f| f.filtered).sum()
    }
    /// How far the account got, summed over what only grows within a run: messages copied and
    /// messages narrowed down (suspects found, breaks alone counted, unreadable ones named). An
    /// attempt that raised it was not in vain, so it does not use up the reconnect budget.
    pub fn progress_mark(&self) -> u64 {
        let narrowed = |f: &FolderReport| {
            (f.suspects.len() + f.unreadable.len()) as u64
                + u64::from(f.skip_adoption)
                + f.broke_alone.values().map(|&n| u64::from(n)).sum::<u64>()
        };
        self.folders
            .iter()
            .chain(&self.partial)
            .map(|f| f.copied + f.recovered + narrowed(f))
            .sum()
    }

    /// One entry per failed message or folder: a retried attempt reports it again.
    pub fn dedup_failures(&mut self) {
        let mut seen = HashSet::new();
        let mut kept: Vec<Failure> = Vec::new();
        for f in self.failures.drain(..).rev() {
            if seen.insert((
                f.folder.clone(),
                f.old_uid,
                f.old_uid.is_none().then(|| f.reason.clone()),
            )) {
                kept.push(f);
            }
        }
        kept.reverse();
        self.failures = kept;
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Both folder trees and the plan between them, as every command sees them.
pub struct FolderView {
    /// Every old folder. Those left out by `[filters]` still count as present on the old
    /// server (they have not vanished).
    pub old_all: Vec<crate::store::FolderInfo>,
    /// The old folders `[filters]` take (of the user's own: personal namespace).
    pub taken: Vec<crate::store::FolderInfo>,
    /// Old folders in other users' or shared namespaces: never taken.
    pub outside: Vec<crate::store::FolderInfo>,
    /// How both servers name the user's folders (personal prefix, delimiter).
    pub names: crate::plan::Names,
    pub new: Vec<crate::store::FolderInfo>,
    /// Where each taken old folder goes (sync, preflight and verify use the same plan).
    pub plan: crate::plan::FolderPlan,
}

/// The new folder each old folder went to in earlier runs (old wire name to new wire name),
/// from the state store: the plan keeps them ([`crate::plan::plan_folders_with`]).
pub fn earlier_targets(
    state: &StateStore,
    acct: &AccountKey,
) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(state
        .folder_states(acct)?
        .into_iter()
        .map(|(old, st)| (old, st.new_folder))
        .collect())
}

/// Lists both servers' folders and plans the mapping, keeping the new folders of `earlier` runs.
pub async fn folder_view<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    filters: &crate::filters::Filters,
    rules: &[crate::plan::FolderRule],
    earlier: &std::collections::BTreeMap<String, String>,
) -> Result<FolderView> {
    // Each listing asks NAMESPACE in the same round trip; `namespaces()` then costs nothing.
    let old_all = old.list_folders().await?;
    let new_all = new.list_folders().await?;
    let new_ns = new.namespaces().await?;
    let old_ns = old.namespaces().await?;
    let new = new_all;
    // Other users' and shared folders are never taken: listed, not migrated.
    let (personal, outside): (Vec<_>, Vec<_>) = old_all
        .iter()
        .cloned()
        .partition(|f| old_ns.is_personal(&f.name));
    let taken: Vec<crate::store::FolderInfo> = personal
        .into_iter()
        .filter(|f| filters.folder_allowed(f))
        .collect();
    let names = crate::plan::Names {
        old: crate::folders::Naming::of(&old_ns, &old_all),
        new: crate::folders::Naming::of(&new_ns, &new),
    };
    let plan = plan_folders_in(&taken, &new, earlier, &names, rules);
    Ok(FolderView {
        old_all,
        taken,
        outside,
        new,
        names,
        plan,
    })
}

/// Syncs one account over open sessions. Errors of account scope (a broken connection) end it;
/// the caller may reconnect and call again: every step is idempotent.
#[allow(clippy::too_many_arguments)]
pub async fn sync_account<O: MailStore, N: MailStore, S: SessionSource<O, N>>(
    old: &mut O,
    new: &mut N,
    extra: &S,
    state: &StateStore,
    acct: &AccountKey,
    opts: &EngineOptions,
    progress: &UserProgress,
    totals: &mut AccountTotals,
) -> Result<()> {
    let FolderView {
        old_all: old_folders,
        taken,
        outside,
        new: mut new_folders,
        names,
        mut plan,
    } = folder_view(
        old,
        new,
        &opts.filters,
        &opts.folder_rules,
        &earlier_targets(state, acct)?,
    )
    .await?;
    totals.folders_excluded = old_folders
        .iter()
        .filter(|f| {
            f.selectable()
                && !taken.iter().any(|t| t.name == f.name)
                && !outside.iter().any(|o| o.name == f.name)
        })
        .map(|f| f.name.display())
        .collect();
    totals.folders_outside = outside
        .iter()
        .filter(|f| f.selectable())
        .map(|f| f.name.display())
        .collect();
    let mut skip = HashSet::new();
    if !opts.dry_run {
        let followed = follow::follow_folder_changes(
            old,
            new,
            state,
            acct,
            opts.propagate_deletes,
            &plan,
            &old_folders,
            &new_folders,
            totals,
        )
        .await?;
        skip = followed.skip;
        if followed.renamed {
            // A folder was renamed on the new server: plan again from its current tree.
            new_folders = new.list_folders().await?;
            plan = plan_folders_in(
                &taken,
                &new_folders,
                &earlier_targets(state, acct)?,
                &names,
                &opts.folder_rules,
            );
        }
        // A folder whose rename failed is left alone: its target is not created either (an
        // empty target would make the next run copy it anew instead of renaming).
        let held: HashSet<MailboxPath> = plan
            .mappings
            .iter()
            .filter(|m| skip.contains(&m.old))
            .map(|m| m.new.clone())
            .collect();
        plan.create.retain(|n| !held.contains(n));
        plan.subscribe.retain(|n| !held.contains(n));
    }
    for (name, why) in &plan.conflicts {
        totals.failures.push(Failure {
            folder: name.display(),
            old_uid: None,
            reason: why.clone(),
            ..Default::default()
        });
    }
    let mut failed_new: HashSet<MailboxPath> = HashSet::new();
    if !opts.dry_run {
        for name in &plan.create {
            match follow::create_with_parents(new, name, delimiter_of(&new_folders)).await {
                Ok(()) => {
                    totals.folders_created += 1;
                    state.mark_created(acct, name)?;
                    tracing::info!("created folder {name} on the new server");
                }
                Err(e) if e.scope <= Scope::Folder => {
                    failed_new.insert(name.clone());
                    totals.failures.push(Failure {
                        folder: name.display(),
                        old_uid: None,
                        reason: e.message,
                        ..Default::default()
                    });
                }
                Err(e) => return Err(e),
            }
        }
        for name in &plan.subscribe {
            match new.subscribe(name).await {
                Ok(()) => totals.subscribed += 1,
                Err(e) if e.scope <= Scope::Folder => totals.failures.push(Failure {
                    folder: name.display(),
                    old_uid: None,
                    reason: e.message,
                    ..Default::default()
                }),
                Err(e) => return Err(e),
            }
        }
    } else {
        totals.folders_created = plan.create.len() as u64;
        totals.subscribed = plan.subscribe.len() as u64;
    }
    // Folders already finished in an earlier attempt of this run are not redone.
    let done: HashSet<String> = totals.folders.iter().map(|f| f.old.clone()).collect();
    let todo: Vec<&FolderMapping> = plan
        .mappings
        .iter()
        .filter(|m| {
            !done.contains(&m.old.display())
                && !failed_new.contains(&m.new)
                && !skip.contains(&m.old)
        })
        .collect();
    // One pipelined STATUS per side for every folder: unchanged folders cost nothing more.
    let old_names: Vec<MailboxPath> = todo.iter().map(|m| m.old.clone()).collect();
    let new_names: Vec<MailboxPath> = todo.iter().map(|m| m.new.clone()).collect();
    let old_st = old.status_many(&old_names).await?;
    let new_st = if opts.dry_run {
        Vec::new()
    } else {
        new.status_many(&new_names).await?
    };
    let jobs: Vec<FolderJob<'_>> = todo
        .into_iter()
        .enumerate()
        .map(|(i, m)| FolderJob {
            m,
            statuses: Statuses {
                old: old_st.get(i).and_then(|r| r.as_ref().ok()).copied(),
                new: new_st.get(i).and_then(|r| r.as_ref().ok()).copied(),
            },
        })
        .collect();
    // Large accounts: more session pairs, as many as the caps allow, each taking the next folder.
    let mut pairs: Vec<SessionPair<O, N>> = Vec::new();
    let order = match parallel_order(&jobs, state, acct, opts)? {
        Some(order) => {
            let wanted = (opts.connections_per_user - 1).min(order.len() - 1);
            while pairs.len() < wanted {
                match extra.open_pair().await {
                    Some(p) => pairs.push(p),
                    None => break,
                }
            }
            if !pairs.is_empty() {
                tracing::info!(
                    "{} folders over {} connection pairs",
                    order.len(),
                    pairs.len() + 1
                );
            }
            order
        }
        None => (0..jobs.len()).collect(),
    };
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(order));
    let abort = std::sync::atomic::AtomicBool::new(false);
    let partial = std::sync::Mutex::new(std::mem::take(&mut totals.partial));
    let ctx = WorkerCtx {
        jobs: &jobs,
        queue: &queue,
        abort: &abort,
        partial: &partial,
        state,
        acct,
        opts,
        progress,
    };
    // Each extra pair logs out, and frees its slots under the caps, as soon as its worker finds
    // the queue empty, not when the account's slowest folder is done.
    let used = pairs.len() + 1;
    let extras = pairs.into_iter().map(|mut p| {
        let ctx = &ctx;
        async move {
            let r = folder_worker(&mut p.old, &mut p.new, ctx, true).await;
            p.old.logout().await;
            p.new.logout().await;
            drop(p);
            r
        }
    });
    let (main, extras) = futures::future::join(
        folder_worker(old, new, &ctx, false),
        futures::future::join_all(extras),
    )
    .await;
    let mut results = vec![main];
    results.extend(extras);
    // An extra pair that broke gave its folder back; the main pair finishes what is left.
    let leftover = !queue.lock().expect("queue lock").is_empty();
    if leftover && !abort.load(std::sync::atomic::Ordering::SeqCst) {
        results.push(folder_worker(old, new, &ctx, false).await);
    }
    totals.partial = partial.into_inner().unwrap_or_else(|p| p.into_inner());
    totals.connection_pairs = totals.connection_pairs.max(used);
    let mut first_error = None;
    let mut done = Vec::new();
    for r in results {
        done.extend(r.folders);
        totals.failures.extend(r.failures);
        if let Some(e) = r.error {
            first_error.get_or_insert(e);
        }
    }
    // The report lists folders in plan order, however the workers took them.
    done.sort_by_key(|(i, _)| *i);
    totals.folders.extend(done.into_iter().map(|(_, f)| f));
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One folder to sync, with what STATUS said about it.
struct FolderJob<'a> {
    m: &'a FolderMapping,
    statuses: Statuses,
}

/// What the folder workers of one account share.
struct WorkerCtx<'a> {
    jobs: &'a [FolderJob<'a>],
    queue: &'a std::sync::Mutex<std::collections::VecDeque<usize>>,
    /// Set when a worker lost its connection: the others stop after their current folder.
    abort: &'a std::sync::atomic::AtomicBool,
    /// Folders cut short, carried over to the retry.
    partial: &'a std::sync::Mutex<Vec<FolderReport>>,
    state: &'a StateStore,
    acct: &'a AccountKey,
    opts: &'a EngineOptions,
    progress: &'a UserProgress,
}

#[derive(Default)]
struct WorkerResult {
    /// Folders done, with their index in the plan.
    folders: Vec<(usize, FolderReport)>,
    failures: Vec<Failure>,
    error: Option<Error>,
}

/// Takes folders from the shared queue and syncs them over one session pair, until the queue is
/// empty, a stop is requested, or a connection of this or another worker breaks.
async fn folder_worker<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    ctx: &WorkerCtx<'_>,
    extra: bool,
) -> WorkerResult {
    use std::sync::atomic::Ordering;
    let mut out = WorkerResult::default();
    loop {
        if crate::failpoint::stop_requested() {
            out.error = Some(crate::failpoint::interrupted());
            return out;
        }
        if ctx.abort.load(Ordering::SeqCst) {
            return out;
        }
        let Some(i) = ctx.queue.lock().expect("queue lock").pop_front() else {
            return out;
        };
        let FolderJob { m, statuses } = &ctx.jobs[i];
        ctx.progress.folder(&m.old.display());
        let carried = {
            let mut p = ctx.partial.lock().expect("partial lock");
            p.iter()
                .position(|r| r.old == m.old.display())
                .map(|k| p.remove(k))
        };
        let mut report = carried.unwrap_or_else(|| FolderReport {
            old: m.old.display(),
            new: m.new.display(),
            ..Default::default()
        });
        let cx = folder::FolderCtx {
            state: ctx.state,
            acct: ctx.acct,
            m,
            opts: ctx.opts,
            progress: ctx.progress,
        };
        let r = folder::sync_folder(old, new, &cx, &mut report, &mut out.failures, *statuses).await;
        if r.as_ref()
            .map_or_else(|e| e.scope <= Scope::Folder, |()| true)
        {
            folder::warn_dropped_flags(m, &report);
        }
        match r {
            Ok(()) => out.folders.push((i, report)),
            Err(e) if e.scope <= Scope::Folder => {
                out.failures.push(Failure {
                    folder: m.old.display(),
                    old_uid: None,
                    reason: e.message,
                    ..Default::default()
                });
                out.folders.push((i, report));
            }
            // An extra pair broke: its folder goes back to the queue (its counts carried), the
            // pair is dropped and the others go on. Everything done so far is committed.
            Err(e) if extra && e.scope == Scope::Account => {
                tracing::warn!(
                    "an extra connection failed in folder {} ({e}); the folder goes back to the queue",
                    m.old
                );
                ctx.partial.lock().expect("partial lock").push(report);
                ctx.queue.lock().expect("queue lock").push_front(i);
                return out;
            }
            Err(e) => {
                ctx.abort.store(true, Ordering::SeqCst);
                ctx.partial.lock().expect("partial lock").push(report);
                out.error = Some(e.context(format!("folder {}", m.old)));
                return out;
            }
        }
    }
}

/// The order to sync folders in when the account is worth more connections (largest work
/// first, so parallel workers finish together), or `None` when one pair will do: fewer than two
/// folders with work, or less than `PARALLEL_MIN_MESSAGES` messages to copy in all.
fn parallel_order(
    jobs: &[FolderJob<'_>],
    state: &StateStore,
    acct: &AccountKey,
    opts: &EngineOptions,
) -> Result<Option<Vec<usize>>> {
    if opts.connections_per_user < 2 || jobs.len() < 2 {
        return Ok(None);
    }
    let mut work: Vec<(u64, usize)> = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let Some(o) = j.statuses.old else {
            work.push((0, i));
            continue;
        };
        let known = match state.folder_state(acct, &j.m.old)? {
            Some(p) if p.old_uidvalidity == o.uidvalidity.get() => p.old_messages,
            _ => 0,
        };
        work.push((u64::from(o.messages.saturating_sub(known)), i));
    }
    let busy = work.iter().filter(|(w, _)| *w > 0).count();
    let total: u64 = work.iter().map(|(w, _)| w).sum();
    if busy < 2 || total < PARALLEL_MIN_MESSAGES {
        return Ok(None);
    }
    work.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(Some(work.into_iter().map(|(_, i)| i).collect()))
}

/// What the engine knows about a folder before opening it: STATUS of both sides, gathered for
/// all folders in one pipelined round trip per server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Statuses {
    pub old: Option<FolderStatus>,
    pub new: Option<FolderStatus>,
}

/// The old folder's present messages without listing it all, on CONDSTORE servers after a
/// complete earlier run: the messages above the recorded UIDNEXT, the flags changed since the
/// recorded HIGHESTMODSEQ (`CHANGEDSINCE`), and, only when the count shows expunges, the UID
/// list. Unchanged mapped messages carry the flags imapshift last set, so the planner sees no
/// change for them. `None` when the full listing is needed.
async fn incremental_listing<O: MailStore>(
    old: &mut O,
    previous: Option<&FolderState>,
    st: &FolderStatus,
    entries: &[(Uid, MapEntry)],
    opts: &EngineOptions,
) -> Result<Option<Vec<MsgSummary>>> {
    // Only after a complete run: a message that failed is present and unmapped, and an
    // expunged mapped one would balance the count and hide it.
    let Some(p) = previous.filter(|p| p.complete) else {
        return Ok(None);
    };
    // Messages left out by [filters] are present and unmapped too: then the UIDs are compared,
    // never the counts.
    let filtered = opts.filters.max_size.is_some() || opts.filters.age_criteria(0).is_some();
    let (Some(modseq), true, Some(from)) = (
        p.old_highestmodseq,
        old.caps().has("CONDSTORE") && p.old_uidvalidity == st.uidvalidity.get(),
        Uid::new(p.old_uidnext),
    ) else {
        return Ok(None);
    };
    let (fresh, changed) = old.list_changes(modseq, from).await?;
    tracing::debug!(
        "incremental listing since modseq {modseq}: {} new, {} with changed flags",
        fresh.len(),
        changed.len()
    );
    let changed: HashMap<Uid, Vec<String>> = changed.into_iter().collect();
    let mut listing: Vec<MsgSummary> = entries
        .iter()
        .filter(|(u, _)| *u < from)
        .map(|(u, e)| MsgSummary {
            uid: *u,
            size: e.fp.size,
            flags: changed.get(u).cloned().unwrap_or_else(|| e.flags.clone()),
        })
        .collect();
    if filtered || listing.len() + fresh.len() != st.messages as usize {
        // Something was expunged (or copies of expunged ones are kept): ask which. If an old
        // message is neither mapped nor new (maps were rebuilt or dropped), list it all.
        let present = old.uid_search("ALL").await?;
        let known: HashSet<Uid> = listing.iter().map(|m| m.uid).collect();
        if present.iter().any(|u| *u < from && !known.contains(u)) {
            return Ok(None);
        }
        let present: HashSet<Uid> = present.into_iter().collect();
        listing.retain(|m| present.contains(&m.uid));
    }
    listing.extend(fresh);
    Ok(Some(listing))
}

/// Leaves out the messages that [filters] exclude (size from the listing; age by one `UID SEARCH`
/// on the old server). Returns how many.
async fn apply_filters<O: MailStore>(
    old: &mut O,
    opts: &EngineOptions,
    copy: &mut Vec<MsgSummary>,
) -> Result<u64> {
    let before = copy.len();
    if let Some(max) = opts.filters.max_size {
        copy.retain(|c| u64::from(c.size) <= max);
    }
    if !copy.is_empty() {
        if let Some(criteria) = opts.filters.age_criteria(opts.as_of_unix) {
            let allowed: HashSet<Uid> = old.uid_search(&criteria).await?.into_iter().collect();
            copy.retain(|c| allowed.contains(&c.uid));
        }
    }
    Ok((before - copy.len()) as u64)
}

/// The old folder's UIDs, sizes and flags (no bodies).
async fn list_old<O: MailStore>(old: &mut O, st: &FolderStatus) -> Result<Vec<MsgSummary>> {
    if st.messages == 0 {
        return Ok(Vec::new());
    }
    old.list_messages(st).await
}

fn mapped_of(entries: &[(Uid, MapEntry)]) -> Vec<Mapped> {
    entries
        .iter()
        .map(|(old_uid, e)| Mapped {
            old_uid: *old_uid,
            new_uid: e.new_uid.and_then(Uid::new),
            flags: e.flags.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_plan_splits_the_budget() {
        const M: u64 = 1024 * 1024;
        // One user: nearly all for bodies, batches as configured.
        assert_eq!(
            MemoryPlan::new(32 * M, 8 * M, 1),
            MemoryPlan {
                bodies: 31 * M,
                batch_bytes: 8 * M,
                over_by: 0
            }
        );
        // Four users: 28 MiB for bodies, 12 batches in flight.
        let p = MemoryPlan::new(32 * M, 8 * M, 4);
        assert_eq!(
            (p.bodies, p.batch_bytes, p.over_by),
            (28 * M, 28 * M / 12, 0)
        );
        // Sixteen: the batch shrinks with the users, the total stays.
        let p = MemoryPlan::new(32 * M, 8 * M, 16);
        assert_eq!((p.bodies, p.batch_bytes), (16 * M, 16 * M / 48));
        assert!(p.bodies + 16 * USER_RESERVE <= 32 * M);
        // Never below 256 KiB per batch, unless configured so.
        assert_eq!(MemoryPlan::new(32 * M, 8 * M, 28).batch_bytes, 256 * 1024);
        assert_eq!(MemoryPlan::new(32 * M, 65_536, 1).batch_bytes, 65_536);
        // Too many users for the budget: bodies keep their minimum, the excess is reported.
        let p = MemoryPlan::new(32 * M, 8 * M, 40);
        assert_eq!(p.bodies, MIN_BODY_BUDGET);
        assert_eq!(p.over_by, 40 * M + MIN_BODY_BUDGET - 32 * M);
    }

    #[tokio::test]
    async fn memory_budget_bounds_bytes_in_flight() {
        let b = MemoryBudget::new(10 * 1024);
        let first = b.acquire(8 * 1024).await;
        // 4 KiB more do not fit until the first batch is done.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.acquire(4 * 1024)).await;
        assert!(
            waiting.is_err(),
            "must wait while 8 of 10 KiB are in flight"
        );
        drop(first);
        let _second = tokio::time::timeout(std::time::Duration::from_secs(1), b.acquire(4 * 1024))
            .await
            .expect("fits once the first batch is released");
        // A batch larger than the whole budget takes all of it instead of waiting forever.
        let b = MemoryBudget::new(1024 * 1024);
        let _all = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            b.acquire(50 * 1024 * 1024),
        )
        .await
        .expect("a huge batch runs alone");
    }
}
