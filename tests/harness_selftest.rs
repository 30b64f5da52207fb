//! Tests of the integration-test harness itself (`tests/common/`), against
//! real private Dovecot instances. If these fail, no other integration test
//! result means anything.
//!
//! Facts about Debian's Dovecot 2.3.19.1 established here (with the default
//! config written by `common::Dovecot`, Maildir storage):
//!
//! * Hierarchy separator is `.` (Maildir++ layout). `CREATE A/B` is refused
//!   with `NO [CANNOT] Invalid mailbox name: Name must not have '/'
//!   characters`; `CREATE A.B` makes `A` appear as `\Noselect \HasChildren`.
//! * Line endings: Maildir files are written with bare LF (CRLF input is
//!   converted, `mail_save_crlf = no`), and `BODY[]` always returns CRLF.
//!   So a CRLF message comes back byte-exact, while a message with bare LF
//!   line endings comes back with CRLF (RFC822.SIZE counts the CRLF form).
//!   A bare CR inside a line is returned unchanged.
//! * INTERNALDATE loses its zone: Maildir stores it as the file mtime, so
//!   `17-Jul-1996 02:44:25 -0700` comes back as the same instant spelled in
//!   the server's zone (its `TZ`): `17-Jul-1996 15:14:25 +0530` under
//!   Asia/Kolkata, `17-Jul-1996 11:44:25 +0200` under Europe/Berlin. The
//!   harness gives "old" and "new" instances different zones by default.
//! * NUL bytes: APPEND of a message containing NUL is ACCEPTED both in a
//!   normal literal `{n}` and in a literal8 `~{n}`; the file on disk holds
//!   the NUL. `BODY[]` returns the NUL as byte 0x80 (same length, normal
//!   literal), while `BINARY[]` returns the real NUL in a `~{n}` literal8.
//!   `BINARY[]` of a whole message also decodes a top-level
//!   Content-Transfer-Encoding and rewrites that header to `binary`.
//! * `imap_capability = ...` only changes what is ADVERTISED: with UIDPLUS
//!   not advertised, APPEND still answers `[APPENDUID v uid]`.
//! * `UID FETCH 1:*` on an empty mailbox is a plain `OK`.
//! * Default post-login CAPABILITY: `IMAP4rev1 SASL-IR LOGIN-REFERRALS ID
//!   ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS
//!   THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN
//!   NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH
//!   ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE
//!   SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+
//!   NOTIFY`. Pre-login greeting: `IMAP4rev1 SASL-IR LOGIN-REFERRALS ID
//!   ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN` (+ `STARTTLS` with TLS).
//! * Stopping: on SIGTERM the master exits after ~1 s but does not wait for
//!   its children; an imap process with a connected client lingers ~10 s
//!   until it notices, so `Dovecot::stop` also SIGTERMs the process group.
//! * Wrong passwords cost seconds (auth_failure_delay 2 s + anvil penalty).

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn opts() -> DovecotOpts {
    DovecotOpts::default()
}

/// Start several instances from several threads at once; each gets its own
/// ports and dir and sees only its own mail.
#[test]
fn concurrent_instances_roundtrip_messages() {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                Dovecot::start(&format!("rt{i}"), &[("alice", "secret-a")], opts())
            })
        })
        .collect();
    let servers: Vec<Dovecot> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(servers[0].port(), servers[1].port());
    assert_ne!(servers[0].dir(), servers[1].dir());
    assert!(servers.iter().all(|s| s.tls_port().is_none()));

    let crlf_msg: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: crlf\r\n\r\nbody \xc3\xa9 line\r\n.\r\nend\r\n";
    let lf_msg: &[u8] = b"From: a@example.org\nSubject: lf\n\nline1\nbare\rcr\nline3\n";

    let mut c0 = TestImap::connect(servers[0].port(), "alice", "secret-a");
    let mut c1 = TestImap::connect(servers[1].port(), "alice", "secret-a");

    let uid1 = c0
        .append(
            "INBOX",
            &["\\Seen", "\\Flagged", "$Forwarded", "custom_kw"],
            Some("17-Jul-1996 02:44:25 -0700"),
            crlf_msg,
        )
        .unwrap();
    let uid2 = c0.append("INBOX", &[], None, lf_msg).unwrap();
    assert_eq!((uid1, uid2), (1, 2));

    let msgs = c0.fetch_all("INBOX");
    assert_eq!(msgs.len(), 2);
    let m = &msgs[0];
    assert_eq!(m.uid, uid1);
    assert_eq!(m.body, crlf_msg, "CRLF message must come back byte-exact");
    assert_eq!(m.size as usize, crlf_msg.len());
    assert_eq!(
        m.flags,
        vec!["$Forwarded", "\\Flagged", "\\Seen", "custom_kw"],
        "flags sorted, \\Recent dropped"
    );
    // "rt0" is neither old nor new: Asia/Kolkata.
    assert_eq!(m.internaldate, "17-Jul-1996 15:14:25 +0530");

    // Bare LF is converted to CRLF on output (the file on disk keeps LF);
    // a bare CR is left alone.
    let m = &msgs[1];
    let expected = String::from_utf8(lf_msg.to_vec())
        .unwrap()
        .replace('\n', "\r\n");
    assert_eq!(m.body, expected.as_bytes());
    assert_eq!(m.size as usize, expected.len());
    assert!(m.flags.is_empty());

    let (messages, uidnext, uidvalidity) = c0.status("INBOX");
    assert_eq!((messages, uidnext), (2, 3));
    assert!(uidvalidity > 0);

    // The other instance is untouched.
    assert_eq!(c1.status("INBOX").0, 0);
    assert!(c1.fetch_all("INBOX").is_empty());
    c0.logout();
    c1.logout();
}

/// Each instance spells INTERNALDATEs in its own zone: by default "old" is Europe/Berlin
/// (`+0100`/`+0200`), "new" America/New_York (`-0500`/`-0400`), any other name Asia/Kolkata,
/// and `DovecotOpts::tz` overrides. A message appended without a date gets the current
/// instant in the server's zone; one appended with an explicit zone comes back as the same
/// instant spelled in the server's zone (summer and winter time).
#[test]
fn time_zones_by_instance_name() {
    for (name, zone) in [
        ("old", "Europe/Berlin"),
        ("old-tls", "Europe/Berlin"),
        ("corpus-old", "Europe/Berlin"),
        ("new", "America/New_York"),
        ("new1", "America/New_York"),
        ("cfg-new", "America/New_York"),
        ("rt0", "Asia/Kolkata"),
        ("caps-default", "Asia/Kolkata"),
    ] {
        assert_eq!(default_tz(name), zone, "{name}");
    }
    let old = Dovecot::start("old", &[("u", "p")], opts());
    let new = Dovecot::start("new", &[("u", "p")], opts());
    let utc = Dovecot::start(
        "utc",
        &[("u", "p")],
        DovecotOpts {
            tz: Some("UTC".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        (old.tz(), new.tz(), utc.tz()),
        (
            "Europe/Berlin".into(),
            "America/New_York".into(),
            "UTC".into()
        )
    );
    let summer = "17-Jul-1996 02:44:25 -0700";
    let winter = "01-Jan-2024 10:00:00 +0000";
    let cases: [(&Dovecot, [&str; 2], &str, &str); 3] = [
        (
            &old,
            ["+0100", "+0200"],
            "17-Jul-1996 11:44:25 +0200",
            "01-Jan-2024 11:00:00 +0100",
        ),
        (
            &new,
            ["-0500", "-0400"],
            "17-Jul-1996 05:44:25 -0400",
            "01-Jan-2024 05:00:00 -0500",
        ),
        (
            &utc,
            ["+0000", "+0000"],
            "17-Jul-1996 09:44:25 +0000",
            "01-Jan-2024 10:00:00 +0000",
        ),
    ];
    for (d, now_zones, want_summer, want_winter) in cases {
        let mut c = TestImap::connect(d.port(), "u", "p");
        let before = unix_now();
        c.append("INBOX", &[], None, b"Subject: now\r\n\r\nx\r\n")
            .unwrap();
        let after = unix_now();
        c.append("INBOX", &[], Some(summer), b"Subject: summer\r\n\r\nx\r\n")
            .unwrap();
        c.append("INBOX", &[], Some(winter), b"Subject: winter\r\n\r\nx\r\n")
            .unwrap();
        let msgs = c.fetch_all("INBOX");
        let name = d.name();
        assert!(
            now_zones.contains(&msgs[0].zone()),
            "{name}: {:?} not in {now_zones:?}",
            msgs[0].internaldate
        );
        // Dovecot takes the instant of the APPEND (whole seconds).
        let t = msgs[0].instant();
        assert!(
            (before - 1..=after + 1).contains(&t),
            "{name}: {:?} is {t}, not between {before} and {after}",
            msgs[0].internaldate
        );
        assert_eq!(msgs[1].internaldate, want_summer, "{name}");
        assert_eq!(msgs[2].internaldate, want_winter, "{name}");
        assert_eq!(msgs[1].instant(), internaldate_secs(summer), "{name}");
        assert_eq!(msgs[2].instant(), internaldate_secs(winter), "{name}");
        c.logout();
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The test-side INTERNALDATE parser: zones, space-padded days, bad input.
#[test]
fn internaldate_parser() {
    assert_eq!(internaldate_secs("17-Jul-1996 02:44:25 -0700"), 837_596_665);
    assert_eq!(internaldate_secs("17-Jul-1996 15:14:25 +0530"), 837_596_665);
    assert_eq!(
        internaldate_secs(" 1-Jan-2024 10:00:00 +0000"),
        1_704_103_200
    );
    assert_eq!(
        internaldate_secs("01-jan-2024 05:00:00 -0500"),
        1_704_103_200
    );
    assert_eq!(internaldate_secs("01-Jan-1970 00:00:00 +0100"), -3600);
    for bad in [
        "",
        "17-Jul-1996 02:44:25",
        "17-Jux-1996 02:44:25 +0000",
        "17-Jul-1996 02:44 +0000",
        "32-Jul-1996 02:44:25 +0000",
        "17-Jul-1996 02:44:25 0700",
    ] {
        assert_eq!(parse_internaldate(bad), None, "{bad:?}");
    }
}

#[test]
fn folders_separator_subscriptions() {
    let d = Dovecot::start("folders", &[("bob", "pw")], opts());
    let mut c = TestImap::connect(d.port(), "bob", "pw");
    assert_eq!(c.delimiter(), Some('.'));
    let err = c.try_create("A/B").unwrap_err();
    assert!(err.starts_with("NO"), "{err}");

    c.create("A.B");
    c.create("Sent Items");
    c.create("&AMk-t&AOk-"); // "Été" in modified UTF-7
    c.create("quo\"te");
    let list = c.list();
    let names: Vec<&str> = list.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["&AMk-t&AOk-", "A", "A.B", "INBOX", "Sent Items", "quo\"te"]
    );
    assert!(list.iter().all(|(_, d, _)| *d == Some('.')));
    let a = &list[1];
    assert!(a.0.iter().any(|x| x == "\\Noselect"), "{a:?}");

    c.subscribe("A.B");
    c.subscribe("Sent Items");
    assert_eq!(c.lsub(), vec!["A.B", "Sent Items"]);

    c.append(
        "A.B",
        &["\\Answered"],
        None,
        b"Subject: nested\r\n\r\nx\r\n",
    )
    .unwrap();
    assert_eq!(c.fetch_all("A.B")[0].flags, vec!["\\Answered"]);
    c.delete_mailbox("Sent Items");
    assert!(!c.list().iter().any(|(_, _, n)| n == "Sent Items"));
    assert!(d.maildir("bob").join(".A.B").is_dir());
}

#[test]
fn store_expunge_and_empty_fetch() {
    let d = Dovecot::start("store", &[("u", "p")], opts());
    let mut c = TestImap::connect(d.port(), "u", "p");
    assert!(c.fetch_all("INBOX").is_empty());
    let a = c
        .append("INBOX", &[], None, b"Subject: 1\r\n\r\n1\r\n")
        .unwrap();
    let b = c
        .append("INBOX", &[], None, b"Subject: 2\r\n\r\n2\r\n")
        .unwrap();
    c.store_flags("INBOX", a, "+FLAGS", &["\\Seen", "kw1"]);
    c.store_flags("INBOX", a, "-FLAGS", &["kw1"]);
    c.expunge_uid("INBOX", b);
    let msgs = c.fetch_all("INBOX");
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].uid, msgs[0].flags.clone()),
        (a, vec!["\\Seen".into()])
    );
    // A raw fetch of arbitrary items.
    let items = c.uid_fetch(
        "INBOX",
        &a.to_string(),
        "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    );
    assert_eq!(
        items[0]["BODY[HEADER.FIELDS (SUBJECT)]"],
        Tok::Str(b"Subject: 1\r\n\r\n".to_vec())
    );
}

#[test]
fn nul_bytes_literal_and_literal8() {
    let d = Dovecot::start("nul", &[("u", "p")], opts());
    let mut c = TestImap::connect(d.port(), "u", "p");
    let msg: &[u8] = b"Subject: nul\r\n\r\nbefore\0after\r\n";

    // Normal literal: accepted.
    let u1 = c
        .append("INBOX", &[], None, msg)
        .expect("NUL in {n} literal");
    // literal8: accepted.
    let u2 = c
        .append_binary("INBOX", &[], None, msg)
        .expect("NUL in ~{n}");

    let msgs = c.fetch_all("INBOX");
    let mangled: Vec<u8> = msg.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    for m in &msgs {
        assert_eq!(m.body, mangled, "BODY[] returns NUL as 0x80");
        assert_eq!(m.size as usize, msg.len());
    }
    assert_eq!(c.fetch_binary("INBOX", u1), msg, "BINARY[] returns the NUL");
    assert_eq!(c.fetch_binary("INBOX", u2), msg);

    // On disk the NUL is kept (and, as for every message, Dovecot's
    // Maildir stores CRLF line endings as bare LF).
    let new = d.maildir("u").join("new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().flatten().collect();
    assert_eq!(files.len(), 2);
    for f in files {
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            b"Subject: nul\n\nbefore\0after\n"
        );
    }
}

/// `imap_capability` overrides what is advertised; with no LITERAL+ the
/// client must use synchronizing literals (exercised by APPEND and by a
/// non-ASCII password sent as a literal).
#[test]
fn capability_override_and_synchronizing_literals() {
    let d = Dovecot::start(
        "caps",
        &[("u", "pässwörd: with spaces")],
        DovecotOpts {
            tls: false,
            extra_conf: "imap_capability = IMAP4rev1 IDLE".into(),
            ..Default::default()
        },
    );
    let pre = TestImap::connect_unauthenticated(d.port());
    assert!(!pre.greeting().contains("LITERAL+"), "{}", pre.greeting());
    let mut c = TestImap::connect(d.port(), "u", "pässwörd: with spaces");
    assert_eq!(c.capabilities(), vec!["IMAP4rev1", "IDLE"]);
    assert!(!c.has_capability("UIDPLUS"));
    let uid = c
        .append("INBOX", &["\\Draft"], None, b"Subject: sync\r\n\r\nx\r\n")
        .unwrap();
    assert_eq!(uid, 1);
    // Dovecot still sends APPENDUID although UIDPLUS is not advertised.
    let r = c.append_reply("INBOX", &[], None, b"Subject: 2\r\n\r\ny\r\n", false);
    assert!(r.text.starts_with("[APPENDUID "), "{r:?}");
    c.expunge_uid("INBOX", 2);
    let items = c.uid_fetch("INBOX", "1:*", "(UID FLAGS)");
    assert_eq!(items.len(), 1);
    c.expunge_uid("INBOX", uid); // falls back to EXPUNGE (no UIDPLUS advertised)
    assert_eq!(c.status("INBOX").0, 0);

    // A rejected APPEND (synchronizing literal refused before "+").
    let err = c
        .append("NoSuchBox", &[], None, b"x\r\n\r\ny\r\n")
        .unwrap_err();
    assert!(err.starts_with("NO"), "{err}");

    // Default instance for comparison.
    let d2 = Dovecot::start("caps-default", &[("u", "p")], opts());
    let mut c2 = TestImap::connect(d2.port(), "u", "p");
    let caps = c2.capabilities();
    for want in [
        "IMAP4rev1",
        "LITERAL+",
        "UIDPLUS",
        "CONDSTORE",
        "BINARY",
        "MOVE",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} missing in {caps:?}");
    }
    eprintln!("default capabilities: {}", caps.join(" "));
}

#[test]
fn add_user_and_wrong_password() {
    let d = Dovecot::start("users", &[("first", "one")], opts());
    assert!(TestImap::try_connect(d.port(), "late", "two").is_err());
    d.add_user("late", "two");
    d.add_user("colon", "a:b c");
    TestImap::connect(d.port(), "late", "two").logout();
    TestImap::connect(d.port(), "colon", "a:b c").logout();
    let err = match TestImap::try_connect(d.port(), "first", "wrong") {
        Err(e) => e,
        Ok(_) => panic!("wrong password accepted"),
    };
    assert!(err.starts_with("NO"), "{err}");
    assert!(d.log().contains("Login: user=<late>"), "{}", d.log());
}

#[test]
fn tls_instance() {
    let d = Dovecot::start(
        "tls",
        &[("u", "p")],
        DovecotOpts {
            tls: true,
            extra_conf: String::new(),
            ..Default::default()
        },
    );
    let tls_port = d.tls_port().expect("tls port");
    assert_ne!(tls_port, d.port());
    let cert = d.cert_path().unwrap();
    assert!(cert.is_file());

    let mut pre = TestImap::connect_unauthenticated(d.port());
    assert!(pre.capabilities().iter().any(|c| c == "STARTTLS"));
    // Plaintext login is still allowed on the plain port.
    assert!(pre.login("u", "p").is_ok());

    // Implicit TLS, verified against the self-signed cert.
    let cert_s = cert.to_str().unwrap();
    let port_s = format!("127.0.0.1:{tls_port}");
    let out = openssl_client(&[
        "-connect",
        &port_s,
        "-CAfile",
        cert_s,
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    ]);
    assert!(out.contains("* OK"), "{out}");
    assert!(out.contains("* BYE"), "{out}");

    // STARTTLS on the plain port.
    let port_s = format!("127.0.0.1:{}", d.port());
    let out = openssl_client(&[
        "-connect",
        &port_s,
        "-starttls",
        "imap",
        "-CAfile",
        cert_s,
        "-verify_return_error",
        "-verify_ip",
        "127.0.0.1",
    ]);
    assert!(out.contains("* BYE"), "{out}");
}

/// Runs `openssl s_client -quiet <args>`, sends LOGOUT, returns stdout.
fn openssl_client(args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-quiet")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a LOGOUT\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl s_client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn proc_pgrp(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f[0] == "Z" {
        return None;
    }
    f.get(2)?.parse().ok()
}

#[test]
fn stop_restart_and_no_stray_processes() {
    let mut d = Dovecot::start("stop", &[("u", "p")], opts());
    let mut c = TestImap::connect(d.port(), "u", "p");
    c.append("INBOX", &[], None, b"Subject: keep\r\n\r\nx\r\n")
        .unwrap();
    let master = d.pid();
    let procs = d.processes();
    // master, log, config, anvil, auth, stats, imap (our session), ...
    assert!(procs.contains(&master), "{procs:?}");
    assert!(procs.len() >= 4, "{procs:?}");
    let comms: Vec<String> = procs
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .collect();
    assert!(
        comms.iter().any(|c| c.starts_with("dovecot-dv-stop/imap")),
        "{comms:?}"
    );

    // Restart keeps port and data; the old session is gone.
    let port = d.port();
    d.restart();
    assert_eq!(d.port(), port);
    assert_ne!(d.pid(), master);
    for p in &procs {
        assert_ne!(
            proc_pgrp(*p),
            Some(master),
            "old process {p} survived restart"
        );
    }
    let mut c = TestImap::connect(d.port(), "u", "p");
    assert_eq!(c.status("INBOX").0, 1);

    let master = d.pid();
    let procs = d.processes();
    let t = Instant::now();
    d.stop();
    eprintln!("stop() took {:?}", t.elapsed());
    d.stop(); // idempotent
    assert_eq!(d.pid(), 0);
    assert!(d.processes().is_empty());
    for p in procs {
        assert_ne!(proc_pgrp(p), Some(master), "process {p} survived stop()");
    }
    assert!(!std::path::Path::new(&format!("/proc/{master}")).exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn tokenizer_and_literal_framing() {
    let raw: &[u8] = b"1 FETCH (UID 7 FLAGS (\\Seen $Foo) INTERNALDATE \"17-Jul-1996 09:44:25 +0000\" BODY[] {5}\r\na)b\"c BINARY[] ~{2}\r\n\0x X NIL Q \"a\\\"b\\\\c\")";
    let t = tokenize(raw);
    assert_eq!(t[0], Tok::Atom("1".into()));
    let items = t[2].list().unwrap();
    assert_eq!(items[1], Tok::Atom("7".into()));
    assert_eq!(
        items[3],
        Tok::List(vec![Tok::Atom("\\Seen".into()), Tok::Atom("$Foo".into())])
    );
    assert_eq!(items[5], Tok::Str(b"17-Jul-1996 09:44:25 +0000".to_vec()));
    assert_eq!(items[6], Tok::Atom("BODY[]".into()));
    assert_eq!(items[7], Tok::Str(b"a)b\"c".to_vec()));
    assert_eq!(items[9], Tok::Str(b"\0x".to_vec()));
    assert_eq!(items[11], Tok::Nil);
    assert_eq!(items[13], Tok::Str(b"a\"b\\c".to_vec()));
    let t = tokenize(b"LIST (\\Noselect) NIL \"a b\"");
    assert_eq!(t[2], Tok::Nil);
    let t = tokenize(b"1 FETCH (BODY[HEADER.FIELDS (FROM TO)]<0> {2}\r\nab)");
    let items = t[2].list().unwrap();
    assert_eq!(
        items[0],
        Tok::Atom("BODY[HEADER.FIELDS (FROM TO)]<0>".into())
    );
    assert_eq!(items[1], Tok::Str(b"ab".to_vec()));

    assert_eq!(literal_at_end(b"* 1 FETCH (BODY[] {12}"), Some(12));
    assert_eq!(literal_at_end(b"* 1 FETCH (BINARY[] ~{3}"), Some(3));
    assert_eq!(literal_at_end(b"* OK {x}"), None);
    assert_eq!(literal_at_end(b"* OK done"), None);
}

#[test]
fn corpus_files_recursive_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(real.join("sub dir/[Gmail]")).unwrap();
    std::fs::write(real.join("b msg.eml"), "x").unwrap();
    std::fs::write(real.join("a.eml"), "x").unwrap();
    std::fs::write(real.join("sub dir/[Gmail]/c [1].eml"), "x").unwrap();
    let files = corpus_files(tmp.path());
    let rel: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&real).unwrap().display().to_string())
        .collect();
    assert_eq!(rel, vec!["a.eml", "b msg.eml", "sub dir/[Gmail]/c [1].eml"]);
    if let Some(dir) = corpus_dir() {
        eprintln!("corpus: {} files", corpus_files(&dir).len());
    }
}

#[test]
fn write_config_format_and_binary() {
    let old = Dovecot::start("cfg-old", &[], opts());
    let new = Dovecot::start("cfg-new", &[], opts());
    let tmp = tempfile::tempdir().unwrap();
    let path = write_config(
        tmp.path(),
        &old,
        &new,
        &[
            ("alice", "alice", "ALICE_OLD", "ALICE_NEW"),
            ("bob", "robert@x", "B1", "B2"),
        ],
    );
    assert_eq!(path, tmp.path().join("imapshift.toml"));
    let expected = format!(
        "state_dir = \"state\"\n[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:ALICE_OLD\"\nnew_password = \"env:ALICE_NEW\"\n\
         [[users]]\nold = \"bob\"\nnew = \"robert@x\"\nold_password = \"env:B1\"\nnew_password = \"env:B2\"\n",
        old.port(),
        new.port()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);

    // The binary target exists and can be run (its behaviour is tested elsewhere).
    assert!(imapshift_bin().is_file());
    let out = run_imapshift_in(tmp.path(), &["--help"], &[("ALICE_OLD", "x")]);
    assert!(out.status.code().is_some());
}

/// `Pause` and the `pause` failpoint action: the binary stops at the exact pass (the first
/// APPEND batch of two), says which point it reached, waits while the test looks (nothing
/// more is appended however long it waits), and finishes normally once released.
#[test]
fn pause_failpoint_holds_the_run() {
    let old = Dovecot::start("pause-old", &[("u", "p")], opts());
    let new = Dovecot::start("pause-new", &[("u", "p")], opts());
    let mut c = TestImap::connect(old.port(), "u", "p");
    for i in 0..6 {
        c.append(
            "INBOX",
            &[],
            None,
            format!("Subject: p{i}\r\n\r\nx\r\n").as_bytes(),
        )
        .unwrap();
    }
    c.logout();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &old, &new, &[("u", "u", "PW", "PW")]);
    append_config(&cfg, "[sync]\nbatch_messages = 2\n");
    let pause = Pause::new("after-append", 1);
    assert!(!pause.is_reached());
    let pause_env = pause.env();
    let mut envs = vec![("PW", "p")];
    envs.extend(pause_env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = spawn_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &envs,
    );
    assert_eq!(pause.wait_reached(Duration::from_secs(60)), "after-append");
    assert!(pause.is_reached());
    let mut n = TestImap::connect(new.port(), "u", "p");
    assert_eq!(n.status("INBOX").0, 2, "held after the first batch");
    // Still held: the process is alive and has appended nothing more.
    assert!(child.try_wait().unwrap().is_none());
    assert_eq!(n.status("INBOX").0, 2);
    n.logout();
    pause.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("failpoint after-append reached: paused"),
        "{stderr}"
    );
    let j = sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 6, "{j}");
    assert_eq!(j["users"][0]["retries"], 0, "{j}");
}
