//! Where a run may stop: test-only failpoints (for the kill-and-resume and restart tests to stop
//! or hold the process at an exact step) and the clean-stop flag that Ctrl-C sets.
//!
//! When the environment variable `IMAPSHIFT_FAILPOINT` names a point (`after-journal`,
//! `after-append`, `after-store`, `after-expunge`), the `IMAPSHIFT_FAILPOINT_HIT`-th time
//! (default 1) that point is reached, `IMAPSHIFT_FAILPOINT_ACTION` decides what happens:
//!
//! * unset (or `abort`): the process exits abruptly (no flush, no cleanup, like SIGKILL);
//! * `error`: the step fails with a transient error, as a dropped connection would;
//! * `pause` (needs `IMAPSHIFT_FAILPOINT_DIR=<dir>`): the process writes `<dir>/reached`
//!   (content: the point's name, written to a temp file and renamed, so a reader never sees it
//!   half-written), then waits, polling every 20 ms, until `<dir>/release` exists, and then
//!   continues normally. If `<dir>` disappears, or `release` does not appear within 300 s, it
//!   aborts instead, so a test that died without releasing leaves no process behind. This
//!   lets a test act (restart a server, ...) at an exact step instead of guessing a moment.
//!   The wait blocks the calling thread (`hit` is sync and this is test-only); other work of
//!   the same task waits with it.
//!
//! `IMAPSHIFT_FAILPOINT_HIT` may list several passes (`1,3`): the action happens at each. With
//! `pause`, the first listed pass uses `reached` / `release` as above, the i-th (i >= 2) uses
//! `reached-i` / `release-i`, so a test can hold a run twice (two follow passes, say).
//!
//! Besides the journal's points, the cutover has `cutover-before-final-sync`,
//! `cutover-before-verification`, `cutover-before-next-step` and `follow-pass` (before each
//! follow pass).
//!
//! Unset, it costs one initialised `OnceLock` read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What an armed failpoint does when its count is reached.
enum Action {
    Abort,
    Error,
    Pause(PathBuf),
}

struct Armed {
    point: String,
    /// The passes (1-based) at which the action happens.
    hits: Vec<u64>,
    action: Action,
}

static CONFIG: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// How long a paused process waits for `release` before it gives up and aborts (a bound, so a
/// test that died without releasing leaves no process behind for long).
const PAUSE_LIMIT: Duration = Duration::from_secs(300);

fn config() -> &'static Option<Armed> {
    CONFIG.get_or_init(|| {
        let point = std::env::var("IMAPSHIFT_FAILPOINT").ok()?;
        let hits: Vec<u64> = std::env::var("IMAPSHIFT_FAILPOINT_HIT")
            .ok()
            .map(|v| v.split(',').filter_map(|h| h.trim().parse().ok()).collect())
            .filter(|h: &Vec<u64>| !h.is_empty())
            .unwrap_or_else(|| vec![1]);
        let action = match std::env::var("IMAPSHIFT_FAILPOINT_ACTION").as_deref() {
            Ok("error") => Action::Error,
            Ok("pause") => match std::env::var_os("IMAPSHIFT_FAILPOINT_DIR") {
                Some(d) if !d.is_empty() => Action::Pause(PathBuf::from(d)),
                _ => {
                    eprintln!(
                        "imapshift: IMAPSHIFT_FAILPOINT_ACTION=pause needs IMAPSHIFT_FAILPOINT_DIR"
                    );
                    std::process::exit(2);
                }
            },
            _ => Action::Abort,
        };
        Some(Armed {
            point,
            hits,
            action,
        })
    })
}

/// Exits the process abruptly, returns a transient error, or pauses until released, if this
/// failpoint is armed and its count is reached.
pub fn hit(name: &str) -> crate::error::Result<()> {
    let Some(armed) = config() else {
        return Ok(());
    };
    if armed.point != name {
        return Ok(());
    }
    let n = HITS.fetch_add(1, Ordering::Relaxed) + 1;
    let Some(ordinal) = armed.hits.iter().position(|&h| h == n) else {
        return Ok(());
    };
    match &armed.action {
        Action::Error => Err(crate::error::Error::transient(format!(
            "failpoint {name} reached: injected connection error"
        ))),
        Action::Pause(dir) => {
            pause(name, dir, ordinal + 1);
            Ok(())
        }
        Action::Abort => {
            eprintln!("imapshift: failpoint {name} reached: exiting abruptly");
            std::process::abort();
        }
    }
}

/// Announces `<dir>/reached` and waits for `<dir>/release` (for the i-th listed pass, i >= 2:
/// `reached-i` and `release-i`; see the module docs).
fn pause(name: &str, dir: &std::path::Path, ordinal: usize) {
    let suffix = if ordinal == 1 {
        String::new()
    } else {
        format!("-{ordinal}")
    };
    let tmp = dir.join("reached.tmp");
    let announced = std::fs::write(&tmp, name)
        .and_then(|()| std::fs::rename(&tmp, dir.join(format!("reached{suffix}"))));
    if let Err(e) = announced {
        eprintln!(
            "imapshift: failpoint {name}: cannot write {}/reached: {e}",
            dir.display()
        );
        std::process::exit(2);
    }
    eprintln!(
        "imapshift: failpoint {name} reached: paused until {}/release exists",
        dir.display()
    );
    let release = dir.join(format!("release{suffix}"));
    let deadline = std::time::Instant::now() + PAUSE_LIMIT;
    while !release.exists() {
        // The test that paused us is gone (it panicked before releasing): don't linger.
        if !dir.is_dir() {
            eprintln!(
                "imapshift: failpoint {name}: {} is gone: exiting",
                dir.display()
            );
            std::process::abort();
        }
        if std::time::Instant::now() > deadline {
            eprintln!("imapshift: failpoint {name}: not released within {PAUSE_LIMIT:?}: exiting");
            std::process::abort();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("imapshift: failpoint {name}: released");
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
