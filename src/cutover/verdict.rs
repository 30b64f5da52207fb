//! The cutover's verdict: whether NEXT STEP may be printed, with which exit code, and what is
//! left when not.
//!
//! `cutover` is the one command an admin trusts blindly: when it says NEXT STEP they move the MX
//! and switch the old server off. So the decision is a pure function of facts gathered by the
//! phases (the final sync's report, the verification, the last DNS re-check), kept out of the
//! I/O code and tested as a truth table. NEXT STEP needs all of: the final sync ran to its end
//! with nothing failed (no user, folder or message), the verification says OK, and every
//! nameserver still serves the parking MX.

use crate::error::exit;
use crate::runner::RunReport;
use serde::Serialize;

/// What the phases found, reduced to what the decision needs.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The final sync was stopped by Ctrl-C or SIGTERM (it never went on to verification).
    pub interrupted: bool,
    /// The final sync's exit code (0 when everything was copied).
    pub sync_exit: i32,
    /// What the final sync left undone, one line each (users not synced, folders and messages
    /// that failed, folders without a new folder).
    pub sync_left: Vec<String>,
    /// The verification, if it ran.
    pub verification: Option<Checked>,
    /// Nameserver/domain pairs that no longer serve the parking MX at the last re-check.
    pub dns_back: Vec<String>,
}

/// The verification's result, as the decision sees it.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    pub ok: bool,
    /// 0, 7 (something missing or changed) or 3 (a user could not be compared).
    pub exit: i32,
    /// One line per user that is not OK.
    pub left: Vec<String>,
}

/// What the cutover tells the admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// NEXT STEP may be printed: every old message is on the new server.
    pub next_step: bool,
    pub exit_code: i32,
    /// What is left, one line each (empty when `next_step`).
    pub left: Vec<String>,
}

/// The order in which a cutover's exit codes win: an interruption, then the DNS going back (mail
/// may be reaching the old server again), then a fatal error, then the verification, then the
/// final sync's own codes.
const RANK: [i32; 6] = [
    exit::INTERRUPTED,
    exit::NOT_PROPAGATED,
    exit::FATAL,
    exit::VERIFY_FAILED,
    exit::ACCOUNT,
    exit::PARTIAL,
];

/// The worst of some exit codes by the cutover's order (0 if all are 0).
pub fn worst(codes: &[i32]) -> i32 {
    RANK.iter()
        .copied()
        .find(|r| codes.contains(r))
        .or_else(|| codes.iter().copied().find(|&c| c != exit::OK))
        .unwrap_or(exit::OK)
}

/// Decides (pure).
pub fn decide(f: &Facts) -> Decision {
    let mut left = Vec::new();
    let mut codes = Vec::new();
    if f.interrupted {
        left.push(
            "the final sync was interrupted (Ctrl-C or SIGTERM): mail may still be only on the old server"
                .to_string(),
        );
        codes.push(exit::INTERRUPTED);
    }
    if !f.dns_back.is_empty() {
        left.push(format!(
            "the MX no longer points to the parking target on {} nameserver/domain pair(s): mail may be reaching the old server again",
            f.dns_back.len()
        ));
        left.extend(f.dns_back.iter().map(|l| format!("  {l}")));
        codes.push(exit::NOT_PROPAGATED);
    }
    if f.sync_exit != exit::OK || !f.sync_left.is_empty() {
        left.push(format!(
            "the final sync did not copy everything (exit {}):",
            f.sync_exit
        ));
        left.extend(f.sync_left.iter().map(|l| format!("  {l}")));
        // Something failed although the run's code says 0: still not done.
        codes.push(if f.sync_exit == exit::OK {
            exit::PARTIAL
        } else {
            f.sync_exit
        });
    }
    match &f.verification {
        None if !f.interrupted => {
            left.push("the verification did not run".to_string());
            codes.push(exit::VERIFY_FAILED);
        }
        None => {}
        Some(v) if !v.ok => {
            left.push("the verification did not pass:".to_string());
            left.extend(v.left.iter().map(|l| format!("  {l}")));
            codes.push(if v.exit == exit::OK {
                exit::VERIFY_FAILED
            } else {
                v.exit
            });
        }
        Some(_) => {}
    }
    let exit_code = worst(&codes);
    Decision {
        next_step: left.is_empty() && exit_code == exit::OK,
        exit_code,
        left,
    }
}

/// The lines of what a sync run left undone: users not synced, and every failure (folder,
/// message by old UID), named for people.
pub fn sync_left(run: &RunReport) -> Vec<String> {
    let mut out = Vec::new();
    for u in &run.users {
        if let Some(e) = &u.error {
            out.push(format!("user {}: not synced: {e}", u.old_login));
        }
        for f in &u.failures {
            out.push(format!(
                "user {}, folder \"{}\"{}: {}",
                u.old_login,
                f.folder,
                f.old_uid
                    .map(|x| format!(", old UID {x}"))
                    .unwrap_or_default(),
                f.reason
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_verification() -> Option<Checked> {
        Some(Checked {
            ok: true,
            exit: 0,
            left: vec![],
        })
    }

    fn facts() -> Facts {
        Facts {
            verification: ok_verification(),
            ..Default::default()
        }
    }

    /// Every row: the facts, whether NEXT STEP is printed, the exit code.
    #[test]
    fn truth_table() {
        let failed_verify = Some(Checked {
            ok: false,
            exit: 7,
            left: vec!["alice: 7 missing".into()],
        });
        let uncompared = Some(Checked {
            ok: false,
            exit: 3,
            left: vec!["bob: cannot log in".into()],
        });
        let rows: Vec<(&str, Facts, bool, i32)> = vec![
            ("all good", facts(), true, 0),
            (
                "a message failed, verification OK (say it anyway)",
                Facts {
                    sync_exit: 1,
                    sync_left: vec!["user alice, folder \"INBOX\", old UID 7: too big".into()],
                    ..facts()
                },
                false,
                1,
            ),
            (
                "a failure listed although the run said 0",
                Facts {
                    sync_left: vec!["user alice, folder \"Sent Messages\": no new folder".into()],
                    ..facts()
                },
                false,
                1,
            ),
            (
                "a user not synced",
                Facts {
                    sync_exit: 3,
                    sync_left: vec!["user bob: not synced: login failed".into()],
                    verification: uncompared.clone(),
                    ..facts()
                },
                false,
                3,
            ),
            (
                "the issue's case: a failed final sync and a passing verification",
                Facts {
                    sync_exit: 1,
                    sync_left: vec!["x".into()],
                    verification: failed_verify.clone(),
                    ..facts()
                },
                false,
                7,
            ),
            (
                "verification failed",
                Facts {
                    verification: failed_verify.clone(),
                    ..facts()
                },
                false,
                7,
            ),
            (
                "verification could not compare a user",
                Facts {
                    verification: uncompared,
                    ..facts()
                },
                false,
                3,
            ),
            (
                "verification missing",
                Facts {
                    verification: None,
                    ..facts()
                },
                false,
                7,
            ),
            (
                "interrupted final sync: no verification, 130",
                Facts {
                    interrupted: true,
                    sync_exit: 130,
                    verification: None,
                    ..facts()
                },
                false,
                130,
            ),
            (
                "the MX went back during the final sync",
                Facts {
                    dns_back: vec!["ns2: example.com: 10 old-mx.example.net".into()],
                    ..facts()
                },
                false,
                5,
            ),
            (
                "the MX went back and the verification failed: the DNS wins",
                Facts {
                    dns_back: vec!["ns2".into()],
                    verification: failed_verify,
                    ..facts()
                },
                false,
                5,
            ),
            (
                "fatal final sync",
                Facts {
                    sync_exit: 4,
                    sync_left: vec!["state store".into()],
                    ..facts()
                },
                false,
                4,
            ),
        ];
        for (name, f, next, code) in rows {
            let d = decide(&f);
            assert_eq!((d.next_step, d.exit_code), (next, code), "{name}: {d:?}");
            assert_eq!(d.left.is_empty(), next, "{name}: {d:?}");
        }
    }

    #[test]
    fn worst_follows_the_rank() {
        assert_eq!(worst(&[]), 0);
        assert_eq!(worst(&[0, 0]), 0);
        assert_eq!(worst(&[1, 3]), 3);
        assert_eq!(worst(&[7, 3, 1]), 7);
        assert_eq!(worst(&[1, 130]), 130);
        assert_eq!(worst(&[6]), 6);
    }
}
