//! Proof that nothing is missing: compares old and new per user and folder by content, not by
//! the UID maps (which could be wrong).
//!
//! Every message of an old folder is matched, as a multiset, by fingerprint (Message-ID,
//! RFC822.SIZE, INTERNALDATE and a hash of the header block; `BODY.PEEK[HEADER]` only) against
//! the mapped new folder. Old messages without a match are **missing**; matched copies whose
//! flags differ are **changed**; new messages without an old match are **only on the new side**
//! (mail delivered there after the cutover), listed and never an error. The cutover's last
//! step, and the base of `imapshift verify`.

use crate::config::{Config, UserConfig};
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::imap::ImapSession;
use crate::plan::plan_folders;
use crate::store::MailStore;
use crate::types::Uid;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One folder's comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderVerdict {
    pub old: String,
    pub new: String,
    pub old_messages: usize,
    pub new_messages: usize,
    /// Old UIDs of messages not on the new server.
    pub missing: Vec<u32>,
    /// (old UID, new UID) of copies whose flags or keywords differ.
    pub flags_differ: Vec<(u32, u32)>,
    /// New UIDs of messages the old folder does not have (not an error).
    pub only_new: Vec<u32>,
}

/// One user's comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UserVerdict {
    pub old_login: String,
    pub new_login: String,
    /// `ok`, `differs` or `error` (the comparison could not be made).
    pub status: String,
    pub error: Option<String>,
    pub missing: usize,
    pub flags_differ: usize,
    pub only_new: usize,
    pub folders: Vec<FolderVerdict>,
}

/// The whole comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub ok: bool,
    pub users: Vec<UserVerdict>,
}

impl Verdict {
    pub fn missing(&self) -> usize {
        self.users.iter().map(|u| u.missing).sum()
    }
}

/// Compares every user (in parallel, `jobs` at a time).
pub async fn verify(cfg: &Config) -> Verdict {
    let users: Vec<UserVerdict> = futures::stream::iter(cfg.users.iter())
        .map(|u| verify_user(cfg, u))
        .buffered(cfg.sync.jobs.max(1))
        .collect()
        .await;
    Verdict {
        ok: users.iter().all(|u| u.status == "ok"),
        users,
    }
}

async fn verify_user(cfg: &Config, u: &UserConfig) -> UserVerdict {
    let mut v = UserVerdict {
        old_login: u.old_login.clone(),
        new_login: u.new_login.clone(),
        ..Default::default()
    };
    let r = async {
        let mut old =
            ImapSession::connect(&cfg.old, &u.old_login, u.old_password.as_ref(), true).await?;
        let mut new =
            ImapSession::connect(&cfg.new, &u.new_login, u.new_password.as_ref(), false).await?;
        let r = compare_account(cfg, &mut old, &mut new).await;
        old.logout().await;
        new.logout().await;
        r
    }
    .await;
    match r {
        Ok(folders) => {
            v.missing = folders.iter().map(|f| f.missing.len()).sum();
            v.flags_differ = folders.iter().map(|f| f.flags_differ.len()).sum();
            v.only_new = folders.iter().map(|f| f.only_new.len()).sum();
            v.status = if v.missing + v.flags_differ == 0 {
                "ok"
            } else {
                "differs"
            }
            .into();
            v.folders = folders;
        }
        Err(e) => {
            v.status = "error".into();
            v.error = Some(e.to_string());
        }
    }
    v
}

/// Compares every folder the sync takes.
pub async fn compare_account<O: MailStore, N: MailStore>(
    cfg: &Config,
    old: &mut O,
    new: &mut N,
) -> Result<Vec<FolderVerdict>> {
    let old_folders: Vec<_> = old
        .list_folders()
        .await?
        .into_iter()
        .filter(|f| cfg.filters.folder_allowed(f))
        .collect();
    let new_folders = new.list_folders().await?;
    let present: BTreeSet<&str> = new_folders.iter().map(|f| f.name.as_str()).collect();
    let plan = plan_folders(&old_folders, &new_folders);
    let mut out = Vec::new();
    for m in &plan.mappings {
        let st = old.examine(&m.old).await?;
        let olds = if st.messages == 0 {
            Vec::new()
        } else {
            old.fetch_fingerprints(Uid::MIN).await?
        };
        let news = if present.contains(m.new.as_str()) {
            let st = new.examine(&m.new).await?;
            if st.messages == 0 {
                Vec::new()
            } else {
                new.fetch_fingerprints(Uid::MIN).await?
            }
        } else {
            Vec::new()
        };
        out.push(compare_folder(
            &m.old.display(),
            &m.new.display(),
            &olds,
            &news,
        ));
    }
    Ok(out)
}

type Listed = (Uid, Fingerprint, Vec<String>);

/// Matches one folder's messages by fingerprint (pure; unit-tested).
pub fn compare_folder(
    old_name: &str,
    new_name: &str,
    olds: &[Listed],
    news: &[Listed],
) -> FolderVerdict {
    let mut pool: HashMap<&Fingerprint, std::collections::VecDeque<&Listed>> = HashMap::new();
    for n in news {
        pool.entry(&n.1).or_default().push_back(n);
    }
    let norm = |f: &[String]| -> BTreeSet<String> {
        f.iter()
            .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
            .map(|x| x.to_ascii_lowercase())
            .collect()
    };
    let mut v = FolderVerdict {
        old: old_name.to_string(),
        new: new_name.to_string(),
        old_messages: olds.len(),
        new_messages: news.len(),
        ..Default::default()
    };
    for o in olds {
        match pool.get_mut(&o.1).and_then(|q| q.pop_front()) {
            None => v.missing.push(o.0.get()),
            Some(n) => {
                if norm(&o.2) != norm(&n.2) {
                    v.flags_differ.push((o.0.get(), n.0.get()));
                }
            }
        }
    }
    let mut left: Vec<u32> = pool.values().flatten().map(|n| n.0.get()).collect();
    left.sort_unstable();
    v.only_new = left;
    v
}

/// One line per user for people.
pub fn render(v: &Verdict) -> String {
    let mut s = String::new();
    for u in &v.users {
        let word = match u.status.as_str() {
            "ok" => "OK     ",
            "differs" => "DIFFERS",
            _ => "ERROR  ",
        };
        s.push_str(&format!(
            "{word} {} -> {}: {} folders, {} missing, {} with other flags, {} only on the new server{}\n",
            u.old_login,
            u.new_login,
            u.folders.len(),
            u.missing,
            u.flags_differ,
            u.only_new,
            u.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ));
        for f in &u.folders {
            if !f.missing.is_empty() {
                s.push_str(&format!(
                    "        {}: missing old UIDs {:?}\n",
                    f.old,
                    &f.missing[..f.missing.len().min(20)]
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(uid: u32, id: &str, flags: &[&str]) -> Listed {
        (
            Uid::new(uid).unwrap(),
            Fingerprint {
                message_id: Some(id.into()),
                size: 100,
                internaldate: "1-Jan-2024 00:00:00 +0000".into(),
                header_hash: id.into(),
            },
            flags.iter().map(|f| f.to_string()).collect(),
        )
    }

    #[test]
    fn missing_changed_and_only_new() {
        let olds = [
            l(1, "a", &["\\Seen"]),
            l(2, "b", &[]),
            l(3, "b", &[]),
            l(4, "c", &[]),
        ];
        let news = [
            l(10, "a", &["\\Seen", "\\Recent"]),
            l(11, "b", &["\\Flagged"]),
            l(12, "z", &[]),
        ];
        let v = compare_folder("INBOX", "INBOX", &olds, &news);
        // Two old "b": one copy only, so one is missing; c is missing.
        assert_eq!(v.missing, vec![3, 4]);
        assert_eq!(v.flags_differ, vec![(2, 11)]);
        assert_eq!(v.only_new, vec![12]);
        assert_eq!((v.old_messages, v.new_messages), (4, 3));
    }
}
