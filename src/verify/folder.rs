//! One folder's comparison at any size: both sides listed in chunks into a [`Partition`], matched
//! bucket by bucket on compact records, details fetched only for the differences kept.
//!
//! Listing: after EXAMINE, messages `1..=EXISTS` in chunks of `chunk` sequence numbers, each
//! `UID SEARCH <first>:<last>` (the chunk's UIDs; the chunk must have exactly that many, so a
//! listing shorter than EXISTS is an error, never a smaller folder), then a header listing of
//! exactly those UIDs ([`MailStore::fetch_described_of`]: a message without RFC822.SIZE,
//! INTERNALDATE, FLAGS or its header is an error). Mail that arrives after EXAMINE is beyond
//! EXISTS and not listed. `[filters]` are applied to the old side only, as the sync applies them.

use super::compact::{body_hash, normalized_flags, pair_records, Rec};
use super::spill::{Partition, Side};
use super::{Difference, FolderVerdict, Kind, OnlyNew};
use crate::error::{Error, Result, Retry, Scope};
use crate::store::{Described, FolderStatus, MailStore};
use crate::types::Uid;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Sizes that keep verify within its memory share (see [`Tuning::new`]).
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Messages per listing chunk.
    pub chunk: usize,
    /// Records per bucket (so one bucket's join fits).
    pub bucket_records: usize,
    /// Records buffered in memory before the partition spills to disk.
    pub buffer_records: usize,
    /// Message differences (and, separately, messages only on the new side) listed per user.
    pub max_listed: usize,
    /// Where spill directories go.
    pub spill_parent: std::path::PathBuf,
}

/// Bytes a record costs while its bucket is joined (records, key groups, pairs, key set).
const JOIN_BYTES_PER_RECORD: usize = 200;

impl Tuning {
    /// From the memory share of one user (`[sync] memory_budget` over the users verified at
    /// once). `IMAPSHIFT_VERIFY_CHUNK=n` sets chunk, bucket and buffer sizes to `n` (tests force
    /// the spilling path with it); `IMAPSHIFT_VERIFY_MAX_LISTED=n` the listed differences.
    pub fn new(share_bytes: u64, spill_parent: &std::path::Path) -> Tuning {
        let half = (share_bytes / 2) as usize;
        let mut t = Tuning {
            chunk: 2000,
            bucket_records: (half / JOIN_BYTES_PER_RECORD).max(1000),
            buffer_records: (half / super::compact::REC_BYTES).max(1000),
            max_listed: 1000,
            spill_parent: spill_parent.to_path_buf(),
        };
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = env("IMAPSHIFT_VERIFY_CHUNK").filter(|&n| n > 0) {
            (t.chunk, t.bucket_records, t.buffer_records) = (n, n, n);
        }
        if let Some(n) = env("IMAPSHIFT_VERIFY_MAX_LISTED") {
            t.max_listed = n;
        }
        t
    }
}

/// What a folder's comparison needs besides the sessions.
pub struct FolderCtx<'a> {
    pub old_name: &'a crate::types::MailboxPath,
    /// `None`: the old folder has no new folder (all of it is missing).
    pub new_name: Option<&'a crate::types::MailboxPath>,
    pub deep: bool,
    pub max_size: Option<u64>,
    /// The `UID SEARCH` criteria of the age filters (at the run's reference time).
    pub age: Option<&'a str>,
    pub tuning: &'a Tuning,
    /// How many more message differences, and messages only on the new side, may be listed.
    pub room: (usize, usize),
}

/// The folder's counts, and its listed differences with details.
pub struct FolderResult {
    pub verdict: FolderVerdict,
    pub differences: Vec<Difference>,
    pub only_new: Vec<OnlyNew>,
}

/// Compares one old folder with its new folder (or with nothing, see [`FolderCtx::new_name`]).
pub async fn compare<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    c: &FolderCtx<'_>,
) -> Result<FolderResult> {
    let old_st = old.examine(c.old_name).await?;
    let new_st = match c.new_name {
        Some(n) => Some(new.examine(n).await?),
        None => None,
    };
    // The keywords the new folder holds (its `* FLAGS`, and every keyword on a message listed
    // there): an old keyword outside them is on no copy, as the new server did not take it
    // (quirk `cyrus-keyword-limit`). So the new side is listed first.
    let mut not_taken = NotTaken {
        held: c
            .new_name
            .and_then(|n| new.folder_keywords(n))
            .cloned()
            .unwrap_or_default(),
        reduced: HashSet::new(),
    };
    let expected = old_st.messages as usize + new_st.map_or(0, |s| s.messages as usize);
    let t = c.tuning;
    let mut part = Partition::new(
        expected,
        t.bucket_records,
        t.buffer_records,
        &t.spill_parent,
    );
    let mut v = FolderVerdict {
        old: c.old_name.display(),
        new: c.new_name.map(|n| n.display()).unwrap_or_default(),
        new_folder_missing: c.new_name.is_none(),
        ..Default::default()
    };
    let old_side = SideCtx {
        side: Side::Old,
        new_listed: new_st.is_some(),
        folder: &v.old,
        deep: c.deep,
        max_size: c.max_size,
        age: c.age,
        chunk: t.chunk,
    };
    if let Some(st) = &new_st {
        let new_side = SideCtx {
            side: Side::New,
            folder: &v.new,
            max_size: None,
            age: None,
            ..old_side
        };
        v.counts.new_messages = list_side(new, st, &new_side, &mut part, &mut not_taken)
            .await?
            .compared;
    } else {
        not_taken.held.clear();
    }
    let listed = list_side(old, &old_st, &old_side, &mut part, &mut not_taken).await?;
    v.counts.old_messages = listed.compared;
    v.counts.filtered_size = listed.filtered_size;
    v.counts.filtered_age = listed.filtered_age;
    v.counts.filtered = listed.filtered_size + listed.filtered_age;
    let reduced = not_taken.reduced;
    (v.buckets, v.spilled) = (part.buckets(), part.spilled());
    let mut kept = Kept::new(c.room);
    for i in 0..part.buckets() {
        let (olds, news) = part.take(i)?;
        join(&olds, &news, c.deep, &reduced, &mut |f| {
            v.counts.count(f.kind);
            kept.add(f);
        });
    }
    drop(part);
    let (diffs, only) = kept.finish();
    let (differences, only_new) = describe(old, new, &v, &diffs, &only).await;
    Ok(FolderResult {
        verdict: v,
        differences,
        only_new,
    })
}

/// One side's listing.
#[derive(Clone, Copy)]
struct SideCtx<'a> {
    side: Side,
    /// The folder has a new folder (listed first): keywords it does not hold can be told.
    new_listed: bool,
    folder: &'a str,
    deep: bool,
    max_size: Option<u64>,
    age: Option<&'a str>,
    chunk: usize,
}

#[derive(Default)]
struct Listed {
    compared: usize,
    filtered_size: usize,
    filtered_age: usize,
}

/// Keywords the new folder does not hold: the new side's listing collects what it holds, the
/// old side's leaves the others out of its records' flags (their UIDs noted), so a copy that
/// lacks only those is told apart from one whose flags differ.
struct NotTaken {
    /// The new folder's keywords (lower case): its `* FLAGS` and those on its messages.
    held: BTreeSet<String>,
    /// Old UIDs whose records leave keywords out.
    reduced: HashSet<u32>,
}

impl NotTaken {
    /// The old message's flags to compare, when it has keywords the new folder does not hold
    /// (with a new folder at all).
    fn flags_to_compare(
        &mut self,
        uid: u32,
        flags: &[String],
        new_listed: bool,
    ) -> Option<Vec<String>> {
        let held = &self.held;
        let not_held =
            |f: &&String| !f.starts_with('\\') && !held.contains(&f.to_ascii_lowercase());
        if !new_listed || !flags.iter().any(|f| not_held(&f)) {
            return None;
        }
        let fewer = flags.iter().filter(|f| !not_held(f)).cloned().collect();
        self.reduced.insert(uid);
        Some(fewer)
    }
}

async fn list_side<S: MailStore>(
    s: &mut S,
    st: &FolderStatus,
    c: &SideCtx<'_>,
    part: &mut Partition,
    not_taken: &mut NotTaken,
) -> Result<Listed> {
    let exists = st.messages as usize;
    let mut out = Listed::default();
    let mut first = 1usize;
    while first <= exists {
        let last = (first + c.chunk.max(1) - 1).min(exists);
        let set = format!("{first}:{last}");
        let uids = s.uid_search(&set).await?;
        if uids.len() != last + 1 - first {
            return Err(short_listing(
                s.describe(),
                c.folder,
                &set,
                uids.len(),
                exists,
            ));
        }
        let allowed: Option<HashSet<Uid>> = match c.age {
            Some(crit) => Some(
                s.uid_search(&format!("{set} {crit}"))
                    .await?
                    .into_iter()
                    .collect(),
            ),
            None => None,
        };
        let listed = s.fetch_described_of(&uids, false).await?;
        if listed.len() != uids.len() {
            return Err(short_listing(
                s.describe(),
                c.folder,
                &set,
                listed.len(),
                exists,
            ));
        }
        let mut recs = Vec::with_capacity(listed.len());
        for d in &listed {
            if c.max_size.is_some_and(|m| u64::from(d.fp.size) > m) {
                out.filtered_size += 1;
            } else if allowed.as_ref().is_some_and(|a| !a.contains(&d.uid)) {
                out.filtered_age += 1;
            } else {
                let uid = d.uid.get();
                let fewer = match c.side {
                    Side::New => {
                        let kw = d.flags.iter().filter(|f| !f.starts_with('\\'));
                        not_taken.held.extend(kw.map(|f| f.to_ascii_lowercase()));
                        None
                    }
                    Side::Old => not_taken.flags_to_compare(uid, &d.flags, c.new_listed),
                };
                recs.push(Rec::new(uid, &d.fp, fewer.as_deref().unwrap_or(&d.flags)));
            }
        }
        drop(listed);
        if c.deep {
            hash_bodies(s, c.folder, &mut recs).await?;
        }
        out.compared += recs.len();
        for r in recs {
            part.push(c.side, r)?;
        }
        first = last + 1;
    }
    Ok(out)
}

fn short_listing(server: &str, folder: &str, set: &str, got: usize, exists: usize) -> Error {
    Error::new(
        Scope::Account,
        Retry::Transient,
        format!(
            "{server}: {folder}: the listing of messages {set} has {got} messages, but EXAMINE said the folder has {exists} (a message expunged meanwhile, or a server that lists fewer): not trusting a short listing; run verify again"
        ),
    )
}

/// The SHA-256 of every record's message, fetched in batches of at most 4 MiB / 500 messages.
async fn hash_bodies<S: MailStore>(s: &mut S, folder: &str, recs: &mut [Rec]) -> Result<()> {
    let mut start = 0;
    while start < recs.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < recs.len() && (end == start || (bytes < 4 << 20 && end - start < 500)) {
            bytes += u64::from(recs[end].size);
            end += 1;
        }
        let uids: Vec<Uid> = recs[start..end]
            .iter()
            .filter_map(|r| Uid::new(r.uid))
            .collect();
        let sums: HashMap<u32, u128> = s
            .fetch_messages(&uids)
            .await?
            .into_iter()
            .map(|m| (m.uid.get(), body_hash(&m.body)))
            .collect();
        for r in &mut recs[start..end] {
            r.body = *sums.get(&r.uid).ok_or_else(|| {
                Error::new(
                    Scope::Account,
                    Retry::Transient,
                    format!(
                        "{}: {folder}: UID {} was listed but its body did not come: not comparing without it; run verify --deep again",
                        s.describe(),
                        r.uid
                    ),
                )
            })?;
        }
        start = end;
    }
    Ok(())
}

/// What a message of a bucket turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Found {
    Missing,
    /// The copy is its original with 8-bit header bytes replaced by `X` (Cyrus `munge8bit`).
    Altered,
    Flags,
    /// The copy lacks only keywords its new folder does not hold at all.
    KeywordsRefused,
    Body,
    Duplicate,
    OnlyNew,
}

/// One message difference (or message only on the new side), as records.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub kind: Found,
    pub old: Option<Rec>,
    pub new: Option<Rec>,
}

impl Hit {
    /// Listing order within a folder: old-side findings by old UID, then new-side by new UID.
    fn order(&self) -> (u8, u32, Found) {
        match (self.old, self.new) {
            (Some(o), _) => (0, o.uid, self.kind),
            (None, Some(n)) => (1, n.uid, self.kind),
            (None, None) => (2, 0, self.kind),
        }
    }
}

/// Matches one bucket (pure): every old record is missing, or matched (then whether the copy is
/// altered, its flags and, with `deep`, its body compared); every new record left over is a
/// duplicate (it could have been an old one's copy) or only on the new side. `reduced`: old
/// UIDs whose record leaves out keywords the new folder does not hold; such a copy whose flags
/// otherwise match lacks only those.
pub fn join(
    olds: &[Rec],
    news: &[Rec],
    deep: bool,
    reduced: &HashSet<u32>,
    out: &mut impl FnMut(Hit),
) {
    let paired = pair_records(olds, news);
    let mut used = vec![false; news.len()];
    for (o, p) in olds.iter().zip(&paired) {
        let Some(j) = *p else {
            out(Hit {
                kind: Found::Missing,
                old: Some(*o),
                new: None,
            });
            continue;
        };
        used[j] = true;
        let n = news[j];
        if n.altered_from(o) {
            out(Hit {
                kind: Found::Altered,
                old: Some(*o),
                new: Some(n),
            });
        }
        if o.flags != n.flags || reduced.contains(&o.uid) {
            out(Hit {
                kind: if o.flags == n.flags {
                    Found::KeywordsRefused
                } else {
                    Found::Flags
                },
                old: Some(*o),
                new: Some(n),
            });
        }
        if deep && o.body != n.body {
            out(Hit {
                kind: Found::Body,
                old: Some(*o),
                new: Some(n),
            });
        }
    }
    // A copy of an old message: the same exact key, or a 7-bit copy of an old munged key.
    let old_exact: HashSet<(u128, u64)> = olds.iter().map(|o| (o.key, o.exact)).collect();
    let old_munged: HashSet<u128> = olds.iter().filter(|o| !o.plain()).map(|o| o.key).collect();
    let copy_of_old = |n: &Rec| {
        old_exact.contains(&(n.key, n.exact)) || (n.plain() && old_munged.contains(&n.key))
    };
    for (n, _) in news.iter().zip(&used).filter(|(_, u)| !**u) {
        out(Hit {
            kind: if copy_of_old(n) {
                Found::Duplicate
            } else {
                Found::OnlyNew
            },
            old: None,
            new: Some(*n),
        });
    }
}

/// The first `room` hits of each list in listing order, with at most twice that in memory.
pub struct Kept {
    room: (usize, usize),
    diffs: Vec<Hit>,
    only: Vec<Hit>,
}

impl Kept {
    pub fn new(room: (usize, usize)) -> Kept {
        Kept {
            room,
            diffs: Vec::new(),
            only: Vec::new(),
        }
    }

    pub fn add(&mut self, h: Hit) {
        let (list, room) = if h.kind == Found::OnlyNew {
            (&mut self.only, self.room.1)
        } else {
            (&mut self.diffs, self.room.0)
        };
        if room == 0 {
            return;
        }
        list.push(h);
        if list.len() >= room.saturating_mul(2) {
            trim(list, room);
        }
    }

    pub fn finish(mut self) -> (Vec<Hit>, Vec<Hit>) {
        trim(&mut self.diffs, self.room.0);
        trim(&mut self.only, self.room.1);
        (self.diffs, self.only)
    }
}

fn trim(list: &mut Vec<Hit>, room: usize) {
    list.sort_by_key(Hit::order);
    list.truncate(room);
}

/// Subject, Message-ID and flags of the kept hits, fetched now (a folder's worth at most
/// `max_listed` per side). Without them (a message expunged meanwhile) a difference is still
/// listed, with UIDs and size only.
async fn describe<O: MailStore, N: MailStore>(
    old: &mut O,
    new: &mut N,
    v: &FolderVerdict,
    diffs: &[Hit],
    only: &[Hit],
) -> (Vec<Difference>, Vec<OnlyNew>) {
    let uids = |side: fn(&Hit) -> Option<Rec>| -> Vec<Uid> {
        let mut u: Vec<Uid> = diffs
            .iter()
            .chain(only)
            .filter_map(side)
            .filter_map(|r| Uid::new(r.uid))
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let old_uids = uids(|h| h.old);
    let new_uids = uids(|h| h.new);
    let od = details(old, &v.old, &old_uids).await;
    let nd = details(new, &v.new, &new_uids).await;
    build(v, diffs, only, &od, &nd)
}

/// The listed differences and messages only on the new side, with the details known.
pub fn build(
    v: &FolderVerdict,
    diffs: &[Hit],
    only: &[Hit],
    od: &HashMap<u32, Described>,
    nd: &HashMap<u32, Described>,
) -> (Vec<Difference>, Vec<OnlyNew>) {
    let differences = diffs.iter().map(|h| difference(h, v, od, nd)).collect();
    let only_new = only
        .iter()
        .filter_map(|h| {
            let n = h.new?;
            let d = nd.get(&n.uid);
            Some(OnlyNew {
                folder: v.new.clone(),
                new_uid: n.uid,
                message_id: d.and_then(|d| d.fp.message_id.clone()),
                subject: d.and_then(|d| d.subject.clone()),
                size: n.size,
            })
        })
        .collect();
    (differences, only_new)
}

async fn details<S: MailStore>(s: &mut S, folder: &str, uids: &[Uid]) -> HashMap<u32, Described> {
    if uids.is_empty() {
        return HashMap::new();
    }
    match s.fetch_described_of(uids, true).await {
        Ok(list) => list.into_iter().map(|d| (d.uid.get(), d)).collect(),
        Err(e) => {
            tracing::warn!("verify: {folder}: no subjects for the differences listed: {e}");
            HashMap::new()
        }
    }
}

fn difference(
    h: &Hit,
    v: &FolderVerdict,
    od: &HashMap<u32, Described>,
    nd: &HashMap<u32, Described>,
) -> Difference {
    let o = h.old.and_then(|r| od.get(&r.uid));
    let n = h.new.and_then(|r| nd.get(&r.uid));
    let any = o.or(n);
    let (kind, folder, detail) = match h.kind {
        Found::Missing => (Kind::Missing, &v.old, String::new()),
        Found::Flags => (Kind::Flags, &v.old, flags_detail(o, n)),
        Found::KeywordsRefused => (
            Kind::KeywordsRefused,
            &v.old,
            format!(
                "{}: the new folder holds none of these keywords on any message, so the new server did not take them (a limit of keywords per folder: Cyrus takes 100); the sync dropped them with a warning",
                flags_detail(o, n)
            ),
        ),
        Found::Body => {
            let hex = |r: Option<Rec>| {
                r.map(|r| hex::encode(r.body.to_le_bytes())[..12].to_string())
                    .unwrap_or_default()
            };
            (
                Kind::Body,
                &v.old,
                format!(
                    "SHA-256 {}… on the old server, {}… on the new",
                    hex(h.old),
                    hex(h.new)
                ),
            )
        }
        Found::Altered => (Kind::Altered, &v.old, altered_detail(&v.new, h.new)),
        Found::Duplicate | Found::OnlyNew => (
            Kind::Duplicate,
            &v.new,
            "one more copy than on the old server".to_string(),
        ),
    };
    Difference {
        kind,
        folder: folder.clone(),
        old_uid: h.old.map(|r| r.uid),
        new_uid: h.new.map(|r| r.uid),
        message_id: any.and_then(|d| d.fp.message_id.clone()),
        subject: any.and_then(|d| d.subject.clone()),
        size: h.old.or(h.new).map(|r| r.size),
        detail,
    }
}

/// Where an altered copy is, what happened to it and the fix (docs/verify.md, "Altered copies").
fn altered_detail(new_folder: &str, copy: Option<Rec>) -> String {
    format!(
        "stored as {new_folder} UID {} with each 8-bit header byte replaced by X (Cyrus: munge8bit); fix: set munge8bit: no, delete this copy, move the state directory aside and sync again (docs/verify.md, Altered copies)",
        copy.map_or(0, |r| r.uid)
    )
}

/// `removed \seen; added $important`, from the flags fetched for the listing.
fn flags_detail(o: Option<&Described>, n: Option<&Described>) -> String {
    let (Some(o), Some(n)) = (o, n) else {
        return "flags differ (not read again)".into();
    };
    let (of, nf) = (normalized_flags(&o.flags), normalized_flags(&n.flags));
    let join = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
    let gone: Vec<&String> = of.difference(&nf).collect();
    let added: Vec<&String> = nf.difference(&of).collect();
    let mut detail = Vec::new();
    if !gone.is_empty() {
        detail.push(format!("removed {}", join(gone)));
    }
    if !added.is_empty() {
        detail.push(format!("added {}", join(added)));
    }
    if detail.is_empty() {
        return "flags differed when listed, and are the same now".into();
    }
    detail.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32, key: u128, flags: &[&str]) -> Rec {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Rec {
            key,
            exact: key as u64,
            uid,
            size: 10,
            flags: super::super::compact::flags_hash(&flags),
            body: 0,
        }
    }

    /// A copy that lacks only keywords its new folder does not hold (the old record left them
    /// out, its UID noted) is `KeywordsRefused`; one whose other flags differ too is `Flags`;
    /// an old message with such a keyword and no copy is still missing.
    #[test]
    fn keywords_the_new_folder_does_not_hold_are_told_apart() {
        let mut nt = NotTaken {
            held: ["kw5".to_string()].into(),
            reduced: HashSet::new(),
        };
        let old_flags = ["\\Seen".to_string(), "KW5".into(), "kw110".into()];
        let fewer = nt.flags_to_compare(1, &old_flags, true).unwrap();
        assert_eq!(fewer, vec!["\\Seen".to_string(), "KW5".into()]);
        assert_eq!(nt.flags_to_compare(2, &old_flags[..2], true), None);
        assert_eq!(
            nt.flags_to_compare(3, &old_flags, false),
            None,
            "no new folder"
        );
        let olds = [
            rec(1, 1, &["\\Seen", "kw5"]),
            rec(4, 4, &["kw5"]),
            rec(5, 5, &["kw5"]),
        ];
        let news = [rec(11, 1, &["\\Seen", "kw5"]), rec(14, 4, &[])];
        let reduced: HashSet<u32> = [1, 4, 5].into();
        let mut found = Vec::new();
        join(&olds, &news, false, &reduced, &mut |h| {
            found.push((h.kind, h.old.map(|r| r.uid)))
        });
        assert_eq!(
            found,
            vec![
                (Found::KeywordsRefused, Some(1)),
                (Found::Flags, Some(4)),
                (Found::Missing, Some(5)),
            ]
        );
    }
}
