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
use crate::plan::{batches, plan_copies, plan_folders, FolderMapping};
use crate::progress::UserProgress;
use crate::state::{AccountKey, FolderState, Intent, MapEntry, StateStore};
use crate::store::{AppendItem, AppendResult, FolderStatus, MailStore, Message, MsgSummary};
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
    /// A folder interrupted by a lost connection: its counts carry over to the retry.
    #[serde(skip)]
    pub partial: Option<FolderReport>,
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

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Syncs one account over open sessions. Errors of account scope (a broken connection) end it;
/// the caller may reconnect and call again: every step is idempotent.
pub async fn sync_account<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    opts: &EngineOptions,
    progress: &UserProgress,
    totals: &mut AccountTotals,
) -> Result<()> {
    let old_folders = old.list_folders().await?;
    let new_folders = new.list_folders().await?;
    let plan = plan_folders(&old_folders, &new_folders);
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
    for m in &plan.mappings {
        if done.contains(&m.old.display()) || failed_new.contains(&m.new) {
            continue;
        }
        progress.folder(&m.old.display());
        let mut report = match totals.partial.take() {
            Some(p) if p.old == m.old.display() => p,
            _ => FolderReport {
                old: m.old.display(),
                new: m.new.display(),
                ..Default::default()
            },
        };
        let r = sync_folder(
            old,
            new,
            state,
            acct,
            m,
            opts,
            progress,
            &mut report,
            &mut totals.failures,
        )
        .await;
        match r {
            Ok(()) => totals.folders.push(report),
            Err(e) if e.scope <= Scope::Folder => {
                totals.failures.push(Failure {
                    folder: m.old.display(),
                    old_uid: None,
                    reason: e.message,
                });
                totals.folders.push(report);
            }
            Err(e) => {
                totals.partial = Some(report);
                return Err(e.context(format!("folder {}", m.old)));
            }
        }
    }
    Ok(())
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
) -> Result<()> {
    let st = old.examine(&m.old).await?;
    report.messages = st.messages;
    let previous = state.folder_state(acct, &m.old)?;
    let intents = state.intents(acct, &m.old)?;

    // Fast path: nothing new since a complete earlier run (any new message raises UIDNEXT).
    if let Some(p) = &previous {
        if intents.is_empty()
            && st.uidnext != 0
            && p.old_uidvalidity == st.uidvalidity.get()
            && p.old_uidnext == st.uidnext
            && p.new_folder == m.new.as_str()
        {
            report.skipped = state.mapped_uids(acct, &m.old, st.uidvalidity)?.len() as u64;
            return Ok(());
        }
    }

    if opts.dry_run {
        let (copy, already) = copies_to_make(old, state, acct, m, &st).await?;
        report.copied = copy.len() as u64;
        report.bytes = copy.iter().map(|c| c.size as u64).sum();
        report.skipped = already as u64;
        report.requeued = intents.len() as u64;
        return Ok(());
    }

    let new_st = new.status(&m.new).await?;
    if !intents.is_empty() {
        resolve_intents(new, state, acct, m, &new_st, intents, report).await?;
    }

    let (copy, already) = copies_to_make(old, state, acct, m, &st).await?;
    // Copied by this run before a reconnect: counted as copied, not as skipped.
    report.skipped = (already as u64).saturating_sub(report.copied + report.recovered);
    progress.add_total(copy.len() as u64);
    let mut all_done = true;

    if !copy.is_empty() {
        let plan = batches(&copy, opts.batch_bytes, opts.batch_messages);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Vec<Uid>, Vec<Message>)>>(1);
        let producer = async {
            for b in plan {
                let uids: Vec<Uid> = b.iter().map(|s| s.uid).collect();
                let r = old.fetch_messages(&uids).await.map(|msgs| (uids, msgs));
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
                    let (asked, msgs) = r?;
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
                    state.commit(acct, &m.old, st.uidvalidity, &mapped_now, &dropped)?;
                    report.copied += mapped_now.len() as u64;
                    report.bytes += bytes;
                    progress.inc(msgs.len() as u64, bytes);
                    if uid_unknown {
                        // Without UIDPLUS, learn where the next batch starts (for crash recovery).
                        uidnext = new.status(&m.new).await?.uidnext.max(uidnext);
                    }
                }
                Ok::<(), Error>(())
            }
            .await;
            // Whatever happened, let a producer blocked on a full channel see the end.
            rx.close();
            r
        };
        let ((), res) = tokio::join!(producer, consumer);
        res?;
        all_done = report.failed == 0;
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
            },
        )?;
    }
    Ok(())
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

/// Lists the old folder and asks the planner which messages are not mapped yet.
async fn copies_to_make<O: MailStore>(
    old: &mut O,
    state: &StateStore,
    acct: &AccountKey,
    m: &FolderMapping,
    st: &FolderStatus,
) -> Result<(Vec<MsgSummary>, usize)> {
    let mapped: HashSet<Uid> = state
        .mapped_uids(acct, &m.old, st.uidvalidity)?
        .into_iter()
        .collect();
    let listing = if st.messages == 0 {
        Vec::new()
    } else {
        old.list_messages(st).await?
    };
    Ok(plan_copies(&listing, &mapped))
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
    for (uv, _, _) in &live {
        for u in state.mapped_uids(acct, &m.old, *uv)? {
            if let Some(e) = state.map_entry(acct, &m.old, *uv, u)? {
                if e.new_folder == m.new.as_str() {
                    if let Some(n) = e.new_uid {
                        claimed.insert(n);
                    }
                }
            }
        }
    }
    let mut pool: HashMap<(String, String), Vec<Uid>> = HashMap::new();
    for c in candidates {
        if claimed.contains(&c.uid.get()) {
            continue;
        }
        pool.entry((sha256_hex(&c.body), c.internaldate.clone()))
            .or_default()
            .push(c.uid);
    }
    for v in pool.values_mut() {
        v.sort_by_key(|u| std::cmp::Reverse(*u));
    }
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
        match pool.get_mut(&key).and_then(Vec::pop) {
            Some(new_uid) => {
                slot.mapped.push((
                    uid,
                    MapEntry {
                        new_folder: intent.new_folder,
                        new_uidvalidity: Some(new_st.uidvalidity.get()),
                        new_uid: Some(new_uid.get()),
                        fp: intent.fp,
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
