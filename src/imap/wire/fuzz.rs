//! Fuzzing of the raw response layer and the interpreters of its values (issue 13).
//!
//! Bytes go through the real reader ([`read_parts`], lines plus `{n}` / `~{n}` literals, over a
//! loopback TCP connection) and the real parser ([`parse_response`]); parsed replies go through
//! the interpreters of `imap/mod.rs` (FETCH items, STATUS, NAMESPACE, the status codes of a
//! SELECT, APPENDUID / COPYUID uid-sets, FLAGS and PERMANENTFLAGS) and of `wire/replies.rs`
//! (CAPABILITY, the QUOTA of GETQUOTAROOT). Properties:
//! - no input panics or hangs: arbitrary bytes, and IMAP-shaped garbage (random tokens, literals
//!   whose `{n}` is wrong, unbalanced parentheses, truncated lines, huge numbers, NIL where a list
//!   belongs, nesting deeper than any server sends);
//! - value trees round-trip: a tree written the way a server writes it parses back to itself;
//! - differential: valid generated FETCH, STATUS, LIST, NAMESPACE, SEARCH, SELECT status codes,
//!   tagged APPENDUID / COPYUID, CAPABILITY and QUOTA replies give the same fields from our
//!   parser as from imap-codec (and as generated);
//! - CAPABILITY and QUOTA replies of any values (and garbage after `* CAPABILITY` / `* QUOTA`):
//!   the capabilities are exactly the upper-cased atoms; the quota is an error exactly when a
//!   QUOTA reply is not whole (no list, not whole triples, a STORAGE figure that is no number),
//!   else the STORAGE triple with the least room left.
//!
//! Default case counts keep this module to seconds in a debug build; `PROPTEST_CASES=100000
//! cargo test --release --lib imap::wire::fuzz` runs longer. Failures are kept in
//! `proptest-regressions/imap/wire/fuzz.txt` and replayed first.

use super::*;
use crate::imap::stream::Stream;
use crate::imap::wire::replies::{capabilities, storage_quota};
use crate::imap::{fetch_items, keywords, parse_namespaces, parse_status_items, status_from};
use crate::types::is_copyable_flag;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::response as theirs;
use imap_codec::ResponseCodec;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// `default_cases` unless `PROPTEST_CASES` says otherwise.
pub(crate) fn cases(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c
}

/// Every response in `bytes`, read by the real reader over loopback TCP: parsed replies, and the
/// error that ended the stream (at the latest the end of the bytes).
fn responses_of(bytes: Vec<u8>) -> Vec<Result<Response, String>> {
    over_loopback(bytes, async |io: &mut Buffered| {
        let mut out = Vec::new();
        loop {
            match read_parts(io, Duration::from_secs(10)).await {
                Ok(parts) => out.push(parse_response(parts)),
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    })
}

/// `read` on the reading end of a fresh loopback TCP connection whose other end writes `bytes`
/// and closes.
///
/// The reading side closes with `SO_LINGER` 0, a reset: the writer closed first, and its socket
/// would otherwise wait out TIME_WAIT, one per case (some 4 000 after a default run, tens of
/// thousands after a long one, enough to run out of loopback ports). The reset comes only after
/// `read` is done (it has seen the end of the bytes, or stopped at an error), so nothing is lost.
fn over_loopback<T>(bytes: Vec<u8>, read: impl AsyncFnOnce(&mut Buffered) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.set_zero_linger().unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let writer = tokio::spawn(async move {
            // The reader may stop early (an error): a failed write is fine then.
            let _ = server.write_all(&bytes).await;
            let _ = server.shutdown().await;
        });
        let mut io = Buffered::new(Stream::Plain(client));
        let out = read(&mut io).await;
        drop(io);
        let _ = writer.await;
        out
    })
}

/// Feeds every parsed reply to the interpreters that read such replies: none may panic.
fn interpret_all(replies: Vec<Result<Response, String>>) {
    let ok: Vec<Response> = replies.into_iter().filter_map(Result::ok).collect();
    let _ = status_from(&ok, true);
    let _ = keywords::flags_reply_keywords(&ok);
    let _ = capabilities(&ok);
    let _ = storage_quota(&ok);
    for r in ok {
        match r {
            Response::Numbered { mut rest, .. } => {
                let _ = fetch_items(&mut rest);
            }
            Response::Data { kind, rest } => {
                let _ = parse_namespaces(&rest);
                let _ = parse_status_items(&rest);
                let _ = format!("{kind} {rest:?}");
                for v in &rest {
                    let _ = (v.as_text(), v.as_u32(), v.as_u64(), v.as_list());
                }
            }
            Response::Tagged { code, .. } | Response::State { code, .. } => {
                if let Some(c) = code {
                    let _ = keywords::parse_permanentflags(&c.args);
                    for a in c.args.split_whitespace() {
                        let _ = parse_uid_set(a);
                    }
                }
            }
            Response::Continue(_) => {}
        }
    }
}

/// One IMAP-shaped token, well formed or not.
fn token() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "*",
        "+",
        "x1",
        "x2",
        " ",
        " ",
        "(",
        ")",
        "((",
        "))",
        "\"",
        "\\",
        "NIL",
        "nil",
        "FETCH",
        "UID",
        "FLAGS",
        "BODY[]",
        "BINARY[]",
        "RFC822.SIZE",
        "INTERNALDATE",
        "STATUS",
        "LIST",
        "LSUB",
        "NAMESPACE",
        "SEARCH",
        "ESEARCH",
        "OK",
        "NO",
        "BAD",
        "BYE",
        "PREAUTH",
        "EXISTS",
        "[",
        "]",
        "[APPENDUID",
        "[COPYUID",
        "[UIDVALIDITY",
        "[PERMANENTFLAGS",
        "\\Seen",
        "\\*",
        "BODY[HEADER.FIELDS (MESSAGE-ID)]",
        "\r\n",
        "\n",
        "\r",
        "{",
        "}",
        "~",
        "{}",
        "{+}",
    ]);
    prop_oneof![
        4 => words.prop_map(|w| w.as_bytes().to_vec()),
        1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        1 => "[0-9]{15,30}".prop_map(String::into_bytes),
        1 => (0usize..40, prop::sample::select(vec!["{", "~{"]), any::<bool>())
            .prop_map(|(n, open, plus)| format!("{open}{n}{}}}\r\n", if plus { "+" } else { "" }).into_bytes()),
        1 => "[0-9]{10,13}".prop_map(|n| format!("{{{n}}}\r\n").into_bytes()),
        1 => "\"[^\"\\r\\n]{0,8}\"?".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(token(), 0..60).prop_map(|t| t.concat())
}

/// A value tree as a server may send it inside a FETCH list.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[A-Za-z\\\\$][A-Za-z0-9.$_-]{0,10}"
            .prop_filter("NIL is not an atom", |a| !a.eq_ignore_ascii_case("nil"))
            .prop_map(Value::Atom),
        "BODY\\[[A-Z0-9. ()]{0,20}\\]".prop_map(Value::Atom),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Str),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Value::List)
    })
}

/// `v` as a server writes it: quoted when it can be, a literal otherwise.
fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Atom(a) => out.extend_from_slice(a.as_bytes()),
        Value::Nil => out.extend_from_slice(b"NIL"),
        Value::Str(s) if s.iter().all(|&b| (0x20..0x7f).contains(&b)) => {
            out.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        Value::Str(s) => {
            out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
        }
        Value::List(l) => {
            out.push(b'(');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_value(x, out);
            }
            out.push(b')');
        }
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        interpret_all(responses_of(bytes));
    }

    #[test]
    fn imap_shaped_garbage_never_panics(bytes in garbage()) {
        interpret_all(responses_of(bytes));
    }

    /// A well-formed reply cut anywhere is read as far as it goes, then the end is an error,
    /// never a shorter reply taken for the whole one.
    #[test]
    fn truncated_fetch_is_an_error(body in prop::collection::vec(any::<u8>(), 0..200), cut in any::<prop::sample::Index>()) {
        let mut bytes = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(b")\r\n");
        let at = cut.index(bytes.len());
        bytes.truncate(at);
        let got = responses_of(bytes);
        prop_assert_eq!(got.len(), 1, "{:?}", got);
        prop_assert!(got[0].is_err());
    }

    #[test]
    fn value_trees_round_trip(values in prop::collection::vec(value(), 0..8)) {
        let mut bytes = b"* 9 FETCH (".to_vec();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                bytes.push(b' ');
            }
            write_value(v, &mut bytes);
        }
        bytes.extend_from_slice(b")\r\n");
        let mut got = responses_of(bytes);
        prop_assert_eq!(got.len(), 2, "{:?}", got);
        let want = Response::Numbered { n: 9, kind: "FETCH".into(), rest: vec![Value::List(values)] };
        prop_assert_eq!(got.remove(0), Ok(want));
    }
}

/// A parenthesis nesting deeper than any server sends (RFC 3501 replies nest a few levels; a
/// BODYSTRUCTURE a few dozen) is a malformed reply: an error, never a stack overflow (a line of
/// 100 000 `(` aborted the process). The deepest accepted nesting fits the 2 MiB stack of a
/// tokio worker thread in a debug build.
#[test]
fn deep_nesting_is_an_error() {
    for (depth, ok) in [
        (MAX_DEPTH, true),
        (MAX_DEPTH + 1, false),
        (100_000, false),
        (1_000_000, false),
    ] {
        let mut line = b"* 1 FETCH ".to_vec();
        line.extend(std::iter::repeat_n(b'(', depth));
        line.extend(std::iter::repeat_n(b')', depth));
        let t = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                parse_response(Parts {
                    texts: vec![line],
                    literals: vec![],
                })
                .map(|_| ())
            })
            .unwrap();
        let r = t.join().expect("parser panicked");
        assert_eq!(r.is_ok(), ok, "depth {depth}: {r:?}");
    }
}

// ---- Differential: valid replies, our fields against imap-codec's and the generated ones ----

/// The one reply our reader and parser make of `bytes` (and the end of the stream after it).
fn ours(bytes: &[u8]) -> Response {
    let mut got = responses_of(bytes.to_vec());
    assert_eq!(got.len(), 2, "one reply, then the end: {got:?}");
    assert!(got[1].is_err());
    got.remove(0).expect("our parser refused a valid reply")
}

/// imap-codec's reading of `bytes`: the whole input must be one reply.
fn codec(bytes: &[u8]) -> theirs::Response<'_> {
    match ResponseCodec::default().decode(bytes) {
        Ok((rest, r)) => {
            assert!(rest.is_empty(), "imap-codec left {rest:?}");
            r
        }
        Err(e) => panic!(
            "imap-codec refused {:?}: {e:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// A string as a server may send it: an atom, a quoted string or a literal. (wire, value)
fn astring() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,12}"
            .prop_filter("NIL and INBOX are no plain names", |a| {
                !a.eq_ignore_ascii_case("nil") && !a.eq_ignore_ascii_case("inbox")
            })
            .prop_map(|a| (a.clone().into_bytes(), a.into_bytes())),
        "[ -~]{0,12}"
            .prop_filter("INBOX is no plain name", |a| !a
                .eq_ignore_ascii_case("inbox"))
            .prop_map(|s| {
                let mut w = vec![b'"'];
                for b in s.bytes() {
                    if b == b'"' || b == b'\\' {
                        w.push(b'\\');
                    }
                    w.push(b);
                }
                w.push(b'"');
                (w, s.into_bytes())
            }),
        "[^\\r\\n\\x00]{1,8}"
            .prop_filter("INBOX is no plain name", |a| !a
                .eq_ignore_ascii_case("inbox"))
            .prop_map(|s| {
                let mut w = format!("{{{}}}\r\n", s.len()).into_bytes();
                w.extend_from_slice(s.as_bytes());
                (w, s.into_bytes())
            }),
    ]
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A valid INTERNALDATE (day space-padded or not), quoted.
fn internaldate() -> impl Strategy<Value = String> {
    (
        1u32..=28,
        0usize..12,
        1970u32..2100,
        (0u32..24, 0u32..60, 0u32..60),
        (
            any::<bool>(),
            0u32..=12,
            prop::sample::select(vec![0u32, 30, 45]),
        ),
        any::<bool>(),
    )
        .prop_map(|(d, m, y, (hh, mm, ss), (neg, zh, zm), pad)| {
            let day = if pad {
                format!("{d:>2}")
            } else {
                format!("{d:02}")
            };
            let sign = if neg { '-' } else { '+' };
            format!(
                "\"{day}-{}-{y} {hh:02}:{mm:02}:{ss:02} {sign}{zh:02}{zm:02}\"",
                MONTHS[m]
            )
        })
}

#[derive(Clone, Debug)]
struct GenFetch {
    seq: u32,
    uid: u32,
    flags: Option<Vec<String>>,
    size: Option<u32>,
    date: Option<String>,
    /// `None`: no body item; `Some(None)`: `BODY[] NIL`.
    body: Option<Option<Vec<u8>>>,
}

fn gen_fetch() -> impl Strategy<Value = GenFetch> {
    let flag = prop::sample::select(vec![
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Recent",
        "$Forwarded",
        "$MDNSent",
        "Junk",
        "NonJunk",
    ]);
    (
        1u32..,
        1u32..,
        prop::option::of(prop::collection::btree_set(flag, 0..5)),
        prop::option::of(any::<u32>()),
        prop::option::of(internaldate()),
        prop::option::of(prop::option::of(prop::collection::vec(1u8.., 0..300))),
    )
        .prop_map(|(seq, uid, flags, size, date, body)| GenFetch {
            seq,
            uid,
            flags: flags.map(|f| f.into_iter().map(String::from).collect()),
            size,
            date,
            body,
        })
}

fn write_fetch(g: &GenFetch) -> Vec<u8> {
    let mut w = format!("* {} FETCH (UID {}", g.seq, g.uid).into_bytes();
    if let Some(f) = &g.flags {
        w.extend_from_slice(format!(" FLAGS ({})", f.join(" ")).as_bytes());
    }
    if let Some(s) = g.size {
        w.extend_from_slice(format!(" RFC822.SIZE {s}").as_bytes());
    }
    if let Some(d) = &g.date {
        w.extend_from_slice(format!(" INTERNALDATE {d}").as_bytes());
    }
    match &g.body {
        None => {}
        Some(None) => w.extend_from_slice(b" BODY[] NIL"),
        Some(Some(b)) => {
            w.extend_from_slice(format!(" BODY[] {{{}}}\r\n", b.len()).as_bytes());
            w.extend_from_slice(b);
        }
    }
    w.extend_from_slice(b")\r\n");
    w
}

/// The fields both parsers give for a FETCH: uid, flags (copyable ones), size, instant, body.
type FetchFields = (
    u32,
    Option<u32>,
    Option<Vec<String>>,
    Option<u32>,
    Option<i64>,
    Option<Option<Vec<u8>>>,
);

fn our_fetch(r: Response) -> FetchFields {
    let Response::Numbered { n, kind, mut rest } = r else {
        panic!("not a numbered reply: {r:?}")
    };
    assert_eq!(kind, "FETCH");
    let f = fetch_items(&mut rest).expect("FETCH items");
    let body = match (f.body, f.body_nil) {
        (Some(b), _) => Some(Some(b)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    (
        n,
        f.uid,
        f.flags,
        f.size,
        f.internaldate
            .as_deref()
            .and_then(crate::timefmt::parse_internaldate),
        body,
    )
}

fn codec_fetch(r: theirs::Response<'_>) -> FetchFields {
    use imap_codec::imap_types::fetch::MessageDataItem as I;
    use imap_codec::imap_types::flag::FlagFetch;
    let theirs::Response::Data(theirs::Data::Fetch { seq, items }) = r else {
        panic!("imap-codec: not a FETCH: {r:?}")
    };
    let mut out: FetchFields = (seq.get(), None, None, None, None, None);
    for item in items.into_iter() {
        match item {
            I::Uid(u) => out.1 = Some(u.get()),
            I::Flags(f) => {
                out.2 = Some(
                    f.iter()
                        .map(|f| match f {
                            FlagFetch::Flag(f) => f.to_string(),
                            FlagFetch::Recent => "\\Recent".to_string(),
                        })
                        .filter(|f| is_copyable_flag(f))
                        .collect(),
                )
            }
            I::Rfc822Size(s) => out.3 = Some(s),
            I::InternalDate(d) => out.4 = Some(d.as_ref().timestamp()),
            I::BodyExt { data, .. } => out.5 = Some(data.into_option().map(|c| c.into_owned())),
            other => panic!("imap-codec: unexpected item {other:?}"),
        }
    }
    out
}

fn generated_fetch(g: &GenFetch) -> FetchFields {
    let flags = g.flags.as_ref().map(|f| {
        f.iter()
            .filter(|f| is_copyable_flag(f))
            .cloned()
            .collect::<Vec<_>>()
    });
    let date = g
        .date
        .as_deref()
        .map(|d| crate::timefmt::parse_internaldate(d).expect("generated date"));
    (g.seq, Some(g.uid), flags, g.size, date, g.body.clone())
}

/// LIST attributes, delimiter and name.
type ListFields = (Vec<String>, Option<char>, Vec<u8>);

/// The delimiter as `list_folders` reads it.
fn our_delimiter(v: &Value) -> Option<Option<char>> {
    match v {
        Value::Nil => Some(None),
        Value::Str(s) if s.len() == 1 => Some(Some(s[0] as char)),
        Value::Str(s) if s.len() == 2 && s[0] == b'\\' => Some(Some(s[1] as char)),
        _ => None,
    }
}

fn str_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Atom(a) => a.as_bytes().to_vec(),
        Value::Str(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn fetch_agrees_with_imap_codec(g in gen_fetch()) {
        let bytes = write_fetch(&g);
        let want = generated_fetch(&g);
        prop_assert_eq!(&our_fetch(ours(&bytes)), &want);
        prop_assert_eq!(&codec_fetch(codec(&bytes)), &want);
    }

    #[test]
    fn status_agrees_with_imap_codec(
        (wire, name) in astring(),
        uv in 1u32..,
        messages in prop::option::of(any::<u32>()),
        uidnext in prop::option::of(1u32..),
        unseen in prop::option::of(any::<u32>()),
        modseq in prop::option::of(1u64..),
    ) {
        let mut bytes = b"* STATUS ".to_vec();
        bytes.extend_from_slice(&wire);
        let mut items = vec![];
        if let Some(m) = messages { items.push(format!("MESSAGES {m}")); }
        items.push(format!("UIDVALIDITY {uv}"));
        if let Some(u) = uidnext { items.push(format!("UIDNEXT {u}")); }
        if let Some(u) = unseen { items.push(format!("UNSEEN {u}")); }
        if let Some(m) = modseq { items.push(format!("HIGHESTMODSEQ {m}")); }
        bytes.extend_from_slice(format!(" ({})\r\n", items.join(" ")).as_bytes());
        // Ours.
        let Response::Data { kind, rest } = ours(&bytes) else { panic!() };
        prop_assert_eq!(kind, "STATUS");
        prop_assert_eq!(str_bytes(&rest[0]), name.clone());
        let st = parse_status_items(&rest).expect("STATUS items");
        prop_assert_eq!(
            (st.uidvalidity.get(), st.messages, st.uidnext, st.highestmodseq),
            (uv, messages.unwrap_or(0), uidnext.unwrap_or(0), modseq)
        );
        // imap-codec.
        use imap_codec::imap_types::status::StatusDataItem as S;
        let theirs::Response::Data(theirs::Data::Status { mailbox, items }) = codec(&bytes) else {
            panic!("imap-codec: not a STATUS")
        };
        let imap_codec::imap_types::mailbox::Mailbox::Other(m) = mailbox else { panic!("INBOX") };
        prop_assert_eq!(m.inner().as_ref(), &name[..]);
        let (mut tuv, mut tm, mut tn, mut tms) = (0, 0, 0, None);
        for i in items.iter() {
            match i {
                S::UidValidity(v) => tuv = v.get(),
                S::Messages(v) => tm = *v,
                S::UidNext(v) => tn = v.get(),
                S::HighestModSeq(v) => tms = Some(*v),
                _ => {}
            }
        }
        prop_assert_eq!((tuv, tm, tn, tms), (uv, messages.unwrap_or(0), uidnext.unwrap_or(0), modseq));
    }

    #[test]
    fn list_agrees_with_imap_codec(
        attrs in prop::collection::btree_set(prop::sample::select(vec![
            "\\HasNoChildren", "\\HasChildren", "\\Noselect", "\\Noinferiors", "\\Marked",
            "\\Sent", "\\Trash", "\\Drafts", "\\Junk",
        ]), 0..4),
        delim in prop::option::of(prop::sample::select(vec!['/', '.', '\\', '"'])),
        (wire, name) in astring(),
    ) {
        let attrs: Vec<String> = attrs.into_iter().map(String::from).collect();
        let d = match delim {
            None => "NIL".to_string(),
            Some(c @ ('\\' | '"')) => format!("\"\\{c}\""),
            Some(c) => format!("\"{c}\""),
        };
        let mut bytes = format!("* LIST ({}) {d} ", attrs.join(" ")).into_bytes();
        bytes.extend_from_slice(&wire);
        bytes.extend_from_slice(b"\r\n");
        let want: ListFields = (attrs, delim, name);
        // Ours, read the way `list_folders` reads a LIST reply.
        let Response::Data { kind, rest } = ours(&bytes) else { panic!() };
        prop_assert_eq!(kind, "LIST");
        let got: ListFields = (
            rest[0].as_list().unwrap().iter().filter_map(Value::as_text).collect(),
            our_delimiter(&rest[1]).expect("delimiter"),
            str_bytes(&rest[2]),
        );
        prop_assert_eq!(&got, &want);
        // imap-codec.
        let theirs::Response::Data(theirs::Data::List { items, delimiter, mailbox }) = codec(&bytes) else {
            panic!("imap-codec: not a LIST")
        };
        let imap_codec::imap_types::mailbox::Mailbox::Other(m) = mailbox else { panic!("INBOX") };
        let got: ListFields = (
            items.iter().map(ToString::to_string).collect(),
            delimiter.map(|c| c.inner()),
            m.inner().as_ref().to_vec(),
        );
        prop_assert_eq!(&got, &want);
    }

    #[test]
    fn namespace_agrees_with_imap_codec(
        groups in prop::collection::vec(prop::option::of(prop::collection::vec(
            ("[A-Za-z#.]{0,8}[./]?", prop::option::of(prop::sample::select(vec!['/', '.']))),
            1..3,
        )), 3),
    ) {
        let mut line = "* NAMESPACE".to_string();
        for g in &groups {
            match g {
                None => line.push_str(" NIL"),
                Some(ns) => {
                    line.push_str(" (");
                    for (p, d) in ns {
                        let d = d.map(|c| format!("\"{c}\"")).unwrap_or_else(|| "NIL".into());
                        line.push_str(&format!("(\"{p}\" {d})"));
                    }
                    line.push(')');
                }
            }
        }
        line.push_str("\r\n");
        type Group = Vec<(String, Option<char>)>;
        let flat = |gs: &[Option<Group>]| -> Group {
            gs.iter().flatten().flatten().cloned().collect()
        };
        let want_personal = groups[0].as_ref().map(|g| g[0].clone());
        let want_others = flat(&groups[1..]);
        // Ours.
        let Response::Data { rest, .. } = ours(line.as_bytes()) else { panic!() };
        let n = parse_namespaces(&rest).expect("NAMESPACE");
        prop_assert_eq!(n.personal.map(|p| (p.prefix, p.delimiter)), want_personal.clone());
        prop_assert_eq!(
            n.others.into_iter().map(|p| (p.prefix, p.delimiter)).collect::<Vec<_>>(),
            want_others.clone()
        );
        // imap-codec.
        let theirs::Response::Data(theirs::Data::Namespace { personal, other, shared }) = codec(line.as_bytes()) else {
            panic!("imap-codec: not a NAMESPACE")
        };
        let conv = |v: &[imap_codec::imap_types::extensions::namespace::Namespace<'_>]| -> Vec<(String, Option<char>)> {
            v.iter()
                .map(|n| (String::from_utf8_lossy(n.prefix.as_ref()).into_owned(), n.delimiter.as_ref().map(|c| c.inner())))
                .collect()
        };
        prop_assert_eq!(conv(&personal).first().cloned(), want_personal);
        let mut others = conv(&other);
        others.extend(conv(&shared));
        prop_assert_eq!(others, want_others);
    }

    /// APPENDUID (one UID, as imap-codec knows it) and COPYUID arguments, read as uid-sets.
    #[test]
    fn uidplus_codes_agree_with_imap_codec(
        uv in 1u32..,
        uid in 1u32..,
        src in prop::collection::btree_set(1u32..100_000, 1..20),
        copy in any::<bool>(),
    ) {
        let src: Vec<u32> = src.into_iter().collect();
        let dst: Vec<u32> = src.iter().map(|u| u + 7).collect();
        let line = if copy {
            format!("x3 OK [COPYUID {uv} {} {}] Done\r\n", format_uid_set(&src), format_uid_set(&dst))
        } else {
            format!("x3 OK [APPENDUID {uv} {uid}] Done\r\n")
        };
        let Response::Tagged { tag, status, code: Some(c), text } = ours(line.as_bytes()) else { panic!() };
        prop_assert_eq!((tag.as_str(), status, text.as_str()), ("x3", Status::Ok, "Done"));
        let args: Vec<&str> = c.args.split_whitespace().collect();
        prop_assert_eq!(args[0].parse::<u32>().ok(), Some(uv));
        let sets: Vec<Vec<u32>> = args[1..].iter().map(|a| parse_uid_set(a).unwrap()).collect();
        let want = if copy { vec![src.clone(), dst.clone()] } else { vec![vec![uid]] };
        prop_assert_eq!(&sets, &want);
        let expand = |s: &imap_codec::imap_types::extensions::uidplus::UidSet| -> Vec<u32> {
            use imap_codec::imap_types::extensions::uidplus::UidElement as E;
            s.0.as_ref().iter().flat_map(|e| match e {
                E::Single(u) => u.get()..=u.get(),
                E::Range(a, b) => a.get().min(b.get())..=a.get().max(b.get()),
            }).collect()
        };
        let theirs::Response::Status(theirs::Status::Tagged(t)) = codec(line.as_bytes()) else {
            panic!("imap-codec: not tagged")
        };
        let got = match t.body.code {
            Some(theirs::Code::AppendUid { uid_validity, uid }) => (uid_validity.get(), vec![vec![uid.get()]]),
            Some(theirs::Code::CopyUid { uid_validity, source, destination }) => {
                (uid_validity.get(), vec![expand(&source), expand(&destination)])
            }
            other => panic!("imap-codec: code {other:?}"),
        };
        prop_assert_eq!(got, (uv, want));
    }

    /// What a SELECT or EXAMINE says about the folder, and a SEARCH result.
    #[test]
    fn select_codes_and_search_agree_with_imap_codec(
        uv in 1u32.., uidnext in 1u32.., exists in any::<u32>(), modseq in 1u64..,
        hits in prop::collection::vec(1u32.., 0..20),
    ) {
        let lines = [
            format!("* {exists} EXISTS\r\n"),
            format!("* OK [UIDVALIDITY {uv}] UIDs valid\r\n"),
            format!("* OK [UIDNEXT {uidnext}] Predicted next UID\r\n"),
            format!("* OK [HIGHESTMODSEQ {modseq}] Highest\r\n"),
        ];
        let replies: Vec<Response> = lines.iter().map(|l| ours(l.as_bytes())).collect();
        prop_assert_eq!(status_from(&replies, true), (Some(uv), uidnext, Some(exists), Some(modseq)));
        let mut got = (None, None, None, None);
        for l in &lines {
            match codec(l.as_bytes()) {
                theirs::Response::Data(theirs::Data::Exists(n)) => got.2 = Some(n),
                theirs::Response::Status(theirs::Status::Untagged(b)) => match b.code {
                    Some(theirs::Code::UidValidity(v)) => got.0 = Some(v.get()),
                    Some(theirs::Code::UidNext(v)) => got.1 = Some(v.get()),
                    Some(theirs::Code::HighestModSeq(v)) => got.3 = Some(v.get()),
                    other => panic!("imap-codec: code {other:?}"),
                },
                other => panic!("imap-codec: {other:?}"),
            }
        }
        prop_assert_eq!(got, (Some(uv), Some(uidnext), Some(exists), Some(modseq)));
        let line = format!("* SEARCH{}\r\n", hits.iter().map(|h| format!(" {h}")).collect::<String>());
        let Response::Data { kind, rest } = ours(line.as_bytes()) else { panic!() };
        prop_assert_eq!(kind, "SEARCH");
        prop_assert_eq!(rest.iter().map(|v| v.as_u32().unwrap()).collect::<Vec<_>>(), hits.clone());
        let theirs::Response::Data(theirs::Data::Search(t, _)) = codec(line.as_bytes()) else {
            panic!("imap-codec: not a SEARCH")
        };
        prop_assert_eq!(t.iter().map(|u| u.get()).collect::<Vec<_>>(), hits);
    }
}

// ---- CAPABILITY and QUOTA (`wire/replies.rs`) ----

/// A quota resource name: STORAGE in any case, another resource, or any value.
fn quota_resource() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(vec!["STORAGE", "storage", "Storage", "MESSAGE", "MAILBOX", "X"])
            .prop_map(|a| Value::Atom(a.into())),
        1 => Just(Value::Str(b"STORAGE".to_vec())),
        1 => value(),
    ]
}

/// A quota figure: a number (often small, sometimes past u64, signed), as an atom or a string,
/// or any value.
fn quota_figure() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..100).prop_map(|n| n.to_string()),
            Just(u64::MAX.to_string()),
            "[+-]?[0-9]{1,25}",
        ]
        .prop_map(Value::Atom),
        1 => "[0-9]{1,5}".prop_map(|n| Value::Str(n.into_bytes())),
        1 => value(),
    ]
}

/// Any value a QUOTA reply may carry.
fn quota_value() -> impl Strategy<Value = Value> {
    prop_oneof![quota_resource(), quota_figure()]
}

/// A QUOTA reply's values: a root, then mostly a list of (resource, used, limit) triples.
fn quota_rest() -> impl Strategy<Value = Vec<Value>> {
    let triples = prop::collection::vec((quota_resource(), quota_figure(), quota_figure()), 0..4)
        .prop_map(|t| Value::List(t.into_iter().flat_map(|(r, u, l)| [r, u, l]).collect()));
    let shaped = (
        prop_oneof![4 => Just(Value::Atom("root".into())), 1 => value()],
        prop_oneof![
            6 => triples,
            1 => prop::collection::vec(quota_value(), 0..8).prop_map(Value::List),
            1 => quota_value(),
        ],
        prop::collection::vec(value(), 0..2),
    )
        .prop_map(|(root, list, more)| [vec![root, list], more].concat());
    prop_oneof![
        5 => shaped,
        1 => prop::collection::vec(quota_value(), 0..3),
    ]
}

/// Which replies' values a session's reading reaches: CAPABILITY, QUOTA and other kinds.
fn capability_and_quota_replies() -> impl Strategy<Value = Vec<Response>> {
    let reply = prop_oneof![
        3 => quota_rest().prop_map(|rest| Response::Data { kind: "QUOTA".into(), rest }),
        2 => prop::collection::vec(prop_oneof![3 => "[A-Za-z0-9=+.-]{1,12}".prop_map(Value::Atom), 1 => value()], 0..8)
            .prop_map(|rest| Response::Data { kind: "CAPABILITY".into(), rest }),
        1 => (prop::sample::select(vec!["QUOTAROOT", "LIST", "STATUS"]), prop::collection::vec(quota_value(), 0..6))
            .prop_map(|(k, rest)| Response::Data { kind: k.into(), rest }),
        1 => (any::<u32>(), prop::collection::vec(quota_value(), 0..4))
            .prop_map(|(n, rest)| Response::Numbered { n, kind: "QUOTA".into(), rest }),
    ];
    prop::collection::vec(reply, 0..5)
}

/// Room left under a quota.
fn room(q: &crate::store::StorageQuota) -> u64 {
    q.limit.saturating_sub(q.used)
}

/// The properties of [`capabilities`] and [`storage_quota`] on `replies`, stated from RFC 9208's
/// shape rather than from the code's loop.
fn check_capability_and_quota(replies: &[Response]) -> Result<(), TestCaseError> {
    let data = |k: &'static str| {
        replies.iter().filter_map(move |r| match r {
            Response::Data { kind, rest } if kind == k => Some(rest),
            _ => None,
        })
    };
    let atoms: BTreeSet<String> = data("CAPABILITY")
        .flatten()
        .filter_map(|v| v.as_atom().map(str::to_ascii_uppercase))
        .collect();
    prop_assert_eq!(capabilities(replies), atoms);

    let figure = |v: &Value| v.as_text().and_then(|t| t.parse::<u64>().ok());
    let is_storage = |v: &Value| {
        v.as_text()
            .is_some_and(|t| t.eq_ignore_ascii_case("storage"))
    };
    // Whole: every QUOTA reply has a list of whole triples, each STORAGE one with figures.
    let whole = data("QUOTA").all(|rest| {
        rest.get(1).and_then(Value::as_list).is_some_and(|l| {
            l.len() % 3 == 0
                && l.chunks(3).all(|t| {
                    !is_storage(&t[0]) || (figure(&t[1]).is_some() && figure(&t[2]).is_some())
                })
        })
    });
    let storage: Vec<crate::store::StorageQuota> = data("QUOTA")
        .filter_map(|rest| rest.get(1).and_then(Value::as_list))
        .flat_map(|l| l.chunks(3))
        .filter(|t| t.len() == 3 && is_storage(&t[0]))
        .filter_map(|t| {
            Some(crate::store::StorageQuota {
                used: figure(&t[1])?.saturating_mul(1024),
                limit: figure(&t[2])?.saturating_mul(1024),
            })
        })
        .collect();
    match storage_quota(replies) {
        Err(e) => {
            prop_assert!(!whole, "a whole reply refused: {}", e);
            prop_assert!(e.starts_with("QUOTA reply ["), "{}", e);
        }
        Ok(got) => {
            prop_assert!(whole, "a broken QUOTA reply taken: {:?}", got);
            match got {
                None => prop_assert!(storage.is_empty(), "{:?}", storage),
                Some(q) => {
                    // The first of the tightest.
                    let least = storage.iter().map(room).min();
                    prop_assert_eq!(Some(room(&q)), least);
                    prop_assert_eq!(storage.iter().find(|s| room(s) == room(&q)), Some(&q));
                }
            }
        }
    }
    Ok(())
}

/// A capability as servers name them: the common ones, `AUTH=`, `QUOTA=RES-` and plain atoms.
fn capability_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "IMAP4rev1", "IMAP4rev2", "LITERAL+", "LITERAL-", "IDLE", "UIDPLUS", "MOVE", "QUOTA",
            "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "CONDSTORE", "QRESYNC", "NAMESPACE",
            "ENABLE", "SASL-IR", "APPENDLIMIT=35651584", "LOGINDISABLED", "STARTTLS",
            "AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "UTF8=ACCEPT", "SPECIAL-USE",
        ])
        .prop_map(String::from),
        1 => "[A-Za-z][A-Za-z0-9.-]{0,12}".prop_filter("NIL is not an atom", |a| !a.eq_ignore_ascii_case("nil")),
        1 => "[A-Za-z0-9-]{1,10}".prop_map(|a| format!("X-{a}")),
    ]
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn capability_and_quota_values(replies in capability_and_quota_replies()) {
        check_capability_and_quota(&replies)?;
    }

    /// Garbage after the start of a CAPABILITY or QUOTA reply, through the real reader.
    #[test]
    fn capability_and_quota_garbage(
        start in prop::sample::select(vec!["* CAPABILITY ", "* QUOTA ", "* QUOTA \"\" (", "* QUOTA r (STORAGE ", "* quota r (MESSAGE 1 2 STORAGE "]),
        bytes in garbage(),
    ) {
        let replies = responses_of([start.as_bytes(), &bytes].concat());
        let ok: Vec<Response> = replies.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        check_capability_and_quota(&ok)?;
        interpret_all(replies);
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn capability_agrees_with_imap_codec(caps in prop::collection::vec(capability_name(), 0..10)) {
        let line = format!("* CAPABILITY IMAP4rev1{}\r\n", caps.iter().map(|c| format!(" {c}")).collect::<String>());
        let mut want: BTreeSet<String> = caps.iter().map(|c| c.to_ascii_uppercase()).collect();
        want.insert("IMAP4REV1".into());
        let r = ours(line.as_bytes());
        prop_assert_eq!(capabilities(&[r]), want.clone());
        let theirs::Response::Data(theirs::Data::Capability(t)) = codec(line.as_bytes()) else {
            panic!("imap-codec: not a CAPABILITY")
        };
        let got: BTreeSet<String> = t.as_ref().iter().map(|c| c.to_string().to_ascii_uppercase()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn quota_agrees_with_imap_codec(
        (wire, root) in astring(),
        resources in prop::collection::vec((prop::sample::select(vec!["STORAGE", "storage", "MESSAGE", "MAILBOX", "ANNOTATION-STORAGE"]), 0u64..=i64::MAX as u64, 0u64..=i64::MAX as u64), 1..4),
    ) {
        let mut bytes = b"* QUOTA ".to_vec();
        bytes.extend_from_slice(&wire);
        let list: Vec<String> = resources.iter().map(|(r, u, l)| format!("{r} {u} {l}")).collect();
        bytes.extend_from_slice(format!(" ({})\r\n", list.join(" ")).as_bytes());
        // What was generated: the first STORAGE with the least room.
        let mut want: Option<crate::store::StorageQuota> = None;
        for (r, u, l) in &resources {
            let q = crate::store::StorageQuota { used: u.saturating_mul(1024), limit: l.saturating_mul(1024) };
            if r.eq_ignore_ascii_case("storage") && want.is_none_or(|w| room(&q) < room(&w)) {
                want = Some(q);
            }
        }
        let r = ours(&bytes);
        let Response::Data { kind, rest } = &r else { panic!() };
        prop_assert_eq!(kind, "QUOTA");
        prop_assert_eq!(str_bytes(&rest[0]), root.clone());
        prop_assert_eq!(storage_quota(&[r]), Ok(want));
        use imap_codec::imap_types::extensions::quota::Resource;
        let theirs::Response::Data(theirs::Data::Quota { root: troot, quotas }) = codec(&bytes) else {
            panic!("imap-codec: not a QUOTA")
        };
        prop_assert_eq!(troot.as_ref(), &root[..]);
        let theirs_got: Vec<(String, u64, u64)> = quotas
            .as_ref()
            .iter()
            .map(|q| (q.resource.to_string(), q.usage, q.limit))
            .collect();
        let generated: Vec<(String, u64, u64)> = resources.iter().map(|(r, u, l)| (r.to_ascii_uppercase(), *u, *l)).collect();
        prop_assert_eq!(theirs_got, generated);
        prop_assert!(quotas.as_ref().iter().any(|q| q.resource == Resource::Storage) == want.is_some());
    }
}

// ---- Speed: ours against imap-codec on the same replies (a measurement, not a test of time) ----

/// `bytes` cut into replies the way [`read_parts`] cuts a stream (lines, `{n}` literals), in
/// memory, so that the parsers alone can be timed.
fn split_parts(bytes: &[u8]) -> Vec<Parts> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut cur = Parts {
        texts: vec![],
        literals: vec![],
    };
    while at < bytes.len() {
        let end = at
            + bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("line end");
        let line = bytes[at..end]
            .strip_suffix(b"\r")
            .unwrap_or(&bytes[at..end]);
        at = end + 1;
        match literal_marker(line) {
            Some(n) => {
                cur.texts.push(line.to_vec());
                cur.literals.push(bytes[at..at + n].to_vec());
                at += n;
            }
            None => {
                cur.texts.push(line.to_vec());
                out.push(std::mem::replace(
                    &mut cur,
                    Parts {
                        texts: vec![],
                        literals: vec![],
                    },
                ));
            }
        }
    }
    out
}

/// Our parser and imap-codec's on the same 100 000 FETCH replies (the generator of
/// `fetch_agrees_with_imap_codec`, from a fixed seed: UID, FLAGS, RFC822.SIZE, INTERNALDATE
/// and BODY[] literals of up to 300 bytes, each item there or not), each timed at its best of
/// seven runs: ours parsing replies already cut into lines and literals (`parse_response`), the
/// same plus reading the FETCH items (`fetch_items`), and end to end through the real reader
/// over a loopback TCP connection; imap-codec decoding the same bytes from memory (cutting and
/// parsing: it has no reader of its own). Run with
/// `cargo test --release --lib parse_speed -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run it in a release build with --ignored --nocapture"]
fn parse_speed() {
    use proptest::strategy::ValueTree;
    use std::hint::black_box;
    use std::time::{Duration, Instant};
    const N: usize = 100_000;
    // Best of several runs: the figure least disturbed by whatever else the machine runs.
    const RUNS: usize = 7;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = gen_fetch();
    let mut bytes = Vec::new();
    for _ in 0..N {
        let g = strategy.new_tree(&mut runner).expect("generated").current();
        bytes.extend_from_slice(&write_fetch(&g));
    }
    let best = |f: &mut dyn FnMut() -> usize| -> Duration {
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(f(), N, "every reply parsed");
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    // The parts are cut before the clock starts (`parse_response` takes them by value).
    let on_parts = |f: &dyn Fn(Parts) -> bool| -> Duration {
        (0..RUNS)
            .map(|_| {
                let parts = split_parts(&bytes);
                let t = Instant::now();
                let n = parts.into_iter().map(|p| f(black_box(p)));
                let n = n.filter(|&ok| ok).count();
                let d = t.elapsed();
                assert_eq!(n, N, "every reply parsed");
                d
            })
            .min()
            .unwrap()
    };
    let ours_parse = on_parts(&|p| black_box(parse_response(p)).is_ok());
    let ours_items = on_parts(&|p| match parse_response(p) {
        Ok(Response::Numbered { mut rest, .. }) => black_box(fetch_items(&mut rest)).is_some(),
        _ => false,
    });
    let ours_tcp = best(&mut || {
        over_loopback(bytes.clone(), async |io: &mut Buffered| {
            let mut n = 0;
            while let Ok(parts) = read_parts(io, Duration::from_secs(10)).await {
                if let Ok(Response::Numbered { mut rest, .. }) = parse_response(parts) {
                    n += usize::from(black_box(fetch_items(&mut rest)).is_some());
                }
            }
            n
        })
    });
    let codec = best(&mut || {
        let c = ResponseCodec::default();
        let mut rest = &bytes[..];
        let mut n = 0;
        while !rest.is_empty() {
            let (r, resp) = c.decode(rest).expect("imap-codec decodes");
            n += usize::from(matches!(
                black_box(resp),
                theirs::Response::Data(theirs::Data::Fetch { .. })
            ));
            rest = r;
        }
        n
    });
    let mb = bytes.len() as f64 / 1e6;
    let show = |what: &str, d: Duration| {
        format!(
            "{what} {:.1} ms ({:.0} MB/s, {:.2}x imap-codec)",
            d.as_secs_f64() * 1e3,
            mb / d.as_secs_f64(),
            d.as_secs_f64() / codec.as_secs_f64()
        )
    };
    println!(
        "MEASURE parse: {N} FETCH replies, {mb:.1} MB ({}); {}; {}; {}; {}",
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        },
        show("imap-codec decode (memory)", codec),
        show("ours parse_response (cut parts)", ours_parse),
        show("ours parse_response + fetch_items (cut parts)", ours_items),
        show(
            "ours reader over loopback TCP + parse + fetch_items",
            ours_tcp
        ),
    );
}
