//! Fuzzing of how the MX watcher reads a DNS answer (issue 13): [`outcome_of`] and the
//! [`Outcome`] methods the watcher and its reports use.
//!
//! Inputs: arbitrary hickory [`Message`]s (random header bits including AA and TC, any response
//! code, a question, answer and authority sections of MX, NS, A, AAAA, CNAME and SOA records
//! with random owner names, TTLs and preferences, names with odd bytes in their labels), and
//! bytes taken as they come off the socket whenever [`Message::from_vec`] decodes them: plain
//! random bytes, encoded messages with bytes changed or cut, and record-shaped bytes (framing
//! right, contents random, compression pointers anywhere). Properties:
//! - nothing panics;
//! - an answer without the AA bit is never an authoritative answer, one with it on a NOERROR
//!   reply always is; only NOERROR gives targets;
//! - `targets()` is exactly the exchanges of the MX records of the answer section, lower case,
//!   without the trailing dot, lowest preference first. The code does not look at a record's
//!   owner name (a CNAME'd domain answers with the MX of its target), so neither does the
//!   check; MX records in the authority section never count;
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

/// One generated record and, for an MX, its (preference, exchange as shown, ttl).
#[derive(Clone, Debug)]
struct GenRecord {
    record: Record,
    mx: Option<(u16, Option<String>, u32)>,
}

fn gen_record() -> impl Strategy<Value = GenRecord> {
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
            let (data, mx) = match kind {
                0 | 1 => (RData::MX(MX::new(pref, t)), Some((pref, target.shown, ttl))),
                2 => (RData::NS(NS(t)), None),
                3 => (RData::CNAME(CNAME(t)), None),
                4 => (
                    RData::SOA(SOA::new(t, owner.name.clone(), n, 3600, 600, 86400, ttl)),
                    None,
                ),
                _ if n % 2 == 0 => (RData::A(A(std::net::Ipv4Addr::from(n))), None),
                _ => (
                    RData::AAAA(AAAA(std::net::Ipv6Addr::from(u128::from(n) << 64))),
                    None,
                ),
            };
            GenRecord {
                record: Record::from_rdata(owner.name, ttl, data),
                mx,
            }
        })
}

/// Response codes: the common ones most of the time, any 12-bit one (EDNS) sometimes.
fn rcode() -> impl Strategy<Value = ResponseCode> {
    prop_oneof![
        4 => (0u16..=10).prop_map(<ResponseCode as From<u16>>::from),
        1 => (0u16..4096).prop_map(<ResponseCode as From<u16>>::from),
    ]
}

#[derive(Clone, Debug)]
struct GenMessage {
    message: Message,
    /// The MX records of the answer section.
    answer_mx: Vec<(u16, Option<String>, u32)>,
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
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
        prop::option::of(gen_name()),
        prop::collection::vec(gen_record(), 0..8),
        prop::collection::vec(gen_record(), 0..4),
    )
        .prop_map(
            |((id, response, op, [aa, tc, rd, ra, ad, cd]), rcode, asked, answers, authority)| {
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
                if let Some(q) = asked {
                    m.add_query(Query::query(q.name, RecordType::MX));
                }
                let answer_mx = answers.iter().filter_map(|r| r.mx.clone()).collect();
                m.add_answers(answers.into_iter().map(|r| r.record));
                m.add_name_servers(authority.into_iter().map(|r| r.record));
                GenMessage {
                    message: m,
                    answer_mx,
                }
            },
        )
}

/// The properties every outcome must have, whatever the message.
fn check_outcome(r: &DnsResponse, o: &Outcome) -> Result<(), TestCaseError> {
    let aa = r.header().authoritative();
    let noerror = r.response_code() == ResponseCode::NoError;
    prop_assert!(!o.describe().is_empty(), "empty description of {o:?}");
    prop_assert_eq!(o.is_authoritative_answer(), aa && noerror, "{:?}", o);
    prop_assert_eq!(o.targets().is_some(), noerror, "{:?}", o);
    // The answer section's MX records, as the watcher must show them.
    let mut mx: Vec<(u16, String, u32)> = r
        .answers()
        .iter()
        .filter_map(|rec| match rec.data() {
            RData::MX(m) => Some((
                m.preference(),
                normalize_name(&m.exchange().to_ascii()),
                rec.ttl(),
            )),
            _ => None,
        })
        .collect();
    mx.sort();
    if noerror {
        let want: Vec<&str> = mx.iter().map(|m| m.1.as_str()).collect();
        prop_assert_eq!(o.targets(), Some(want));
        prop_assert_eq!(o.max_ttl(), mx.iter().map(|m| m.2).max());
        prop_assert_eq!(o.targets_line().is_some(), !mx.is_empty());
        for e in o.targets().unwrap() {
            prop_assert!(!e.ends_with('.') && !e.bytes().any(|b| b.is_ascii_uppercase()));
        }
    } else {
        prop_assert_eq!(o.max_ttl(), None);
        prop_assert_eq!(o.targets_line(), None);
    }
    Ok(())
}

/// `bytes` as the watcher would read them off the socket, when they decode.
fn check_bytes(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    if let Ok(r) = DnsResponse::from_buffer(bytes) {
        let o = outcome_of(&r);
        check_outcome(&r, &o)?;
        let _ = check_rcode(&r);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn generated_messages(g in gen_message()) {
        let r = DnsResponse::from_message(g.message).expect("a generated message encodes");
        let o = outcome_of(&r);
        check_outcome(&r, &o)?;
        // Against what was generated, not against hickory's reading of it.
        let header = r.header();
        prop_assert_eq!(o.is_authoritative_answer(), header.authoritative() && header.response_code() == ResponseCode::NoError);
        if let Some(t) = o.targets() {
            let mut want = g.answer_mx.clone();
            want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            prop_assert_eq!(t.len(), want.len());
            prop_assert_eq!(o.max_ttl(), want.iter().map(|m| m.2).max());
            // The order among equal preferences is by name: check where the names are known.
            let mut prefs: Vec<u16> = want.iter().map(|m| m.0).collect();
            prefs.sort();
            let Outcome::Answer { records, .. } = &o else { unreachable!() };
            let mut got_prefs: Vec<u16> = records.iter().map(|m| m.preference).collect();
            got_prefs.sort();
            prop_assert_eq!(got_prefs, prefs);
            for (pref, shown, ttl) in &g.answer_mx {
                if let Some(s) = shown {
                    let rec = MxRecord { preference: *pref, exchange: s.clone(), ttl: *ttl };
                    prop_assert!(records.contains(&rec), "{:?} not in {:?}", rec, records);
                }
            }
        }
        // The same message off the wire.
        let decoded = DnsResponse::from_buffer(r.as_buffer().to_vec()).expect("own encoding decodes");
        prop_assert_eq!(&outcome_of(&decoded), &o);
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

/// An answer from a lame server (AA off) never counts as authoritative, and an MX record owned by
/// another name still counts (the code does not compare owners), while one in the authority
/// section does not.
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
    m.add_name_server(Record::from_rdata(
        name("example.com."),
        900,
        RData::MX(MX::new(1, name("authority.example."))),
    ));
    let r = DnsResponse::from_message(m).unwrap();
    let o = outcome_of(&r);
    assert!(!o.is_authoritative_answer());
    assert_eq!(o.targets().unwrap(), vec!["mx.other.example"]);
    assert_eq!(o.max_ttl(), Some(60));
    assert_eq!(
        o.describe(),
        "5 mx.other.example (ttl 60) [not authoritative: lame?]"
    );
}
