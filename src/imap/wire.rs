//! The raw IMAP command layer: our own tags, literal framing and response parsing.
//!
//! async-imap authenticates the connection; every command after login goes through this layer,
//! over the same stream (`Session::as_mut()`). Why not async-imap's own calls: its `append` drops
//! APPENDUID, it cannot send MULTIAPPEND or LITERAL+, it cannot pipeline, and after any parse
//! error it silently returns empty results (see docs/imap-layer.md). Here every reply is framed
//! by hand (lines plus `{n}` / `~{n}` literals, so message bytes arrive untouched), parsed into a
//! small generic value tree, and any malformed reply makes the connection unusable
//! ([`Wire::is_broken`]) so the caller reconnects instead of trusting an empty result.

pub mod replies;

use crate::error::{Error, Retry, Scope};
use crate::imap::stream::Buffered;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Longest response line (without literals) we accept.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Largest literal we accept (one message body).
const MAX_LITERAL: usize = 1024 * 1024 * 1024;
/// Deepest parenthesis nesting we accept: far past any reply (a BODYSTRUCTURE nests a few
/// dozen levels), and a bound on the parser's recursion (a line of `(` overflowed the stack).
const MAX_DEPTH: usize = 1000;

/// The status word of a status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

/// A response code: `[NAME args]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    /// Upper-cased name (`APPENDUID`, `UIDVALIDITY`, `TRYCREATE`).
    pub name: String,
    pub args: String,
}

/// A parsed value of an untagged data response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Atom(String),
    /// A quoted string or a literal: raw bytes.
    Str(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

impl Value {
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }
    /// Atom or string as text (lossy for non-UTF-8).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
    pub fn as_u32(&self) -> Option<u32> {
        self.as_atom()?.parse().ok()
    }
    pub fn as_u64(&self) -> Option<u64> {
        self.as_atom()?.parse().ok()
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// One server response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `+ text`
    Continue(String),
    /// `TAG OK|NO|BAD [code] text`
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`
    State {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `* 12 EXISTS`, `* 12 FETCH (...)`: number, upper-cased kind, the rest.
    Numbered {
        n: u32,
        kind: String,
        rest: Vec<Value>,
    },
    /// `* LIST ...`, `* CAPABILITY ...`, `* SEARCH ...`: upper-cased kind, the rest.
    Data { kind: String, rest: Vec<Value> },
}

/// The end of one command: its tagged status and the untagged responses that came with it.
#[derive(Debug)]
pub struct Done {
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
    pub untagged: Vec<Response>,
}

impl Status {
    /// The word as IMAP spells it (`NO`), for messages.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::PreAuth => "PREAUTH",
        }
    }
}

impl Done {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
    /// `NO [CODE] text` as one line for messages.
    pub fn describe(&self) -> String {
        let st = self.status.word();
        match &self.code {
            Some(c) if c.args.is_empty() => format!("{st} [{}] {}", c.name, self.text),
            Some(c) => format!("{st} [{} {}] {}", c.name, c.args, self.text),
            None => format!("{st} {}", self.text),
        }
    }
}

/// A piece of a command.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    /// Written verbatim (command names, atoms, parenthesised lists, sequence sets).
    Raw(&'a str),
    /// A string sent as a quoted string, or as a literal when it cannot be quoted.
    Str(&'a str),
    /// Bytes sent as a literal (`{n}` or `{n+}`).
    Literal(&'a [u8]),
    /// Bytes sent as a BINARY literal8 (`~{n}`): may contain NUL.
    Literal8(&'a [u8]),
}

/// What the layer needs from the stream owner: the buffered stream.
pub trait Io: Send {
    fn io(&mut self) -> &mut Buffered;
}

/// The raw layer over an authenticated connection.
pub struct Wire<S: Io> {
    owner: S,
    next_tag: u32,
    timeout: Duration,
    /// Non-synchronizing literals (LITERAL+ or LITERAL- for small ones) are allowed.
    pub literal_plus: bool,
    broken: bool,
    /// Inside IDLE (between `IDLE` and the reply to `DONE`): a future dropped there leaves the
    /// server idling, so no other command may follow on this connection.
    idling: bool,
    /// Responses read ahead (while waiting for a continuation), to hand out first.
    held: VecDeque<Response>,
    /// Names the connection in errors (`old server imap.example:993 (alice)`).
    label: String,
    /// Tag of a command whose synchronizing literal the server refused.
    refused: Option<String>,
    /// Tags sent and not finished yet.
    outstanding: std::collections::HashSet<String>,
    /// Completions that arrived before their `finish` was called.
    early: std::collections::HashMap<String, Done>,
}

impl<S: Io> Wire<S> {
    pub fn new(owner: S, timeout: Duration, label: String) -> Self {
        Wire {
            owner,
            next_tag: 1,
            timeout,
            literal_plus: false,
            broken: false,
            idling: false,
            held: VecDeque::new(),
            label,
            refused: None,
            outstanding: Default::default(),
            early: Default::default(),
        }
    }

    /// True after any I/O error, timeout or malformed reply: the connection must not be reused.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Marks the connection unusable (the server may have read our data as commands) and
    /// returns the transient error that makes the caller reconnect.
    pub fn poison(&mut self, what: impl std::fmt::Display) -> Error {
        self.fail(what)
    }

    /// Whether literals go out without waiting for the server (LITERAL+): a BAD in the middle of
    /// a command then means the server may read the rest of our data as commands.
    pub fn literal_plus(&self) -> bool {
        self.literal_plus
    }

    fn fail(&mut self, what: impl std::fmt::Display) -> Error {
        self.broken = true;
        Error::new(
            Scope::Account,
            Retry::Transient,
            format!("{}: {what}", self.label),
        )
    }

    /// Sends one command and reads until its tagged response.
    pub async fn command(&mut self, args: &[Arg<'_>]) -> Result<Done, Error> {
        let tag = self.send(args).await?;
        self.finish(&tag).await
    }

    /// Sends one command without waiting for its completion (pipelining), except that
    /// synchronizing literals wait for the server's `+`. Returns its tag for [`Wire::finish`].
    pub async fn send(&mut self, args: &[Arg<'_>]) -> Result<String, Error> {
        if self.broken || self.idling {
            return Err(self.fail("connection is unusable after an earlier error"));
        }
        let tag = format!("x{}", self.next_tag);
        self.next_tag += 1;
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        buf.extend_from_slice(tag.as_bytes());
        for (i, a) in args.iter().enumerate() {
            if i > 0 || !matches!(a, Arg::Raw(s) if s.is_empty()) {
                buf.push(b' ');
            }
            match *a {
                Arg::Raw(s) => buf.extend_from_slice(s.as_bytes()),
                Arg::Str(s) => {
                    if can_quote(s) {
                        buf.push(b'"');
                        for b in s.bytes() {
                            if b == b'"' || b == b'\\' {
                                buf.push(b'\\');
                            }
                            buf.push(b);
                        }
                        buf.push(b'"');
                    } else {
                        self.write_literal(&mut buf, s.as_bytes(), false, &tag)
                            .await?;
                    }
                }
                Arg::Literal(bytes) => self.write_literal(&mut buf, bytes, false, &tag).await?,
                Arg::Literal8(bytes) => self.write_literal(&mut buf, bytes, true, &tag).await?,
            }
        }
        buf.extend_from_slice(b"\r\n");
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!("{} C: {tag} {}", self.label, summarize(args));
        }
        self.outstanding.insert(tag.clone());
        self.write_all(&buf).await?;
        self.flush().await?;
        Ok(tag)
    }

    /// Sends `bytes`. The timeout is for inactivity: each chunk of up to `IO_CHUNK` bytes must
    /// go out within it, so a large message on a slow link never times out while it moves.
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let t = self.timeout;
        for chunk in bytes.chunks(IO_CHUNK) {
            match tokio::time::timeout(t, self.owner.io().write_all(chunk)).await {
                Err(_) => {
                    return Err(self.fail(format!(
                        "the server took nothing for {}s while we were sending (timeout)",
                        t.as_secs()
                    )))
                }
                Ok(Err(e)) => return Err(self.fail(format!("connection lost while sending: {e}"))),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let t = self.timeout;
        match tokio::time::timeout(t, self.owner.io().flush()).await {
            Err(_) => Err(self.fail("timed out while sending")),
            Ok(Err(e)) => Err(self.fail(format!("connection lost while sending: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Appends `{n}` (or `{n+}` / `~{n}`) to `buf`; for a synchronizing literal sends `buf`,
    /// waits for `+`, then continues with the literal bytes.
    async fn write_literal(
        &mut self,
        buf: &mut Vec<u8>,
        bytes: &[u8],
        binary: bool,
        tag: &str,
    ) -> Result<(), Error> {
        if binary {
            buf.push(b'~');
        }
        if self.literal_plus {
            buf.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
            // The command buffer stays small: once a literal would take it past 16 KiB, what
            // is buffered and the literal go straight to the (buffered) stream. A MULTIAPPEND
            // of many small messages used to be copied whole into `buf` (twice the batch).
            if buf.len() + bytes.len() > 16 * 1024 {
                self.write_all(buf).await?;
                buf.clear();
                self.write_all(bytes).await?;
            } else {
                buf.extend_from_slice(bytes);
            }
            return Ok(());
        }
        buf.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        self.write_all(buf).await?;
        self.flush().await?;
        buf.clear();
        // Wait for the continuation; keep anything else for later.
        let mut kept = Vec::new();
        loop {
            let r = self.read_wire().await?;
            match r {
                Response::Continue(_) => break,
                Response::Tagged { tag: ref t, .. } if t == tag => {
                    // The server refused the literal: the command is over.
                    kept.push(r);
                    // Read after everything already held: keep arrival order.
                    self.held.extend(kept);
                    self.refused = Some(tag.to_string());
                    return Err(Error::new(
                        Scope::Message,
                        Retry::Permanent,
                        "server refused the literal".to_string(),
                    ));
                }
                other => kept.push(other),
            }
        }
        self.held.extend(kept);
        self.write_all(bytes).await?;
        Ok(())
    }

    /// After [`Wire::send`] failed with a `Message`-scoped error (the server refused a
    /// synchronizing literal), returns that command's tagged reply.
    pub async fn finish_refused(&mut self) -> Result<Done, Error> {
        match self.refused.take() {
            Some(tag) => self.finish(&tag).await,
            None => Err(self.fail("no refused command to finish")),
        }
    }

    /// Reads responses until the tagged completion of `tag`. A `BYE` ends the connection.
    ///
    /// Servers may run pipelined commands in parallel (Dovecot does for FETCH): their untagged
    /// replies can interleave and they can complete out of order. A completion for another
    /// outstanding command is kept for its own `finish`, with the untagged replies seen so far;
    /// callers of pipelined commands therefore pool untagged replies across all of them.
    pub async fn finish(&mut self, tag: &str) -> Result<Done, Error> {
        if let Some(done) = self.early.remove(tag) {
            self.outstanding.remove(tag);
            return Ok(done);
        }
        let mut untagged = Vec::new();
        loop {
            let r = self.next_response().await?;
            match r {
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } => {
                    if t == tag {
                        self.outstanding.remove(tag);
                        return Ok(Done {
                            status,
                            code,
                            text,
                            untagged,
                        });
                    }
                    if self.outstanding.contains(&t) {
                        let done = Done {
                            status,
                            code,
                            text,
                            untagged: std::mem::take(&mut untagged),
                        };
                        self.early.insert(t, done);
                        continue;
                    }
                    return Err(self.fail(format!(
                        "reply for unknown command tag \"{t}\" while waiting for {tag}"
                    )));
                }
                Response::State {
                    status: Status::Bye,
                    text,
                    ..
                } => {
                    return Err(self.fail(format!("server closed the session: BYE {text}")));
                }
                Response::Continue(_) => {
                    return Err(self.fail("unexpected continuation request"));
                }
                other => untagged.push(other),
            }
        }
    }

    async fn next_response(&mut self) -> Result<Response, Error> {
        if let Some(r) = self.held.pop_front() {
            return Ok(r);
        }
        self.read_wire().await
    }

    /// IDLE (RFC 2177) until the server reports new mail in the selected folder (EXISTS,
    /// RECENT) or `max` passes, then DONE. Returns whether it reported new mail. Waiting uses the
    /// stream's readiness (cancel-safe), never a half-read reply; a future dropped while idling
    /// leaves the connection marked unusable.
    pub async fn idle(&mut self, max: Duration) -> Result<bool, Error> {
        fn new_mail(r: &Response) -> bool {
            matches!(r, Response::Numbered { kind, .. } if kind == "EXISTS" || kind == "RECENT")
        }
        if self.broken || self.idling {
            return Err(self.fail("connection is unusable after an earlier error"));
        }
        let tag = format!("x{}", self.next_tag);
        self.next_tag += 1;
        self.idling = true;
        self.write_all(format!("{tag} IDLE\r\n").as_bytes()).await?;
        self.flush().await?;
        self.outstanding.insert(tag.clone());
        // New mail may be reported before the continuation too.
        let mut changed = false;
        loop {
            let r = self.read_wire().await?;
            if let Some((status, text)) = self.idle_ended(&r, &tag) {
                return Err(self.fail(format!("IDLE refused: {} {text}", status.word())));
            }
            match r {
                Response::Continue(_) => break,
                other => {
                    changed |= new_mail(&other);
                    self.held.push_back(other);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + max;
        while !changed {
            let ready = tokio::time::timeout_at(deadline, self.owner.io().fill_buf()).await;
            match ready {
                Err(_) => break,
                Ok(Err(e)) => return Err(self.fail(format!("connection lost while idling: {e}"))),
                Ok(Ok([])) => return Err(self.fail("server closed the connection while idling")),
                Ok(Ok(_)) => {}
            }
            let r = self.read_wire().await?;
            // The server ended IDLE itself (some do after a while): no DONE then.
            if let Some((status, text)) = self.idle_ended(&r, &tag) {
                if status != Status::Ok {
                    return Err(self.fail(format!("IDLE ended with {} {text}", status.word())));
                }
                return Ok(false);
            }
            match r {
                r if new_mail(&r) => changed = true,
                Response::State {
                    status: Status::Bye,
                    text,
                    ..
                } => return Err(self.fail(format!("server said BYE while idling: {text}"))),
                _ => {}
            }
        }
        self.write_all(b"DONE\r\n").await?;
        self.flush().await?;
        let done = self.finish(&tag).await?;
        self.idling = false;
        if !done.is_ok() {
            return Err(self.fail(format!("IDLE ended with {}", done.describe())));
        }
        Ok(changed)
    }

    /// Whether `r` is the tagged reply to the IDLE `tag`, which ends it (no DONE follows): then
    /// the command is over, and its status and text are given back.
    fn idle_ended(&mut self, r: &Response, tag: &str) -> Option<(Status, String)> {
        let Response::Tagged {
            tag: t,
            status,
            text,
            ..
        } = r
        else {
            return None;
        };
        if t != tag {
            return None;
        }
        self.outstanding.remove(tag);
        self.idling = false;
        Some((*status, text.clone()))
    }

    /// Reads and parses one response from the stream.
    pub async fn read_wire(&mut self) -> Result<Response, Error> {
        if self.broken {
            return Err(self.fail("connection is unusable after an earlier error"));
        }
        let parts = match read_parts(self.owner.io(), self.timeout).await {
            Err(e) => return Err(self.fail(e)),
            Ok(p) => p,
        };
        match parse_response(parts) {
            Ok(r) => {
                if tracing::enabled!(tracing::Level::TRACE) {
                    tracing::trace!("{} S: {}", self.label, describe_response(&r));
                }
                Ok(r)
            }
            Err(e) => Err(self.fail(format!("malformed reply: {e}"))),
        }
    }

    /// The stream owner (to log out or drop).
    pub fn owner_mut(&mut self) -> &mut S {
        &mut self.owner
    }
}

/// A command for the trace log: literals shown by size only.
fn summarize(args: &[Arg<'_>]) -> String {
    args.iter()
        .map(|a| match a {
            Arg::Raw(s) => s.to_string(),
            Arg::Str(s) => format!("{s:?}"),
            Arg::Literal(b) => format!("{{{}}}", b.len()),
            Arg::Literal8(b) => format!("~{{{}}}", b.len()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A response for the trace log, without message bodies.
fn describe_response(r: &Response) -> String {
    match r {
        Response::Numbered { n, kind, .. } => format!("* {n} {kind} ..."),
        Response::Data { kind, rest } => {
            let s = format!("* {kind} {rest:?}");
            s.chars().take(300).collect()
        }
        other => format!("{other:?}"),
    }
}

fn can_quote(s: &str) -> bool {
    s.len() < 1024 && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A response as read: text pieces, each but the last followed by a literal.
#[derive(Debug)]
pub(crate) struct Parts {
    pub texts: Vec<Vec<u8>>,
    pub literals: Vec<Vec<u8>>,
}

/// Bytes moved per timed read or write: the timeout is for inactivity, not for a whole reply.
const IO_CHUNK: usize = 256 * 1024;

fn idle_timeout(idle: Duration) -> String {
    format!("no data from the server for {}s (timeout)", idle.as_secs())
}

fn trickle_timeout(idle: Duration, got: usize) -> String {
    format!(
        "a reply line not complete after {}s, only {got} bytes came: the server stalls or trickles (timeout)",
        idle.as_secs()
    )
}

/// Reads one line. Like a literal's chunks, each `IO_CHUNK` bytes of a line must come within
/// `idle`: a server that trickles a byte now and then (each before `idle`) would otherwise hold
/// the session for as long as it likes.
async fn read_line_limited(
    io: &mut Buffered,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), String> {
    let start = out.len();
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut chunk_start = start;
    loop {
        let buf = tokio::time::timeout_at(deadline, io.fill_buf())
            .await
            .map_err(|_| match out.len() - start {
                0 => idle_timeout(idle),
                got => trickle_timeout(idle, got),
            })?
            .map_err(|e| format!("connection lost: {e}"))?;
        if buf.is_empty() {
            return Err("server closed the connection".into());
        }
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&buf[..=pos]);
            io.consume(pos + 1);
            return Ok(());
        }
        let n = buf.len();
        out.extend_from_slice(buf);
        io.consume(n);
        if out.len() > MAX_LINE {
            return Err(format!("reply line longer than {MAX_LINE} bytes"));
        }
        if out.len() - chunk_start >= IO_CHUNK {
            chunk_start = out.len();
            deadline = tokio::time::Instant::now() + idle;
        }
    }
}

/// If `line` (without CRLF) ends with a literal marker, its size.
fn literal_marker(line: &[u8]) -> Option<usize> {
    if !line.ends_with(b"}") {
        return None;
    }
    let open = line.iter().rposition(|&b| b == b'{')?;
    let inner = &line[open + 1..line.len() - 1];
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    if inner.is_empty() || inner.len() > 12 || !inner.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Reads one response: its lines and literals. `idle` bounds each wait for data (a line, or a
/// chunk of a literal), so a slow link that keeps moving never times out.
pub(crate) async fn read_parts(io: &mut Buffered, idle: Duration) -> Result<Parts, String> {
    let mut texts = Vec::new();
    let mut literals = Vec::new();
    loop {
        let mut line = Vec::new();
        read_line_limited(io, &mut line, idle).await?;
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
        } else if line.ends_with(b"\n") {
            line.truncate(line.len() - 1);
        }
        match literal_marker(&line) {
            Some(n) => {
                if n > MAX_LITERAL {
                    return Err(format!("literal of {n} bytes is larger than {MAX_LITERAL}"));
                }
                let mut lit = vec![0u8; n];
                for chunk in lit.chunks_mut(IO_CHUNK) {
                    tokio::time::timeout(idle, io.read_exact(chunk))
                        .await
                        .map_err(|_| idle_timeout(idle))?
                        .map_err(|e| format!("connection lost inside a literal: {e}"))?;
                }
                texts.push(line);
                literals.push(lit);
            }
            None => {
                texts.push(line);
                return Ok(Parts { texts, literals });
            }
        }
    }
}

fn status_word(w: &str) -> Option<Status> {
    match w.to_ascii_uppercase().as_str() {
        "OK" => Some(Status::Ok),
        "NO" => Some(Status::No),
        "BAD" => Some(Status::Bad),
        "BYE" => Some(Status::Bye),
        "PREAUTH" => Some(Status::PreAuth),
        _ => None,
    }
}

/// Splits `[CODE args] text` (the part after the status word).
fn code_and_text(rest: &str) -> (Option<Code>, String) {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some(end) = inner.find(']') {
            let code = &inner[..end];
            let (name, args) = match code.split_once(' ') {
                Some((n, a)) => (n, a),
                None => (code, ""),
            };
            return (
                Some(Code {
                    name: name.to_ascii_uppercase(),
                    args: args.to_string(),
                }),
                inner[end + 1..].trim_start().to_string(),
            );
        }
    }
    (None, rest.to_string())
}

pub(crate) fn parse_response(parts: Parts) -> Result<Response, String> {
    let Parts { texts, literals } = parts;
    let first = &texts[0];
    if first.starts_with(b"+") {
        let text = String::from_utf8_lossy(first.get(2..).unwrap_or_default()).into_owned();
        return Ok(Response::Continue(text));
    }
    // The status-response forms have no literals in practice; read them as text.
    let (tag_end, is_star) = match first.iter().position(|&b| b == b' ') {
        Some(p) => (p, &first[..p] == b"*"),
        None => return Err(format!("no space in {:?}", lossy(first))),
    };
    let after_tag = &first[tag_end + 1..];
    let word_end = after_tag
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(after_tag.len());
    let word = std::str::from_utf8(&after_tag[..word_end]).map_err(|_| "non-ASCII keyword")?;
    if let Some(status) = status_word(word) {
        let rest =
            String::from_utf8_lossy(after_tag.get(word_end + 1..).unwrap_or_default()).into_owned();
        let (code, text) = code_and_text(&rest);
        if is_star {
            return Ok(Response::State { status, code, text });
        }
        let tag = String::from_utf8_lossy(&first[..tag_end]).into_owned();
        if status == Status::Bye || status == Status::PreAuth {
            return Err(format!("tagged {word} is not valid"));
        }
        return Ok(Response::Tagged {
            tag,
            status,
            code,
            text,
        });
    }
    if !is_star {
        return Err(format!("unexpected reply {:?}", lossy(first)));
    }
    // Untagged data: tokenize everything after "* ".
    let mut tok = Tokenizer::new(&texts, literals, tag_end + 1);
    let values = tok.values(false)?;
    let mut it = values.into_iter();
    let head = it.next().ok_or("empty untagged reply")?;
    let head = head
        .as_atom()
        .ok_or("untagged reply starts with a non-atom")?
        .to_string();
    if let Ok(n) = head.parse::<u32>() {
        let kind = it
            .next()
            .and_then(|v| v.as_atom().map(str::to_ascii_uppercase))
            .ok_or("numbered reply without a keyword")?;
        return Ok(Response::Numbered {
            n,
            kind,
            rest: it.collect(),
        });
    }
    Ok(Response::Data {
        kind: head.to_ascii_uppercase(),
        rest: it.collect(),
    })
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 200 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.into_owned()
    }
}

/// Turns the text pieces and literals of a response into [`Value`]s.
/// Literals are moved into the values, never copied: a batch of bodies exists once in memory.
struct Tokenizer<'a> {
    texts: &'a [Vec<u8>],
    literals: Vec<Vec<u8>>,
    part: usize,
    pos: usize,
    /// Parentheses open at `pos`.
    depth: usize,
}

impl<'a> Tokenizer<'a> {
    fn new(texts: &'a [Vec<u8>], literals: Vec<Vec<u8>>, pos: usize) -> Self {
        Tokenizer {
            texts,
            literals,
            part: 0,
            pos,
            depth: 0,
        }
    }

    fn text(&self) -> &'a [u8] {
        &self.texts[self.part]
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.text().len() && self.text()[self.pos] == b' ' {
            self.pos += 1;
        }
    }

    /// Parses values until the end (or a `)` when `nested`).
    fn values(&mut self, nested: bool) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            let t = self.text();
            if self.pos >= t.len() {
                if nested {
                    return Err("unclosed parenthesis".into());
                }
                return Ok(out);
            }
            match t[self.pos] {
                b')' => {
                    if !nested {
                        return Err("unbalanced ')'".into());
                    }
                    self.pos += 1;
                    return Ok(out);
                }
                b'(' => {
                    if self.depth == MAX_DEPTH {
                        return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
                    }
                    self.pos += 1;
                    self.depth += 1;
                    out.push(Value::List(self.values(true)?));
                    self.depth -= 1;
                }
                b'"' => out.push(Value::Str(self.quoted()?)),
                b'{' | b'~' if self.at_literal() => {
                    if self.part + 1 >= self.texts.len() {
                        return Err("literal marker without literal".into());
                    }
                    out.push(Value::Str(std::mem::take(&mut self.literals[self.part])));
                    self.part += 1;
                    self.pos = 0;
                }
                _ => {
                    let a = self.atom()?;
                    if a.eq_ignore_ascii_case("NIL") {
                        out.push(Value::Nil);
                    } else {
                        out.push(Value::Atom(a));
                    }
                }
            }
        }
    }

    /// At a literal marker that ends the current text piece.
    fn at_literal(&self) -> bool {
        self.part < self.literals.len() && literal_marker(&self.text()[self.pos..]).is_some() && {
            let rest = &self.text()[self.pos..];
            let rest = rest.strip_prefix(b"~").unwrap_or(rest);
            rest.starts_with(b"{")
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        let t = self.text();
        let mut i = self.pos + 1;
        let mut out = Vec::new();
        while i < t.len() {
            match t[i] {
                b'\\' if i + 1 < t.len() => {
                    out.push(t[i + 1]);
                    i += 2;
                }
                b'"' => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Err("unterminated quoted string".into())
    }

    /// An atom; `[...]` sections (with spaces and parentheses inside) belong to it.
    fn atom(&mut self) -> Result<String, String> {
        let t = self.text();
        let start = self.pos;
        let mut depth = 0usize;
        while self.pos < t.len() {
            let b = t[self.pos];
            match b {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' | b'"' if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(format!("unexpected byte {:?}", t[start] as char));
        }
        Ok(String::from_utf8_lossy(&t[start..self.pos]).into_owned())
    }
}

/// Parses a uid-set (`4,7:9`) into UIDs in the order given; ranges ascend.
pub fn parse_uid_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for piece in s.split(',') {
        match piece.split_once(':') {
            Some((a, b)) => {
                let a: u32 = a.parse().ok()?;
                let b: u32 = b.parse().ok()?;
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                if hi - lo > 10_000_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(piece.parse().ok()?),
        }
    }
    Some(out)
}

/// Formats sorted UIDs as a compact sequence set (`1:5,9,12:13`).
pub fn format_uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(texts: &[&[u8]], lits: &[&[u8]]) -> Parts {
        Parts {
            texts: texts.iter().map(|t| t.to_vec()).collect(),
            literals: lits.iter().map(|t| t.to_vec()).collect(),
        }
    }

    #[test]
    fn tagged_with_appenduid() {
        let r = parse_response(parts(
            &[b"x5 OK [APPENDUID 1700000000 4:6] Append completed."],
            &[],
        ))
        .unwrap();
        match r {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                assert_eq!(tag, "x5");
                assert_eq!(status, Status::Ok);
                let c = code.unwrap();
                assert_eq!(c.name, "APPENDUID");
                assert_eq!(c.args, "1700000000 4:6");
                assert_eq!(text, "Append completed.");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_with_literal_body_is_exact() {
        let body: &[u8] = b"Subject: x\r\n\r\n\x00\xff bytes ) ( \" {3}\r\n";
        let r = parse_response(parts(
            &[
                b"* 3 FETCH (UID 17 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" BODY[] {30}",
                b")",
            ],
            &[body],
        ))
        .unwrap();
        match r {
            Response::Numbered { n, kind, rest } => {
                assert_eq!(n, 3);
                assert_eq!(kind, "FETCH");
                let l = rest[0].as_list().unwrap();
                assert_eq!(l[0], Value::Atom("UID".into()));
                assert_eq!(l[1].as_u32(), Some(17));
                assert_eq!(
                    l[3],
                    Value::List(vec![
                        Value::Atom("\\Seen".into()),
                        Value::Atom("$Forwarded".into())
                    ])
                );
                assert_eq!(l[5].as_text().unwrap(), "17-Jul-1996 02:44:25 -0700");
                assert_eq!(l[6], Value::Atom("BODY[]".into()));
                assert_eq!(l[7], Value::Str(body.to_vec()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn section_atom_with_spaces() {
        let r = parse_response(parts(
            &[
                b"* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {5}",
                b" UID 4)",
            ],
            &[b"ab\r\n\r"],
        ))
        .unwrap();
        let Response::Numbered { rest, .. } = r else {
            panic!()
        };
        let l = rest[0].as_list().unwrap();
        assert_eq!(l[0], Value::Atom("BODY[HEADER.FIELDS (MESSAGE-ID)]".into()));
        assert_eq!(l[2], Value::Atom("UID".into()));
    }

    #[test]
    fn list_reply() {
        let r = parse_response(parts(
            &[b"* LIST (\\HasNoChildren \\Sent) \".\" \"Sent Items\""],
            &[],
        ))
        .unwrap();
        let Response::Data { kind, rest } = r else {
            panic!()
        };
        assert_eq!(kind, "LIST");
        assert_eq!(rest[1], Value::Str(b".".to_vec()));
        assert_eq!(rest[2].as_text().unwrap(), "Sent Items");
        let r = parse_response(parts(&[b"* LIST () NIL INBOX"], &[])).unwrap();
        let Response::Data { rest, .. } = r else {
            panic!()
        };
        assert_eq!(rest[1], Value::Nil);
    }

    #[test]
    fn untagged_states_and_garbage() {
        let r = parse_response(parts(&[b"* OK [UIDVALIDITY 42] UIDs valid"], &[])).unwrap();
        assert!(
            matches!(r, Response::State { status: Status::Ok, code: Some(Code { ref name, ref args }), .. } if name == "UIDVALIDITY" && args == "42")
        );
        let r = parse_response(parts(&[b"* BYE shutting down"], &[])).unwrap();
        assert!(matches!(
            r,
            Response::State {
                status: Status::Bye,
                ..
            }
        ));
        assert!(parse_response(parts(&[b"garbage"], &[])).is_err());
        assert!(parse_response(parts(&[b"* LIST (\\Noselect \"/\" x"], &[])).is_err());
        assert!(parse_response(parts(&[b"+ go ahead"], &[])).is_ok());
    }

    #[test]
    fn literal_markers() {
        assert_eq!(literal_marker(b"BODY[] {123}"), Some(123));
        assert_eq!(literal_marker(b"BODY[] ~{5}"), Some(5));
        assert_eq!(literal_marker(b"x {12+}"), Some(12));
        assert_eq!(literal_marker(b"x {}"), None);
        assert_eq!(literal_marker(b"x {a}"), None);
    }

    #[test]
    fn uid_sets() {
        assert_eq!(parse_uid_set("4:6").unwrap(), vec![4, 5, 6]);
        assert_eq!(parse_uid_set("9,2:3").unwrap(), vec![9, 2, 3]);
        assert!(parse_uid_set("x").is_none());
        assert_eq!(format_uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(format_uid_set(&[]), "");
    }
}

#[cfg(test)]
pub(crate) mod fuzz;
