//! The MX watcher: asks every nameserver for every domain's MX, every few seconds, and says when
//! all of them serve a target.
//!
//! The cutover depends on it: only when every authoritative nameserver serves the parking MX
//! (and one more TTL has passed, so no resolver still has the old answer cached) can no new mail
//! reach the old server, and only then does the final delta catch everything. A nameserver that
//! does not answer, answers without authority, or answers SERVFAIL is shown as such, never as
//! "no MX": an unreachable nameserver must stop the wait, not be mistaken for a change.

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

/// What to watch.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub domains: Vec<String>,
    pub nameservers: Vec<Nameserver>,
    pub interval: Duration,
    /// Per question.
    pub timeout: Duration,
}

/// One poll: `outcomes[ns][domain]`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub unix: u64,
    pub outcomes: Vec<Vec<Outcome>>,
}

/// Asks every nameserver about every domain, all at once.
pub async fn poll(spec: &WatchSpec) -> Snapshot {
    let unix = crate::timefmt::now_unix();
    let per_ns = spec.nameservers.iter().map(|ns| async move {
        let per_domain = spec
            .domains
            .iter()
            .map(|d| dns::query_mx(ns.addr, d, spec.timeout));
        futures::future::join_all(per_domain).await
    });
    Snapshot {
        unix,
        outcomes: futures::future::join_all(per_ns).await,
    }
}

/// Whether an outcome shows `target` as the only MX target.
pub fn serves(o: &Outcome, target: &str) -> bool {
    let want = dns::normalize_name(target);
    match o.targets() {
        Some(t) => !t.is_empty() && t.iter().all(|x| *x == want),
        None => false,
    }
}

impl Snapshot {
    /// How many (nameserver, domain) pairs serve `target`, of how many.
    pub fn serving(&self, target: &str) -> (usize, usize) {
        let all = self.outcomes.iter().flatten();
        let n = all.clone().count();
        (all.filter(|o| serves(o, target)).count(), n)
    }

    /// The largest MX TTL any nameserver gave.
    pub fn max_ttl(&self) -> Option<u32> {
        self.outcomes
            .iter()
            .flatten()
            .filter_map(Outcome::max_ttl)
            .max()
    }
}

/// A change between two polls.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub nameserver: &'a Nameserver,
    pub domain: &'a str,
    pub before: &'a Outcome,
    pub after: &'a Outcome,
}

/// What differs from `prev` to `next`.
pub fn changes<'a>(spec: &'a WatchSpec, prev: &'a Snapshot, next: &'a Snapshot) -> Vec<Change<'a>> {
    let mut out = Vec::new();
    for (i, ns) in spec.nameservers.iter().enumerate() {
        for (j, d) in spec.domains.iter().enumerate() {
            let (a, b) = (&prev.outcomes[i][j], &next.outcomes[i][j]);
            if !same(a, b) {
                out.push(Change {
                    nameserver: ns,
                    domain: d,
                    before: a,
                    after: b,
                });
            }
        }
    }
    out
}

/// Equal but for TTLs counting down (a recursive resolver's cache): that is no change.
fn same(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (
            Outcome::Answer {
                records: ra,
                authoritative: aa,
            },
            Outcome::Answer {
                records: rb,
                authoritative: ab,
            },
        ) => aa == ab && a.targets() == b.targets() && ra.len() == rb.len(),
        _ => a == b,
    }
}

/// The table of a poll: a row per nameserver and domain.
pub fn render_table(spec: &WatchSpec, snap: &Snapshot) -> String {
    let w_ns = spec
        .nameservers
        .iter()
        .map(|n| n.label.len())
        .chain([10])
        .max()
        .unwrap_or(10);
    let w_d = spec
        .domains
        .iter()
        .map(String::len)
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut s = format!("{:<w_ns$}  {:<w_d$}  AA   MX\n", "nameserver", "domain");
    for (i, ns) in spec.nameservers.iter().enumerate() {
        for (j, d) in spec.domains.iter().enumerate() {
            let o = &snap.outcomes[i][j];
            // The AA bit: an authoritative answer, or a lame / caching server.
            let aa = match o {
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
                ns.label,
                d,
                o.describe()
            ));
        }
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
}

/// Polls until every nameserver serves `until` for every domain (or forever without it, or until
/// `max_wait` or `polls` run out). `tell` gets the first state of every pair, every change and
/// the end.
pub async fn watch(
    spec: &WatchSpec,
    until: Option<&str>,
    max_wait: Option<Duration>,
    polls: Option<u64>,
    tell: &mut dyn FnMut(&Event, &WatchSpec, &Snapshot),
) -> WatchEnd {
    let started = Instant::now();
    let mut prev: Option<Snapshot> = None;
    let mut max_ttl_seen = None;
    let mut first_sighting = None;
    let mut n = 0u64;
    loop {
        let snap = poll(spec).await;
        n += 1;
        let time = crate::timefmt::rfc3339(snap.unix);
        max_ttl_seen = max_ttl_seen.max(snap.max_ttl());
        let serving = until.map(|t| snap.serving(t));
        if first_sighting.is_none() && serving.is_some_and(|(k, _)| k > 0) {
            first_sighting = Some(snap.unix);
        }
        match &prev {
            None => {
                for (i, ns) in spec.nameservers.iter().enumerate() {
                    for (j, d) in spec.domains.iter().enumerate() {
                        tell(
                            &Event::MxState {
                                time: time.clone(),
                                nameserver: ns.label.clone(),
                                domain: d.clone(),
                                outcome: snap.outcomes[i][j].clone(),
                            },
                            spec,
                            &snap,
                        );
                    }
                }
            }
            Some(p) => {
                for c in changes(spec, p, &snap) {
                    tell(
                        &Event::MxChange {
                            time: time.clone(),
                            nameserver: c.nameserver.label.clone(),
                            domain: c.domain.to_string(),
                            before: c.before.describe(),
                            outcome: c.after.clone(),
                            serving,
                        },
                        spec,
                        &snap,
                    );
                }
            }
        }
        let waited = started.elapsed();
        if let (Some(t), Some((k, all))) = (until, serving) {
            if k == all {
                tell(
                    &Event::MxReached {
                        time,
                        target: dns::normalize_name(t),
                        max_ttl: max_ttl_seen,
                        waited_seconds: waited.as_secs_f64(),
                    },
                    spec,
                    &snap,
                );
                return WatchEnd {
                    reached: true,
                    last: snap,
                    max_ttl_seen,
                    first_sighting,
                };
            }
        }
        let out_of_time = max_wait.is_some_and(|m| waited + spec.interval > m);
        let out_of_polls = polls.is_some_and(|p| n >= p);
        if out_of_time || out_of_polls || crate::failpoint::stop_requested() {
            if let Some(t) = until {
                tell(
                    &Event::MxGaveUp {
                        time,
                        target: dns::normalize_name(t),
                        waited_seconds: waited.as_secs_f64(),
                        serving: serving.unwrap_or((0, 0)),
                    },
                    spec,
                    &snap,
                );
            }
            return WatchEnd {
                reached: false,
                last: snap,
                max_ttl_seen,
                first_sighting,
            };
        }
        prev = Some(snap);
        tokio::time::sleep(spec.interval).await;
    }
}

/// The human line of an event (the first poll is shown as a table instead).
pub fn event_line(e: &Event) -> Option<String> {
    match e {
        Event::MxState { .. } => None,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::MxRecord;

    fn answer(targets: &[&str], ttl: u32) -> Outcome {
        Outcome::Answer {
            records: targets
                .iter()
                .enumerate()
                .map(|(i, t)| MxRecord {
                    preference: 10 * (i as u16 + 1),
                    exchange: t.to_string(),
                    ttl,
                })
                .collect(),
            authoritative: true,
        }
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

    #[test]
    fn changes_ignore_ttl_countdown() {
        let spec = WatchSpec {
            domains: vec!["example.com".into()],
            nameservers: vec![Nameserver {
                label: "ns".into(),
                addr: "127.0.0.1:53".parse().unwrap(),
            }],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let a = Snapshot {
            unix: 0,
            outcomes: vec![vec![answer(&["old.example.net"], 300)]],
        };
        let b = Snapshot {
            unix: 1,
            outcomes: vec![vec![answer(&["old.example.net"], 299)]],
        };
        assert!(changes(&spec, &a, &b).is_empty());
        let c = Snapshot {
            unix: 2,
            outcomes: vec![vec![Outcome::Timeout]],
        };
        assert_eq!(changes(&spec, &b, &c).len(), 1);
        assert_eq!(c.serving("old.example.net"), (0, 1));
        assert_eq!(b.serving("old.example.net"), (1, 1));
        assert_eq!(a.max_ttl(), Some(300));
        let t = render_table(&spec, &a);
        assert!(
            t.contains("example.com  yes  10 old.example.net (ttl 300)"),
            "{t}"
        );
    }
}
