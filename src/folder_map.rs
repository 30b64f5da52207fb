//! `imapshift folders`: where every old folder goes, and why, before anything is copied.
//!
//! Between servers of different software a folder's new name is the result of several rules
//! (the personal-namespace prefixes, the delimiters, special uses by attribute or by name,
//! collisions, earlier runs). An admin must see the outcome per user before the first copy, the
//! way imapsync users check `--justfolders`: this command logs in, plans exactly as the sync
//! does (with the sync's memory of earlier runs) and prints each old folder with its new folder
//! and the reason; folders of other users' or shared namespaces and those `[filters]` leave out
//! are listed as not migrated. It changes nothing anywhere.

use crate::config::{Config, UserConfig};
use crate::imap::ImapSession;
use crate::store::MailStore;
use serde::Serialize;

/// One old folder and what happens to it.
#[derive(Clone, Debug, Serialize)]
pub struct FolderLine {
    /// The old folder, as people read it (mUTF-7 decoded).
    pub old: String,
    /// The new folder, or `None` when it is not migrated.
    pub new: Option<String>,
    /// `same name`, `namespace`, `special-use`, `rule`, `earlier run`, `collision`,
    /// `filters`, `other namespace` or `conflict`.
    pub rule: &'static str,
    /// The reason in words.
    pub reason: String,
    /// The new folder does not exist yet: the sync creates it.
    pub create: bool,
}

/// One user's folder map.
#[derive(Clone, Debug, Serialize)]
pub struct UserFolders {
    pub old_login: String,
    pub new_login: String,
    /// The personal prefixes and delimiters both servers use (`"INBOX." "."`).
    pub old_naming: String,
    pub new_naming: String,
    pub folders: Vec<FolderLine>,
    /// The user could not be planned (login failed, ...).
    pub error: Option<String>,
}

fn naming(n: &crate::folders::Naming) -> String {
    format!(
        "prefix \"{}\", delimiter {}",
        n.prefix,
        n.delim
            .map(|d| format!("\"{d}\""))
            .unwrap_or_else(|| "none".into())
    )
}

/// The lines of a plan (pure).
pub fn lines(view: &crate::engine::FolderView) -> Vec<FolderLine> {
    let plan = &view.plan;
    let new_names: std::collections::BTreeSet<&str> =
        view.new.iter().map(|f| f.name.as_str()).collect();
    let mut out: Vec<FolderLine> = plan
        .mappings
        .iter()
        .map(|m| {
            let (rule, reason) = if let Some(u) = &m.by_special_use {
                (
                    "special-use",
                    format!("the new server's {u} folder (special use)"),
                )
            } else if let Some(note) = &m.note {
                let rule = if note.contains("earlier runs") {
                    "earlier run"
                } else if note.contains("by the folder rule of") {
                    "rule"
                } else if note.contains("look-alike") {
                    "namespace"
                } else {
                    "collision"
                };
                (rule, note.clone())
            } else if m.old == m.new {
                ("same name", "the same name on both servers".to_string())
            } else {
                (
                    "namespace",
                    format!(
                        "the name translated: old {}, new {}",
                        naming(&view.names.old),
                        naming(&view.names.new)
                    ),
                )
            };
            FolderLine {
                old: m.old.display(),
                new: Some(m.new.display()),
                rule,
                reason,
                create: !new_names.contains(m.new.as_str()) && !m.new.is_inbox(),
            }
        })
        .collect();
    for (name, why) in &plan.conflicts {
        out.push(FolderLine {
            old: name.display(),
            new: None,
            rule: "conflict",
            reason: why.clone(),
            create: false,
        });
    }
    for f in view.outside.iter().filter(|f| f.selectable()) {
        out.push(FolderLine {
            old: f.name.display(),
            new: None,
            rule: "other namespace",
            reason: "another user's or a shared folder: never migrated".into(),
            create: false,
        });
    }
    for f in view.old_all.iter().filter(|f| f.selectable()) {
        let taken = view.taken.iter().any(|t| t.name == f.name);
        let outside = view.outside.iter().any(|o| o.name == f.name);
        if !taken && !outside {
            out.push(FolderLine {
                old: f.name.display(),
                new: None,
                rule: "filters",
                reason: "left out by [filters] (include_folders / exclude_folders)".into(),
                create: false,
            });
        }
    }
    out
}

async fn user_folders(cfg: &Config, u: &UserConfig) -> UserFolders {
    let mut r = UserFolders {
        old_login: u.old_login.clone(),
        new_login: u.new_login.clone(),
        old_naming: String::new(),
        new_naming: String::new(),
        folders: Vec::new(),
        error: None,
    };
    let res = async {
        let (o, n) = tokio::join!(
            ImapSession::connect(&cfg.old, &u.old_login, u.old_password.as_ref(), true),
            ImapSession::connect(&cfg.new, &u.new_login, u.new_password.as_ref(), false),
        );
        let (mut old, mut new) = (o?, n?);
        // The sync's memory of earlier runs, if a state store is there.
        let earlier = if cfg.state_dir.join("db").exists() {
            let state = crate::state::StateStore::open(&cfg.state_dir)?;
            crate::engine::earlier_targets(&state, &crate::runner::account_key(cfg, u))?
        } else {
            Default::default()
        };
        let view = crate::engine::folder_view(
            &mut old,
            &mut new,
            &cfg.filters,
            &cfg.folder_rules,
            &earlier,
        )
        .await;
        old.logout().await;
        new.logout().await;
        view
    }
    .await;
    match res {
        Ok(view) => {
            r.old_naming = naming(&view.names.old);
            r.new_naming = naming(&view.names.new);
            r.folders = lines(&view);
        }
        Err(e) => r.error = Some(e.to_string()),
    }
    r
}

/// Every user's folder map, one user after the other (the state store allows one opener).
pub async fn run(cfg: &Config) -> Vec<UserFolders> {
    let mut out = Vec::new();
    for u in &cfg.users {
        out.push(user_folders(cfg, u).await);
    }
    out
}

/// For people: a block per user, a line per old folder.
pub fn render(users: &[UserFolders]) -> String {
    let mut s = String::new();
    for u in users {
        s.push_str(&format!("{} -> {}", u.old_login, u.new_login));
        if let Some(e) = &u.error {
            s.push_str(&format!(": ERROR: {e}\n"));
            continue;
        }
        s.push_str(&format!(
            " (old: {}; new: {})\n",
            u.old_naming, u.new_naming
        ));
        let w = u
            .folders
            .iter()
            .map(|f| f.old.chars().count())
            .max()
            .unwrap_or(0);
        for f in &u.folders {
            let pad = " ".repeat(w.saturating_sub(f.old.chars().count()));
            match &f.new {
                Some(n) => s.push_str(&format!(
                    "  {}{pad} -> {n}{}  [{}: {}]\n",
                    f.old,
                    if f.create { " (created)" } else { "" },
                    f.rule,
                    f.reason
                )),
                None => s.push_str(&format!(
                    "  {}{pad}    not migrated  [{}: {}]\n",
                    f.old, f.rule, f.reason
                )),
            }
        }
    }
    s
}

/// 0 when every user was planned and every folder placed; 1 when a folder has no new folder
/// (a conflict); 3 when a user could not be planned.
pub fn exit_code(users: &[UserFolders]) -> i32 {
    use crate::error::exit;
    if users.iter().any(|u| u.error.is_some()) {
        exit::ACCOUNT
    } else if users
        .iter()
        .any(|u| u.folders.iter().any(|f| f.rule == "conflict"))
    {
        exit::PARTIAL
    } else {
        exit::OK
    }
}
