//! Keywords a new folder can take: what its SELECT said (`PERMANENTFLAGS`, `FLAGS`) and what
//! its refusals taught (quirk `cyrus-keyword-limit`, docs/server-quirks.md).
//!
//! A folder opened read-write lists in `PERMANENTFLAGS` the flags it stores for good; `\*` in
//! that list means it also creates new keywords. Without `\*` (Courier-style "limited", a
//! Dovecot behind imapc) only the keywords listed can be set. Cyrus 3.6 holds at most 100
//! keywords per folder and still says `\*` when it is full: it answers the APPEND or STORE that
//! would create the 101st with `NO Too many user flags in mailbox` (no response code). Either
//! way a message is worth copying without the keywords its folder cannot take, and only those
//! are dropped: the ones the folder already holds are kept. This module holds the pure parts
//! (parsing, the keep/drop decision) and the per-session memory of each folder.

use crate::types::MailboxPath;
use std::collections::{BTreeSet, HashMap};

use super::wire::{Done, Response, Status, Value};

/// What a folder opened read-write said about its flags (RFC 3501 `PERMANENTFLAGS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permanent {
    /// `\*` listed: the folder creates new keywords (the server says so; Cyrus says so when full).
    pub new_keywords: bool,
    /// The keywords listed (lower case).
    pub keywords: BTreeSet<String>,
}

/// Parses the arguments of a `PERMANENTFLAGS` response code: `(\Answered \Seen kw0 \*)`.
pub fn parse_permanentflags(args: &str) -> Permanent {
    let inner = args.trim().trim_start_matches('(').trim_end_matches(')');
    let mut p = Permanent {
        new_keywords: false,
        keywords: BTreeSet::new(),
    };
    for f in inner.split_ascii_whitespace() {
        if f == "\\*" {
            p.new_keywords = true;
        } else if !f.starts_with('\\') {
            p.keywords.insert(f.to_ascii_lowercase());
        }
    }
    p
}

/// The keywords (lower case) of a `* FLAGS (...)` reply: those the folder defines.
pub fn flags_reply_keywords(untagged: &[Response]) -> Option<BTreeSet<String>> {
    untagged.iter().rev().find_map(|r| match r {
        Response::Data { kind, rest } if kind == "FLAGS" => match rest.first() {
            Some(Value::List(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_atom)
                    .filter(|f| !f.starts_with('\\'))
                    .map(str::to_ascii_lowercase)
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    })
}

/// The `PERMANENTFLAGS` of a folder's open, when it was opened read-write (`[READ-WRITE]`): a
/// read-only open (EXAMINE) says `()`, which is no statement about what the folder takes.
pub fn permanent_of_select(done: &Done) -> Option<Permanent> {
    if done.code.as_ref().is_none_or(|c| c.name != "READ-WRITE") {
        return None;
    }
    done.untagged.iter().rev().find_map(|r| match r {
        Response::State { code: Some(c), .. } if c.name == "PERMANENTFLAGS" => {
            Some(parse_permanentflags(&c.args))
        }
        _ => None,
    })
}

/// Cyrus's refusal of a keyword the folder has no room for: `NO Too many user flags in
/// mailbox`, without a response code (measured on Cyrus 3.6.1, for APPEND and `UID STORE`).
/// Matched narrowly (a NO, no code, these words) so that no other refusal is taken for it.
pub fn is_too_many_keywords(done: &Done) -> bool {
    done.status == Status::No
        && done.code.is_none()
        && done
            .text
            .to_ascii_lowercase()
            .contains("too many user flags")
}

/// What the session knows of one new folder's keywords.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderKeywords {
    /// Keywords the folder holds (its `FLAGS` and `PERMANENTFLAGS`), lower case.
    pub held: BTreeSet<String>,
    /// Whether it takes a keyword it does not hold yet: false after `PERMANENTFLAGS` without
    /// `\*`, or a refusal as one keyword too many.
    pub new_ones: bool,
}

/// Splits flags to send into those the folder takes and the keywords it cannot take (pure).
/// System flags are always kept; a keyword is kept when the folder takes new ones or already
/// holds it (compared without case).
pub fn split_for_folder<'a>(
    flags: &[&'a str],
    folder: &FolderKeywords,
) -> (Vec<&'a str>, Vec<&'a str>) {
    flags.iter().partition(|f| {
        f.starts_with('\\') || folder.new_ones || folder.held.contains(&f.to_ascii_lowercase())
    })
}

/// Per session: each new folder's keywords, as its opens and refusals said.
#[derive(Debug, Default)]
pub struct Memory {
    folders: HashMap<MailboxPath, Known>,
    /// The folder opened last (a failed open leaves none open, but the engine never goes on
    /// after one).
    current: Option<MailboxPath>,
}

#[derive(Debug, Default)]
struct Known {
    /// The keywords of the last `* FLAGS` reply (EXAMINE or SELECT).
    defined: Option<BTreeSet<String>>,
    /// What the folder takes, once a SELECT or a refusal said.
    limits: Option<FolderKeywords>,
}

impl Memory {
    /// Records what opening a folder said (any open: FLAGS; a read-write one: PERMANENTFLAGS).
    /// A folder once known to take no new keywords stays so (Cyrus lies with `\*` when full).
    pub fn opened(&mut self, name: &MailboxPath, done: &Done) {
        self.current = Some(name.clone());
        let k = self.folders.entry(name.clone()).or_default();
        let defined = flags_reply_keywords(&done.untagged);
        if let Some(p) = permanent_of_select(done) {
            let mut held: BTreeSet<String> = p.keywords.clone();
            held.extend(defined.iter().flatten().cloned());
            let full = k.limits.as_ref().is_some_and(|l| !l.new_ones);
            k.limits = Some(FolderKeywords {
                held,
                new_ones: p.new_keywords && !full,
            });
        }
        if defined.is_some() {
            k.defined = defined;
        }
    }

    /// The folder takes no keyword it does not hold (it refused one as too many).
    pub fn mark_full(&mut self, name: &MailboxPath) {
        let k = self.folders.entry(name.clone()).or_default();
        let mut l = k.limits.take().unwrap_or_default();
        l.held.extend(k.defined.iter().flatten().cloned());
        l.new_ones = false;
        k.limits = Some(l);
    }

    /// What the folder takes, when known.
    pub fn limits(&self, name: &MailboxPath) -> Option<&FolderKeywords> {
        self.folders.get(name).and_then(|k| k.limits.as_ref())
    }

    /// Whether the folder is known to take no new keywords.
    pub fn is_limited(&self, name: &MailboxPath) -> bool {
        self.limits(name).is_some_and(|l| !l.new_ones)
    }

    /// The folder opened last.
    pub fn current(&self) -> Option<&MailboxPath> {
        self.current.as_ref()
    }

    /// The keywords the folder defines, as its last open's `* FLAGS` reply said.
    pub fn defined(&self, name: &MailboxPath) -> Option<&BTreeSet<String>> {
        self.folders.get(name).and_then(|k| k.defined.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::wire::{parse_response, Code, Parts};

    fn untagged(line: &str) -> Response {
        parse_response(Parts {
            texts: vec![line.as_bytes().to_vec()],
            literals: vec![],
        })
        .unwrap()
    }

    fn opened(lines: &[&str], rw: bool) -> Done {
        Done {
            status: Status::Ok,
            code: Some(Code {
                name: if rw { "READ-WRITE" } else { "READ-ONLY" }.into(),
                args: String::new(),
            }),
            text: "done".into(),
            untagged: lines.iter().map(|l| untagged(l)).collect(),
        }
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// PERMANENTFLAGS of Cyrus (full, still `\*`), Courier (`\*` first), a server without `\*`,
    /// and EXAMINE's `()`.
    #[test]
    fn permanentflags_of_three_vendors() {
        let cyrus = parse_permanentflags(r"(\Answered \Flagged \Draft \Deleted \Seen kw0 KW1 \*)");
        assert!(cyrus.new_keywords);
        assert_eq!(cyrus.keywords, set(&["kw0", "kw1"]));
        let courier = parse_permanentflags(r"(\* \Draft \Answered \Flagged \Deleted \Seen)");
        assert!(courier.new_keywords);
        assert!(courier.keywords.is_empty());
        let limited = parse_permanentflags(r"(\Seen $Work Junk)");
        assert!(!limited.new_keywords);
        assert_eq!(limited.keywords, set(&["$work", "junk"]));
        assert_eq!(
            parse_permanentflags("()"),
            Permanent {
                new_keywords: false,
                keywords: BTreeSet::new()
            }
        );
    }

    /// SELECT's PERMANENTFLAGS and FLAGS are remembered; EXAMINE's `()` says nothing about what
    /// the folder takes; a folder refused as full stays full even when a later SELECT says `\*`.
    #[test]
    fn memory_of_opens_and_refusals() {
        let name = MailboxPath::new("INBOX.a").unwrap();
        let mut m = Memory::default();
        m.opened(
            &name,
            &opened(
                &[
                    r"* FLAGS (\Seen kw0 kw1)",
                    r"* OK [PERMANENTFLAGS ()] read-only",
                ],
                false,
            ),
        );
        assert_eq!(m.limits(&name), None);
        assert_eq!(m.defined(&name), Some(&set(&["kw0", "kw1"])));
        let select = opened(
            &[
                r"* FLAGS (\Seen kw0 kw1)",
                r"* OK [PERMANENTFLAGS (\Seen kw0 kw1 \*)] Ok",
            ],
            true,
        );
        m.opened(&name, &select);
        assert!(!m.is_limited(&name));
        m.mark_full(&name);
        assert!(m.is_limited(&name));
        m.opened(&name, &select);
        assert!(m.is_limited(&name), "Cyrus says \\* when full");
        assert_eq!(m.limits(&name).unwrap().held, set(&["kw0", "kw1"]));
        let other = MailboxPath::new("INBOX.b").unwrap();
        m.opened(
            &other,
            &opened(
                &[
                    r"* FLAGS (\Seen x)",
                    r"* OK [PERMANENTFLAGS (\Seen x)] Limited",
                ],
                true,
            ),
        );
        assert!(m.is_limited(&other));
        m.mark_full(&MailboxPath::new("INBOX.c").unwrap());
        assert!(m.is_limited(&MailboxPath::new("INBOX.c").unwrap()));
    }

    /// The keep/drop decision: system flags always, held keywords always (any case), new
    /// keywords only where the folder takes new ones.
    #[test]
    fn keep_held_keywords_drop_new_ones() {
        let full = FolderKeywords {
            held: set(&["kw0", "$work"]),
            new_ones: false,
        };
        let flags = [r"\Seen", "KW0", "kw200", r"\Flagged", "$Work", "kw201"];
        let (keep, drop) = split_for_folder(&flags, &full);
        assert_eq!(keep, vec![r"\Seen", "KW0", r"\Flagged", "$Work"]);
        assert_eq!(drop, vec!["kw200", "kw201"]);
        let open = FolderKeywords {
            new_ones: true,
            ..full
        };
        assert_eq!(split_for_folder(&flags, &open).1, Vec::<&str>::new());
    }

    #[test]
    fn too_many_user_flags_matched_narrowly() {
        let done = |status, code: Option<&str>, text: &str| Done {
            status,
            code: code.map(|c| Code {
                name: c.into(),
                args: String::new(),
            }),
            text: text.into(),
            untagged: vec![],
        };
        assert!(is_too_many_keywords(&done(
            Status::No,
            None,
            "Too many user flags in mailbox"
        )));
        assert!(!is_too_many_keywords(&done(
            Status::No,
            Some("OVERQUOTA"),
            "Too many user flags in mailbox"
        )));
        assert!(!is_too_many_keywords(&done(Status::No, None, "Over quota")));
        assert!(!is_too_many_keywords(&done(
            Status::Bad,
            None,
            "Too many user flags in mailbox"
        )));
    }
}
