//! Following folder changes on the old server: renames and deletions since the last run.
//!
//! A folder that appeared under another name with the same UIDVALIDITY, or holding mostly the
//! same messages as a vanished one (most of both: a new folder with one message copied out of a
//! big one is no rename), was renamed: the new server's copy is renamed too and the state
//! follows, so nothing is copied again. Renaming a parent moves its children on both servers,
//! so a child found under the parent's new name needs only its state moved. A folder imapshift
//! did not create is never renamed on the new server. A folder that is simply gone has its
//! copies deleted only with propagation on (and the folder itself only if imapshift created it
//! and it is then empty); otherwise it is reported and kept.
//!
//! Every step's error is that folder's: it is reported and the rest of the account goes on.

use super::folder::folder_failure;
use super::AccountTotals;
use crate::error::{Result, Scope};
use crate::fingerprint::{pair_up, Fingerprint};
use crate::folders::delimiter_of;
use crate::plan::{FolderMapping, FolderPlan};
use crate::state::{AccountKey, FolderState, StateStore};
use crate::store::{FolderInfo, MailStore};
use crate::types::{MailboxPath, Uid};
use std::collections::{BTreeSet, HashSet};

/// What following the old server's folder changes did.
#[derive(Default)]
pub(crate) struct Followed {
    /// A folder was renamed on the new server: plan again from its current tree.
    pub renamed: bool,
    /// Old folders to leave alone in this run (a rename of their copy failed: copying them
    /// anew would duplicate it).
    pub skip: HashSet<MailboxPath>,
}

/// Where a new-side folder is now, after the renames done so far (`(from, to)`, in order): a
/// child moves with its parent.
fn relocate(name: &str, renames: &[(String, String)], delim: Option<char>) -> String {
    let mut cur = name.to_string();
    for (from, to) in renames {
        if cur == *from {
            cur = to.clone();
        } else if let Some(d) = delim {
            if let Some(rest) = cur.strip_prefix(&format!("{from}{d}")) {
                cur = format!("{to}{d}{rest}");
            }
        }
    }
    cur
}

/// Whether a fresh folder's messages are mostly the vanished folder's copies, and those copies
/// mostly its messages.
fn mostly_same(fresh: &[Fingerprint], copies: &[&Fingerprint]) -> bool {
    let f: Vec<&Fingerprint> = fresh.iter().collect();
    // The stored fingerprints as the originals: one kept by an earlier version (version 0)
    // still pairs with one made now.
    let matched = pair_up(copies, &f).iter().filter(|p| p.is_some()).count();
    matched > 0 && matched * 2 > fresh.len() && matched * 2 > copies.len()
}

/// See the module docs.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn follow_folder_changes<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    propagate_deletes: bool,
    plan: &FolderPlan,
    old_folders: &[FolderInfo],
    new_folders: &[FolderInfo],
    totals: &mut AccountTotals,
) -> Result<Followed> {
    let mut out = Followed::default();
    // Anything the old server still lists (even unselectable or in conflict) has not vanished.
    let current: HashSet<&str> = old_folders.iter().map(|f| f.name.as_str()).collect();
    let mut vanished: Vec<(MailboxPath, FolderState)> = state
        .folder_states(acct)?
        .into_iter()
        .filter(|(name, _)| !current.contains(name.as_str()))
        .filter_map(|(name, st)| MailboxPath::new(name).map(|n| (n, st)))
        .collect();
    if vanished.is_empty() {
        return Ok(out);
    }
    let delim = delimiter_of(new_folders);
    let mut new_names: BTreeSet<String> = new_folders
        .iter()
        .map(|f| f.name.as_str().to_string())
        .collect();
    let mut renames: Vec<(String, String)> = Vec::new();
    let folder_error = |e: crate::error::Error, m: &MailboxPath, totals: &mut AccountTotals| {
        let fm = FolderMapping::same_name(m.clone());
        folder_failure(e, &fm, &mut totals.failures)
    };
    // Old folders imapshift has never seen: rename candidates (plan order: parents first).
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
    for (m, st) in fresh.into_iter().zip(statuses) {
        let Ok(st) = st else { continue };
        let same_uv = vanished
            .iter()
            .position(|(_, v)| v.old_uidvalidity == st.uidvalidity.get());
        let mut found = None;
        // The same UIDVALIDITY (Dovecot keeps it across RENAME) decides alone only for empty
        // folders; servers whose UIDVALIDITY is a clock may repeat one, so a folder with mail is
        // a rename only if it holds most of the vanished folder's copies, and they most of it.
        if let Some(i) = same_uv {
            if st.messages == 0 && vanished[i].1.old_messages == 0 {
                found = Some(i);
            }
        }
        if found.is_none() && st.messages > 0 {
            // Compare contents with the vanished folders' copies.
            let fps = match old.examine(&m.old).await {
                Ok(_) => old.fetch_fingerprints(Uid::MIN).await,
                Err(e) => Err(e),
            };
            let fps: Vec<Fingerprint> = match fps {
                Ok(v) => v.into_iter().map(|(_, fp, _)| fp).collect(),
                Err(e) if e.scope <= Scope::Folder => {
                    folder_error(e, &m.old, totals)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The one with the same UIDVALIDITY first.
            let mut order: Vec<usize> = (0..vanished.len()).collect();
            if let Some(i) = same_uv {
                order.retain(|&k| k != i);
                order.insert(0, i);
            }
            for i in order {
                let vname = &vanished[i].0;
                let entries = state.all_map_entries(acct, vname)?;
                let copies: Vec<&Fingerprint> = entries.iter().map(|(_, _, e)| &e.fp).collect();
                if mostly_same(&fps, &copies) {
                    found = Some(i);
                    break;
                }
            }
        }
        let Some(i) = found else { continue };
        let (vname, vstate) = vanished.remove(i);
        let from = relocate(&vstate.new_folder, &renames, delim);
        let from = MailboxPath::new(from).unwrap_or_else(|| vname.clone());
        if from == m.new {
            // Already there: a child that moved with its renamed parent.
            state.move_folder(acct, &vname, &m.old, &from)?;
            tracing::info!("folder {vname} was renamed to {} on the old server: its copy moved with its parent to {from}", m.old);
            totals.renamed.push((vname.display(), m.old.display()));
            continue;
        }
        if !new_names.contains(from.as_str()) || new_names.contains(m.new.as_str()) {
            // Nothing to rename, or the target exists already: the maps follow the content.
            state.move_folder(acct, &vname, &m.old, &from)?;
            continue;
        }
        if !state.was_created(acct, &from)? {
            tracing::info!(
                "folder {vname} looks renamed to {} on the old server, but imapshift did not create {from} on the new server: not renaming it",
                m.old
            );
            vanished.push((vname, vstate));
            continue;
        }
        match new.rename_folder(&from, &m.new).await {
            Ok(()) => {}
            Err(e) if e.scope <= Scope::Folder => {
                folder_error(e, &m.old, totals)?;
                out.skip.insert(m.old.clone());
                continue;
            }
            Err(e) => return Err(e),
        }
        state.move_folder(acct, &vname, &m.old, &m.new)?;
        state.mark_created(acct, &m.new)?;
        // The children moved with it, and stay imapshift's under their new names.
        let step = [(from.as_str().to_string(), m.new.as_str().to_string())];
        for c in state.created_folders(acct)? {
            let moved = relocate(&c, &step, delim);
            if moved != c {
                if let Some(p) = MailboxPath::new(moved) {
                    state.mark_created(acct, &p)?;
                }
            }
        }
        tracing::info!(
            "folder {vname} was renamed to {} on the old server: renamed {from} to {} on the new server",
            m.old,
            m.new
        );
        renames.push((from.as_str().to_string(), m.new.as_str().to_string()));
        new_names = new_names
            .iter()
            .map(|n| relocate(n, &renames[renames.len() - 1..], delim))
            .collect();
        totals.renamed.push((vname.display(), m.old.display()));
        out.renamed = true;
    }
    for (vname, vstate) in vanished {
        let target = relocate(&vstate.new_folder, &renames, delim);
        let target = MailboxPath::new(target).unwrap_or_else(|| vname.clone());
        if !propagate_deletes {
            tracing::info!("folder {vname} is gone from the old server; its copies stay in {target} on the new server (--propagate-deletes removes them)");
            totals.folders_gone.push(vname.display());
            continue;
        }
        if new_names.contains(target.as_str()) {
            let r = delete_copies(new, state, acct, &vname, &target).await;
            match r {
                Ok(()) => {}
                Err(e) if e.scope <= Scope::Folder => {
                    // The state stays: the next run tries again.
                    folder_error(e, &vname, totals)?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        state.remove_folder(acct, &vname)?;
        tracing::info!(
            "folder {vname} is gone from the old server: its copies were deleted on the new server"
        );
        totals.folders_deleted.push(vname.display());
    }
    state.flush().await?;
    Ok(out)
}

/// Deletes imapshift's copies of a vanished old folder's messages, and the folder itself if
/// imapshift created it and nothing else is in it.
async fn delete_copies<N: MailStore>(
    new: &mut N,
    state: &StateStore,
    acct: &AccountKey,
    vname: &MailboxPath,
    target: &MailboxPath,
) -> Result<()> {
    let entries = state.all_map_entries(acct, vname)?;
    let st = new.select(target).await?;
    let here: Vec<_> = entries
        .iter()
        .filter(|(_, _, e)| {
            e.new_folder == target.as_str()
                && e.new_uidvalidity.is_none_or(|v| v == st.uidvalidity.get())
        })
        .collect();
    let ours: Vec<Uid> = here
        .iter()
        .filter_map(|(_, _, e)| e.new_uid.and_then(Uid::new))
        .collect();
    if ours.len() < here.len() {
        return Err(crate::error::Error::new(
            Scope::Folder,
            crate::error::Retry::Fix,
            format!(
                "{} copies in {target} cannot be deleted: the new server never told their UIDs",
                here.len() - ours.len()
            ),
        ));
    }
    new.expunge_uids(&ours).await?;
    let left = new.status(target).await?.messages;
    if left == 0 && state.was_created(acct, target)? && !target.is_inbox() {
        new.delete_folder(target).await?;
    }
    Ok(())
}

/// CREATE; if the server refuses, create the missing parents first and try once more (RFC 3501
/// lets servers create parents themselves, most do, a few do not).
pub(crate) async fn create_with_parents<N: MailStore>(
    new: &mut N,
    name: &MailboxPath,
    delim: Option<char>,
) -> Result<()> {
    use crate::folders::parents;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_move_with_their_parent() {
        let r = vec![("Archive".to_string(), "Old".to_string())];
        assert_eq!(relocate("Archive", &r, Some('/')), "Old");
        assert_eq!(relocate("Archive/2019", &r, Some('/')), "Old/2019");
        assert_eq!(relocate("Archive2019", &r, Some('/')), "Archive2019");
        assert_eq!(relocate("Other", &r, Some('/')), "Other");
    }

    #[test]
    fn rename_needs_most_of_both() {
        let fp = |i: u32| {
            Fingerprint::of_header(
                format!("Subject: {i}\r\n\r\n").as_bytes(),
                100,
                "01-Jan-2020 00:00:00 +0000",
            )
        };
        let big: Vec<Fingerprint> = (0..10).map(fp).collect();
        let big_refs: Vec<&Fingerprint> = big.iter().collect();
        // One message copied out of a big folder into a new one: no rename.
        assert!(!mostly_same(&big[..1], &big_refs));
        // The same folder under another name: a rename.
        assert!(mostly_same(&big, &big_refs));
        // Mostly the same (a few new, a few gone): a rename.
        let mut moved: Vec<Fingerprint> = big[2..].to_vec();
        moved.push(fp(99));
        assert!(mostly_same(&moved, &big_refs));
        assert!(!mostly_same(&[], &big_refs));
    }
}
