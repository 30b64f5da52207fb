//! Issue 13, bad input: each is refused with a message naming the item (file and line where there
//! is one) and the fix, exit 2, and nothing written: no state directory appears, the real
//! servers (Dovecot, old and new in different zones) are not even contacted (the new one stays
//! empty). Inputs a run can only find by connecting (a wrong password, an unknown host, a refused
//! port) fail that user with exit 3 and leave no UID map, so the corrected run copies every
//! message exactly once.

mod common;

use common::*;
use std::path::Path;

const PW: &str = "pw";

fn sync(dir: &Path, text: &str, envs: &[(&str, &str)]) -> (i32, String) {
    let cfg = dir.join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], envs);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_refused_naming_it_and_writes_nothing() {
    let old = Dovecot::start("old", &[("alice", PW)], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", PW)], DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", PW);
    c.append(
        "INBOX",
        &[],
        None,
        b"Subject: x\r\nMessage-ID: <x@x>\r\n\r\nx\r\n",
    )
    .unwrap();
    c.logout();
    let good = plain_config(old.port(), new.port(), "", "", "", &["alice"]);
    let with_users_csv = |csv: &str| {
        let head = good.split("[[users]]").next().unwrap();
        (
            head.replacen(
                "state_dir = \"state\"\n",
                "state_dir = \"state\"\nusers_csv = \"users.csv\"\n",
                1,
            ),
            csv.to_string(),
        )
    };
    // (what, configuration text, users.csv, what stderr must name)
    let cases: Vec<(&str, String, Option<String>, Vec<&str>)> = vec![
        (
            "malformed TOML",
            good.replacen("[new]", "[new", 1),
            None,
            vec!["imapshift.toml:", "expected"],
        ),
        (
            "an unknown field",
            good.replacen(
                "security = \"plain\"\n",
                "security = \"plain\"\nsecurty = 1\n",
                1,
            ),
            None,
            vec!["imapshift.toml:", "securty"],
        ),
        (
            "a missing host",
            good.replacen("host = \"127.0.0.1\"\n", "", 1),
            None,
            vec!["imapshift.toml:", "[old].host is missing"],
        ),
        (
            "an unset env: reference",
            good.replacen("env:PW", "env:IMAPSHIFT_TEST_UNSET_VAR", 1),
            None,
            vec!["imapshift.toml:", "IMAPSHIFT_TEST_UNSET_VAR is not set"],
        ),
        (
            "a missing file: reference",
            good.replacen("env:PW", "file:no-such.pw", 1),
            None,
            vec!["imapshift.toml:", "no-such.pw"],
        ),
        (
            "a cmd: reference that fails",
            good.replacen("env:PW", "cmd:echo secret-out; exit 3", 1),
            None,
            vec!["imapshift.toml:", "the password command exited"],
        ),
        (
            "a literal password",
            good.replacen("\"env:PW\"", "\"hunter2\"", 1),
            None,
            vec!["imapshift.toml:", "is not a password reference"],
        ),
        {
            let (text, csv) = with_users_csv(
                "old,new,old_password,new_password\nalice,alice,env:PW,env:PW\nbob,bob,env:PW\n",
            );
            ("a CSV with a bad row", text, Some(csv), vec!["users.csv:3"])
        },
        (
            "an unknown quirk",
            format!("{good}[new.quirks]\nno-such-quirk = true\n"),
            None,
            vec![
                "imapshift.toml:",
                "[new.quirks].no-such-quirk",
                "unknown quirk",
            ],
        ),
        (
            "a port out of range",
            good.replacen(&format!("port = {}", old.port()), "port = 70000", 1),
            None,
            vec!["imapshift.toml:", "[old].port"],
        ),
    ];
    for (what, text, csv, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Some(csv) = csv {
            std::fs::write(dir.path().join("users.csv"), csv).unwrap();
        }
        let (code, err) = sync(dir.path(), &text, &[("PW", PW)]);
        assert_eq!(code, 2, "{what}: {err}");
        for n in named {
            assert!(err.contains(n), "{what}: {n:?} not in {err}");
        }
        assert!(
            !err.contains("secret-out"),
            "{what}: command output shown: {err}"
        );
        assert!(
            !dir.path().join("state").exists(),
            "{what}: a state directory was written"
        );
    }
    let mut n = TestImap::connect(new.port(), "alice", PW);
    assert_eq!(n.status("INBOX").0, 0, "the new server was not touched");
    n.logout();
}

#[test]
fn what_only_a_connection_finds_fails_that_user_and_maps_nothing() {
    let old = Dovecot::start("old", &[("alice", PW), ("bob", PW)], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", PW), ("bob", PW)], DovecotOpts::default());
    for u in ["alice", "bob"] {
        let mut c = TestImap::connect(old.port(), u, PW);
        for i in 0..3 {
            let m = format!("Subject: {u} {i}\r\nMessage-ID: <{u}{i}@x>\r\n\r\nbody\r\n");
            c.append("INBOX", &[], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap().port();
    drop(closed);
    let good = plain_config(old.port(), new.port(), "", "", "", &["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a wrong password for bob",
            good.replacen(
                "old = \"bob\"\nnew = \"bob\"\nold_password = \"env:PW\"",
                "old = \"bob\"\nnew = \"bob\"\nold_password = \"env:WRONG\"",
                1,
            ),
            "login failed",
        ),
        (
            "an unknown host",
            good.replacen("host = \"127.0.0.1\"", "host = \"no-such-host.invalid\"", 1),
            "cannot resolve the host name \"no-such-host.invalid\"",
        ),
        (
            "a refused port",
            good.replacen(
                &format!("port = {}", new.port()),
                &format!("port = {refused}"),
                1,
            ),
            "connection refused",
        ),
    ];
    for (what, text, named) in cases {
        let (code, err) = sync(dir.path(), &text, &[("PW", PW), ("WRONG", "nope")]);
        assert_eq!(code, 3, "{what}: {err}");
        assert!(err.contains(named), "{what}: {named:?} not in {err}");
        assert!(!err.contains("nope"), "{what}: a password shown");
    }
    // The corrected configuration: every message exactly once.
    let (code, err) = sync(dir.path(), &good, &[("PW", PW)]);
    assert_eq!(code, 0, "{err}");
    for u in ["alice", "bob"] {
        let mut n = TestImap::connect(new.port(), u, PW);
        let mut o2 = TestImap::connect(old.port(), u, PW);
        if let Err(e) = diff_folder("INBOX", &o2.fetch_all("INBOX"), &n.fetch_all("INBOX")) {
            panic!("{u}: {e}");
        }
    }
}
