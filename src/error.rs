//! One error type for the engine, carrying what an admin needs to act on a failure.
//!
//! Every error has a **scope** (how much of the run it spoils: one message, one folder, one
//! account, or everything) and a **retry class** (whether trying again may help). The engine uses
//! the scope to decide what to skip and what to keep going with: one bad message fails that
//! message, not the run. The exit code of the process is derived from the worst scope seen.

use std::fmt;

/// How much of the run an error spoils.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One message could not be copied; the folder goes on.
    Message,
    /// One folder could not be synced; the account goes on.
    Folder,
    /// One account (user) could not be synced; the other users go on.
    Account,
    /// Nothing can go on (state store broken, bad configuration).
    Fatal,
}

/// Whether trying again may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Network trouble, timeouts, `BYE`, `[UNAVAILABLE]`: reconnect and resume.
    Transient,
    /// The server said no for a reason that will not change by itself (too large, bad syntax).
    Permanent,
    /// Credentials or configuration: a human must fix something first.
    Fix,
}

/// The engine's error.
#[derive(Debug)]
pub struct Error {
    pub scope: Scope,
    pub retry: Retry,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(scope: Scope, retry: Retry, message: impl Into<String>) -> Self {
        Error {
            scope,
            retry,
            message: message.into(),
        }
    }
    /// A configuration or usage problem found before any connection.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(Scope::Fatal, Retry::Fix, message)
    }
    /// A broken connection, timeout or unparseable reply: the connection is unusable.
    pub fn transient(message: impl Into<String>) -> Self {
        Error::new(Scope::Account, Retry::Transient, message)
    }
    /// The state store failed: nothing can be trusted any more.
    pub fn state(message: impl Into<String>) -> Self {
        Error::new(Scope::Fatal, Retry::Permanent, message)
    }
    /// Put this error in a wider or narrower scope.
    pub fn scoped(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    /// Prefix the message with where it happened (`user alice`, `folder Sent`).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::state(format!("state store: {e}"))
    }
}

/// Documented exit codes (docs/exit-codes.md).
pub mod exit {
    /// Everything was done.
    pub const OK: i32 = 0;
    /// The run finished, but some messages or folders failed (listed in the summary).
    pub const PARTIAL: i32 = 1;
    /// Bad command line or configuration; nothing was contacted.
    pub const CONFIG: i32 = 2;
    /// At least one user could not be synced at all (login, connection, TLS); others were.
    pub const ACCOUNT: i32 = 3;
    /// A fatal error stopped the run (state store unusable, internal error).
    pub const FATAL: i32 = 4;
    /// `watch-mx --until` (or the cutover's wait) ended before every nameserver served the
    /// target: `--max-wait` ran out.
    pub const NOT_PROPAGATED: i32 = 5;
    /// Preflight found a check that fails (listed).
    pub const PREFLIGHT: i32 = 6;
    /// The verification found messages missing (or with other flags) on the new server.
    pub const VERIFY_FAILED: i32 = 7;
    /// Interrupted by the admin (Ctrl-C); the state is consistent and a re-run resumes.
    pub const INTERRUPTED: i32 = 130;
}
