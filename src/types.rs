//! Validated newtypes for the values the migration must never confuse.
//!
//! A UID is never 0 and a UIDVALIDITY is never 0 (RFC 3501 2.3.1.1); a folder's wire name is not its
//! display name. Making these distinct types lets the compiler catch a swapped argument, and the
//! constructors reject a malformed server reply at the edge instead of deep in the engine.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU32;

/// An IMAP message UID (RFC 3501 2.3.1.1): a non-zero 32-bit number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uid(NonZeroU32);

impl Uid {
    /// UID 1, the lowest there is.
    pub const MIN: Uid = Uid(NonZeroU32::MIN);

    pub fn new(v: u32) -> Option<Uid> {
        NonZeroU32::new(v).map(Uid)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A folder's UIDVALIDITY: non-zero; when it changes, every UID of the folder is void.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    pub fn new(v: u32) -> Option<UidValidity> {
        NonZeroU32::new(v).map(UidValidity)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A folder name as one server spells it on the wire: modified UTF-7, with that server's
/// hierarchy delimiter. Only [`crate::folders`] turns one server's name into the other's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxPath(String);

impl MailboxPath {
    /// Rejects names that no server can hold: empty, or with CR, LF or NUL.
    pub fn new(wire: impl Into<String>) -> Option<MailboxPath> {
        let s = wire.into();
        if s.is_empty() || s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return None;
        }
        Some(MailboxPath(s))
    }
    pub fn inbox() -> MailboxPath {
        MailboxPath("INBOX".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_inbox(&self) -> bool {
        self.0.eq_ignore_ascii_case("INBOX")
    }
    /// The human form (mUTF-7 decoded) for logs and reports.
    pub fn display(&self) -> String {
        crate::mutf7::decode_lossy(&self.0)
    }
}

impl fmt::Display for MailboxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// A message flag or keyword as IMAP spells it (`\Seen`, `$Forwarded`, `project-x`).
pub type Flag = String;

/// Flags that are session state, never to be copied (RFC 3501: `\Recent` cannot be set by APPEND).
pub fn is_copyable_flag(flag: &str) -> bool {
    !flag.eq_ignore_ascii_case("\\Recent") && !flag.is_empty() && flag != "\\*"
}

/// The system flags a client may set (RFC 3501 2.3.2; `\\Recent` is the server's).
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"];

/// Whether a flag can be sent to a server at all: one of [`SYSTEM_FLAGS`], or a keyword that is
/// an IMAP atom (no space, no `( ) { % * " \\ ]`, no control or 8-bit character). An old server
/// may hand out anything (a `\\Foo` or `two words` from its keyword file); sent inside an APPEND
/// with LITERAL+ such a flag makes the new server answer BAD and then read the message's own
/// lines as commands. So it is never sent: it is dropped and reported.
pub fn is_sendable_flag(flag: &str) -> bool {
    if flag.starts_with('\\') {
        return SYSTEM_FLAGS.iter().any(|s| s.eq_ignore_ascii_case(flag));
    }
    !flag.is_empty()
        && flag.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_flags_are_sent() {
        for ok in [
            "\\Seen",
            "\\answered",
            "$Forwarded",
            "Junk",
            "$label1",
            "a.b-c_d",
        ] {
            assert!(is_sendable_flag(ok), "{ok}");
        }
        for bad in [
            "\\Foo",
            "\\Recent",
            "\\*",
            "",
            "two words",
            "(paren",
            "a]b",
            "a%b",
            "a*b",
            "q\"",
            "ü",
            "a{3}",
        ] {
            assert!(!is_sendable_flag(bad), "{bad}");
        }
    }

    #[test]
    fn zero_is_not_a_uid() {
        assert!(Uid::new(0).is_none());
        assert_eq!(Uid::new(7).unwrap().get(), 7);
        assert!(UidValidity::new(0).is_none());
    }

    #[test]
    fn mailbox_path_rejects_controls() {
        assert!(MailboxPath::new("").is_none());
        assert!(MailboxPath::new("a\r\nb").is_none());
        assert!(MailboxPath::new("Archive.2024").is_some());
        assert!(MailboxPath::new("inbox").unwrap().is_inbox());
    }

    #[test]
    fn recent_is_not_copied() {
        assert!(!is_copyable_flag("\\Recent"));
        assert!(!is_copyable_flag("\\recent"));
        assert!(is_copyable_flag("\\Seen"));
        assert!(is_copyable_flag("$Forwarded"));
    }
}
