//! The boundary between the sync engine and a mail server.
//!
//! The engine never talks IMAP: it asks a [`MailStore`] for folders, listings, bodies and appends.
//! The IMAP implementation lives in [`crate::imap`]; the boundary keeps protocol details (tags,
//! literals, MULTIAPPEND fallbacks, server quirks) out of the planner and the executor, and lets a
//! later backend (a Maildir, a JMAP server) slot in. Every method is batched: the engine never
//! needs a round trip per message.

use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::types::{Flag, MailboxPath, Uid, UidValidity};
use std::collections::BTreeSet;

/// A server's capabilities, upper-cased.
#[derive(Clone, Debug, Default)]
pub struct Capabilities(pub BTreeSet<String>);

impl Capabilities {
    pub fn has(&self, cap: &str) -> bool {
        self.0.contains(&cap.to_ascii_uppercase())
    }
    pub fn list(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// One folder as LIST shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: MailboxPath,
    /// Hierarchy delimiter; `None` for a flat namespace.
    pub delimiter: Option<char>,
    /// LIST attributes as sent (`\HasChildren`, `\Sent`, `\Noselect`, ...).
    pub attrs: Vec<String>,
    pub subscribed: bool,
}

impl FolderInfo {
    /// Whether the folder can hold messages.
    pub fn selectable(&self) -> bool {
        !self.attrs.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
    /// The RFC 6154 special-use attribute, if any (`\Sent`, `\Drafts`, ...).
    pub fn special_use(&self) -> Option<&str> {
        const USES: [&str; 7] = [
            "\\All",
            "\\Archive",
            "\\Drafts",
            "\\Flagged",
            "\\Junk",
            "\\Sent",
            "\\Trash",
        ];
        self.attrs
            .iter()
            .find(|a| USES.iter().any(|u| u.eq_ignore_ascii_case(a)))
            .map(String::as_str)
    }
}

/// One namespace of RFC 2342: the prefix its folder names start with (wire form, e.g. `INBOX.`
/// on Courier and Cyrus, `` on Dovecot) and its hierarchy delimiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// What NAMESPACE says: the user's own folders, other users' and shared ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// The first personal namespace; `None` when the server has no NAMESPACE (then the whole
    /// tree is taken as personal, with the prefix ``).
    pub personal: Option<Namespace>,
    /// Other users' namespaces and shared ones: never migrated, listed.
    pub others: Vec<Namespace>,
}

impl Namespaces {
    /// Whether a folder (wire name) is one of the user's own: not under an other-users or shared
    /// prefix (a prefix `` for those would take everything, so it is not counted).
    pub fn is_personal(&self, name: &MailboxPath) -> bool {
        !self.others.iter().any(|o| {
            !o.prefix.is_empty()
                && (name.as_str().starts_with(&o.prefix)
                    || o.prefix.strip_suffix(|c| Some(c) == o.delimiter) == Some(name.as_str()))
        })
    }
}

/// What EXAMINE or STATUS tells about a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderStatus {
    pub uidvalidity: UidValidity,
    /// Next UID the server will assign; 0 when the server did not say.
    pub uidnext: u32,
    pub messages: u32,
    pub highestmodseq: Option<u64>,
}

/// One message as a listing shows it (no body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgSummary {
    pub uid: Uid,
    pub size: u32,
    pub flags: Vec<Flag>,
}

/// One message with its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub uid: Uid,
    pub flags: Vec<Flag>,
    /// INTERNALDATE exactly as the server sent it (`17-Jul-1996 02:44:25 -0700`).
    pub internaldate: String,
    pub body: Vec<u8>,
}

/// One message to append.
#[derive(Clone, Copy, Debug)]
pub struct AppendItem<'a> {
    pub flags: &'a [Flag],
    pub internaldate: &'a str,
    pub body: &'a [u8],
}

/// The server's answer for one appended message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendResult {
    /// Stored; the UID is known when the server has UIDPLUS.
    Stored {
        uidvalidity: Option<UidValidity>,
        uid: Option<Uid>,
        /// Flags and keywords the server refused, so the message was stored without them.
        dropped_flags: Vec<Flag>,
        /// Keywords the new folder cannot take (its PERMANENTFLAGS lacks them, or it holds as
        /// many keywords as it can: quirk `cyrus-keyword-limit`): dropped for good, so not tried
        /// again on every run.
        refused_keywords: Vec<Flag>,
    },
    /// Refused by the server (too large, quota, bad content): the server's words.
    Refused(String),
}

/// A mail server account, as the engine sees it.
#[allow(async_fn_in_trait)]
pub trait MailStore {
    fn caps(&self) -> &Capabilities;
    /// `old server host:port (login)`, for messages.
    fn describe(&self) -> &str;
    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>>;
    /// The namespaces (RFC 2342), or the default when the server has no NAMESPACE.
    async fn namespaces(&mut self) -> Result<Namespaces>;
    async fn create_folder(&mut self, name: &MailboxPath) -> Result<()>;
    async fn subscribe(&mut self, name: &MailboxPath) -> Result<()>;
    /// Renames a folder (new server only).
    async fn rename_folder(&mut self, from: &MailboxPath, to: &MailboxPath) -> Result<()>;
    /// Deletes a folder (new server only; the engine only deletes empty folders it created).
    async fn delete_folder(&mut self, name: &MailboxPath) -> Result<()>;
    /// Opens the folder read-only (EXAMINE) for listing and fetching.
    async fn examine(&mut self, name: &MailboxPath) -> Result<FolderStatus>;
    async fn status(&mut self, name: &MailboxPath) -> Result<FolderStatus>;
    /// STATUS of many folders in one round trip (with HIGHESTMODSEQ where CONDSTORE is offered);
    /// one result per name, in order.
    async fn status_many(&mut self, names: &[MailboxPath]) -> Result<Vec<Result<FolderStatus>>>;
    /// Opens the folder read-write (new server only), for flag updates and deletions.
    async fn select(&mut self, name: &MailboxPath) -> Result<FolderStatus>;
    /// UID, fingerprint (from the header block, size and INTERNALDATE) and flags of every
    /// message of the opened folder with UID >= `from`: for matching messages when UID maps are
    /// missing or void, or the server does not report new UIDs.
    async fn fetch_fingerprints(&mut self, from: Uid)
        -> Result<Vec<(Uid, Fingerprint, Vec<Flag>)>>;
    /// As `fetch_fingerprints`, for exactly these UIDs of the opened folder (those that exist).
    async fn fetch_fingerprints_of(
        &mut self,
        uids: &[Uid],
    ) -> Result<Vec<(Uid, Fingerprint, Vec<Flag>)>>;
    /// As `fetch_fingerprints`, with each message's decoded Subject: for verification reports.
    async fn fetch_described(&mut self, from: Uid) -> Result<Vec<Described>>;
    /// As `fetch_described`, for exactly these UIDs of the opened folder (Subject only when
    /// asked), in UID order and in chunks: every one must be in the answer with all its items
    /// (UID, RFC822.SIZE, INTERNALDATE, FLAGS, header block; items a server splits over several
    /// FETCH replies are merged), or the listing is an error. Verify lists a folder chunk by
    /// chunk with it.
    async fn fetch_described_of(
        &mut self,
        uids: &[Uid],
        with_subject: bool,
    ) -> Result<Vec<Described>>;
    /// Adds and removes flags on messages of the selected folder: `(uid, add, remove)`, as
    /// `+FLAGS.SILENT` / `-FLAGS.SILENT`, batched by flag set and pipelined. Flags not named are
    /// left as they are (the user's on the new server). Keywords the folder refuses (too many,
    /// not in its PERMANENTFLAGS, too long) are left out and returned per UID: the other
    /// changes are made.
    async fn store_flag_changes(
        &mut self,
        changes: &[(Uid, Vec<Flag>, Vec<Flag>)],
    ) -> Result<Vec<(Uid, Vec<Flag>)>>;
    /// The keywords (lower case) a folder defines, as its last EXAMINE or SELECT in this session
    /// said (`* FLAGS`), when known.
    fn folder_keywords(&self, _name: &MailboxPath) -> Option<&std::collections::BTreeSet<String>> {
        None
    }
    /// Deletes exactly these messages of the selected folder (UID EXPUNGE; refused without
    /// UIDPLUS, where EXPUNGE would also remove other messages marked `\Deleted`).
    async fn expunge_uids(&mut self, uids: &[Uid]) -> Result<()>;
    /// UID, size and flags of every message in the examined folder, in batched requests.
    async fn list_messages(&mut self, status: &FolderStatus) -> Result<Vec<MsgSummary>>;
    /// What changed in the examined folder since a CONDSTORE mod-sequence: messages with UID >=
    /// `from` (UID, size, flags) and the UIDs and flags of older messages whose flags changed.
    /// Two pipelined commands, no per-message round trip.
    async fn list_changes(
        &mut self,
        since_modseq: u64,
        from: Uid,
    ) -> Result<(Vec<MsgSummary>, Vec<(Uid, Vec<Flag>)>)>;
    /// The UIDs of the examined folder matching IMAP SEARCH criteria (`ALL` to find expunged
    /// messages, `SINCE 1-Jan-2024` for age filters).
    async fn uid_search(&mut self, criteria: &str) -> Result<Vec<Uid>>;
    /// Flags, INTERNALDATE and full bodies (BODY.PEEK[]) of these UIDs in the examined folder, in
    /// one round trip. UIDs that no longer exist are absent from the answer.
    async fn fetch_messages(&mut self, uids: &[Uid]) -> Result<Vec<Message>>;
    /// Like [`MailStore::fetch_messages`] for every message with UID >= `from` (crash recovery).
    async fn fetch_messages_from(&mut self, from: Uid) -> Result<Vec<Message>>;
    /// Appends the messages to `folder` (MULTIAPPEND where offered, else pipelined APPENDs).
    /// One result per item, in order; a refused message does not fail the others.
    async fn append(
        &mut self,
        folder: &MailboxPath,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<AppendResult>>;
    /// The storage quota of the quota root of `folder` (RFC 9208 GETQUOTAROOT), `None` when the
    /// server has no QUOTA extension or sets no storage limit there.
    async fn storage_quota(&mut self, folder: &MailboxPath) -> Result<Option<StorageQuota>>;
    /// Waits (IDLE) up to `max` for a change in the examined folder; `Ok(None)` when the server
    /// has no IDLE. Returns whether a change was reported.
    async fn idle(&mut self, max: std::time::Duration) -> Result<Option<bool>>;
    async fn logout(&mut self);
}

/// A message as a verification report names it.
#[derive(Clone, Debug)]
pub struct Described {
    pub uid: Uid,
    pub fp: Fingerprint,
    pub flags: Vec<Flag>,
    pub subject: Option<String>,
}

/// Storage used and allowed under a quota root, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageQuota {
    pub used: u64,
    pub limit: u64,
}

/// A second (third, ...) pair of sessions for the same account, so that a large account's
/// folders are synced in parallel. The pair holds whatever keeps it within the servers'
/// connection caps until it is dropped.
pub struct SessionPair<O, N> {
    pub old: O,
    pub new: N,
    pub hold: Box<dyn Send>,
}

/// Opens extra session pairs for one account on demand.
#[allow(async_fn_in_trait)]
pub trait SessionSource<O, N> {
    /// A new pair, or `None` when the connection caps (or a failed login) do not allow one now:
    /// the sync then goes on with the sessions it has.
    async fn open_pair(&self) -> Option<SessionPair<O, N>>;
}

/// No extra sessions: every folder over the one pair.
pub struct NoExtraSessions;

impl<O, N> SessionSource<O, N> for NoExtraSessions {
    async fn open_pair(&self) -> Option<SessionPair<O, N>> {
        None
    }
}
