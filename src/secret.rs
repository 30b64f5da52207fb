//! Secrets (passwords, later OAuth2 tokens) live in one type that never prints its content.
//!
//! `Debug` and `Display` both print `<redacted>`, so a secret that slips into a log line, an error
//! message, a report or a panic shows nothing. The only way to the bytes is [`Secret::expose`],
//! which is called at exactly one place: where the IMAP layer authenticates. Its memory is
//! overwritten when it is dropped (as are the buffers a password reference is read through), and
//! the process makes itself non-dumpable at start ([`harden_process`]), so a core dump or another
//! process of the same user reading its memory finds no password.

use std::fmt;

/// A password or token. Prints as `<redacted>`; zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// No core dumps, and no reading of this process's memory or environment through /proc or
/// ptrace by other processes of the same user: it holds every user's password.
pub fn harden_process() {
    // SAFETY: both calls only change this process's own attributes; failure leaves them as
    // they were, which is no worse.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Takes `value`, leaving zeros where its bytes were (for buffers a password was read
    /// through).
    pub fn take(value: &mut String) -> Self {
        let s = Secret(value.clone());
        zeroize::Zeroize::zeroize(value);
        s
    }

    /// The secret's text: only for handing it to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn taken_buffers_are_zeroed_and_the_process_is_hardened() {
        let mut buf = String::from("hunter2");
        let s = Secret::take(&mut buf);
        assert_eq!((s.expose(), buf.as_str()), ("hunter2", ""));
        harden_process();
        // SAFETY: reads this process's own attributes.
        let (dumpable, core) = unsafe {
            let mut r = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut r);
            (libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0), r.rlim_max)
        };
        assert_eq!((dumpable, core), (0, 0));
    }
}
