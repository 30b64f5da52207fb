//! The executor: applies a plan to two [`MailStore`]s, journaling before every side effect.
//!
//! For each folder it examines the old side, resolves intents left by an interrupted run, asks
//! the planner what to copy, then streams batches: the old side fetches batch k+1 while the new
//! side appends batch k (MULTIAPPEND), so both connections stay busy and no message costs a round
//! trip of its own. Before each APPEND the intents are journaled and flushed; after it the UID
//! maps are committed. One refused message fails that message; one broken folder fails that
//! folder; the account goes on.

use crate::error::{Error, Result, Scope};
use crate::fingerprint::{sha256_hex, Fingerprint};
use crate::folders::{delimiter_of, parents};
use crate::plan::{batches, plan_folders, plan_messages, FolderMapping, Mapped, MessagePlan};
use crate::progress::UserProgress;
use crate::state::{AccountKey, FolderState, Intent, MapEntry, StateStore};
use crate::store::{
    AppendItem, AppendResult, FolderStatus, MailStore, Message, MsgSummary, SessionPair,
    SessionSource,
};
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
    /// The run's budget for message bodies in flight, shared by all users.
    pub memory: Option<std::sync::Arc<MemoryBudget>>,
    /// Rate limits of the old and the new server, shared by all users.
    pub old_rate: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
    pub new_rate: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
    /// Session pairs one account may use at once (folders in parallel), 1 = one pair.
    pub connections_per_user: usize,
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
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub folder: String,
    pub old_uid: Option<u32>,
    pub reason: String,
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

/// A multiset of candidates by key: each `take` hands out one not yet taken, in the order they
/// were added (lowest UID first when added in UID order). The one matching rule behind crash
/// recovery, map rebuilding and UID lookup: two identical messages claim one copy each.
struct Pool<K, V>(HashMap<K, std::collections::VecDeque<V>>);

impl<K: std::hash::Hash + Eq, V> Pool<K, V> {
    fn new(items: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut m: HashMap<K, std::collections::VecDeque<V>> = HashMap::new();
        for (k, v) in items {
            m.entry(k).or_default().push_back(v);
        }
        Pool(m)
    }

    fn take(&mut self, key: &K) -> Option<V> {
        self.0.get_mut(key).and_then(|q| q.pop_front())
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
    /// The old folders `[filters]` take.
    pub taken: Vec<crate::store::FolderInfo>,
    pub new: Vec<crate::store::FolderInfo>,
    /// Where each taken old folder goes (sync, preflight and verify use the same plan).
    pub plan: crate::plan::FolderPlan,
}

/// Lists both servers' folders and plans the mapping.
pub async fn folder_view<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    filters: &crate::filters::Filters,
) -> Result<FolderView> {
    let old_all = old.list_folders().await?;
    let new = new.list_folders().await?;
    let taken: Vec<crate::store::FolderInfo> = old_all
        .iter()
        .filter(|f| filters.folder_allowed(f))
        .cloned()
        .collect();
    let plan = plan_folders(&taken, &new);
    Ok(FolderView {
        old_all,
        taken,
        new,
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
        new: mut new_folders,
        mut plan,
    } = folder_view(old, new, &opts.filters).await?;
    if !opts.dry_run
        && follow_folder_changes(
            old,
            new,
            state,
            acct,
            opts,
            &plan,
            &old_folders,
            &new_folders,
            totals,
        )
        .await?
    {
        // A folder was renamed on the new server: plan again from its current tree.
        new_folders = new.list_folders().await?;
        plan = plan_folders(&taken, &new_folders);
    }
    for (name, why) in &plan.conflicts {
        totals.failures.push(Failure {
            folder: name.display(),
            old_uid: None,
            reason: why.clone(),
        });
    }
    let mut failed_new: HashSet<MailboxPath> = HashSet::new();
    if !opts.dry_run {
        for name in &plan.create {
            match create_with_parents(new, name, delimiter_of(&new_folders)).await {
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
        .filter(|m| !done.contains(&m.old.display()) && !failed_new.contains(&m.new))
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
        let r = sync_folder(
            old,
            new,
            ctx.state,
            ctx.acct,
            m,
            ctx.opts,
            ctx.progress,
            &mut report,
            &mut out.failures,
            *statuses,
        )
        .await;
        match r {
            Ok(()) => out.folders.push((i, report)),
            Err(e) if e.scope <= Scope::Folder => {
                out.failures.push(Failure {
                    folder: m.old.display(),
                    old_uid: None,
                    reason: e.message,
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

/// Whether STATUS shows a folder exactly as the last complete run left it. Only servers with
/// CONDSTORE can say that no flag changed (HIGHESTMODSEQ); others are always listed.
fn unchanged(p: &FolderState, old: &FolderStatus, new: &FolderStatus, m: &FolderMapping) -> bool {
    old.uidnext != 0
        && p.old_uidvalidity == old.uidvalidity.get()
        && p.old_uidnext == old.uidnext
        && p.old_messages == old.messages
        && p.new_folder == m.new.as_str()
        && p.new_uidvalidity == new.uidvalidity.get()
        && matches!((p.old_highestmodseq, old.highestmodseq), (Some(a), Some(b)) if a == b)
}

/// What the engine knows about a folder before opening it: STATUS of both sides, gathered for
/// all folders in one pipelined round trip per server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Statuses {
    pub old: Option<FolderStatus>,
    pub new: Option<FolderStatus>,
}

#[allow(clippy::too_many_arguments)]
async fn sync_folder<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    opts: &EngineOptions,
    progress: &UserProgress,
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
    statuses: Statuses,
) -> Result<()> {
    let previous = state.folder_state(acct, &m.old)?;
    let intents = state.intents(acct, &m.old)?;

    // Fast path: one pipelined STATUS per side showed nothing changed since the last complete run.
    if let (Some(p), Some(o), Some(n)) = (&previous, &statuses.old, &statuses.new) {
        if intents.is_empty() && unchanged(p, o, n, m) && !(opts.propagate_deletes && p.kept > 0) {
            tracing::debug!("folder {}: unchanged since the last run (STATUS)", m.old);
            report.messages = o.messages;
            report.skipped = o.messages as u64;
            return Ok(());
        }
    }

    let st = old.examine(&m.old).await?;
    report.messages = st.messages;
    let modseq = statuses.old.and_then(|s| s.highestmodseq);
    tracing::debug!(
        "folder {}: STATUS modseq {:?}, EXAMINE modseq {:?}, recorded {:?}",
        m.old,
        modseq,
        st.highestmodseq,
        previous.as_ref().and_then(|p| p.old_highestmodseq)
    );

    if opts.dry_run {
        let listing = list_old(old, &st).await?;
        let mapped = mapped_of(&state.map_entries(acct, &m.old, st.uidvalidity)?);
        let mut plan = plan_messages(&listing, &mapped, opts.propagate_deletes);
        report.filtered = apply_filters(old, opts, &mut plan.copy).await?;
        report.copied = plan.copy.len() as u64;
        report.bytes = plan.copy.iter().map(|c| c.size as u64).sum();
        report.skipped = plan.already as u64;
        report.flags_updated = plan.flag_updates.len() as u64;
        report.deleted = plan.deletes.len() as u64;
        report.kept = plan.kept as u64;
        report.requeued = intents.len() as u64;
        return Ok(());
    }

    // The pipelined STATUS of the new side is fresh: this folder has not been touched since.
    let new_st = match statuses.new {
        Some(s) => s,
        None => new.status(&m.new).await?,
    };
    if !intents.is_empty() {
        resolve_intents(new, state, acct, m, &new_st, intents, report).await?;
    }
    reconcile_maps(old, new, state, acct, m, &st, &new_st, opts, report).await?;

    let entries = state.map_entries(acct, &m.old, st.uidvalidity)?;
    let listing = match incremental_listing(old, previous.as_ref(), &st, &entries).await? {
        Some(l) => l,
        None => list_old(old, &st).await?,
    };
    let mut plan = plan_messages(&listing, &mapped_of(&entries), opts.propagate_deletes);
    report.filtered = apply_filters(old, opts, &mut plan.copy).await?;
    if !plan.copy.is_empty() {
        let adopted = adopt_existing_copies(
            old,
            new,
            state,
            acct,
            m,
            &st,
            &new_st,
            previous.as_ref(),
            &entries,
            &plan.copy,
        )
        .await?;
        if !adopted.is_empty() {
            report.remapped += adopted.len() as u64;
            plan.already += adopted.len();
            plan.copy.retain(|c| !adopted.contains(&c.uid));
        }
    }
    // Copied by this run before a reconnect: counted as copied, not as skipped.
    report.skipped =
        (plan.already as u64).saturating_sub(report.copied + report.recovered + report.remapped);
    report.kept = plan.kept as u64;
    let copy = plan.copy.clone();
    progress.add_total(copy.len() as u64);
    let mut all_done = true;
    let mut new_uidnext = new_st.uidnext;

    if !copy.is_empty() {
        if !new.caps().has("UIDPLUS") {
            // New UIDs will be looked up in this folder after each batch.
            new.examine(&m.new).await?;
        }
        let plan = batches(&copy, opts.batch_bytes, opts.batch_messages);
        type Batch = (
            Vec<Uid>,
            Vec<Message>,
            Option<tokio::sync::OwnedSemaphorePermit>,
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch>>(1);
        let producer = async {
            for b in plan {
                let uids: Vec<Uid> = b.iter().map(|s| s.uid).collect();
                let bytes: u64 = b.iter().map(|s| u64::from(s.size)).sum();
                // The run's memory budget: bodies in flight across all users stay under it.
                let permit = match &opts.memory {
                    Some(m) => Some(m.acquire(bytes).await),
                    None => None,
                };
                if let Some(rate) = &opts.old_rate {
                    rate.take(b.len() as u64, bytes).await;
                }
                let r = old
                    .fetch_messages(&uids)
                    .await
                    .map(|msgs| (uids, msgs, permit));
                let stop = r.is_err();
                if tx.send(r).await.is_err() || stop {
                    break;
                }
            }
            drop(tx);
        };
        let consumer = async {
            let r = async {
                let mut uidnext = new_st.uidnext;
                while let Some(r) = rx.recv().await {
                    // A clean stop: what was appended is committed; the next batch waits.
                    if crate::failpoint::stop_requested() {
                        return Err(crate::failpoint::interrupted());
                    }
                    // The permit is released when this batch is done.
                    let (asked, msgs, _permit) = r?;
                    let got: HashSet<Uid> = msgs.iter().map(|m| m.uid).collect();
                    let vanished = asked.iter().filter(|u| !got.contains(u)).count() as u64;
                    report.vanished += vanished;
                    if msgs.is_empty() {
                        continue;
                    }
                    let fps: Vec<Fingerprint> = msgs
                        .iter()
                        .map(|x| Fingerprint::of_message(&x.body, &x.internaldate))
                        .collect();
                    let journal: Vec<(Uid, Intent)> = msgs
                        .iter()
                        .zip(&fps)
                        .map(|(x, fp)| {
                            (
                                x.uid,
                                Intent {
                                    new_folder: m.new.as_str().to_string(),
                                    new_uidvalidity: new_st.uidvalidity.get(),
                                    new_uidnext_before: uidnext,
                                    body_sha256: sha256_hex(&x.body),
                                    fp: fp.clone(),
                                    flags: x.flags.clone(),
                                },
                            )
                        })
                        .collect();
                    state
                        .journal(acct, &m.old, st.uidvalidity, &journal)
                        .await?;
                    crate::failpoint::hit("after-journal")?;
                    let items: Vec<AppendItem<'_>> = msgs
                        .iter()
                        .map(|x| AppendItem {
                            flags: &x.flags,
                            internaldate: &x.internaldate,
                            body: &x.body,
                        })
                        .collect();
                    if let Some(rate) = &opts.new_rate {
                        rate.take(
                            items.len() as u64,
                            items.iter().map(|i| i.body.len() as u64).sum(),
                        )
                        .await;
                    }
                    let results = new.append(&m.new, &items).await?;
                    crate::failpoint::hit("after-append")?;
                    let mut mapped_now = Vec::new();
                    let mut dropped = Vec::new();
                    let mut bytes = 0u64;
                    let mut uid_unknown = false;
                    for ((x, fp), res) in msgs.iter().zip(fps).zip(results) {
                        match res {
                            AppendResult::Stored { uidvalidity, uid } => {
                                if let Some(u) = uid {
                                    uidnext = uidnext.max(u.get() + 1);
                                } else {
                                    uid_unknown = true;
                                }
                                bytes += x.body.len() as u64;
                                mapped_now.push((
                                    x.uid,
                                    MapEntry {
                                        new_folder: m.new.as_str().to_string(),
                                        new_uidvalidity: uidvalidity.map(|v| v.get()),
                                        new_uid: uid.map(|u| u.get()),
                                        fp,
                                        flags: x.flags.clone(),
                                    },
                                ));
                            }
                            AppendResult::Refused(why) => {
                                tracing::warn!(
                                    "folder {}: old UID {} refused by the new server: {why}",
                                    m.old,
                                    x.uid
                                );
                                dropped.push(x.uid);
                                failures.push(Failure {
                                    folder: m.old.display(),
                                    old_uid: Some(x.uid.get()),
                                    reason: why,
                                });
                                report.failed += 1;
                            }
                        }
                    }
                    if uid_unknown {
                        // Without UIDPLUS: find the new copies by fingerprint (never by changing
                        // their bytes), and learn where the next batch starts.
                        let from = Uid::new(uidnext.max(1)).expect("non-zero");
                        let found = new.fetch_fingerprints(from).await?;
                        uidnext = found
                            .iter()
                            .map(|(u, _, _)| u.get() + 1)
                            .max()
                            .unwrap_or(uidnext)
                            .max(uidnext);
                        assign_unknown_uids(&mut mapped_now, found);
                    }
                    state.commit(acct, &m.old, st.uidvalidity, &mapped_now, &dropped)?;
                    report.copied += mapped_now.len() as u64;
                    report.bytes += bytes;
                    progress.inc(msgs.len() as u64, bytes);
                }
                Ok::<u32, Error>(uidnext)
            }
            .await;
            // Whatever happened, let a producer blocked on a full channel see the end.
            rx.close();
            r
        };
        let ((), res) = tokio::join!(producer, consumer);
        new_uidnext = res?;
        all_done = report.failed == 0;
    }
    if !apply_changes(
        new,
        state,
        acct,
        m,
        st.uidvalidity,
        &plan,
        &entries,
        report,
        failures,
    )
    .await?
    {
        all_done = false;
    }
    state.flush().await?;
    if all_done {
        state.set_folder_state(
            acct,
            &m.old,
            &FolderState {
                old_uidvalidity: st.uidvalidity.get(),
                old_uidnext: st.uidnext,
                old_messages: st.messages,
                new_folder: m.new.as_str().to_string(),
                new_uidvalidity: new_st.uidvalidity.get(),
                last_sync_unix: now_unix(),
                old_highestmodseq: modseq,
                kept: report.kept,
                new_uidnext,
            },
        )?;
    } else {
        state.forget_folder_state(acct, &m.old)?;
    }
    Ok(())
}

/// Before copying, looks at the new folder's messages that imapshift does not know of: above the
/// UIDNEXT recorded at the end of the last complete run (or above the highest mapped UID). They
/// are mail delivered to the new server, or copies made by a run whose state was lost (a stale
/// state directory restored from a backup, another host's copy). Those whose fingerprint equals
/// a message about to be copied are taken as its copy (mapped, not copied again). Returns the
/// old UIDs so adopted. Costs nothing when no unknown message is there.
#[allow(clippy::too_many_arguments)]
async fn adopt_existing_copies<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    st: &FolderStatus,
    new_st: &FolderStatus,
    previous: Option<&FolderState>,
    entries: &[(Uid, MapEntry)],
    copy: &[MsgSummary],
) -> Result<HashSet<Uid>> {
    let claimed: HashSet<u32> = entries.iter().filter_map(|(_, e)| e.new_uid).collect();
    let recorded = previous
        .filter(|p| p.new_uidvalidity == new_st.uidvalidity.get() && p.new_folder == m.new.as_str())
        .map(|p| p.new_uidnext)
        .unwrap_or(0);
    let watermark = recorded
        .max(claimed.iter().max().map_or(1, |u| u + 1))
        .max(1);
    if new_st.messages == 0 || (new_st.uidnext != 0 && new_st.uidnext <= watermark) {
        return Ok(HashSet::new());
    }
    new.examine(&m.new).await?;
    let unknown: Vec<(Uid, Fingerprint, Vec<String>)> = new
        .fetch_fingerprints(Uid::new(watermark).expect("watermark >= 1"))
        .await?
        .into_iter()
        .filter(|(u, _, _)| !claimed.contains(&u.get()))
        .collect();
    if unknown.is_empty() {
        return Ok(HashSet::new());
    }
    let wanted: HashSet<Uid> = copy.iter().map(|c| c.uid).collect();
    let first = copy.iter().map(|c| c.uid).min().expect("copy is not empty");
    let olds: Vec<(Uid, Fingerprint, Vec<String>)> = old
        .fetch_fingerprints(first)
        .await?
        .into_iter()
        .filter(|(u, _, _)| wanted.contains(u))
        .collect();
    let mut pool = Pool::new(unknown.into_iter().map(|(u, fp, flags)| (fp, (u, flags))));
    let mut adopted = Vec::new();
    for (old_uid, fp, _) in olds {
        if let Some((n, flags)) = pool.take(&fp) {
            adopted.push((
                old_uid,
                MapEntry {
                    new_folder: m.new.as_str().to_string(),
                    new_uidvalidity: Some(new_st.uidvalidity.get()),
                    new_uid: Some(n.get()),
                    fp,
                    flags,
                },
            ));
        }
    }
    if adopted.is_empty() {
        return Ok(HashSet::new());
    }
    state.commit(acct, &m.old, st.uidvalidity, &adopted, &[])?;
    state.flush().await?;
    tracing::info!(
        "folder {}: {} messages to copy are already on the new server (copied by a run whose state is lost): mapped, not copied again",
        m.old,
        adopted.len()
    );
    Ok(adopted.into_iter().map(|(u, _)| u).collect())
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
) -> Result<Option<Vec<MsgSummary>>> {
    let Some(p) = previous else { return Ok(None) };
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
    if listing.len() + fresh.len() != st.messages as usize {
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
        if let Some(criteria) = opts.filters.age_criteria(now_unix()) {
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

/// Gives copies whose new UID the server did not report the UID of the matching new message.
fn assign_unknown_uids(
    mapped: &mut [(Uid, MapEntry)],
    found: Vec<(Uid, Fingerprint, Vec<String>)>,
) {
    let taken: HashSet<u32> = mapped.iter().filter_map(|(_, e)| e.new_uid).collect();
    let mut pool = Pool::new(
        found
            .into_iter()
            .filter(|(uid, _, _)| !taken.contains(&uid.get()))
            .map(|(uid, fp, _)| (fp, uid)),
    );
    for (_, e) in mapped.iter_mut().filter(|(_, e)| e.new_uid.is_none()) {
        if let Some(u) = pool.take(&e.fp) {
            e.new_uid = Some(u.get());
        }
    }
}

/// Carries flag changes to the new copies and (with propagation) deletes copies of messages the
/// old server expunged. Returns false when something failed (recorded in `failures`).
#[allow(clippy::too_many_arguments)]
async fn apply_changes<N: MailStore>(
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    uv: crate::types::UidValidity,
    plan: &MessagePlan,
    entries: &[(Uid, MapEntry)],
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
) -> Result<bool> {
    if plan.flag_updates.is_empty() && plan.deletes.is_empty() {
        return Ok(true);
    }
    let mut ok = true;
    new.select(&m.new).await?;
    if !plan.flag_updates.is_empty() {
        let updates: Vec<(Uid, Vec<String>)> = plan
            .flag_updates
            .iter()
            .map(|(_, n, f)| (*n, f.clone()))
            .collect();
        match new.store_flags(&updates).await {
            Ok(()) => {
                crate::failpoint::hit("after-store")?;
                let by_old: HashMap<Uid, &MapEntry> =
                    entries.iter().map(|(u, e)| (*u, e)).collect();
                let changed: Vec<(Uid, MapEntry)> = plan
                    .flag_updates
                    .iter()
                    .filter_map(|(o, _, f)| {
                        by_old.get(o).map(|e| {
                            let mut e = (*e).clone();
                            e.flags = f.clone();
                            (*o, e)
                        })
                    })
                    .collect();
                state.commit(acct, &m.old, uv, &changed, &[])?;
                report.flags_updated += changed.len() as u64;
            }
            Err(e) => {
                ok = false;
                folder_failure(e, m, failures)?;
            }
        }
    }
    if !plan.deletes.is_empty() {
        let new_uids: Vec<Uid> = plan.deletes.iter().map(|(_, n)| *n).collect();
        match new.expunge_uids(&new_uids).await {
            Ok(()) => {
                crate::failpoint::hit("after-expunge")?;
                let old_uids: Vec<Uid> = plan.deletes.iter().map(|(o, _)| *o).collect();
                state.remove_maps(acct, &m.old, uv, &old_uids)?;
                report.deleted += old_uids.len() as u64;
            }
            Err(e) => {
                ok = false;
                folder_failure(e, m, failures)?;
            }
        }
    }
    Ok(ok)
}

/// Records a folder-scoped error as that folder's failure; passes wider errors on.
fn folder_failure(e: Error, m: &FolderMapping, failures: &mut Vec<Failure>) -> Result<()> {
    if e.scope > Scope::Folder {
        return Err(e);
    }
    failures.push(Failure {
        folder: m.old.display(),
        old_uid: None,
        reason: e.message,
    });
    Ok(())
}

/// Minimum number of earlier copies before a UIDVALIDITY change is judged by evidence.
const MIN_EVIDENCE: usize = 3;

/// Makes the UID maps of a folder trustworthy before planning. Needed when the state is missing
/// or older than the new server's contents (no maps but the new folder has mail), when the old
/// folder's UIDVALIDITY changed (maps under an old UIDVALIDITY), or when the new folder was
/// recreated (maps point to a void new UIDVALIDITY). Messages are matched by fingerprint as a
/// multiset; new-side messages that match nothing are left alone (mail delivered there).
#[allow(clippy::too_many_arguments)]
async fn reconcile_maps<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    st: &FolderStatus,
    new_st: &FolderStatus,
    opts: &EngineOptions,
    report: &mut FolderReport,
) -> Result<()> {
    let uvs = state.map_uidvalidities(acct, &m.old)?;
    let earlier: Vec<(crate::types::UidValidity, usize)> = uvs
        .iter()
        .copied()
        .filter(|(uv, _)| *uv != st.uidvalidity)
        .collect();
    let entries = state.map_entries(acct, &m.old, st.uidvalidity)?;
    let valid = |e: &MapEntry| {
        e.new_folder == m.new.as_str()
            && e.new_uidvalidity
                .is_none_or(|v| v == new_st.uidvalidity.get())
    };
    let void: Vec<Uid> = entries
        .iter()
        .filter(|(_, e)| !valid(e))
        .map(|(u, _)| *u)
        .collect();
    let lost = entries.is_empty() && new_st.messages > 0;
    if !lost && void.is_empty() && earlier.is_empty() {
        return Ok(());
    }
    let old_fps = old.fetch_fingerprints(Uid::new(1).expect("1")).await?;
    let new_fps = if new_st.messages > 0 {
        new.examine(&m.new).await?;
        new.fetch_fingerprints(Uid::new(1).expect("1")).await?
    } else {
        Vec::new()
    };
    let kept: Vec<&(Uid, MapEntry)> = entries.iter().filter(|(_, e)| valid(e)).collect();
    let claimed_old: HashSet<Uid> = kept.iter().map(|(u, _)| *u).collect();
    let claimed_new: HashSet<u32> = kept.iter().filter_map(|(_, e)| e.new_uid).collect();
    let mut pool = Pool::new(
        new_fps
            .into_iter()
            .filter(|(uid, _, _)| !claimed_new.contains(&uid.get()))
            .map(|(uid, fp, flags)| (fp, (uid, flags))),
    );
    let mut matched: Vec<(Uid, MapEntry)> = Vec::new();
    for (old_uid, fp, _) in &old_fps {
        if claimed_old.contains(old_uid) {
            continue;
        }
        if let Some((n, flags)) = pool.take(fp) {
            matched.push((
                *old_uid,
                MapEntry {
                    new_folder: m.new.as_str().to_string(),
                    new_uidvalidity: Some(new_st.uidvalidity.get()),
                    new_uid: Some(n.get()),
                    fp: fp.clone(),
                    flags,
                },
            ));
        }
    }
    let before: usize = earlier.iter().map(|(_, n)| n).sum();
    let recognised = matched.len() + kept.len();
    if before >= MIN_EVIDENCE && recognised * 2 < before.min(old_fps.len()) && !opts.force_remap {
        return Err(Error::new(
            Scope::Folder,
            crate::error::Retry::Fix,
            format!(
                "the old folder's UIDVALIDITY changed (now {}) and only {recognised} of its {} messages match the {before} copied before: it may be a different folder now. Not guessing: check the old server; if the folder really was replaced, run again with --force-remap (copies what is not recognised, deletes nothing)",
                st.uidvalidity,
                old_fps.len()
            ),
        ));
    }
    for (uv, _) in &earlier {
        state.remove_uidvalidity(acct, &m.old, *uv)?;
    }
    state.remove_maps(acct, &m.old, st.uidvalidity, &void)?;
    state.commit(acct, &m.old, st.uidvalidity, &matched, &[])?;
    state.flush().await?;
    report.remapped += matched.len() as u64;
    tracing::info!(
        "folder {}: rebuilt UID maps by content: {} messages recognised on the new server ({} earlier maps under another UIDVALIDITY, {} void)",
        m.old,
        matched.len(),
        before,
        void.len()
    );
    Ok(())
}

/// Folders that left the old server since the last run. A folder that appeared under another
/// name with the same UIDVALIDITY, or with mostly the same messages, was renamed: the new
/// server's copy is renamed too and the state follows, so nothing is copied again. A folder
/// that is simply gone has its copies deleted on the new server only with propagation on (and
/// the folder itself only if imapshift created it and nothing else is in it); otherwise it is
/// reported and kept. Returns whether a folder was renamed on the new server.
#[allow(clippy::too_many_arguments)]
async fn follow_folder_changes<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    opts: &EngineOptions,
    plan: &crate::plan::FolderPlan,
    old_folders: &[crate::store::FolderInfo],
    new_folders: &[crate::store::FolderInfo],
    totals: &mut AccountTotals,
) -> Result<bool> {
    // Anything the old server still lists (even unselectable or in conflict) has not vanished.
    let current: HashSet<&str> = old_folders.iter().map(|f| f.name.as_str()).collect();
    let mut vanished: Vec<(MailboxPath, FolderState)> = state
        .folder_states(acct)?
        .into_iter()
        .filter(|(name, _)| !current.contains(name.as_str()))
        .filter_map(|(name, st)| MailboxPath::new(name).map(|n| (n, st)))
        .collect();
    if vanished.is_empty() {
        return Ok(false);
    }
    let new_names: HashSet<&str> = new_folders.iter().map(|f| f.name.as_str()).collect();
    // Old folders imapshift has never seen: rename candidates.
    let mut fresh = Vec::new();
    for m in &plan.mappings {
        if state.folder_state(acct, &m.old)?.is_none()
            && state.map_uidvalidities(acct, &m.old)?.is_empty()
        {
            fresh.push(m);
        }
    }
    let names: Vec<MailboxPath> = fresh.iter().map(|m| m.old.clone()).collect();
    let statuses = old.status_many(&names).await?;
    let mut renamed_any = false;
    for (m, st) in fresh.into_iter().zip(statuses) {
        let Ok(st) = st else { continue };
        let mut found = vanished
            .iter()
            .position(|(_, v)| v.old_uidvalidity == st.uidvalidity.get());
        if found.is_none() && st.messages > 0 {
            // A new UIDVALIDITY: compare contents with the vanished folders' copies.
            old.examine(&m.old).await?;
            let fps: Vec<Fingerprint> = old
                .fetch_fingerprints(Uid::new(1).expect("1"))
                .await?
                .into_iter()
                .map(|(_, fp, _)| fp)
                .collect();
            for (i, (vname, _)) in vanished.iter().enumerate() {
                let entries = state.all_map_entries(acct, vname)?;
                let mut pool = Pool::new(entries.iter().map(|(_, _, e)| (e.fp.clone(), ())));
                let matched = fps.iter().filter(|fp| pool.take(fp).is_some()).count();
                if matched > 0 && matched * 2 >= fps.len().min(entries.len()) {
                    found = Some(i);
                    break;
                }
            }
        }
        let Some(i) = found else { continue };
        let (vname, vstate) = vanished.remove(i);
        let from = MailboxPath::new(vstate.new_folder.clone()).unwrap_or_else(|| vname.clone());
        if !new_names.contains(from.as_str()) || new_names.contains(m.new.as_str()) {
            // Nothing to rename, or the target exists already: the maps follow the content.
            state.move_folder(acct, &vname, &m.old, &from)?;
            continue;
        }
        new.rename_folder(&from, &m.new).await?;
        state.move_folder(acct, &vname, &m.old, &m.new)?;
        if state.was_created(acct, &from)? {
            state.mark_created(acct, &m.new)?;
        }
        tracing::info!("folder {vname} was renamed to {} on the old server: renamed {from} to {} on the new server", m.old, m.new);
        totals.renamed.push((vname.display(), m.old.display()));
        renamed_any = true;
    }
    for (vname, vstate) in vanished {
        let target = MailboxPath::new(vstate.new_folder.clone()).unwrap_or_else(|| vname.clone());
        if !opts.propagate_deletes {
            tracing::info!("folder {vname} is gone from the old server; its copies stay in {target} on the new server (--propagate-deletes removes them)");
            totals.folders_gone.push(vname.display());
            continue;
        }
        if new_names.contains(target.as_str()) {
            let entries = state.all_map_entries(acct, &vname)?;
            let st = new.select(&target).await?;
            let ours: Vec<Uid> = entries
                .iter()
                .filter(|(_, _, e)| {
                    e.new_folder == target.as_str()
                        && e.new_uidvalidity.is_none_or(|v| v == st.uidvalidity.get())
                })
                .filter_map(|(_, _, e)| e.new_uid.and_then(Uid::new))
                .collect();
            new.expunge_uids(&ours).await?;
            let left = new.status(&target).await?.messages;
            if left == 0 && state.was_created(acct, &target)? && !target.is_inbox() {
                new.delete_folder(&target).await?;
            }
        }
        state.remove_folder(acct, &vname)?;
        tracing::info!(
            "folder {vname} is gone from the old server: its copies were deleted on the new server"
        );
        totals.folders_deleted.push(vname.display());
    }
    state.flush().await?;
    Ok(renamed_any)
}

/// CREATE; if the server refuses, create the missing parents first and try once more (RFC 3501
/// lets servers create parents themselves, most do, a few do not).
async fn create_with_parents<N: MailStore>(
    new: &mut N,
    name: &MailboxPath,
    delim: Option<char>,
) -> Result<()> {
    match new.create_folder(name).await {
        Err(e) if e.scope <= Scope::Folder && !parents(name, delim).is_empty() => {
            for p in parents(name, delim) {
                // A parent that exists already fails harmlessly.
                let _ = new.create_folder(&p).await;
            }
            new.create_folder(name).await.map_err(|_| e)
        }
        r => r,
    }
}

/// Resolves intents left by an interrupted run: a message that reached the new server (found by
/// body hash and INTERNALDATE at or above the UIDNEXT noted in the intent, and not yet mapped) is
/// committed; the others are dropped so the normal plan copies them again.
async fn resolve_intents<N: MailStore>(
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    new_st: &FolderStatus,
    intents: Vec<(crate::types::UidValidity, Uid, Intent)>,
    report: &mut FolderReport,
) -> Result<()> {
    let (live, stale): (Vec<_>, Vec<_>) = intents.into_iter().partition(|(_, _, i)| {
        i.new_folder == m.new.as_str() && i.new_uidvalidity == new_st.uidvalidity.get()
    });
    // Intents for a folder that was since recreated or remapped: the copy (if any) is gone.
    for (uv, uid, _) in &stale {
        state.commit(acct, &m.old, *uv, &[], &[*uid])?;
        report.requeued += 1;
    }
    if live.is_empty() {
        return Ok(());
    }
    let from = live
        .iter()
        .map(|(_, _, i)| i.new_uidnext_before)
        .min()
        .unwrap_or(1)
        .max(1);
    new.examine(&m.new).await?;
    let candidates = new
        .fetch_messages_from(Uid::new(from).expect("from >= 1"))
        .await?;
    // New-side UIDs already mapped by this folder must not be claimed twice.
    let mut claimed: HashSet<u32> = HashSet::new();
    let uvs: HashSet<crate::types::UidValidity> = live.iter().map(|(uv, _, _)| *uv).collect();
    for uv in uvs {
        for (_, e) in state.map_entries(acct, &m.old, uv)? {
            if e.new_folder == m.new.as_str() {
                claimed.extend(e.new_uid);
            }
        }
    }
    let mut candidates = candidates;
    candidates.sort_by_key(|c| c.uid);
    let mut pool = Pool::new(
        candidates
            .into_iter()
            .filter(|c| !claimed.contains(&c.uid.get()))
            .map(|c| ((sha256_hex(&c.body), c.internaldate), c.uid)),
    );
    #[derive(Default)]
    struct Resolution {
        mapped: Vec<(Uid, MapEntry)>,
        dropped: Vec<Uid>,
    }
    let mut by_uv: HashMap<crate::types::UidValidity, Resolution> = HashMap::new();
    let mut live = live;
    live.sort_by_key(|(uv, uid, _)| (*uv, *uid));
    for (uv, uid, intent) in live {
        let slot = by_uv.entry(uv).or_default();
        let key = (intent.body_sha256.clone(), intent.fp.internaldate.clone());
        match pool.take(&key) {
            Some(new_uid) => {
                slot.mapped.push((
                    uid,
                    MapEntry {
                        new_folder: intent.new_folder,
                        new_uidvalidity: Some(new_st.uidvalidity.get()),
                        new_uid: Some(new_uid.get()),
                        fp: intent.fp,
                        flags: intent.flags,
                    },
                ));
                report.recovered += 1;
            }
            None => {
                slot.dropped.push(uid);
                report.requeued += 1;
            }
        }
    }
    for (uv, r) in by_uv {
        state.commit(acct, &m.old, uv, &r.mapped, &r.dropped)?;
    }
    state.flush().await?;
    tracing::info!(
        "folder {}: resolved an interrupted run: {} found on the new server, {} to copy again",
        m.old,
        report.recovered,
        report.requeued
    );
    Ok(())
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
