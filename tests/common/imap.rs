//! `TestImap`: a tiny, blocking IMAP4rev1 client written from scratch.
//!
//! It is the independent judge of what is on a server, so it deliberately
//! shares no code with the crate under test (nor with `async-imap` /
//! `imap-proto`). It only needs to be correct for what the tests do, but it
//! frames responses properly: literals `{n}` and literal8 `~{n}` are read by
//! byte count, so message bytes come back exactly as the server sent them.
//!
//! All methods panic with the command and the server's answer on failure,
//! except [`TestImap::append`] / [`TestImap::append_binary`] /
//! [`TestImap::try_connect`] / [`TestImap::login`], which return the server's
//! text as `Err` so tests can assert on rejections.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One message as returned by [`TestImap::fetch_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMsg {
    pub uid: u32,
    /// Flags and keywords as the server spells them, without `\Recent`, sorted.
    pub flags: Vec<String>,
    /// INTERNALDATE exactly as returned, e.g. `"17-Jul-1996 09:44:25 +0000"`.
    pub internaldate: String,
    /// RFC822.SIZE as reported by the server.
    pub size: u32,
    /// BODY[] bytes exactly as sent by the server.
    pub body: Vec<u8>,
}

impl TestMsg {
    /// The INTERNALDATE as Unix seconds: what to compare between servers, which may spell the
    /// same instant in different zones.
    pub fn instant(&self) -> i64 {
        crate::common::internaldate_secs(&self.internaldate)
    }

    /// The INTERNALDATE's zone offset as the server spelled it, e.g. `"+0200"`.
    pub fn zone(&self) -> &str {
        self.internaldate.rsplit(' ').next().unwrap_or("")
    }
}

/// A parsed IMAP data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An atom or number; bracketed sections are kept inside the atom
    /// (`BODY[HEADER.FIELDS (FROM)]<0>` is one atom).
    Atom(String),
    /// A quoted string (unescaped), a literal or a literal8.
    Str(Vec<u8>),
    Nil,
    List(Vec<Tok>),
}

impl Tok {
    /// Bytes of an atom or string; `None` for NIL and lists.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Tok::Atom(a) => Some(a.as_bytes()),
            Tok::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Atom or string as (lossy) UTF-8.
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn number(&self) -> Option<u32> {
        match self {
            Tok::Atom(a) => a.parse().ok(),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Tok]> {
        match self {
            Tok::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Items of one message in a FETCH response, keyed by upper-cased item name
/// (`"UID"`, `"FLAGS"`, `"BODY[]"`, `"BINARY[]"`, ...). Several untagged
/// FETCH responses for the same message are merged.
pub type FetchItems = BTreeMap<String, Tok>;

/// The outcome of one tagged command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses (without the leading `"* "`, literals inline) that
    /// arrived while the command ran.
    pub untagged: Vec<Vec<u8>>,
    /// `"OK"`, `"NO"` or `"BAD"`.
    pub status: String,
    /// Rest of the tagged line, e.g. `"[APPENDUID 1 2] Append completed."`.
    pub text: String,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }

    /// Untagged responses whose first word is `keyword` (case-insensitive),
    /// tokenized. `* 3 FETCH (...)` has first word `3`, so use
    /// [`Reply::numbered`] for those.
    pub fn data(&self, keyword: &str) -> Vec<Vec<Tok>> {
        self.untagged
            .iter()
            .map(|u| tokenize(u))
            .filter(|t| matches!(t.first(), Some(Tok::Atom(a)) if a.eq_ignore_ascii_case(keyword)))
            .collect()
    }

    /// Untagged `* <n> <KEYWORD> ...` responses as `(n, rest-of-tokens)`.
    pub fn numbered(&self, keyword: &str) -> Vec<(u32, Vec<Tok>)> {
        self.untagged
            .iter()
            .map(|u| tokenize(u))
            .filter_map(|mut t| {
                let n = t.first()?.number()?;
                match t.get(1) {
                    Some(Tok::Atom(a)) if a.eq_ignore_ascii_case(keyword) => {
                        Some((n, t.split_off(2)))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

/// A piece of a command line: plain text or a literal.
enum Part {
    Text(Vec<u8>),
    /// `{n}` (or `~{n}` when `binary`).
    Literal {
        data: Vec<u8>,
        binary: bool,
    },
}

/// Blocking IMAP test client. See the module docs.
pub struct TestImap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
    caps: Vec<String>,
    greeting: String,
    port: u16,
}

impl TestImap {
    /// Connects to `127.0.0.1:port` and logs in with LOGIN; panics on failure.
    pub fn connect(port: u16, user: &str, pass: &str) -> TestImap {
        match Self::try_connect(port, user, pass) {
            Ok(c) => c,
            Err(e) => panic!("TestImap: LOGIN {user:?} on port {port} failed: {e}"),
        }
    }

    /// Like [`TestImap::connect`] but returns the server's text if LOGIN is
    /// refused (network errors still panic).
    pub fn try_connect(port: u16, user: &str, pass: &str) -> Result<TestImap, String> {
        let mut c = Self::connect_unauthenticated(port);
        c.login(user, pass)?;
        Ok(c)
    }

    /// Connects and reads the greeting, without logging in.
    pub fn connect_unauthenticated(port: u16) -> TestImap {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("TestImap: cannot connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let writer = stream.try_clone().expect("clone TcpStream");
        let mut c = TestImap {
            reader: BufReader::new(stream),
            writer,
            next_tag: 1,
            caps: Vec::new(),
            greeting: String::new(),
            port,
        };
        let g = c.read_response();
        let g = String::from_utf8_lossy(&g).into_owned();
        if !g.starts_with("* OK") && !g.starts_with("* PREAUTH") {
            panic!("TestImap: unexpected greeting on port {port}: {g:?}");
        }
        c.caps = caps_from_code(&g).unwrap_or_default();
        c.greeting = g;
        c
    }

    /// LOGIN; on success refreshes the cached capabilities.
    pub fn login(&mut self, user: &str, pass: &str) -> Result<(), String> {
        let mut parts = vec![Part::Text(b"LOGIN ".to_vec())];
        parts.push(astring(user.as_bytes()));
        parts.push(Part::Text(b" ".to_vec()));
        parts.push(astring(pass.as_bytes()));
        let r = self.run(parts);
        if !r.is_ok() {
            return Err(format!("{} {}", r.status, r.text));
        }
        match caps_from_code(&r.text) {
            Some(caps) => self.caps = caps,
            None => {
                self.capabilities();
            }
        }
        Ok(())
    }

    /// The server greeting line, e.g. `"* OK [CAPABILITY ...] Dovecot ready."`.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Issues CAPABILITY and returns the list (as the server spells it).
    pub fn capabilities(&mut self) -> Vec<String> {
        let r = self.ok(vec![text("CAPABILITY")], "CAPABILITY");
        let mut caps = Vec::new();
        for t in r.data("CAPABILITY") {
            caps.extend(t[1..].iter().filter_map(Tok::text));
        }
        self.caps = caps.clone();
        caps
    }

    /// Whether the last seen capability list contains `cap` (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Runs a command without literals; the tag is added. Returns the reply
    /// whatever its status.
    pub fn raw(&mut self, command: &str) -> Reply {
        self.run(vec![text(command)])
    }

    /// CREATE; `mailbox` is the wire (modified UTF-7) name.
    pub fn create(&mut self, mailbox: &str) {
        self.mailbox_cmd("CREATE", mailbox);
    }

    /// CREATE, returning the server's text on NO/BAD.
    pub fn try_create(&mut self, mailbox: &str) -> Result<(), String> {
        let r = self.run(vec![text("CREATE "), astring(mailbox.as_bytes())]);
        if r.is_ok() {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.text))
        }
    }

    pub fn subscribe(&mut self, mailbox: &str) {
        self.mailbox_cmd("SUBSCRIBE", mailbox);
    }

    pub fn unsubscribe(&mut self, mailbox: &str) {
        self.mailbox_cmd("UNSUBSCRIBE", mailbox);
    }

    pub fn delete_mailbox(&mut self, mailbox: &str) {
        self.mailbox_cmd("DELETE", mailbox);
    }

    /// `LIST "" "*"`: (attributes, delimiter, wire name), sorted by name.
    pub fn list(&mut self) -> Vec<(Vec<String>, Option<char>, String)> {
        let r = self.ok(vec![text("LIST \"\" \"*\"")], "LIST");
        let mut out: Vec<_> = r.data("LIST").iter().map(|t| parse_list_line(t)).collect();
        out.sort_by(|a, b| a.2.cmp(&b.2));
        out
    }

    /// `LSUB "" "*"`: subscribed wire names, sorted.
    pub fn lsub(&mut self) -> Vec<String> {
        let r = self.ok(vec![text("LSUB \"\" \"*\"")], "LSUB");
        let mut out: Vec<String> = r
            .data("LSUB")
            .iter()
            .map(|t| parse_list_line(t).2)
            .collect();
        out.sort();
        out
    }

    /// The hierarchy delimiter, from `LIST "" ""`.
    pub fn delimiter(&mut self) -> Option<char> {
        let r = self.ok(vec![text("LIST \"\" \"\"")], "LIST \"\" \"\"");
        let lines = r.data("LIST");
        let first = lines.first().expect("LIST \"\" \"\" returned nothing");
        parse_list_line(first).1
    }

    /// APPEND with a normal literal (synchronizing unless LITERAL+ is
    /// advertised). Returns the UID from `[APPENDUID v uid]`, or the
    /// server's `NO`/`BAD` text.
    ///
    /// If the server sends no APPENDUID (no UIDPLUS), the UID is derived
    /// from `STATUS UIDNEXT` afterwards, which is only right when nobody
    /// else appends to the mailbox concurrently.
    pub fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        msg: &[u8],
    ) -> Result<u32, String> {
        let r = self.append_reply(mailbox, flags, internaldate, msg, false);
        self.appended_uid(mailbox, &r)
    }

    /// APPEND with a literal8 `~{n}` (BINARY extension), for messages
    /// containing NUL bytes.
    pub fn append_binary(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        msg: &[u8],
    ) -> Result<u32, String> {
        let r = self.append_reply(mailbox, flags, internaldate, msg, true);
        self.appended_uid(mailbox, &r)
    }

    /// The UID an APPEND to `mailbox` answered with `r` got (see [`TestImap::append`]), or
    /// the server's `NO`/`BAD` text.
    fn appended_uid(&mut self, mailbox: &str, r: &Reply) -> Result<u32, String> {
        if !r.is_ok() {
            return Err(format!("{} {}", r.status, r.text));
        }
        if let Some(code) = response_code(&r.text) {
            let w: Vec<&str> = code.split_ascii_whitespace().collect();
            if w.len() == 3 && w[0].eq_ignore_ascii_case("APPENDUID") {
                return Ok(w[2]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad APPENDUID in {:?}", r.text)));
            }
        }
        let (_, uidnext, _) = self.status(mailbox);
        Ok(uidnext - 1)
    }

    /// APPEND returning the raw tagged reply (for tests about the server's
    /// answer itself). `binary` selects a literal8.
    pub fn append_reply(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        msg: &[u8],
        binary: bool,
    ) -> Reply {
        let mut head = Vec::new();
        if !flags.is_empty() {
            head.extend_from_slice(format!(" ({})", flags.join(" ")).as_bytes());
        }
        if let Some(d) = internaldate {
            head.extend_from_slice(b" ");
            head.extend_from_slice(&quote(d.as_bytes()));
        }
        head.push(b' ');
        self.run(vec![
            text("APPEND "),
            astring(mailbox.as_bytes()),
            Part::Text(head),
            Part::Literal {
                data: msg.to_vec(),
                binary,
            },
        ])
    }

    /// `STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY)`.
    pub fn status(&mut self, mailbox: &str) -> (u32, u32, u32) {
        let st = self.status_of(mailbox, "MESSAGES UIDNEXT UIDVALIDITY");
        let get = |k: &str| {
            st.get(k)
                .and_then(|&v| u32::try_from(v).ok())
                .unwrap_or_else(|| panic!("incomplete STATUS for {mailbox:?}: {st:?}"))
        };
        (get("MESSAGES"), get("UIDNEXT"), get("UIDVALIDITY"))
    }

    /// `STATUS mailbox (items)`: the items the server answered, by upper-cased name.
    pub fn status_of(&mut self, mailbox: &str, items: &str) -> BTreeMap<String, u64> {
        let r = self.ok(
            vec![
                text("STATUS "),
                astring(mailbox.as_bytes()),
                text(&format!(" ({items})")),
            ],
            &format!("STATUS {mailbox}"),
        );
        status_items(&r, mailbox)
    }

    /// SELECT (read-write); returns the untagged responses.
    pub fn select(&mut self, mailbox: &str) -> Reply {
        self.ok(
            vec![text("SELECT "), astring(mailbox.as_bytes())],
            &format!("SELECT {mailbox}"),
        )
    }

    /// EXAMINE (read-only); returns the untagged responses.
    pub fn examine(&mut self, mailbox: &str) -> Reply {
        self.ok(
            vec![text("EXAMINE "), astring(mailbox.as_bytes())],
            &format!("EXAMINE {mailbox}"),
        )
    }

    /// `UID FETCH <uid_set> <items>` in the currently selected mailbox.
    /// Returns one merged item map per message, in sequence-number order.
    pub fn uid_fetch_selected(&mut self, uid_set: &str, items: &str) -> Vec<FetchItems> {
        let cmd = format!("UID FETCH {uid_set} {items}");
        let r = self.ok(vec![text(&cmd)], &cmd);
        let mut by_seq: BTreeMap<u32, FetchItems> = BTreeMap::new();
        for (seq, rest) in r.numbered("FETCH") {
            let list = rest
                .first()
                .and_then(Tok::list)
                .unwrap_or_else(|| panic!("malformed FETCH response: {rest:?}"));
            let entry = by_seq.entry(seq).or_default();
            for kv in list.chunks(2) {
                let key = kv[0]
                    .text()
                    .unwrap_or_else(|| panic!("bad FETCH item name: {kv:?}"))
                    .to_ascii_uppercase();
                let val = kv
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| panic!("FETCH item {key} has no value"));
                entry.insert(key, val);
            }
        }
        by_seq.into_values().collect()
    }

    /// EXAMINE `mailbox`, then `UID FETCH <uid_set> <items>`.
    pub fn uid_fetch(&mut self, mailbox: &str, uid_set: &str, items: &str) -> Vec<FetchItems> {
        self.examine(mailbox);
        self.uid_fetch_selected(uid_set, items)
    }

    /// Every message of `mailbox` (EXAMINE, so `\Seen` is not touched), via
    /// `UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])`,
    /// sorted by UID.
    pub fn fetch_all(&mut self, mailbox: &str) -> Vec<TestMsg> {
        let items = self.uid_fetch(
            mailbox,
            "1:*",
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
        );
        let mut out: Vec<TestMsg> = items.iter().map(to_test_msg).collect();
        out.sort_by_key(|m| m.uid);
        out
    }

    /// `BINARY.PEEK[]` of one message. Unlike `BODY[]` this returns NUL bytes
    /// as they are (Dovecot turns NUL into 0x80 in `BODY[]`), but the server
    /// DECODES a top-level Content-Transfer-Encoding (and rewrites that header
    /// to `binary`), so it is only byte-exact for non-encoded messages.
    pub fn fetch_binary(&mut self, mailbox: &str, uid: u32) -> Vec<u8> {
        let items = self.uid_fetch(mailbox, &uid.to_string(), "(UID BINARY.PEEK[])");
        let m = items
            .iter()
            .find(|m| m.get("UID").and_then(Tok::number) == Some(uid))
            .unwrap_or_else(|| panic!("no message with UID {uid} in {mailbox:?}"));
        match m.get("BINARY[]") {
            Some(Tok::Str(b)) => b.clone(),
            other => panic!("unexpected BINARY[] value: {other:?}"),
        }
    }

    /// SELECT `mailbox`, then `UID STORE uid <op> (flags)`; `op` is
    /// `"+FLAGS"`, `"-FLAGS"` or `"FLAGS"` (optionally `.SILENT`).
    pub fn store_flags(&mut self, mailbox: &str, uid: u32, op: &str, flags: &[&str]) {
        self.select(mailbox);
        let cmd = format!("UID STORE {uid} {op} ({})", flags.join(" "));
        self.ok(vec![text(&cmd)], &cmd);
    }

    /// SELECT, `UID STORE uid +FLAGS.SILENT (\Deleted)`, then `UID EXPUNGE uid`
    /// (or plain EXPUNGE if UIDPLUS is not advertised, which also removes any
    /// other message already flagged `\Deleted`).
    pub fn expunge_uid(&mut self, mailbox: &str, uid: u32) {
        self.select(mailbox);
        let cmd = format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)");
        self.ok(vec![text(&cmd)], &cmd);
        let cmd = if self.has_capability("UIDPLUS") {
            format!("UID EXPUNGE {uid}")
        } else {
            "EXPUNGE".to_string()
        };
        self.ok(vec![text(&cmd)], &cmd);
    }

    /// LOGOUT; errors are ignored.
    pub fn logout(mut self) {
        let tag = self.tag();
        if self
            .writer
            .write_all(format!("{tag} LOGOUT\r\n").as_bytes())
            .is_err()
        {
            return;
        }
        let _ = self.writer.flush();
        while let Some(line) = self.try_read_response() {
            if line.starts_with(format!("{tag} ").as_bytes()) {
                break;
            }
        }
    }

    // ----- plumbing -----

    fn mailbox_cmd(&mut self, verb: &str, mailbox: &str) {
        self.ok(
            vec![text(&format!("{verb} ")), astring(mailbox.as_bytes())],
            &format!("{verb} {mailbox}"),
        );
    }

    /// Runs a command and panics unless it ends in OK.
    fn ok(&mut self, parts: Vec<Part>, what: &str) -> Reply {
        let r = self.run(parts);
        if !r.is_ok() {
            panic!(
                "TestImap (port {}): {what} failed: {} {}",
                self.port, r.status, r.text
            );
        }
        r
    }

    fn tag(&mut self) -> String {
        let t = format!("T{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends a command (handling literals) and reads until its tagged reply.
    fn run(&mut self, parts: Vec<Part>) -> Reply {
        let tag = self.tag();
        let literal_plus = self.has_capability("LITERAL+");
        let mut untagged = Vec::new();
        let mut buf = format!("{tag} ").into_bytes();
        for part in parts {
            match part {
                Part::Text(t) => buf.extend_from_slice(&t),
                Part::Literal { data, binary } => {
                    let prefix = if binary { "~" } else { "" };
                    let plus = if literal_plus { "+" } else { "" };
                    buf.extend_from_slice(
                        format!("{prefix}{{{}{plus}}}\r\n", data.len()).as_bytes(),
                    );
                    if !literal_plus {
                        self.send(&buf);
                        buf.clear();
                        // Wait for the continuation request; the server may
                        // instead reject the command right away.
                        loop {
                            let resp = self.read_response();
                            if resp.starts_with(b"+") {
                                break;
                            }
                            if let Some(u) = resp.strip_prefix(b"* ") {
                                untagged.push(u.to_vec());
                                continue;
                            }
                            return self.finish_tagged(&tag, resp, untagged);
                        }
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
        buf.extend_from_slice(b"\r\n");
        self.send(&buf);
        loop {
            let resp = self.read_response();
            if let Some(u) = resp.strip_prefix(b"* ") {
                untagged.push(u.to_vec());
            } else if resp.starts_with(b"+") {
                panic!(
                    "TestImap: unexpected continuation request: {:?}",
                    String::from_utf8_lossy(&resp)
                );
            } else {
                return self.finish_tagged(&tag, resp, untagged);
            }
        }
    }

    fn finish_tagged(&mut self, tag: &str, resp: Vec<u8>, untagged: Vec<Vec<u8>>) -> Reply {
        let line = String::from_utf8_lossy(&resp).into_owned();
        let rest = line
            .strip_prefix(tag)
            .and_then(|r| r.strip_prefix(' '))
            .unwrap_or_else(|| panic!("TestImap: expected tag {tag}, got {line:?}"));
        let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = status.to_ascii_uppercase();
        if let Some(caps) = caps_from_code(text) {
            self.caps = caps;
        }
        for u in &untagged {
            if u.len() > 11 && u[..11].eq_ignore_ascii_case(b"CAPABILITY ") {
                let t = tokenize(u);
                self.caps = t[1..].iter().filter_map(Tok::text).collect();
            }
        }
        Reply {
            untagged,
            status,
            text: text.to_string(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .and_then(|_| self.writer.flush())
            .unwrap_or_else(|e| panic!("TestImap (port {}): write failed: {e}", self.port));
    }

    fn read_response(&mut self) -> Vec<u8> {
        match self.read_response_io() {
            Ok(Some(r)) => r,
            Ok(None) => panic!(
                "TestImap (port {}): server closed the connection",
                self.port
            ),
            Err(e) => panic!("TestImap (port {}): read failed: {e}", self.port),
        }
    }

    fn try_read_response(&mut self) -> Option<Vec<u8>> {
        self.read_response_io().ok().flatten()
    }

    /// Reads one complete response: a line plus any literals it announces
    /// (and the lines that follow them), without the final CRLF. Literal
    /// headers stay in the returned bytes as `{n}\r\n<n bytes>`.
    fn read_response_io(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(if out.is_empty() { None } else { Some(out) });
            }
            if line.ends_with(b"\n") {
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
            }
            let lit = literal_at_end(&line);
            out.extend_from_slice(&line);
            match lit {
                Some(len) => {
                    out.extend_from_slice(b"\r\n");
                    let start = out.len();
                    out.resize(start + len, 0);
                    self.reader.read_exact(&mut out[start..])?;
                }
                None => return Ok(Some(out)),
            }
        }
    }
}

fn text(s: &str) -> Part {
    Part::Text(s.as_bytes().to_vec())
}

/// A quoted string if `s` is printable ASCII, else a literal.
fn astring(s: &[u8]) -> Part {
    if s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        Part::Text(quote(s))
    } else {
        Part::Literal {
            data: s.to_vec(),
            binary: false,
        }
    }
}

fn quote(s: &[u8]) -> Vec<u8> {
    let mut q = vec![b'"'];
    for &b in s {
        if b == b'"' || b == b'\\' {
            q.push(b'\\');
        }
        q.push(b);
    }
    q.push(b'"');
    q
}

/// If `line` ends with `{n}`, `{n+}`, `~{n}` or `~{n+}`, returns n.
pub fn literal_at_end(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The text inside a leading `[...]` response code, if any.
fn response_code(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    Some(&rest[..rest.find(']')?])
}

fn caps_from_code(text: &str) -> Option<Vec<String>> {
    let text = text.strip_prefix("* ").unwrap_or(text);
    let text = text
        .strip_prefix("OK ")
        .or_else(|| text.strip_prefix("PREAUTH "))
        .unwrap_or(text);
    let code = response_code(text)?;
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(words.map(str::to_string).collect())
}

/// `LIST (attrs) delim name` tokens (starting at the keyword).
fn parse_list_line(t: &[Tok]) -> (Vec<String>, Option<char>, String) {
    let attrs = t
        .get(1)
        .and_then(Tok::list)
        .unwrap_or_else(|| panic!("malformed LIST response: {t:?}"))
        .iter()
        .filter_map(Tok::text)
        .collect();
    let delim = match t.get(2) {
        Some(Tok::Nil) => None,
        Some(d) => d
            .text()
            .and_then(|s| s.chars().next())
            .or_else(|| panic!("malformed LIST delimiter: {t:?}")),
        None => panic!("malformed LIST response: {t:?}"),
    };
    let name = t
        .get(3)
        .and_then(Tok::text)
        .unwrap_or_else(|| panic!("malformed LIST name: {t:?}"));
    (attrs, delim, name)
}

fn to_test_msg(m: &FetchItems) -> TestMsg {
    let get = |k: &str| {
        m.get(k)
            .unwrap_or_else(|| panic!("FETCH response lacks {k}: {m:?}"))
    };
    let uid = get("UID").number().expect("numeric UID");
    let mut flags: Vec<String> = get("FLAGS")
        .list()
        .expect("FLAGS list")
        .iter()
        .filter_map(Tok::text)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect();
    flags.sort();
    let internaldate = get("INTERNALDATE").text().expect("INTERNALDATE string");
    let size = get("RFC822.SIZE").number().expect("numeric RFC822.SIZE");
    let body = match get("BODY[]") {
        Tok::Str(b) => b.clone(),
        other => panic!("unexpected BODY[] value for UID {uid}: {other:?}"),
    };
    TestMsg {
        uid,
        flags,
        internaldate,
        size,
        body,
    }
}

/// Tokenizes a response (or part of one) into IMAP data items. Tolerant:
/// free text becomes atoms. An unbalanced `)` ends the current list.
pub fn tokenize(b: &[u8]) -> Vec<Tok> {
    let mut p = Parser { b, i: 0 };
    p.items(false)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn items(&mut self, in_list: bool) -> Vec<Tok> {
        let mut out = Vec::new();
        loop {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\r' | b'\n') {
                self.i += 1;
            }
            if self.i >= self.b.len() {
                return out;
            }
            if self.b[self.i] == b')' {
                self.i += 1;
                if in_list {
                    return out;
                }
                continue;
            }
            out.push(self.item());
        }
    }

    fn item(&mut self) -> Tok {
        let b = self.b;
        match b[self.i] {
            b'(' => {
                self.i += 1;
                Tok::List(self.items(true))
            }
            b'"' => {
                self.i += 1;
                let mut s = Vec::new();
                while self.i < b.len() && b[self.i] != b'"' {
                    if b[self.i] == b'\\' && self.i + 1 < b.len() {
                        self.i += 1;
                    }
                    s.push(b[self.i]);
                    self.i += 1;
                }
                self.i += 1; // closing quote
                Tok::Str(s)
            }
            b'{' => self.literal().unwrap_or_else(|| self.atom()),
            b'~' if b.get(self.i + 1) == Some(&b'{') => {
                let save = self.i;
                self.i += 1;
                self.literal().unwrap_or_else(|| {
                    self.i = save;
                    self.atom()
                })
            }
            _ => self.atom(),
        }
    }

    /// At `{`: parses `{n}` / `{n+}` + CRLF + n bytes.
    fn literal(&mut self) -> Option<Tok> {
        let b = self.b;
        let close = self.i + b[self.i..].iter().position(|&c| c == b'}')?;
        let inner = &b[self.i + 1..close];
        let inner = inner.strip_suffix(b"+").unwrap_or(inner);
        let n: usize = std::str::from_utf8(inner).ok()?.parse().ok()?;
        let mut start = close + 1;
        if b[start..].starts_with(b"\r\n") {
            start += 2;
        } else if b[start..].starts_with(b"\n") {
            start += 1;
        }
        let end = start + n;
        if end > b.len() {
            return None;
        }
        self.i = end;
        Some(Tok::Str(b[start..end].to_vec()))
    }

    fn atom(&mut self) -> Tok {
        let b = self.b;
        let start = self.i;
        let mut depth = 0usize;
        while self.i < b.len() {
            let c = b[self.i];
            match c {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' | b'\r' | b'\n' if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        if self.i == start {
            // A stray special character: consume it so we make progress.
            self.i += 1;
        }
        let a = String::from_utf8_lossy(&b[start..self.i]).into_owned();
        if a.eq_ignore_ascii_case("NIL") {
            Tok::Nil
        } else {
            Tok::Atom(a)
        }
    }
}

// ----- a read-only snapshot of a whole account -----

/// One message as [`TestImap::snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgSnapshot {
    /// Flags and keywords, sorted, without `\Recent` (in [`FolderSnapshot::recent`]).
    pub flags: Vec<String>,
    /// INTERNALDATE exactly as the server spelled it (the same server, so text compares).
    pub internaldate: String,
    pub size: u32,
    /// The per-message MODSEQ (RFC 7162) where the server has CONDSTORE.
    pub modseq: Option<u64>,
    /// SHA-256 (hex) of the `BODY.PEEK[]` bytes.
    pub body_sha256: String,
}

/// One folder as [`TestImap::snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSnapshot {
    /// LIST attributes, sorted (`\HasChildren`, `\Noselect`, `\Sent`, ...), without the
    /// selection hints `\Marked` and `\UnMarked` (see [`FolderSnapshot::marks`]).
    pub attrs: Vec<String>,
    /// `\Marked` / `\UnMarked` as LIST gave them. Kept apart from the comparison: RFC 3501
    /// makes them a hint ("probably contains messages added since the last time the mailbox
    /// was selected"), and Dovecot shows them or not depending on the state of its list index,
    /// which any session (this one too) refreshes.
    pub marks: Vec<String>,
    /// STATUS MESSAGES / UIDNEXT / UIDVALIDITY / UNSEEN; `None` for a `\Noselect` folder.
    pub status: Option<[u64; 4]>,
    /// STATUS HIGHESTMODSEQ where the server has CONDSTORE.
    pub highestmodseq: Option<u64>,
    /// The `FLAGS` list EXAMINE announced (system flags and the folder's keywords), sorted.
    pub defined_flags: Vec<String>,
    /// Messages by UID.
    pub messages: BTreeMap<u32, MsgSnapshot>,
    /// UIDs flagged `\Recent` in this session. `\Recent` belongs to a session (RFC 3501 2.3.2):
    /// the first session to SELECT the folder takes it, EXAMINE leaves it (Dovecot, Cyrus). So it
    /// is compared: a SELECT by anyone else in between clears it, the trace a read-only client
    /// must not leave. A server that hands `\Recent` to EXAMINE too shows it to no later
    /// snapshot, which compares as equal (empty both times).
    pub recent: Vec<u32>,
}

/// Everything an observer can see of one account without changing it: the folder list with
/// attributes, the subscriptions, and per folder its STATUS, HIGHESTMODSEQ, defined flags and
/// every message's UID, flags (with `\Seen`), INTERNALDATE, size, MODSEQ and body hash. Taken by
/// [`TestImap::snapshot`]; compared with [`ServerSnapshot::diff`] /
/// [`ServerSnapshot::assert_unchanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// By wire (modified UTF-7) name.
    pub folders: BTreeMap<String, FolderSnapshot>,
    /// `LSUB "" "*"`, sorted (a subscription may name a folder that does not exist).
    pub subscriptions: Vec<String>,
}

impl ServerSnapshot {
    /// Every difference from `self` (before) to `after`, one readable line each; empty when
    /// nothing changed. `\Marked` / `\UnMarked` are not compared (see [`FolderSnapshot::marks`]).
    pub fn diff(&self, after: &ServerSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        diff_sets(
            "subscriptions",
            &self.subscriptions,
            &after.subscriptions,
            &mut out,
        );
        for (name, b) in &self.folders {
            match after.folders.get(name) {
                None => out.push(format!("folder {name:?}: gone")),
                Some(a) => diff_folder_snapshot(name, b, a, &mut out),
            }
        }
        for name in after.folders.keys() {
            if !self.folders.contains_key(name) {
                out.push(format!("folder {name:?}: new"));
            }
        }
        out
    }

    /// Panics, naming `step` and every difference, unless `after` equals `self`.
    pub fn assert_unchanged(&self, after: &ServerSnapshot, step: &str) {
        let d = self.diff(after);
        assert!(
            d.is_empty(),
            "the old server changed during {step}:\n  {}",
            d.join("\n  ")
        );
    }

    /// How many messages the snapshot holds, over all folders.
    pub fn message_count(&self) -> usize {
        self.folders.values().map(|f| f.messages.len()).sum()
    }

    /// The flags of the message `uid` in `folder` (panics if there is none).
    pub fn flags(&self, folder: &str, uid: u32) -> &[String] {
        &self
            .folders
            .get(folder)
            .and_then(|f| f.messages.get(&uid))
            .unwrap_or_else(|| panic!("the snapshot has no UID {uid} in {folder:?}"))
            .flags
    }
}

fn diff_sets(what: &str, before: &[String], after: &[String], out: &mut Vec<String>) {
    for x in before.iter().filter(|x| !after.contains(x)) {
        out.push(format!("{what}: {x:?} gone"));
    }
    for x in after.iter().filter(|x| !before.contains(x)) {
        out.push(format!("{what}: {x:?} new"));
    }
}

fn diff_folder_snapshot(name: &str, b: &FolderSnapshot, a: &FolderSnapshot, out: &mut Vec<String>) {
    let mut field = |what: &str, before: String, after: String| {
        if before != after {
            out.push(format!("folder {name:?}: {what} {before} -> {after}"));
        }
    };
    field("LIST attributes", b.attrs.join(" "), a.attrs.join(" "));
    let status = |s: &Option<[u64; 4]>| match s {
        Some([m, n, v, u]) => format!("MESSAGES {m} UIDNEXT {n} UIDVALIDITY {v} UNSEEN {u}"),
        None => "(not selectable)".into(),
    };
    field("STATUS", status(&b.status), status(&a.status));
    field(
        "HIGHESTMODSEQ",
        format!("{:?}", b.highestmodseq),
        format!("{:?}", a.highestmodseq),
    );
    let uids = |u: &[u32]| format!("{u:?}");
    field("\\Recent UIDs", uids(&b.recent), uids(&a.recent));
    field(
        "defined FLAGS",
        b.defined_flags.join(" "),
        a.defined_flags.join(" "),
    );
    for (uid, bm) in &b.messages {
        let Some(am) = a.messages.get(uid) else {
            out.push(format!("folder {name:?} UID {uid}: gone"));
            continue;
        };
        let mut msg = |what: &str, before: String, after: String| {
            if before != after {
                out.push(format!(
                    "folder {name:?} UID {uid}: {what} {before} -> {after}"
                ));
            }
        };
        msg(
            "flags",
            format!("({})", bm.flags.join(" ")),
            format!("({})", am.flags.join(" ")),
        );
        msg(
            "INTERNALDATE",
            bm.internaldate.clone(),
            am.internaldate.clone(),
        );
        msg("RFC822.SIZE", bm.size.to_string(), am.size.to_string());
        msg(
            "MODSEQ",
            format!("{:?}", bm.modseq),
            format!("{:?}", am.modseq),
        );
        msg(
            "body SHA-256",
            bm.body_sha256.clone(),
            am.body_sha256.clone(),
        );
    }
    for uid in a.messages.keys() {
        if !b.messages.contains_key(uid) {
            out.push(format!("folder {name:?} UID {uid}: new"));
        }
    }
}

impl TestImap {
    /// A [`ServerSnapshot`] of the logged-in account, taken without changing it: `LIST` and
    /// `LSUB`, then per selectable folder `STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN
    /// [HIGHESTMODSEQ])` (before it is opened), `EXAMINE` (never SELECT, which would end
    /// `\Recent`) and `UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE [MODSEQ]
    /// BODY.PEEK[])` (PEEK: a plain `BODY[]` would set `\Seen`). The bracketed items only where
    /// the server announces CONDSTORE. Leaves the last folder examined.
    pub fn snapshot(&mut self) -> ServerSnapshot {
        let condstore = self.has_capability("CONDSTORE");
        let subscriptions = self.lsub();
        let mut folders = BTreeMap::new();
        for (all, _, name) in self.list() {
            let is_mark = |a: &String| {
                a.eq_ignore_ascii_case("\\Marked") || a.eq_ignore_ascii_case("\\UnMarked")
            };
            let (marks, mut attrs): (Vec<String>, Vec<String>) = all.into_iter().partition(is_mark);
            attrs.sort();
            let selectable = !attrs.iter().any(|a| {
                a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
            });
            let mut f = FolderSnapshot {
                attrs,
                marks,
                status: None,
                highestmodseq: None,
                defined_flags: Vec::new(),
                messages: BTreeMap::new(),
                recent: Vec::new(),
            };
            if selectable {
                self.snapshot_folder(&name, condstore, &mut f);
            }
            folders.insert(name, f);
        }
        ServerSnapshot {
            folders,
            subscriptions,
        }
    }

    fn snapshot_folder(&mut self, name: &str, condstore: bool, f: &mut FolderSnapshot) {
        let items = if condstore {
            "MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ"
        } else {
            "MESSAGES UIDNEXT UIDVALIDITY UNSEEN"
        };
        let st = self.status_of(name, items);
        let get = |k: &str| {
            *st.get(k)
                .unwrap_or_else(|| panic!("STATUS {name:?} lacks {k}: {st:?}"))
        };
        f.status = Some([
            get("MESSAGES"),
            get("UIDNEXT"),
            get("UIDVALIDITY"),
            get("UNSEEN"),
        ]);
        f.highestmodseq = condstore.then(|| get("HIGHESTMODSEQ"));
        let r = self.examine(name);
        f.defined_flags = r
            .data("FLAGS")
            .first()
            .and_then(|t| t.get(1))
            .and_then(Tok::list)
            .unwrap_or_else(|| panic!("EXAMINE {name:?} announced no FLAGS"))
            .iter()
            .filter_map(Tok::text)
            .collect();
        f.defined_flags.sort();
        if get("MESSAGES") == 0 {
            return;
        }
        let items = if condstore {
            "(UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[])"
        } else {
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"
        };
        for m in self.uid_fetch_selected("1:*", items) {
            let (uid, msg, recent) = msg_snapshot(&m, condstore);
            if recent {
                f.recent.push(uid);
            }
            f.messages.insert(uid, msg);
        }
        f.recent.sort();
    }
}

/// `* STATUS name (K V ...)` of `r` as upper-cased keys and numbers.
fn status_items(r: &Reply, name: &str) -> BTreeMap<String, u64> {
    let lines = r.data("STATUS");
    let line = lines
        .last()
        .unwrap_or_else(|| panic!("no STATUS data for {name:?}: {r:?}"));
    let items = line
        .get(2)
        .and_then(Tok::list)
        .unwrap_or_else(|| panic!("malformed STATUS: {line:?}"));
    items
        .chunks(2)
        .filter_map(|kv| {
            let key = kv[0].text()?.to_ascii_uppercase();
            let val = kv.get(1)?.text()?.parse().ok()?;
            Some((key, val))
        })
        .collect()
}

/// (UID, the message, whether it is `\Recent`) from one FETCH reply.
fn msg_snapshot(m: &FetchItems, condstore: bool) -> (u32, MsgSnapshot, bool) {
    use sha2::Digest;
    let get = |k: &str| {
        m.get(k)
            .unwrap_or_else(|| panic!("FETCH response lacks {k}: {m:?}"))
    };
    let uid = get("UID").number().expect("numeric UID");
    let all: Vec<String> = get("FLAGS")
        .list()
        .expect("FLAGS list")
        .iter()
        .filter_map(Tok::text)
        .collect();
    let recent = all.iter().any(|f| f.eq_ignore_ascii_case("\\Recent"));
    let mut flags: Vec<String> = all
        .into_iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect();
    flags.sort();
    // `MODSEQ (n)`.
    let modseq = condstore.then(|| {
        get("MODSEQ")
            .list()
            .and_then(|l| l.first())
            .and_then(Tok::text)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("UID {uid}: malformed MODSEQ: {m:?}"))
    });
    let body = match get("BODY[]") {
        Tok::Str(b) => b,
        other => panic!("unexpected BODY[] value for UID {uid}: {other:?}"),
    };
    let msg = MsgSnapshot {
        flags,
        internaldate: get("INTERNALDATE").text().expect("INTERNALDATE string"),
        size: get("RFC822.SIZE").number().expect("numeric RFC822.SIZE"),
        modseq,
        body_sha256: hex::encode(sha2::Sha256::digest(body)),
    };
    (uid, msg, recent)
}
