//! Self-test of the Courier-IMAP harness (tests/common/courier.rs), against real private
//! Courier-IMAP 5.0 instances (Debian bookworm's packages, unpacked by
//! `scripts/vendor/courier.sh install`). If these fail, no Courier migration test means
//! anything. The Courier facts measured here are in docs/testing.md ("Courier").

mod common;

use common::courier::group_members;
use common::{internaldate_secs, Courier, CourierOpts, TestImap, Tok};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Debian bookworm's Courier-IMAP 5.0.13 with its stock /etc/courier/imapd, after LOGIN
/// (the greeting announces the same list).
const CAPABILITIES: &str = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT \
    THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION ENABLE UTF8=ACCEPT";

const MSG: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n\
    Subject: Courier round trip\r\nMessage-ID: <courier-1@example.org>\r\n\r\n\
    First line.\r\nSecond line.\r\n";

/// 17-Jul-1996 09:44:25 +0000 as Unix seconds.
const DATE_SECS: i64 = 837_596_665;

fn opts() -> CourierOpts {
    CourierOpts::default()
}

/// Courier speaks IMAP from the greeting, checks passwords, has the `INBOX.` namespace with
/// separator `.`, takes a keyword and an INTERNALDATE, shows a just-appended message only
/// after NOOP, and returns it byte for byte in the instance's zone.
#[test]
fn courier_namespace_append_and_fetch_byte_for_byte() {
    let c = Courier::start("courier-old", &[("alice", "s3cret pw")], opts());
    assert_eq!(c.tz(), "Europe/Berlin");

    let mut t = TestImap::connect_unauthenticated(c.port());
    assert!(
        t.greeting().contains("Courier-IMAP ready"),
        "greeting: {}",
        t.greeting()
    );
    let greeted = t.greeting().to_string();
    assert!(
        greeted.starts_with(&format!("* OK [CAPABILITY {CAPABILITIES}] ")),
        "greeting: {greeted}"
    );
    let refused = t.login("alice", "wrong").unwrap_err();
    assert!(refused.starts_with("NO"), "wrong password: {refused}");
    t.login("alice", "s3cret pw")
        .expect("LOGIN with the right password");
    assert_eq!(t.capabilities().join(" "), CAPABILITIES);

    let ns = t.raw("NAMESPACE");
    assert!(ns.is_ok(), "NAMESPACE: {ns:?}");
    let line = String::from_utf8_lossy(&ns.untagged[0]).into_owned();
    assert_eq!(
        line,
        r##"NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))"##
    );
    assert_eq!(t.delimiter(), Some('.'));

    t.create("INBOX.Sent");
    t.create("INBOX.Archive.2019");
    let refused = t.try_create("Sent").unwrap_err();
    assert!(
        refused.contains("Invalid mailbox name"),
        "CREATE Sent: {refused}"
    );
    let listed = t.list();
    let archive = listed
        .iter()
        .find(|l| l.2 == "INBOX.Archive")
        .expect("INBOX.Archive");
    assert!(archive.0.iter().any(|a| a == "\\Noselect"), "{archive:?}");
    let names: Vec<(Option<char>, String)> = t.list().into_iter().map(|(_, d, n)| (d, n)).collect();
    let want = ["INBOX", "INBOX.Archive", "INBOX.Archive.2019", "INBOX.Sent"];
    assert_eq!(
        names,
        want.map(|n| (Some('.'), n.to_string())).to_vec(),
        "LIST"
    );

    let sel = t.select("INBOX.Sent");
    let permanent = sel
        .untagged
        .iter()
        .map(|u| String::from_utf8_lossy(u).into_owned())
        .find(|u| u.contains("PERMANENTFLAGS"))
        .expect("SELECT announces PERMANENTFLAGS");
    assert!(permanent.contains("\\*"), "keywords allowed: {permanent}");

    let flags = ["\\Seen", "$Forwarded", "Project-X"];
    let uid = t
        .append(
            "INBOX.Sent",
            &flags,
            Some("17-Jul-1996 09:44:25 +0000"),
            MSG,
        )
        .expect("APPEND to INBOX.Sent");
    let items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])";
    let before = t.uid_fetch_selected(&uid.to_string(), items);
    assert!(before.is_empty(), "visible before NOOP: {before:?}");
    let noop = t.raw("NOOP");
    assert!(noop.is_ok(), "NOOP: {noop:?}");
    assert_eq!(noop.numbered("EXISTS").first().map(|e| e.0), Some(1));

    let got = t.uid_fetch_selected(&uid.to_string(), items);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.get("BODY[]").and_then(Tok::bytes), Some(MSG));
    assert_eq!(
        m.get("RFC822.SIZE").and_then(Tok::number),
        Some(MSG.len() as u32)
    );
    let mut got_flags: Vec<String> = m["FLAGS"]
        .list()
        .expect("FLAGS list")
        .iter()
        .filter_map(Tok::text)
        .collect();
    got_flags.sort();
    assert_eq!(got_flags, ["$Forwarded", "Project-X", "\\Seen"]);
    let date = m["INTERNALDATE"].text().unwrap();
    assert_eq!(internaldate_secs(&date), DATE_SECS);
    assert_eq!(
        date, "17-Jul-1996 11:44:25 +0200",
        "spelled in Europe/Berlin"
    );
    t.logout();

    // Maildir++ on disk: the folder is `.Sent`, the file holds the message with LF line ends.
    let cur: Vec<_> = std::fs::read_dir(c.maildir("alice").join(".Sent/cur"))
        .expect("Maildir/.Sent/cur")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cur.len(), 1, "{cur:?}");
    let lf = String::from_utf8_lossy(MSG).replace("\r\n", "\n");
    assert_eq!(std::fs::read_to_string(&cur[0]).unwrap(), lf);
    assert!(c.maildir("alice").join(".Archive.2019").is_dir());
}

/// What Courier refuses: ID, MOVE, LIST RETURN, an APPEND to the mailbox EXAMINEd, a literal
/// over 8192 bytes outside APPEND, LITERAL+; and a command pipelined behind LOGIN is lost
/// (imaplogin reads it, then execs imapd).
#[test]
fn courier_limits_and_refusals() {
    let c = Courier::start("courier-limits", &[("bob", "pw")], opts());

    let mut t = TestImap::connect(c.port(), "bob", "pw");
    for cmd in [
        "ID NIL",
        "MOVE 1 INBOX",
        "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
    ] {
        let r = t.raw(cmd);
        assert_eq!(r.status, "NO", "{cmd}: {r:?}");
    }

    t.create("INBOX.Other");
    t.examine("INBOX");
    let refused = t.append("INBOX", &[], None, MSG).unwrap_err();
    assert_eq!(refused, "NO Current box is selected READ-ONLY.");
    t.append("INBOX.Other", &[], None, MSG)
        .expect("APPEND to another mailbox than the EXAMINEd one");
    // A bare-LF message comes back with CRLF, a NUL byte as is; BINARY[] is refused.
    let bare_lf = b"Subject: lf\n\nbare lf\n";
    let nul = b"Subject: nul\r\n\r\nnul\0byte\r\n";
    let lf_uid = t.append("INBOX.Other", &[], None, bare_lf).unwrap();
    let nul_uid = t.append("INBOX.Other", &[], None, nul).unwrap();
    let msgs = t.fetch_all("INBOX.Other");
    let body = |uid: u32| msgs.iter().find(|m| m.uid == uid).unwrap().body.clone();
    assert_eq!(body(lf_uid), b"Subject: lf\r\n\r\nbare lf\r\n");
    assert_eq!(body(nul_uid), nul);
    let r = t.raw(&format!("UID FETCH {nul_uid} (BINARY.PEEK[])"));
    assert_eq!(r.status, "NO", "BINARY: {r:?}");
    t.logout();
    let refused = TestImap::try_connect(c.port(), "nobody-here", "pw").err();
    assert_eq!(refused.as_deref(), Some("NO Login failed."));

    let mut raw = Raw::login(c.port(), "bob", "pw");
    raw.send(b"a CREATE {8192}\r\n");
    assert_eq!(raw.line(), "+ OK");
    raw.send(&[b'x'; 8192]);
    raw.send(b"\r\n");
    assert_eq!(raw.line(), "a NO Invalid mailbox name.");
    raw.send(b"b CREATE {8193}\r\n");
    assert_eq!(raw.line(), "* NO [ALERT] IMAP command too long.");
    let mut raw = Raw::login(c.port(), "bob", "pw");
    raw.send(format!("a SEARCH SUBJECT \"{}\"\r\n", "y".repeat(9000)).as_bytes());
    assert_eq!(raw.line(), "a NO Error in IMAP command received by server.");

    let mut raw = Raw::login(c.port(), "bob", "pw");
    raw.send(b"a APPEND INBOX {3+}\r\nabc\r\n");
    assert_eq!(raw.line(), "a NO Error in IMAP command received by server.");

    let mut raw = Raw::connect(c.port());
    raw.send(b"a LOGIN bob pw\r\nb NOOP\r\n");
    assert_eq!(raw.line(), "a OK LOGIN Ok.");
    raw.send(b"c NOOP\r\n");
    assert_eq!(raw.line(), "c OK NOOP completed", "b NOOP was answered");
}

/// Two instances at once (started from two threads): own ports, zones, users and mail; the
/// host's /etc/courier is untouched; Drop leaves no process, even with clients logged in.
#[test]
fn parallel_instances_and_no_process_left() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Courier::start("par-old", &[("alice", "pw-a")], opts()));
        let b = s.spawn(|| {
            let o = CourierOpts {
                tz: Some("UTC".into()),
                extra_env: vec![("IMAP_CAPABILITY".into(), "IMAP4rev1 NAMESPACE".into())],
            };
            Courier::start("par-new", &[("alice", "pw-b")], o)
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert!(TestImap::try_connect(b.port(), "alice", "pw-a").is_err());

    let mut ta = TestImap::connect(a.port(), "alice", "pw-a");
    let mut tb = TestImap::connect(b.port(), "alice", "pw-b");
    // imapd adds ACL (IMAP_ACL=1), ENABLE and UTF8=ACCEPT to IMAP_CAPABILITY itself.
    assert_eq!(
        tb.capabilities().join(" "),
        "IMAP4rev1 NAMESPACE ACL ACL2=UNION ENABLE UTF8=ACCEPT"
    );
    ta.append("INBOX", &[], Some("17-Jul-1996 09:44:25 +0000"), MSG)
        .expect("APPEND on a");
    let on_a = ta.fetch_all("INBOX");
    assert_eq!(on_a.len(), 1);
    assert_eq!(on_a[0].zone(), "+0200");
    assert!(tb.fetch_all("INBOX").is_empty(), "b sees a's mail");
    tb.select("INBOX"); // Courier refuses APPEND while a mailbox is EXAMINEd
    tb.append("INBOX", &[], Some("17-Jul-1996 09:44:25 +0000"), MSG)
        .expect("APPEND on b");
    assert_eq!(tb.fetch_all("INBOX")[0].zone(), "+0000");

    let host_rc = Path::new("/etc/courier/authdaemonrc");
    assert!(
        std::fs::read_to_string(host_rc).map_or(true, |s| !s.contains("tests/common/courier.rs")),
        "the harness wrote the host's {}",
        host_rc.display()
    );
    assert!(!Path::new("/run/courier/authdaemon/socket").exists());

    // couriertcpd, authdaemond (and its 2 workers), the logged-in imapd: per instance.
    let groups = [a.pid(), b.pid()];
    for (c, pgid) in [&a, &b].iter().zip(groups) {
        let live = group_members(pgid);
        assert!(live.len() >= 5, "{}: {live:?}", c.name());
    }
    drop(a);
    drop(b);
    for pgid in groups {
        assert_eq!(group_members(pgid), Vec::<u32>::new(), "survived Drop");
    }
    drop(ta);
    drop(tb);
}

/// A bare connection for what TestImap would not send (pipelining, oversized literals).
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to courier");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = r.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        r
    }

    fn login(port: u16, user: &str, pass: &str) -> Raw {
        let mut r = Raw::connect(port);
        r.send(format!("l LOGIN {user} {pass}\r\n").as_bytes());
        assert_eq!(r.line(), "l OK LOGIN Ok.");
        r
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to courier");
    }

    /// The next line without CRLF.
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read from courier");
        l.trim_end_matches(['\r', '\n']).to_string()
    }
}
