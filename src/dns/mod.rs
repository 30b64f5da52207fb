//! Direct DNS questions to one nameserver, like `dig @ns MX domain`: the MX watcher's eyes.
//!
//! This is the only home of hickory. Every question gets a fresh client (a new socket) and no
//! cache sits anywhere, so each poll sees what the nameserver serves right now. UDP first; a
//! truncated answer is asked again over TCP. The outcome keeps apart what an admin must tell
//! apart: an answer (with the AA bit, so a lame server shows), NXDOMAIN, SERVFAIL, REFUSED, no
//! reply (timeout) and an unreachable server.

use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
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
        records: Vec<MxRecord>,
        authoritative: bool,
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

impl Outcome {
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
            } => {
                let mut sorted: Vec<&MxRecord> = records.iter().collect();
                sorted.sort();
                let mut s = if sorted.is_empty() {
                    "no MX records".to_string()
                } else {
                    sorted
                        .iter()
                        .map(|r| format!("{} {} (ttl {})", r.preference, r.exchange, r.ttl))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !authoritative {
                    s.push_str(" [not authoritative: lame?]");
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
    match query(server, domain, RecordType::MX, timeout).await {
        Ok(r) => outcome_of(&r),
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
                return Err(format!(
                    "{rt} of {name} from {resolver}: {}",
                    outcome_of(&r).describe()
                ))
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
    match r.response_code() {
        ResponseCode::NoError => Ok(()),
        _ => Err(outcome_of(r)),
    }
}

fn outcome_of(r: &DnsResponse) -> Outcome {
    let authoritative = r.header().authoritative();
    match r.response_code() {
        ResponseCode::NoError => Outcome::Answer {
            records: r
                .answers()
                .iter()
                .filter_map(|rec| match rec.data() {
                    RData::MX(mx) => Some(MxRecord {
                        preference: mx.preference(),
                        exchange: normalize_name(&mx.exchange().to_ascii()),
                        ttl: rec.ttl(),
                    }),
                    _ => None,
                })
                .collect(),
            authoritative,
        },
        ResponseCode::NXDomain => Outcome::NxDomain { authoritative },
        ResponseCode::ServFail => Outcome::ServFail,
        ResponseCode::Refused | ResponseCode::NotAuth => Outcome::Refused,
        other => Outcome::Error {
            rcode: other.to_string(),
        },
    }
}

/// One question over UDP, again over TCP when the answer was truncated.
async fn query(
    server: SocketAddr,
    domain: &str,
    rt: RecordType,
    timeout: Duration,
) -> Result<DnsResponse, Outcome> {
    let name = Name::from_ascii(format!("{}.", normalize_name(domain))).map_err(|e| {
        Outcome::Unreachable {
            reason: format!("bad name \"{domain}\": {e}"),
        }
    })?;
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
                ResponseCode::NoError => Outcome::Answer {
                    records: Vec::new(),
                    authoritative,
                },
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
        let o = Outcome::Answer {
            records: vec![
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
            authoritative: true,
        };
        assert_eq!(o.targets().unwrap(), vec!["a.example", "b.example"]);
        assert_eq!(o.max_ttl(), Some(300));
        assert_eq!(
            o.describe(),
            "10 a.example (ttl 300), 20 b.example (ttl 60)"
        );
        assert_eq!(Outcome::Timeout.targets(), None);
    }
}
