//! Making a folder's UID maps trustworthy before planning: the recovery half of exactly-once.
//!
//! The state store is a cache of the truth, so every way it can be wrong is repaired by looking
//! at the servers, always with the one matching rule ([`crate::fingerprint::pair_up`]: Message-ID,
//! INTERNALDATE as an instant, the header hash with line ends unified, a size that fits, and
//! after every exact pairing a copy whose 8-bit header bytes the new server replaced by `X`,
//! with a warning naming the folder):
//! - intents of an interrupted run ([`resolve_intents`]): a copy that reached the new server is
//!   committed, the others are dropped and copied again, leaving a *ghost* behind;
//! - ghosts ([`look_for_late_copies`]): an APPEND that the new server commits after imapshift gave
//!   up on it (a timeout while a large MULTIAPPEND was still being stored, a kill) shows up later
//!   as a copy nobody maps; if its message was copied again it is imapshift's own duplicate and is
//!   removed, otherwise it is taken as the copy;
//! - lost or stale state, a changed old UIDVALIDITY, a recreated new folder ([`reconcile_maps`]);
//! - copies made by a run whose state is lost ([`adopt_existing_copies`]);
//! - new UIDs without UIDPLUS ([`assign_unknown_uids`]).
//!
//! New-side messages that match nothing are mail delivered there and are never touched.

use super::folder::FolderCtx;
use super::{now_unix, FolderReport};
use crate::error::{Error, Result};
use crate::fingerprint::{pair_up, Fingerprint};
use crate::plan::common_flags;
use crate::state::{FolderState, Ghost, Intent, MapEntry};
use crate::store::{FolderStatus, MailStore, MsgSummary};
use crate::types::{Flag, Uid, UidValidity};
use std::collections::{HashMap, HashSet};

/// How long a dropped intent's message may still turn up on the new server: far longer than any
/// server takes to finish storing one APPEND.
pub const GHOST_TTL_SECS: u64 = 3600;

/// Minimum number of earlier copies before a UIDVALIDITY change is judged by evidence.
const MIN_EVIDENCE: usize = 3;

/// Pairs originals (old side) with copies (new side) by fingerprint: index pairs.
fn pairs<'a, 'b, A, B>(
    originals: &'a [A],
    ofp: impl Fn(&'a A) -> &'a Fingerprint,
    copies: &'b [B],
    cfp: impl Fn(&'b B) -> &'b Fingerprint,
) -> Vec<(usize, usize)> {
    let o: Vec<&Fingerprint> = originals.iter().map(&ofp).collect();
    let c: Vec<&Fingerprint> = copies.iter().map(&cfp).collect();
    pair_up(&o, &c)
        .into_iter()
        .enumerate()
        .filter_map(|(k, j)| j.map(|j| (k, j)))
        .collect()
}

/// [`pairs`] for one folder, with a warning naming it when copies paired only because the new
/// server replaced their 8-bit header bytes by `X` (Cyrus `munge8bit`): they are the copies (not
/// copied again), and `verify` lists them as altered.
fn pairs_in<'a, 'b, A, B>(
    folder: &crate::types::MailboxPath,
    originals: &'a [A],
    ofp: impl Fn(&'a A) -> &'a Fingerprint,
    copies: &'b [B],
    cfp: impl Fn(&'b B) -> &'b Fingerprint,
) -> Vec<(usize, usize)> {
    let p = pairs(originals, &ofp, copies, &cfp);
    let munged = p
        .iter()
        .filter(|&&(k, j)| ofp(&originals[k]).munged_in(cfp(&copies[j])))
        .count();
    if munged > 0 {
        tracing::warn!(
            "folder {folder}: {munged} copies on the new server have each 8-bit header byte replaced by X (the new server rewrites 8-bit headers; Cyrus: munge8bit): taken as the copies, not copied again; verify lists them as altered (docs/verify.md, Altered copies)"
        );
    }
    p
}

/// One listed message as `fetch_fingerprints` returns it.
type Listed = (Uid, Fingerprint, Vec<Flag>);

/// The map entry for an old message found on the new server by matching: the flags recorded
/// are those both sides have, so the next plan adds the old side's and removes nothing.
fn matched_entry(
    cx: &FolderCtx<'_>,
    new_st: &FolderStatus,
    (old_uid, fp, old_flags): &Listed,
    (new_uid, _, new_flags): &Listed,
) -> (Uid, MapEntry) {
    (
        *old_uid,
        MapEntry {
            new_folder: cx.m.new.as_str().to_string(),
            new_uidvalidity: Some(new_st.uidvalidity.get()),
            new_uid: Some(new_uid.get()),
            fp: fp.clone(),
            flags: common_flags(old_flags, new_flags),
        },
    )
}

/// Gives copies whose new UID the server did not report the UID of the matching new message.
pub(crate) fn assign_unknown_uids(
    mapped: &mut [(Uid, MapEntry)],
    found: Vec<(Uid, Fingerprint, Vec<Flag>)>,
) {
    let taken: HashSet<u32> = mapped.iter().filter_map(|(_, e)| e.new_uid).collect();
    let found: Vec<(Uid, Fingerprint, Vec<Flag>)> = found
        .into_iter()
        .filter(|(uid, _, _)| !taken.contains(&uid.get()))
        .collect();
    let want: Vec<usize> = (0..mapped.len())
        .filter(|&i| mapped[i].1.new_uid.is_none())
        .collect();
    let originals: Vec<Fingerprint> = want.iter().map(|&i| mapped[i].1.fp.clone()).collect();
    let p = pairs(&originals, |f| f, &found, |(_, fp, _)| fp);
    for (k, j) in p {
        mapped[want[k]].1.new_uid = Some(found[j].0.get());
    }
}

/// The new-side UIDs this old folder's maps claim (under any old UIDVALIDITY).
fn claimed_new_uids(cx: &FolderCtx<'_>, new_uv: UidValidity) -> Result<HashSet<u32>> {
    let mut claimed = HashSet::new();
    for (_, _, e) in cx.state.all_map_entries(cx.acct, &cx.m.old)? {
        if e.new_folder == cx.m.new.as_str() && e.new_uidvalidity.is_none_or(|v| v == new_uv.get())
        {
            claimed.extend(e.new_uid);
        }
    }
    Ok(claimed)
}

/// Resolves intents left by an interrupted run: a message that reached the new server (found
/// by fingerprint among unmapped UIDs at or above the UIDNEXT noted in the intent; headers only,
/// never the bodies) is committed; the others are dropped so the plan copies them again, and
/// leave a ghost (see [`look_for_late_copies`]).
pub(crate) async fn resolve_intents<N: MailStore>(
    new: &mut N,
    cx: &FolderCtx<'_>,
    new_st: &FolderStatus,
    intents: Vec<(UidValidity, Uid, Intent)>,
    report: &mut FolderReport,
) -> Result<()> {
    let (state, acct, m) = (cx.state, cx.acct, cx.m);
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
    let claimed = claimed_new_uids(cx, new_st.uidvalidity)?;
    let candidates: Vec<(Uid, Fingerprint, Vec<Flag>)> = new
        .fetch_fingerprints(Uid::new(from).expect("from >= 1"))
        .await?
        .into_iter()
        .filter(|(u, _, _)| !claimed.contains(&u.get()))
        .collect();
    let mut live = live;
    live.sort_by_key(|(uv, uid, _)| (*uv, *uid));
    // Each intent may only take a copy at or above its own UIDNEXT mark (its copy, if it was
    // stored, got a UID at or above it); a pair below is dropped and the message copied again.
    // Only byte-identical twins in different batches can pair across marks, and for them any
    // pairing leaves each with one copy.
    let found = pairs_in(
        &m.old,
        &live,
        |(_, _, i)| &i.fp,
        &candidates,
        |(_, fp, _)| fp,
    );
    let mut hit: HashMap<usize, usize> = found.into_iter().collect();
    hit.retain(|&k, &mut j| candidates[j].0.get() >= live[k].2.new_uidnext_before);
    #[derive(Default)]
    struct Resolution {
        mapped: Vec<(Uid, MapEntry)>,
        dropped: Vec<Uid>,
        ghosts: Vec<(Uid, Ghost)>,
    }
    let mut by_uv: HashMap<UidValidity, Resolution> = HashMap::new();
    let now = now_unix();
    for (k, (uv, uid, intent)) in live.into_iter().enumerate() {
        let slot = by_uv.entry(uv).or_default();
        match hit.get(&k) {
            Some(&j) => {
                slot.mapped.push((
                    uid,
                    MapEntry {
                        new_folder: intent.new_folder,
                        new_uidvalidity: Some(new_st.uidvalidity.get()),
                        new_uid: Some(candidates[j].0.get()),
                        fp: intent.fp,
                        flags: intent.flags,
                    },
                ));
                report.recovered += 1;
            }
            None => {
                slot.dropped.push(uid);
                slot.ghosts.push((
                    uid,
                    Ghost {
                        new_folder: intent.new_folder,
                        new_uidvalidity: intent.new_uidvalidity,
                        new_uidnext_before: intent.new_uidnext_before,
                        fp: intent.fp,
                        dropped_unix: now,
                    },
                ));
                report.requeued += 1;
            }
        }
    }
    for (uv, r) in by_uv {
        state.add_ghosts(acct, &m.old, uv, &r.ghosts)?;
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

/// Looks for late copies of dropped intents (ghosts): unmapped new-side messages at or above the
/// ghost's UIDNEXT with its fingerprint. A late copy of a message that has a copy again is
/// imapshift's own duplicate: deleted (UID EXPUNGE; without UIDPLUS it is reported instead). A
/// late copy of a message without a copy becomes its copy. Ghosts older than
/// [`GHOST_TTL_SECS`], or of a folder since recreated, are forgotten. Costs a `UID SEARCH` and the
/// headers of unmapped messages only.
pub(crate) async fn look_for_late_copies<N: MailStore>(
    new: &mut N,
    cx: &FolderCtx<'_>,
    st: &FolderStatus,
    new_st: &FolderStatus,
    report: &mut FolderReport,
    failures: &mut Vec<super::Failure>,
) -> Result<()> {
    let (state, acct, m) = (cx.state, cx.acct, cx.m);
    let now = now_unix();
    let ghosts = state.ghosts(acct, &m.old)?;
    let (live, void): (Vec<_>, Vec<_>) = ghosts.into_iter().partition(|(uv, _, g)| {
        *uv == st.uidvalidity
            && g.new_folder == m.new.as_str()
            && g.new_uidvalidity == new_st.uidvalidity.get()
    });
    let mut forget: Vec<(UidValidity, Uid)> = void.iter().map(|(uv, u, _)| (*uv, *u)).collect();
    if !live.is_empty() && new_st.messages > 0 {
        let from = live
            .iter()
            .map(|(_, _, g)| g.new_uidnext_before)
            .min()
            .unwrap_or(1);
        new.examine(&m.new).await?;
        let claimed = claimed_new_uids(cx, new_st.uidvalidity)?;
        let unknown: Vec<Uid> = new
            .uid_search("ALL")
            .await?
            .into_iter()
            .filter(|u| u.get() >= from && !claimed.contains(&u.get()))
            .collect();
        let candidates = if unknown.is_empty() {
            Vec::new()
        } else {
            new.fetch_fingerprints_of(&unknown).await?
        };
        let found = pairs_in(
            &m.old,
            &live,
            |(_, _, g)| &g.fp,
            &candidates,
            |(_, fp, _)| fp,
        );
        let entries: HashMap<Uid, MapEntry> = state
            .map_entries(acct, &m.old, st.uidvalidity)?
            .into_iter()
            .collect();
        let mut duplicates = Vec::new();
        let mut adopted = Vec::new();
        for (k, j) in found {
            let (uv, uid, g) = &live[k];
            let (cuid, fp, flags) = &candidates[j];
            if cuid.get() < g.new_uidnext_before {
                continue;
            }
            if entries.get(uid).is_some_and(|e| e.new_uid.is_some()) {
                // Forgotten only once the duplicate is gone.
                duplicates.push((*cuid, (*uv, *uid)));
            } else {
                forget.push((*uv, *uid));
                adopted.push((
                    *uid,
                    MapEntry {
                        new_folder: m.new.as_str().to_string(),
                        new_uidvalidity: Some(new_st.uidvalidity.get()),
                        new_uid: Some(cuid.get()),
                        fp: fp.clone(),
                        flags: flags.clone(),
                    },
                ));
            }
        }
        if !adopted.is_empty() {
            state.commit(acct, &m.old, st.uidvalidity, &adopted, &[])?;
            report.late_copies += adopted.len() as u64;
        }
        if !duplicates.is_empty() {
            tracing::warn!(
                "folder {}: {} messages were stored by the new server after imapshift had given up on their APPEND and copied them again: removing those late duplicates",
                m.old,
                duplicates.len()
            );
            new.select(&m.new).await?;
            let uids: Vec<Uid> = duplicates.iter().map(|(c, _)| *c).collect();
            match new.expunge_uids(&uids).await {
                Ok(()) => {
                    report.late_copies += duplicates.len() as u64;
                    forget.extend(duplicates.iter().map(|(_, g)| *g));
                }
                Err(e) => super::folder::folder_failure(
                    e.context(format!(
                        "{} late duplicates (new UIDs {}) could not be removed",
                        duplicates.len(),
                        uids.iter()
                            .map(|u| u.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    )),
                    m,
                    failures,
                )?,
            }
        }
    }
    for (uv, uid, g) in &live {
        if now.saturating_sub(g.dropped_unix) > GHOST_TTL_SECS {
            forget.push((*uv, *uid));
        }
    }
    state.remove_ghosts(acct, &m.old, &forget)?;
    Ok(())
}

/// Makes the UID maps of a folder trustworthy before planning. Needed when the state is missing
/// or older than the new server's contents (no maps but the new folder has mail), when the old
/// folder's UIDVALIDITY changed (maps under an old UIDVALIDITY), or when the new folder was
/// recreated (maps point to a void new UIDVALIDITY). Messages are matched by fingerprint as a
/// multiset; new-side messages that match nothing are left alone (mail delivered there). The
/// flags recorded for a rebuilt map are those both sides have, so no flag only the new side has
/// is ever removed.
pub(crate) async fn reconcile_maps<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    cx: &FolderCtx<'_>,
    st: &FolderStatus,
    new_st: &FolderStatus,
    report: &mut FolderReport,
) -> Result<()> {
    let (state, acct, m, opts) = (cx.state, cx.acct, cx.m, cx.opts);
    let uvs = state.map_uidvalidities(acct, &m.old)?;
    let earlier: Vec<(UidValidity, usize)> = uvs
        .iter()
        .copied()
        .filter(|(uv, _)| *uv != st.uidvalidity)
        .collect();
    let entries = state.map_entries(acct, &m.old, st.uidvalidity)?;
    // A map without the new folder's UIDVALIDITY (written by an earlier version for a server
    // without UIDPLUS) cannot tell a recreated folder: it is rebuilt by matching, once.
    let valid = |e: &MapEntry| {
        e.new_folder == m.new.as_str() && e.new_uidvalidity == Some(new_st.uidvalidity.get())
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
    let old_fps = old.fetch_fingerprints(Uid::MIN).await?;
    let new_fps = if new_st.messages > 0 {
        new.examine(&m.new).await?;
        new.fetch_fingerprints(Uid::MIN).await?
    } else {
        Vec::new()
    };
    let kept: Vec<&(Uid, MapEntry)> = entries.iter().filter(|(_, e)| valid(e)).collect();
    let claimed_old: HashSet<Uid> = kept.iter().map(|(u, _)| *u).collect();
    let claimed_new: HashSet<u32> = kept.iter().filter_map(|(_, e)| e.new_uid).collect();
    let olds: Vec<&(Uid, Fingerprint, Vec<Flag>)> = old_fps
        .iter()
        .filter(|(u, _, _)| !claimed_old.contains(u))
        .collect();
    let news: Vec<&(Uid, Fingerprint, Vec<Flag>)> = new_fps
        .iter()
        .filter(|(u, _, _)| !claimed_new.contains(&u.get()))
        .collect();
    let matched: Vec<(Uid, MapEntry)> = pairs_in(&m.old, &olds, |o| &o.1, &news, |n| &n.1)
        .into_iter()
        .map(|(k, j)| matched_entry(cx, new_st, olds[k], news[j]))
        .collect();
    let before: usize = earlier.iter().map(|(_, n)| n).sum();
    let recognised = matched.len() + kept.len();
    if before >= MIN_EVIDENCE && recognised * 2 < before.min(old_fps.len()) && !opts.force_remap {
        return Err(Error::new(
            crate::error::Scope::Folder,
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

/// Before copying, looks at the new folder's messages that imapshift does not know of: above the
/// UIDNEXT recorded at the end of the last run (or above the highest mapped UID). They are mail
/// delivered to the new server, or copies made by a run whose state was lost (a stale state
/// directory restored from a backup, another host's copy). Those whose fingerprint matches a
/// message about to be copied are taken as its copy (mapped, not copied again). Returns the old
/// UIDs so adopted. Costs nothing when no unknown message is there.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn adopt_existing_copies<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    cx: &FolderCtx<'_>,
    st: &FolderStatus,
    new_st: &FolderStatus,
    previous: Option<&FolderState>,
    entries: &[(Uid, MapEntry)],
    copy: &[MsgSummary],
    report: &mut FolderReport,
) -> Result<HashSet<Uid>> {
    let (state, acct, m) = (cx.state, cx.acct, cx.m);
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
    let unknown: Vec<(Uid, Fingerprint, Vec<Flag>)> = new
        .fetch_fingerprints(Uid::new(watermark).expect("watermark >= 1"))
        .await?
        .into_iter()
        .filter(|(u, _, _)| !claimed.contains(&u.get()))
        .collect();
    if unknown.is_empty() {
        return Ok(HashSet::new());
    }
    // Only the headers of the messages to copy, less those known to be unreadable. Should even
    // that fail (an unreadable message the server drops the connection on), adoption is left
    // out for this folder in this run: the copy phase then names the unreadable message.
    if report.skip_adoption {
        return Ok(HashSet::new());
    }
    let wanted: Vec<Uid> = copy
        .iter()
        .map(|c| c.uid)
        .filter(|u| !report.unreadable.contains_key(u) && !report.suspects.contains(u))
        .collect();
    let olds: Vec<(Uid, Fingerprint, Vec<Flag>)> = match old.fetch_fingerprints_of(&wanted).await {
        Ok(v) => v,
        Err(e)
            if e.scope <= crate::error::Scope::Account && e.retry != crate::error::Retry::Fix =>
        {
            tracing::warn!(
                "folder {}: the old server's headers could not be read to look for copies made earlier ({e}); not looking in this run",
                m.old
            );
            report.skip_adoption = true;
            if e.scope == crate::error::Scope::Account {
                return Err(e);
            }
            return Ok(HashSet::new());
        }
        Err(e) => return Err(e),
    };
    let adopted: Vec<(Uid, MapEntry)> = pairs_in(&m.old, &olds, |o| &o.1, &unknown, |n| &n.1)
        .into_iter()
        .map(|(k, j)| matched_entry(cx, new_st, &olds[k], &unknown[j]))
        .collect();
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
