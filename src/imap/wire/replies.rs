//! Two replies a session reads whole from a command's untagged responses: CAPABILITY (what the
//! server offers) and the QUOTA of GETQUOTAROOT (how much room a folder's quota root leaves).
//!
//! They used to be read in place in `imap/mod.rs`; as pure functions over parsed [`Response`]s
//! the table tests below and the fuzzing (`wire/fuzz.rs`: arbitrary value trees, every reply the
//! garbage tests parse, and a differential against imap-codec) reach exactly what a session
//! reads.

use super::{Response, Value};
use crate::store::StorageQuota;
use std::collections::BTreeSet;

/// The capabilities of every `* CAPABILITY` reply among `untagged`: its atoms, upper-cased.
/// Anything else in such a reply (a string, a list, NIL) and every other reply are left out.
pub fn capabilities(untagged: &[Response]) -> BTreeSet<String> {
    let mut caps = BTreeSet::new();
    for r in untagged {
        if let Response::Data { kind, rest } = r {
            if kind == "CAPABILITY" {
                caps.extend(
                    rest.iter()
                        .filter_map(|v| v.as_atom())
                        .map(str::to_ascii_uppercase),
                );
            }
        }
    }
    caps
}

/// The STORAGE quota of the `* QUOTA "root" (STORAGE used limit [MESSAGE used limit ...])`
/// replies among `untagged` (RFC 9208; figures in KiB, given back in bytes, saturating): with
/// several roots the one with the least room left, the first of equals. `None`: no reply names
/// STORAGE. A QUOTA reply without its list, with a list that is not whole triples, or with a
/// STORAGE figure that is not a number is an error: `QUOTA reply [the reply's values]`.
pub fn storage_quota(untagged: &[Response]) -> Result<Option<StorageQuota>, String> {
    let mut best: Option<StorageQuota> = None;
    for r in untagged {
        let Response::Data { kind, rest } = r else {
            continue;
        };
        if kind != "QUOTA" {
            continue;
        }
        let malformed = || format!("QUOTA reply {rest:?}");
        let Some(list) = rest.get(1).and_then(Value::as_list) else {
            return Err(malformed());
        };
        for triple in list.chunks(3) {
            let [name, used, limit] = triple else {
                return Err(malformed());
            };
            if !name
                .as_text()
                .is_some_and(|n| n.eq_ignore_ascii_case("STORAGE"))
            {
                continue;
            }
            let num = |v: &Value| v.as_text().and_then(|t| t.parse::<u64>().ok());
            let (Some(u), Some(l)) = (num(used), num(limit)) else {
                return Err(malformed());
            };
            let q = StorageQuota {
                used: u.saturating_mul(1024),
                limit: l.saturating_mul(1024),
            };
            if best.is_none_or(|b| q.limit.saturating_sub(q.used) < b.limit.saturating_sub(b.used))
            {
                best = Some(q);
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::wire::{parse_response, Parts};

    /// The replies of `lines`, each one untagged line without literals.
    fn replies(lines: &[&str]) -> Vec<Response> {
        lines
            .iter()
            .map(|l| {
                parse_response(Parts {
                    texts: vec![l.as_bytes().to_vec()],
                    literals: vec![],
                })
                .unwrap_or_else(|e| panic!("{l}: {e}"))
            })
            .collect()
    }

    #[test]
    fn capability_replies() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["* CAPABILITY IMAP4rev1 LITERAL+ idle AUTH=PLAIN"],
                &["AUTH=PLAIN", "IDLE", "IMAP4REV1", "LITERAL+"],
            ),
            // Two replies: both count; repeats once.
            (
                &["* CAPABILITY IMAP4rev1 QUOTA", "* capability quota UIDPLUS"],
                &["IMAP4REV1", "QUOTA", "UIDPLUS"],
            ),
            // Strings, lists and NIL are no capabilities.
            (
                &["* CAPABILITY IMAP4rev1 \"QUOTA\" (IDLE) NIL"],
                &["IMAP4REV1"],
            ),
            (&["* CAPABILITY"], &[]),
            // Other replies, and a capability code in an OK, are not read here.
            (
                &[
                    "* OK [CAPABILITY IMAP4rev1 IDLE] ready",
                    "* LIST () \"/\" INBOX",
                    "* 3 EXISTS",
                ],
                &[],
            ),
            (&[], &[]),
        ];
        for (lines, want) in cases {
            let got: Vec<String> = capabilities(&replies(lines)).into_iter().collect();
            assert_eq!(got, *want, "{lines:?}");
        }
    }

    #[test]
    fn quota_replies() {
        let q = |used: u64, limit: u64| Some(StorageQuota { used, limit });
        let cases: &[(&[&str], Option<StorageQuota>)] = &[
            (&["* QUOTA \"\" (STORAGE 10 512)"], q(10 * 1024, 512 * 1024)),
            (
                &[
                    "* QUOTAROOT INBOX \"\"",
                    "* QUOTA \"\" (MESSAGE 5 100 storage 1 2)",
                ],
                q(1024, 2048),
            ),
            // Several roots: the least room left; the first of equals.
            (
                &[
                    "* QUOTA a (STORAGE 0 100)",
                    "* QUOTA b (STORAGE 90 100)",
                    "* QUOTA c (STORAGE 0 10)",
                ],
                q(90 * 1024, 100 * 1024),
            ),
            (
                &["* QUOTA a (STORAGE 0 10)", "* QUOTA b (STORAGE 5 15)"],
                q(0, 10 * 1024),
            ),
            // Over quota: no room left, not an underflow.
            (
                &["* QUOTA a (STORAGE 30 10)", "* QUOTA b (STORAGE 1 2)"],
                q(30 * 1024, 10 * 1024),
            ),
            // KiB past u64 saturate.
            (
                &["* QUOTA \"\" (STORAGE 18446744073709551615 18446744073709551615)"],
                q(u64::MAX, u64::MAX),
            ),
            // Figures as strings, and a leading plus, are taken as numbers.
            (&["* QUOTA \"\" (STORAGE \"3\" +4)"], q(3 * 1024, 4 * 1024)),
            // No STORAGE resource, an empty list, no QUOTA reply at all.
            (&["* QUOTA \"\" (MESSAGE 5 100)"], None),
            (&["* QUOTA \"\" ()"], None),
            (&["* QUOTAROOT INBOX"], None),
            (&[], None),
            // Figures of other resources are not read.
            (&["* QUOTA \"\" (MESSAGE x y STORAGE 1 2)"], q(1024, 2048)),
        ];
        for (lines, want) in cases {
            assert_eq!(storage_quota(&replies(lines)), Ok(*want), "{lines:?}");
        }
        for bad in [
            "* QUOTA",
            "* QUOTA \"\"",
            "* QUOTA \"\" STORAGE",
            "* QUOTA \"\" (STORAGE 1)",
            "* QUOTA \"\" (STORAGE 1 2 MESSAGE 3)",
            "* QUOTA \"\" (STORAGE x 2)",
            "* QUOTA \"\" (STORAGE 1 -2)",
            "* QUOTA \"\" (STORAGE 1 NIL)",
            "* QUOTA \"\" (STORAGE 1 (2))",
            "* QUOTA \"\" (STORAGE 1 99999999999999999999)",
        ] {
            let e = storage_quota(&replies(&["* QUOTA a (STORAGE 1 2)", bad])).unwrap_err();
            assert!(e.starts_with("QUOTA reply ["), "{bad}: {e}");
        }
    }
}
