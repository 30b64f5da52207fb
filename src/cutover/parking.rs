//! The cutover's safety checks right before it acts: the parking target still refuses SMTP, and
//! every nameserver still serves the parking MX.
//!
//! Preflight checked both days before; the cutover checks again at the moment it matters. If
//! something accepts SMTP at the parking address (a forgotten relay, a wrong A record), mail sent
//! during the downtime lands in neither mailbox, so the cutover stops before the final sync. If a
//! nameserver went back to the old MX (a zone reverted, a secondary that reloaded an old copy),
//! mail reaches the old server again, so neither the final sync nor NEXT STEP can be trusted.

use crate::config::MxConfig;
use crate::preflight::Probe;
use std::net::SocketAddr;
use std::time::Duration;

/// What the parking target's SMTP port did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parking {
    /// Nothing accepts SMTP there (refused, silent, or no address): senders retry later.
    Safe(String),
    /// Something greets on port 25 (or the configured port): mail would be accepted there.
    Accepts(String),
    /// It could not be checked (no resolver, the resolver failed).
    Unknown(String),
}

/// Probes every address of `[mx].parking_target` on `[mx].smtp_port`.
pub async fn check_parking(mx: &MxConfig, target: &str) -> Parking {
    let timeout = Duration::from_secs(3);
    let resolver = match mx
        .resolver
        .map(Ok)
        .unwrap_or_else(crate::dns::system_resolver)
    {
        Ok(r) => r,
        Err(e) => return Parking::Unknown(format!("cannot resolve {target}: {e}")),
    };
    let addrs = match crate::dns::resolve_addresses(resolver, target, timeout).await {
        Ok(a) if a.is_empty() => {
            return Parking::Safe(format!(
                "{target} has no address at {resolver}: nothing can accept mail there"
            ))
        }
        Ok(a) => a,
        Err(e) => return Parking::Unknown(format!("cannot resolve {target}: {e}")),
    };
    let mut safe = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip, mx.smtp_port);
        match crate::preflight::probe_smtp(addr, timeout).await {
            Probe::Greeting(g) => {
                return Parking::Accepts(format!(
                    "something accepts SMTP at {target} ({addr}): {g}; mail sent now would reach neither the old nor the new server: point the parking MX at an address where nothing listens on port {}, then run the cutover again",
                    mx.smtp_port
                ))
            }
            Probe::Refused => safe.push(format!("{addr} refuses connections")),
            Probe::Silent => safe.push(format!("{addr} does not answer")),
            Probe::Error(e) => safe.push(format!("{addr}: {e}")),
        }
    }
    Parking::Safe(format!("{target}: {}", safe.join(", ")))
}
