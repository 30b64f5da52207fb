//! Where a run may stop: test-only failpoints (for the kill-and-resume tests to stop the process
//! at an exact step) and the clean-stop flag that Ctrl-C sets.
//!
//! When the environment variable `IMAPSHIFT_FAILPOINT` names a point (`after-journal`,
//! `after-append`), the `IMAPSHIFT_FAILPOINT_HIT`-th time (default 1) that point is reached the
//! process exits abruptly (no flush, no cleanup, like SIGKILL), or, with
//! `IMAPSHIFT_FAILPOINT_ACTION=error`, the step fails with a transient error as a dropped
//! connection would. Unset, it costs one initialised `OnceLock` read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static CONFIG: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Exits the process abruptly (or returns a transient error) if this failpoint is armed and its
/// count is reached.
pub fn hit(name: &str) -> crate::error::Result<()> {
    let cfg = CONFIG.get_or_init(|| {
        let point = std::env::var("IMAPSHIFT_FAILPOINT").ok()?;
        let n = std::env::var("IMAPSHIFT_FAILPOINT_HIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let error = std::env::var("IMAPSHIFT_FAILPOINT_ACTION").is_ok_and(|a| a == "error");
        Some((point, n, error))
    });
    if let Some((point, n, error)) = cfg {
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            if *error {
                return Err(crate::error::Error::transient(format!(
                    "failpoint {name} reached: injected connection error"
                )));
            }
            eprintln!("imapshift: failpoint {name} reached: exiting abruptly");
            std::process::abort();
        }
    }
    Ok(())
}

/// Set by the first Ctrl-C (SIGINT/SIGTERM): finish what is in flight, start nothing new.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the run to stop cleanly.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a clean stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The error a step returns when the run stops at the admin's request.
pub fn interrupted() -> crate::error::Error {
    crate::error::Error::new(
        crate::error::Scope::Fatal,
        crate::error::Retry::Fix,
        "interrupted: the run stopped cleanly at the admin's request; run again to resume",
    )
}
