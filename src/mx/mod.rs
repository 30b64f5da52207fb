//! The MX watcher: asks each domain's nameservers for its MX, every few seconds, and says when
//! all of them serve a target.
//!
//! The cutover depends on it: only when every authoritative nameserver serves the parking MX
//! (and one more TTL has passed, so no resolver still has the old answer cached) can no new mail
//! reach the old server, and only then does the final delta catch everything. Only an
//! authoritative answer (AA bit set) counts as serving: a nameserver that does not answer,
//! answers without authority (a lame or caching server), or answers REFUSED, SERVFAIL or
//! NXDOMAIN is shown as such, never as "no MX", and never as the target. Each domain has its own
//! nameservers (two domains at two DNS providers), and a nameserver this host cannot send to at
//! all stops the wait with an error instead of keeping it waiting forever.

pub mod spec;
pub mod ttl;

pub use spec::{spec_from_config, spec_with_port};

use crate::dns::{self, Outcome};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A nameserver to ask: how the admin named it, and where it listens.
#[derive(Clone, Debug, Serialize)]
pub struct Nameserver {
    pub label: String,
    pub addr: SocketAddr,
}

impl Nameserver {
    /// Why this host cannot send to the nameserver at all (no route, no IPv6, a link-local
    /// address without an interface), found by the routing lookup of a UDP `connect`, which
    /// sends nothing. `None`: a question can at least leave.
    pub fn local_send_error(&self) -> Option<String> {
        local_send_error(self.addr)
    }
}

/// See [`Nameserver::local_send_error`].
pub fn local_send_error(addr: SocketAddr) -> Option<String> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(addr))
        .err()
        .map(|e| e.to_string())
}

/// One domain and the nameservers that must serve its MX.
#[derive(Clone, Debug)]
pub struct DomainWatch {
    pub domain: String,
    pub nameservers: Vec<Nameserver>,
}

/// What to watch: each domain with its own nameservers.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub watches: Vec<DomainWatch>,
    pub interval: Duration,
    /// Per question.
    pub timeout: Duration,
}

impl WatchSpec {
    /// Every nameserver for every domain (`watch-mx --domain ... --nameserver ...`).
    pub fn every(
        domains: &[String],
        nameservers: &[Nameserver],
        interval: Duration,
        timeout: Duration,
    ) -> WatchSpec {
        WatchSpec {
            watches: domains
                .iter()
                .map(|d| DomainWatch {
                    domain: d.clone(),
                    nameservers: nameservers.to_vec(),
                })
                .collect(),
            interval,
            timeout,
        }
    }

    /// The domains, in order.
    pub fn domains(&self) -> Vec<String> {
        self.watches.iter().map(|w| w.domain.clone()).collect()
    }

    /// Every (domain, nameserver) pair asked, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &Nameserver)> {
        self.watches
            .iter()
            .flat_map(|w| w.nameservers.iter().map(|n| (w.domain.as_str(), n)))
    }

    /// How many distinct nameserver addresses are asked.
    pub fn nameserver_count(&self) -> usize {
        let mut addrs: Vec<SocketAddr> = self.pairs().map(|(_, n)| n.addr).collect();
        addrs.sort();
        addrs.dedup();
        addrs.len()
    }

    /// The pairs whose nameserver this host cannot send to at all, each as one line with the
    /// reason and the fix.
    pub fn unreachable(&self) -> Vec<Unreachable> {
        self.pairs()
            .filter_map(|(d, n)| {
                n.local_send_error().map(|reason| Unreachable {
                    domain: d.to_string(),
                    nameserver: n.label.clone(),
                    reason,
                })
            })
            .collect()
    }
}

/// A nameserver of a domain that this host cannot send to.
#[derive(Clone, Debug, Serialize)]
pub struct Unreachable {
    pub domain: String,
    pub nameserver: String,
    pub reason: String,
}

impl Unreachable {
    /// What is wrong and the fix, for people.
    pub fn describe(&self) -> String {
        format!(
            "nameserver {} of {} cannot be reached from this host ({}): what it serves cannot be seen, so the wait would never end; name nameservers of {} that this host can reach in [mx.domain_nameservers] (or --nameserver)",
            self.nameserver, self.domain, self.reason, self.domain
        )
    }
}

/// What one nameserver said about one domain in a poll.
#[derive(Clone, Debug)]
pub struct Asked {
    pub domain: String,
    /// The nameserver's label.
    pub nameserver: String,
    pub outcome: Outcome,
}

/// One poll: one outcome per (domain, nameserver) pair asked, in the spec's order.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub unix: u64,
    pub asked: Vec<Asked>,
}

/// Asks every domain's nameservers about it, all at once. A nameserver this host cannot send
/// to is not asked: its outcome is `Unreachable` with the reason (not a timeout).
pub async fn poll(spec: &WatchSpec) -> Snapshot {
    let unix = crate::timefmt::now_unix();
    let questions = spec.pairs().map(|(d, ns)| async move {
        let outcome = match ns.local_send_error() {
            Some(reason) => Outcome::Unreachable { reason },
            None => dns::query_mx(ns.addr, d, spec.timeout).await,
        };
        Asked {
            domain: d.to_string(),
            nameserver: ns.label.clone(),
            outcome,
        }
    });
    Snapshot {
        unix,
        asked: futures::future::join_all(questions).await,
    }
}

/// Whether an outcome is an authoritative answer with `target` as the only MX target. An
/// answer without the AA bit (a lame or caching server) never counts: it says nothing about
/// what the zone serves.
pub fn serves(o: &Outcome, target: &str) -> bool {
    let want = dns::normalize_name(target);
    o.is_authoritative_answer()
        && o.targets()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|x| *x == want))
}

impl Snapshot {
    /// How many (domain, nameserver) pairs serve `target`, of how many asked.
    pub fn serving(&self, target: &str) -> (usize, usize) {
        let k = self
            .asked
            .iter()
            .filter(|a| serves(&a.outcome, target))
            .count();
        (k, self.asked.len())
    }

    /// One line per pair that does not serve `target`: `ns label: domain: outcome`.
    pub fn not_serving(&self, target: &str) -> Vec<String> {
        self.asked
            .iter()
            .filter(|a| !serves(&a.outcome, target))
            .map(|a| format!("{}: {}: {}", a.nameserver, a.domain, a.outcome.describe()))
            .collect()
    }

    /// The largest MX TTL any nameserver gave.
    pub fn max_ttl(&self) -> Option<u32> {
        self.asked.iter().filter_map(|a| a.outcome.max_ttl()).max()
    }
}

/// A change between two polls.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub nameserver: &'a str,
    pub domain: &'a str,
    pub before: &'a Outcome,
    pub after: &'a Outcome,
}

/// What differs from `prev` to `next` (two polls of the same spec).
pub fn changes<'a>(prev: &'a Snapshot, next: &'a Snapshot) -> Vec<Change<'a>> {
    prev.asked
        .iter()
        .zip(&next.asked)
        .filter(|(a, b)| !same(&a.outcome, &b.outcome))
        .map(|(a, b)| Change {
            nameserver: &b.nameserver,
            domain: &b.domain,
            before: &a.outcome,
            after: &b.outcome,
        })
        .collect()
}

/// Equal, or for answers without authority equal but for TTLs counting down (a recursive
/// resolver's cache): that is no change. An authoritative server's TTL does not count down, so
/// there a new TTL is a change (the TTL lowered before the cutover).
fn same(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (
            Outcome::Answer {
                records: ra,
                authoritative: false,
                ..
            },
            Outcome::Answer {
                records: rb,
                authoritative: false,
                ..
            },
        ) => a.targets() == b.targets() && ra.len() == rb.len(),
        (
            Outcome::Answer {
                records: ra,
                authoritative: true,
                cname_chain: ca,
                ignored: ia,
            },
            Outcome::Answer {
                records: rb,
                authoritative: true,
                cname_chain: cb,
                ignored: ib,
            },
        ) => sorted(ra) == sorted(rb) && ca == cb && ia == ib,
        _ => a == b,
    }
}

fn sorted(r: &[dns::MxRecord]) -> Vec<&dns::MxRecord> {
    let mut v: Vec<&dns::MxRecord> = r.iter().collect();
    v.sort();
    v
}

/// The table of a poll: a row per nameserver and domain.
pub fn render_table(snap: &Snapshot) -> String {
    let width = |f: fn(&Asked) -> usize, min: usize| {
        snap.asked.iter().map(f).chain([min]).max().unwrap_or(min)
    };
    let w_ns = width(|a| a.nameserver.len(), 10);
    let w_d = width(|a| a.domain.len(), 6);
    let mut s = format!("{:<w_ns$}  {:<w_d$}  AA   MX\n", "nameserver", "domain");
    for a in &snap.asked {
        // The AA bit: an authoritative answer, or a lame / caching server.
        let aa = match &a.outcome {
            Outcome::Answer { authoritative, .. } | Outcome::NxDomain { authoritative } => {
                if *authoritative {
                    "yes"
                } else {
                    "no"
                }
            }
            _ => "-",
        };
        s.push_str(&format!(
            "{:<w_ns$}  {:<w_d$}  {aa:<3}  {}\n",
            a.nameserver,
            a.domain,
            a.outcome.describe()
        ));
    }
    s
}

/// Something the watcher tells its caller, as it happens.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first poll: every nameserver and domain.
    MxState {
        time: String,
        nameserver: String,
        domain: String,
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// A nameserver's answer for a domain changed.
    MxChange {
        time: String,
        nameserver: String,
        domain: String,
        before: String,
        #[serde(flatten)]
        outcome: Outcome,
        /// With a target: how many nameserver/domain pairs serve it now, of how many.
        serving: Option<(usize, usize)>,
    },
    /// Every nameserver serves the target for every domain.
    MxReached {
        time: String,
        target: String,
        max_ttl: Option<u32>,
        waited_seconds: f64,
    },
    /// The wait ended without that.
    MxGaveUp {
        time: String,
        target: String,
        waited_seconds: f64,
        serving: (usize, usize),
    },
    /// A nameserver this host cannot send to: the wait stops (once per such pair).
    MxUnreachable {
        time: String,
        nameserver: String,
        domain: String,
        reason: String,
    },
    /// A poll is done (after its state or change events): for callers that record every poll
    /// (the TTL log). No line for people; `watch-mx --json` does not print it.
    MxPolled { time: String },
}

/// How a watch ended.
#[derive(Clone, Debug)]
pub struct WatchEnd {
    /// The target was reached (always false without one).
    pub reached: bool,
    pub last: Snapshot,
    /// The largest MX TTL seen over the whole watch (before and after the change).
    pub max_ttl_seen: Option<u32>,
    /// When any nameserver first served the target (Unix seconds).
    pub first_sighting: Option<u64>,
    /// The wait stopped because these nameservers cannot be reached from this host (empty
    /// otherwise); each has been told as an `MxUnreachable` event.
    pub unreachable: Vec<Unreachable>,
    /// Stopped by a signal (`failpoint::request_stop`).
    pub interrupted: bool,
}

/// What a watch carries from poll to poll.
struct Watching<'a> {
    spec: &'a WatchSpec,
    until: Option<&'a str>,
    started: Instant,
    max_ttl_seen: Option<u32>,
    first_sighting: Option<u64>,
}

impl Watching<'_> {
    fn end(&self, reached: bool, last: Snapshot) -> WatchEnd {
        WatchEnd {
            reached,
            last,
            max_ttl_seen: self.max_ttl_seen,
            first_sighting: self.first_sighting,
            unreachable: Vec::new(),
            interrupted: crate::failpoint::stop_requested(),
        }
    }

    /// Tells the first state of every pair, or what changed since `prev`.
    fn tell_poll(
        &self,
        prev: Option<&Snapshot>,
        snap: &Snapshot,
        serving: Option<(usize, usize)>,
        tell: &mut dyn FnMut(&Event, &WatchSpec, &Snapshot),
    ) {
        let time = crate::timefmt::rfc3339(snap.unix);
        match prev {
            None => {
                for a in &snap.asked {
                    let e = Event::MxState {
                        time: time.clone(),
                        nameserver: a.nameserver.clone(),
                        domain: a.domain.clone(),
                        outcome: a.outcome.clone(),
                    };
                    tell(&e, self.spec, snap);
                }
            }
            Some(p) => {
                for c in changes(p, snap) {
                    let e = Event::MxChange {
                        time: time.clone(),
                        nameserver: c.nameserver.to_string(),
                        domain: c.domain.to_string(),
                        before: c.before.describe(),
                        outcome: c.after.clone(),
                        serving,
                    };
                    tell(&e, self.spec, snap);
                }
            }
        }
        tell(&Event::MxPolled { time }, self.spec, snap);
    }
}

/// Polls until every nameserver serves `until` for every domain (or forever without it, or until
/// `max_wait` or `polls` run out, or a signal). `tell` gets the first state of every pair, every
/// change, every poll and the end. With a target, a nameserver this host cannot send to stops
/// the wait at once (`WatchEnd::unreachable`): it could never be seen serving the target.
pub async fn watch(
    spec: &WatchSpec,
    until: Option<&str>,
    max_wait: Option<Duration>,
    polls: Option<u64>,
    tell: &mut dyn FnMut(&Event, &WatchSpec, &Snapshot),
) -> WatchEnd {
    let mut w = Watching {
        spec,
        until,
        started: Instant::now(),
        max_ttl_seen: None,
        first_sighting: None,
    };
    let mut prev: Option<Snapshot> = None;
    let mut n = 0u64;
    loop {
        let snap = tokio::select! {
            s = poll(spec) => s,
            () = stopped() => {
                let last = prev.unwrap_or(Snapshot { unix: crate::timefmt::now_unix(), asked: Vec::new() });
                return w.end(false, last);
            }
        };
        n += 1;
        let time = crate::timefmt::rfc3339(snap.unix);
        w.max_ttl_seen = w.max_ttl_seen.max(snap.max_ttl());
        let serving = w.until.map(|t| snap.serving(t));
        if w.first_sighting.is_none() && serving.is_some_and(|(k, _)| k > 0) {
            w.first_sighting = Some(snap.unix);
        }
        w.tell_poll(prev.as_ref(), &snap, serving, tell);
        let waited = w.started.elapsed();
        if let (Some(t), Some((k, all))) = (until, serving) {
            if k == all {
                let e = Event::MxReached {
                    time,
                    target: dns::normalize_name(t),
                    max_ttl: w.max_ttl_seen,
                    waited_seconds: waited.as_secs_f64(),
                };
                tell(&e, spec, &snap);
                return w.end(true, snap);
            }
            let blocked = spec.unreachable();
            if !blocked.is_empty() {
                for b in &blocked {
                    let e = Event::MxUnreachable {
                        time: time.clone(),
                        nameserver: b.nameserver.clone(),
                        domain: b.domain.clone(),
                        reason: b.reason.clone(),
                    };
                    tell(&e, spec, &snap);
                }
                let mut end = w.end(false, snap);
                end.unreachable = blocked;
                return end;
            }
        }
        if crate::failpoint::stop_requested() {
            return w.end(false, snap);
        }
        let out_of_time = max_wait.is_some_and(|m| waited + spec.interval > m);
        let out_of_polls = polls.is_some_and(|p| n >= p);
        if out_of_time || out_of_polls {
            if let Some(t) = until {
                let e = Event::MxGaveUp {
                    time,
                    target: dns::normalize_name(t),
                    waited_seconds: waited.as_secs_f64(),
                    serving: serving.unwrap_or((0, 0)),
                };
                tell(&e, spec, &snap);
            }
            return w.end(false, snap);
        }
        prev = Some(snap);
        tokio::select! {
            () = tokio::time::sleep(spec.interval) => {}
            () = stopped() => {}
        }
    }
}

/// Returns once a clean stop is requested (Ctrl-C, SIGTERM).
async fn stopped() {
    while !crate::failpoint::stop_requested() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The human line of an event (the first poll is shown as a table instead).
pub fn event_line(e: &Event) -> Option<String> {
    match e {
        Event::MxState { .. } | Event::MxPolled { .. } => None,
        Event::MxChange {
            time,
            nameserver,
            domain,
            before,
            outcome,
            serving,
        } => Some(format!(
            "{time}  {nameserver}  {domain}: {before} -> {}{}",
            outcome.describe(),
            serving
                .map(|(k, n)| format!("  [{k}/{n} serve the target]"))
                .unwrap_or_default()
        )),
        Event::MxReached {
            time,
            target,
            max_ttl,
            waited_seconds,
        } => Some(format!(
            "{time}  every nameserver serves {target} for every domain (after {waited_seconds:.0}s; largest TTL seen {})",
            max_ttl.map(|t| format!("{t}s")).unwrap_or_else(|| "none".into())
        )),
        Event::MxGaveUp {
            time,
            target,
            waited_seconds,
            serving: (k, n),
        } => Some(format!(
            "{time}  gave up after {waited_seconds:.0}s: {k} of {n} nameserver/domain pairs serve {target}"
        )),
        Event::MxUnreachable {
            time,
            nameserver,
            domain,
            reason,
        } => Some(format!(
            "{time}  {}",
            Unreachable {
                domain: domain.clone(),
                nameserver: nameserver.clone(),
                reason: reason.clone(),
            }
            .describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::MxRecord;

    fn answer(targets: &[&str], ttl: u32) -> Outcome {
        Outcome::answer(
            targets
                .iter()
                .enumerate()
                .map(|(i, t)| MxRecord {
                    preference: 10 * (i as u16 + 1),
                    exchange: t.to_string(),
                    ttl,
                })
                .collect(),
            true,
        )
    }

    #[test]
    fn serving_means_only_the_target() {
        assert!(serves(
            &answer(&["park.example.net"], 60),
            "Park.Example.NET."
        ));
        assert!(!serves(
            &answer(&["park.example.net", "old.example.net"], 60),
            "park.example.net"
        ));
        assert!(!serves(&answer(&[], 60), "park.example.net"));
        assert!(!serves(&Outcome::Timeout, "park.example.net"));
        assert!(!serves(
            &Outcome::NxDomain {
                authoritative: true
            },
            "park.example.net"
        ));
    }

    fn snap(unix: u64, outcomes: &[Outcome]) -> Snapshot {
        Snapshot {
            unix,
            asked: outcomes
                .iter()
                .map(|o| Asked {
                    domain: "example.com".into(),
                    nameserver: "ns".into(),
                    outcome: o.clone(),
                })
                .collect(),
        }
    }

    fn lame(o: Outcome) -> Outcome {
        match o {
            Outcome::Answer { records, .. } => Outcome::answer(records, false),
            o => o,
        }
    }

    #[test]
    fn only_authoritative_answers_serve() {
        let park = answer(&["park.example.net"], 60);
        assert!(serves(&park, "park.example.net"));
        assert!(!serves(&lame(park.clone()), "park.example.net"));
        for o in [
            Outcome::Refused,
            Outcome::ServFail,
            Outcome::Timeout,
            Outcome::Unreachable { reason: "x".into() },
        ] {
            assert!(!serves(&o, "park.example.net"), "{o:?}");
        }
        let s = snap(0, &[park.clone(), lame(park), Outcome::Refused]);
        assert_eq!(s.serving("park.example.net"), (1, 3));
        assert_eq!(
            s.not_serving("park.example.net"),
            vec![
                "ns: example.com: 10 park.example.net (ttl 60) [not authoritative: lame?]",
                "ns: example.com: REFUSED (lame: does not serve this zone)",
            ]
        );
    }

    #[test]
    fn changes_ignore_ttl_countdown_of_caches_only() {
        let a = snap(0, &[lame(answer(&["old.example.net"], 300))]);
        let b = snap(1, &[lame(answer(&["old.example.net"], 299))]);
        assert!(changes(&a, &b).is_empty());
        // An authoritative server's TTL is the zone's: lowering it is a change.
        let c = snap(2, &[answer(&["old.example.net"], 300)]);
        let d = snap(3, &[answer(&["old.example.net"], 2)]);
        assert_eq!(changes(&c, &d).len(), 1);
        assert!(changes(&c, &c).is_empty());
        let e = snap(4, &[Outcome::Timeout]);
        assert_eq!(changes(&d, &e).len(), 1);
        assert_eq!(e.serving("old.example.net"), (0, 1));
        assert_eq!(c.serving("old.example.net"), (1, 1));
        assert_eq!(c.max_ttl(), Some(300));
        let t = render_table(&c);
        assert!(
            t.contains("example.com  yes  10 old.example.net (ttl 300)"),
            "{t}"
        );
    }

    #[test]
    fn spec_pairs_per_domain() {
        let ns = |l: &str, a: &str| Nameserver {
            label: l.into(),
            addr: a.parse().unwrap(),
        };
        let spec = WatchSpec {
            watches: vec![
                DomainWatch {
                    domain: "example.com".into(),
                    nameservers: vec![ns("a", "127.0.0.1:53"), ns("b", "127.0.0.2:53")],
                },
                DomainWatch {
                    domain: "example.org".into(),
                    nameservers: vec![ns("c", "127.0.0.3:53"), ns("a", "127.0.0.1:53")],
                },
            ],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(spec.domains(), vec!["example.com", "example.org"]);
        assert_eq!(spec.pairs().count(), 4);
        assert_eq!(spec.nameserver_count(), 3);
        assert!(spec.unreachable().is_empty());
        // A link-local address without an interface: the routing lookup fails, nothing is sent.
        let far = WatchSpec::every(
            &["example.com".into()],
            &[ns("fe80::53", "[fe80::53]:53")],
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let u = far.unreachable();
        assert_eq!(u.len(), 1);
        assert!(
            u[0].describe().contains("[mx.domain_nameservers]"),
            "{}",
            u[0].describe()
        );
    }
}
