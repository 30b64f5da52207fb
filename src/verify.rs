//! Proof that nothing is missing: compares old and new per user and folder by content, not by
//! the UID maps (which could be wrong).
//!
//! Every message of an old folder is matched, as a multiset, by fingerprint (Message-ID,
//! RFC822.SIZE, INTERNALDATE and a hash of the header block; `BODY.PEEK[HEADER]` only, so it is
//! fast) against the mapped new folder. Old messages without a match are **missing**; matched
//! copies whose flags or keywords differ are **changed**; with `--deep` a SHA-256 of each whole
//! message is compared too (**body differs**). New messages that match an old fingerprint
//! beyond its count are **duplicates** (an exactly-once failure); new messages that match none
//! are **only on the new side** (mail delivered there after the cutover), listed and never an
//! error. Folders missing on the new side and lost subscriptions are differences; folders only
//! on the new side are listed. The cutover's last step, and `imapshift verify`.

use crate::config::{Config, UserConfig};
use crate::error::{exit, Result};
use crate::imap::ImapSession;
use crate::store::{Described, MailStore};
use crate::types::Uid;
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
    /// A copy's bytes differ although its header block matches (`--deep`).
    Body,
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
            Kind::Body => "content differs",
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

/// One folder's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderVerdict {
    pub old: String,
    pub new: String,
    pub old_messages: usize,
    pub new_messages: usize,
    pub missing: usize,
    pub flags_differ: usize,
    pub body_differs: usize,
    pub duplicates: usize,
    pub only_new: usize,
    /// Old messages left out by `[filters]` (size, age), as the sync leaves them out.
    pub filtered: usize,
    /// The old folder has no counterpart on the new server.
    pub new_folder_missing: bool,
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
    pub differences: Vec<Difference>,
    pub only_new_messages: Vec<OnlyNew>,
    /// This user's entry of the last sync run report, if the state directory has one.
    pub last_run: Option<serde_json::Value>,
}

impl UserVerdict {
    /// Differences that count (everything but mail only on the new side).
    pub fn problems(&self) -> usize {
        self.differences.len()
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
    pub old_messages: usize,
    pub new_messages: usize,
    pub missing: usize,
    pub flags_differ: usize,
    pub body_differs: usize,
    pub duplicates: usize,
    pub folders_missing: usize,
    pub subscriptions_lost: usize,
    pub only_new: usize,
    /// Old messages left out by `[filters]`.
    pub filtered: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.old_messages += o.old_messages;
        self.new_messages += o.new_messages;
        self.missing += o.missing;
        self.flags_differ += o.flags_differ;
        self.body_differs += o.body_differs;
        self.duplicates += o.duplicates;
        self.folders_missing += o.folders_missing;
        self.subscriptions_lost += o.subscriptions_lost;
        self.only_new += o.only_new;
        self.filtered += o.filtered;
    }

    /// Copies whose flags, content or subscription differ.
    pub fn changed(&self) -> usize {
        self.flags_differ + self.body_differs + self.subscriptions_lost
    }
}

impl Verdict {
    pub fn missing(&self) -> usize {
        self.totals.counts.missing
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

/// Compares every user (in parallel, `jobs` at a time, within the servers' connection caps).
pub async fn verify(cfg: &Config, deep: bool) -> Verdict {
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
    let mut users: Vec<UserVerdict> = futures::stream::iter(cfg.users.iter())
        .map(|u| async move {
            let _o = caps.0.acquire().await.expect("never closed");
            let _n = caps.1.acquire().await.expect("never closed");
            let earlier = match state {
                Some(s) => crate::engine::earlier_targets(s, &crate::runner::account_key(cfg, u))
                    .unwrap_or_default(),
                None => Default::default(),
            };
            let mut v = verify_user(cfg, u, deep, &earlier).await;
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
            v
        })
        .buffered(cfg.sync.jobs.max(1))
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
    Verdict {
        ok: users.iter().all(|u| u.status == "ok"),
        deep,
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
    }
}

async fn verify_user(
    cfg: &Config,
    u: &UserConfig,
    deep: bool,
    earlier: &std::collections::BTreeMap<String, String>,
) -> UserVerdict {
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
        let r = compare_account(cfg, &mut old, &mut new, deep, earlier, &mut v).await;
        old.logout().await;
        new.logout().await;
        r
    }
    .await;
    v.seconds = started.elapsed().as_secs_f64();
    if let Err(e) = r {
        v.status = "error".into();
        v.error = Some(e.to_string());
        return v;
    }
    for f in &v.folders {
        v.counts.old_messages += f.old_messages;
        v.counts.new_messages += f.new_messages;
        v.counts.filtered += f.filtered;
    }
    let count = |k: Kind| v.differences.iter().filter(|d| d.kind == k).count();
    v.counts.missing = count(Kind::Missing);
    v.counts.flags_differ = count(Kind::Flags);
    v.counts.body_differs = count(Kind::Body);
    v.counts.duplicates = count(Kind::Duplicate);
    v.counts.folders_missing = count(Kind::FolderMissing);
    v.counts.subscriptions_lost = count(Kind::Subscription);
    v.counts.only_new = v.only_new_messages.len();
    v.status = if v.problems() == 0 { "ok" } else { "differs" }.into();
    v
}

/// Compares every folder the sync takes, filling `v`.
pub async fn compare_account<O: MailStore, N: MailStore>(
    cfg: &Config,
    old: &mut O,
    new: &mut N,
    deep: bool,
    earlier: &std::collections::BTreeMap<String, String>,
    v: &mut UserVerdict,
) -> Result<()> {
    let crate::engine::FolderView {
        taken: old_folders,
        new: new_folders,
        plan,
        ..
    } = crate::engine::folder_view(old, new, &cfg.filters, earlier).await?;
    let targets: BTreeSet<&str> = plan.mappings.iter().map(|m| m.new.as_str()).collect();
    v.only_new_folders = new_folders
        .iter()
        .filter(|f| f.selectable() && !targets.contains(f.name.as_str()))
        .map(|f| f.name.display())
        .collect();
    for m in &plan.mappings {
        let st = old.examine(&m.old).await?;
        let mut olds = if st.messages == 0 {
            Vec::new()
        } else {
            old.fetch_described(Uid::MIN).await?
        };
        // What the sync leaves out ([filters] size and age) is not expected on the new server.
        let listed = olds.len();
        if let Some(max) = cfg.filters.max_size {
            olds.retain(|d| u64::from(d.fp.size) <= max);
        }
        if !olds.is_empty() {
            if let Some(c) = cfg.filters.age_criteria(crate::timefmt::now_unix()) {
                let allowed: BTreeSet<Uid> = old.uid_search(&c).await?.into_iter().collect();
                olds.retain(|d| allowed.contains(&d.uid));
            }
        }
        let filtered = listed - olds.len();
        let new_info = new_folders.iter().find(|f| f.name == m.new);
        let Some(new_info) = new_info else {
            let detail = format!(
                "{} has {} messages; {} does not exist",
                m.old,
                olds.len(),
                m.new
            );
            folder_missing(v, &m.old, &m.new.display(), filtered, &olds, detail);
            continue;
        };
        let old_info = old_folders.iter().find(|f| f.name == m.old);
        if old_info.is_some_and(|f| f.subscribed) && !new_info.subscribed {
            v.differences.push(Difference {
                kind: Kind::Subscription,
                folder: m.old.display(),
                old_uid: None,
                new_uid: None,
                message_id: None,
                subject: None,
                size: None,
                detail: format!(
                    "{} is subscribed on the old server, {} is not",
                    m.old, m.new
                ),
            });
        }
        let st = new.examine(&m.new).await?;
        let news = if st.messages == 0 {
            Vec::new()
        } else {
            new.fetch_described(Uid::MIN).await?
        };
        let (old_sums, new_sums) = if deep {
            (body_sums(old, &olds).await?, body_sums(new, &news).await?)
        } else {
            (HashMap::new(), HashMap::new())
        };
        let (f, mut d, mut only) = compare_folder(
            &m.old.display(),
            &m.new.display(),
            &olds,
            &news,
            deep.then_some((&old_sums, &new_sums)),
        );
        v.folders.push(FolderVerdict { filtered, ..f });
        v.differences.append(&mut d);
        v.only_new_messages.append(&mut only);
    }
    // An old folder the plan could not place has no new folder: all of it is missing.
    for (name, why) in &plan.conflicts {
        let st = old.examine(name).await?;
        let olds = if st.messages == 0 {
            Vec::new()
        } else {
            old.fetch_described(Uid::MIN).await?
        };
        let detail = format!(
            "{name} has {} messages and no new folder: {why}",
            olds.len()
        );
        folder_missing(v, name, "", 0, &olds, detail);
    }
    Ok(())
}

/// Records an old folder without a new folder: the folder and each of its messages missing.
fn folder_missing(
    v: &mut UserVerdict,
    old: &crate::types::MailboxPath,
    new: &str,
    filtered: usize,
    olds: &[Described],
    detail: String,
) {
    v.folders.push(FolderVerdict {
        old: old.display(),
        new: new.to_string(),
        old_messages: olds.len(),
        missing: olds.len(),
        filtered,
        new_folder_missing: true,
        ..Default::default()
    });
    v.differences.push(Difference {
        kind: Kind::FolderMissing,
        folder: old.display(),
        old_uid: None,
        new_uid: None,
        message_id: None,
        subject: None,
        size: None,
        detail,
    });
    for o in olds {
        v.differences.push(diff(
            Kind::Missing,
            &old.display(),
            Some(o),
            None,
            String::new(),
        ));
    }
}

/// SHA-256 of every listed message, fetched in batches of up to 4 MiB.
async fn body_sums<S: MailStore>(s: &mut S, items: &[Described]) -> Result<HashMap<Uid, String>> {
    let mut out = HashMap::new();
    let mut batch: Vec<Uid> = Vec::new();
    let mut bytes = 0u64;
    for (i, d) in items.iter().enumerate() {
        batch.push(d.uid);
        bytes += u64::from(d.fp.size);
        if bytes >= 4 << 20 || batch.len() >= 500 || i + 1 == items.len() {
            for m in s.fetch_messages(&batch).await? {
                out.insert(m.uid, crate::fingerprint::sha256_hex(&m.body));
            }
            batch.clear();
            bytes = 0;
        }
    }
    Ok(out)
}

fn diff(
    kind: Kind,
    folder: &str,
    o: Option<&Described>,
    n: Option<&Described>,
    detail: String,
) -> Difference {
    let any = o.or(n);
    Difference {
        kind,
        folder: folder.to_string(),
        old_uid: o.map(|d| d.uid.get()),
        new_uid: n.map(|d| d.uid.get()),
        message_id: any.and_then(|d| d.fp.message_id.clone()),
        subject: any.and_then(|d| d.subject.clone()),
        size: any.map(|d| d.fp.size),
        detail,
    }
}

type Sums<'a> = (&'a HashMap<Uid, String>, &'a HashMap<Uid, String>);

/// Matches one folder's messages by fingerprint (pure; unit-tested).
pub fn compare_folder(
    old_name: &str,
    new_name: &str,
    olds: &[Described],
    news: &[Described],
    sums: Option<Sums<'_>>,
) -> (FolderVerdict, Vec<Difference>, Vec<OnlyNew>) {
    // The one matching rule of the engine: INTERNALDATE as an instant, line ends unified, a size
    // that line-end rewriting explains.
    let paired = crate::fingerprint::pair_up(
        &olds.iter().map(|o| &o.fp).collect::<Vec<_>>(),
        &news.iter().map(|n| &n.fp).collect::<Vec<_>>(),
    );
    let norm = |f: &[String]| -> BTreeSet<String> {
        f.iter()
            .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
            .map(|x| x.to_ascii_lowercase())
            .collect()
    };
    let mut f = FolderVerdict {
        old: old_name.to_string(),
        new: new_name.to_string(),
        old_messages: olds.len(),
        new_messages: news.len(),
        ..Default::default()
    };
    let mut diffs = Vec::new();
    let mut used = vec![false; news.len()];
    for (o, p) in olds.iter().zip(&paired) {
        let Some(n) = p.map(|j| {
            used[j] = true;
            &news[j]
        }) else {
            f.missing += 1;
            diffs.push(diff(Kind::Missing, old_name, Some(o), None, String::new()));
            continue;
        };
        let (of, nf) = (norm(&o.flags), norm(&n.flags));
        if of != nf {
            f.flags_differ += 1;
            let gone: Vec<&String> = of.difference(&nf).collect();
            let added: Vec<&String> = nf.difference(&of).collect();
            let mut detail = Vec::new();
            if !gone.is_empty() {
                detail.push(format!("removed {}", join(&gone)));
            }
            if !added.is_empty() {
                detail.push(format!("added {}", join(&added)));
            }
            diffs.push(diff(
                Kind::Flags,
                old_name,
                Some(o),
                Some(n),
                detail.join("; "),
            ));
        }
        if let Some((os, ns)) = sums {
            if let (Some(a), Some(b)) = (os.get(&o.uid), ns.get(&n.uid)) {
                if a != b {
                    f.body_differs += 1;
                    diffs.push(diff(
                        Kind::Body,
                        old_name,
                        Some(o),
                        Some(n),
                        format!(
                            "SHA-256 {}… on the old server, {}… on the new",
                            &a[..12],
                            &b[..12]
                        ),
                    ));
                }
            }
        }
    }
    let old_keys: std::collections::HashSet<crate::fingerprint::MatchKey> =
        olds.iter().map(|o| o.fp.match_key()).collect();
    let left: Vec<&Described> = news
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(n, _)| n)
        .collect();
    let mut only = Vec::new();
    for n in left {
        if old_keys.contains(&n.fp.match_key()) {
            f.duplicates += 1;
            diffs.push(diff(
                Kind::Duplicate,
                new_name,
                None,
                Some(n),
                "one more copy than on the old server".into(),
            ));
        } else {
            f.only_new += 1;
            only.push(OnlyNew {
                folder: new_name.to_string(),
                new_uid: n.uid.get(),
                message_id: n.fp.message_id.clone(),
                subject: n.subject.clone(),
                size: n.fp.size,
            });
        }
    }
    (f, diffs, only)
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// One line per user for people, then the differences (at most 20 per user).
pub fn render(v: &Verdict) -> String {
    let mut s = String::new();
    for u in &v.users {
        let word = match u.status.as_str() {
            "ok" => "OK     ",
            "differs" => "DIFFERS",
            _ => "ERROR  ",
        };
        let mut parts = vec![format!("{} messages", u.counts.old_messages)];
        for (n, what) in [
            (u.counts.missing, "missing"),
            (u.counts.folders_missing, "folders missing"),
            (u.counts.flags_differ, "with other flags"),
            (u.counts.body_differs, "with other content"),
            (u.counts.duplicates, "duplicates"),
            (u.counts.subscriptions_lost, "subscriptions lost"),
        ] {
            if n > 0 || what == "missing" {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!("{} only on the new server", u.counts.only_new));
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
        if u.differences.len() > 20 {
            s.push_str(&format!(
                "          ... and {} more (see --json or --html)\n",
                u.differences.len() - 20
            ));
        }
    }
    let t = &v.totals;
    s.push_str(&format!(
        "{}: {} of {} users OK, {} messages on the old server, {} missing, {} changed, {} duplicates, {} only on the new server{}\n",
        if v.ok { "VERIFIED" } else { "NOT VERIFIED" },
        t.users_ok,
        t.users,
        t.counts.old_messages,
        t.counts.missing,
        t.counts.changed(),
        t.counts.duplicates,
        t.counts.only_new,
        if v.deep { " (deep: message contents compared)" } else { "" }
    ));
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
            (f.missing, f.flags_differ, f.duplicates, f.only_new),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn deep_finds_other_content() {
        let olds = [d(1, "a", &[])];
        let news = [d(7, "a", &[])];
        let os: HashMap<Uid, String> = [(Uid::new(1).unwrap(), "aaaaaaaaaaaaaaaa".into())].into();
        let ns: HashMap<Uid, String> = [(Uid::new(7).unwrap(), "bbbbbbbbbbbbbbbb".into())].into();
        let (f, diffs, _) = compare_folder("INBOX", "INBOX", &olds, &news, Some((&os, &ns)));
        assert_eq!(f.body_differs, 1);
        assert_eq!(diffs[0].kind, Kind::Body);
        let (f, _, _) = compare_folder("INBOX", "INBOX", &olds, &news, None);
        assert_eq!(f.body_differs, 0, "headers alone cannot see it");
    }
}
