//! Proof that nothing is missing: compares old and new per user and folder by content, not by
//! the UID maps (which could be wrong).
//!
//! Every message of an old folder is matched, as a multiset, by fingerprint (Message-ID,
//! RFC822.SIZE, INTERNALDATE and a hash of the header block; `BODY.PEEK[HEADER]` only, so it is
//! fast) against the mapped new folder. Old messages without a match are **missing**; matched
//! copies whose flags or keywords differ are **changed**; copies that match only because the new
//! server replaced 8-bit header bytes by `X` (Cyrus `munge8bit`) are **altered** (a problem: not
//! identical, with the fix in the report); with `--deep` a SHA-256 of each whole message is
//! compared too (**body differs**; an altered copy's is compared with its original as munged). New messages that match an old fingerprint
//! beyond its count are **duplicates** (an exactly-once failure); new messages that match none
//! are **only on the new side** (mail delivered there after the cutover), listed and never an
//! error. Folders missing on the new side and lost subscriptions are differences; folders only
//! on the new side are listed. The cutover's last step, and `imapshift verify`.
//!
//! Every old folder is accounted for: taken and mapped (compared), taken but placed nowhere
//! (all of it missing), or left out by `[filters]` (named and counted, never compared and never
//! called OK). A folder of any size is compared in bounded memory ([`folder`]): both sides are
//! listed in chunks into compact records, partitioned by match key (spilled to disk under the
//! state directory when large) and matched bucket by bucket; Subjects and Message-IDs are
//! fetched only for the differences listed, at most [`folder::Tuning::max_listed`] per user,
//! while every count is exact.

mod compact;
mod folder;
mod spill;

pub use folder::Tuning;

use crate::config::{Config, UserConfig};
use crate::error::{exit, Result};
use crate::imap::ImapSession;
use crate::store::{Described, MailStore};
use crate::types::{MailboxPath, Uid};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// What differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An old message has no copy on the new server.
    Missing,
    /// An old folder has no counterpart on the new server.
    FolderMissing,
    /// A copy's flags or keywords differ from the old message's.
    Flags,
    /// A copy lacks only keywords its new folder holds on no message at all (`* FLAGS` of the
    /// new folder): the new server did not take them (quirk `cyrus-keyword-limit`). Listed and
    /// counted, not a problem: the sync dropped them with a warning.
    KeywordsRefused,
    /// A copy's bytes differ although its header block matches (`--deep`).
    Body,
    /// A copy whose header the new server stored with each 8-bit byte replaced by `X` (Cyrus
    /// `munge8bit`): the message is there, but not byte for byte.
    Altered,
    /// A message is on the new server more often than on the old one.
    Duplicate,
    /// The old folder is subscribed, its copy is not.
    Subscription,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Missing => "missing on the new server",
            Kind::FolderMissing => "folder missing on the new server",
            Kind::Flags => "flags differ",
            Kind::KeywordsRefused => "without keywords the new folder does not take",
            Kind::Body => "content differs",
            Kind::Altered => "altered by the new server (8-bit header bytes replaced by X)",
            Kind::Duplicate => "duplicate on the new server",
            Kind::Subscription => "not subscribed on the new server",
        }
    }
}

/// One difference, with what identifies the message for a person.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    pub kind: Kind,
    /// The old folder (the new one for a duplicate).
    pub folder: String,
    pub old_uid: Option<u32>,
    pub new_uid: Option<u32>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: Option<u32>,
    pub detail: String,
}

/// A message only on the new side (not an error).
#[derive(Clone, Debug, Serialize)]
pub struct OnlyNew {
    pub folder: String,
    pub new_uid: u32,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u32,
}

/// What a comparison of messages found, one folder's or summed over folders (the same fields
/// in the JSON report, flattened into [`FolderVerdict`] and [`Counts`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MessageCounts {
    pub old_messages: usize,
    pub new_messages: usize,
    pub missing: usize,
    pub flags_differ: usize,
    /// Copies without keywords the new folder does not take (not a problem, see
    /// [`Kind::KeywordsRefused`]).
    pub keywords_refused: usize,
    pub body_differs: usize,
    /// Copies whose 8-bit header bytes the new server replaced by `X`.
    pub altered: usize,
    pub duplicates: usize,
    pub only_new: usize,
    /// Old messages left out by `[filters]` (size, age), as the sync leaves them out.
    pub filtered: usize,
    /// Of those, larger than `max_size`.
    pub filtered_size: usize,
    /// Of those, outside the age window.
    pub filtered_age: usize,
}

impl MessageCounts {
    fn add(&mut self, o: &MessageCounts) {
        self.old_messages += o.old_messages;
        self.new_messages += o.new_messages;
        self.missing += o.missing;
        self.flags_differ += o.flags_differ;
        self.keywords_refused += o.keywords_refused;
        self.body_differs += o.body_differs;
        self.altered += o.altered;
        self.duplicates += o.duplicates;
        self.only_new += o.only_new;
        self.filtered += o.filtered;
        self.filtered_size += o.filtered_size;
        self.filtered_age += o.filtered_age;
    }

    /// Counts one message the matching found.
    fn count(&mut self, found: folder::Found) {
        use folder::Found;
        *match found {
            Found::Missing => &mut self.missing,
            Found::Flags => &mut self.flags_differ,
            Found::KeywordsRefused => &mut self.keywords_refused,
            Found::Body => &mut self.body_differs,
            Found::Altered => &mut self.altered,
            Found::Duplicate => &mut self.duplicates,
            Found::OnlyNew => &mut self.only_new,
        } += 1;
    }

    /// Message differences found (listed or not), and messages only on the new side.
    fn found(&self) -> (usize, usize) {
        (
            self.missing
                + self.flags_differ
                + self.keywords_refused
                + self.body_differs
                + self.altered
                + self.duplicates,
            self.only_new,
        )
    }
}

/// One folder's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderVerdict {
    pub old: String,
    pub new: String,
    #[serde(flatten)]
    pub counts: MessageCounts,
    /// The old folder has no counterpart on the new server.
    pub new_folder_missing: bool,
    /// Buckets the folder's messages were matched in (1 unless large, see docs/verify.md).
    pub buckets: usize,
    /// Whether the buckets went to disk (the folder did not fit in the memory share).
    pub spilled: bool,
}

/// An old folder `[filters]` leave out: not compared.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExcludedFolder {
    pub name: String,
    /// Its messages (STATUS), `None` when the server did not say.
    pub messages: Option<u32>,
}

/// One user's comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UserVerdict {
    pub old_login: String,
    pub new_login: String,
    /// `ok`, `differs` or `error` (the comparison could not be made).
    pub status: String,
    pub error: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub seconds: f64,
    pub folders: Vec<FolderVerdict>,
    /// Folders on the new server that no old folder maps to (not an error).
    pub only_new_folders: Vec<String>,
    /// The differences, the first [`Tuning::max_listed`] message differences (by folder, then
    /// UID) and every folder-level one; the counts are exact for all.
    pub differences: Vec<Difference>,
    pub only_new_messages: Vec<OnlyNew>,
    /// This user's entry of the last sync run report, if the state directory has one.
    pub last_run: Option<serde_json::Value>,
    /// Old folders `[filters]` leave out (not compared).
    pub excluded_folders: Vec<ExcludedFolder>,
    /// Old folders in other users' or shared namespaces: never migrated, not compared.
    pub outside_folders: Vec<String>,
    /// Message differences counted but not listed (beyond the cap).
    pub differences_omitted: usize,
    /// Messages only on the new side counted but not listed (beyond the cap).
    pub only_new_omitted: usize,
}

impl UserVerdict {
    /// Differences that count (everything but mail only on the new side), listed or not.
    pub fn problems(&self) -> usize {
        let c = &self.counts;
        let m = &c.messages;
        m.missing
            + m.flags_differ
            + m.body_differs
            + m.altered
            + m.duplicates
            + c.folders_missing
            + c.subscriptions_lost
    }
}

/// What `[filters]` left out of this run's comparison, and the reference time of its age
/// window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FiltersUsed {
    pub include_folders: Vec<String>,
    pub exclude_folders: Vec<String>,
    pub max_size: Option<u64>,
    pub max_age_days: Option<u32>,
    pub min_age_days: Option<u32>,
    /// The `UID SEARCH` criteria of the age window, computed at `as_of_unix`.
    pub age_criteria: Option<String>,
    /// The age window in words.
    pub age_window: Option<String>,
}

/// How to verify.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Compare every message's bytes too (SHA-256), not only its header block.
    pub deep: bool,
    /// The age filters' "now": the start of the sync this verification checks (the cutover
    /// passes its final sync's), so both select the same messages whatever the clock says.
    pub as_of_unix: u64,
}

impl VerifyOptions {
    /// A verification on its own (`imapshift verify`): the age window as of now.
    pub fn now(deep: bool) -> VerifyOptions {
        VerifyOptions {
            deep,
            as_of_unix: crate::timefmt::now_unix(),
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub ok: bool,
    pub deep: bool,
    pub generated_unix: u64,
    pub seconds: f64,
    pub old_server: String,
    pub new_server: String,
    pub users: Vec<UserVerdict>,
    pub totals: Totals,
    /// When the last sync run (state_dir/last-run.json) finished, if known.
    pub last_run_unix: Option<u64>,
    /// The age filters' reference time ([`VerifyOptions::as_of_unix`]).
    pub as_of_unix: u64,
    /// What `[filters]` select.
    pub filters: FiltersUsed,
    /// Message differences listed per user at most (counts are exact beyond it).
    pub max_listed: usize,
}

/// Sums over all users.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub users: usize,
    pub users_ok: usize,
    pub errors: usize,
    #[serde(flatten)]
    pub counts: Counts,
}

/// What a user's comparison found, and the sum over users (same fields in the JSON report).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    #[serde(flatten)]
    pub messages: MessageCounts,
    pub folders_missing: usize,
    pub subscriptions_lost: usize,
    /// Old folders left out by `[filters]` include/exclude.
    pub folders_excluded: usize,
    /// The messages in those folders.
    pub excluded_messages: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.messages.add(&o.messages);
        self.folders_missing += o.folders_missing;
        self.subscriptions_lost += o.subscriptions_lost;
        self.folders_excluded += o.folders_excluded;
        self.excluded_messages += o.excluded_messages;
    }

    /// Whether `[filters]` left anything out (then OK covers only what was compared).
    pub fn left_out(&self) -> bool {
        self.messages.filtered + self.folders_excluded > 0
    }

    /// Copies whose flags, content or subscription differ, or that the new server altered.
    pub fn changed(&self) -> usize {
        let m = &self.messages;
        m.flags_differ + m.body_differs + m.altered + self.subscriptions_lost
    }
}

impl Verdict {
    pub fn missing(&self) -> usize {
        self.totals.counts.messages.missing
    }

    /// 0 when nothing is missing or changed; 7 when something is; 3 when a user could not be
    /// compared at all (docs/exit-codes.md).
    pub fn exit_code(&self) -> i32 {
        if self.users.iter().any(|u| u.problems() > 0) {
            exit::VERIFY_FAILED
        } else if self.users.iter().any(|u| u.status == "error") {
            exit::ACCOUNT
        } else {
            exit::OK
        }
    }
}

/// A copy without keywords its new folder does not take says whether the last sync run named
/// them in that folder's `flags_dropped_names` (it does in the run that dropped them; later runs
/// do not try them again).
fn explain_refused_keywords(v: &mut UserVerdict) {
    let folders = v
        .last_run
        .as_ref()
        .and_then(|r| r["folders"].as_array())
        .cloned()
        .unwrap_or_default();
    for d in v
        .differences
        .iter_mut()
        .filter(|d| d.kind == Kind::KeywordsRefused)
    {
        let named = folders.iter().any(|f| {
            f["old"].as_str() == Some(d.folder.as_str())
                && f["flags_dropped_names"]
                    .as_array()
                    .is_some_and(|n| !n.is_empty())
        });
        if named {
            d.detail
                .push_str(" (named in the last sync's report of this folder)");
        }
    }
}

/// A missing message that the last sync failed says why (the server's refusal, a size limit),
/// from that run's report: a refused message is named, never silently absent.
fn explain_missing(v: &mut UserVerdict) {
    let Some(failures) = v
        .last_run
        .as_ref()
        .and_then(|r| r["failures"].as_array())
        .cloned()
    else {
        return;
    };
    for d in v
        .differences
        .iter_mut()
        .filter(|d| d.kind == Kind::Missing && d.detail.is_empty())
    {
        let why = failures.iter().find(|f| {
            f["folder"].as_str() == Some(d.folder.as_str())
                && f["old_uid"].as_u64() == d.old_uid.map(u64::from)
        });
        if let Some(reason) = why.and_then(|f| f["reason"].as_str()) {
            d.detail = format!("the last sync could not copy it: {reason}");
        }
    }
}

/// Compares every user (in parallel, `jobs` at a time, within the servers' connection caps).
pub async fn verify(cfg: &Config, opts: &VerifyOptions) -> Verdict {
    let started = std::time::Instant::now();
    let last_run: Option<serde_json::Value> = std::fs::read(cfg.state_dir.join("last-run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let unlimited = tokio::sync::Semaphore::MAX_PERMITS;
    let caps = (
        tokio::sync::Semaphore::new(cfg.old.max_connections.unwrap_or(unlimited)),
        tokio::sync::Semaphore::new(cfg.new.max_connections.unwrap_or(unlimited)),
    );
    let caps = &caps;
    let last = &last_run;
    // The folder mapping is the sync's: it keeps the new folders of earlier runs, which the
    // state store knows. (Without a state store: the plan of a first run.)
    let state = if cfg.state_dir.join("db").exists() {
        match crate::state::StateStore::open(&cfg.state_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("verify: {e}; comparing with the folder plan of a first run");
                None
            }
        }
    } else {
        None
    };
    let state = &state;
    let jobs = cfg.sync.jobs.max(1);
    let tuning = tuning(cfg, jobs);
    let ctx = AccountCtx {
        cfg,
        deep: opts.deep,
        age: cfg.filters.age_criteria(opts.as_of_unix),
        tuning: &tuning,
    };
    let ctx = &ctx;
    let mut users: Vec<UserVerdict> = futures::stream::iter(cfg.users.iter())
        .map(|u| async move {
            let _o = caps.0.acquire().await.expect("never closed");
            let _n = caps.1.acquire().await.expect("never closed");
            let earlier = match state {
                Some(s) => crate::engine::earlier_targets(s, &crate::runner::account_key(cfg, u))
                    .unwrap_or_default(),
                None => Default::default(),
            };
            let mut v = verify_user(ctx, u, &earlier).await;
            v.last_run = last.as_ref().and_then(|r| {
                r["users"]
                    .as_array()?
                    .iter()
                    .find(|x| x["old_login"] == u.old_login.as_str())
                    .map(|x| {
                        serde_json::json!({
                            "status": x["status"], "copied": x["copied"], "skipped": x["skipped"],
                            "failed": x["failed"], "bytes": x["bytes"], "seconds": x["seconds"],
                            "retries": x["retries"], "finished_unix": x["finished_unix"],
                            "failures": x["failures"],
                        })
                    })
            });
            explain_missing(&mut v);
            explain_refused_keywords(&mut v);
            v
        })
        .buffered(jobs)
        .collect()
        .await;
    users.sort_by(|a, b| a.old_login.cmp(&b.old_login));
    let mut t = Totals {
        users: users.len(),
        ..Default::default()
    };
    for u in &users {
        t.users_ok += usize::from(u.status == "ok");
        t.errors += usize::from(u.status == "error");
        t.counts.add(&u.counts);
    }
    let f = &cfg.filters;
    Verdict {
        ok: users.iter().all(|u| u.status == "ok"),
        deep: opts.deep,
        generated_unix: crate::timefmt::now_unix(),
        seconds: started.elapsed().as_secs_f64(),
        old_server: format!("{}:{}", cfg.old.host, cfg.old.port),
        new_server: format!("{}:{}", cfg.new.host, cfg.new.port),
        users,
        totals: t,
        last_run_unix: last_run.as_ref().and_then(|r| {
            let s = r["started_unix"].as_u64()?;
            Some(s + r["seconds"].as_f64().unwrap_or(0.0) as u64)
        }),
        as_of_unix: opts.as_of_unix,
        filters: FiltersUsed {
            include_folders: f.include_folders.clone(),
            exclude_folders: f.exclude_folders.clone(),
            max_size: f.max_size,
            max_age_days: f.max_age_days,
            min_age_days: f.min_age_days,
            age_criteria: f.age_criteria(opts.as_of_unix),
            age_window: f.describe_age(opts.as_of_unix),
        },
        max_listed: tuning.max_listed,
    }
}

/// Each user's share of `[sync] memory_budget` (the users verified at once split it).
fn tuning(cfg: &Config, jobs: usize) -> Tuning {
    let at_once = jobs.min(cfg.users.len()).max(1) as u64;
    let share = (cfg.sync.memory_budget / at_once).max(1 << 20);
    Tuning::new(share, &cfg.state_dir)
}

/// What every user's comparison shares.
pub struct AccountCtx<'a> {
    pub cfg: &'a Config,
    pub deep: bool,
    /// The age filters' `UID SEARCH` criteria at the run's reference time.
    pub age: Option<String>,
    pub tuning: &'a Tuning,
}

async fn verify_user(
    ctx: &AccountCtx<'_>,
    u: &UserConfig,
    earlier: &std::collections::BTreeMap<String, String>,
) -> UserVerdict {
    let cfg = ctx.cfg;
    let started = std::time::Instant::now();
    let mut v = UserVerdict {
        old_login: u.old_login.clone(),
        new_login: u.new_login.clone(),
        ..Default::default()
    };
    let r = async {
        let (o, n) = tokio::join!(
            ImapSession::connect(&cfg.old, &u.old_login, u.old_password.as_ref(), true),
            ImapSession::connect(&cfg.new, &u.new_login, u.new_password.as_ref(), false),
        );
        let (mut old, mut new) = (o?, n?);
        let r = compare_account(ctx, &mut old, &mut new, earlier, &mut v).await;
        old.logout().await;
        new.logout().await;
        r
    }
    .await;
    v.seconds = started.elapsed().as_secs_f64();
    sum_up(&mut v);
    if let Err(e) = r {
        v.status = "error".into();
        v.error = Some(e.to_string());
        return v;
    }
    v.status = if v.problems() == 0 { "ok" } else { "differs" }.into();
    v
}

/// The user's counts from its folders (exact, whatever the lists kept).
fn sum_up(v: &mut UserVerdict) {
    let mut c = Counts {
        folders_excluded: v.excluded_folders.len(),
        excluded_messages: v
            .excluded_folders
            .iter()
            .map(|f| f.messages.unwrap_or(0) as usize)
            .sum(),
        ..Default::default()
    };
    for f in &v.folders {
        c.messages.add(&f.counts);
    }
    let count = |k: Kind| v.differences.iter().filter(|d| d.kind == k).count();
    c.folders_missing = count(Kind::FolderMissing);
    c.subscriptions_lost = count(Kind::Subscription);
    v.counts = c;
}

/// Compares every old folder, filling `v`: each folder the sync takes with its new folder (or,
/// placed nowhere, as missing message by message); those `[filters]` leave out are named and
/// counted.
pub async fn compare_account<O: MailStore, N: MailStore>(
    ctx: &AccountCtx<'_>,
    old: &mut O,
    new: &mut N,
    earlier: &std::collections::BTreeMap<String, String>,
    v: &mut UserVerdict,
) -> Result<()> {
    let crate::engine::FolderView {
        old_all,
        taken: old_folders,
        outside,
        new: new_folders,
        plan,
        ..
    } = crate::engine::folder_view(old, new, &ctx.cfg.filters, &ctx.cfg.folder_rules, earlier)
        .await?;
    v.outside_folders = outside
        .iter()
        .filter(|f| f.selectable())
        .map(|f| f.name.display())
        .collect();
    let old_all: Vec<_> = old_all
        .into_iter()
        .filter(|f| !outside.iter().any(|o| o.name == f.name))
        .collect();
    let targets: BTreeSet<&str> = plan.mappings.iter().map(|m| m.new.as_str()).collect();
    v.only_new_folders = new_folders
        .iter()
        .filter(|f| f.selectable() && !targets.contains(f.name.as_str()))
        .map(|f| f.name.display())
        .collect();
    v.excluded_folders = excluded(old, &old_all, &old_folders).await?;
    let mut room = ListRoom::new(ctx.tuning.max_listed);
    for m in &plan.mappings {
        let new_info = new_folders.iter().find(|f| f.name == m.new);
        if let Some(new_info) = new_info {
            let old_info = old_folders.iter().find(|f| f.name == m.old);
            if old_info.is_some_and(|f| f.subscribed) && !new_info.subscribed {
                v.differences.push(folder_difference(
                    Kind::Subscription,
                    &m.old,
                    format!(
                        "{} is subscribed on the old server, {} is not",
                        m.old, m.new
                    ),
                ));
            }
        }
        let r = compare_one(ctx, old, new, &m.old, new_info.map(|_| &m.new), &mut room).await?;
        if new_info.is_none() {
            let detail = format!(
                "{} has {} messages; {} does not exist",
                m.old, r.verdict.counts.old_messages, m.new
            );
            v.differences
                .push(folder_difference(Kind::FolderMissing, &m.old, detail));
        }
        record(v, r, m.new.display());
    }
    // An old folder the plan could not place has no new folder: all of it is missing. So has a
    // selectable old folder the plan left out for any other reason (never silently).
    let placed: BTreeSet<&str> = plan.mappings.iter().map(|m| m.old.as_str()).collect();
    let conflicts: BTreeSet<&str> = plan.conflicts.iter().map(|(n, _)| n.as_str()).collect();
    let unplaced = old_folders
        .iter()
        .filter(|f| f.selectable())
        .filter(|f| !placed.contains(f.name.as_str()) && !conflicts.contains(f.name.as_str()))
        .map(|f| {
            (
                f.name.clone(),
                "the folder plan gives it no new folder".to_string(),
            )
        });
    let nowhere: Vec<(MailboxPath, String)> =
        plan.conflicts.iter().cloned().chain(unplaced).collect();
    for (name, why) in &nowhere {
        let r = compare_one(ctx, old, new, name, None, &mut room).await?;
        let detail = format!(
            "{name} has {} messages and no new folder: {why}",
            r.verdict.counts.old_messages
        );
        v.differences
            .push(folder_difference(Kind::FolderMissing, name, detail));
        record(v, r, String::new());
    }
    v.differences_omitted = room.omitted.0;
    v.only_new_omitted = room.omitted.1;
    Ok(())
}

/// The old folders `[filters]` leave out (selectable ones, with their message counts).
async fn excluded<O: MailStore>(
    old: &mut O,
    all: &[crate::store::FolderInfo],
    taken: &[crate::store::FolderInfo],
) -> Result<Vec<ExcludedFolder>> {
    let names: Vec<MailboxPath> = all
        .iter()
        .filter(|f| f.selectable() && !taken.iter().any(|t| t.name == f.name))
        .map(|f| f.name.clone())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let st = old.status_many(&names).await?;
    Ok(names
        .iter()
        .zip(st)
        .map(|(n, s)| ExcludedFolder {
            name: n.display(),
            messages: s.ok().map(|s| s.messages),
        })
        .collect())
}

/// How many more message differences (and messages only on the new side) a user's lists take.
struct ListRoom {
    left: (usize, usize),
    omitted: (usize, usize),
}

impl ListRoom {
    fn new(max: usize) -> ListRoom {
        ListRoom {
            left: (max, max),
            omitted: (0, 0),
        }
    }

    fn take(&mut self, f: &FolderVerdict, listed: (usize, usize)) {
        let found = f.counts.found();
        self.left.0 -= listed.0;
        self.left.1 -= listed.1;
        self.omitted.0 += found.0 - listed.0;
        self.omitted.1 += found.1 - listed.1;
    }
}

async fn compare_one<O: MailStore, N: MailStore>(
    ctx: &AccountCtx<'_>,
    old: &mut O,
    new: &mut N,
    old_name: &MailboxPath,
    new_name: Option<&MailboxPath>,
    room: &mut ListRoom,
) -> Result<folder::FolderResult> {
    let c = folder::FolderCtx {
        old_name,
        new_name,
        deep: ctx.deep,
        max_size: ctx.cfg.filters.max_size,
        age: ctx.age.as_deref(),
        tuning: ctx.tuning,
        room: room.left,
    };
    let r = folder::compare(old, new, &c).await?;
    room.take(&r.verdict, (r.differences.len(), r.only_new.len()));
    Ok(r)
}

fn record(v: &mut UserVerdict, mut r: folder::FolderResult, new: String) {
    r.verdict.new = new;
    v.folders.push(r.verdict);
    v.differences.append(&mut r.differences);
    v.only_new_messages.append(&mut r.only_new);
}

fn folder_difference(kind: Kind, folder: &MailboxPath, detail: String) -> Difference {
    Difference {
        kind,
        folder: folder.display(),
        old_uid: None,
        new_uid: None,
        message_id: None,
        subject: None,
        size: None,
        detail,
    }
}

/// Body hashes per UID for [`compare_folder`] (`--deep`).
type Sums<'a> = (&'a HashMap<Uid, u128>, &'a HashMap<Uid, u128>);

/// Matches one folder's messages by fingerprint (pure; the rule and the listing order of the
/// streaming comparison, on lists in memory; unit-tested).
pub fn compare_folder(
    old_name: &str,
    new_name: &str,
    olds: &[Described],
    news: &[Described],
    sums: Option<Sums<'_>>,
) -> (FolderVerdict, Vec<Difference>, Vec<OnlyNew>) {
    let recs = |list: &[Described], sums: Option<&HashMap<Uid, u128>>| -> Vec<compact::Rec> {
        list.iter()
            .map(|d| compact::Rec {
                body: sums.and_then(|s| s.get(&d.uid).copied()).unwrap_or(0),
                ..compact::Rec::new(d.uid.get(), &d.fp, &d.flags)
            })
            .collect()
    };
    let (o, n) = (recs(olds, sums.map(|s| s.0)), recs(news, sums.map(|s| s.1)));
    let mut f = FolderVerdict {
        old: old_name.to_string(),
        new: new_name.to_string(),
        counts: MessageCounts {
            old_messages: olds.len(),
            new_messages: news.len(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut kept = folder::Kept::new((usize::MAX, usize::MAX));
    folder::join(&o, &n, sums.is_some(), &Default::default(), &mut |h| {
        f.counts.count(h.kind);
        kept.add(h);
    });
    let (diffs, only) = kept.finish();
    let by_uid = |l: &[Described]| -> HashMap<u32, Described> {
        l.iter().map(|d| (d.uid.get(), d.clone())).collect()
    };
    let (d, only) = folder::build(&f, &diffs, &only, &by_uid(olds), &by_uid(news));
    (f, d, only)
}

/// What `[filters]` left out of a comparison, in words, or `None` when nothing was:
/// `not compared, as [filters] leave them out: 3 messages over max_size (1000000 bytes), 2
/// messages outside the age window (received on or after 5-Feb-2024), 1 folder (Trash, 5
/// messages)`.
pub fn left_out(c: &Counts, folders: &[&ExcludedFolder], f: &FiltersUsed) -> Option<String> {
    if !c.left_out() {
        return None;
    }
    let mut parts = Vec::new();
    if c.messages.filtered_size > 0 {
        parts.push(format!(
            "{} messages over max_size ({} bytes)",
            c.messages.filtered_size,
            f.max_size.unwrap_or(0)
        ));
    }
    if c.messages.filtered_age > 0 {
        parts.push(format!(
            "{} messages outside the age window ({})",
            c.messages.filtered_age,
            f.age_window.as_deref().unwrap_or("")
        ));
    }
    if c.folders_excluded > 0 {
        let names: Vec<String> = folders
            .iter()
            .take(10)
            .map(|x| match x.messages {
                Some(n) => format!("{} ({n} messages)", x.name),
                None => x.name.clone(),
            })
            .collect();
        let more = folders.len().saturating_sub(10);
        parts.push(format!(
            "{} folders with {} messages{}{}",
            c.folders_excluded,
            c.excluded_messages,
            if names.is_empty() {
                String::new()
            } else {
                format!(": {}", names.join(", "))
            },
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    Some(format!(
        "not compared, as [filters] leave them out: {}",
        parts.join("; ")
    ))
}

/// Message differences and folder-level ones found, listed or not.
fn shown_of(u: &UserVerdict) -> (usize, usize) {
    (
        u.differences.len(),
        u.differences.len() + u.differences_omitted,
    )
}

/// The fix for `n` altered copies, in one line (docs/verify.md, "Altered copies").
pub fn altered_hint(n: usize) -> String {
    format!(
        "FIX: {n} copies have their 8-bit header bytes replaced by X by the new server (Cyrus: munge8bit). \
         They are there and are not copied again. For identical copies: set munge8bit: no on the new server, \
         delete those copies there (folder and new UID in --json), move the state directory aside and sync again \
         (docs/verify.md, Altered copies)"
    )
}

/// One line per user for people, then the differences (at most 20 per user), then what
/// `[filters]` left out, then the total.
pub fn render(v: &Verdict) -> String {
    let mut s = String::new();
    for u in &v.users {
        let word = match u.status.as_str() {
            "ok" => "OK     ",
            "differs" => "DIFFERS",
            _ => "ERROR  ",
        };
        let mut parts = vec![format!("{} messages", u.counts.messages.old_messages)];
        for (n, what) in [
            (u.counts.messages.missing, "missing"),
            (u.counts.folders_missing, "folders missing"),
            (u.counts.messages.flags_differ, "with other flags"),
            (
                u.counts.messages.keywords_refused,
                "without keywords the new folder does not take",
            ),
            (u.counts.messages.body_differs, "with other content"),
            (u.counts.messages.altered, "altered by the new server"),
            (u.counts.messages.duplicates, "duplicates"),
            (u.counts.subscriptions_lost, "subscriptions lost"),
        ] {
            if n > 0 || what == "missing" {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!(
            "{} only on the new server",
            u.counts.messages.only_new
        ));
        s.push_str(&format!(
            "{word} {} -> {}: {}{}\n",
            u.old_login,
            u.new_login,
            parts.join(", "),
            u.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        for d in u.differences.iter().take(20) {
            s.push_str(&format!(
                "          {}: {}{}{}{}\n",
                d.folder,
                d.kind.describe(),
                d.old_uid
                    .map(|x| format!(", old UID {x}"))
                    .unwrap_or_default(),
                d.subject
                    .as_ref()
                    .map(|x| format!(", \"{x}\""))
                    .unwrap_or_default(),
                if d.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", d.detail)
                }
            ));
        }
        let (listed, found) = shown_of(u);
        if found > 20.min(listed) {
            s.push_str(&format!(
                "          ... and {} more ({} listed in --json and --html{})\n",
                found - listed.min(20),
                listed,
                if listed < found {
                    format!(", the first {} of each user", v.max_listed)
                } else {
                    String::new()
                }
            ));
        }
        if u.counts.messages.altered > 0 {
            s.push_str(&format!(
                "          {}\n",
                altered_hint(u.counts.messages.altered)
            ));
        }
        let excluded: Vec<&ExcludedFolder> = u.excluded_folders.iter().collect();
        if let Some(l) = left_out(&u.counts, &excluded, &v.filters) {
            s.push_str(&format!("          {l}\n"));
        }
        if !u.outside_folders.is_empty() {
            s.push_str(&format!(
                "          not migrated, not compared (other users' or shared folders): {}\n",
                u.outside_folders.join(", ")
            ));
        }
    }
    let t = &v.totals;
    s.push_str(&format!(
        "{}: {} of {} users OK, {} messages on the old server compared, {} missing, {} changed, {} duplicates, {} only on the new server{}\n",
        if v.ok { "VERIFIED" } else { "NOT VERIFIED" },
        t.users_ok,
        t.users,
        t.counts.messages.old_messages,
        t.counts.messages.missing,
        t.counts.changed(),
        t.counts.messages.duplicates,
        t.counts.messages.only_new,
        if v.deep { " (deep: message contents compared)" } else { "" }
    ));
    if let Some(l) = left_out(&t.counts, &[], &v.filters) {
        s.push_str(&format!(
            "{}: {l} (age window as of {})\n",
            if v.ok {
                "VERIFIED ONLY WHAT WAS COMPARED"
            } else {
                "ALSO"
            },
            crate::timefmt::rfc3339(v.as_of_unix)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;

    fn d(uid: u32, id: &str, flags: &[&str]) -> Described {
        Described {
            uid: Uid::new(uid).unwrap(),
            fp: Fingerprint {
                message_id: Some(id.into()),
                size: 100,
                internaldate: if uid % 2 == 0 {
                    "01-Jan-2024 01:00:00 +0100".into()
                } else {
                    " 1-Jan-2024 00:00:00 +0000".into()
                },
                header_hash: id.into(),
                v: 1,
                raw_hash: None,
                munged: None,
            },
            flags: flags.iter().map(|f| f.to_string()).collect(),
            subject: Some(format!("subject {id}")),
        }
    }

    #[test]
    fn missing_changed_duplicate_and_only_new() {
        let olds = [
            d(1, "a", &["\\Seen"]),
            d(2, "b", &[]),
            d(3, "b", &[]),
            d(4, "c", &[]),
            d(5, "e", &[]),
        ];
        let news = [
            d(10, "a", &["\\Seen", "\\Recent"]),
            d(11, "b", &["\\Flagged"]),
            d(12, "z", &[]),
            d(13, "e", &[]),
            d(14, "e", &[]),
        ];
        let (f, diffs, only) = compare_folder("INBOX", "INBOX", &olds, &news, None);
        // Two old "b": one copy only, so one is missing; c is missing.
        let kinds: Vec<(Kind, Option<u32>, Option<u32>)> = diffs
            .iter()
            .map(|x| (x.kind, x.old_uid, x.new_uid))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Flags, Some(2), Some(11)),
                (Kind::Missing, Some(3), None),
                (Kind::Missing, Some(4), None),
                (Kind::Duplicate, None, Some(14)),
            ]
        );
        assert_eq!(diffs[0].detail, "added \\flagged");
        assert_eq!(diffs[1].subject.as_deref(), Some("subject b"));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].new_uid, 12);
        assert_eq!(
            (
                f.counts.missing,
                f.counts.flags_differ,
                f.counts.duplicates,
                f.counts.only_new
            ),
            (2, 1, 1, 1)
        );
    }

    /// A message of `header` and `body` as listed (fingerprint from the header), with its body
    /// hash as `--deep` takes it.
    fn real(uid: u32, header: &[u8], body: &[u8]) -> (Described, u128) {
        let whole = [header, body].concat();
        let d = Described {
            uid: Uid::new(uid).unwrap(),
            fp: Fingerprint::of_header(header, whole.len() as u32, "01-Jan-2024 00:00:00 +0000"),
            flags: vec!["\\Seen".into()],
            subject: crate::fingerprint::subject(header),
        };
        (d, compact::body_hash(&whole))
    }

    /// A copy whose 8-bit header bytes the new server replaced by X is altered (a problem, not
    /// missing and not a duplicate), also with `--deep` (not "content differs"), unless its body
    /// really differs; a 7-bit message's identical copy is fine; a second munged copy is a
    /// duplicate.
    #[test]
    fn munged_copies_are_altered_not_missing() {
        let utf8 = "Message-ID: <u@x>\r\nSubject: caf\u{e9}\r\n\r\n".as_bytes();
        let latin1 = b"Message-ID: <l@x>\r\nFrom: J\xfcrgen <j@x>\r\n\r\n";
        let plain = b"Message-ID: <p@x>\r\nSubject: plain\r\n\r\n";
        let body: &[u8] = b"caf\xc3\xa9 in the body stays\r\n";
        let munged = |h: &[u8]| crate::fingerprint::munge_8bit(h);
        let olds = [
            real(1, utf8, body),
            real(2, latin1, body),
            real(3, plain, body),
        ];
        let news = [
            real(11, &munged(utf8), body),
            real(12, &munged(latin1), b"another body!!!!!!!!!!!!!!!!!!!!\r\n"),
            real(13, plain, body),
            real(14, &munged(utf8), body),
        ];
        let (o, n): (Vec<Described>, Vec<Described>) = (
            olds.iter().map(|x| x.0.clone()).collect(),
            news.iter().map(|x| x.0.clone()).collect(),
        );
        let sums = |l: &[(Described, u128)]| -> HashMap<Uid, u128> {
            l.iter().map(|(d, h)| (d.uid, *h)).collect()
        };
        let (os, ns) = (sums(&olds), sums(&news));
        for deep in [false, true] {
            let (f, diffs, only) =
                compare_folder("INBOX", "INBOX", &o, &n, deep.then_some((&os, &ns)));
            let kinds: Vec<(Kind, Option<u32>, Option<u32>)> = diffs
                .iter()
                .map(|x| (x.kind, x.old_uid, x.new_uid))
                .collect();
            let mut want = vec![
                (Kind::Altered, Some(1), Some(11)),
                (Kind::Altered, Some(2), Some(12)),
            ];
            if deep {
                want.push((Kind::Body, Some(2), Some(12)));
            }
            want.push((Kind::Duplicate, None, Some(14)));
            assert_eq!(kinds, want, "deep {deep}");
            assert_eq!(
                (
                    f.counts.missing,
                    f.counts.altered,
                    f.counts.body_differs,
                    f.counts.duplicates,
                    only.len()
                ),
                (0, 2, usize::from(deep), 1, 0),
                "deep {deep}"
            );
            assert!(
                diffs[0].detail.contains("INBOX UID 11"),
                "{}",
                diffs[0].detail
            );
            assert!(
                diffs[0].detail.contains("munge8bit: no"),
                "{}",
                diffs[0].detail
            );
        }
        // The verdict is not OK: altered copies are problems (exit 7).
        let (f, _, _) = compare_folder("INBOX", "INBOX", &o, &n, None);
        let mut u = UserVerdict {
            folders: vec![f],
            ..Default::default()
        };
        sum_up(&mut u);
        assert_eq!((u.counts.messages.altered, u.problems()), (2, 3));
        let v = Verdict {
            users: vec![UserVerdict {
                status: "differs".into(),
                ..u
            }],
            ..Default::default()
        };
        assert_eq!(v.exit_code(), crate::error::exit::VERIFY_FAILED);
        assert!(render(&v).contains("FIX: 2 copies have their 8-bit header bytes replaced by X"));
    }

    #[test]
    fn deep_finds_other_content() {
        let olds = [d(1, "a", &[])];
        let news = [d(7, "a", &[])];
        let os: HashMap<Uid, u128> = [(Uid::new(1).unwrap(), 0xaaaa)].into();
        let ns: HashMap<Uid, u128> = [(Uid::new(7).unwrap(), 0xbbbb)].into();
        let (f, diffs, _) = compare_folder("INBOX", "INBOX", &olds, &news, Some((&os, &ns)));
        assert_eq!(f.counts.body_differs, 1);
        assert_eq!(diffs[0].kind, Kind::Body);
        let (f, _, _) = compare_folder("INBOX", "INBOX", &olds, &news, None);
        assert_eq!(f.counts.body_differs, 0, "headers alone cannot see it");
    }
}
