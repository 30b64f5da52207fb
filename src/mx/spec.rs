//! What to watch, from the `[mx]` table: each domain with its own nameservers.
//!
//! One function builds it for `watch-mx --config`, `preflight` and `cutover`, so all three ask
//! the same servers: a domain's own `[mx.domain_nameservers]`, else the default `nameservers`,
//! else its NS records, discovered per domain (two domains at two DNS providers each get their
//! own). A discovered nameserver name with an address this host cannot send to (IPv6 without a
//! route) and another one it can is asked at the reachable one only, with one warning.

use super::{DomainWatch, Nameserver, WatchSpec};
use crate::config::MxConfig;
use crate::dns;
use std::net::SocketAddr;
use std::time::Duration;

/// The spec of `mx` with discovered nameservers asked on port 53.
pub async fn spec_from_config(
    mx: &MxConfig,
    interval: Duration,
    timeout: Duration,
) -> Result<WatchSpec, String> {
    spec_with_port(mx, 53, interval, timeout).await
}

/// [`spec_from_config`] with another port for discovered nameservers (`watch-mx --ns-port`).
pub async fn spec_with_port(
    mx: &MxConfig,
    ns_port: u16,
    interval: Duration,
    timeout: Duration,
) -> Result<WatchSpec, String> {
    let mut resolver = None;
    let mut watches = Vec::new();
    for domain in &mx.domains {
        let named = mx.nameservers_for(domain);
        let nameservers = if named.is_empty() {
            let r = match resolver {
                Some(r) => r,
                None => *resolver.insert(match mx.resolver {
                    Some(r) => r,
                    None => dns::system_resolver()?,
                }),
            };
            discover(r, domain, ns_port, timeout).await?
        } else {
            named
                .into_iter()
                .map(|(label, addr)| Nameserver { label, addr })
                .collect()
        };
        watches.push(DomainWatch {
            domain: domain.clone(),
            nameservers,
        });
    }
    Ok(WatchSpec {
        watches,
        interval,
        timeout,
    })
}

/// The nameservers of `domain` from its NS records, without the addresses this host cannot
/// send to when the same nameserver has another one it can.
async fn discover(
    resolver: SocketAddr,
    domain: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<Nameserver>, String> {
    let found = dns::discover_nameservers(resolver, domain, port, timeout).await?;
    let reachable = |a: SocketAddr| super::local_send_error(a).is_none();
    let mut out = Vec::new();
    for (name, addr) in &found {
        let label = format!("{name} ({addr})");
        if let Some(why) = super::local_send_error(*addr) {
            let other = found
                .iter()
                .any(|(n, a)| n == name && a != addr && reachable(*a));
            if other {
                tracing::warn!(
                    "{domain}: leaving out {label}: this host cannot send there ({why}); {name} is asked at its other address"
                );
                continue;
            }
        }
        if !out.iter().any(|n: &Nameserver| n.addr == *addr) {
            out.push(Nameserver { label, addr: *addr });
        }
    }
    Ok(out)
}
