//! The IMAP implementation of [`MailStore`]: the only home of async-imap.
//!
//! async-imap opens and authenticates the session (LOGIN or AUTHENTICATE PLAIN); from then on
//! every command goes through the raw layer in [`wire`] over the same stream (see that module for
//! why). A session opened for the old server is read-only by construction: it refuses CREATE,
//! SUBSCRIBE and APPEND before anything is sent, and only ever EXAMINEs and fetches with
//! BODY.PEEK, so the old server's `\Seen` flags and contents are never changed.

pub mod keywords;
pub mod quirks;
pub mod stream;
pub use stream::read_ca_file;
pub mod wire;

use crate::config::{AuthMech, ServerConfig};
use crate::error::{Error, Result, Retry, Scope};
use crate::fingerprint::Fingerprint;
use crate::secret::Secret;
use crate::store::{
    AppendItem, AppendResult, Capabilities, FolderInfo, FolderStatus, MailStore, Message,
    MsgSummary,
};
use crate::types::{is_copyable_flag, is_sendable_flag, MailboxPath, Uid, UidValidity};
use quirks::Quirk;
use std::collections::BTreeSet;
use stream::Buffered;
use wire::{format_uid_set, parse_uid_set, Arg, Done, Io, Response, Value, Wire};

/// Keywords up to this length are accepted by common servers (Dovecot's default
/// `mail_max_keyword_length`); a refused message is first retried without longer ones.
const MAX_USUAL_KEYWORD: usize = 50;

/// Messages listed per FETCH command when listing a folder (all such commands are pipelined).
const LIST_CHUNK: u32 = 5000;

struct SessionIo(async_imap::Session<Buffered>);

impl Io for SessionIo {
    fn io(&mut self) -> &mut Buffered {
        self.0.as_mut()
    }
}

struct PlainAuth<'a> {
    /// Whose mailbox to open (empty: the login's own).
    authzid: &'a str,
    login: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut v =
            Vec::with_capacity(self.authzid.len() + self.login.len() + self.password.len() + 2);
        v.extend_from_slice(self.authzid.as_bytes());
        v.push(0);
        v.extend_from_slice(self.login.as_bytes());
        v.push(0);
        v.extend_from_slice(self.password.as_bytes());
        v
    }
}

/// An authenticated IMAP session.
pub struct ImapSession {
    wire: Wire<SessionIo>,
    caps: Capabilities,
    read_only: bool,
    label: String,
    /// The folder this session has open read-only (EXAMINE), if any: Courier refuses an APPEND
    /// into it (quirk `append-to-examined`, docs/server-quirks.md).
    examined: Option<MailboxPath>,
    /// What each new folder's opens and refusals said about the keywords it takes (quirk
    /// `cyrus-keyword-limit`).
    keywords: keywords::Memory,
    /// The server software's workarounds switched on for this session.
    quirks: quirks::Quirks,
    /// NAMESPACE's answer, read along with the first LIST (one round trip for both).
    namespaces: Option<crate::store::Namespaces>,
}

impl ImapSession {
    /// UID, fingerprint, flags (and the Subject when asked) of every message with UID >= `from`
    /// of the opened folder, from the header blocks. A large folder is read in chunks of
    /// `HEADER_CHUNK` messages (one `UID SEARCH ALL`, then a `UID FETCH` per chunk), so only one
    /// chunk of raw headers is in memory at a time.
    async fn header_listing(
        &mut self,
        from: Uid,
        with_subject: bool,
    ) -> Result<Vec<crate::store::Described>> {
        if from == Uid::MIN {
            // The whole folder: its UIDs first, so the listing can be checked to be complete.
            let uids = self.uid_search("ALL").await?;
            return self.header_of(&uids, with_subject).await;
        }
        let sets = vec![format!("{}:*", from.get())];
        self.header_sets(&sets, from, with_subject).await
    }

    /// The header listing of exactly these (existing) UIDs, in chunks of `HEADER_CHUNK`. Each
    /// must be in the answer: a message missing from it would look absent (and be copied again,
    /// or reported missing), so an incomplete answer is an error.
    async fn header_of(
        &mut self,
        uids: &[Uid],
        with_subject: bool,
    ) -> Result<Vec<crate::store::Described>> {
        const HEADER_CHUNK: usize = 500;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted: Vec<u32> = uids.iter().map(|u| u.get()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let sets: Vec<String> = sorted
            .chunks(HEADER_CHUNK)
            .map(wire::format_uid_set)
            .collect();
        let out = self.header_sets(&sets, Uid::MIN, with_subject).await?;
        let got: BTreeSet<u32> = out.iter().map(|d| d.uid.get()).collect();
        let lacking: Vec<u32> = sorted
            .iter()
            .copied()
            .filter(|u| !got.contains(u))
            .collect();
        if !lacking.is_empty() {
            return Err(Error::new(
                Scope::Folder,
                Retry::Transient,
                format!(
                    "{}: the header listing lacks {} of {} messages (UIDs {}; no reply, or one without UID, RFC822.SIZE, INTERNALDATE, FLAGS or the header): not trusting it",
                    self.label,
                    lacking.len(),
                    sorted.len(),
                    format_uid_set(&lacking)
                ),
            ));
        }
        Ok(out)
    }

    /// The header listing of these UID sets (one `UID FETCH` each), keeping UIDs >= `from`.
    async fn header_sets(
        &mut self,
        sets: &[String],
        from: Uid,
        with_subject: bool,
    ) -> Result<Vec<crate::store::Described>> {
        let mut out = Vec::new();
        for set in sets {
            let done = self
                .wire
                .command(&[
                    Arg::Raw("UID FETCH"),
                    Arg::Raw(set),
                    Arg::Raw("(UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[HEADER])"),
                ])
                .await?;
            if !done.is_ok() {
                // `[SERVERBUG]`: a message of the set cannot be read; the connection is fine,
                // so this folder's step fails, not the account.
                let e = self.no("UID FETCH (headers) failed", &done, Scope::Folder);
                return Err(if is_serverbug(&done) {
                    e.scoped(Scope::Folder)
                } else {
                    e
                });
            }
            for f in self.fetch_replies(done, "a header")? {
                let (Some(uid), Some(size), Some(date), Some(flags), Some(header)) = (
                    f.uid.and_then(Uid::new),
                    f.size,
                    f.internaldate,
                    f.flags,
                    f.body,
                ) else {
                    continue;
                };
                // `n:*` also returns the last message when n is beyond it.
                if uid >= from {
                    out.push(crate::store::Described {
                        uid,
                        fp: Fingerprint::of_header(&header, size, &date),
                        flags,
                        subject: with_subject
                            .then(|| crate::fingerprint::subject(&header))
                            .flatten(),
                    });
                }
            }
        }
        out.sort_by_key(|d| d.uid);
        out.dedup_by_key(|d| d.uid);
        Ok(out)
    }

    /// Connects and logs in. `read_only` sessions (the old server) refuse every change.
    pub async fn connect(
        server: &ServerConfig,
        login: &str,
        password: Option<&Secret>,
        read_only: bool,
    ) -> Result<ImapSession> {
        // The user's own password, or the side's master login on the user's behalf.
        let (auth_login, authzid, password, via) = match (password, &server.master) {
            (Some(p), _) => (login.to_string(), String::new(), p, String::new()),
            (None, Some(m)) => match server.auth {
                AuthMech::Login => (
                    format!("{login}{}{}", m.separator, m.user),
                    String::new(),
                    &m.password,
                    format!(" via master user {}", m.user),
                ),
                AuthMech::Plain => (
                    m.user.clone(),
                    login.to_string(),
                    &m.password,
                    format!(" via admin {} (authzid)", m.user),
                ),
            },
            (None, None) => {
                return Err(Error::config(format!(
                    "user \"{login}\" has no {} password and [{}] has no master_user",
                    server.side, server.side
                )))
            }
        };
        let label = format!(
            "{} server {}:{} ({login}{via})",
            server.side, server.host, server.port
        );
        let (stream, mut greeting) = stream::connect(server).await?;
        let mut client = async_imap::Client::new(stream);
        let t = server.timeout;
        let lost =
            |what: String| Error::new(Scope::Account, Retry::Transient, format!("{label}: {what}"));
        if greeting.is_none() {
            match tokio::time::timeout(t, client.read_response()).await {
                Err(_) => return Err(lost("no greeting (timeout): is this an IMAP port?".into())),
                Ok(Err(e)) => {
                    return Err(lost(format!(
                        "bad greeting: {e} (is this an IMAP port? with TLS?)"
                    )))
                }
                Ok(Ok(None)) => {
                    return Err(lost("server closed the connection before greeting".into()))
                }
                Ok(Ok(Some(r))) => greeting = Some(greeting_text(r.parsed())),
            }
        }
        let auth_fail = |e: async_imap::error::Error| {
            let (retry, text) = match &e {
                async_imap::error::Error::No(t) | async_imap::error::Error::Bad(t) => {
                    (Retry::Fix, t.clone())
                }
                other => (Retry::Transient, other.to_string()),
            };
            Error::new(
                Scope::Account,
                retry,
                format!(
                    "{label}: login failed: {} (check the login and the password reference)",
                    text.trim()
                ),
            )
        };
        let session = match server.auth {
            AuthMech::Login => {
                match tokio::time::timeout(t, client.login(&auth_login, password.expose())).await {
                    Err(_) => return Err(lost("login timed out".into())),
                    Ok(Err((e, _))) => return Err(auth_fail(e)),
                    Ok(Ok(s)) => s,
                }
            }
            AuthMech::Plain => {
                let auth = PlainAuth {
                    authzid: &authzid,
                    login: &auth_login,
                    password: password.expose(),
                };
                match tokio::time::timeout(t, client.authenticate("PLAIN", auth)).await {
                    Err(_) => return Err(lost("authentication timed out".into())),
                    Ok(Err((e, _))) => return Err(auth_fail(e)),
                    Ok(Ok(s)) => s,
                }
            }
        };
        let mut wire = Wire::new(SessionIo(session), t, label.clone());
        let done = wire.command(&[Arg::Raw("CAPABILITY")]).await?;
        let mut caps = wire::replies::capabilities(&done.untagged);
        // Capabilities the configuration says the server does not honour are not seen at all.
        caps.retain(|c| !server.quirks.ignore_capabilities.contains(c));
        wire.literal_plus = caps.contains("LITERAL+");
        let vendor = quirks::Vendor::from_greeting(greeting.as_deref().unwrap_or(""));
        let quirks = quirks::Quirks::resolve(vendor, &server.quirks);
        tracing::debug!("{label}: {}", quirks.describe());
        Ok(ImapSession {
            wire,
            caps: Capabilities(caps),
            read_only,
            label,
            examined: None,
            keywords: keywords::Memory::default(),
            quirks,
            namespaces: None,
        })
    }

    /// Quirk `append-to-examined` (Courier): an APPEND into the folder open read-only is
    /// refused with `NO Current box is selected READ-ONLY`. Leave it first, and open it again
    /// afterwards, so the caller's view (the folder examined, as for a UID SEARCH of the new
    /// copies) stays true. CLOSE on an EXAMINEd folder expunges nothing (RFC 3501 6.4.2);
    /// UNSELECT (RFC 3691) says so outright where the server has it.
    async fn append_leaving_examined(
        &mut self,
        folder: &MailboxPath,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<AppendResult>> {
        let leave = if self.caps.has("UNSELECT") {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        let done = self.wire.command(&[Arg::Raw(leave)]).await?;
        if !done.is_ok() {
            tracing::debug!("{}: {leave} refused: {}", self.label, done.describe());
        }
        self.examined = None;
        let results = self.append_batch(folder, items).await?;
        self.examine(folder).await?;
        Ok(results)
    }

    /// The server software and the workarounds switched on for this session.
    pub fn quirks(&self) -> &quirks::Quirks {
        &self.quirks
    }

    /// The namespaces a NAMESPACE command's completion tells.
    fn namespaces_from(&mut self, done: &Done) -> Result<crate::store::Namespaces> {
        if !done.is_ok() {
            // A server that announces NAMESPACE and refuses it: take the whole tree as the
            // user's, as without NAMESPACE.
            tracing::warn!(
                "{}: NAMESPACE refused ({}): taking every folder as the user's own",
                self.label,
                done.describe()
            );
            return Ok(Default::default());
        }
        for r in &done.untagged {
            let Response::Data { kind, rest } = r else {
                continue;
            };
            if kind == "NAMESPACE" {
                return parse_namespaces(rest)
                    .ok_or_else(|| self.malformed(format!("NAMESPACE reply {rest:?}")));
            }
        }
        Err(self.malformed("NAMESPACE: no reply".to_string()))
    }

    fn refuse_if_read_only(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::new(
                Scope::Fatal,
                Retry::Fix,
                format!(
                    "{}: internal error: {what} attempted on the read-only side",
                    self.label
                ),
            ));
        }
        Ok(())
    }

    fn no(&self, what: &str, done: &Done, scope: Scope) -> Error {
        // RFC 5530 codes that say "later": reconnect and resume with backoff.
        let later = done.code.as_ref().is_some_and(|c| {
            matches!(
                c.name.as_str(),
                "UNAVAILABLE" | "THROTTLED" | "INUSE" | "SERVERBUG"
            )
        });
        let (scope, retry) = if later {
            (Scope::Account, Retry::Transient)
        } else {
            (scope, Retry::Permanent)
        };
        Error::new(
            scope,
            retry,
            format!("{}: {what}: {}", self.label, done.describe()),
        )
    }

    fn malformed(&mut self, what: impl std::fmt::Display) -> Error {
        // A reply we cannot interpret: never trust this connection again.
        Error::new(
            Scope::Account,
            Retry::Transient,
            format!("{}: malformed reply: {what}", self.label),
        )
    }

    /// `UID FETCH set (UID FLAGS INTERNALDATE BODY.PEEK[])`, one round trip.
    async fn fetch_set(&mut self, set: &str) -> Result<Vec<Message>> {
        let done = self
            .wire
            .command(&[
                Arg::Raw("UID FETCH"),
                Arg::Raw(set),
                Arg::Raw("(UID FLAGS INTERNALDATE BODY.PEEK[])"),
            ])
            .await?;
        let expunged = done
            .code
            .as_ref()
            .is_some_and(|c| c.name == "EXPUNGEISSUED");
        if !done.is_ok() && !expunged {
            // Some message of the set cannot be read (Dovecot: `NO [SERVERBUG]`, or "Some
            // messages could not be FETCHed"): a message-scope error, so the engine narrows the
            // set down to the unreadable one. Codes that say "later" reconnect. With
            // `[EXPUNGEISSUED]` (RFC 5530) the missing ones were expunged: the answer holds the
            // others, and the engine confirms the rest vanished.
            let e = self.no("UID FETCH (bodies) failed", &done, Scope::Message);
            return Err(if e.retry == Retry::Transient && !is_serverbug(&done) {
                e
            } else {
                e.scoped(Scope::Message)
            });
        }
        let mut out = Vec::new();
        for f in self.fetch_replies(done, "a body")? {
            let Some(uid) = f.uid.and_then(Uid::new) else {
                continue; // an unsolicited flag update
            };
            if f.body_nil {
                return Err(Error::new(
                    Scope::Message,
                    Retry::Permanent,
                    format!(
                        "{}: UID {uid}: the server sent BODY[] as NIL (no content to copy)",
                        self.label
                    ),
                ));
            }
            let Some(body) = f.body else {
                continue; // an unsolicited flag update
            };
            let (Some(flags), Some(internaldate)) = (f.flags, f.internaldate) else {
                return Err(Error::new(
                    Scope::Message,
                    Retry::Permanent,
                    format!(
                        "{}: UID {uid}: the FETCH reply lacks FLAGS or INTERNALDATE",
                        self.label
                    ),
                ));
            };
            out.push(Message {
                uid,
                flags,
                internaldate,
                body,
            });
        }
        out.sort_by_key(|m| m.uid);
        out.dedup_by_key(|m| m.uid);
        if self.caps.has("BINARY") && self.quirks.on(Quirk::NulAs0x80) {
            self.restore_nuls(&mut out).await?;
        }
        Ok(out)
    }

    /// Quirk `nul-as-0x80` (docs/server-quirks.md): Dovecot stores NUL bytes but sends them as 0x80 in
    /// `BODY[]`. For messages with 0x80 bytes, `BINARY.PEEK[]` is fetched too (one more round
    /// trip for the batch); where it equals the body except for NULs in place of 0x80
    /// ([`is_nul_restoration`]), it is the message as stored and is copied (as a literal8)
    /// instead. Otherwise (BINARY decoded something, or changed line ends) the `BODY[]` bytes
    /// are copied and a warning names the message.
    async fn restore_nuls(&mut self, msgs: &mut [Message]) -> Result<()> {
        let suspects: Vec<u32> = msgs
            .iter()
            .filter(|m| memchr::memchr(0x80, &m.body).is_some())
            .map(|m| m.uid.get())
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        let set = format_uid_set(&suspects);
        let done = self
            .wire
            .command(&[
                Arg::Raw("UID FETCH"),
                Arg::Raw(&set),
                Arg::Raw("(UID BINARY.PEEK[])"),
            ])
            .await?;
        if !done.is_ok() {
            // Some messages cannot be decoded (unknown encoding): keep BODY[] for all.
            tracing::debug!("{}: BINARY fetch refused: {}", self.label, done.describe());
            return Ok(());
        }
        for f in self.fetch_replies(done, "BINARY[]")? {
            let (Some(uid), Some(bin)) = (f.uid, f.body) else {
                continue;
            };
            if let Some(m) = msgs.iter_mut().find(|m| m.uid.get() == uid) {
                if is_nul_restoration(&m.body, &bin) {
                    m.body = bin;
                } else if memchr::memchr(0, &bin).is_some() && has_lone_0x80(&m.body) {
                    tracing::warn!(
                        "{}: UID {uid} has NUL bytes that the server shows only as 0x80 (quirk nul-as-0x80); it is copied as the server shows it",
                        self.label
                    );
                }
            }
        }
        Ok(())
    }

    /// A stored message's result from its APPEND's tagged OK.
    fn stored(
        &self,
        done: &Done,
        dropped_flags: Vec<String>,
        refused_keywords: Vec<String>,
    ) -> AppendResult {
        let (uv, uids) = self.appenduid(done);
        AppendResult::Stored {
            uidvalidity: uv,
            uid: uids.and_then(|u| if u.len() == 1 { Uid::new(u[0]) } else { None }),
            dropped_flags,
            refused_keywords,
        }
    }

    /// The APPENDUID of an APPEND, trusted only from servers that advertise UIDPLUS.
    fn appenduid(&self, done: &Done) -> (Option<UidValidity>, Option<Vec<u32>>) {
        if !self.caps.has("UIDPLUS") {
            return (None, None);
        }
        match &done.code {
            Some(c) if c.name == "APPENDUID" => {
                let mut it = c.args.split_whitespace();
                let uv = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .and_then(UidValidity::new);
                let uids = it.next().and_then(parse_uid_set);
                (uv, uids)
            }
            _ => (None, None),
        }
    }

    /// The status of a folder just opened with SELECT or EXAMINE.
    fn opened_status(&mut self, name: &MailboxPath, done: &Done) -> Result<FolderStatus> {
        let (uv, uidnext, exists, modseq) = status_from(&done.untagged, true);
        let Some(uidvalidity) = uv.and_then(UidValidity::new) else {
            return Err(self.malformed(format!("{name}: no UIDVALIDITY when opened")));
        };
        let Some(messages) = exists else {
            return Err(self.malformed(format!("{name}: no EXISTS when opened")));
        };
        self.keywords.opened(name, done);
        Ok(FolderStatus {
            uidvalidity,
            uidnext,
            messages,
            highestmodseq: modseq,
        })
    }

    /// The FETCH replies of a finished command, one per message: items a server splits over
    /// several replies for one message (RFC 3501 allows it) are merged by sequence number. Any
    /// malformed reply breaks the connection.
    fn fetch_replies(&mut self, done: Done, what: &str) -> Result<Vec<FetchItems>> {
        let mut out: Vec<FetchItems> = Vec::with_capacity(done.untagged.len());
        let mut at: std::collections::HashMap<u32, usize> = Default::default();
        for r in done.untagged {
            let Response::Numbered { n, kind, mut rest } = r else {
                continue;
            };
            if kind != "FETCH" {
                continue;
            }
            match fetch_items(&mut rest) {
                Some(mut f) => match at.get(&n) {
                    Some(&k) => out[k].merge(f),
                    None => {
                        f.seq = n;
                        at.insert(n, out.len());
                        out.push(f);
                    }
                },
                None => return Err(self.malformed(format!("FETCH item list of {what}: {rest:?}"))),
            }
        }
        Ok(out)
    }

    /// The largest message the server takes (RFC 7889 `APPENDLIMIT=n` in its capabilities).
    pub fn append_limit(&self) -> Option<u64> {
        self.caps
            .0
            .iter()
            .find_map(|c| c.strip_prefix("APPENDLIMIT="))
            .and_then(|n| n.parse().ok())
    }

    /// True when the connection cannot be used any more (after an error): reconnect.
    pub fn is_broken(&self) -> bool {
        self.wire.is_broken()
    }
}

/// Whether a refused APPEND or STORE can be about its flags: a BAD, or a NO without a code or
/// with `[CANNOT]` / `[CLIENTBUG]` / `[PARSE]`. Size, quota, a server fault or "later" are not
/// cured by leaving flags out.
fn may_be_about_flags(done: &Done) -> bool {
    done.status == wire::Status::Bad
        || done
            .code
            .as_ref()
            .is_none_or(|c| matches!(c.name.as_str(), "CANNOT" | "CLIENTBUG" | "PARSE"))
}

/// The human-readable text of a greeting (`Dovecot (Debian) ready.`), which names the software.
fn greeting_text(r: &async_imap::imap_proto::Response<'_>) -> String {
    match r {
        async_imap::imap_proto::Response::Data { outcome, .. } => outcome
            .information
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// A `[SERVERBUG]` completion: the server failed on this command, the connection is fine.
fn is_serverbug(done: &Done) -> bool {
    done.code.as_ref().is_some_and(|c| c.name == "SERVERBUG")
}

/// `* NAMESPACE (("" "/")) (("Other Users/" "/")) NIL`: the first personal namespace, and the
/// prefixes of the others (other users', shared). `None` when the reply is malformed.
fn parse_namespaces(rest: &[Value]) -> Option<crate::store::Namespaces> {
    use crate::store::Namespace;
    let group = |v: &Value| -> Option<Vec<Namespace>> {
        match v {
            Value::Nil => Some(Vec::new()),
            Value::List(items) => items
                .iter()
                .map(|item| {
                    let l = item.as_list()?;
                    let prefix = l.first()?.as_text()?;
                    let delimiter = match l.get(1)? {
                        Value::Nil => None,
                        Value::Str(s) if s.len() == 1 => Some(s[0] as char),
                        Value::Str(s) if s.len() == 2 && s[0] == b'\\' => Some(s[1] as char),
                        _ => return None,
                    };
                    Some(Namespace { prefix, delimiter })
                })
                .collect(),
            _ => None,
        }
    };
    let personal = group(rest.first()?)?;
    let mut others = group(rest.get(1).unwrap_or(&Value::Nil))?;
    others.extend(group(rest.get(2).unwrap_or(&Value::Nil))?);
    Some(crate::store::Namespaces {
        personal: personal.into_iter().next(),
        others,
    })
}

/// The values of a `* STATUS name (items)` reply.
fn parse_status_items(rest: &[Value]) -> Option<FolderStatus> {
    let items = rest.get(1).and_then(Value::as_list)?;
    let mut st = FolderStatus {
        uidvalidity: UidValidity::new(1)?,
        uidnext: 0,
        messages: 0,
        highestmodseq: None,
    };
    let mut uv = None;
    for pair in items.chunks(2) {
        if let [k, v] = pair {
            match k.as_atom().map(str::to_ascii_uppercase).as_deref() {
                Some("UIDVALIDITY") => uv = v.as_u32().and_then(UidValidity::new),
                Some("UIDNEXT") => st.uidnext = v.as_u32().unwrap_or(0),
                Some("MESSAGES") => st.messages = v.as_u32().unwrap_or(0),
                Some("HIGHESTMODSEQ") => st.highestmodseq = v.as_u64(),
                _ => {}
            }
        }
    }
    st.uidvalidity = uv?;
    Some(st)
}

fn status_from(
    untagged: &[Response],
    exists_fallback: bool,
) -> (Option<u32>, u32, Option<u32>, Option<u64>) {
    let mut uidvalidity = None;
    let mut uidnext = 0;
    let mut exists = None;
    let mut modseq = None;
    for r in untagged {
        match r {
            Response::State { code: Some(c), .. } => match c.name.as_str() {
                "UIDVALIDITY" => uidvalidity = c.args.trim().parse().ok(),
                "UIDNEXT" => uidnext = c.args.trim().parse().unwrap_or(0),
                "HIGHESTMODSEQ" => modseq = c.args.trim().parse().ok(),
                _ => {}
            },
            Response::Numbered { n, kind, .. } if kind == "EXISTS" && exists_fallback => {
                exists = Some(*n)
            }
            _ => {}
        }
    }
    (uidvalidity, uidnext, exists, modseq)
}

/// The `KEY value` pairs of a FETCH response; the body is moved out, not copied.
struct FetchItems {
    /// The message sequence number of the reply.
    seq: u32,
    uid: Option<u32>,
    size: Option<u32>,
    flags: Option<Vec<String>>,
    internaldate: Option<String>,
    body: Option<Vec<u8>>,
    /// The server sent the body section as NIL: it has no content to give for this message.
    body_nil: bool,
}

impl FetchItems {
    /// Adds the items of another reply for the same message (those not known yet).
    fn merge(&mut self, o: FetchItems) {
        self.uid = self.uid.or(o.uid);
        self.size = self.size.or(o.size);
        if self.flags.is_none() {
            self.flags = o.flags;
        }
        if self.internaldate.is_none() {
            self.internaldate = o.internaldate;
        }
        if self.body.is_none() {
            self.body = o.body;
            self.body_nil |= o.body_nil;
        }
    }
}

fn fetch_items(rest: &mut [Value]) -> Option<FetchItems> {
    let Some(Value::List(list)) = rest.first_mut() else {
        return None;
    };
    let mut f = FetchItems {
        seq: 0,
        uid: None,
        size: None,
        flags: None,
        internaldate: None,
        body: None,
        body_nil: false,
    };
    let mut i = 0;
    while i + 1 < list.len() {
        let key = list[i].as_atom()?.to_ascii_uppercase();
        let val = &mut list[i + 1];
        match key.as_str() {
            "UID" => f.uid = val.as_u32(),
            "RFC822.SIZE" => f.size = val.as_u32(),
            "FLAGS" => {
                f.flags = Some(
                    val.as_list()?
                        .iter()
                        .filter_map(Value::as_text)
                        .filter(|fl| is_copyable_flag(fl))
                        .collect(),
                )
            }
            "INTERNALDATE" => f.internaldate = val.as_text(),
            "BODY[]" | "BINARY[]" | "RFC822" | "BODY[HEADER]" => match val {
                Value::Str(b) => f.body = Some(std::mem::take(b)),
                Value::Nil => f.body_nil = true,
                _ => return None,
            },
            _ => {}
        }
        i += 2;
    }
    Some(f)
}

/// `bin` (BINARY.PEEK[]) is `body` (BODY.PEEK[]) with some 0x80 bytes being NULs in truth,
/// and nothing else different: then it is the message as stored.
pub fn is_nul_restoration(body: &[u8], bin: &[u8]) -> bool {
    body.len() == bin.len()
        && memchr::memchr(0, bin).is_some()
        && body
            .iter()
            .zip(bin)
            .all(|(&a, &b)| a == b || (a == 0x80 && b == 0))
}

/// One message of an APPEND: `(flags) "date" {n}` with a literal8 when it holds NUL bytes.
fn push_message<'a>(
    args: &mut Vec<Arg<'a>>,
    flags: &'a str,
    date: Option<&'a str>,
    body: &'a [u8],
) {
    args.push(Arg::Raw(flags));
    if let Some(d) = date {
        args.push(Arg::Raw(d));
    }
    args.push(if memchr::memchr(0, body).is_some() {
        Arg::Literal8(body)
    } else {
        Arg::Literal(body)
    });
}

/// A 0x80 byte right after an ASCII byte (or first): not a UTF-8 continuation byte, so likely a
/// NUL that the server substituted. Used only to decide whether to warn.
fn has_lone_0x80(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .any(|(i, &b)| b == 0x80 && (i == 0 || body[i - 1] < 0x80))
}

fn quote_date(d: &str) -> Option<String> {
    // INTERNALDATE is "dd-Mon-yyyy hh:mm:ss +zzzz": nothing needs escaping, but check.
    if d.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" -:+".contains(&b))
        && !d.is_empty()
    {
        Some(format!("\"{d}\""))
    } else {
        None
    }
}

impl MailStore for ImapSession {
    fn caps(&self) -> &Capabilities {
        &self.caps
    }

    fn describe(&self) -> &str {
        &self.label
    }

    async fn namespaces(&mut self) -> Result<crate::store::Namespaces> {
        if let Some(ns) = &self.namespaces {
            return Ok(ns.clone());
        }
        if !self.caps.has("NAMESPACE") {
            return Ok(Default::default());
        }
        // A raw command: async-imap cannot parse NAMESPACE replies.
        let tag = self.wire.send(&[Arg::Raw("NAMESPACE")]).await?;
        let done = self.wire.finish(&tag).await?;
        let ns = self.namespaces_from(&done)?;
        self.namespaces = Some(ns.clone());
        Ok(ns)
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>> {
        // LIST and LSUB pipelined: one round trip.
        // Servers that support it are asked for special-use attributes explicitly (RFC 6154);
        // others (Dovecot among them) send them with a plain LIST when they have them.
        let mut list: Vec<Arg<'_>> = vec![Arg::Raw("LIST"), Arg::Str(""), Arg::Str("*")];
        if self.caps.has("LIST-EXTENDED") && self.caps.has("SPECIAL-USE") {
            list.push(Arg::Raw("RETURN (SPECIAL-USE)"));
        }
        // The first listing of a session also asks NAMESPACE, in the same round trip.
        let t0 = if self.namespaces.is_none() && self.caps.has("NAMESPACE") {
            Some(self.wire.send(&[Arg::Raw("NAMESPACE")]).await?)
        } else {
            None
        };
        let t1 = self.wire.send(&list).await?;
        let t2 = self
            .wire
            .send(&[Arg::Raw("LSUB"), Arg::Str(""), Arg::Str("*")])
            .await?;
        let mut ns = match t0 {
            Some(t0) => Some(self.wire.finish(&t0).await?),
            None => None,
        };
        let mut list = self.wire.finish(&t1).await?;
        let mut lsub = self.wire.finish(&t2).await?;
        if let Some(ns) = &mut ns {
            // The three may run in parallel on the server: each takes its own replies back.
            let mut pool: Vec<Response> = Vec::new();
            for d in [&mut *ns, &mut list, &mut lsub] {
                pool.append(&mut d.untagged);
            }
            for r in pool {
                let kind = match &r {
                    Response::Data { kind, .. } => kind.as_str(),
                    _ => "",
                };
                match kind {
                    "NAMESPACE" => ns.untagged.push(r),
                    "LSUB" => lsub.untagged.push(r),
                    _ => list.untagged.push(r),
                }
            }
            self.namespaces = Some(self.namespaces_from(ns)?);
        }
        if !list.is_ok() {
            return Err(self.no("LIST failed", &list, Scope::Account));
        }
        // The two may run in parallel on the server: pool their replies (told apart by kind).
        let replies: Vec<&Response> = list.untagged.iter().chain(&lsub.untagged).collect();
        let mut subscribed = BTreeSet::new();
        if lsub.is_ok() {
            for r in replies.iter().copied() {
                if let Response::Data { kind, rest } = r {
                    if kind == "LSUB" {
                        if let Some(n) = rest.get(2).and_then(Value::as_text) {
                            subscribed.insert(normalize_inbox(n));
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for r in replies {
            let Response::Data { kind, rest } = r else {
                continue;
            };
            if kind != "LIST" {
                continue;
            }
            let (Some(attrs), Some(delim), Some(name)) = (
                rest.first().and_then(Value::as_list),
                rest.get(1),
                rest.get(2).and_then(Value::as_text),
            ) else {
                return Err(self.malformed(format!("LIST reply {rest:?}")));
            };
            let delimiter = match delim {
                Value::Nil => None,
                Value::Str(s) if s.len() == 1 => Some(s[0] as char),
                Value::Str(s) if s.len() == 2 && s[0] == b'\\' => Some(s[1] as char),
                other => return Err(self.malformed(format!("LIST delimiter {other:?}"))),
            };
            let name = normalize_inbox(name);
            let Some(path) = MailboxPath::new(name.clone()) else {
                return Err(self.malformed(format!("mailbox name {name:?}")));
            };
            out.push(FolderInfo {
                subscribed: subscribed.contains(&name),
                name: path,
                delimiter,
                attrs: attrs.iter().filter_map(Value::as_text).collect(),
            });
        }
        Ok(out)
    }

    async fn create_folder(&mut self, name: &MailboxPath) -> Result<()> {
        self.refuse_if_read_only("CREATE")?;
        let done = self
            .wire
            .command(&[Arg::Raw("CREATE"), Arg::Str(name.as_str())])
            .await?;
        if done.is_ok()
            || done
                .code
                .as_ref()
                .is_some_and(|c| c.name == "ALREADYEXISTS")
        {
            return Ok(());
        }
        Err(self.no(&format!("CREATE {name} failed"), &done, Scope::Folder))
    }

    async fn rename_folder(&mut self, from: &MailboxPath, to: &MailboxPath) -> Result<()> {
        self.refuse_if_read_only("RENAME")?;
        let done = self
            .wire
            .command(&[
                Arg::Raw("RENAME"),
                Arg::Str(from.as_str()),
                Arg::Str(to.as_str()),
            ])
            .await?;
        if done.is_ok() {
            return Ok(());
        }
        Err(self.no(
            &format!("RENAME {from} to {to} failed"),
            &done,
            Scope::Folder,
        ))
    }

    async fn delete_folder(&mut self, name: &MailboxPath) -> Result<()> {
        self.refuse_if_read_only("DELETE")?;
        // A selected folder cannot always be deleted: leave it first.
        let _ = self.wire.command(&[Arg::Raw("UNSELECT")]).await;
        self.examined = None;
        let done = self
            .wire
            .command(&[Arg::Raw("DELETE"), Arg::Str(name.as_str())])
            .await?;
        if done.is_ok() {
            return Ok(());
        }
        Err(self.no(&format!("DELETE {name} failed"), &done, Scope::Folder))
    }

    async fn subscribe(&mut self, name: &MailboxPath) -> Result<()> {
        self.refuse_if_read_only("SUBSCRIBE")?;
        let done = self
            .wire
            .command(&[Arg::Raw("SUBSCRIBE"), Arg::Str(name.as_str())])
            .await?;
        if done.is_ok() {
            return Ok(());
        }
        Err(self.no(&format!("SUBSCRIBE {name} failed"), &done, Scope::Folder))
    }

    async fn examine(&mut self, name: &MailboxPath) -> Result<FolderStatus> {
        // A failed EXAMINE leaves no folder open (RFC 3501 6.3.2).
        self.examined = None;
        let done = self
            .wire
            .command(&[Arg::Raw("EXAMINE"), Arg::Str(name.as_str())])
            .await?;
        if !done.is_ok() {
            return Err(self.no(&format!("EXAMINE {name} failed"), &done, Scope::Folder));
        }
        self.examined = Some(name.clone());
        self.opened_status(name, &done)
    }

    async fn status(&mut self, name: &MailboxPath) -> Result<FolderStatus> {
        self.status_many(std::slice::from_ref(name))
            .await?
            .pop()
            .expect("one status per name")
    }

    async fn status_many(&mut self, names: &[MailboxPath]) -> Result<Vec<Result<FolderStatus>>> {
        let items = if self.caps.has("CONDSTORE") {
            "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(MESSAGES UIDNEXT UIDVALIDITY)"
        };
        // All pipelined: one round trip for the whole folder tree.
        let mut tags = Vec::with_capacity(names.len());
        for name in names {
            tags.push(
                self.wire
                    .send(&[Arg::Raw("STATUS"), Arg::Str(name.as_str()), Arg::Raw(items)])
                    .await?,
            );
        }
        // Replies may interleave across the pipelined commands: match them by mailbox name.
        let mut found: std::collections::HashMap<String, FolderStatus> = Default::default();
        let mut failed: std::collections::HashMap<usize, Done> = Default::default();
        for (i, tag) in tags.iter().enumerate() {
            let done = self.wire.finish(tag).await?;
            for r in &done.untagged {
                if let Response::Data { kind, rest } = r {
                    if kind == "STATUS" {
                        let name = rest.first().and_then(Value::as_text).map(normalize_inbox);
                        match (name, parse_status_items(rest)) {
                            (Some(n), Some(st)) => {
                                found.insert(n, st);
                            }
                            _ => return Err(self.malformed(format!("STATUS reply {rest:?}"))),
                        }
                    }
                }
            }
            if !done.is_ok() {
                failed.insert(i, done);
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if let Some(done) = failed.get(&i) {
                out.push(Err(self.no(
                    &format!("STATUS {name} failed"),
                    done,
                    Scope::Folder,
                )));
                continue;
            }
            match found.get(name.as_str()) {
                Some(st) => out.push(Ok(*st)),
                None => return Err(self.malformed(format!("no STATUS reply for {name}"))),
            }
        }
        Ok(out)
    }

    async fn select(&mut self, name: &MailboxPath) -> Result<FolderStatus> {
        self.refuse_if_read_only("SELECT")?;
        self.examined = None;
        let done = self
            .wire
            .command(&[Arg::Raw("SELECT"), Arg::Str(name.as_str())])
            .await?;
        if !done.is_ok() {
            return Err(self.no(&format!("SELECT {name} failed"), &done, Scope::Folder));
        }
        self.opened_status(name, &done)
    }

    async fn fetch_fingerprints(
        &mut self,
        from: Uid,
    ) -> Result<Vec<(Uid, Fingerprint, Vec<String>)>> {
        Ok(triples(self.header_listing(from, false).await?))
    }

    async fn fetch_described(&mut self, from: Uid) -> Result<Vec<crate::store::Described>> {
        self.header_listing(from, true).await
    }

    async fn fetch_described_of(
        &mut self,
        uids: &[Uid],
        with_subject: bool,
    ) -> Result<Vec<crate::store::Described>> {
        self.header_of(uids, with_subject).await
    }

    async fn fetch_fingerprints_of(
        &mut self,
        uids: &[Uid],
    ) -> Result<Vec<(Uid, Fingerprint, Vec<String>)>> {
        Ok(triples(self.header_of(uids, false).await?))
    }

    async fn store_flag_changes(
        &mut self,
        changes: &[(Uid, Vec<String>, Vec<String>)],
    ) -> Result<Vec<(Uid, Vec<String>)>> {
        self.refuse_if_read_only("STORE")?;
        // A folder known to take no new keyword (quirk `cyrus-keyword-limit`) is not asked to:
        // such an addition is left out and returned; a removal of a keyword it does not hold has
        // nothing to remove.
        let folder = self.keywords.current().cloned();
        let limited = |s: &Self| {
            folder
                .as_ref()
                .and_then(|f| s.keywords.limits(f))
                .filter(|l| !l.new_ones)
                .cloned()
        };
        let limits = limited(self);
        let mut not_set: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        // One UID STORE per distinct (+/-, flag set), all pipelined. Adding and removing touch
        // different flags, so their order on the server does not matter.
        let mut groups: std::collections::BTreeMap<(&str, Vec<&str>), Vec<u32>> =
            Default::default();
        for (uid, add, remove) in changes {
            for (op, flags) in [(ADD_FLAGS, add), (REMOVE_FLAGS, remove)] {
                let mut fl: Vec<&str> = flags
                    .iter()
                    .map(String::as_str)
                    .filter(|f| is_sendable_flag(f))
                    .collect();
                if let Some(l) = &limits {
                    let (keep, drop) = keywords::split_for_folder(&fl, l);
                    if op == ADD_FLAGS && !drop.is_empty() {
                        let out = not_set.entry(uid.get()).or_default();
                        out.extend(drop.into_iter().map(String::from));
                    }
                    fl = keep;
                }
                if !fl.is_empty() {
                    groups.entry((op, fl)).or_default().push(uid.get());
                }
            }
        }
        let groups: Vec<FlagGroup<'_>> = groups
            .into_iter()
            .map(|((op, flags), mut uids)| {
                uids.sort_unstable();
                FlagGroup {
                    op,
                    set: format_uid_set(&uids),
                    flags,
                    uids,
                }
            })
            .collect();
        let refused = self.store_groups(groups).await?;
        // Cyrus refuses a keyword its folder has no room for: learn what the folder holds (a
        // SELECT again: its FLAGS then include what the other STOREs just created) and set the
        // others.
        let too_many = refused
            .iter()
            .any(|(_, d)| keywords::is_too_many_keywords(d));
        if let (true, Some(f), None) = (too_many, &folder, &limits) {
            match MailStore::select(self, f).await {
                Ok(_) => self.keywords.mark_full(f),
                Err(e) if e.scope <= Scope::Folder => tracing::debug!("{}: {e}", self.label),
                Err(e) => return Err(e),
            }
        }
        let mut retry = Vec::new();
        let mut left = Vec::new();
        match limited(self) {
            Some(l) => {
                for (g, done) in refused {
                    let (keep, drop) = keywords::split_for_folder(&g.flags, &l);
                    if drop.is_empty() || !may_be_about_flags(&done) {
                        left.push((g, done));
                        continue;
                    }
                    if g.op == ADD_FLAGS {
                        for u in &g.uids {
                            let out = not_set.entry(*u).or_default();
                            out.extend(drop.iter().map(|s| s.to_string()));
                        }
                    }
                    if !keep.is_empty() {
                        retry.push(FlagGroup { flags: keep, ..g });
                    }
                }
            }
            None => left = refused,
        }
        left.extend(self.store_groups(retry).await?);
        // A keyword the new server will not take for another reason (too long) must not fail
        // the folder on every run either: the system flags of that change are set without the
        // keywords, which are returned. Anything else refused fails the folder.
        let mut failed = None;
        for (g, done) in left {
            let system: Vec<&str> = g
                .flags
                .iter()
                .copied()
                .filter(|f| f.starts_with('\\'))
                .collect();
            if system.len() < g.flags.len() && may_be_about_flags(&done) {
                let keywords: Vec<String> = g
                    .flags
                    .iter()
                    .filter(|f| !f.starts_with('\\'))
                    .map(|f| f.to_string())
                    .collect();
                let again = if system.is_empty() {
                    Vec::new()
                } else {
                    let g2 = FlagGroup {
                        flags: system,
                        op: g.op,
                        set: g.set.clone(),
                        uids: g.uids.clone(),
                    };
                    self.store_groups(vec![g2]).await?
                };
                if again.is_empty() {
                    tracing::debug!(
                        "{}: UID {}: the new server refused the keywords {} ({}); set without them",
                        self.label,
                        g.set,
                        keywords.join(" "),
                        done.describe()
                    );
                    if g.op == ADD_FLAGS {
                        for u in &g.uids {
                            not_set
                                .entry(*u)
                                .or_default()
                                .extend(keywords.iter().cloned());
                        }
                    }
                    continue;
                }
            }
            failed.get_or_insert_with(|| self.no("UID STORE failed", &done, Scope::Folder));
        }
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(not_set
            .into_iter()
            .filter_map(|(u, mut kw)| {
                kw.sort();
                kw.dedup();
                Uid::new(u).map(|u| (u, kw))
            })
            .collect())
    }

    fn folder_keywords(&self, name: &MailboxPath) -> Option<&BTreeSet<String>> {
        self.keywords.defined(name)
    }

    async fn expunge_uids(&mut self, uids: &[Uid]) -> Result<()> {
        self.refuse_if_read_only("EXPUNGE")?;
        if uids.is_empty() {
            return Ok(());
        }
        if !self.caps.has("UIDPLUS") {
            // A plain EXPUNGE would also remove messages someone else marked \Deleted.
            return Err(Error::new(
                Scope::Folder,
                Retry::Fix,
                format!(
                    "{}: cannot delete only imapshift's messages: the server lacks UIDPLUS (UID EXPUNGE)",
                    self.label
                ),
            ));
        }
        let mut sorted: Vec<u32> = uids.iter().map(|u| u.get()).collect();
        sorted.sort_unstable();
        let set = format_uid_set(&sorted);
        let t1 = self
            .wire
            .send(&[
                Arg::Raw("UID STORE"),
                Arg::Raw(&set),
                Arg::Raw("+FLAGS.SILENT (\\Deleted)"),
            ])
            .await?;
        let t2 = self
            .wire
            .send(&[Arg::Raw("UID EXPUNGE"), Arg::Raw(&set)])
            .await?;
        let d1 = self.wire.finish(&t1).await?;
        let d2 = self.wire.finish(&t2).await?;
        if !d1.is_ok() {
            return Err(self.no("UID STORE \\Deleted failed", &d1, Scope::Folder));
        }
        if !d2.is_ok() {
            return Err(self.no("UID EXPUNGE failed", &d2, Scope::Folder));
        }
        Ok(())
    }

    async fn list_messages(&mut self, status: &FolderStatus) -> Result<Vec<MsgSummary>> {
        // Sequence-number chunks, all pipelined: robust against sparse UIDs.
        let mut tags = Vec::new();
        let mut start = 1u32;
        while start <= status.messages {
            let end = (start + LIST_CHUNK - 1).min(status.messages);
            let range = format!("{start}:{end}");
            tags.push(
                self.wire
                    .send(&[
                        Arg::Raw("FETCH"),
                        Arg::Raw(&range),
                        Arg::Raw("(UID RFC822.SIZE FLAGS)"),
                    ])
                    .await?,
            );
            start = end + 1;
        }
        // Replies merged by sequence number across all chunks: an unsolicited flag update for
        // a message of one chunk may come with the answer to another.
        let mut by_seq: std::collections::BTreeMap<u32, FetchItems> = Default::default();
        for tag in tags {
            let done = self.wire.finish(&tag).await?;
            if !done.is_ok() {
                return Err(self.no("FETCH (listing) failed", &done, Scope::Folder));
            }
            for f in self.fetch_replies(done, "a listing")? {
                if f.seq == 0 || f.seq > status.messages {
                    continue; // mail that arrived after EXAMINE: the next run lists it
                }
                match by_seq.entry(f.seq) {
                    std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(f),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(f);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(status.messages as usize);
        {
            for f in by_seq.into_values() {
                let (Some(uid), Some(size), Some(flags)) =
                    (f.uid.and_then(Uid::new), f.size, f.flags)
                else {
                    // A message missing from the listing would look expunged (and with
                    // propagation its copy would be deleted): never guess.
                    return Err(Error::new(
                        Scope::Folder,
                        Retry::Transient,
                        format!(
                            "{}: the listing reply for message {} lacks UID, RFC822.SIZE or FLAGS",
                            self.label, f.seq
                        ),
                    ));
                };
                out.push(MsgSummary { uid, size, flags });
            }
        }
        out.sort_by_key(|m| m.uid);
        out.dedup_by_key(|m| m.uid);
        if out.len() != status.messages as usize {
            return Err(Error::new(
                Scope::Folder,
                Retry::Transient,
                format!(
                    "{}: the listing has {} messages, EXAMINE said {}: not trusting it",
                    self.label,
                    out.len(),
                    status.messages
                ),
            ));
        }
        Ok(out)
    }

    async fn list_changes(
        &mut self,
        since_modseq: u64,
        from: Uid,
    ) -> Result<(Vec<MsgSummary>, Vec<(Uid, Vec<String>)>)> {
        let range = format!("{}:*", from.get());
        let changed = format!("(CHANGEDSINCE {since_modseq})");
        let t1 = self
            .wire
            .send(&[
                Arg::Raw("UID FETCH"),
                Arg::Raw(&range),
                Arg::Raw("(UID RFC822.SIZE FLAGS)"),
            ])
            .await?;
        let t2 = self
            .wire
            .send(&[
                Arg::Raw("UID FETCH"),
                Arg::Raw("1:*"),
                Arg::Raw("(UID FLAGS)"),
                Arg::Raw(&changed),
            ])
            .await?;
        let d1 = self.wire.finish(&t1).await?;
        let d2 = self.wire.finish(&t2).await?;
        if !d1.is_ok() {
            return Err(self.no("UID FETCH (new messages) failed", &d1, Scope::Folder));
        }
        if !d2.is_ok() {
            return Err(self.no("UID FETCH CHANGEDSINCE failed", &d2, Scope::Folder));
        }
        // The two FETCHes may run in parallel on the server: pool their replies, sort by UID.
        let mut replies = self.fetch_replies(d1, "new messages")?;
        replies.extend(self.fetch_replies(d2, "changed flags")?);
        // By UID: a new message may be in both answers (its size only in the first).
        let mut by_uid: std::collections::BTreeMap<Uid, (Option<u32>, Vec<String>)> =
            Default::default();
        for f in replies {
            let (Some(uid), Some(flags)) = (f.uid.and_then(Uid::new), f.flags) else {
                continue;
            };
            let e = by_uid.entry(uid).or_insert((None, flags));
            e.0 = e.0.or(f.size);
        }
        let mut fresh = Vec::new();
        let mut changed = Vec::new();
        for (uid, (size, flags)) in by_uid {
            if uid < from {
                changed.push((uid, flags));
                continue;
            }
            let Some(size) = size else {
                // A new message without its size would be left out of the plan: never guess.
                return Err(Error::new(
                    Scope::Folder,
                    Retry::Transient,
                    format!(
                        "{}: the reply for new UID {uid} lacks RFC822.SIZE",
                        self.label
                    ),
                ));
            };
            fresh.push(MsgSummary { uid, size, flags });
        }
        Ok((fresh, changed))
    }

    async fn uid_search(&mut self, criteria: &str) -> Result<Vec<Uid>> {
        let done = self
            .wire
            .command(&[Arg::Raw("UID SEARCH"), Arg::Raw(criteria)])
            .await?;
        if !done.is_ok() {
            return Err(self.no("UID SEARCH failed", &done, Scope::Folder));
        }
        let mut out = Vec::new();
        for r in &done.untagged {
            if let Response::Data { kind, rest } = r {
                if kind == "SEARCH" {
                    for v in rest {
                        match v.as_u32().and_then(Uid::new) {
                            Some(u) => out.push(u),
                            None => return Err(self.malformed(format!("SEARCH result {v:?}"))),
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    async fn fetch_messages(&mut self, uids: &[Uid]) -> Result<Vec<Message>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted: Vec<u32> = uids.iter().map(|u| u.get()).collect();
        sorted.sort_unstable();
        self.fetch_set(&format_uid_set(&sorted)).await
    }

    async fn fetch_messages_from(&mut self, from: Uid) -> Result<Vec<Message>> {
        let range = format!("{}:*", from.get());
        let mut msgs = self.fetch_set(&range).await?;
        // `n:*` also returns the last message when n is beyond it.
        msgs.retain(|m| m.uid >= from);
        Ok(msgs)
    }

    async fn append(
        &mut self,
        folder: &MailboxPath,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<AppendResult>> {
        self.refuse_if_read_only("APPEND")?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let examined = self.examined.as_ref() == Some(folder);
        if examined && self.quirks.on(Quirk::AppendToExamined) {
            return self.append_leaving_examined(folder, items).await;
        }
        let mut results = self.append_batch(folder, items).await?;
        // A server not known for the quirk that refuses APPENDs into the folder it has open
        // read-only shows it now: learn it, and send the refused messages again.
        let refused: Vec<usize> = (0..results.len())
            .filter(|&i| matches!(results[i], AppendResult::Refused(_)))
            .collect();
        if examined && !refused.is_empty() && self.quirks.learn(Quirk::AppendToExamined) {
            tracing::info!(
                "{}: APPEND into the folder open read-only was refused: leaving it first from now on (quirk append-to-examined)",
                self.label
            );
            let again: Vec<AppendItem<'_>> = refused.iter().map(|&i| items[i]).collect();
            let retried = self.append_leaving_examined(folder, &again).await?;
            for (i, r) in refused.into_iter().zip(retried) {
                results[i] = r;
            }
        }
        Ok(results)
    }

    async fn storage_quota(
        &mut self,
        folder: &MailboxPath,
    ) -> Result<Option<crate::store::StorageQuota>> {
        if !self.caps.has("QUOTA") {
            return Ok(None);
        }
        let done = self
            .wire
            .command(&[Arg::Raw("GETQUOTAROOT"), Arg::Str(folder.as_str())])
            .await?;
        if !done.is_ok() {
            return Err(self.no(
                &format!("GETQUOTAROOT {folder} failed"),
                &done,
                Scope::Folder,
            ));
        }
        wire::replies::storage_quota(&done.untagged).map_err(|e| self.malformed(e))
    }

    async fn idle(&mut self, max: std::time::Duration) -> Result<Option<bool>> {
        if !self.caps.has("IDLE") {
            return Ok(None);
        }
        Ok(Some(self.wire.idle(max).await?))
    }

    async fn logout(&mut self) {
        if !self.wire.is_broken() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.wire.command(&[Arg::Raw("LOGOUT")]),
            )
            .await;
        }
    }
}

/// A header listing as (UID, fingerprint, flags).
fn triples(v: Vec<crate::store::Described>) -> Vec<(Uid, Fingerprint, Vec<String>)> {
    v.into_iter().map(|d| (d.uid, d.fp, d.flags)).collect()
}

fn normalize_inbox(name: String) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name
    }
}

const ADD_FLAGS: &str = "+FLAGS.SILENT";
const REMOVE_FLAGS: &str = "-FLAGS.SILENT";

/// One `UID STORE`: `+FLAGS.SILENT` or `-FLAGS.SILENT` of these flags on these UIDs.
struct FlagGroup<'a> {
    op: &'static str,
    flags: Vec<&'a str>,
    set: String,
    uids: Vec<u32>,
}

/// One batch's messages as sent: the folder, the items, each one's flags as sent (sendable, and
/// without keywords the folder is known not to take) and quoted INTERNALDATE.
struct BatchCtx<'a, 'b> {
    folder: &'a MailboxPath,
    items: &'a [AppendItem<'b>],
    sent: &'a [Vec<&'b str>],
    dates: &'a [Option<String>],
}

impl ImapSession {
    /// The APPENDs of one batch (MULTIAPPEND, or single APPENDs pipelined where LITERAL+
    /// allows), into a folder that is not open read-only.
    async fn append_batch(
        &mut self,
        folder: &MailboxPath,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<AppendResult>> {
        let binary = self.caps.has("BINARY");
        let limit = self.append_limit();
        let mut results: Vec<Option<AppendResult>> = vec![None; items.len()];
        // Messages with NUL need a literal8; without BINARY they cannot be sent at all. One over
        // the server's APPENDLIMIT is not sent either: Cyrus answers it with BYE (quirk
        // `appendlimit-bye`, docs/server-quirks.md), which would cost the connection.
        let mut sendable = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if let Some(max) = limit.filter(|&max| it.body.len() as u64 > max) {
                results[i] = Some(AppendResult::Refused(format!(
                    "the message ({} bytes) is larger than the new server's APPENDLIMIT ({max} bytes)",
                    it.body.len()
                )));
            } else if memchr::memchr(0, it.body).is_some() && !binary {
                results[i] = Some(AppendResult::Refused(
                    "message contains NUL bytes and the new server lacks the BINARY extension"
                        .into(),
                ));
            } else {
                sendable.push(i);
            }
        }
        // Flags a server cannot take (an old server's `\\Foo`, a keyword with a space) are never
        // sent: dropped, and reported with the message.
        let unsendable: Vec<Vec<String>> = items
            .iter()
            .map(|it| {
                it.flags
                    .iter()
                    .filter(|f| is_copyable_flag(f) && !is_sendable_flag(f))
                    .cloned()
                    .collect()
            })
            .collect();
        // Keywords the folder is known not to take (its PERMANENTFLAGS without `\*`, or a refusal
        // as one too many earlier in this session: quirk `cyrus-keyword-limit`) are not sent:
        // dropped for good and reported, the message copied with the others.
        let limits = self
            .keywords
            .limits(folder)
            .filter(|l| !l.new_ones)
            .cloned();
        let mut refused_kw: Vec<Vec<String>> = vec![Vec::new(); items.len()];
        let sent: Vec<Vec<&str>> = items
            .iter()
            .zip(&mut refused_kw)
            .map(|(it, out)| {
                let fl: Vec<&str> = it
                    .flags
                    .iter()
                    .map(String::as_str)
                    .filter(|f| is_sendable_flag(f))
                    .collect();
                let Some(l) = &limits else { return fl };
                let (keep, drop) = keywords::split_for_folder(&fl, l);
                out.extend(drop.into_iter().map(String::from));
                keep
            })
            .collect();
        let flag_lists: Vec<String> = sent
            .iter()
            .map(|fl| format!("({})", fl.join(" ")))
            .collect();
        let dates: Vec<Option<String>> =
            items.iter().map(|it| quote_date(it.internaldate)).collect();
        if sendable.len() > 1 && self.caps.has("MULTIAPPEND") {
            let mut args: Vec<Arg<'_>> = vec![Arg::Raw("APPEND"), Arg::Str(folder.as_str())];
            for &i in &sendable {
                push_message(
                    &mut args,
                    &flag_lists[i],
                    dates[i].as_deref(),
                    items[i].body,
                );
            }
            let done = match self.wire.send(&args).await {
                Ok(tag) => self.wire.finish(&tag).await?,
                Err(e) if e.scope == Scope::Message => {
                    // A synchronizing literal was refused: read the tagged reply that ended it.
                    self.wire.finish_refused().await?
                }
                Err(e) => return Err(e),
            };
            if done.is_ok() {
                let (uv, uids) = self.appenduid(&done);
                let uids = uids.filter(|u| u.len() == sendable.len());
                for (k, &i) in sendable.iter().enumerate() {
                    results[i] = Some(AppendResult::Stored {
                        uidvalidity: uv,
                        uid: uids.as_ref().and_then(|u| Uid::new(u[k])),
                        dropped_flags: unsendable[i].clone(),
                        refused_keywords: refused_kw[i].clone(),
                    });
                }
                return Ok(results.into_iter().map(Option::unwrap).collect());
            }
            if done.status == wire::Status::Bad && self.wire.literal_plus() {
                // The server stopped parsing in the middle: it may read the rest of our
                // literals as commands. Never use this connection again; the engine retries
                // the batch one message at a time on a new one.
                return Err(self
                    .wire
                    .poison(format!("MULTIAPPEND answered BAD ({})", done.describe())));
            }
            // MULTIAPPEND is all-or-nothing, and a NO (one message's keyword the server will
            // not take, a size it refuses) says nothing about the others: find the refused ones
            // with single appends.
            tracing::debug!(
                "{}: MULTIAPPEND of {} messages refused ({}); retrying one by one",
                self.label,
                sendable.len(),
                done.describe()
            );
        }
        // Single APPENDs, pipelined: with LITERAL+ in one stream; without it on synchronizing
        // literals (waiting only for each `+`), unless the server delays that `+` until the
        // previous reply is ACKed (quirk `delayed-continuation`): then each reply is waited for.
        let wait_each = self.waits_for_each_append();
        let mut pending = Vec::new();
        let mut refused = Vec::new();
        for &i in &sendable {
            let mut args: Vec<Arg<'_>> = vec![Arg::Raw("APPEND"), Arg::Str(folder.as_str())];
            push_message(
                &mut args,
                &flag_lists[i],
                dates[i].as_deref(),
                items[i].body,
            );
            match self.wire.send(&args).await {
                Ok(tag) => pending.push((i, tag)),
                Err(e) if e.scope == Scope::Message => {
                    let done = self.wire.finish_refused().await?;
                    results[i] = Some(AppendResult::Refused(done.describe()));
                    refused.push((i, done));
                }
                Err(e) => return Err(e),
            }
            if wait_each {
                let sent = std::mem::take(&mut pending);
                self.finish_appends(sent, &mut results, &mut refused)
                    .await?;
            }
        }
        self.finish_appends(pending, &mut results, &mut refused)
            .await?;
        // A message refused because its folder takes no new keyword (Cyrus's limit, or a
        // PERMANENTFLAGS without `\*`) is sent again with the keywords the folder holds.
        let b = BatchCtx {
            folder,
            items,
            sent: &sent,
            dates: &dates,
        };
        let refused = self
            .retry_within_folder_keywords(&b, refused, &mut results)
            .await?;
        // A message refused for its flags (an invalid system flag, a keyword too long) is still
        // worth copying: again with the standard system flags only, then with none, one at a
        // time (this costs round trips only for refused messages). Refusals for size or quota
        // are final.
        for (i, done) in refused {
            let final_code = !may_be_about_flags(&done);
            let sent: Vec<&str> = sent[i].clone();
            if final_code || sent.is_empty() {
                continue;
            }
            let system: Vec<&str> = sent
                .iter()
                .copied()
                .filter(|f| f.starts_with('\\'))
                .collect();
            // First without keywords longer than the usual limit (Dovecot's
            // mail_max_keyword_length is 50), keeping the others.
            let short: Vec<&str> = sent
                .iter()
                .copied()
                .filter(|f| f.starts_with('\\') || f.len() <= MAX_USUAL_KEYWORD)
                .collect();
            let mut tries: Vec<Vec<&str>> = Vec::new();
            if short.len() < sent.len() && !short.is_empty() {
                tries.push(short);
            }
            if system.len() < sent.len() && !system.is_empty() && !tries.contains(&system) {
                tries.push(system);
            }
            tries.push(Vec::new());
            for keep in tries {
                let fl = format!("({})", keep.join(" "));
                let mut args: Vec<Arg<'_>> = vec![Arg::Raw("APPEND"), Arg::Str(folder.as_str())];
                push_message(&mut args, &fl, dates[i].as_deref(), items[i].body);
                let again = match self.wire.send(&args).await {
                    Ok(tag) => self.wire.finish(&tag).await?,
                    Err(e) if e.scope == Scope::Message => self.wire.finish_refused().await?,
                    Err(e) => return Err(e),
                };
                if again.status == wire::Status::Bad && self.wire.literal_plus() {
                    return Err(self
                        .wire
                        .poison(format!("APPEND answered BAD ({})", again.describe())));
                }
                if again.is_ok() {
                    let dropped: Vec<String> = sent
                        .iter()
                        .filter(|f| !keep.contains(f))
                        .map(|f| f.to_string())
                        .collect();
                    tracing::debug!(
                        "{}: a message was refused with its flags ({}); stored without {}",
                        self.label,
                        done.describe(),
                        dropped.join(" ")
                    );
                    results[i] = Some(self.stored(&again, dropped, Vec::new()));
                    break;
                }
            }
        }
        Ok(results
            .into_iter()
            .zip(unsendable)
            .zip(refused_kw)
            .map(|((r, bad), not_taken)| match r {
                Some(AppendResult::Stored {
                    uidvalidity,
                    uid,
                    mut dropped_flags,
                    mut refused_keywords,
                }) => {
                    dropped_flags.extend(bad);
                    refused_keywords.extend(not_taken);
                    AppendResult::Stored {
                        uidvalidity,
                        uid,
                        dropped_flags,
                        refused_keywords,
                    }
                }
                Some(r) => r,
                None => AppendResult::Refused("not sent".into()),
            })
            .collect())
    }

    /// Sends these `UID STORE`s pipelined; returns those refused, with the server's reply.
    async fn store_groups<'a>(
        &mut self,
        groups: Vec<FlagGroup<'a>>,
    ) -> Result<Vec<(FlagGroup<'a>, Done)>> {
        let mut tags = Vec::with_capacity(groups.len());
        for g in groups {
            let list = format!("({})", g.flags.join(" "));
            let tag = self
                .wire
                .send(&[
                    Arg::Raw("UID STORE"),
                    Arg::Raw(&g.set),
                    Arg::Raw(g.op),
                    Arg::Raw(&list),
                ])
                .await?;
            tags.push((tag, g));
        }
        let mut refused = Vec::new();
        for (tag, g) in tags {
            let done = self.wire.finish(&tag).await?;
            if !done.is_ok() {
                refused.push((g, done));
            }
        }
        Ok(refused)
    }

    /// Whether single APPENDs wait for each tagged reply before the next is sent: only on
    /// synchronizing literals, against a server with quirk `delayed-continuation`
    /// (docs/server-quirks.md).
    fn waits_for_each_append(&self) -> bool {
        !self.wire.literal_plus() && self.quirks.on(Quirk::DelayedContinuation)
    }

    /// Reads the tagged replies of single APPENDs already sent (`pending`: item index and tag),
    /// in order, into `results`; the refused ones also go to `refused`. A BAD with LITERAL+
    /// retires the connection (quirk `bad-mid-append`).
    async fn finish_appends(
        &mut self,
        pending: Vec<(usize, String)>,
        results: &mut [Option<AppendResult>],
        refused: &mut Vec<(usize, Done)>,
    ) -> Result<()> {
        for (i, tag) in pending {
            let done = self.wire.finish(&tag).await?;
            if done.is_ok() {
                results[i] = Some(self.stored(&done, Vec::new(), Vec::new()));
            } else if done.status == wire::Status::Bad && self.wire.literal_plus() {
                return Err(self
                    .wire
                    .poison(format!("APPEND answered BAD ({})", done.describe())));
            } else {
                results[i] = Some(AppendResult::Refused(done.describe()));
                refused.push((i, done));
            }
        }
        Ok(())
    }

    /// Refused messages of a batch whose folder takes no new keyword: Cyrus's `NO Too many user
    /// flags in mailbox` (quirk `cyrus-keyword-limit`), or a folder whose PERMANENTFLAGS lacks
    /// `\*`. What the folder holds is learned once per folder and session, by a SELECT after the
    /// batch's other messages went in (its FLAGS then name every keyword the folder has), and
    /// the refused messages are sent again, pipelined, with the keywords it holds; only the new
    /// ones are dropped (for good: [`AppendResult::Stored::refused_keywords`]). Later batches
    /// leave them out before sending. Returns the messages still refused.
    async fn retry_within_folder_keywords(
        &mut self,
        b: &BatchCtx<'_, '_>,
        refused: Vec<(usize, Done)>,
        results: &mut [Option<AppendResult>],
    ) -> Result<Vec<(usize, Done)>> {
        let has_keyword = |i: usize| b.sent[i].iter().any(|f| !f.starts_with('\\'));
        let too_many = refused
            .iter()
            .any(|(i, d)| has_keyword(*i) && keywords::is_too_many_keywords(d));
        let about_flags = refused
            .iter()
            .any(|(i, d)| has_keyword(*i) && may_be_about_flags(d));
        let known = self.keywords.limits(b.folder).is_some();
        if !about_flags || (known && !too_many && !self.keywords.is_limited(b.folder)) {
            return Ok(refused);
        }
        if !self.keywords.is_limited(b.folder) {
            match MailStore::select(self, b.folder).await {
                Ok(_) => {}
                Err(e) if e.scope <= Scope::Folder => {
                    tracing::debug!("{}: {e}", self.label);
                    return Ok(refused);
                }
                Err(e) => return Err(e),
            }
            if too_many {
                self.keywords.mark_full(b.folder);
            }
        }
        let Some(limits) = self
            .keywords
            .limits(b.folder)
            .filter(|l| !l.new_ones)
            .cloned()
        else {
            return Ok(refused);
        };
        let mut still = Vec::new();
        let mut pending = Vec::new();
        for (i, done) in refused {
            let (keep, drop) = keywords::split_for_folder(&b.sent[i], &limits);
            if drop.is_empty() || !may_be_about_flags(&done) {
                still.push((i, done));
                continue;
            }
            let fl = format!("({})", keep.join(" "));
            let mut args: Vec<Arg<'_>> = vec![Arg::Raw("APPEND"), Arg::Str(b.folder.as_str())];
            push_message(&mut args, &fl, b.dates[i].as_deref(), b.items[i].body);
            let drop: Vec<String> = drop.into_iter().map(String::from).collect();
            match self.wire.send(&args).await {
                Ok(tag) => pending.push((i, tag, drop)),
                Err(e) if e.scope == Scope::Message => {
                    still.push((i, self.wire.finish_refused().await?));
                }
                Err(e) => return Err(e),
            }
        }
        for (i, tag, drop) in pending {
            let again = self.wire.finish(&tag).await?;
            if again.status == wire::Status::Bad && self.wire.literal_plus() {
                return Err(self
                    .wire
                    .poison(format!("APPEND answered BAD ({})", again.describe())));
            }
            if again.is_ok() {
                tracing::debug!(
                    "{}: {}: the folder takes no new keywords; a message stored without {}",
                    self.label,
                    b.folder,
                    drop.join(" ")
                );
                results[i] = Some(self.stored(&again, Vec::new(), drop));
            } else {
                results[i] = Some(AppendResult::Refused(again.describe()));
                still.push((i, again));
            }
        }
        Ok(still)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(line: &str) -> Vec<Value> {
        let parts = wire::Parts {
            texts: vec![line.as_bytes().to_vec()],
            literals: vec![],
        };
        match wire::parse_response(parts).unwrap() {
            Response::Data { rest, .. } => rest,
            other => panic!("{other:?}"),
        }
    }

    /// NAMESPACE replies of Dovecot, Courier and Cyrus, and a malformed one.
    #[test]
    fn namespaces_of_three_vendors() {
        use crate::store::Namespace;
        let ns = |p: &str, d: char| Namespace {
            prefix: p.into(),
            delimiter: Some(d),
        };
        let n = parse_namespaces(&data(
            r#"* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))"#,
        ))
        .unwrap();
        assert_eq!(n.personal, Some(ns("", '/')));
        assert_eq!(n.others, vec![ns("Other Users/", '/'), ns("Shared/", '/')]);
        let n = parse_namespaces(&data(
            r##"* NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))"##,
        ))
        .unwrap();
        assert_eq!(n.personal, Some(ns("INBOX.", '.')));
        assert_eq!(n.others.len(), 2);
        let n =
            parse_namespaces(&data(r#"* NAMESPACE (("INBOX." ".")) (("user." ".")) NIL"#)).unwrap();
        assert_eq!(n.personal, Some(ns("INBOX.", '.')));
        let user = crate::types::MailboxPath::new("user.bob.Sent").unwrap();
        assert!(!n.is_personal(&user));
        assert!(n.is_personal(&crate::types::MailboxPath::new("INBOX.Sent").unwrap()));
        let n = parse_namespaces(&data(r#"* NAMESPACE NIL NIL NIL"#)).unwrap();
        assert_eq!(n.personal, None);
        assert!(parse_namespaces(&data(r#"* NAMESPACE (("x")) NIL NIL"#)).is_none());
    }

    #[test]
    fn lone_0x80_is_suspicious_utf8_is_not() {
        assert!(has_lone_0x80(b"T\x80e\x80"));
        assert!(
            !has_lone_0x80("caf\u{c0} \u{20ac}".as_bytes()),
            "UTF-8 continuation bytes"
        );
    }

    #[test]
    fn nul_restoration_only_when_exact() {
        assert!(is_nul_restoration(b"a\x80b", b"a\x00b"));
        assert!(
            !is_nul_restoration(b"a\x80b", b"a\x80b"),
            "nothing to restore"
        );
        assert!(
            !is_nul_restoration(b"a\x80b", b"a\x00c"),
            "other bytes changed"
        );
        assert!(!is_nul_restoration(b"a\x80b", b"a\x00bb"), "length changed");
        assert!(
            !is_nul_restoration(b"a\x81b", b"a\x00b"),
            "only 0x80 may become NUL"
        );
    }
}
