//! Folder names across servers: personal namespaces, hierarchy delimiters, modified UTF-7.
//!
//! A name is a list of components, never a string to replace in. The old server's name loses
//! its personal-namespace prefix (Courier's and Cyrus's `INBOX.`, Dovecot's ``), is split on the
//! old delimiter and each component decoded from modified UTF-7; then each component is encoded
//! again, joined with the new delimiter and given the new server's prefix. So Courier's
//! `INBOX.Archiv.Entw&APw-rfe` becomes `Archiv/Entw&APw-rfe` on a Dovecot with `/`, and Dovecot's
//! `Sent` becomes `INBOX.Sent` on Cyrus. INBOX stays INBOX.
//!
//! A component that contains the new server's delimiter (`a/b` on a `.` server moving to a `/`
//! server) would silently become two levels. The character is replaced by its look-alike
//! ([`look_alike`]: `/` by `∕` U+2215, `.` by `․` U+2024, `\` by `⧵` U+29F5), and a look-alike
//! turns back into its character where that is not the delimiter: the rule is reversible (a
//! migration back gives the old names), and the engine reports each such folder. Other
//! delimiters fall back to `_` (not reversible; reported the same way). Pure logic with table
//! tests; the engine applies it.

use crate::mutf7;
use crate::store::FolderInfo;
use crate::types::MailboxPath;

/// How one server names the user's own folders: its personal-namespace prefix (wire form) and
/// its hierarchy delimiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    pub prefix: String,
    pub delim: Option<char>,
}

impl Naming {
    /// From a server's NAMESPACE (if it has one) and its LIST replies.
    pub fn of(ns: &crate::store::Namespaces, folders: &[FolderInfo]) -> Naming {
        match &ns.personal {
            Some(p) => Naming {
                prefix: p.prefix.clone(),
                delim: p.delimiter.or_else(|| delimiter_of(folders)),
            },
            None => Naming {
                prefix: String::new(),
                delim: delimiter_of(folders),
            },
        }
    }
}

/// Replaces the new server's delimiter inside one component when it has no look-alike.
pub const DELIMITER_SUBSTITUTE: char = '_';

/// The look-alike that stands for a delimiter character inside a component (reversible).
pub fn look_alike(c: char) -> Option<char> {
    match c {
        '/' => Some('\u{2215}'),
        '.' => Some('\u{2024}'),
        '\\' => Some('\u{29F5}'),
        _ => None,
    }
}

/// The character a look-alike stands for.
fn original_of(c: char) -> Option<char> {
    ['/', '.', '\\']
        .into_iter()
        .find(|&o| look_alike(o) == Some(c))
}

/// The components of a wire name under `n`: without the personal prefix, split on the
/// delimiter, each decoded from modified UTF-7 (kept as sent when it is not valid mUTF-7).
/// INBOX is `["INBOX"]`.
pub fn components(name: &MailboxPath, n: &Naming) -> Vec<String> {
    if name.is_inbox() {
        return vec!["INBOX".to_string()];
    }
    let wire = name.as_str();
    let rest = strip_prefix(wire, &n.prefix).unwrap_or(wire);
    let levels: Vec<&str> = match n.delim {
        Some(d) => rest.split(d).collect(),
        None => vec![rest],
    };
    levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            // The first level "inbox" in any case is INBOX (RFC 3501 5.1).
            if i == 0 && level.eq_ignore_ascii_case("INBOX") && levels.len() > 1 {
                "INBOX".to_string()
            } else {
                mutf7::decode(level).unwrap_or_else(|_| level.to_string())
            }
        })
        .collect()
}

/// `prefix` off `wire` (its INBOX part in any case).
fn strip_prefix<'a>(wire: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() || wire.len() <= prefix.len() || !wire.is_char_boundary(prefix.len()) {
        return None;
    }
    let (head, rest) = wire.split_at(prefix.len());
    let same = head == prefix
        || (head.len() > 5
            && head[..5].eq_ignore_ascii_case("INBOX")
            && prefix[..5].eq_ignore_ascii_case("INBOX")
            && head[5..] == prefix[5..]);
    same.then_some(rest)
}

/// The wire name of `components` under `n`. Also says whether a component's character had to
/// be replaced (the new delimiter inside a component).
pub fn compose(components: &[String], n: &Naming) -> (MailboxPath, bool) {
    if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
        return (MailboxPath::inbox(), false);
    }
    let mut replaced = false;
    let encoded: Vec<String> = components
        .iter()
        .map(|c| {
            let (s, r) = substitute(c, n.delim);
            replaced |= r;
            mutf7::encode(&s)
        })
        .collect();
    let joined = match n.delim {
        Some(d) => encoded.join(&d.to_string()),
        None => encoded.concat(),
    };
    let wire = format!("{}{joined}", n.prefix);
    (
        MailboxPath::new(wire).unwrap_or_else(MailboxPath::inbox),
        replaced,
    )
}

/// The new server's wire name for an old folder, and whether a character was replaced.
pub fn translate(old: &MailboxPath, from: &Naming, to: &Naming) -> (MailboxPath, bool) {
    compose(&components(old, from), to)
}

/// The new server's wire name for an old folder (both without a personal prefix).
pub fn map_name(
    old: &MailboxPath,
    old_delim: Option<char>,
    new_delim: Option<char>,
) -> MailboxPath {
    let from = Naming {
        prefix: String::new(),
        delim: old_delim,
    };
    let to = Naming {
        prefix: String::new(),
        delim: new_delim,
    };
    translate(old, &from, &to).0
}

/// One component for a server with delimiter `delim`: the delimiter becomes its look-alike (or
/// `_`), a look-alike whose character is allowed becomes that character again.
fn substitute(component: &str, delim: Option<char>) -> (String, bool) {
    let mut replaced = false;
    let out = component
        .chars()
        .map(|c| {
            if Some(c) == delim {
                replaced = true;
                look_alike(c).unwrap_or(DELIMITER_SUBSTITUTE)
            } else {
                match original_of(c) {
                    Some(o) if Some(o) != delim => o,
                    _ => c,
                }
            }
        })
        .collect();
    (out, replaced)
}

/// Folder names clients and servers give the special-use folders, in English, German, French,
/// Spanish, Italian, Dutch and Portuguese: used where a server marks no folder with RFC 6154
/// attributes (Courier, servers without SPECIAL-USE). Compared without case.
const SPECIAL_USE_NAMES: &[(&str, &[&str])] = &[
    (
        "\\Sent",
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Gesendet",
            "Gesendete Objekte",
            "Gesendete Elemente",
            "Éléments envoyés",
            "Envoyés",
            "Messages envoyés",
            "Enviados",
            "Elementos enviados",
            "Posta inviata",
            "Inviati",
            "Elementi inviati",
            "Verzonden",
            "Verzonden items",
            "Verzonden berichten",
            "Itens enviados",
            "Mensagens enviadas",
        ],
    ),
    (
        "\\Drafts",
        &[
            "Drafts",
            "Draft",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Bozze",
            "Concepten",
            "Rascunhos",
        ],
    ),
    (
        "\\Trash",
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Bin",
            "Papierkorb",
            "Gelöschte Objekte",
            "Gelöschte Elemente",
            "Corbeille",
            "Éléments supprimés",
            "Papelera",
            "Elementos eliminados",
            "Cestino",
            "Posta eliminata",
            "Elementi eliminati",
            "Prullenbak",
            "Verwijderde items",
            "Lixo",
            "Lixeira",
            "Itens excluídos",
            "Itens eliminados",
        ],
    ),
    (
        "\\Junk",
        &[
            "Junk",
            "Junk E-mail",
            "Junk Email",
            "Junk-E-Mail",
            "Spam",
            "Courrier indésirable",
            "Indésirables",
            "Correo no deseado",
            "Posta indesiderata",
            "Ongewenste e-mail",
            "Lixo eletrônico",
            "Lixo electrónico",
        ],
    ),
    (
        "\\Archive",
        &[
            "Archive", "Archives", "Archiv", "Archivio", "Archivo", "Archief", "Arquivo",
        ],
    ),
];

/// The special use a folder's name (its last component, decoded) stands for, if any.
pub fn special_use_by_name(component: &str) -> Option<&'static str> {
    let c = component.trim().to_lowercase();
    SPECIAL_USE_NAMES
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.to_lowercase() == c))
        .map(|(u, _)| *u)
}

/// The delimiter a server uses: the first one LIST reported (servers use one per namespace).
pub fn delimiter_of(folders: &[FolderInfo]) -> Option<char> {
    folders
        .iter()
        .find(|f| f.delimiter.is_some())
        .and_then(|f| f.delimiter)
}

/// The parents of a wire name (`a/b/c` gives `a`, `a/b`), to create top-down.
pub fn parents(name: &MailboxPath, delim: Option<char>) -> Vec<MailboxPath> {
    let Some(d) = delim else { return Vec::new() };
    let s = name.as_str();
    s.match_indices(d)
        .filter_map(|(i, _)| MailboxPath::new(&s[..i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MailboxPath {
        MailboxPath::new(s).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(&str, Option<char>, Option<char>, &str)] = &[
            ("INBOX", Some('.'), Some('/'), "INBOX"),
            ("inbox", Some('.'), Some('/'), "INBOX"),
            ("Archive.2024", Some('.'), Some('/'), "Archive/2024"),
            ("Archive/2024", Some('/'), Some('.'), "Archive.2024"),
            (
                "Archiv.Entw&APw-rfe",
                Some('.'),
                Some('/'),
                "Archiv/Entw&APw-rfe",
            ),
            ("a/b.c", Some('.'), Some('/'), "a&IhU-b/c"),
            ("a&IhU-b/c", Some('/'), Some('.'), "a/b.c"),
            ("Sent Items", Some('/'), Some('.'), "Sent Items"),
            ("INBOX.Lists.rust", Some('.'), Some('/'), "INBOX/Lists/rust"),
            ("x.y", Some('.'), Some('.'), "x.y"),
            ("flat.name", None, Some('/'), "flat.name"),
            ("&-amp", Some('/'), Some('.'), "&-amp"),
        ];
        for (old, od, nd, want) in cases {
            assert_eq!(
                map_name(&m(old), *od, *nd).as_str(),
                *want,
                "{old} {od:?}->{nd:?}"
            );
        }
    }

    fn naming(prefix: &str, d: char) -> Naming {
        Naming {
            prefix: prefix.into(),
            delim: Some(d),
        }
    }

    /// Personal prefixes: Courier and Cyrus (`INBOX.`, `.`) to Dovecot (``, `/`) and back.
    #[test]
    fn namespaces_are_translated_component_by_component() {
        let courier = naming("INBOX.", '.');
        let dovecot = naming("", '/');
        let cases: &[(&str, &Naming, &Naming, &str, bool)] = &[
            ("INBOX", &courier, &dovecot, "INBOX", false),
            ("INBOX.Sent", &courier, &dovecot, "Sent", false),
            (
                "inbox.Archive.2019",
                &courier,
                &dovecot,
                "Archive/2019",
                false,
            ),
            (
                "INBOX.Entw&APw-rfe",
                &courier,
                &dovecot,
                "Entw&APw-rfe",
                false,
            ),
            ("INBOX.a/b", &courier, &dovecot, "a&IhU-b", true),
            ("Sent", &dovecot, &courier, "INBOX.Sent", false),
            (
                "Archive/2019",
                &dovecot,
                &courier,
                "INBOX.Archive.2019",
                false,
            ),
            ("a.b/c", &dovecot, &courier, "INBOX.a&ICQ-b.c", true),
            ("a&IhU-b", &dovecot, &courier, "INBOX.a/b", false),
            (
                "INBOX/child",
                &dovecot,
                &courier,
                "INBOX.INBOX.child",
                false,
            ),
            (
                "INBOX.INBOX.child",
                &courier,
                &dovecot,
                "INBOX/child",
                false,
            ),
            ("INBOX.Sent", &courier, &courier, "INBOX.Sent", false),
        ];
        for (old, from, to, want, replaced) in cases {
            let (got, r) = translate(&m(old), from, to);
            assert_eq!((got.as_str(), r), (*want, *replaced), "{old}");
            // Reversible: back to the old server's name.
            assert_eq!(
                translate(&got, to, from).0.as_str(),
                old.replace("inbox.", "INBOX."),
                "{old} back"
            );
        }
    }

    #[test]
    fn special_uses_by_name_in_seven_languages() {
        for (name, want) in [
            ("Sent Items", Some("\\Sent")),
            ("gesendete objekte", Some("\\Sent")),
            ("Éléments envoyés", Some("\\Sent")),
            ("Papierkorb", Some("\\Trash")),
            ("Deleted Items", Some("\\Trash")),
            ("Entwürfe", Some("\\Drafts")),
            ("Posta indesiderata", Some("\\Junk")),
            ("Archief", Some("\\Archive")),
            ("Itens enviados", Some("\\Sent")),
            ("Holidays", None),
        ] {
            assert_eq!(special_use_by_name(name), want, "{name}");
        }
    }

    #[test]
    fn parents_top_down() {
        let p: Vec<String> = parents(&m("a/b/c"), Some('/'))
            .into_iter()
            .map(|p| p.as_str().to_string())
            .collect();
        assert_eq!(p, vec!["a", "a/b"]);
        assert!(parents(&m("abc"), Some('/')).is_empty());
    }
}
