//! Direct DNS questions to one nameserver, like `dig @ns MX domain`: the MX watcher's eyes.
//!
//! This is the only home of hickory. Every question gets a fresh client (a new socket) and no
//! cache sits anywhere, so each poll sees what the nameserver serves right now. UDP first; a
//! truncated answer is asked again over TCP. The outcome keeps apart what an admin must tell
//! apart: an answer (with the AA bit, so a lame server shows), NXDOMAIN, SERVFAIL, REFUSED, no
//! reply (timeout) and an unreachable server.
//!
//! Only the MX records of the asked name count. A nameserver asked directly (no recursion)
//! answers for an alias with the CNAME and, when it serves the target too, the target's MX; so
//! a CNAME chain in the answer section is followed (at most [`MAX_CNAMES`] links, within that
//! answer only: no second question) and the MX records of its last name count, as RFC 5321
//! §5.1 has a sender do. Any other record of the answer section (another owner, an MX beside a
//! CNAME, which RFC 2181 §10.1 forbids) is left out and counted, so an admin sees it.

use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::{Message, ResponseCode};
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::tcp::TcpClientStream;
use hickory_client::proto::udp::UdpClientStream;
use hickory_client::proto::xfer::DnsResponse;
use hickory_client::proto::{ProtoError, ProtoErrorKind};
use hickory_client::ClientErrorKind;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// One MX record as served.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MxRecord {
    pub preference: u16,
    /// Lower case, without the trailing dot.
    pub exchange: String,
    pub ttl: u32,
}

/// What one nameserver said about one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// NOERROR: the records (empty: the name exists without records of that type).
    Answer {
        /// The MX records of the asked name, or of the last name of its CNAME chain.
        records: Vec<MxRecord>,
        authoritative: bool,
        /// The asked name is an alias: the names its CNAME chain in this answer leads to, in
        /// order (lower case, no trailing dot). Longer than [`MAX_CNAMES`]: a loop or a chain
        /// too long to follow, and no records are read.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cname_chain: Vec<String>,
        /// Records of the answer section that were not read: owned by another name, or an MX
        /// beside a CNAME.
        #[serde(skip_serializing_if = "is_zero")]
        ignored: usize,
    },
    /// The name does not exist.
    NxDomain { authoritative: bool },
    /// The server failed (SERVFAIL), e.g. it has no valid copy of the zone.
    ServFail,
    /// The server refused the question: it does not serve this zone (lame delegation).
    Refused,
    /// Another response code.
    Error { rcode: String },
    /// No reply within the timeout (paused, filtered, overloaded).
    Timeout,
    /// The question could not be sent or the server is unreachable.
    Unreachable { reason: String },
}

/// How many CNAMEs are followed from the asked name, at most.
pub const MAX_CNAMES: usize = 8;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Outcome {
    /// A plain answer: these records of the asked name, no alias, nothing left out.
    pub fn answer(records: Vec<MxRecord>, authoritative: bool) -> Outcome {
        Outcome::Answer {
            records,
            authoritative,
            cname_chain: Vec::new(),
            ignored: 0,
        }
    }

    /// Whether the server gave a usable authoritative answer.
    pub fn is_authoritative_answer(&self) -> bool {
        matches!(
            self,
            Outcome::Answer {
                authoritative: true,
                ..
            }
        )
    }

    /// One line for people: `10 mx.example.net (ttl 300)`, `NXDOMAIN`, `no reply (timeout)`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Answer {
                records,
                authoritative,
                cname_chain,
                ignored,
            } => {
                let mut sorted: Vec<&MxRecord> = records.iter().collect();
                sorted.sort();
                let end = cname_chain.last();
                let mut s = if cname_chain.len() > MAX_CNAMES {
                    format!("no MX read: the CNAME chain loops or is longer than {MAX_CNAMES}")
                } else if let (true, Some(end)) = (sorted.is_empty(), end) {
                    format!("no MX records for {end} in this answer (if it is in another zone, watch {end} at its own nameservers)")
                } else if sorted.is_empty() {
                    "no MX records".to_string()
                } else {
                    sorted
                        .iter()
                        .map(|r| format!("{} {} (ttl {})", r.preference, r.exchange, r.ttl))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if let (Some(end), false) = (end, cname_chain.len() > MAX_CNAMES) {
                    s.push_str(&format!(" [CNAME to {end}]"));
                }
                if !authoritative {
                    s.push_str(" [not authoritative: lame?]");
                }
                if *ignored > 0 {
                    s.push_str(&format!(
                        " [{ignored} stray answer record(s) ignored: other names, or beside a CNAME]"
                    ));
                }
                s
            }
            Outcome::NxDomain { .. } => "NXDOMAIN (the domain does not exist)".into(),
            Outcome::ServFail => "SERVFAIL".into(),
            Outcome::Refused => "REFUSED (lame: does not serve this zone)".into(),
            Outcome::Error { rcode } => format!("error {rcode}"),
            Outcome::Timeout => "no reply (timeout)".into(),
            Outcome::Unreachable { reason } => format!("unreachable ({reason})"),
        }
    }

    /// The MX targets, lowest preference first, or `None` if there was no answer.
    pub fn targets(&self) -> Option<Vec<&str>> {
        match self {
            Outcome::Answer { records, .. } => {
                let mut r: Vec<&MxRecord> = records.iter().collect();
                r.sort();
                Some(r.iter().map(|r| r.exchange.as_str()).collect())
            }
            _ => None,
        }
    }

    /// The records without TTLs, lowest preference first: `10 a.example, 20 b.example`;
    /// `None` if there was no answer or it has no records.
    pub fn targets_line(&self) -> Option<String> {
        match self {
            Outcome::Answer { records, .. } if !records.is_empty() => {
                let mut r: Vec<&MxRecord> = records.iter().collect();
                r.sort();
                let parts: Vec<String> = r
                    .iter()
                    .map(|r| format!("{} {}", r.preference, r.exchange))
                    .collect();
                Some(parts.join(", "))
            }
            _ => None,
        }
    }

    /// The largest TTL among the records.
    pub fn max_ttl(&self) -> Option<u32> {
        match self {
            Outcome::Answer { records, .. } => records.iter().map(|r| r.ttl).max(),
            _ => None,
        }
    }
}

/// `mx.example.net.` and `MX.Example.NET` both become `mx.example.net`.
pub fn normalize_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A nameserver address as given: `127.0.0.1`, `127.0.0.1:15353`, `[::1]:53`, `::1`.
pub fn parse_nameserver(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = SocketAddr::from_str(s) {
        return Ok(a);
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "\"{s}\" is not a nameserver address: give an IP with an optional port, e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53"
    ))
}

/// Checks a domain name given on the command line or in the configuration.
pub fn parse_domain(s: &str) -> Result<String, String> {
    let n = normalize_name(s);
    if n.is_empty() || n.len() > 253 {
        return Err(format!("\"{s}\" is not a domain name"));
    }
    Name::from_ascii(format!("{n}.")).map_err(|e| format!("\"{s}\" is not a domain name: {e}"))?;
    Ok(n)
}

/// Asks `server` for the MX records of `domain`.
pub async fn query_mx(server: SocketAddr, domain: &str, timeout: Duration) -> Outcome {
    let asked = match fqdn(domain) {
        Ok(n) => n,
        Err(o) => return o,
    };
    match query(server, domain, RecordType::MX, timeout).await {
        Ok(r) => outcome_of(&r, &asked),
        Err(o) => o,
    }
}

/// Asks `server` for the NS names of `domain`, then for their addresses (A, then AAAA).
pub async fn discover_nameservers(
    resolver: SocketAddr,
    domain: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<(String, SocketAddr)>, String> {
    let r = query(resolver, domain, RecordType::NS, timeout)
        .await
        .map_err(|o| format!("NS of {domain} from {resolver}: {}", o.describe()))?;
    check_rcode(&r).map_err(|o| format!("NS of {domain} from {resolver}: {}", o.describe()))?;
    let mut names: Vec<String> = r
        .answers()
        .iter()
        .filter_map(|rec| match rec.data() {
            RData::NS(ns) => Some(normalize_name(&ns.0.to_ascii())),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(format!(
            "{resolver} lists no NS records for {domain}: name the nameservers instead (--nameserver or [mx].nameservers)"
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let ips = resolve_addresses(resolver, &name, timeout).await?;
        if ips.is_empty() {
            return Err(format!(
                "the nameserver {name} of {domain} has no address at {resolver}: name the nameservers instead (--nameserver)"
            ));
        }
        out.extend(
            ips.into_iter()
                .map(|ip| (name.clone(), SocketAddr::new(ip, port))),
        );
    }
    Ok(out)
}

/// The A and AAAA addresses of `name`, asked of `resolver`.
pub async fn resolve_addresses(
    resolver: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for rt in [RecordType::A, RecordType::AAAA] {
        let r = match query(resolver, name, rt, timeout).await {
            Ok(r) => r,
            // hickory may turn an empty answer or NXDOMAIN into an error.
            Err(Outcome::NxDomain { .. }) => return Ok(Vec::new()),
            Err(Outcome::Answer { .. }) => continue,
            Err(o) => return Err(format!("{rt} of {name} from {resolver}: {}", o.describe())),
        };
        match r.response_code() {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Ok(Vec::new()),
            _ => {
                let o = error_outcome(&r).expect("not NOERROR");
                return Err(format!("{rt} of {name} from {resolver}: {}", o.describe()));
            }
        }
        for rec in r.answers() {
            match rec.data() {
                RData::A(a) => out.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The first nameserver of /etc/resolv.conf, for discovering a domain's nameservers.
pub fn system_resolver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf ({e}): give --resolver"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| IpAddr::from_str(rest.trim()).ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| "/etc/resolv.conf names no nameserver: give --resolver".to_string())
}

fn check_rcode(r: &DnsResponse) -> Result<(), Outcome> {
    match error_outcome(r) {
        None => Ok(()),
        Some(o) => Err(o),
    }
}

/// What a reply other than NOERROR says; `None` for NOERROR.
fn error_outcome(r: &Message) -> Option<Outcome> {
    let authoritative = r.header().authoritative();
    Some(match r.response_code() {
        ResponseCode::NoError => return None,
        ResponseCode::NXDomain => Outcome::NxDomain { authoritative },
        ResponseCode::ServFail => Outcome::ServFail,
        ResponseCode::Refused | ResponseCode::NotAuth => Outcome::Refused,
        other => Outcome::Error {
            rcode: other.to_string(),
        },
    })
}

/// What a reply to "MX of `asked`" says. See the module docs for which records count.
fn outcome_of(r: &Message, asked: &Name) -> Outcome {
    if let Some(o) = error_outcome(r) {
        return o;
    }
    let answers = r.answers();
    let mut read = vec![false; answers.len()];
    let mut name = asked.clone();
    let mut cname_chain = Vec::new();
    // One link more than followed: a chain that goes on past MAX_CNAMES shows as too long.
    while cname_chain.len() <= MAX_CNAMES {
        let Some((i, target)) = answers
            .iter()
            .enumerate()
            .find_map(|(i, rec)| match rec.data() {
                RData::CNAME(c) if owned_by(rec, &name) => Some((i, c.0.clone())),
                _ => None,
            })
        else {
            break;
        };
        read[i] = true;
        cname_chain.push(normalize_name(&target.to_ascii()));
        name = target;
    }
    let mut records = Vec::new();
    if cname_chain.len() <= MAX_CNAMES {
        for (i, rec) in answers.iter().enumerate() {
            if let (RData::MX(mx), true) = (rec.data(), owned_by(rec, &name)) {
                read[i] = true;
                records.push(MxRecord {
                    preference: mx.preference(),
                    exchange: normalize_name(&mx.exchange().to_ascii()),
                    ttl: rec.ttl(),
                });
            }
        }
    }
    Outcome::Answer {
        records,
        authoritative: r.header().authoritative(),
        cname_chain,
        ignored: read.iter().filter(|r| !**r).count(),
    }
}

/// Whether `rec` is owned by `name` (case-insensitive, with or without the root).
fn owned_by(rec: &Record, name: &Name) -> bool {
    rec.name().eq_ignore_root(name)
}

/// `domain` as an absolute DNS name.
fn fqdn(domain: &str) -> Result<Name, Outcome> {
    Name::from_ascii(format!("{}.", normalize_name(domain))).map_err(|e| Outcome::Unreachable {
        reason: format!("bad name \"{domain}\": {e}"),
    })
}

/// One question over UDP, again over TCP when the answer was truncated.
async fn query(
    server: SocketAddr,
    domain: &str,
    rt: RecordType,
    timeout: Duration,
) -> Result<DnsResponse, Outcome> {
    let name = fqdn(domain)?;
    let udp = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .build();
    let r = ask(Client::connect(udp), name.clone(), rt, timeout).await?;
    if !r.truncated() {
        return Ok(r);
    }
    let (tcp, handle) =
        TcpClientStream::new(server, None, Some(timeout), TokioRuntimeProvider::default());
    ask(
        Client::with_timeout(tcp, handle, timeout, None),
        name,
        rt,
        timeout,
    )
    .await
}

async fn ask<F, B>(
    connect: F,
    name: Name,
    rt: RecordType,
    timeout: Duration,
) -> Result<DnsResponse, Outcome>
where
    F: std::future::Future<Output = Result<(Client, B), ProtoError>>,
    B: std::future::Future<Output = Result<(), ProtoError>> + Send + 'static,
{
    let (mut client, bg) = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(Outcome::Timeout),
        Ok(Err(e)) => return Err(outcome_of_error(e)),
        Ok(Ok(c)) => c,
    };
    let task = tokio::spawn(bg);
    // The client's own timeout and ours: whichever ends first.
    let r = tokio::time::timeout(
        timeout + Duration::from_millis(200),
        client.query(name, DNSClass::IN, rt),
    )
    .await;
    task.abort();
    match r {
        Err(_) => Err(Outcome::Timeout),
        Ok(Err(e)) => Err(match e.kind() {
            ClientErrorKind::Timeout => Outcome::Timeout,
            ClientErrorKind::Proto(p) => outcome_of_error(p.clone()),
            ClientErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Outcome::Timeout
            }
            _ => Outcome::Unreachable {
                reason: e.to_string(),
            },
        }),
        Ok(Ok(resp)) => Ok(resp),
    }
}

fn outcome_of_error(e: ProtoError) -> Outcome {
    match e.kind() {
        ProtoErrorKind::Timeout => Outcome::Timeout,
        ProtoErrorKind::NoRecordsFound {
            response_code,
            authorities,
            ..
        } => {
            let authoritative = authorities.is_some();
            match *response_code {
                ResponseCode::NXDomain => Outcome::NxDomain { authoritative },
                ResponseCode::NoError => Outcome::answer(Vec::new(), authoritative),
                ResponseCode::ServFail => Outcome::ServFail,
                ResponseCode::Refused | ResponseCode::NotAuth => Outcome::Refused,
                other => Outcome::Error {
                    rcode: other.to_string(),
                },
            }
        }
        ProtoErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Unreachable {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_addresses() {
        assert_eq!(
            parse_nameserver("127.0.0.2", 53).unwrap(),
            "127.0.0.2:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:15353", 53).unwrap(),
            "127.0.0.1:15353".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("::1", 5353).unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        let e = parse_nameserver("ns1.example.com", 53).unwrap_err();
        assert!(e.contains("not a nameserver address"), "{e}");
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("MX.Example.NET."), "mx.example.net");
        assert_eq!(parse_domain("Example.COM.").unwrap(), "example.com");
        assert!(parse_domain("").is_err());
        assert!(parse_domain("a..b").is_err());
    }

    #[test]
    fn targets_sorted_by_preference() {
        let o = Outcome::answer(
            vec![
                MxRecord {
                    preference: 20,
                    exchange: "b.example".into(),
                    ttl: 60,
                },
                MxRecord {
                    preference: 10,
                    exchange: "a.example".into(),
                    ttl: 300,
                },
            ],
            true,
        );
        assert_eq!(o.targets().unwrap(), vec!["a.example", "b.example"]);
        assert_eq!(o.max_ttl(), Some(300));
        assert_eq!(
            o.describe(),
            "10 a.example (ttl 300), 20 b.example (ttl 60)"
        );
        assert_eq!(Outcome::Timeout.targets(), None);
    }

    /// A reply to "MX of `asked`" with these answer records, each `(owner, "MX pref exchange")`
    /// or `(owner, "CNAME target")` or `(owner, "A")`.
    fn reply(rcode: ResponseCode, aa: bool, answers: &[(&str, &str)]) -> Message {
        use hickory_client::proto::op::MessageType;
        use hickory_client::proto::rr::rdata::{A, CNAME, MX};
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_authoritative(aa)
            .set_response_code(rcode);
        for (owner, data) in answers {
            let w: Vec<&str> = data.split(' ').collect();
            let rdata = match w[..] {
                ["MX", pref, x] => RData::MX(MX::new(pref.parse().unwrap(), name(x))),
                ["CNAME", t] => RData::CNAME(CNAME(name(t))),
                ["A"] => RData::A(A::new(192, 0, 2, 1)),
                _ => panic!("bad test record {data}"),
            };
            m.add_answer(Record::from_rdata(name(owner), 300, rdata));
        }
        m
    }

    /// Which MX records count, for which owner names: (case, asked, answers, targets, chain,
    /// ignored).
    #[test]
    fn only_the_asked_names_mx_count() {
        let chain = |n: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| {
                    let owner = if i == 0 {
                        "a.example.".to_string()
                    } else {
                        format!("c{i}.example.")
                    };
                    (owner, format!("CNAME c{}.example.", i + 1))
                })
                .collect()
        };
        let with_mx_at = |mut c: Vec<(String, String)>, owner: String| {
            c.push((owner, "MX 10 end.example.net.".into()));
            c
        };
        let eight = with_mx_at(chain(8), "c8.example.".into());
        let nine = with_mx_at(chain(9), "c9.example.".into());
        let names = |n: usize| (1..=n).map(|i| format!("c{i}.example")).collect::<Vec<_>>();
        type Case<'a> = (
            &'a str,
            &'a str,
            Vec<(String, String)>,
            Vec<&'a str>,
            Vec<String>,
            usize,
        );
        let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let cases: Vec<Case> = vec![
            (
                "the asked name",
                "a.example",
                own(&[("a.example.", "MX 10 mx.example.net.")]),
                vec!["mx.example.net"],
                vec![],
                0,
            ),
            (
                "case and the trailing dot",
                "A.Example.",
                own(&[
                    ("a.EXAMPLE.", "MX 10 MX.Example.NET."),
                    ("a.example", "MX 20 b.example.net."),
                ]),
                vec!["mx.example.net", "b.example.net"],
                vec![],
                0,
            ),
            (
                "another owner",
                "a.example",
                own(&[
                    ("a.example.", "MX 10 mx.example.net."),
                    ("b.example.", "MX 5 evil.example.net."),
                    ("sub.a.example.", "MX 1 x.example."),
                ]),
                vec!["mx.example.net"],
                vec![],
                2,
            ),
            (
                "only another owner",
                "a.example",
                own(&[("b.example.", "MX 5 evil.example.net.")]),
                vec![],
                vec![],
                1,
            ),
            (
                "a CNAME with the target's MX",
                "a.example",
                own(&[
                    ("a.example.", "CNAME t.example.org."),
                    ("T.example.org.", "MX 10 park.example.net."),
                ]),
                vec!["park.example.net"],
                vec!["t.example.org".into()],
                0,
            ),
            (
                "the target's MX first",
                "a.example",
                own(&[
                    ("t.example.org.", "MX 10 park.example.net."),
                    ("a.example.", "CNAME t.example.org."),
                ]),
                vec!["park.example.net"],
                vec!["t.example.org".into()],
                0,
            ),
            (
                "a CNAME out of the zone",
                "a.example",
                own(&[("a.example.", "CNAME t.example.org.")]),
                vec![],
                vec!["t.example.org".into()],
                0,
            ),
            (
                "an MX beside the CNAME",
                "a.example",
                own(&[
                    ("a.example.", "MX 10 old.example.net."),
                    ("a.example.", "CNAME t.example.org."),
                    ("t.example.org.", "MX 10 park.example.net."),
                ]),
                vec!["park.example.net"],
                vec!["t.example.org".into()],
                1,
            ),
            (
                "a second CNAME for the name",
                "a.example",
                own(&[
                    ("a.example.", "CNAME t.example.org."),
                    ("a.example.", "CNAME u.example.org."),
                    ("u.example.org.", "MX 10 u.example.net."),
                    ("t.example.org.", "MX 10 t.example.net."),
                ]),
                vec!["t.example.net"],
                vec!["t.example.org".into()],
                2,
            ),
            (
                "a CNAME of another name",
                "a.example",
                own(&[
                    ("b.example.", "CNAME a.example."),
                    ("a.example.", "MX 10 mx.example.net."),
                ]),
                vec!["mx.example.net"],
                vec![],
                1,
            ),
            (
                "an address record",
                "a.example",
                own(&[("a.example.", "A"), ("a.example.", "MX 10 mx.example.net.")]),
                vec!["mx.example.net"],
                vec![],
                1,
            ),
            (
                "a chain of 8",
                "a.example",
                eight,
                vec!["end.example.net"],
                names(8),
                0,
            ),
            ("a chain of 9", "a.example", nine, vec![], names(9), 1),
            (
                "a loop",
                "a.example",
                own(&[
                    ("a.example.", "CNAME b.example."),
                    ("b.example.", "CNAME a.example."),
                    ("a.example.", "MX 10 mx.example.net."),
                ]),
                vec![],
                ["b.example", "a.example"].repeat(5)[..9]
                    .to_vec()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                1,
            ),
            (
                "a name pointing at itself",
                "a.example",
                own(&[("a.example.", "CNAME a.example.")]),
                vec![],
                vec!["a.example".to_string(); 9],
                0,
            ),
        ];
        for (case, asked, answers, targets, want_chain, want_ignored) in cases {
            let answers: Vec<(&str, &str)> = answers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let m = reply(ResponseCode::NoError, true, &answers);
            let o = outcome_of(&m, &fqdn(asked).unwrap());
            let mut t = targets.clone();
            t.sort_by_key(|x| if x.starts_with("mx") { 0 } else { 1 });
            assert_eq!(o.targets().unwrap().len(), targets.len(), "{case}: {o:?}");
            for x in &targets {
                assert!(o.targets().unwrap().contains(x), "{case}: {x} in {o:?}");
            }
            let Outcome::Answer {
                cname_chain,
                ignored,
                authoritative,
                ..
            } = &o
            else {
                panic!("{case}: {o:?}")
            };
            assert!(authoritative, "{case}");
            assert_eq!(cname_chain, &want_chain, "{case}");
            assert_eq!(*ignored, want_ignored, "{case}");
            assert!(!o.describe().is_empty());
        }
    }

    /// What an admin reads of an alias, stray records and a broken chain.
    #[test]
    fn aliases_and_stray_records_are_shown() {
        let asked = fqdn("sales.example.com").unwrap();
        let o = |answers: &[(&str, &str)]| {
            outcome_of(&reply(ResponseCode::NoError, true, answers), &asked).describe()
        };
        assert_eq!(
            o(&[
                ("sales.example.com.", "CNAME example.com."),
                ("example.com.", "MX 10 park.example.net.")
            ]),
            "10 park.example.net (ttl 300) [CNAME to example.com]"
        );
        assert_eq!(
            o(&[("sales.example.com.", "CNAME shop.example.org.")]),
            "no MX records for shop.example.org in this answer (if it is in another zone, watch shop.example.org at its own nameservers) [CNAME to shop.example.org]"
        );
        assert_eq!(
            o(&[("sales.example.com.", "MX 10 mx.example.net."), ("other.example.com.", "MX 10 evil.example.net.")]),
            "10 mx.example.net (ttl 300) [1 stray answer record(s) ignored: other names, or beside a CNAME]"
        );
        assert_eq!(
            o(&[("sales.example.com.", "CNAME sales.example.com.")]),
            "no MX read: the CNAME chain loops or is longer than 8"
        );
        assert_eq!(o(&[]), "no MX records");
    }

    /// The response code decides first; the records of a failed reply are not read.
    #[test]
    fn response_codes() {
        let asked = fqdn("a.example").unwrap();
        let mx = [("a.example.", "MX 10 mx.example.net.")];
        let o = |rc, aa| outcome_of(&reply(rc, aa, &mx), &asked);
        assert_eq!(
            o(ResponseCode::NXDomain, true),
            Outcome::NxDomain {
                authoritative: true
            }
        );
        assert_eq!(o(ResponseCode::ServFail, true), Outcome::ServFail);
        assert_eq!(o(ResponseCode::Refused, false), Outcome::Refused);
        assert_eq!(o(ResponseCode::NotAuth, false), Outcome::Refused);
        assert!(matches!(
            o(ResponseCode::FormErr, true),
            Outcome::Error { .. }
        ));
        assert!(o(ResponseCode::NoError, true).is_authoritative_answer());
        assert!(!o(ResponseCode::NoError, false).is_authoritative_answer());
        assert_eq!(
            o(ResponseCode::NoError, false).targets().unwrap(),
            vec!["mx.example.net"]
        );
    }
}
