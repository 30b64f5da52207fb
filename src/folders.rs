//! Folder names across servers: hierarchy delimiters, modified UTF-7 and special-use folders.
//!
//! The old server may separate levels with `.` and the new one with `/` (or the reverse); names
//! travel in modified UTF-7. A name is split on the old delimiter, each level decoded, then
//! re-encoded and joined with the new delimiter, so `Archiv.Entw&APw-rfe` on a `.` server becomes
//! `Archiv/Entw&APw-rfe` on a `/` server. A level that contains the new server's delimiter as a
//! character (`a/b` on a `.` server moving to a `/` server) would silently become two levels; that
//! character is replaced by [`DELIMITER_SUBSTITUTE`] and the mapping is reported. This is pure
//! logic with table tests; the engine applies it.

use crate::mutf7;
use crate::store::FolderInfo;
use crate::types::MailboxPath;

/// Replaces the new server's delimiter inside one level of an old name.
pub const DELIMITER_SUBSTITUTE: char = '_';

/// The new server's wire name for an old folder.
pub fn map_name(
    old: &MailboxPath,
    old_delim: Option<char>,
    new_delim: Option<char>,
) -> MailboxPath {
    if old.is_inbox() {
        return MailboxPath::inbox();
    }
    let wire = old.as_str();
    let levels: Vec<&str> = match old_delim {
        Some(d) => wire.split(d).collect(),
        None => vec![wire],
    };
    let mut out_levels = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        // The first level "inbox" in any case is INBOX (RFC 3501 5.1).
        if i == 0 && level.eq_ignore_ascii_case("INBOX") && levels.len() > 1 {
            out_levels.push("INBOX".to_string());
            continue;
        }
        let decoded = match mutf7::decode(level) {
            Ok(s) => s,
            // Not valid mUTF-7 (some servers send raw 8-bit or odd names): keep the bytes.
            Err(_) => {
                out_levels.push(substitute(level, new_delim));
                continue;
            }
        };
        out_levels.push(mutf7::encode(&substitute(&decoded, new_delim)));
    }
    let joined = match new_delim {
        Some(d) => out_levels.join(&d.to_string()),
        None => out_levels.concat(),
    };
    MailboxPath::new(joined).unwrap_or_else(|| old.clone())
}

fn substitute(level: &str, new_delim: Option<char>) -> String {
    match new_delim {
        Some(d) => level.replace(d, &DELIMITER_SUBSTITUTE.to_string()),
        None => level.to_string(),
    }
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
            ("a/b.c", Some('.'), Some('/'), "a_b/c"),
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
