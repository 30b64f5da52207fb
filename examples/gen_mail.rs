//! gen_mail: writes deterministic, realistic sample mail straight into a Maildir++ tree, the
//! layout Dovecot uses with `mail_location = maildir:~/Maildir`.
//!
//! ```text
//! cargo run --release --example gen_mail -- --maildir DIR --messages N --avg-size BYTES \
//!     --folders "INBOX,Archive.2024,Sent,Lists.rust,Entwürfe" --seed S
//! ```
//!
//! * Folders: `INBOX` is `DIR/{cur,new,tmp}`; any other name is a Maildir++ folder
//!   `DIR/.<name>/{cur,new,tmp}` (with a `maildirfolder` file). `.` or `/` in a name is the
//!   hierarchy (`Archive.2024` and `Archive/2024` are both `.Archive.2024`; the parent is not
//!   created, exactly as Dovecot's CREATE leaves it). Non-ASCII names are written in modified
//!   UTF-7 like Dovecot does (`Entwürfe` is `.Entw&APw-rfe`). The first folder gets twice the
//!   share of messages of each other folder.
//! * Messages: RFC 5322 (LF line ends, as Dovecot stores them) with Return-Path, Received, Date,
//!   From, To, sometimes Cc, Subject, a unique Message-ID, In-Reply-To/References for replies,
//!   List-Id in `Lists.*` folders. Sizes are log-normal around `--avg-size` and scaled so that
//!   the total is `messages * avg-size` (to within a fraction of a percent). Small messages are
//!   text/plain; most large ones are multipart/mixed with a base64 attachment of random bytes; some
//!   are multipart/alternative. About 1 in 7 has a UTF-8 subject (RFC 2047 B-encoded) and a UTF-8
//!   body; some senders have UTF-8 names (Q-encoded).
//! * Flags in the file names (`:2,FRS`): about 85 % `\Seen` (all in `Sent*`), some `\Answered`,
//!   `\Flagged`, and keywords `$Forwarded` / `$label1` declared in `dovecot-keywords`.
//! * INTERNALDATE: each file's mtime (what Dovecot reports), spread over 2019..2025 in UID order
//!   within a folder; the Date header is a little earlier, in assorted time zones.
//! * File names are `<time>.G<tag>_<n>.gen,S=<size>,W=<vsize>:2,<flags>` where `<tag>` is derived
//!   from all parameters, so running again with another seed adds messages next to the old ones
//!   (written in tmp/, then renamed into cur/, so a running Dovecot sees whole files only).
//!
//! Same parameters, same bytes, same file names. Prints one summary line on stdout. When run as
//! root for a Dovecot that runs mail processes as another user, chown the tree afterwards.

use clap::Parser;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Writes deterministic sample mail into a Maildir++ tree.
#[derive(Parser, Debug)]
#[command(name = "gen_mail")]
struct Args {
    /// The Maildir root (e.g. HOME/Maildir); created if missing.
    #[arg(long, value_name = "DIR")]
    maildir: PathBuf,
    /// How many messages in all.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    messages: usize,
    /// Average message size in bytes.
    #[arg(long, default_value_t = 16384, value_name = "BYTES")]
    avg_size: usize,
    /// Comma-separated folders; INBOX is the Maildir root.
    #[arg(long, default_value = "INBOX", value_name = "LIST")]
    folders: String,
    /// Seed: same seed and parameters, same mail.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// Local part of the mailbox owner's address [default: the directory above DIR when DIR
    /// ends in `Maildir`, else `user`].
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Mail domain of the owner.
    #[arg(long, default_value = "example.org", value_name = "DOMAIN")]
    domain: String,
}

// ---------------------------------------------------------------- randomness

/// SplitMix64: tiny, fast, good enough for sample data, and the same everywhere.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// Independent stream per (seed, purpose, index): messages can be made in any order.
fn rng_for(seed: u64, purpose: u64, index: u64) -> Rng {
    let mut r = Rng::new(seed);
    let a = r.next() ^ purpose.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut r = Rng::new(a ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
    r.next();
    r
}

// ---------------------------------------------------------------- word lists

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "a", "we", "you", "they", "it", "this", "that", "and", "or", "but", "so", "of", "to",
    "in", "on", "for", "with", "from", "about", "after", "before", "until", "again", "also",
    "please", "thanks", "meeting", "project", "report", "budget", "draft", "review", "release",
    "server", "mailbox", "migration", "schedule", "invoice", "customer", "contract", "team",
    "update", "question", "answer", "issue", "change", "plan", "week", "month", "quarter",
    "monday", "friday", "tomorrow", "today", "soon", "later", "agenda", "notes", "slides",
    "numbers", "figures", "office", "travel", "hotel", "flight", "lunch", "coffee", "call",
    "deadline", "priority", "feedback", "proposal", "version", "document", "spreadsheet",
    "attached", "below", "above", "quickly", "carefully", "finally", "still", "already", "maybe",
    "certainly", "probably", "is", "are", "was", "will", "would", "could", "should", "can",
    "have", "has", "had", "need", "want", "think", "know", "send", "check", "confirm", "discuss",
    "prepare", "finish", "start", "move", "copy", "fix", "test", "build", "deploy", "write",
    "read", "sign", "approve", "cancel", "book", "share", "forward", "reply", "remember",
    "important", "new", "old", "next", "last", "first", "final", "small", "large", "short",
    "long", "good", "great", "fine", "busy", "ready", "open", "closed", "late", "early",
    "everyone", "nobody", "someone", "details", "steps", "results", "tests", "logs", "backup",
    "archive", "folder", "message", "list", "thread", "rust", "compiler", "crate", "borrow",
    "lifetime", "trait", "async", "runtime", "benchmark", "patch", "commit", "branch",
];

const UTF8_SUBJECTS: &[&str] = &[
    "Grüße aus München",
    "Überprüfung der Rechnung",
    "Réunion de l'équipe: ordre du jour",
    "Café à 15 h ?",
    "Año nuevo, presupuesto nuevo",
    "Spotkanie w środę",
    "Привет! Новости проекта",
    "会議の議事録",
    "Ζητήματα για την επόμενη εβδομάδα",
    "Smörgåsbord på fredag",
    "Naïve question about the façade",
    "Oplæg til næste møde",
    "Zażółć gęślą jaźń",
    "Účet za služby — březen",
    "Déjà vu: le rapport trimestriel ✔",
];

const UTF8_LINES: &[&str] = &[
    "Viele Grüße und bis bald.",
    "Merci beaucoup pour votre réponse rapide.",
    "Hasta mañana, un saludo cordial.",
    "Пожалуйста, посмотрите вложение.",
    "よろしくお願いします。",
    "Με εκτίμηση, η ομάδα.",
    "Tack för hjälpen, det fungerar nu.",
];

#[rustfmt::skip]
const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Karin", "Liam", "Maja", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tanja",
    "Jürgen", "Zoë", "Łukasz", "Søren",
];

#[rustfmt::skip]
const LAST: &[&str] = &[
    "Adams", "Berg", "Costa", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ito", "Jensen",
    "Kowalski", "López", "Müller", "Nakamura", "Olsen", "Petrov", "Rossi", "Schmidt", "Tanaka",
    "Weber",
];

const DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "corp.example",
    "mail.example.org",
    "partner.example",
];

const ATTACHMENTS: &[(&str, &str)] = &[
    ("report", "application/pdf; name=\"{}.pdf\""),
    ("invoice", "application/pdf; name=\"{}.pdf\""),
    ("photo", "image/jpeg; name=\"{}.jpg\""),
    ("scan", "image/png; name=\"{}.png\""),
    ("data", "application/zip; name=\"{}.zip\""),
    ("slides", "application/vnd.openxmlformats-officedocument.presentationml.presentation; name=\"{}.pptx\""),
    ("budget", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name=\"{}.xlsx\""),
];

// ---------------------------------------------------------------- encodings

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, no line breaks.
fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        let len = c.len();
        for i in 0..4 {
            if i <= len {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in 76-character lines (MIME), each followed by LF.
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(57) {
        out.extend_from_slice(base64(chunk).as_bytes());
        out.push(b'\n');
    }
}

/// RFC 2047 B-encoded words for a header value (each word at most 75 characters).
fn encode_words_b(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, ch) in s.char_indices() {
        let next = i + ch.len_utf8();
        if next - start > 45 {
            words.push(&s[start..end]);
            start = end;
        }
        end = next;
    }
    words.push(&s[start..end]);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\n ")
}

/// RFC 2047 Q-encoded word for a display name (short names only).
fn encode_word_q(s: &str) -> String {
    if s.is_ascii() {
        return format!("\"{s}\"");
    }
    let mut out = String::from("=?UTF-8?Q?");
    for b in s.bytes() {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => out.push(b as char),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

/// IMAP modified UTF-7 (RFC 3501 5.1.3), as Dovecot writes non-ASCII folder names on disk.
fn mutf7(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b = base64(&bytes).trim_end_matches('=').replace('/', ",");
        out.push('&');
        out.push_str(&b);
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

// ---------------------------------------------------------------- dates

/// RFC 5322 date of a Unix time shown in a zone `offset_min` minutes east of UTC.
fn rfc5322_date(t: i64, offset_min: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = t + offset_min * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = imapshift::timefmt::civil_from_days(days);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let off = offset_min.abs();
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} {}{:02}{:02}",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[m as usize - 1],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        sign,
        off / 60,
        off % 60
    )
}

/// 2019-01-01T00:00:00Z .. 2025-01-01T00:00:00Z
const DATE_FROM: i64 = 1_546_300_800;
const DATE_TO: i64 = 1_735_689_600;

// ---------------------------------------------------------------- folders

struct Folder {
    /// As given (for the summary).
    name: String,
    /// Directory of the folder (the Maildir root for INBOX).
    dir: PathBuf,
    is_sent: bool,
    list: Option<String>,
    count: usize,
    /// Index of this folder's first message in the global numbering.
    first: usize,
}

fn folder_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(root.to_path_buf());
    }
    let parts: Vec<&str> = name.split(['.', '/']).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("folder name {name:?} has an empty hierarchy level"));
    }
    let encoded: Vec<String> = parts.iter().map(|p| mutf7(p)).collect();
    Ok(root.join(format!(".{}", encoded.join("."))))
}

fn make_maildir(dir: &Path, is_root: bool) -> std::io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    if !is_root {
        let marker = dir.join("maildirfolder");
        if !marker.exists() {
            fs::write(marker, b"")?;
        }
    }
    Ok(())
}

const KEYWORDS: [&str; 2] = ["$Forwarded", "$label1"];

/// Letters (a, b, ...) of our keywords in the folder's `dovecot-keywords`, adding them if missing
/// (keeping whatever Dovecot already wrote there).
fn keyword_letters(dir: &Path) -> std::io::Result<[char; 2]> {
    let path = dir.join("dovecot-keywords");
    let existing = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
    for line in existing.lines() {
        if let Some((id, name)) = line.split_once(' ') {
            if let Ok(id) = id.parse::<usize>() {
                by_id.insert(id, name.to_string());
            }
        }
    }
    let mut letters = ['a'; 2];
    let mut changed = false;
    for (k, kw) in KEYWORDS.iter().enumerate() {
        let id = match by_id.iter().find(|(_, n)| n.as_str() == *kw) {
            Some((id, _)) => *id,
            None => {
                let id = (0..26).find(|i| !by_id.contains_key(i)).ok_or_else(|| {
                    std::io::Error::other(format!("{}: no free keyword slot", path.display()))
                })?;
                by_id.insert(id, kw.to_string());
                changed = true;
                id
            }
        };
        letters[k] = (b'a' + id as u8) as char;
    }
    if changed {
        let text: String = by_id.iter().map(|(id, n)| format!("{id} {n}\n")).collect();
        fs::write(&path, text)?;
    }
    Ok(letters)
}

// ---------------------------------------------------------------- messages

struct Person {
    name: String,
    addr: String,
}

fn person(rng: &mut Rng) -> Person {
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let mut local = String::new();
    for c in format!("{first}.{last}").to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' => local.push(c),
            'ä' | 'æ' => local.push_str("ae"),
            'ö' | 'ø' => local.push_str("oe"),
            'ü' => local.push_str("ue"),
            'ß' => local.push_str("ss"),
            'á' | 'à' | 'å' => local.push('a'),
            'é' | 'è' | 'ë' => local.push('e'),
            'í' => local.push('i'),
            'ó' => local.push('o'),
            'ł' => local.push('l'),
            'ç' => local.push('c'),
            _ => {}
        }
    }
    Person {
        name: format!("{first} {last}"),
        addr: format!("{local}@{}", rng.pick(DOMAINS)),
    }
}

fn mailbox(p: &Person) -> String {
    format!("{} <{}>", encode_word_q(&p.name), p.addr)
}

fn sentence(rng: &mut Rng) -> String {
    let n = rng.range(5, 16);
    let mut s = String::new();
    for i in 0..n {
        let w = *rng.pick(WORDS);
        if i == 0 {
            let mut c = w.chars();
            let f = c.next().unwrap().to_ascii_uppercase();
            s.push(f);
            s.push_str(c.as_str());
        } else {
            s.push(' ');
            s.push_str(w);
        }
    }
    s.push(*rng.pick(&['.', '.', '.', '?', '!']));
    s
}

/// Wrapped paragraphs of about `target` bytes (at least one sentence).
fn text_body(rng: &mut Rng, target: usize, utf8: bool, out: &mut Vec<u8>) {
    let start = out.len();
    let mut line_len = 0;
    let mut sentences_in_par = 0;
    loop {
        let s = if utf8 && rng.chance(0.15) {
            rng.pick(UTF8_LINES).to_string()
        } else {
            sentence(rng)
        };
        for word in s.split(' ') {
            if line_len > 0 && line_len + 1 + word.len() > 72 {
                out.push(b'\n');
                line_len = 0;
            } else if line_len > 0 {
                out.push(b' ');
                line_len += 1;
            }
            out.extend_from_slice(word.as_bytes());
            line_len += word.len();
        }
        sentences_in_par += 1;
        if out.len() - start >= target {
            break;
        }
        if sentences_in_par >= rng.range(2, 6) {
            out.extend_from_slice(b"\n\n");
            line_len = 0;
            sentences_in_par = 0;
        }
    }
    out.push(b'\n');
}

struct Made {
    body: Vec<u8>,
    flags: String,
    mtime: i64,
}

struct Ctx<'a> {
    seed: u64,
    tag: &'a str,
    owner: Person,
    letters: [char; 2],
}

/// Message `j` of `folder` (global index `g`), about `target` bytes.
fn make_message(ctx: &Ctx<'_>, folder: &Folder, j: usize, g: usize, target: usize) -> Made {
    let mut rng = rng_for(ctx.seed, 2, g as u64);
    // Dates rise with the UID, with some jitter.
    let span = (DATE_TO - DATE_FROM) as f64;
    let pos = (j as f64 + rng.f64()) / folder.count.max(1) as f64;
    let received = DATE_FROM + (pos * span) as i64;
    let sent = received - rng.range(2, 600) as i64;
    let offset = *rng.pick(&[0i64, 60, 120, -300, -240, -420, 330, 540, 600, -180]);

    let other = person(&mut rng);
    let (from, to) = if folder.is_sent {
        (&ctx.owner, &other)
    } else {
        (&other, &ctx.owner)
    };
    let utf8 = rng.chance(1.0 / 7.0);
    let reply = rng.chance(0.3);
    let mut subject = if utf8 {
        rng.pick(UTF8_SUBJECTS).to_string()
    } else {
        let mut s = String::new();
        for i in 0..rng.range(3, 8) {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(rng.pick::<&str>(WORDS));
        }
        let mut c = s.chars();
        let f = c.next().unwrap().to_ascii_uppercase();
        format!("{f}{}", c.as_str())
    };
    if let Some(list) = &folder.list {
        subject = format!("[{list}] {subject}");
    }
    if reply {
        subject = format!("Re: {subject}");
    }
    let msgid = format!(
        "<{}.{}.{:08x}@{}>",
        ctx.tag,
        g,
        rng.next() as u32,
        from.addr.split('@').nth(1).unwrap_or("example.org")
    );

    let mut m: Vec<u8> = Vec::with_capacity(target + 1024);
    let mut h = |s: String| {
        m.extend_from_slice(s.as_bytes());
        m.push(b'\n');
    };
    h(format!("Return-Path: <{}>", from.addr));
    h(format!(
        "Received: from mail.{} (mail.{} [192.0.2.{}])\n\tby mx.example.org (Postfix) with ESMTPS id {:010X}\n\tfor <{}>; {}",
        from.addr.split('@').nth(1).unwrap_or("example.net"),
        from.addr.split('@').nth(1).unwrap_or("example.net"),
        rng.range(1, 254),
        rng.next() & 0xFF_FFFF_FFFF,
        to.addr,
        rfc5322_date(received, 0)
    ));
    h(format!("Date: {}", rfc5322_date(sent, offset)));
    h(format!("From: {}", mailbox(from)));
    h(format!("To: {}", mailbox(to)));
    if rng.chance(0.2) {
        let cc = person(&mut rng);
        h(format!("Cc: {}", mailbox(&cc)));
    }
    h(format!("Subject: {}", encode_words_b(&subject)));
    h(format!("Message-ID: {msgid}"));
    if reply {
        let parent = format!("<{:016x}@{}>", rng.next(), rng.pick(DOMAINS));
        h(format!("In-Reply-To: {parent}"));
        h(format!("References: {parent}"));
    }
    if let Some(list) = &folder.list {
        h(format!("List-Id: {list} <{list}.lists.example.org>"));
        h(format!(
            "List-Unsubscribe: <mailto:{list}-leave@lists.example.org>"
        ));
    }
    h("MIME-Version: 1.0".to_string());

    let charset = if utf8 { "utf-8" } else { "us-ascii" };
    let cte = if utf8 { "8bit" } else { "7bit" };
    let headers_len = m.len() + 120;
    let room = target.saturating_sub(headers_len);
    let boundary = format!("=_gen_{:016x}", rng.next());

    if room > 6000 && rng.chance(0.85) {
        // multipart/mixed: a short text and a base64 attachment filling the rest.
        let (stem, ctype) = *rng.pick(ATTACHMENTS);
        let fname = format!("{stem}-{:04}", rng.below(10_000));
        let ctype = ctype.replace("{}", &fname);
        let ext = ctype
            .rsplit('.')
            .next()
            .unwrap_or("bin\"")
            .trim_end_matches('"');
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\nThis is a multi-part message in MIME format.\n\n--{boundary}\nContent-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n").as_bytes(),
        );
        let text = rng.range(200, 2500).min(room / 4);
        text_body(&mut rng, text, utf8, &mut m);
        m.extend_from_slice(
            format!("\n--{boundary}\nContent-Type: {ctype}\nContent-Disposition: attachment; filename=\"{fname}.{ext}\"\nContent-Transfer-Encoding: base64\n\n").as_bytes(),
        );
        let b64_room = target.saturating_sub(m.len() + boundary.len() + 8);
        let raw_len = (b64_room / 77 * 57).max(57);
        let mut raw = vec![0u8; raw_len];
        rng.fill(&mut raw);
        base64_lines(&raw, &mut m);
        m.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    } else if room > 1500 && rng.chance(0.25) {
        // multipart/alternative: the same text as plain and as HTML.
        m.extend_from_slice(
            format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\n\n--{boundary}\nContent-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n").as_bytes(),
        );
        let mut text = Vec::new();
        text_body(&mut rng, room * 2 / 5, utf8, &mut text);
        m.extend_from_slice(&text);
        m.extend_from_slice(
            format!("\n--{boundary}\nContent-Type: text/html; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n<html><body>\n").as_bytes(),
        );
        for par in text
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .split(|l| l.is_empty())
        {
            if par.is_empty() {
                continue;
            }
            m.extend_from_slice(b"<p>");
            for (i, line) in par.iter().enumerate() {
                if i > 0 {
                    m.push(b'\n');
                }
                m.extend_from_slice(line);
            }
            m.extend_from_slice(b"</p>\n");
        }
        m.extend_from_slice(format!("</body></html>\n\n--{boundary}--\n").as_bytes());
    } else {
        m.extend_from_slice(
            format!(
                "Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
            )
            .as_bytes(),
        );
        text_body(&mut rng, room.max(80), utf8, &mut m);
        if rng.chance(0.5) {
            m.extend_from_slice(format!("\n-- \n{}\n", from.name).as_bytes());
        }
    }

    // Flags, in the order Maildir wants them (ASCII), then keyword letters.
    let seen = folder.is_sent || rng.chance(0.85);
    let answered = seen && !folder.is_sent && rng.chance(0.12);
    let flagged = rng.chance(0.05);
    let mut flags = String::new();
    if flagged {
        flags.push('F');
    }
    if answered {
        flags.push('R');
    }
    if seen {
        flags.push('S');
    }
    if rng.chance(0.03) {
        flags.push(ctx.letters[0]);
    }
    if rng.chance(0.02) {
        flags.push(ctx.letters[1]);
    }
    let mut kw: Vec<char> = flags.chars().filter(|c| c.is_ascii_lowercase()).collect();
    kw.sort();
    let mut flags: String = flags.chars().filter(|c| c.is_ascii_uppercase()).collect();
    flags.extend(kw);
    Made {
        body: m,
        flags,
        mtime: received,
    }
}

/// Target sizes: log-normal (sigma 1.3: median about 43 % of the mean, a long tail of large
/// attachments), then scaled so that they add up to `n * avg`.
fn target_sizes(seed: u64, n: usize, avg: usize) -> Vec<usize> {
    let mut rng = rng_for(seed, 1, 0);
    let sigma = 1.3;
    let raw: Vec<f64> = (0..n)
        .map(|_| (sigma * rng.normal() - sigma * sigma / 2.0).exp())
        .collect();
    let min = 1200.0_f64.min(avg as f64);
    let sum: f64 = raw.iter().sum();
    let want = (n * avg) as f64;
    // Clamping to `min` adds bytes: scale the rest down a little to compensate.
    let mut scale = want / sum.max(1e-9);
    for _ in 0..4 {
        let total: f64 = raw.iter().map(|r| (r * scale).max(min)).sum();
        scale *= want / total;
    }
    raw.iter().map(|r| (r * scale).max(min) as usize).collect()
}

fn write_message(dir: &Path, name: &str, made: &Made) -> std::io::Result<()> {
    let tmp = dir.join("tmp").join(name);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&made.body)?;
    let t = UNIX_EPOCH + Duration::from_secs(made.mtime.max(0) as u64);
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))?;
    drop(f);
    fs::rename(
        &tmp,
        dir.join("cur").join(format!("{name}:2,{}", made.flags)),
    )
}

fn run(args: Args) -> Result<String, String> {
    let started = Instant::now();
    if args.avg_size < 200 {
        return Err("--avg-size must be at least 200 bytes".into());
    }
    let names: Vec<String> = args
        .folders
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err("--folders names no folder".into());
    }
    let root = &args.maildir;
    make_maildir(root, true).map_err(|e| format!("{}: {e}", root.display()))?;

    // Shares: the first folder 2, every other 1.
    let weights: Vec<usize> = (0..names.len())
        .map(|i| if i == 0 { 2 } else { 1 })
        .collect();
    let wsum: usize = weights.iter().sum();
    let mut counts: Vec<usize> = weights.iter().map(|w| args.messages * w / wsum).collect();
    let mut left = args.messages - counts.iter().sum::<usize>();
    for c in counts.iter_mut() {
        if left == 0 {
            break;
        }
        *c += 1;
        left -= 1;
    }
    let mut folders = Vec::new();
    let mut first = 0;
    for (name, count) in names.iter().zip(counts) {
        let dir = folder_dir(root, name)?;
        let is_root = dir == *root;
        make_maildir(&dir, is_root).map_err(|e| format!("{}: {e}", dir.display()))?;
        let leaf = name.rsplit(['.', '/']).next().unwrap_or(name);
        let lower = name.to_ascii_lowercase();
        folders.push(Folder {
            name: name.clone(),
            dir,
            is_sent: lower.starts_with("sent"),
            list: (lower.starts_with("lists.") || lower.starts_with("lists/"))
                .then(|| leaf.to_ascii_lowercase()),
            count,
            first,
        });
        first += count;
    }

    let owner = args.user.clone().unwrap_or_else(|| {
        let canon = root.components().collect::<PathBuf>();
        match (canon.file_name(), canon.parent().and_then(Path::file_name)) {
            (Some(last), Some(parent)) if last == "Maildir" => parent.to_string_lossy().into(),
            _ => "user".into(),
        }
    });
    let mut h = Sha256::new();
    h.update(format!(
        "{}|{}|{}|{}",
        args.seed, args.messages, args.avg_size, args.folders
    ));
    let tag = hex::encode(&h.finalize()[..5]);
    let sizes = target_sizes(args.seed, args.messages, args.avg_size);

    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let mut totals = Vec::new();
    for f in &folders {
        let letters = keyword_letters(&f.dir).map_err(|e| format!("{}: {e}", f.dir.display()))?;
        let ctx = Ctx {
            seed: args.seed,
            tag: &tag,
            owner: Person {
                name: owner
                    .split(['.', '_', '-'])
                    .map(|p| {
                        let mut c = p.chars();
                        c.next()
                            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                addr: format!("{owner}@{}", args.domain),
            },
            letters,
        };
        let per = f.count.div_ceil(workers).max(1);
        let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..f.count)
                .step_by(per)
                .map(|lo| {
                    let hi = (lo + per).min(f.count);
                    let (ctx, f, sizes, tag) = (&ctx, f, &sizes, &tag);
                    s.spawn(move || -> Result<u64, String> {
                        let mut bytes = 0u64;
                        for j in lo..hi {
                            let g = f.first + j;
                            let made = make_message(ctx, f, j, g, sizes[g]);
                            let size = made.body.len();
                            let vsize = size + made.body.iter().filter(|&&b| b == b'\n').count();
                            let name = format!("{}.G{tag}_{g}.gen,S={size},W={vsize}", made.mtime);
                            write_message(&f.dir, &name, &made)
                                .map_err(|e| format!("{}: {name}: {e}", f.dir.display()))?;
                            bytes += size as u64;
                        }
                        Ok(bytes)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
                .collect()
        });
        let mut bytes = 0;
        for r in results {
            bytes += r?;
        }
        totals.push((f.name.clone(), f.count, bytes));
    }
    let n: usize = totals.iter().map(|t| t.1).sum();
    let bytes: u64 = totals.iter().map(|t| t.2).sum();
    let per_folder: Vec<String> = totals.iter().map(|(f, c, _)| format!("{f} {c}")).collect();
    Ok(format!(
        "gen_mail: {n} messages, {bytes} bytes ({:.1} MB, avg {} B) in {} folders [{}] -> {} ({:.1} s)",
        bytes as f64 / 1e6,
        bytes / n.max(1) as u64,
        totals.len(),
        per_folder.join(", "),
        root.display(),
        started.elapsed().as_secs_f64()
    ))
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("gen_mail: {e}");
            std::process::exit(1);
        }
    }
}
