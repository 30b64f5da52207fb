//! Tests of the Cyrus harness (`tests/common/cyrus.rs`) against real private Cyrus IMAP 3.6
//! instances, and the facts about Debian's Cyrus (3.6.1, the harness's config) that the
//! cross-vendor migrations rely on. If these fail, no Cyrus migration result means anything.
//!
//! * NAMESPACE is `(("INBOX." ".")) (("user." ".")) (("" "."))`: personal folders are
//!   `INBOX.<name>`, separator `.`; `CREATE Sent` (top level) is `NO Permission denied`;
//!   `CREATE INBOX.a/b` and a raw 8-bit name are `NO Invalid mailbox name`.
//! * APPEND refuses bare LF (`NO Message contains bare newlines`) and NUL in a normal literal
//!   (`NO Message contains NUL characters`), also when the literal was sent with LITERAL+; a NUL
//!   in a literal8 (`~{n}`) is accepted and `BODY[]` returns it as a real NUL. A bare CR is
//!   accepted and returned unchanged. `\Recent` in the flags is `BAD Invalid flag in Append
//!   command`; an INTERNALDATE of the epoch (`01-Jan-1970 00:00:00 +0000`) is taken as "none"
//!   (the message gets the current time), one before it is `BAD Invalid date-time`.
//! * `maxmessagesize: N` announces `APPENDLIMIT=N` (default `APPENDLIMIT=4294967295`); a bigger
//!   APPEND sent with LITERAL+ gets `NO [TOOBIG] Message size exceeds fixed limit` and then
//!   `* BYE [TOOBIG] ...` (the connection is closed); with a synchronizing literal the `NO
//!   [TOOBIG]` comes instead of the continuation and the session goes on.
//! * 8-bit bytes in headers (Latin-1 or UTF-8) are accepted but each is rewritten to `X`
//!   (`munge8bit`, on by default; body bytes are kept): such a message comes back changed.
//!   `munge8bit: no` keeps them; `reject8bit: yes` refuses them with `NO Message contains
//!   non-ASCII characters in headers`.
//! * INTERNALDATE is spelled in the server's `TZ`, a one-digit day space-padded.

mod common;

use common::*;
use std::time::Duration;

const MSG: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Cyrus round trip\r\n\
Message-ID: <rt@example.org>\r\nDate: Wed, 17 Jul 1996 02:44:25 -0700\r\n\r\nBody line\r\n\
\tindented\r\n";

fn alice(name: &str, opts: CyrusOpts) -> Cyrus {
    Cyrus::start(name, &[("alice", "pw-alice")], opts)
}

/// The untagged responses of `r` as text.
fn untagged_text(r: &Reply) -> Vec<String> {
    let text = |u: &Vec<u8>| String::from_utf8_lossy(u).into_owned();
    r.untagged.iter().map(text).collect()
}

/// The personal-namespace part of the NAMESPACE reply, as the server wrote it.
fn namespace_line(c: &mut TestImap) -> String {
    let r = c.raw("NAMESPACE");
    assert!(r.is_ok(), "NAMESPACE: {} {}", r.status, r.text);
    untagged_text(&r)
        .into_iter()
        .find(|u| u.starts_with("NAMESPACE "))
        .unwrap_or_else(|| panic!("no NAMESPACE data: {r:?}"))
}

#[test]
fn namespace_create_append_fetch_roundtrip() {
    let cy = alice("cyr", CyrusOpts::default());
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    assert!(c.greeting().contains("Cyrus IMAP 3.6"), "{}", c.greeting());
    assert_eq!(
        namespace_line(&mut c),
        r#"NAMESPACE (("INBOX." ".")) (("user." ".")) (("" "."))"#
    );
    c.create("INBOX.Sent");
    c.create("INBOX.Archive.2019");
    c.create("INBOX.&AOk-t&AOk-");
    assert_eq!(c.delimiter(), Some('.'));
    let list = c.list();
    let names: Vec<&str> = list.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "INBOX",
            "INBOX.&AOk-t&AOk-",
            "INBOX.Archive",
            "INBOX.Archive.2019",
            "INBOX.Sent"
        ]
    );
    assert!(list.iter().all(|(_, d, _)| *d == Some('.')), "{list:?}");

    let date = "17-Jul-1996 02:44:25 -0700";
    let uid = c
        .append("INBOX.Sent", &["\\Seen", "$Forwarded"], Some(date), MSG)
        .expect("APPEND to INBOX.Sent");
    let msgs = c.fetch_all("INBOX.Sent");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.uid, uid);
    assert_eq!(m.body, MSG, "BODY[] differs from what was appended");
    assert_eq!(m.size as usize, MSG.len());
    assert_eq!(m.flags, ["$Forwarded", "\\Seen"]);
    assert_eq!(m.instant(), internaldate_secs(date));
    // "cyr" has neither `old` nor `new` in its name: Asia/Kolkata.
    assert_eq!(cy.tz(), "Asia/Kolkata");
    assert_eq!(m.internaldate, "17-Jul-1996 15:14:25 +0530");
    c.subscribe("INBOX.Sent");
    assert_eq!(c.lsub(), ["INBOX", "INBOX.Sent"]);
    assert_eq!(
        c.try_create("Sent"),
        Err("NO Permission denied".to_string()),
        "a top-level personal folder"
    );
    c.logout();
}

/// Two instances at once, from two threads: own ports, dirs and mail, each in the zone of its
/// name.
#[test]
fn two_instances_in_parallel() {
    let handles: Vec<_> = [("cyrus-old", "+0200"), ("cyrus-new", "-0400")]
        .into_iter()
        .map(|(name, zone)| {
            std::thread::spawn(move || {
                let cy = alice(name, CyrusOpts::default());
                let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
                let body = format!("Subject: {name}\r\n\r\nx\r\n");
                c.append(
                    "INBOX",
                    &[],
                    Some("01-Jul-2020 12:00:00 +0000"),
                    body.as_bytes(),
                )
                .unwrap();
                (cy, body, zone)
            })
        })
        .collect();
    let started: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(started[0].0.port(), started[1].0.port());
    assert_ne!(started[0].0.dir(), started[1].0.dir());
    for (cy, body, zone) in &started {
        let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
        let msgs = c.fetch_all("INBOX");
        assert_eq!(msgs.len(), 1, "{}: {msgs:?}", cy.name());
        assert_eq!(msgs[0].body, body.as_bytes());
        assert_eq!(msgs[0].zone(), *zone, "{}", cy.name());
        c.logout();
    }
}

#[test]
fn refusals_and_capabilities() {
    let cy = alice("refusals", CyrusOpts::default());
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    let caps = c.capabilities();
    for cap in [
        "UIDPLUS",
        "CONDSTORE",
        "QRESYNC",
        "MULTIAPPEND",
        "LITERAL+",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "NAMESPACE",
        "BINARY",
        "MOVE",
        "IDLE",
        "ID",
        "APPENDLIMIT=4294967295",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    c.create("INBOX.t");
    let refused = [
        (
            &b"Subject: lf\nX: y\n\nbody\n"[..],
            "NO Message contains bare newlines",
        ),
        (
            b"Subject: lf\r\n\r\nbo\ndy\r\n",
            "NO Message contains bare newlines",
        ),
        (
            b"Subject: nul\r\n\r\nbo\0dy\r\n",
            "NO Message contains NUL characters",
        ),
        (b"no header line\r\n", "NO Message contains invalid header"),
    ];
    for (msg, reply) in refused {
        assert_eq!(c.append("INBOX.t", &[], None, msg), Err(reply.to_string()));
    }
    assert_eq!(
        c.append("INBOX.t", &["\\Recent"], None, b"Subject: r\r\n\r\nx\r\n"),
        Err("BAD Invalid flag in Append command".to_string())
    );
    assert_eq!(
        c.append(
            "INBOX.t",
            &[],
            Some("31-Dec-1969 23:00:00 +0000"),
            b"Subject: d\r\n\r\nx\r\n"
        ),
        Err("BAD Invalid date-time in Append command".to_string())
    );
    assert_eq!(c.status("INBOX.t").0, 0, "a refused message was stored");

    // What it takes: NUL in a literal8, a bare CR, 8-bit header bytes; the epoch as "no date".
    let nul = b"Subject: nul\r\n\r\nbo\0dy\r\n";
    c.append_binary("INBOX.t", &[], None, nul)
        .expect("literal8 with NUL");
    let cr = b"Subject: cr\r\n\r\nbo\rdy\r\n";
    c.append("INBOX.t", &[], None, cr).expect("bare CR");
    // 8-bit header bytes (Latin-1 or UTF-8) are taken but each is rewritten to `X`
    // (`munge8bit`, on by default); in the body they stay.
    let latin1 = b"Subject: caf\xe9\r\n\r\nx\xe9\r\n";
    c.append("INBOX.t", &[], None, latin1)
        .expect("8-bit header");
    let utf8 = "Subject: café\r\n\r\nx\r\n".as_bytes();
    c.append("INBOX.t", &[], None, utf8).expect("UTF-8 header");
    let epoch = b"Subject: epoch\r\n\r\nx\r\n";
    c.append("INBOX.t", &[], Some("01-Jan-1970 00:00:00 +0000"), epoch)
        .expect("epoch date");
    let msgs = c.fetch_all("INBOX.t");
    let bodies: Vec<&[u8]> = msgs.iter().map(|m| m.body.as_slice()).collect();
    let munged: [&[u8]; 2] = [
        b"Subject: cafX\r\n\r\nx\xe9\r\n",
        b"Subject: cafXX\r\n\r\nx\r\n",
    ];
    assert_eq!(bodies, [&nul[..], cr, munged[0], munged[1], epoch]);
    // The epoch became the time of the APPEND (after 2023 at least).
    assert!(
        msgs[4].instant() > 1_700_000_000,
        "{}",
        msgs[4].internaldate
    );
    c.logout();
}

/// `extra_conf` replaces the harness's own lines (Cyrus refuses a key given twice):
/// `autocreate_quota` gives the INBOX a quota; `maxmessagesize` becomes APPENDLIMIT and too big
/// a message is `[TOOBIG]`.
#[test]
fn extra_conf_quota_and_appendlimit() {
    let opts = CyrusOpts {
        tz: Some("UTC".into()),
        extra_conf: "autocreate_quota: 100\nmaxmessagesize: 1000\nmunge8bit: no\n".into(),
    };
    let cy = alice("limits", opts.clone());
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    assert!(
        c.has_capability("APPENDLIMIT=1000"),
        "{:?}",
        c.capabilities()
    );
    let r = c.raw("GETQUOTAROOT INBOX");
    let quota = untagged_text(&r);
    assert!(
        quota.contains(&"QUOTA INBOX (STORAGE 0 100)".to_string()),
        "{quota:?}"
    );
    // Under the limit, with a UTF-8 header that `munge8bit: no` keeps.
    let fits = format!("Subject: café\r\n\r\n{}\r\n", "x".repeat(900));
    c.append(
        "INBOX",
        &[],
        Some("01-Jul-2020 12:00:00 +0000"),
        fits.as_bytes(),
    )
    .expect("a message under APPENDLIMIT");
    let msgs = c.fetch_all("INBOX");
    assert_eq!(msgs[0].body, fits.as_bytes());
    // UTC, as `tz` says (and a one-digit day is space-padded, as RFC 3501 spells it).
    assert_eq!(msgs[0].internaldate, " 1-Jul-2020 12:00:00 +0000");
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(2000));
    // LITERAL+: NO [TOOBIG], then BYE.
    let r = c.append_reply("INBOX", &[], None, big.as_bytes(), false);
    assert_eq!(
        (r.status.as_str(), r.text.as_str()),
        ("NO", "[TOOBIG] Message size exceeds fixed limit")
    );
    drop(c);

    // A synchronizing literal: refused before the continuation, and the session goes on.
    // `reject8bit` refuses 8-bit headers instead of rewriting them.
    let opts = CyrusOpts {
        extra_conf: format!(
            "{}suppress_capabilities: LITERAL+\nreject8bit: yes\n",
            opts.extra_conf
        ),
        ..opts
    };
    let cy = alice("limits-sync", opts);
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    assert!(!c.has_capability("LITERAL+"), "{:?}", c.capabilities());
    let r = c.append_reply("INBOX", &[], None, big.as_bytes(), false);
    assert_eq!(
        (r.status.as_str(), r.text.as_str()),
        ("NO", "[TOOBIG] Message size exceeds fixed limit")
    );
    assert_eq!(
        c.append("INBOX", &[], None, fits.as_bytes()),
        Err("NO Message contains non-ASCII characters in headers".to_string())
    );
    assert_eq!(c.status("INBOX").0, 0);
    c.logout();
}

#[test]
fn users_passwords_and_admin() {
    let cy = Cyrus::start(
        "users",
        &[
            ("alice", "pw with spaces \"and\" quotes"),
            ("bob", "pw-bob"),
        ],
        CyrusOpts::default(),
    );
    let c = TestImap::connect(cy.port(), "alice", "pw with spaces \"and\" quotes");
    c.logout();
    let err = TestImap::try_connect(cy.port(), "bob", "wrong").err();
    assert!(
        err.as_deref().is_some_and(|e| e.starts_with("NO ")),
        "{err:?}"
    );
    cy.add_user("carol", "pw-carol");
    let mut c = TestImap::connect(cy.port(), "carol", "pw-carol");
    assert_eq!(c.status("INBOX").0, 0, "add_user makes the INBOX");
    c.logout();
    // The admin sees every user's INBOX as user.<login>.
    let mut a = TestImap::connect(cy.port(), CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD);
    let names: Vec<String> = a.list().into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(names, ["user.alice", "user.bob", "user.carol"]);
    a.logout();
}

/// Whether `pid` is a live (non-zombie) process.
fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// The processes' command lines (NUL-separated arguments).
fn cmdlines(pids: &[u32]) -> Vec<String> {
    let read = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok();
    pids.iter().filter_map(read).collect()
}

#[test]
fn stop_restart_and_no_stray_processes() {
    let mut cy = alice("stop", CyrusOpts::default());
    let mut session = TestImap::connect(cy.port(), "alice", "pw-alice");
    let kept = b"Subject: keep\r\n\r\nx\r\n";
    session.append("INBOX", &[], None, kept).unwrap();
    let (port, first_master, first) = (cy.port(), cy.pid(), cy.processes());
    // The master and the imapd serving our session, all in the master's group.
    assert!(
        first.contains(&first_master) && first.len() >= 2,
        "{first:?}"
    );
    let imapd = cmdlines(&first)
        .into_iter()
        .filter(|c| c.contains("/imapd\0"))
        .count();
    assert!(imapd >= 1, "no imapd in {:?}", cmdlines(&first));

    // A restart keeps the port and the mail; every process of the first run is gone.
    cy.restart();
    assert_eq!((cy.port(), cy.is_running()), (port, true));
    assert_ne!(cy.pid(), first_master);
    let survivors: Vec<u32> = first.iter().copied().filter(|p| proc_alive(*p)).collect();
    assert!(survivors.is_empty(), "{survivors:?} survived restart");
    let mut again = TestImap::connect(port, "alice", "pw-alice");
    assert_eq!(again.fetch_all("INBOX")[0].body, kept);
    drop(session);

    // Drop with a session open: no process, no dir, no listener left.
    let (second, dir) = (cy.processes(), cy.dir().to_path_buf());
    drop(cy);
    let survivors: Vec<u32> = second.iter().copied().filter(|p| proc_alive(*p)).collect();
    assert!(survivors.is_empty(), "{survivors:?} survived drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(again);
}

/// The log shows the protocol telemetry of a user's sessions (the harness has no syslog).
#[test]
fn log_shows_the_conversation() {
    let cy = alice("log", CyrusOpts::default());
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    c.create("INBOX.visible-in-log");
    c.logout();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cy.log().contains("CREATE \"INBOX.visible-in-log\"") {
        assert!(std::time::Instant::now() < deadline, "{}", cy.log_tail(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!cy.log().contains("pw-alice"), "a password in the log");
}

/// Folder rules the migrations meet: names Cyrus refuses, special-use on CREATE, and the
/// replies for a missing folder or one with children.
#[test]
fn folder_rules_and_special_use() {
    let cy = alice("folders", CyrusOpts::default());
    let mut c = TestImap::connect(cy.port(), "alice", "pw-alice");
    let invalid = Err("NO Invalid mailbox name".to_string());
    assert_eq!(c.try_create("INBOX.a/b"), invalid);
    let r = c.raw("CREATE \"INBOX.Sent\" (USE (\\Sent))");
    assert!(r.is_ok(), "CREATE with USE: {} {}", r.status, r.text);
    c.create("INBOX.p.q");
    let r = c.raw("LIST \"\" \"*\" RETURN (SPECIAL-USE)");
    let lines = untagged_text(&r);
    assert!(
        lines.contains(&"LIST (\\HasNoChildren \\Sent) \".\" INBOX.Sent".to_string()),
        "{lines:?}"
    );
    let r = c.raw("SUBSCRIBE INBOX.missing");
    assert_eq!(r.text, "Subscribe: Mailbox does not exist");
    let r = c.raw("DELETE INBOX.p");
    assert_eq!(
        r.text,
        "[HASCHILDREN] Mailbox has inferior hierarchical names"
    );
    assert_eq!(
        c.append("INBOX.missing", &[], None, b"Subject: x\r\n\r\nx\r\n"),
        Err("NO [TRYCREATE] Mailbox does not exist".to_string())
    );
    assert_eq!(
        c.append("INBOX.Sent", &[], None, b""),
        Err("NO Zero-length message literal".to_string())
    );
    let r = c.select("INBOX.Sent");
    let permanent = untagged_text(&r)
        .into_iter()
        .find(|u| u.contains("PERMANENTFLAGS"))
        .unwrap_or_default();
    assert!(permanent.contains("\\*)]"), "{permanent}");
    c.logout();
}
