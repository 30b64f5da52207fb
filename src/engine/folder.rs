//! One folder's sync, in named phases over a per-folder context.
//!
//! The phases: the STATUS fast path; EXAMINE; make the maps trustworthy (resolve intents of an
//! interrupted run, rebuild maps by matching, look for late copies of dropped intents); list and
//! plan (the pure planner decides copies, flag changes and deletions); copy in batches (the old
//! side fetches batch k+1 while the new side appends batch k, journaling intents before each
//! APPEND); confirm vanished messages; carry flag changes and deletions; record the folder's
//! state. Decisions are the planner's ([`crate::plan`]); this module only gathers facts and
//! applies them.
//!
//! One unreadable message never blocks its folder: a batch the old server refuses to read is
//! halved until the message is named; a batch during which a connection broke is taken one
//! message at a time on the retry, and a message that breaks the connection alone twice is
//! skipped for the rest of the run. Either way the failure names the old UID.

use super::recover::{
    adopt_existing_copies, assign_unknown_uids, look_for_late_copies, reconcile_maps,
    resolve_intents,
};
use super::{
    apply_filters, incremental_listing, list_old, mapped_of, now_unix, EngineOptions, Failure,
    FolderReport, Statuses,
};
use crate::error::{Error, Result, Retry, Scope};
use crate::fingerprint::Fingerprint;
use crate::plan::{batches, plan_messages, FolderMapping, MessagePlan};
use crate::progress::UserProgress;
use crate::state::{AccountKey, FolderState, Intent, MapEntry, StateStore};
use crate::store::{AppendItem, AppendResult, FolderStatus, MailStore, Message, MsgSummary};
use crate::types::{Uid, UidValidity};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What every phase of one folder's sync needs.
pub(crate) struct FolderCtx<'a> {
    pub state: &'a StateStore,
    pub acct: &'a AccountKey,
    pub m: &'a FolderMapping,
    pub opts: &'a EngineOptions,
    pub progress: &'a UserProgress,
}

impl FolderCtx<'_> {
    /// Records a message's failure (named by its old UID).
    fn fail(&self, out: &mut Vec<Failure>, report: &mut FolderReport, uid: Uid, why: String) {
        tracing::warn!("folder {}: old UID {uid}: {why}", self.m.old);
        out.push(Failure {
            folder: self.m.old.display(),
            old_uid: Some(uid.get()),
            reason: why,
            ..Default::default()
        });
        report.failed += 1;
    }
}

/// What the message filters decide by in this run: the size limit and the age cut-off (which
/// moves with the date). A folder recorded under another key is looked at again.
pub(crate) fn filter_key(opts: &EngineOptions) -> String {
    match (
        opts.filters.max_size,
        opts.filters.age_criteria(opts.as_of_unix),
    ) {
        (None, None) => String::new(),
        (size, age) => format!(
            "size<={};age={}",
            size.map(|s| s.to_string()).unwrap_or_default(),
            age.unwrap_or_default()
        ),
    }
}

/// Whether STATUS shows a folder exactly as the last complete run left it, under the same
/// filters. Only servers with CONDSTORE can say that no flag changed (HIGHESTMODSEQ); others
/// are always listed.
fn unchanged(
    p: &FolderState,
    old: &FolderStatus,
    new: &FolderStatus,
    m: &FolderMapping,
    filters: &str,
) -> bool {
    p.complete
        && p.filter_key == filters
        && old.uidnext != 0
        && p.old_uidvalidity == old.uidvalidity.get()
        && p.old_uidnext == old.uidnext
        && p.old_messages == old.messages
        && p.new_folder == m.new.as_str()
        && p.new_uidvalidity == new.uidvalidity.get()
        && matches!((p.old_highestmodseq, old.highestmodseq), (Some(a), Some(b)) if a == b)
}

/// Syncs one folder. Errors of folder scope fail this folder; wider ones end the account's
/// attempt (the caller reconnects and calls again: every phase is idempotent).
pub(crate) async fn sync_folder<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    cx: &FolderCtx<'_>,
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
    statuses: Statuses,
) -> Result<()> {
    let (state, acct, m, opts) = (cx.state, cx.acct, cx.m, cx.opts);
    report.note = m.note();
    let previous = state.folder_state(acct, &m.old)?;
    let intents = state.intents(acct, &m.old)?;
    let ghosts = !state.ghosts(acct, &m.old)?.is_empty();

    // Phase 1, fast path: one pipelined STATUS per side showed nothing changed since the last
    // complete run.
    if let (Some(p), Some(o), Some(n)) = (&previous, &statuses.old, &statuses.new) {
        if intents.is_empty()
            && !ghosts
            && unchanged(p, o, n, m, &filter_key(opts))
            && !(opts.propagate_deletes && p.kept > 0)
        {
            tracing::debug!("folder {}: unchanged since the last run (STATUS)", m.old);
            report.messages = o.messages;
            report.filtered = p.filtered.min(u64::from(o.messages));
            report.skipped = u64::from(o.messages) - report.filtered;
            return Ok(());
        }
    }

    // Phase 2: open the old folder.
    let st = old.examine(&m.old).await?;
    report.messages = st.messages;
    let modseq = statuses.old.and_then(|s| s.highestmodseq);

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

    // Phase 3: make the maps trustworthy. The pipelined STATUS of the new side is fresh: this
    // folder has not been touched since.
    let new_st = match statuses.new {
        Some(s) => s,
        None => new.status(&m.new).await?,
    };
    if !intents.is_empty() {
        resolve_intents(new, cx, &new_st, intents, report).await?;
    }
    reconcile_maps(old, new, cx, &st, &new_st, report).await?;
    if ghosts {
        look_for_late_copies(new, cx, &st, &new_st, report, failures).await?;
    }

    // Phase 4: list and plan.
    let entries = state.map_entries(acct, &m.old, st.uidvalidity)?;
    let listing = match incremental_listing(old, previous.as_ref(), &st, &entries, opts).await? {
        Some(l) => l,
        None => list_old(old, &st).await?,
    };
    let mut plan = plan_messages(&listing, &mapped_of(&entries), opts.propagate_deletes);
    report.filtered = apply_filters(old, opts, &mut plan.copy).await?;
    if !plan.copy.is_empty() {
        let adopted = adopt_existing_copies(
            old,
            new,
            cx,
            &st,
            &new_st,
            previous.as_ref(),
            &entries,
            &plan.copy,
            report,
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
    cx.progress.add_total(plan.copy.len() as u64);

    // Phase 5: copy.
    let failed_before = report.failed;
    let mut new_uidnext = new_st.uidnext;
    if !plan.copy.is_empty() {
        let copied =
            copy_messages(old, new, cx, &st, &new_st, &plan.copy, report, failures).await?;
        new_uidnext = copied.uidnext;
        // Phase 6: messages asked for and not returned must really be gone.
        confirm_vanished(old, cx, copied.vanished, report, failures).await?;
    }
    // Phase 7: flag changes and deletions, each deletion confirmed by the old server first.
    confirm_deletes(old, cx, &plan).await?;
    let mut complete = report.failed == failed_before;
    if !apply_changes(new, cx, st.uidvalidity, &plan, &entries, report, failures).await? {
        complete = false;
    }
    state.flush().await?;

    // Phase 8: record the folder's state, complete or not (an incomplete folder still follows
    // renames and deletions, and is listed again next time).
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
            complete,
            filtered: report.filtered,
            filter_key: filter_key(opts),
        },
    )?;
    Ok(())
}

/// What the copy phase learned.
struct Copied {
    /// The new folder's UIDNEXT after the last APPEND.
    uidnext: u32,
    /// Old UIDs asked for and not returned.
    vanished: Vec<Uid>,
}

/// One batch as the producer hands it to the consumer.
struct Batch {
    asked: Vec<Uid>,
    msgs: Vec<Message>,
    /// Messages that could not be read (named by UID, with the reason).
    unreadable: Vec<(Uid, String)>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The UIDs of one batch that broke a connection: each alone on the next attempt; one that was
/// alone is unreadable for the rest of the run.
fn note_broken_batch(narrow: &std::sync::Mutex<Narrowing>, uids: &[Uid], why: &str) {
    let mut n = narrow.lock().expect("narrowing lock");
    match uids {
        [one] => {
            // Twice alone: not a chance fault of the network any more.
            let count = n.broke_alone.entry(*one).or_insert(0);
            *count += 1;
            if *count >= BREAKS_ALONE {
                n.unreadable.insert(
                    *one,
                    format!("the connection broke every time this message was copied ({why})"),
                );
            }
        }
        many => n.suspects.extend(many.iter().copied()),
    }
}

/// How often a message must break a connection while handled alone before it is skipped.
const BREAKS_ALONE: u32 = 2;

/// Suspect and unreadable UIDs, shared by the producer and the consumer of one copy phase.
#[derive(Default)]
struct Narrowing {
    suspects: BTreeSet<Uid>,
    broke_alone: BTreeMap<Uid, u32>,
    unreadable: BTreeMap<Uid, String>,
}

/// Splits the messages to copy into batches; a suspect (a message that was in a batch when a
/// connection broke) goes alone.
fn plan_batches(
    copy: &[MsgSummary],
    suspects: &BTreeSet<Uid>,
    opts: &EngineOptions,
) -> Vec<Vec<MsgSummary>> {
    let mut out = Vec::new();
    for b in batches(copy, opts.batch_bytes, opts.batch_messages) {
        if b.iter().any(|m| suspects.contains(&m.uid)) {
            let (alone, rest): (Vec<MsgSummary>, Vec<MsgSummary>) =
                b.into_iter().partition(|m| suspects.contains(&m.uid));
            out.extend(alone.into_iter().map(|m| vec![m]));
            if !rest.is_empty() {
                out.push(rest);
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// FETCH of a batch; when the old server refuses to read it (a message-scope error, the
/// connection still fine), halves it until the unreadable messages are named. Costs nothing
/// more when the batch reads.
async fn fetch_narrowing<O: MailStore>(
    old: &mut O,
    uids: &[Uid],
) -> Result<(Vec<Message>, Vec<(Uid, String)>)> {
    let mut msgs = Vec::new();
    let mut bad = Vec::new();
    let mut todo: Vec<Vec<Uid>> = vec![uids.to_vec()];
    while let Some(set) = todo.pop() {
        match old.fetch_messages(&set).await {
            Ok(got) => msgs.extend(got),
            Err(e) if e.scope == Scope::Message => {
                if let [one] = set.as_slice() {
                    bad.push((
                        *one,
                        format!("the old server cannot read it: {}", e.message),
                    ));
                } else {
                    let (a, b) = set.split_at(set.len() / 2);
                    todo.push(b.to_vec());
                    todo.push(a.to_vec());
                }
            }
            Err(e) => return Err(e),
        }
    }
    msgs.sort_by_key(|m| m.uid);
    Ok((msgs, bad))
}

/// Phase 5: streams the batches, journaling intents before each APPEND and committing the maps
/// after it.
#[allow(clippy::too_many_arguments)]
async fn copy_messages<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    cx: &FolderCtx<'_>,
    st: &FolderStatus,
    new_st: &FolderStatus,
    copy: &[MsgSummary],
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
) -> Result<Copied> {
    let (m, opts) = (cx.m, cx.opts);
    let narrow = std::sync::Mutex::new(Narrowing {
        suspects: std::mem::take(&mut report.suspects),
        broke_alone: std::mem::take(&mut report.broke_alone),
        unreadable: std::mem::take(&mut report.unreadable),
    });
    let plan = {
        let n = narrow.lock().expect("narrowing lock");
        plan_batches(copy, &n.suspects, opts)
    };
    // Without UIDPLUS the new UIDs are looked up in this folder after each batch; its
    // UIDVALIDITY is the one the copies get.
    let mut new_uv = new_st.uidvalidity;
    let mut new_examined = false;
    if !new.caps().has("UIDPLUS") {
        new_uv = new.examine(&m.new).await?.uidvalidity;
        new_examined = true;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch>>(1);
    let narrow_ref = &narrow;
    let producer = async move {
        for b in plan {
            // Messages that broke the connection alone twice are skipped (and failed).
            let (skipped, b): (Vec<(Uid, String)>, Vec<MsgSummary>) = {
                let n = narrow_ref.lock().expect("narrowing lock");
                let (skip, keep): (Vec<MsgSummary>, Vec<MsgSummary>) = b
                    .into_iter()
                    .partition(|s| n.unreadable.contains_key(&s.uid));
                let why = skip
                    .iter()
                    .map(|s| (s.uid, n.unreadable[&s.uid].clone()))
                    .collect();
                (why, keep)
            };
            let uids: Vec<Uid> = b.iter().map(|s| s.uid).collect();
            let bytes: u64 = b.iter().map(|s| u64::from(s.size)).sum();
            let permit = match (&opts.memory, uids.is_empty()) {
                (Some(m), false) => Some(m.acquire(bytes).await),
                _ => None,
            };
            if let Some(rate) = &opts.old_rate {
                rate.take(b.len() as u64, bytes).await;
            }
            let r = if uids.is_empty() {
                Ok((Vec::new(), Vec::new()))
            } else {
                fetch_narrowing(old, &uids).await
            };
            let r = match r {
                Ok((msgs, mut unreadable)) => {
                    unreadable.extend(skipped);
                    Ok(Batch {
                        asked: uids,
                        msgs,
                        unreadable,
                        _permit: permit,
                    })
                }
                Err(e) => {
                    if e.scope == Scope::Account {
                        note_broken_batch(narrow_ref, &uids, &e.message);
                    }
                    Err(e)
                }
            };
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
            let mut vanished = Vec::new();
            while let Some(r) = rx.recv().await {
                // A clean stop: what was appended is committed; the next batch waits.
                if crate::failpoint::stop_requested() {
                    return Err(crate::failpoint::interrupted());
                }
                // The permit is released when this batch is done.
                let batch = r?;
                for (uid, why) in &batch.unreadable {
                    cx.fail(failures, report, *uid, why.clone());
                }
                let got: HashSet<Uid> = batch.msgs.iter().map(|m| m.uid).collect();
                let unreadable: HashSet<Uid> = batch.unreadable.iter().map(|(u, _)| *u).collect();
                vanished.extend(
                    batch
                        .asked
                        .iter()
                        .filter(|u| !got.contains(u) && !unreadable.contains(u)),
                );
                if batch.msgs.is_empty() {
                    continue;
                }
                let asked: Vec<Uid> = batch.msgs.iter().map(|x| x.uid).collect();
                let appended = append_batch(
                    new,
                    cx,
                    st.uidvalidity,
                    new_uv,
                    &mut uidnext,
                    &mut new_examined,
                    &batch.msgs,
                    report,
                    failures,
                )
                .await;
                if let Err(e) = appended {
                    if e.scope == Scope::Account {
                        note_broken_batch(&narrow, &asked, &e.message);
                    }
                    return Err(e);
                }
            }
            Ok::<Copied, Error>(Copied { uidnext, vanished })
        }
        .await;
        // Whatever happened, let a producer blocked on a full channel see the end.
        rx.close();
        r
    };
    let ((), res) = tokio::join!(producer, consumer);
    let n = narrow.into_inner().unwrap_or_else(|p| p.into_inner());
    report.suspects = n.suspects;
    report.broke_alone = n.broke_alone;
    report.unreadable = n.unreadable;
    res
}

/// Journals, appends and commits one batch.
#[allow(clippy::too_many_arguments)]
async fn append_batch<N: MailStore>(
    new: &mut N,
    cx: &FolderCtx<'_>,
    uv: UidValidity,
    new_uv: UidValidity,
    uidnext: &mut u32,
    new_examined: &mut bool,
    msgs: &[Message],
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
) -> Result<()> {
    let (state, acct, m, opts) = (cx.state, cx.acct, cx.m, cx.opts);
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
                    new_uidvalidity: new_uv.get(),
                    new_uidnext_before: *uidnext,
                    fp: fp.clone(),
                    flags: x.flags.clone(),
                },
            )
        })
        .collect();
    state.journal(acct, &m.old, uv, &journal).await?;
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
            AppendResult::Stored {
                uidvalidity,
                uid,
                dropped_flags,
                refused_keywords,
            } => {
                if let Some(u) = uid {
                    *uidnext = (*uidnext).max(u.get() + 1);
                } else {
                    uid_unknown = true;
                }
                if !dropped_flags.is_empty() || !refused_keywords.is_empty() {
                    tracing::debug!(
                        "folder {}: old UID {} copied without {} {} (refused by the new server)",
                        m.old,
                        x.uid,
                        dropped_flags.join(" "),
                        refused_keywords.join(" ")
                    );
                    report.flags_dropped += 1;
                    let names = dropped_flags.iter().chain(&refused_keywords).cloned();
                    report.flags_dropped_names.extend(names);
                }
                bytes += x.body.len() as u64;
                mapped_now.push((
                    x.uid,
                    MapEntry {
                        new_folder: m.new.as_str().to_string(),
                        // Without UIDPLUS, the UIDVALIDITY of the folder appended to: a folder
                        // recreated later is then noticed, and its maps voided.
                        new_uidvalidity: Some(uidvalidity.unwrap_or(new_uv).get()),
                        new_uid: uid.map(|u| u.get()),
                        fp,
                        // What the copy got: the old side's flags less those refused, so the
                        // next run tries the refused ones once more as a flag change (a system
                        // flag refused along with a bad keyword then arrives). Keywords the
                        // folder cannot take (`refused_keywords`) count as carried: trying them
                        // on every run would only warn again.
                        flags: x
                            .flags
                            .iter()
                            .filter(|f| !dropped_flags.contains(f))
                            .cloned()
                            .collect(),
                    },
                ));
            }
            AppendResult::Refused(why) => {
                dropped.push(x.uid);
                // The server's words (`NO [TOOBIG] ...`) are the reason; the Message-ID and
                // size name the message for the admin (never dropped silently).
                cx.fail(failures, report, x.uid, why);
                if let Some(f) = failures.last_mut() {
                    f.message_id = fp.message_id.clone();
                    f.size = Some(fp.size);
                }
            }
        }
    }
    if uid_unknown {
        // Without APPENDUID: find the new copies by fingerprint (never by changing their bytes)
        // in this very folder, and learn where the next batch starts.
        if !*new_examined {
            new.examine(&m.new).await?;
            *new_examined = true;
        }
        let from = Uid::new((*uidnext).max(1)).expect("non-zero");
        let found = new.fetch_fingerprints(from).await?;
        *uidnext = found
            .iter()
            .map(|(u, _, _)| u.get() + 1)
            .max()
            .unwrap_or(*uidnext)
            .max(*uidnext);
        assign_unknown_uids(&mut mapped_now, found);
    }
    state.commit(acct, &m.old, uv, &mapped_now, &dropped)?;
    report.copied += mapped_now.len() as u64;
    report.bytes += bytes;
    cx.progress.inc(msgs.len() as u64, bytes);
    Ok(())
}

/// Phase 6: messages that a FETCH did not return are gone only if `UID SEARCH` agrees; one that
/// is still there fails (named), so the folder is not recorded complete with a gap.
async fn confirm_vanished<O: MailStore>(
    old: &mut O,
    cx: &FolderCtx<'_>,
    vanished: Vec<Uid>,
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
) -> Result<()> {
    if vanished.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<u32> = vanished.iter().map(|u| u.get()).collect();
    sorted.sort_unstable();
    let set = crate::imap::wire::format_uid_set(&sorted);
    let present: HashSet<Uid> = old
        .uid_search(&format!("UID {set}"))
        .await?
        .into_iter()
        .collect();
    for uid in vanished {
        if present.contains(&uid) {
            cx.fail(
                failures,
                report,
                uid,
                "the old server did not return this message when asked for it".into(),
            );
        } else {
            report.vanished += 1;
        }
    }
    Ok(())
}

/// Before phase 7 deletes copies: the messages the listing left out must really be gone, by
/// `UID SEARCH`. A listing is only as good as the message count the server gave when the
/// folder was opened; an `EXISTS` that went down inside that reply (a server or middlebox bug:
/// RFC 9051 lets the count fall only by EXPUNGE) would make every message past it look
/// expunged, and with propagation its copy deleted. If the server still has any, the folder
/// fails (nothing deleted, its state not recorded, listed again next run).
async fn confirm_deletes<O: MailStore>(
    old: &mut O,
    cx: &FolderCtx<'_>,
    plan: &MessagePlan,
) -> Result<()> {
    if plan.deletes.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<u32> = plan.deletes.iter().map(|(o, _)| o.get()).collect();
    sorted.sort_unstable();
    let set = crate::imap::wire::format_uid_set(&sorted);
    let present = old.uid_search(&format!("UID {set}")).await?;
    if present.is_empty() {
        return Ok(());
    }
    let mut uids: Vec<u32> = present.iter().map(|u| u.get()).collect();
    uids.sort_unstable();
    Err(Error::new(
        Scope::Folder,
        Retry::Transient,
        format!(
            "folder {}: the listing left out {} message(s) the old server still has (UIDs {}): \
             not trusting it, no copy deleted; the next run lists the folder again",
            cx.m.old,
            uids.len(),
            crate::imap::wire::format_uid_set(&uids)
        ),
    ))
}

/// Phase 7: carries flag changes to the new copies (as `+FLAGS`/`-FLAGS` of what the old side
/// changed, so flags only the new side has stay) and, with propagation, deletes copies of
/// messages the old server expunged. Returns false when something failed (recorded).
async fn apply_changes<N: MailStore>(
    new: &mut N,
    cx: &FolderCtx<'_>,
    uv: UidValidity,
    plan: &MessagePlan,
    entries: &[(Uid, MapEntry)],
    report: &mut FolderReport,
    failures: &mut Vec<Failure>,
) -> Result<bool> {
    let (state, acct, m) = (cx.state, cx.acct, cx.m);
    if plan.flag_updates.is_empty() && plan.deletes.is_empty() {
        return Ok(true);
    }
    let mut ok = true;
    new.select(&m.new).await?;
    if !plan.flag_updates.is_empty() {
        let changes: Vec<(Uid, Vec<String>, Vec<String>)> = plan
            .flag_updates
            .iter()
            .map(|u| (u.new_uid, u.add.clone(), u.remove.clone()))
            .collect();
        match new.store_flag_changes(&changes).await {
            Ok(not_set) => {
                crate::failpoint::hit("after-store")?;
                // Keywords the new folder refused are dropped for good (counted, named in the
                // folder's warning) and recorded as carried, like those of a copy.
                report.flags_dropped += not_set.len() as u64;
                for (_, kw) in not_set {
                    report.flags_dropped_names.extend(kw);
                }
                let by_old: HashMap<Uid, &MapEntry> =
                    entries.iter().map(|(u, e)| (*u, e)).collect();
                let changed: Vec<(Uid, MapEntry)> = plan
                    .flag_updates
                    .iter()
                    .filter_map(|u| {
                        by_old.get(&u.old_uid).map(|e| {
                            let mut e = (*e).clone();
                            e.flags = u.now.clone();
                            (u.old_uid, e)
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

/// Keyword names a warning lists before it says how many more there are.
const NAMES_IN_WARNING: usize = 20;

/// One warning per folder and run for the flags the new server refused (issue 12: a folder
/// takes at most so many keywords, quirk `cyrus-keyword-limit`): the folder, how many messages,
/// which flags. The messages themselves are copied.
pub(crate) fn warn_dropped_flags(m: &FolderMapping, report: &FolderReport) {
    if report.flags_dropped == 0 {
        return;
    }
    let names = &report.flags_dropped_names;
    let mut shown: Vec<&str> = names
        .iter()
        .take(NAMES_IN_WARNING)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(NAMES_IN_WARNING);
    let more = (more > 0).then(|| format!("and {more} more"));
    shown.extend(more.as_deref());
    tracing::warn!(
        "folder {} (new folder {}): {} messages copied or updated without flags the new server refused: {} (the messages are there; flags_dropped in the report)",
        m.old,
        m.new,
        report.flags_dropped,
        shown.join(" ")
    );
}

/// Records a folder-scoped error as that folder's failure; passes wider errors on.
pub(crate) fn folder_failure(
    e: Error,
    m: &FolderMapping,
    failures: &mut Vec<Failure>,
) -> Result<()> {
    if e.scope > Scope::Folder {
        return Err(e);
    }
    failures.push(Failure {
        folder: m.old.display(),
        old_uid: None,
        reason: e.message,
        ..Default::default()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(uid: u32) -> MsgSummary {
        MsgSummary {
            uid: Uid::new(uid).unwrap(),
            size: 10,
            flags: vec![],
        }
    }

    #[test]
    fn suspects_go_alone() {
        let opts = EngineOptions {
            batch_bytes: 1 << 20,
            batch_messages: 3,
            dry_run: false,
            propagate_deletes: false,
            force_remap: false,
            filters: Default::default(),
            folder_rules: Vec::new(),
            memory: None,
            old_rate: None,
            new_rate: None,
            connections_per_user: 1,
            as_of_unix: 0,
        };
        let copy: Vec<MsgSummary> = (1..=7).map(ms).collect();
        let none = BTreeSet::new();
        let shape = |b: Vec<Vec<MsgSummary>>| -> Vec<Vec<u32>> {
            b.iter()
                .map(|v| v.iter().map(|m| m.uid.get()).collect())
                .collect()
        };
        assert_eq!(
            shape(plan_batches(&copy, &none, &opts)),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        let sus: BTreeSet<Uid> = [4, 5, 6].iter().map(|&u| Uid::new(u).unwrap()).collect();
        assert_eq!(
            shape(plan_batches(&copy, &sus, &opts)),
            vec![vec![1, 2, 3], vec![4], vec![5], vec![6], vec![7]]
        );
    }

    /// The STATUS fast path: a row per reason to look at a folder again.
    #[test]
    fn fast_path_table() {
        let uv = |n| UidValidity::new(n).unwrap();
        let m = FolderMapping::same_name(crate::types::MailboxPath::new("Work").unwrap());
        let st = |uidnext, messages, modseq| FolderStatus {
            uidvalidity: uv(5),
            uidnext,
            messages,
            highestmodseq: modseq,
        };
        let rec = FolderState {
            old_uidvalidity: 5,
            old_uidnext: 11,
            old_messages: 10,
            new_folder: "Work".into(),
            new_uidvalidity: 5,
            last_sync_unix: 0,
            old_highestmodseq: Some(7),
            kept: 0,
            new_uidnext: 11,
            complete: true,
            filtered: 0,
            filter_key: String::new(),
        };
        let new = st(11, 10, None);
        let cases: Vec<(&str, FolderState, FolderStatus, bool)> = vec![
            ("nothing changed", rec.clone(), st(11, 10, Some(7)), true),
            (
                "a message failed last time (issue 10 item 6)",
                FolderState {
                    complete: false,
                    ..rec.clone()
                },
                st(11, 10, Some(7)),
                false,
            ),
            ("new mail", rec.clone(), st(12, 11, Some(8)), false),
            ("a flag changed", rec.clone(), st(11, 10, Some(9)), false),
            ("no CONDSTORE", rec.clone(), st(11, 10, None), false),
            (
                "server gave no UIDNEXT",
                rec.clone(),
                st(0, 10, Some(7)),
                false,
            ),
        ];
        for (name, p, old, want) in cases {
            assert_eq!(unchanged(&p, &old, &new, &m, ""), want, "{name}");
        }
        let recreated = FolderStatus {
            uidvalidity: uv(6),
            ..new
        };
        assert!(
            !unchanged(&rec, &st(11, 10, Some(7)), &recreated, &m, ""),
            "new folder recreated"
        );
    }
}
