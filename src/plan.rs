//! The planner: pure functions that decide what a sync will do.
//!
//! A plan is a value. Given what LIST showed on both servers, what the old folder holds and which
//! old UIDs the state store has already mapped, the planner says which folders to create and
//! subscribe, which messages to copy and how to batch them. It does no I/O, so `--dry-run` is free
//! and the rules are tested by tables.

use crate::folders::{delimiter_of, map_name};
use crate::store::{FolderInfo, MsgSummary};
use crate::types::{Flag, MailboxPath, Uid};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Where one old folder goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMapping {
    pub old: MailboxPath,
    pub new: MailboxPath,
    /// Mapped onto an existing special-use folder of the new server (`Sent Items` onto `Sent`).
    pub by_special_use: Option<String>,
}

/// What to do with the folder tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderPlan {
    /// Selectable old folders and where they go, in old-name order (INBOX first).
    pub mappings: Vec<FolderMapping>,
    /// New-side folders to create (those that hold messages), shallow before deep.
    pub create: Vec<MailboxPath>,
    /// New-side folders to subscribe.
    pub subscribe: Vec<MailboxPath>,
    /// Old folders that cannot be mapped (two old names land on one new name).
    pub conflicts: Vec<(MailboxPath, String)>,
}

/// Plans the folder tree.
pub fn plan_folders(old: &[FolderInfo], new: &[FolderInfo]) -> FolderPlan {
    let od = delimiter_of(old);
    let nd = delimiter_of(new).or(od);
    let new_names: BTreeSet<&str> = new.iter().map(|f| f.name.as_str()).collect();
    let new_subscribed: BTreeSet<&str> = new
        .iter()
        .filter(|f| f.subscribed)
        .map(|f| f.name.as_str())
        .collect();
    let new_by_use: BTreeMap<String, &MailboxPath> = new
        .iter()
        .filter_map(|f| f.special_use().map(|u| (u.to_ascii_lowercase(), &f.name)))
        .collect();

    let mut sorted: Vec<&FolderInfo> = old.iter().collect();
    sorted.sort_by(|a, b| {
        (!a.name.is_inbox(), a.name.as_str()).cmp(&(!b.name.is_inbox(), b.name.as_str()))
    });

    let mut plan = FolderPlan::default();
    let mut taken: BTreeMap<String, MailboxPath> = BTreeMap::new();
    let mut create: BTreeSet<MailboxPath> = BTreeSet::new();
    let mut subscribe: BTreeSet<MailboxPath> = BTreeSet::new();
    for f in sorted {
        let mut target = map_name(&f.name, f.delimiter.or(od), nd);
        let mut by_use = None;
        if !new_names.contains(target.as_str()) {
            if let Some(u) = f.special_use() {
                if let Some(existing) = new_by_use.get(&u.to_ascii_lowercase()) {
                    target = (*existing).clone();
                    by_use = Some(u.to_string());
                }
            }
        }
        if !f.selectable() {
            // Holds no messages: the server creates it as a parent of its children (RFC 3501
            // 6.3.3), so it stays a non-selectable parent on the new server too.
        } else {
            if let Some(first) = taken.get(target.as_str()) {
                plan.conflicts.push((
                    f.name.clone(),
                    format!("maps to {target:?} on the new server, as {first} does already"),
                ));
                continue;
            }
            taken.insert(target.as_str().to_string(), f.name.clone());
            if !new_names.contains(target.as_str()) && !target.is_inbox() {
                create.insert(target.clone());
            }
            plan.mappings.push(FolderMapping {
                old: f.name.clone(),
                new: target.clone(),
                by_special_use: by_use,
            });
        }
        if f.subscribed && !new_subscribed.contains(target.as_str()) {
            subscribe.insert(target);
        }
    }
    // Parents before children (the engine creates a missing parent itself if a server insists).
    let depth = |m: &MailboxPath| nd.map(|d| m.as_str().matches(d).count()).unwrap_or(0);
    let mut create: Vec<MailboxPath> = create.into_iter().collect();
    create.sort_by(|a, b| (depth(a), a).cmp(&(depth(b), b)));
    plan.create = create;
    plan.subscribe = subscribe.into_iter().collect();
    plan
}

/// An old message that an earlier run put on the new server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub old_uid: Uid,
    /// Unknown when the new server could not tell (no UIDPLUS and no match).
    pub new_uid: Option<Uid>,
    /// The flags imapshift last set on the new copy.
    pub flags: Vec<Flag>,
}

/// What to do with the messages of one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessagePlan {
    /// Old messages to copy, in UID order.
    pub copy: Vec<MsgSummary>,
    /// Old messages already on the new server.
    pub already: usize,
    /// New copies whose flags must change: (old UID, new UID, the old message's flags).
    pub flag_updates: Vec<(Uid, Uid, Vec<Flag>)>,
    /// Copies of messages expunged on the old server: (old UID, new UID). Deleted only with
    /// propagation on; otherwise counted in `kept`.
    pub deletes: Vec<(Uid, Uid)>,
    /// Copies of expunged messages kept because propagation is off.
    pub kept: usize,
}

/// Flags compared as sets, case-insensitively, `\Recent` ignored.
pub fn same_flags(a: &[Flag], b: &[Flag]) -> bool {
    let norm = |v: &[Flag]| -> BTreeSet<String> {
        v.iter()
            .filter(|f| crate::types::is_copyable_flag(f))
            .map(|f| f.to_ascii_lowercase())
            .collect()
    };
    norm(a) == norm(b)
}

/// Plans a folder: copy what is not mapped, carry flag changes of mapped messages, and delete
/// (only with `propagate_deletes`) the copies of messages the old server no longer has. Only
/// mapped messages (imapshift's own copies) are ever changed or deleted.
pub fn plan_messages(
    listing: &[MsgSummary],
    mapped: &[Mapped],
    propagate_deletes: bool,
) -> MessagePlan {
    let by_old: std::collections::HashMap<Uid, &Mapped> =
        mapped.iter().map(|m| (m.old_uid, m)).collect();
    let mut plan = MessagePlan::default();
    let mut present: HashSet<Uid> = HashSet::with_capacity(listing.len());
    for msg in listing {
        present.insert(msg.uid);
        match by_old.get(&msg.uid) {
            None => plan.copy.push(msg.clone()),
            Some(m) => {
                plan.already += 1;
                if let Some(n) = m.new_uid {
                    if !same_flags(&m.flags, &msg.flags) {
                        plan.flag_updates.push((msg.uid, n, msg.flags.clone()));
                    }
                }
            }
        }
    }
    plan.copy.sort_by_key(|m| m.uid);
    for m in mapped {
        if present.contains(&m.old_uid) {
            continue;
        }
        match (propagate_deletes, m.new_uid) {
            (true, Some(n)) => plan.deletes.push((m.old_uid, n)),
            _ => plan.kept += 1,
        }
    }
    plan.deletes.sort();
    plan
}

/// Splits messages into batches of at most `max_bytes` (a larger message goes alone) and
/// `max_msgs` messages, keeping UID order.
pub fn batches(msgs: &[MsgSummary], max_bytes: u64, max_msgs: usize) -> Vec<Vec<MsgSummary>> {
    let mut out = Vec::new();
    let mut cur: Vec<MsgSummary> = Vec::new();
    let mut bytes = 0u64;
    for m in msgs {
        let sz = m.size as u64;
        if !cur.is_empty() && (bytes + sz > max_bytes || cur.len() >= max_msgs.max(1)) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += sz;
        cur.push(m.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fi(name: &str, delim: char, attrs: &[&str], subscribed: bool) -> FolderInfo {
        FolderInfo {
            name: MailboxPath::new(name).unwrap(),
            delimiter: Some(delim),
            attrs: attrs.iter().map(|s| s.to_string()).collect(),
            subscribed,
        }
    }

    fn ms(uid: u32, size: u32) -> MsgSummary {
        MsgSummary {
            uid: Uid::new(uid).unwrap(),
            size,
            flags: vec![],
        }
    }

    #[test]
    fn folders_created_parents_first_and_subscribed() {
        let old = vec![
            fi("INBOX", '.', &[], true),
            fi("Archive.2024.Q1", '.', &[], true),
            fi("Sent Items", '.', &["\\Sent"], true),
            fi("Work", '.', &["\\Noselect", "\\HasChildren"], false),
            fi("Work.Projects", '.', &[], false),
        ];
        let new = vec![
            fi("INBOX", '/', &[], true),
            fi("Sent", '/', &["\\Sent"], true),
        ];
        let p = plan_folders(&old, &new);
        let names: Vec<&str> = p.create.iter().map(|m| m.as_str()).collect();
        // The non-selectable "Work" and the implied "Archive", "Archive/2024" are parents the
        // server makes; only folders that hold messages are created.
        assert_eq!(names, vec!["Work/Projects", "Archive/2024/Q1"]);
        let sent = p
            .mappings
            .iter()
            .find(|m| m.old.as_str() == "Sent Items")
            .unwrap();
        assert_eq!(sent.new.as_str(), "Sent");
        assert_eq!(sent.by_special_use.as_deref(), Some("\\Sent"));
        let subs: Vec<&str> = p.subscribe.iter().map(|m| m.as_str()).collect();
        assert_eq!(subs, vec!["Archive/2024/Q1"]);
        assert_eq!(p.mappings[0].old.as_str(), "INBOX");
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn existing_name_wins_over_special_use() {
        let old = vec![fi("Sent", '/', &["\\Sent"], false)];
        let new = vec![
            fi("Sent", '/', &[], false),
            fi("Gesendet", '/', &["\\Sent"], false),
        ];
        let p = plan_folders(&old, &new);
        assert_eq!(p.mappings[0].new.as_str(), "Sent");
        assert!(p.create.is_empty());
    }

    #[test]
    fn conflicting_names_reported() {
        let old = vec![fi("a/b", '.', &[], false), fi("a_b", '.', &[], false)];
        let new = vec![fi("INBOX", '/', &[], false)];
        let p = plan_folders(&old, &new);
        assert_eq!(p.mappings.len(), 1);
        assert_eq!(p.conflicts.len(), 1);
    }

    fn mapped(old: u32, new: u32, flags: &[&str]) -> Mapped {
        Mapped {
            old_uid: Uid::new(old).unwrap(),
            new_uid: Uid::new(new),
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn msf(uid: u32, flags: &[&str]) -> MsgSummary {
        MsgSummary {
            uid: Uid::new(uid).unwrap(),
            size: 10,
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn message_plan_table() {
        struct Case {
            name: &'static str,
            listing: Vec<MsgSummary>,
            mapped: Vec<Mapped>,
            propagate: bool,
            copy: Vec<u32>,
            flags: Vec<(u32, Vec<&'static str>)>,
            deletes: Vec<u32>,
            kept: usize,
        }
        let cases = vec![
            Case {
                name: "nothing mapped: copy all",
                listing: vec![msf(1, &[]), msf(2, &["\\Seen"])],
                mapped: vec![],
                propagate: false,
                copy: vec![1, 2],
                flags: vec![],
                deletes: vec![],
                kept: 0,
            },
            Case {
                name: "no change",
                listing: vec![msf(1, &["\\Seen"]), msf(2, &[])],
                mapped: vec![mapped(1, 11, &["\\seen"]), mapped(2, 12, &["\\Recent"])],
                propagate: true,
                copy: vec![],
                flags: vec![],
                deletes: vec![],
                kept: 0,
            },
            Case {
                name: "flag and keyword changes go to the new copy",
                listing: vec![msf(1, &["\\Seen", "$Work"]), msf(2, &[])],
                mapped: vec![mapped(1, 11, &["\\Seen"]), mapped(2, 12, &["\\Flagged"])],
                propagate: false,
                copy: vec![],
                flags: vec![(11, vec!["\\Seen", "$Work"]), (12, vec![])],
                deletes: vec![],
                kept: 0,
            },
            Case {
                name: "expunged on old, kept without propagation",
                listing: vec![msf(2, &[])],
                mapped: vec![mapped(1, 11, &[]), mapped(2, 12, &[])],
                propagate: false,
                copy: vec![],
                flags: vec![],
                deletes: vec![],
                kept: 1,
            },
            Case {
                name: "expunged on old, deleted with propagation",
                listing: vec![msf(2, &[]), msf(3, &[])],
                mapped: vec![mapped(1, 11, &[]), mapped(2, 12, &[])],
                propagate: true,
                copy: vec![3],
                flags: vec![],
                deletes: vec![11],
                kept: 0,
            },
            Case {
                name: "unknown new UID: no flag update, no delete",
                listing: vec![msf(1, &["\\Seen"])],
                mapped: vec![
                    Mapped {
                        old_uid: Uid::new(1).unwrap(),
                        new_uid: None,
                        flags: vec![],
                    },
                    Mapped {
                        old_uid: Uid::new(2).unwrap(),
                        new_uid: None,
                        flags: vec![],
                    },
                ],
                propagate: true,
                copy: vec![],
                flags: vec![],
                deletes: vec![],
                kept: 1,
            },
        ];
        for c in cases {
            let p = plan_messages(&c.listing, &c.mapped, c.propagate);
            let copy: Vec<u32> = p.copy.iter().map(|m| m.uid.get()).collect();
            assert_eq!(copy, c.copy, "{}", c.name);
            let flags: Vec<(u32, Vec<String>)> = p
                .flag_updates
                .iter()
                .map(|(_, n, f)| (n.get(), f.clone()))
                .collect();
            let want: Vec<(u32, Vec<String>)> = c
                .flags
                .iter()
                .map(|(n, f)| (*n, f.iter().map(|s| s.to_string()).collect()))
                .collect();
            assert_eq!(flags, want, "{}", c.name);
            let deletes: Vec<u32> = p.deletes.iter().map(|(_, n)| n.get()).collect();
            assert_eq!(deletes, c.deletes, "{}", c.name);
            assert_eq!(p.kept, c.kept, "{}", c.name);
        }
    }

    #[test]
    fn batching_by_bytes_and_count() {
        let msgs = vec![ms(1, 40), ms(2, 40), ms(3, 40), ms(4, 200), ms(5, 1)];
        let b = batches(&msgs, 100, 10);
        let sizes: Vec<Vec<u32>> = b
            .iter()
            .map(|v| v.iter().map(|m| m.uid.get()).collect())
            .collect();
        assert_eq!(sizes, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        let b = batches(&msgs, 10_000, 2);
        assert_eq!(b.len(), 3);
        assert!(batches(&[], 100, 10).is_empty());
    }
}
