//! Test-only failpoints: a way for the kill-and-resume tests to stop the process at an exact step.
//!
//! When the environment variable `IMAPSHIFT_FAILPOINT` names a point (`after-journal`,
//! `after-append`) the process exits abruptly (no flush, no cleanup, like SIGKILL) the
//! `IMAPSHIFT_FAILPOINT_HIT`-th time (default 1) that point is reached. Unset, it costs one
//! relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Exits the process abruptly if this failpoint is armed and its count is reached.
pub fn hit(name: &str) {
    let cfg = CONFIG.get_or_init(|| {
        let point = std::env::var("IMAPSHIFT_FAILPOINT").ok()?;
        let n = std::env::var("IMAPSHIFT_FAILPOINT_HIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Some((point, n))
    });
    if let Some((point, n)) = cfg {
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("imapshift: failpoint {name} reached: exiting abruptly");
            std::process::abort();
        }
    }
}
