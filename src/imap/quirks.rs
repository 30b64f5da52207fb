//! Server quirks: the one place that knows which server software behaves unlike RFC 3501 or
//! unlike the others, and which of imapshift's workarounds are switched on for a session.
//!
//! Every quirk imapshift knows is listed in [`KNOWN`] with its name, the servers that show it and
//! what imapshift does; docs/server-quirks.md has a section for each name (a unit test checks
//! that). Most workarounds cost nothing where they are not needed and are always on. The ones
//! that cost round trips ([`Quirk`]) are switched by the server software read from the greeting
//! ([`Vendor`]), can be learned from a refusal during the run, and can be forced on or off per
//! side in the configuration (`[new.quirks]`, docs/configuration.md), as can capabilities a
//! server announces but does not honour (`ignore-capabilities`).

use std::collections::{BTreeMap, BTreeSet};

/// The server software, as far as its greeting tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Dovecot,
    Cyrus,
    Courier,
    Other,
}

impl Vendor {
    /// From the greeting's text (`Dovecot (Debian) ready.`, `... Cyrus IMAP 3.6.1-Debian server
    /// ready`, `Courier-IMAP ready. Copyright ...`). An administrator may change a greeting, so
    /// each switchable workaround can also be learned or configured.
    pub fn from_greeting(text: &str) -> Vendor {
        let t = text.to_ascii_lowercase();
        if t.contains("courier-imap") {
            Vendor::Courier
        } else if t.contains("cyrus imap") {
            Vendor::Cyrus
        } else if t.contains("dovecot") {
            Vendor::Dovecot
        } else {
            Vendor::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Dovecot => "Dovecot",
            Vendor::Cyrus => "Cyrus IMAP",
            Vendor::Courier => "Courier-IMAP",
            Vendor::Other => "unknown software",
        }
    }
}

/// A workaround that is switched per session, because it costs round trips where it is not
/// needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quirk {
    /// Courier refuses an APPEND into the folder the session has open read-only: leave the
    /// folder (UNSELECT or CLOSE) before appending, and EXAMINE it again afterwards.
    AppendToExamined,
    /// Courier sends the `+` of an APPEND that follows another one only after the client has
    /// ACKed the previous APPEND's tagged reply (two small writes, Nagle, no TCP_NODELAY): wait
    /// for each APPEND's tagged reply before sending the next APPEND, where there is no
    /// LITERAL+. Pipelining them costs a delayed ACK (about 40 ms) per message there.
    DelayedContinuation,
    /// Dovecot shows stored NUL bytes as 0x80 in `BODY[]`: fetch `BINARY.PEEK[]` too for
    /// messages with 0x80 bytes, where the server has BINARY.
    NulAs0x80,
}

impl Quirk {
    pub const ALL: [Quirk; 3] = [
        Quirk::AppendToExamined,
        Quirk::DelayedContinuation,
        Quirk::NulAs0x80,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quirk::AppendToExamined => "append-to-examined",
            Quirk::DelayedContinuation => "delayed-continuation",
            Quirk::NulAs0x80 => "nul-as-0x80",
        }
    }

    pub fn from_name(name: &str) -> Option<Quirk> {
        Quirk::ALL.into_iter().find(|q| q.name() == name)
    }

    /// Whether the workaround is on for this software before anything was learned. Software
    /// that is not recognised gets the workarounds that cost little.
    fn default_for(self, vendor: Vendor) -> bool {
        match self {
            Quirk::AppendToExamined => vendor == Vendor::Courier,
            // Waiting costs a round trip per message where the `+` comes at once (Dovecot sets
            // TCP_NODELAY; measured no slower pipelined); against Courier it saves 40 ms each.
            Quirk::DelayedContinuation => vendor == Vendor::Courier,
            // Costs one more FETCH for a batch with 0x80 bytes, only where BINARY is offered;
            // Cyrus returns NULs as NULs (measured), Courier has no BINARY.
            Quirk::NulAs0x80 => matches!(vendor, Vendor::Dovecot | Vendor::Other),
        }
    }
}

/// One known quirk, for the documentation test and for `preflight`.
pub struct QuirkInfo {
    pub name: &'static str,
    pub servers: &'static str,
    /// What imapshift does, in a few words.
    pub handling: &'static str,
}

/// Every quirk imapshift knows of, switchable or not; each has a section of this name in
/// docs/server-quirks.md.
pub const KNOWN: &[QuirkInfo] = &[
    QuirkInfo {
        name: "nul-as-0x80",
        servers: "Dovecot",
        handling: "NUL bytes restored from BINARY.PEEK[] (switchable)",
    },
    QuirkInfo {
        name: "append-to-examined",
        servers: "Courier",
        handling: "the folder is left before an APPEND into it (switchable, learned)",
    },
    QuirkInfo {
        name: "delayed-continuation",
        servers: "Courier",
        handling: "each APPEND's reply is waited for before the next APPEND, without LITERAL+ (switchable)",
    },
    QuirkInfo {
        name: "line-ends",
        servers: "Dovecot Maildir",
        handling: "the copy's bytes are what the old server sends; compared as sent",
    },
    QuirkInfo {
        name: "internaldate-zone",
        servers: "most servers",
        handling: "INTERNALDATE compared as an instant",
    },
    QuirkInfo {
        name: "bytes-rewritten",
        servers: "Dovecot Maildir and others",
        handling: "fingerprints ignore line ends; a copy may be larger",
    },
    QuirkInfo {
        name: "bad-mid-append",
        servers: "Dovecot",
        handling: "only sendable flags are sent; a BAD with LITERAL+ retires the connection",
    },
    QuirkInfo {
        name: "keyword-refused",
        servers: "Dovecot",
        handling: "a message refused for its flags is stored with fewer flags, named",
    },
    QuirkInfo {
        name: "serverbug",
        servers: "Dovecot",
        handling: "the batch is halved until the unreadable message is named",
    },
    QuirkInfo {
        name: "separator-in-name",
        servers: "any two servers",
        handling: "the other separator becomes its look-alike, reversibly",
    },
    QuirkInfo {
        name: "special-use",
        servers: "Dovecot, Courier",
        handling: "special-use folders by attribute, else by name; one old folder each",
    },
    QuirkInfo {
        name: "appendlimit-bye",
        servers: "Cyrus",
        handling: "nothing over APPENDLIMIT is sent; such a message fails, named",
    },
    QuirkInfo {
        name: "login-pipelining",
        servers: "Courier",
        handling: "nothing is sent before the LOGIN reply",
    },
    QuirkInfo {
        name: "short-literals",
        servers: "Courier",
        handling: "no literal over 8192 bytes outside APPEND is ever sent",
    },
    QuirkInfo {
        name: "capability-hides",
        servers: "Dovecot",
        handling: "decisions follow what is announced; tests hide extensions this way",
    },
    QuirkInfo {
        name: "namespace-prefix",
        servers: "Courier, Cyrus",
        handling: "names are translated component by component between namespaces",
    },
    QuirkInfo {
        name: "cyrus-refusals",
        servers: "Cyrus",
        handling: "a message refused for bare LF, NUL or its header fails alone, named",
    },
    QuirkInfo {
        name: "cyrus-keyword-limit",
        servers: "Cyrus",
        handling: "only the keywords a full folder cannot take are dropped, named per folder",
    },
    QuirkInfo {
        name: "munge8bit",
        servers: "Cyrus",
        handling: "copies paired by their munged form (exactly once); verify lists them altered",
    },
];

/// Where a switch's value came from, for `preflight` and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The server software's default.
    Software,
    /// The configuration (`[old.quirks]`, `[new.quirks]`).
    Config,
    /// Learned from the server's refusal during this session.
    Learned,
}

/// The configuration's word on one side's quirks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuirkOverrides {
    /// Switches forced on or off.
    pub set: BTreeMap<Quirk, bool>,
    /// Capabilities (upper case) to act as if the server did not announce them.
    pub ignore_capabilities: BTreeSet<String>,
}

impl QuirkOverrides {
    /// Parses one `key = value` of a `[side.quirks]` table; the error names the fix.
    pub fn set_from_config(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        if key == "ignore-capabilities" {
            let Some(list) = value.as_array() else {
                return Err("must be a list of capability names, e.g. [\"CONDSTORE\"]".into());
            };
            for v in list {
                match v.as_str().map(str::trim) {
                    Some(c) if !c.is_empty() && !c.contains(char::is_whitespace) => {
                        self.ignore_capabilities.insert(c.to_ascii_uppercase());
                    }
                    _ => return Err(format!("{v} is not a capability name, e.g. \"CONDSTORE\"")),
                }
            }
            return Ok(());
        }
        let Some(q) = Quirk::from_name(key) else {
            let names: Vec<&str> = Quirk::ALL.iter().map(|q| q.name()).collect();
            return Err(format!(
                "unknown quirk: the switchable ones are {} (and ignore-capabilities); see docs/server-quirks.md",
                names.join(", ")
            ));
        };
        let Some(on) = value.as_bool() else {
            return Err("must be true or false".into());
        };
        self.set.insert(q, on);
        Ok(())
    }
}

/// The workarounds switched on for one session.
#[derive(Clone, Debug)]
pub struct Quirks {
    vendor: Vendor,
    on: BTreeMap<Quirk, (bool, Source)>,
}

impl Quirks {
    pub fn resolve(vendor: Vendor, overrides: &QuirkOverrides) -> Quirks {
        let on = Quirk::ALL
            .into_iter()
            .map(|q| match overrides.set.get(&q) {
                Some(&v) => (q, (v, Source::Config)),
                None => (q, (q.default_for(vendor), Source::Software)),
            })
            .collect();
        Quirks { vendor, on }
    }

    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    pub fn on(&self, q: Quirk) -> bool {
        self.on.get(&q).is_some_and(|(v, _)| *v)
    }

    /// Switches `q` on after the server showed it, unless the configuration switched it off.
    /// Returns whether it is on now and was not before.
    pub fn learn(&mut self, q: Quirk) -> bool {
        match self.on.get(&q) {
            Some((true, _)) | Some((false, Source::Config)) => false,
            _ => {
                self.on.insert(q, (true, Source::Learned));
                true
            }
        }
    }

    /// `Courier-IMAP; append-to-examined on (software), delayed-continuation on (software),
    /// nul-as-0x80 off (config)`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .on
            .iter()
            .map(|(q, (v, src))| {
                let src = match src {
                    Source::Software => "software",
                    Source::Config => "config",
                    Source::Learned => "learned",
                };
                format!("{} {} ({src})", q.name(), if *v { "on" } else { "off" })
            })
            .collect();
        format!("{}; {}", self.vendor.name(), parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_by_greeting() {
        let table = [
            ("Dovecot (Debian) ready.", Vendor::Dovecot),
            ("imap.example.org Cyrus IMAP 3.6.1-Debian-3.6.1-4 server ready", Vendor::Cyrus),
            (
                "Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution information.",
                Vendor::Courier,
            ),
            ("IMAP4rev1 Service Ready", Vendor::Other),
            ("", Vendor::Other),
        ];
        for (greeting, want) in table {
            assert_eq!(Vendor::from_greeting(greeting), want, "{greeting:?}");
        }
    }

    #[test]
    fn defaults_overrides_and_learning() {
        let none = QuirkOverrides::default();
        let table = [
            (Vendor::Courier, Quirk::AppendToExamined, true),
            (Vendor::Dovecot, Quirk::AppendToExamined, false),
            (Vendor::Cyrus, Quirk::AppendToExamined, false),
            (Vendor::Other, Quirk::AppendToExamined, false),
            (Vendor::Courier, Quirk::DelayedContinuation, true),
            (Vendor::Dovecot, Quirk::DelayedContinuation, false),
            (Vendor::Cyrus, Quirk::DelayedContinuation, false),
            (Vendor::Other, Quirk::DelayedContinuation, false),
            (Vendor::Dovecot, Quirk::NulAs0x80, true),
            (Vendor::Other, Quirk::NulAs0x80, true),
            (Vendor::Cyrus, Quirk::NulAs0x80, false),
            (Vendor::Courier, Quirk::NulAs0x80, false),
        ];
        for (vendor, q, want) in table {
            assert_eq!(
                Quirks::resolve(vendor, &none).on(q),
                want,
                "{vendor:?} {q:?}"
            );
        }
        // Learned where the software default was off; never against the configuration.
        let mut dv = Quirks::resolve(Vendor::Dovecot, &none);
        assert!(dv.learn(Quirk::AppendToExamined));
        assert!(dv.on(Quirk::AppendToExamined));
        assert!(!dv.learn(Quirk::AppendToExamined), "already on");
        let mut off = QuirkOverrides::default();
        off.set_from_config("append-to-examined", &toml::Value::Boolean(false))
            .unwrap();
        let mut co = Quirks::resolve(Vendor::Courier, &off);
        assert!(!co.on(Quirk::AppendToExamined));
        assert!(!co.learn(Quirk::AppendToExamined));
        assert!(!co.on(Quirk::AppendToExamined));
        assert_eq!(
            co.describe(),
            "Courier-IMAP; append-to-examined off (config), delayed-continuation on (software), \
             nul-as-0x80 off (software)"
        );
        let mut pipelined = QuirkOverrides::default();
        pipelined
            .set_from_config("delayed-continuation", &toml::Value::Boolean(false))
            .unwrap();
        let co = Quirks::resolve(Vendor::Courier, &pipelined);
        assert!(!co.on(Quirk::DelayedContinuation));
        assert!(co.on(Quirk::AppendToExamined));
    }

    #[test]
    fn config_values_are_checked() {
        let mut o = QuirkOverrides::default();
        let caps = toml::Value::Array(vec!["condstore".into(), "LITERAL+".into()]);
        o.set_from_config("ignore-capabilities", &caps).unwrap();
        assert_eq!(
            o.ignore_capabilities.iter().cloned().collect::<Vec<_>>(),
            ["CONDSTORE", "LITERAL+"]
        );
        let err = o
            .set_from_config("append_to_examined", &toml::Value::Boolean(true))
            .unwrap_err();
        assert!(
            err.contains("append-to-examined, delayed-continuation, nul-as-0x80"),
            "{err}"
        );
        let err = o
            .set_from_config("nul-as-0x80", &toml::Value::String("yes".into()))
            .unwrap_err();
        assert_eq!(err, "must be true or false");
        let err = o
            .set_from_config("ignore-capabilities", &toml::Value::String("X".into()))
            .unwrap_err();
        assert!(err.contains("list"), "{err}");
    }

    /// Every quirk named here has its section in docs/server-quirks.md, and every switchable
    /// one is in [`KNOWN`].
    #[test]
    fn every_quirk_is_documented() {
        let doc = include_str!("../../docs/server-quirks.md");
        for k in KNOWN {
            let heading = format!("## `{}`", k.name);
            assert!(
                doc.lines().any(|l| l.starts_with(&heading)),
                "docs/server-quirks.md has no section {heading}"
            );
        }
        for q in Quirk::ALL {
            assert!(KNOWN.iter().any(|k| k.name == q.name()), "{q:?}");
        }
    }
}
