//! The planner: pure functions that decide what a sync will do.
//!
//! A plan is a value. Given what LIST showed on both servers, what the old folder holds and which
//! old UIDs the state store has already mapped, the planner says which folders to create and
//! subscribe, which messages to copy and how to batch them. It does no I/O, so `--dry-run` is free
//! and the rules are tested by tables.

use crate::folders::{delimiter_of, translate, Naming};
use crate::store::{FolderInfo, MsgSummary};
use crate::types::{Flag, MailboxPath, Uid};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Where one old folder goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMapping {
    pub old: MailboxPath,
    pub new: MailboxPath,
    /// Why the planner chose `new`.
    pub reason: MapReason,
}

impl FolderMapping {
    /// An old folder that goes into the new folder of the same name (no plan behind it: a
    /// folder the engine handles on its own, such as one renamed on the old server).
    pub fn same_name(name: MailboxPath) -> FolderMapping {
        FolderMapping {
            old: name.clone(),
            new: name,
            reason: MapReason::SameName,
        }
    }

    /// The mapping in words, when the folder does not simply go where its name takes it (a
    /// collision resolved, a rule, an earlier run, a look-alike): for preflight's warnings and
    /// the report's `note`. `None` for the same name, a plain namespace translation and a
    /// special-use folder.
    pub fn note(&self) -> Option<String> {
        let (old, new) = (&self.old, &self.new);
        match &self.reason {
            MapReason::SameName | MapReason::Namespace | MapReason::SpecialUse { .. } => None,
            MapReason::LookAlike => Some(format!(
                "\"{old}\" holds the new server's delimiter inside a name: written as its look-alike in \"{new}\" (reversible; docs/server-quirks.md)"
            )),
            MapReason::SpecialUseTaken { kind, folder, by } => Some(match by {
                Some(first) => format!(
                    "keeps its own name: the new {kind} folder \"{folder}\" holds \"{first}\""
                ),
                None => format!(
                    "keeps its own name: the new {kind} folder \"{folder}\" holds the old folder of that name"
                ),
            }),
            MapReason::Rule { origin } => Some(format!("\"{new}\" by the folder rule of {origin}")),
            MapReason::Earlier => Some(format!("\"{new}\" on the new server, as in earlier runs")),
            MapReason::Suffixed { wanted, by } => Some(format!(
                "named \"{new}\" on the new server: \"{wanted}\" holds \"{by}\""
            )),
        }
    }
}

/// Why an old folder goes where it goes: what [`plan_folders_in`] decided, one value per rule it
/// applies, so what the `folders` command, preflight and the sync report say follows the
/// decision and not a sentence about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapReason {
    /// The same name on both servers (same prefix and delimiter, or INBOX).
    SameName,
    /// The name translated between the servers' personal prefixes and delimiters.
    Namespace,
    /// Translated, and a level holds the new server's delimiter: written with its look-alike.
    LookAlike,
    /// Onto the new server's folder of this special use (`\Sent`): `Sent Items` onto `Sent`.
    SpecialUse { kind: String },
    /// It has a special use, but the new folder of that use (`folder`) is taken: by the old
    /// folder `by`, or (`None`) by the old folder of that name. It keeps its own name.
    SpecialUseTaken {
        kind: String,
        folder: MailboxPath,
        by: Option<MailboxPath>,
    },
    /// By the `[[folder_rules]]` rule written at `origin` (`imapshift.toml:31`).
    Rule { origin: String },
    /// Where earlier runs put it (the state store), which is not where its name takes it now.
    Earlier,
    /// Its name (`wanted`) is taken by the old folder `by`: the first free `name (N)`.
    Suffixed {
        wanted: MailboxPath,
        by: MailboxPath,
    },
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
    /// Old folders that cannot be mapped. Collisions are resolved (see [`plan_folders`]), so this
    /// stays empty unless no free name can be found; every entry is a failure and counts as
    /// missing in `verify`.
    pub conflicts: Vec<(MailboxPath, String)>,
}

/// A folder rule of the configuration (`[[folder_rules]]`): an old folder whose name (its
/// components joined with `/`, as people read them) matches `pattern` goes to `to` (with `$1`
/// ... for the captures, components joined with `/`), under the new server's prefix and
/// delimiter. Rules are tried in order; the first that matches decides. Two old folders onto one
/// new folder by a rule are an error unless the rule says `merge`.
#[derive(Clone, Debug)]
pub struct FolderRule {
    pub pattern: regex::Regex,
    pub to: String,
    pub merge: bool,
    /// Where the rule was written (`imapshift.toml:31`), for messages.
    pub origin: String,
}

impl FolderRule {
    /// The new name (as people read it, `/`-joined) an old folder gets, if the rule matches.
    pub fn apply(&self, human: &str) -> Option<String> {
        let caps = self.pattern.captures(human)?;
        let mut out = String::new();
        caps.expand(&self.to, &mut out);
        Some(out)
    }
}

/// How many suffixed names (`name (2)` ...) are tried before a collision is given up.
const MAX_SUFFIX: usize = 99;

/// Plans the folder tree. Every selectable old folder gets a new folder of its own, decided in
/// plan order (INBOX first, then by old wire name), so the result is the same on every run:
/// 1. its name, translated (delimiter, mUTF-7);
/// 2. if that name does not exist on the new server and the folder has a special use
///    (`\Sent`, ...) that a new folder has, that special-use folder, unless another old folder
///    takes it by name (old `Sent` onto new `Sent`) or came first: one old folder per new
///    special-use folder (Dovecot's stock configuration marks both `Sent` and `Sent Messages`
///    `\Sent`), the others keep their own names;
/// 3. a name another old folder took already (`a/b` and `a_b` both become `a_b` on a `/`
///    server) gets the first free `name (2)`, `name (3)`, ... for the later folder.
///
/// Two old folders never share a new folder, so every copy has one origin and `verify` can
/// compare folder by folder.
pub fn plan_folders(old: &[FolderInfo], new: &[FolderInfo]) -> FolderPlan {
    plan_folders_with(old, new, &BTreeMap::new())
}

/// [`plan_folders`], keeping the new folders that earlier runs chose (`earlier`: old wire name
/// to new wire name, from the state store): an old folder whose recorded new folder still
/// exists goes there again, before any other is placed. A mapping never flips when an old
/// folder appears or goes (old `Sent` created after `Sent Items` went into the new `Sent`, or
/// one of `a/b` and `a_b` deleted), so nothing is copied twice into another folder.
pub fn plan_folders_with(
    old: &[FolderInfo],
    new: &[FolderInfo],
    earlier: &BTreeMap<String, String>,
) -> FolderPlan {
    let od = delimiter_of(old);
    let names = Names {
        old: Naming {
            prefix: String::new(),
            delim: od,
        },
        new: Naming {
            prefix: String::new(),
            delim: delimiter_of(new).or(od),
        },
    };
    plan_folders_in(old, new, earlier, &names, &[])
}

/// How both servers name the user's folders (personal prefix and delimiter each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub old: Naming,
    pub new: Naming,
}

/// [`plan_folders_with`] between servers with personal-namespace prefixes (Courier's and Cyrus's
/// `INBOX.`): names are translated component by component ([`crate::folders::translate`]), and
/// special uses come from RFC 6154 attributes or, on a server that has none, from the folder's
/// name ([`crate::folders::special_use_by_name`]).
pub fn plan_folders_in(
    old: &[FolderInfo],
    new: &[FolderInfo],
    earlier: &BTreeMap<String, String>,
    names: &Names,
    rules: &[FolderRule],
) -> FolderPlan {
    let nd = names.new.delim;
    let use_of_old = special_uses(old, &names.old);
    let use_of_new = special_uses(new, &names.new);
    let new_names: BTreeSet<&str> = new.iter().map(|f| f.name.as_str()).collect();
    // Folders that hold mail on the new server (not a `\Noselect` parent it merely lists).
    let new_selectable: BTreeSet<&str> = new
        .iter()
        .filter(|f| f.selectable())
        .map(|f| f.name.as_str())
        .collect();
    let new_subscribed: BTreeSet<&str> = new
        .iter()
        .filter(|f| f.subscribed)
        .map(|f| f.name.as_str())
        .collect();
    let mut new_by_use: BTreeMap<String, &MailboxPath> = BTreeMap::new();
    for (f, u) in new.iter().zip(&use_of_new) {
        if let Some(u) = u {
            // The first folder of a use (LIST order) stands for it.
            new_by_use.entry(u.to_ascii_lowercase()).or_insert(&f.name);
        }
    }
    let use_by_name: BTreeMap<&str, &str> = old
        .iter()
        .zip(&use_of_old)
        .filter_map(|(f, u)| u.map(|u| (f.name.as_str(), u)))
        .collect();

    let mut sorted: Vec<&FolderInfo> = old.iter().collect();
    sorted.sort_by(|a, b| {
        (!a.name.is_inbox(), a.name.as_str()).cmp(&(!b.name.is_inbox(), b.name.as_str()))
    });
    let translated: Vec<(MailboxPath, bool)> = sorted
        .iter()
        .map(|f| {
            let from = Naming {
                prefix: names.old.prefix.clone(),
                delim: f.delimiter.or(names.old.delim),
            };
            translate(&f.name, &from, &names.new)
        })
        .collect();
    let replaced: BTreeSet<&str> = sorted
        .iter()
        .zip(&translated)
        .filter(|(_, (_, r))| *r)
        .map(|(f, _)| f.name.as_str())
        .collect();
    let named: Vec<MailboxPath> = translated.into_iter().map(|(n, _)| n).collect();
    // Names that selectable old folders take by their own (translated) name on the new server.
    let by_name: BTreeSet<String> = sorted
        .iter()
        .zip(&named)
        .filter(|(f, n)| f.selectable() && new_names.contains(n.as_str()))
        .map(|(_, n)| n.as_str().to_string())
        .collect();

    let mut plan = FolderPlan::default();
    let mut taken: BTreeMap<String, MailboxPath> = BTreeMap::new();
    // Reservations: the new folders earlier runs chose, where they still exist.
    let mut reserved: BTreeMap<&str, MailboxPath> = BTreeMap::new();
    for f in sorted.iter().filter(|f| f.selectable()) {
        let Some(t) = earlier.get(f.name.as_str()) else {
            continue;
        };
        let Some(t) = MailboxPath::new(t.clone()) else {
            continue;
        };
        if (new_names.contains(t.as_str()) || t.is_inbox()) && !taken.contains_key(t.as_str()) {
            taken.insert(t.as_str().to_string(), f.name.clone());
            reserved.insert(f.name.as_str(), t);
        }
    }
    let mut create: BTreeSet<MailboxPath> = BTreeSet::new();
    let mut subscribe: BTreeSet<MailboxPath> = BTreeSet::new();
    // New folders taken by a merging rule: other old folders of a merging rule may share them.
    let mut merging: BTreeMap<String, bool> = BTreeMap::new();
    for (f, own) in sorted.iter().copied().zip(named) {
        if let Some(t) = reserved.get(f.name.as_str()) {
            // Where earlier runs put it.
            if !new_names.contains(t.as_str()) && !t.is_inbox() {
                create.insert(t.clone());
            }
            let reason = if t != &own {
                MapReason::Earlier
            } else {
                naming_reason(f, &own, &replaced)
            };
            plan.mappings.push(FolderMapping {
                old: f.name.clone(),
                new: t.clone(),
                reason,
            });
            let exists = f.selectable() || new_selectable.contains(t.as_str());
            if f.subscribed && exists && !new_subscribed.contains(t.as_str()) {
                subscribe.insert(t.clone());
            }
            continue;
        }
        let mut target = own.clone();
        let mut reason = naming_reason(f, &own, &replaced);
        // A folder rule decides first (after earlier runs' choices).
        let mut by_rule: Option<&FolderRule> = None;
        if f.selectable() {
            let from = Naming {
                prefix: names.old.prefix.clone(),
                delim: f.delimiter.or(names.old.delim),
            };
            let human = crate::folders::components(&f.name, &from).join("/");
            if let Some((r, to)) = rules.iter().find_map(|r| r.apply(&human).map(|t| (r, t))) {
                let parts: Vec<String> = to.split('/').map(str::to_string).collect();
                if parts.iter().any(|p| p.is_empty()) {
                    plan.conflicts.push((
                        f.name.clone(),
                        format!("the folder rule of {} gives \"{to}\", which has an empty level: fix the rule's `to`", r.origin),
                    ));
                    continue;
                }
                target = crate::folders::compose(&parts, &names.new).0;
                reason = MapReason::Rule {
                    origin: r.origin.clone(),
                };
                by_rule = Some(r);
            }
        }
        if by_rule.is_none() && !new_names.contains(own.as_str()) {
            if let Some(u) = use_by_name.get(f.name.as_str()).copied() {
                if let Some(existing) = new_by_use.get(&u.to_ascii_lowercase()) {
                    let kept = |by: Option<&MailboxPath>| MapReason::SpecialUseTaken {
                        kind: u.to_string(),
                        folder: (*existing).clone(),
                        by: by.cloned(),
                    };
                    if let Some(first) = taken.get(existing.as_str()) {
                        reason = kept(Some(first));
                    } else if by_name.contains(existing.as_str()) {
                        reason = kept(None);
                    } else if f.selectable() {
                        target = (*existing).clone();
                        reason = MapReason::SpecialUse {
                            kind: u.to_string(),
                        };
                    }
                }
            }
        }
        if !f.selectable() {
            // Holds no messages: the server creates it as a parent of its children (RFC 3501
            // 6.3.3), so it stays a non-selectable parent on the new server too.
        } else {
            let merged =
                by_rule.is_some_and(|r| r.merge) && merging.get(target.as_str()) == Some(&true);
            if let (Some(first), Some(r), false) =
                (taken.get(target.as_str()).cloned(), by_rule, merged)
            {
                plan.conflicts.push((
                    f.name.clone(),
                    format!(
                        "the folder rule of {} sends it to \"{target}\", which \"{first}\" goes to already: two old folders onto one new folder need merge = true on the rule (and on the rule of the other, if it has one)",
                        r.origin
                    ),
                ));
                continue;
            }
            if merged {
                // Merged on purpose: this folder shares the new folder.
            } else if let Some(first) = taken.get(target.as_str()).cloned() {
                let free = (2..=MAX_SUFFIX + 1)
                    .filter_map(|k| MailboxPath::new(format!("{} ({k})", target.as_str())))
                    .find(|c| !taken.contains_key(c.as_str()) && !by_name.contains(c.as_str()));
                let Some(free) = free else {
                    plan.conflicts.push((
                        f.name.clone(),
                        format!("maps to \"{target}\" on the new server, as \"{first}\" does already, and no free name was found"),
                    ));
                    continue;
                };
                reason = MapReason::Suffixed {
                    wanted: target,
                    by: first,
                };
                target = free;
            }
            if !merged {
                taken.insert(target.as_str().to_string(), f.name.clone());
                merging.insert(
                    target.as_str().to_string(),
                    by_rule.is_some_and(|r| r.merge),
                );
            }
            if !new_names.contains(target.as_str()) && !target.is_inbox() {
                create.insert(target.clone());
            }
            plan.mappings.push(FolderMapping {
                old: f.name.clone(),
                new: target.clone(),
                reason,
            });
        }
        // A `\Noselect` folder holds no mail and is not created: its subscription (Courier lists
        // the parent of a subscribed folder as subscribed) is carried only where the new server
        // has that folder as a real one; Dovecot refuses to subscribe a parent it only lists.
        let exists = f.selectable() || new_selectable.contains(target.as_str());
        if f.subscribed && exists && !new_subscribed.contains(target.as_str()) {
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

/// Why a folder that goes where its own name takes it (`own`, translated) goes there: the same
/// name, a namespace translation, or one with a look-alike for the new delimiter (`replaced`).
fn naming_reason(f: &FolderInfo, own: &MailboxPath, replaced: &BTreeSet<&str>) -> MapReason {
    if replaced.contains(f.name.as_str()) {
        MapReason::LookAlike
    } else if own == &f.name {
        MapReason::SameName
    } else {
        MapReason::Namespace
    }
}

/// Each folder's special use: its RFC 6154 attribute, or, when the server marks none of its
/// folders (no SPECIAL-USE), what its name says (`Sent Items`, `Gesendete Objekte`, ...).
fn special_uses<'a>(folders: &'a [FolderInfo], naming: &Naming) -> Vec<Option<&'a str>> {
    let marked = folders.iter().any(|f| f.special_use().is_some());
    folders
        .iter()
        .map(|f| {
            if marked {
                return f.special_use();
            }
            let last = crate::folders::components(&f.name, naming).pop()?;
            crate::folders::special_use_by_name(&last)
        })
        .collect()
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
    /// New copies whose flags must change: what the old side added and removed since the
    /// last sync, never the whole set (flags only the new side has are the user's).
    pub flag_updates: Vec<FlagUpdate>,
    /// Copies of messages expunged on the old server: (old UID, new UID). Deleted only with
    /// propagation on; otherwise counted in `kept`.
    pub deletes: Vec<(Uid, Uid)>,
    /// Copies of expunged messages kept because propagation is off.
    pub kept: usize,
}

/// A flag change to carry to one new copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagUpdate {
    pub old_uid: Uid,
    pub new_uid: Uid,
    /// Set on the old message since the last sync: `+FLAGS`.
    pub add: Vec<Flag>,
    /// Cleared on the old message since the last sync: `-FLAGS`.
    pub remove: Vec<Flag>,
    /// The old message's flags now (recorded once applied).
    pub now: Vec<Flag>,
}

/// The change from `recorded` (the old side's flags at the last sync) to `now`: (added,
/// removed), case-insensitively, `\Recent` ignored, in the spelling of the side that has them.
pub fn flag_delta(recorded: &[Flag], now: &[Flag]) -> (Vec<Flag>, Vec<Flag>) {
    let norm = |v: &[Flag]| -> BTreeMap<String, Flag> {
        v.iter()
            .filter(|f| crate::types::is_copyable_flag(f))
            .map(|f| (f.to_ascii_lowercase(), f.clone()))
            .collect()
    };
    let (r, n) = (norm(recorded), norm(now));
    let add = n
        .iter()
        .filter(|(k, _)| !r.contains_key(*k))
        .map(|(_, f)| f.clone())
        .collect();
    let remove = r
        .iter()
        .filter(|(k, _)| !n.contains_key(*k))
        .map(|(_, f)| f.clone())
        .collect();
    (add, remove)
}

/// The flags to record for a copy whose map was rebuilt by matching (the history is lost): those
/// both sides have. The next plan then adds what the old side has and the copy lacks, and
/// removes nothing: a flag only the new side has may be the user's.
pub fn common_flags(old: &[Flag], new: &[Flag]) -> Vec<Flag> {
    let n: BTreeSet<String> = new.iter().map(|f| f.to_ascii_lowercase()).collect();
    old.iter()
        .filter(|f| crate::types::is_copyable_flag(f) && n.contains(&f.to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// Plans a folder: copy what is not mapped, carry flag changes of mapped messages (as the changes
/// the old side made since the last sync, [`flag_delta`]), and delete
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
                    let (add, remove) = flag_delta(&m.flags, &msg.flags);
                    if !add.is_empty() || !remove.is_empty() {
                        plan.flag_updates.push(FlagUpdate {
                            old_uid: msg.uid,
                            new_uid: n,
                            add,
                            remove,
                            now: msg.flags.clone(),
                        });
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

/// How many batches of a folder start smaller: the first has an eighth of the limits, the
/// next a quarter, then a half, then the full limits.
const RAMP_STEPS: u32 = 3;
/// A ramped limit never goes below this many bytes or messages (nor above the limit itself).
const RAMP_FLOOR_BYTES: u64 = 256 * 1024;
const RAMP_FLOOR_MSGS: usize = 32;

/// Splits messages into batches of at most `max_bytes` (a larger message goes alone) and
/// `max_msgs` messages, keeping UID order. The first batches are smaller (an eighth, a quarter,
/// a half of the limits, never below 256 KiB / 32 messages): the APPEND of the first batch
/// starts while the next is fetched, instead of a folder that fits one batch being fetched
/// whole before anything is appended (on a link with 50 ms round trips that serialised the
/// two servers' transfers; docs/performance.md).
pub fn batches(msgs: &[MsgSummary], max_bytes: u64, max_msgs: usize) -> Vec<Vec<MsgSummary>> {
    let max_msgs = max_msgs.max(1);
    let limits = |i: usize| -> (u64, usize) {
        let shift = RAMP_STEPS.saturating_sub(i as u32);
        (
            (max_bytes >> shift).max(RAMP_FLOOR_BYTES.min(max_bytes)),
            (max_msgs >> shift).max(RAMP_FLOOR_MSGS.min(max_msgs)),
        )
    };
    let mut out = Vec::new();
    let mut cur: Vec<MsgSummary> = Vec::new();
    let mut bytes = 0u64;
    for m in msgs {
        let sz = m.size as u64;
        let (lim_bytes, lim_msgs) = limits(out.len());
        if !cur.is_empty() && (bytes + sz > lim_bytes || cur.len() >= lim_msgs) {
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
        assert_eq!(
            sent.reason,
            MapReason::SpecialUse {
                kind: "\\Sent".into()
            }
        );
        let subs: Vec<&str> = p.subscribe.iter().map(|m| m.as_str()).collect();
        assert_eq!(subs, vec!["Archive/2024/Q1"]);
        assert_eq!(p.mappings[0].old.as_str(), "INBOX");
        assert!(p.conflicts.is_empty());
    }

    /// Courier lists the `\Noselect` parent of a subscribed folder as subscribed: carried only
    /// where the new server has that folder (found by tests/old_untouched.rs: the SUBSCRIBE
    /// failed every run).
    #[test]
    fn a_subscribed_noselect_parent_is_subscribed_only_where_it_exists() {
        let old = vec![
            fi("INBOX", '.', &[], true),
            fi("Lonely", '.', &["\\Noselect", "\\HasChildren"], true),
            fi("Lonely.Child", '.', &[], true),
            fi("Kept", '.', &["\\Noselect", "\\HasChildren"], true),
            fi("Kept.Child", '.', &[], false),
        ];
        let new = vec![
            fi("INBOX", '/', &[], false),
            fi("Kept", '/', &[], false),
            fi("Lonely", '/', &["\\Noselect", "\\HasChildren"], false),
        ];
        let p = plan_folders(&old, &new);
        let subs: Vec<&str> = p.subscribe.iter().map(|m| m.as_str()).collect();
        assert_eq!(subs, vec!["INBOX", "Kept", "Lonely/Child"]);
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
    fn colliding_names_get_a_suffix_in_plan_order() {
        // `a/b` on a `.` server becomes `a∕b` (the look-alike) on a `/` server, which an old
        // folder already called `a∕b` takes by name first (wire order: `&` before `/`).
        let old = vec![fi("a/b", '.', &[], false), fi("a&IhU-b", '.', &[], false)];
        let new = vec![fi("INBOX", '/', &[], false)];
        let p = plan_folders(&old, &new);
        let got: Vec<(&str, &str)> = p
            .mappings
            .iter()
            .map(|m| (m.old.as_str(), m.new.as_str()))
            .collect();
        assert_eq!(got, vec![("a&IhU-b", "a&IhU-b"), ("a/b", "a&IhU-b (2)")]);
        assert!(p.conflicts.is_empty());
        assert!(p.mappings[1].note().unwrap().contains("(2)"));
        // A name with the new delimiter inside is reported in its note.
        let lone = plan_folders(&[fi("x/y", '.', &[], false)], &new);
        assert_eq!(lone.mappings[0].reason, MapReason::LookAlike);
        assert!(lone.mappings[0].note().unwrap().contains("look-alike"));
        // The next run (both exist on the new server now) plans the same.
        let new2 = vec![
            fi("INBOX", '/', &[], false),
            fi("a&IhU-b", '/', &[], false),
            fi("a&IhU-b (2)", '/', &[], false),
        ];
        let p2 = plan_folders(&old, &new2);
        assert_eq!(p2.mappings, p.mappings);
        assert!(p2.create.is_empty());
    }

    fn rule(pattern: &str, to: &str, merge: bool) -> FolderRule {
        FolderRule {
            pattern: regex::Regex::new(pattern).unwrap(),
            to: to.into(),
            merge,
            origin: "imapshift.toml:9".into(),
        }
    }

    /// Old folders under `INBOX.` with `.` (Courier, Cyrus), new ones plain with `/` (Dovecot).
    fn prefixed_to_plain() -> Names {
        Names {
            old: Naming {
                prefix: "INBOX.".into(),
                delim: Some('.'),
            },
            new: Naming {
                prefix: String::new(),
                delim: Some('/'),
            },
        }
    }

    fn plan_with_rules(old: &[FolderInfo], rules: &[FolderRule]) -> FolderPlan {
        let names = prefixed_to_plain();
        let new = vec![fi("INBOX", '/', &[], false)];
        plan_folders_in(old, &new, &BTreeMap::new(), &names, rules)
    }

    /// Folder rules: first match wins, on names as people read them (prefix off, `/`-joined),
    /// captures expand; two old folders onto one new folder need merge on the rule.
    #[test]
    fn folder_rules_rename_and_merge_only_on_purpose() {
        let old = vec![
            fi("INBOX.Archive.2019", '.', &[], false),
            fi("INBOX.Archive.2020", '.', &[], false),
            fi("INBOX.Lists.rust", '.', &[], false),
        ];
        let rules = [rule(r"^Archive/(\d{4})$", "Old mail/$1", false)];
        let p = plan_with_rules(&old, &rules);
        let got: Vec<(&str, &str)> = p
            .mappings
            .iter()
            .map(|m| (m.old.as_str(), m.new.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("INBOX.Archive.2019", "Old mail/2019"),
                ("INBOX.Archive.2020", "Old mail/2020"),
                ("INBOX.Lists.rust", "Lists/rust"),
            ]
        );
        assert!(p.mappings[0].note().unwrap().contains("imapshift.toml:9"));
        // Both years into one folder: refused without merge ...
        let into_one = [rule(r"^Archive/\d{4}$", "Archive", false)];
        let p = plan_with_rules(&old, &into_one);
        assert_eq!(p.mappings.len(), 2, "{p:?}");
        assert_eq!(p.conflicts.len(), 1, "{p:?}");
        assert!(p.conflicts[0].1.contains("merge = true"), "{p:?}");
        // ... and done with it.
        let merged = [rule(r"^Archive/\d{4}$", "Archive", true)];
        let p = plan_with_rules(&old, &merged);
        assert!(p.conflicts.is_empty(), "{p:?}");
        assert_eq!(p.mappings[0].new.as_str(), "Archive");
        assert_eq!(p.mappings[1].new.as_str(), "Archive");
        let create: Vec<&str> = p.create.iter().map(|m| m.as_str()).collect();
        assert_eq!(create, vec!["Archive", "Lists/rust"]);
    }

    /// Regression (review of issue 10): a mapping never flips when an old folder appears.
    #[test]
    fn earlier_mappings_are_kept() {
        let new = vec![
            fi("INBOX", '/', &[], false),
            fi("Sent", '/', &["\\Sent"], false),
        ];
        // First run: old Sent Items goes into the new Sent.
        let first = vec![fi("Sent Items", '/', &["\\Sent"], false)];
        let p1 = plan_folders(&first, &new);
        assert_eq!(p1.mappings[0].new.as_str(), "Sent");
        // Later a client creates an old Sent: without memory it would take the new Sent by name
        // and Sent Items would be copied anew into a folder of its own.
        let later = vec![
            fi("Sent", '/', &[], false),
            fi("Sent Items", '/', &["\\Sent"], false),
        ];
        let fresh = plan_folders(&later, &new);
        assert_eq!(fresh.mappings[1].new.as_str(), "Sent Items");
        let earlier: BTreeMap<String, String> =
            [("Sent Items".to_string(), "Sent".to_string())].into();
        let p = plan_folders_with(&later, &new, &earlier);
        let got: Vec<(&str, &str)> = p
            .mappings
            .iter()
            .map(|m| (m.old.as_str(), m.new.as_str()))
            .collect();
        assert_eq!(got, vec![("Sent", "Sent (2)"), ("Sent Items", "Sent")]);
        // A recorded folder that is gone from the new server is planned afresh.
        let gone: BTreeMap<String, String> = [("Sent Items".to_string(), "Old".to_string())].into();
        assert_eq!(plan_folders_with(&first, &new, &gone).mappings, p1.mappings);
        // One of two colliding names deleted: the other stays where it was.
        let new2 = vec![fi("a_b", '/', &[], false), fi("a_b (2)", '/', &[], false)];
        let only = vec![fi("a_b", '.', &[], false)];
        let earlier: BTreeMap<String, String> = [
            ("a/b".to_string(), "a_b".to_string()),
            ("a_b".to_string(), "a_b (2)".to_string()),
        ]
        .into();
        assert_eq!(
            plan_folders_with(&only, &new2, &earlier).mappings[0]
                .new
                .as_str(),
            "a_b (2)"
        );
    }

    fn mp(name: &str) -> MailboxPath {
        MailboxPath::new(name).unwrap()
    }

    /// Every reason the planner gives, from the decision that makes it: a row per rule of
    /// [`plan_folders_in`] (and per way a rule yields to another), with the note people read.
    #[test]
    fn map_reason_truth_table() {
        use MapReason as R;
        #[derive(Default)]
        struct Case {
            name: &'static str,
            old: Vec<FolderInfo>,
            new: Vec<FolderInfo>,
            earlier: Vec<(&'static str, &'static str)>,
            rules: Vec<FolderRule>,
            /// Old names under `INBOX.` with `.` (Courier, Cyrus), new plain with `/`.
            prefixed: bool,
            want: Vec<(&'static str, &'static str, MapReason)>,
            note: Option<&'static str>,
        }
        impl Case {
            fn named(name: &'static str) -> Case {
                Case {
                    name,
                    ..Default::default()
                }
            }
            fn old(self, old: Vec<FolderInfo>) -> Case {
                Case { old, ..self }
            }
            /// The new server's folders.
            fn onto(self, new: Vec<FolderInfo>) -> Case {
                Case { new, ..self }
            }
            fn earlier(self, earlier: Vec<(&'static str, &'static str)>) -> Case {
                Case { earlier, ..self }
            }
            fn rules(self, rules: Vec<FolderRule>) -> Case {
                Case { rules, ..self }
            }
            fn prefixed(self) -> Case {
                Case {
                    prefixed: true,
                    ..self
                }
            }
            fn want(self, want: Vec<(&'static str, &'static str, MapReason)>) -> Case {
                Case { want, ..self }
            }
            /// A text that some mapping's note holds (none: no mapping has a note).
            fn note(self, note: &'static str) -> Case {
                Case {
                    note: Some(note),
                    ..self
                }
            }
        }
        let sent = || R::SpecialUse {
            kind: "\\Sent".into(),
        };
        let dovecot = |n: &str| fi(n, '/', &[], false);
        let marked = |n: &str| fi(n, '/', &["\\Sent"], false);
        // Kept its own name: the new `\Sent` folder `Gesendet` is taken (by an old folder or,
        // `None`, by the old folder of that name).
        let gesendet_taken = |by: Option<&str>| R::SpecialUseTaken {
            kind: "\\Sent".into(),
            folder: mp("Gesendet"),
            by: by.map(mp),
        };
        let cases = vec![
            Case::named("the same name on both servers")
                .old(vec![dovecot("INBOX"), dovecot("Work")])
                .onto(vec![dovecot("INBOX")])
                .want(vec![
                    ("INBOX", "INBOX", R::SameName),
                    ("Work", "Work", R::SameName),
                ]),
            Case::named("prefix and delimiter translated")
                .old(vec![fi("INBOX.Work.2024", '.', &[], false)])
                .onto(vec![dovecot("INBOX")])
                .prefixed()
                .want(vec![("INBOX.Work.2024", "Work/2024", R::Namespace)]),
            Case::named("the new delimiter inside a name: its look-alike")
                .old(vec![fi("x/y", '.', &[], false)])
                .onto(vec![dovecot("INBOX")])
                .want(vec![("x/y", "x&IhU-y", R::LookAlike)])
                .note("look-alike in \"x∕y\""),
            Case::named("onto the new special-use folder")
                .old(vec![marked("Sent Items")])
                .onto(vec![marked("Sent")])
                .want(vec![("Sent Items", "Sent", sent())]),
            Case::named("the special-use folder taken by an earlier old folder")
                .old(vec![marked("Sent Items"), marked("Sent Messages")])
                .onto(vec![marked("Gesendet")])
                .want(vec![
                    ("Sent Items", "Gesendet", sent()),
                    (
                        "Sent Messages",
                        "Sent Messages",
                        gesendet_taken(Some("Sent Items")),
                    ),
                ])
                .note("holds \"Sent Items\""),
            Case::named("the special-use folder taken by name")
                .old(vec![dovecot("Gesendet"), marked("Elementos enviados")])
                .onto(vec![marked("Gesendet")])
                .want(vec![
                    (
                        "Elementos enviados",
                        "Elementos enviados",
                        gesendet_taken(None),
                    ),
                    ("Gesendet", "Gesendet", R::SameName),
                ])
                .note("holds the old folder of that name"),
            Case::named("a folder rule, merging on purpose, before special use")
                .old(vec![
                    fi("INBOX.Junk", '.', &["\\Junk"], false),
                    fi("INBOX.Spam", '.', &[], false),
                ])
                .onto(vec![dovecot("INBOX"), fi("Spam", '/', &["\\Junk"], false)])
                .rules(vec![rule("^(Junk|Spam)$", "Junk mail", true)])
                .prefixed()
                .want(vec![
                    (
                        "INBOX.Junk",
                        "Junk mail",
                        R::Rule {
                            origin: "imapshift.toml:9".into(),
                        },
                    ),
                    (
                        "INBOX.Spam",
                        "Junk mail",
                        R::Rule {
                            origin: "imapshift.toml:9".into(),
                        },
                    ),
                ])
                .note("by the folder rule of imapshift.toml:9"),
            Case::named("earlier runs' folder kept; the name it would take now is suffixed")
                .old(vec![dovecot("Sent"), marked("Sent Items")])
                .onto(vec![marked("Sent")])
                .earlier(vec![("Sent Items", "Sent")])
                .want(vec![
                    (
                        "Sent",
                        "Sent (2)",
                        R::Suffixed {
                            wanted: mp("Sent"),
                            by: mp("Sent Items"),
                        },
                    ),
                    ("Sent Items", "Sent", R::Earlier),
                ])
                .note("named \"Sent (2)\" on the new server: \"Sent\" holds \"Sent Items\""),
            Case::named("earlier runs' folder that is the own name: the naming reason")
                .old(vec![fi("INBOX.Work", '.', &[], false)])
                .onto(vec![dovecot("INBOX"), dovecot("Work")])
                .earlier(vec![("INBOX.Work", "Work")])
                .prefixed()
                .want(vec![("INBOX.Work", "Work", R::Namespace)]),
            Case::named("a look-alike that collides is suffixed")
                .old(vec![
                    fi("a/b", '.', &[], false),
                    fi("a&IhU-b", '.', &[], false),
                ])
                .onto(vec![dovecot("INBOX")])
                .want(vec![
                    ("a&IhU-b", "a&IhU-b", R::SameName),
                    (
                        "a/b",
                        "a&IhU-b (2)",
                        R::Suffixed {
                            wanted: mp("a&IhU-b"),
                            by: mp("a&IhU-b"),
                        },
                    ),
                ])
                .note("(2)"),
        ];
        for c in cases {
            let names = if c.prefixed {
                prefixed_to_plain()
            } else {
                Names {
                    old: Naming {
                        prefix: String::new(),
                        delim: delimiter_of(&c.old),
                    },
                    new: Naming {
                        prefix: String::new(),
                        delim: Some('/'),
                    },
                }
            };
            let earlier: BTreeMap<String, String> = c
                .earlier
                .iter()
                .map(|(o, n)| (o.to_string(), n.to_string()))
                .collect();
            let p = plan_folders_in(&c.old, &c.new, &earlier, &names, &c.rules);
            assert!(p.conflicts.is_empty(), "{}: {p:?}", c.name);
            let got: Vec<(&str, &str, MapReason)> = p
                .mappings
                .iter()
                .map(|m| (m.old.as_str(), m.new.as_str(), m.reason.clone()))
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
            let notes: Vec<String> = p.mappings.iter().filter_map(|m| m.note()).collect();
            match c.note {
                None => assert!(notes.is_empty(), "{}: {notes:?}", c.name),
                Some(n) => assert!(notes.iter().any(|t| t.contains(n)), "{}: {notes:?}", c.name),
            }
        }
    }

    #[test]
    fn one_old_folder_per_special_use_folder() {
        struct Case {
            name: &'static str,
            old: Vec<FolderInfo>,
            new: Vec<FolderInfo>,
            want: Vec<(&'static str, &'static str)>,
        }
        let cases = vec![
            Case {
                name: "Dovecot stock: Sent and Sent Messages both \\Sent, new has Sent",
                old: vec![
                    fi("Sent", '/', &["\\Sent"], true),
                    fi("Sent Messages", '/', &["\\Sent"], true),
                    fi("Trash", '/', &["\\Trash"], true),
                    fi("Deleted Messages", '/', &["\\Trash"], true),
                ],
                new: vec![
                    fi("Sent", '/', &["\\Sent"], true),
                    fi("Trash", '/', &["\\Trash"], true),
                ],
                want: vec![
                    ("Deleted Messages", "Deleted Messages"),
                    ("Sent", "Sent"),
                    ("Sent Messages", "Sent Messages"),
                    ("Trash", "Trash"),
                ],
            },
            Case {
                name: "two special-use candidates, no name match: the first takes it",
                old: vec![
                    fi("Sent Items", '/', &["\\Sent"], false),
                    fi("Sent Messages", '/', &["\\Sent"], false),
                ],
                new: vec![fi("Gesendet", '/', &["\\Sent"], false)],
                want: vec![
                    ("Sent Items", "Gesendet"),
                    ("Sent Messages", "Sent Messages"),
                ],
            },
            Case {
                name: "the special-use folder is taken by name even when it comes later",
                old: vec![
                    fi("Gesendet", '/', &[], false),
                    fi("Elementos enviados", '/', &["\\Sent"], false),
                ],
                new: vec![fi("Gesendet", '/', &["\\Sent"], false)],
                want: vec![
                    ("Elementos enviados", "Elementos enviados"),
                    ("Gesendet", "Gesendet"),
                ],
            },
        ];
        for c in cases {
            let p = plan_folders(&c.old, &c.new);
            let got: Vec<(&str, &str)> = p
                .mappings
                .iter()
                .map(|m| (m.old.as_str(), m.new.as_str()))
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
            assert!(p.conflicts.is_empty(), "{}", c.name);
            let targets: BTreeSet<&str> = got.iter().map(|(_, n)| *n).collect();
            assert_eq!(targets.len(), got.len(), "{}: one new folder each", c.name);
        }
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
                name: "flag and keyword changes go to the new copy, as changes",
                listing: vec![
                    msf(1, &["\\Seen", "$Work"]),
                    msf(2, &[]),
                    msf(3, &["\\Answered"]),
                ],
                mapped: vec![
                    mapped(1, 11, &["\\Seen"]),
                    mapped(2, 12, &["\\Flagged"]),
                    mapped(3, 13, &["\\Seen", "$x"]),
                ],
                propagate: false,
                copy: vec![],
                flags: vec![
                    (11, vec!["+$Work"]),
                    (12, vec!["-\\Flagged"]),
                    (13, vec!["+\\Answered", "-$x", "-\\Seen"]),
                ],
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
                .map(|u| {
                    let mut v: Vec<String> = u.add.iter().map(|f| format!("+{f}")).collect();
                    v.extend(u.remove.iter().map(|f| format!("-{f}")));
                    (u.new_uid.get(), v)
                })
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

    /// With the default limits (8 MiB, 1000 messages) a folder's first batches ramp up: 1/8,
    /// 1/4, 1/2 of the limits, then the full ones; every message once, in UID order.
    #[test]
    fn first_batches_ramp_up() {
        let msgs: Vec<MsgSummary> = (1..=3000).map(|u| ms(u, 1000)).collect();
        let b = batches(&msgs, 8 * 1024 * 1024, 1000);
        let lens: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![125, 250, 500, 1000, 1000, 125]);
        let uids: Vec<u32> = b.iter().flatten().map(|m| m.uid.get()).collect();
        assert_eq!(uids, (1..=3000).collect::<Vec<u32>>());
        // By bytes: 64 KiB messages, 1 MiB then 2 MiB then 4 MiB then 8 MiB.
        let big: Vec<MsgSummary> = (1..=200).map(|u| ms(u, 64 * 1024)).collect();
        let lens: Vec<usize> = batches(&big, 8 * 1024 * 1024, 1000)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, vec![16, 32, 64, 88]);
        // Small limits are not ramped below the floor (nor above themselves).
        let lens: Vec<usize> = batches(&msgs[..100], 8 * 1024 * 1024, 40)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, vec![32, 32, 32, 4]);
    }
}
