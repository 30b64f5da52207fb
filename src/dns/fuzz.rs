//! Fuzzing of how the MX watcher reads a DNS answer (issue 13): [`outcome_of`] and the
//! [`Outcome`] methods the watcher and its reports use.
//!
//! Inputs: arbitrary hickory [`Message`]s (random header bits including AA and TC, any response
//! code, a question, answer and authority sections of MX, NS, A, AAAA, CNAME and SOA records,
//! names with odd bytes in their labels), and bytes taken as they come off the socket whenever
//! [`Message::from_vec`] decodes them: plain random bytes, encoded messages with bytes changed
//! or cut, and record-shaped bytes (framing right, contents random, compression pointers
//! anywhere). The answer records of generated messages are owned by the asked name (in any
//! case, with or without the root), by other names of a small pool that CNAMEs link into
//! chains, loops and dead ends, or by unrelated names. Properties:
//! - nothing panics;
//! - an answer without the AA bit is never an authoritative answer, one with it on a NOERROR
//!   reply always is; only NOERROR gives targets;
//! - the CNAME chain is the one a plain walk of the answer section finds from the asked name
//!   (first CNAME of each name, labels compared byte by byte in ASCII lower case), at most
//!   [`MAX_CNAMES`] + 1 long; `targets()` is exactly the exchanges of the MX records owned by
//!   its last name (by the asked name without a chain; none for a chain past the bound), lower
//!   case, without the trailing dot, lowest preference first; every other answer record is
//!   counted as ignored; MX records in the authority section never count;
//! - for generated messages, the same against what was generated (pool indexes, not names);
//! - `max_ttl()` is the largest TTL of those records (`None` without any);
//! - `describe()` is never empty;
//! - a message read straight and the same message sent over the wire and decoded give the same
//!   outcome.
//!
//! Default case counts keep this to a few seconds in a debug build; `PROPTEST_CASES=100000
//! cargo test --release --lib dns::fuzz` runs longer.

use super::*;
use crate::imap::wire::fuzz::cases;
use hickory_client::proto::op::{Edns, Header, Message, MessageType, OpCode, Query};
use hickory_client::proto::rr::domain::Label;
use hickory_client::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA};
use hickory_client::proto::rr::Record;
use proptest::prelude::*;

/// A generated name and, when every label is plain letters, digits and hyphens, the form the
/// watcher must show of it (lower case, no trailing dot).
#[derive(Clone, Debug)]
struct GenName {
    name: Name,
    shown: Option<String>,
}

fn gen_name() -> impl Strategy<Value = GenName> {
    let plain = (
        prop::collection::vec("[A-Za-z0-9][A-Za-z0-9-]{0,9}", 1..5),
        any::<bool>(),
    )
        .prop_map(|(labels, fqdn)| {
            let text = labels.join(".");
            let name = Name::from_ascii(if fqdn {
                format!("{text}.")
            } else {
                text.clone()
            })
            .expect("plain name");
            GenName {
                name,
                shown: Some(text.to_ascii_lowercase()),
            }
        });
    // Labels of any bytes: dots, spaces, backslashes, NUL and non-ASCII inside a label.
    let odd =
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 1..4).prop_map(|labels| {
            let labels: Vec<Label> = labels
                .iter()
                .map(|l| Label::from_raw_bytes(l).expect("label of 1 to 63 bytes"))
                .collect();
            let mut name = Name::from_labels(labels).expect("short name");
            name.set_fqdn(true);
            GenName { name, shown: None }
        });
    prop_oneof![
        6 => plain,
        2 => odd,
        // The null MX of RFC 7505: `0 .`.
        1 => Just(GenName { name: Name::root(), shown: Some(String::new()) }),
    ]
}

/// A record of any owner: MX (often), NS, CNAME, SOA, A or AAAA.
fn gen_record() -> impl Strategy<Value = Record> {
    let ttl = prop_oneof![Just(0u32), 1u32..86_400, any::<u32>()];
    (
        gen_name(),
        ttl,
        0u8..6,
        any::<u16>(),
        gen_name(),
        any::<u32>(),
    )
        .prop_map(|(owner, ttl, kind, pref, target, n)| {
            let t = target.name.clone();
            let data = match kind {
                0 | 1 => RData::MX(MX::new(pref, t)),
                2 => RData::NS(NS(t)),
                3 => RData::CNAME(CNAME(t)),
                4 => RData::SOA(SOA::new(t, owner.name.clone(), n, 3600, 600, 86400, ttl)),
                _ if n % 2 == 0 => RData::A(A(std::net::Ipv4Addr::from(n))),
                _ => RData::AAAA(AAAA(std::net::Ipv6Addr::from(u128::from(n) << 64))),
            };
            Record::from_rdata(owner.name, ttl, data)
        })
}

/// Response codes: NOERROR (the records are read) or another common one most of the time, any
/// 12-bit one (EDNS) sometimes.
fn rcode() -> impl Strategy<Value = ResponseCode> {
    prop_oneof![
        5 => Just(ResponseCode::NoError),
        4 => (0u16..=10).prop_map(<ResponseCode as From<u16>>::from),
        1 => (0u16..4096).prop_map(<ResponseCode as From<u16>>::from),
    ]
}

/// `text` with the case of each letter flipped where `bits` has a one.
fn recase(text: &str, bits: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if bits >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// A name of the pool, `_p<i>.chain.example` (no generated plain name has an underscore), in
/// the case `bits` says, with or without the root.
fn pool_name(i: usize, bits: u64) -> Name {
    let mut text = recase(&format!("_p{i}.chain.example"), bits);
    if bits >> 63 == 1 {
        text.push('.');
    }
    Name::from_ascii(text).expect("pool name")
}

/// One answer record of a generated message.
#[derive(Clone, Debug)]
enum GenAnswer {
    /// `owner CNAME pool[target]`.
    Cname {
        owner: usize,
        obits: u64,
        target: usize,
        tbits: u64,
        ttl: u32,
    },
    /// `owner MX pref exchange`.
    Mx {
        owner: usize,
        obits: u64,
        mx: (u16, GenName, u32),
    },
    /// An A record of a pool name.
    A {
        owner: usize,
        obits: u64,
    },
    Stray(Record),
}

impl GenAnswer {
    fn record(&self) -> Record {
        match self {
            GenAnswer::Cname {
                owner,
                obits,
                target,
                tbits,
                ttl,
            } => Record::from_rdata(
                pool_name(*owner, *obits),
                *ttl,
                RData::CNAME(CNAME(pool_name(*target, *tbits))),
            ),
            GenAnswer::Mx { owner, obits, mx } => Record::from_rdata(
                pool_name(*owner, *obits),
                mx.2,
                RData::MX(MX::new(mx.0, mx.1.name.clone())),
            ),
            GenAnswer::A { owner, obits } => Record::from_rdata(
                pool_name(*owner, *obits),
                60,
                RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 1))),
            ),
            GenAnswer::Stray(r) => r.clone(),
        }
    }
}

/// An answer record among a pool of `pool` names: CNAMEs mostly from one name to the next
/// (chains that end at the last name), sometimes to any (loops, dead ends).
fn gen_answer(pool: usize) -> impl Strategy<Value = GenAnswer> {
    let ix = 0..pool;
    let owner = prop_oneof![3 => Just(0usize), 4 => ix.clone()];
    let linked = (0..pool.max(2) - 1).prop_map(move |i| (i, (i + 1).min(pool - 1)));
    let any_link = (ix.clone(), ix.clone());
    prop_oneof![
        3 => (prop_oneof![3 => linked, 1 => any_link], any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|((owner, target), obits, tbits, ttl)| GenAnswer::Cname {
                owner,
                obits,
                target,
                tbits,
                ttl,
            }),
        5 => (owner.clone(), any::<u64>(), (any::<u16>(), gen_name(), any::<u32>()))
            .prop_map(|(owner, obits, mx)| GenAnswer::Mx { owner, obits, mx }),
        1 => (owner, any::<u64>()).prop_map(|(owner, obits)| GenAnswer::A { owner, obits }),
        2 => gen_record().prop_map(GenAnswer::Stray),
    ]
}

#[derive(Clone, Debug)]
struct GenMessage {
    message: Message,
    /// The name asked about: pool name 0.
    asked: Name,
    answers: Vec<GenAnswer>,
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
    (1usize..=11)
        .prop_flat_map(|pool| {
            (
                (
                    any::<u16>(),
                    any::<bool>(),
                    prop::sample::select(vec![
                        OpCode::Query,
                        OpCode::Status,
                        OpCode::Notify,
                        OpCode::Update,
                    ]),
                    any::<[bool; 6]>(),
                ),
                rcode(),
                (any::<u64>(), prop::option::of(prop::option::of(gen_name()))),
                prop::collection::vec(gen_answer(pool), 0..14),
                prop::collection::vec(gen_record(), 0..4),
            )
        })
        .prop_map(
            |(
                (id, response, op, [aa, tc, rd, ra, ad, cd]),
                rcode,
                (abits, question),
                answers,
                authority,
            )| {
                let mut h = Header::new();
                h.set_id(id)
                    .set_message_type(if response {
                        MessageType::Response
                    } else {
                        MessageType::Query
                    })
                    .set_op_code(op)
                    .set_authoritative(aa)
                    .set_truncated(tc)
                    .set_recursion_desired(rd)
                    .set_recursion_available(ra)
                    .set_authentic_data(ad)
                    .set_checking_disabled(cd)
                    .set_response_code(rcode);
                let mut m = Message::new();
                m.set_header(h);
                if rcode.high() > 0 {
                    // The high bits of an extended rcode travel in the OPT record.
                    m.set_edns(Edns::new());
                }
                let asked = pool_name(0, abits);
                // The question: the asked name, another, or none (the reading must not need it).
                match question {
                    Some(None) => m.add_query(Query::query(asked.clone(), RecordType::MX)),
                    Some(Some(q)) => m.add_query(Query::query(q.name, RecordType::MX)),
                    None => &mut m,
                };
                m.add_answers(answers.iter().map(GenAnswer::record));
                m.add_name_servers(authority);
                GenMessage {
                    message: m,
                    asked,
                    answers,
                }
            },
        )
}

/// Labels equal byte by byte in ASCII lower case, the root aside.
fn same_labels(a: &Name, b: &Name) -> bool {
    a.iter()
        .map(|l| l.to_ascii_lowercase())
        .eq(b.iter().map(|l| l.to_ascii_lowercase()))
}

/// An MX record as the watcher must show it: (preference, exchange, ttl).
type Shown = (u16, String, u32);

/// The chain of CNAMEs read: the names and how many distinct records (a loop reads one twice).
struct Walked {
    chain: Vec<Name>,
    cname_records: usize,
}

/// What a reader of the rules finds in `answers` for `asked`: the CNAME chain, and, unless it
/// runs past the bound, the MX records of its last name.
fn walk(answers: &[Record], asked: &Name) -> (Walked, Option<Vec<Shown>>) {
    let mut chain: Vec<Name> = Vec::new();
    let mut read = std::collections::BTreeSet::new();
    loop {
        let at = chain.last().unwrap_or(asked);
        let next = answers
            .iter()
            .enumerate()
            .find_map(|(i, rec)| match rec.data() {
                RData::CNAME(c) if same_labels(rec.name(), at) => Some((i, c.0.clone())),
                _ => None,
            });
        match next {
            Some((i, n)) if chain.len() <= MAX_CNAMES => {
                read.insert(i);
                chain.push(n);
            }
            _ => break,
        }
    }
    let cname_records = read.len();
    if chain.len() > MAX_CNAMES {
        return (
            Walked {
                chain,
                cname_records,
            },
            None,
        );
    }
    let end = chain.last().unwrap_or(asked);
    let mx = answers
        .iter()
        .filter(|rec| same_labels(rec.name(), end))
        .filter_map(|rec| match rec.data() {
            RData::MX(m) => Some((
                m.preference(),
                normalize_name(&m.exchange().to_ascii()),
                rec.ttl(),
            )),
            _ => None,
        })
        .collect();
    (
        Walked {
            chain,
            cname_records,
        },
        Some(mx),
    )
}

/// The properties every outcome must have, whatever the message.
fn check_outcome(r: &DnsResponse, asked: &Name, o: &Outcome) -> Result<(), TestCaseError> {
    let aa = r.header().authoritative();
    let noerror = r.response_code() == ResponseCode::NoError;
    prop_assert!(!o.describe().is_empty(), "empty description of {o:?}");
    prop_assert_eq!(o.is_authoritative_answer(), aa && noerror, "{:?}", o);
    prop_assert_eq!(o.targets().is_some(), noerror, "{:?}", o);
    let Outcome::Answer {
        records,
        cname_chain,
        ignored,
        ..
    } = o
    else {
        prop_assert_eq!(o.max_ttl(), None);
        prop_assert_eq!(o.targets_line(), None);
        return Ok(());
    };
    let (walked, mx) = walk(r.answers(), asked);
    let shown: Vec<String> = walked
        .chain
        .iter()
        .map(|n| normalize_name(&n.to_ascii()))
        .collect();
    prop_assert_eq!(cname_chain, &shown);
    prop_assert!(cname_chain.len() <= MAX_CNAMES + 1);
    let mut mx = mx.unwrap_or_default();
    mx.sort();
    let mut got: Vec<Shown> = records
        .iter()
        .map(|m| (m.preference, m.exchange.clone(), m.ttl))
        .collect();
    got.sort();
    prop_assert_eq!(&got, &mx);
    prop_assert_eq!(
        *ignored,
        r.answers().len() - walked.cname_records - mx.len()
    );
    let want: Vec<&str> = mx.iter().map(|m| m.1.as_str()).collect();
    prop_assert_eq!(o.targets(), Some(want));
    prop_assert_eq!(o.max_ttl(), mx.iter().map(|m| m.2).max());
    prop_assert_eq!(o.targets_line().is_some(), !mx.is_empty());
    for e in o.targets().unwrap() {
        prop_assert!(!e.ends_with('.') && !e.bytes().any(|b| b.is_ascii_uppercase()));
    }
    Ok(())
}

/// `bytes` as the watcher would read them off the socket, when they decode; asked about the
/// first answer record's owner (so that records match), else the question's name.
fn check_bytes(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    if let Ok(r) = DnsResponse::from_buffer(bytes) {
        let asked = r
            .answers()
            .first()
            .map(|a| a.name().clone())
            .or_else(|| r.queries().first().map(|q| q.name().clone()))
            .unwrap_or_else(Name::root);
        let o = outcome_of(&r, &asked);
        check_outcome(&r, &asked, &o)?;
        let _ = check_rcode(&r);
    }
    Ok(())
}

/// What was generated says: the pool indexes of the chain, how many distinct CNAME records
/// it reads, and the MX of its end.
type GenChain<'a> = (Vec<usize>, usize, Option<Vec<&'a (u16, GenName, u32)>>);

fn generated_chain(g: &GenMessage) -> GenChain<'_> {
    let mut chain: Vec<usize> = Vec::new();
    let mut read = std::collections::BTreeSet::new();
    loop {
        let at = chain.last().copied().unwrap_or(0);
        let next = g.answers.iter().enumerate().find_map(|(i, a)| match a {
            GenAnswer::Cname { owner, target, .. } if *owner == at => Some((i, *target)),
            _ => None,
        });
        match next {
            Some((i, t)) if chain.len() <= MAX_CNAMES => {
                read.insert(i);
                chain.push(t);
            }
            _ => break,
        }
    }
    if chain.len() > MAX_CNAMES {
        return (chain, read.len(), None);
    }
    let end = chain.last().copied().unwrap_or(0);
    let mx = g
        .answers
        .iter()
        .filter_map(|a| match a {
            GenAnswer::Mx { owner, mx, .. } if *owner == end => Some(mx),
            _ => None,
        })
        .collect();
    (chain, read.len(), Some(mx))
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn generated_messages(g in gen_message()) {
        let r = DnsResponse::from_message(g.message.clone()).expect("a generated message encodes");
        let o = outcome_of(&r, &g.asked);
        check_outcome(&r, &g.asked, &o)?;
        // Against what was generated, not against hickory's reading of it.
        let header = r.header();
        prop_assert_eq!(o.is_authoritative_answer(), header.authoritative() && header.response_code() == ResponseCode::NoError);
        if let Outcome::Answer { records, cname_chain, ignored, .. } = &o {
            let (chain, cname_records, mx) = generated_chain(&g);
            let names: Vec<String> = chain.iter().map(|i| format!("_p{i}.chain.example")).collect();
            prop_assert_eq!(cname_chain, &names);
            let mx = mx.unwrap_or_default();
            prop_assert_eq!(records.len(), mx.len());
            prop_assert_eq!(*ignored, g.answers.len() - cname_records - mx.len());
            prop_assert_eq!(o.max_ttl(), mx.iter().map(|m| m.2).max());
            for (pref, name, ttl) in mx {
                if let Some(s) = &name.shown {
                    let rec = MxRecord { preference: *pref, exchange: s.clone(), ttl: *ttl };
                    prop_assert!(records.contains(&rec), "{:?} not in {:?}", rec, records);
                }
            }
        }
        // The same message off the wire.
        let decoded = DnsResponse::from_buffer(r.as_buffer().to_vec()).expect("own encoding decodes");
        prop_assert_eq!(&outcome_of(&decoded, &g.asked), &o);
    }

    #[test]
    fn mutated_messages(g in gen_message(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in prop::option::of(any::<prop::sample::Index>())) {
        let mut bytes = DnsResponse::from_message(g.message).expect("encodes").into_buffer();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(c) = cut {
            let at = c.index(bytes.len());
            bytes.truncate(at);
        }
        check_bytes(bytes)?;
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(bytes)?;
    }

    #[test]
    fn record_shaped_bytes(bytes in raw_message()) {
        check_bytes(bytes)?;
    }
}

/// A name on the wire: labels of random bytes, ended by the root or by a compression pointer
/// to anywhere (forwards, backwards, into itself).
fn raw_name() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..10), 0..4),
        prop_oneof![
            4 => Just(None),
            // Mostly back to the question's name, which starts at offset 12.
            1 => prop_oneof![Just(12u16), any::<u16>()].prop_map(Some),
        ],
    )
        .prop_map(|(labels, pointer)| {
            let mut w = Vec::new();
            for l in labels {
                w.push(l.len() as u8);
                w.extend_from_slice(&l);
            }
            match pointer {
                Some(p) => w.extend_from_slice(&(0xC000 | (p % 600)).to_be_bytes()),
                None => w.push(0),
            }
            w
        })
}

/// One resource record on the wire with the framing right and the contents random: the types
/// the watcher reads or meets (MX, NS, CNAME, SOA, A, AAAA, OPT) or any, RDATA that is a
/// name-bearing record's shape or random bytes, the RDLENGTH right or off by a little.
fn raw_record() -> impl Strategy<Value = Vec<u8>> {
    (
        raw_name(),
        prop_oneof![
            6 => Just(15u16),
            4 => prop::sample::select(vec![2u16, 5, 6, 1, 28, 41]),
            1 => any::<u16>(),
        ],
        prop_oneof![4 => Just(1u16), 1 => any::<u16>()],
        any::<u32>(),
        any::<u16>(),
        raw_name(),
        raw_name(),
        prop::collection::vec(any::<u8>(), 0..24),
        prop_oneof![4 => Just(0i32), 1 => -2i32..=2],
    )
        .prop_map(|(owner, rtype, class, ttl, pref, n1, n2, tail, skew)| {
            let rdata = match rtype {
                15 => [pref.to_be_bytes().to_vec(), n1].concat(),
                2 | 5 => n1,
                6 => [n1, n2, tail].concat(),
                _ => tail,
            };
            let mut w = owner;
            w.extend_from_slice(&rtype.to_be_bytes());
            w.extend_from_slice(&class.to_be_bytes());
            w.extend_from_slice(&ttl.to_be_bytes());
            let len = (rdata.len() as i32 + skew).clamp(0, u16::MAX as i32) as u16;
            w.extend_from_slice(&len.to_be_bytes());
            w.extend_from_slice(&rdata);
            w
        })
}

/// A whole message: a random header (often NOERROR) with the section counts matching (or not
/// quite) what follows. About one in six decodes, one in twenty-five with MX records.
fn raw_message() -> impl Strategy<Value = Vec<u8>> {
    (
        (
            any::<[u8; 3]>(),
            prop_oneof![Just(0u8), Just(0x80), any::<u8>()],
        ),
        prop::option::of((raw_name(), any::<u16>())),
        prop::collection::vec(raw_record(), 0..5),
        prop::collection::vec(raw_record(), 0..3),
        prop::collection::vec(raw_record(), 0..2),
        prop_oneof![6 => Just(0u16), 1 => 0u16..3],
    )
        .prop_map(|((head, rcode_byte), question, an, ns, ar, extra)| {
            // The fourth byte holds RA, Z, AD, CD and the rcode: often NOERROR.
            let mut w = head.to_vec();
            w.push(rcode_byte);
            let counts = [question.is_some() as usize, an.len(), ns.len(), ar.len()];
            for c in counts {
                w.extend_from_slice(&(c as u16 + extra).to_be_bytes());
            }
            if let Some((name, qtype)) = question {
                w.extend_from_slice(&name);
                w.extend_from_slice(&qtype.to_be_bytes());
                w.extend_from_slice(&1u16.to_be_bytes());
            }
            for r in an.iter().chain(&ns).chain(&ar) {
                w.extend_from_slice(r);
            }
            w
        })
}

/// An answer from a lame server (AA off) never counts as authoritative, an MX record owned by
/// another name does not count (and is counted as ignored), and one in the authority section
/// neither counts nor is ignored: only the answer section is read.
#[test]
fn lame_answer_and_sections() {
    let name = |s: &str| Name::from_ascii(s).unwrap();
    let mut m = Message::new();
    m.set_message_type(MessageType::Response);
    m.add_query(Query::query(name("example.com."), RecordType::MX));
    m.add_answer(Record::from_rdata(
        name("other.example."),
        60,
        RData::MX(MX::new(5, name("MX.Other.Example."))),
    ));
    m.add_answer(Record::from_rdata(
        name("Example.COM."),
        90,
        RData::MX(MX::new(10, name("MX.Example.NET."))),
    ));
    m.add_name_server(Record::from_rdata(
        name("example.com."),
        900,
        RData::MX(MX::new(1, name("authority.example."))),
    ));
    let r = DnsResponse::from_message(m).unwrap();
    let o = outcome_of(&r, &name("example.com."));
    assert!(!o.is_authoritative_answer());
    assert_eq!(o.targets().unwrap(), vec!["mx.example.net"]);
    assert_eq!(o.max_ttl(), Some(90));
    assert_eq!(
        o.describe(),
        "10 mx.example.net (ttl 90) [not authoritative: lame?] [1 stray answer record(s) ignored: other names, or beside a CNAME]"
    );
}
