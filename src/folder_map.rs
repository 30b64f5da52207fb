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
use crate::plan::{FolderMapping, MapReason};
use crate::store::MailStore;
use serde::Serialize;

/// What decided a folder's fate: the JSON `rule` field and the tag of a text line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Rule {
    #[serde(rename = "same name")]
    SameName,
    #[serde(rename = "namespace")]
    Namespace,
    #[serde(rename = "special-use")]
    SpecialUse,
    #[serde(rename = "rule")]
    FolderRule,
    #[serde(rename = "earlier run")]
    EarlierRun,
    #[serde(rename = "collision")]
    Collision,
    #[serde(rename = "filters")]
    Filters,
    #[serde(rename = "other namespace")]
    OtherNamespace,
    #[serde(rename = "conflict")]
    Conflict,
}

impl Rule {
    /// The word people and scripts read (the same as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SameName => "same name",
            Rule::Namespace => "namespace",
            Rule::SpecialUse => "special-use",
            Rule::FolderRule => "rule",
            Rule::EarlierRun => "earlier run",
            Rule::Collision => "collision",
            Rule::Filters => "filters",
            Rule::OtherNamespace => "other namespace",
            Rule::Conflict => "conflict",
        }
    }

    /// The rule behind a planned mapping. A look-alike is a namespace matter (the delimiters
    /// differ); a special-use folder that is taken and a suffixed name are collisions.
    pub fn of(reason: &MapReason) -> Rule {
        match reason {
            MapReason::SameName => Rule::SameName,
            MapReason::Namespace | MapReason::LookAlike => Rule::Namespace,
            MapReason::SpecialUse { .. } => Rule::SpecialUse,
            MapReason::Rule { .. } => Rule::FolderRule,
            MapReason::Earlier => Rule::EarlierRun,
            MapReason::SpecialUseTaken { .. } | MapReason::Suffixed { .. } => Rule::Collision,
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One old folder and what happens to it.
#[derive(Clone, Debug, Serialize)]
pub struct FolderLine {
    /// The old folder, as people read it (mUTF-7 decoded).
    pub old: String,
    /// The new folder, or `None` when it is not migrated.
    pub new: Option<String>,
    /// `same name`, `namespace`, `special-use`, `rule`, `earlier run`, `collision`,
    /// `filters`, `other namespace` or `conflict`.
    pub rule: Rule,
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

/// A mapping's reason in words: the planner's note where it has one, else what the reason
/// means for this pair of servers.
fn reason_text(m: &FolderMapping, names: &crate::plan::Names) -> String {
    match &m.reason {
        MapReason::SpecialUse { kind } => format!("the new server's {kind} folder (special use)"),
        MapReason::SameName => "the same name on both servers".to_string(),
        MapReason::Namespace => format!(
            "the name translated: old {}, new {}",
            naming(&names.old),
            naming(&names.new)
        ),
        MapReason::LookAlike
        | MapReason::SpecialUseTaken { .. }
        | MapReason::Rule { .. }
        | MapReason::Earlier
        | MapReason::Suffixed { .. } => m.note().unwrap_or_default(),
    }
}

/// The lines of a plan (pure).
pub fn lines(view: &crate::engine::FolderView) -> Vec<FolderLine> {
    let plan = &view.plan;
    let new_names: std::collections::BTreeSet<&str> =
        view.new.iter().map(|f| f.name.as_str()).collect();
    let mut out: Vec<FolderLine> = plan
        .mappings
        .iter()
        .map(|m| FolderLine {
            old: m.old.display(),
            new: Some(m.new.display()),
            rule: Rule::of(&m.reason),
            reason: reason_text(m, &view.names),
            create: !new_names.contains(m.new.as_str()) && !m.new.is_inbox(),
        })
        .collect();
    for (name, why) in &plan.conflicts {
        out.push(FolderLine {
            old: name.display(),
            new: None,
            rule: Rule::Conflict,
            reason: why.clone(),
            create: false,
        });
    }
    for f in view.outside.iter().filter(|f| f.selectable()) {
        out.push(FolderLine {
            old: f.name.display(),
            new: None,
            rule: Rule::OtherNamespace,
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
                rule: Rule::Filters,
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
        .any(|u| u.folders.iter().any(|f| f.rule == Rule::Conflict))
    {
        exit::PARTIAL
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MailboxPath;

    /// Each planner reason gives the `rule` the docs promise (docs/configuration.md), and the
    /// JSON value is the word of the text line.
    #[test]
    fn rule_of_each_reason() {
        let p = |s: &str| MailboxPath::new(s).unwrap();
        let table = [
            (MapReason::SameName, "same name"),
            (MapReason::Namespace, "namespace"),
            (MapReason::LookAlike, "namespace"),
            (
                MapReason::SpecialUse {
                    kind: "\\Sent".into(),
                },
                "special-use",
            ),
            (
                MapReason::SpecialUseTaken {
                    kind: "\\Sent".into(),
                    folder: p("Sent"),
                    by: None,
                },
                "collision",
            ),
            (
                MapReason::Rule {
                    origin: "imapshift.toml:3".into(),
                },
                "rule",
            ),
            (MapReason::Earlier, "earlier run"),
            (
                MapReason::Suffixed {
                    wanted: p("a"),
                    by: p("b"),
                },
                "collision",
            ),
        ];
        for (reason, want) in table {
            let rule = Rule::of(&reason);
            assert_eq!(rule.as_str(), want, "{reason:?}");
            assert_eq!(
                serde_json::to_value(rule).unwrap(),
                serde_json::json!(want),
                "{reason:?}"
            );
        }
        for r in [Rule::Filters, Rule::OtherNamespace, Rule::Conflict] {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
    }
}
