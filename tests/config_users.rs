//! Issue 11, item 9: users in the configuration. `status` contacts no server and so resolves no
//! password reference; logins are compared without case; two old accounts onto one new login
//! need `merge = true` on both. The real binary on real files (no server is needed: these are
//! refused, or answered, before any connection).

mod common;

use common::{plain_config, run_imapshift};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn status_resolves_no_password_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("ran");
    let cfg = dir.path().join("imapshift.toml");
    let text_cfg = plain_config(1, 1, "", "", "", &[]).replace(
        "security = \"plain\"\n[new]",
        &format!(
            "security = \"plain\"\nmaster_user = \"admin\"\nmaster_password = \"cmd:touch {0}; echo x\"\n[new]",
            mark.display()
        ),
    ) + &format!(
        "[[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"cmd:touch {}; echo x\"\nnew_password = \"env:IMAPSHIFT_SURELY_UNSET_STATUS\"\n",
        mark.display()
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run_imapshift(&["status", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("alice"), "{}", text(&out.stdout));
    assert!(!mark.exists(), "status ran a cmd: password reference");
    // The same references are resolved by a command that logs in (and fail as they should).
    let out = run_imapshift(&["sync", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("IMAPSHIFT_SURELY_UNSET_STATUS is not set"));
}

#[test]
fn logins_are_compared_without_case() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    // Each user: (old login, new login, merge).
    let write = |users: &[(&str, &str, bool)]| {
        let mut t = plain_config(1, 1, "", "", "", &[]);
        for (old, new, merge) in users {
            t.push_str(&format!(
                "[[users]]\nold = \"{old}\"\nnew = \"{new}\"\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\nmerge = {merge}\n"
            ));
        }
        std::fs::write(&cfg, t).unwrap();
        run_imapshift(
            &["sync", "--dry-run", "--config", cfg.to_str().unwrap()],
            &[("PW", "pw")],
        )
    };
    // These users are refused (exit 2), naming both of their lines and saying `why`.
    let refused = |users: &[(&str, &str, bool)], why: &str| {
        let out = write(users);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("imapshift.toml:10")
                && err.contains("imapshift.toml:16")
                && err.contains(why),
            "{err}"
        );
    };
    // The same old login twice, in another case: one account, refused naming both lines.
    refused(
        &[
            ("Alice@Example.com", "a1", false),
            ("alice@example.com", "a2", false),
        ],
        "listed twice",
    );
    // Two old accounts onto one new login: refused unless both say merge = true.
    refused(
        &[
            ("alice@example.com", "team@example.net", true),
            ("bob@example.com", "Team@Example.net", false),
        ],
        "merge = true",
    );
    // Both merge: the configuration is accepted (the run then fails to connect: exit 3).
    let out = write(&[
        ("alice@example.com", "team@example.net", true),
        ("bob@example.com", "Team@Example.net", true),
    ]);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `merge = true`, against real servers: two old accounts go into one new account; INBOX of
/// both meet in one INBOX, other folders sit side by side, and `verify` passes (each old account
/// against the shared new one, the other's mail only listed as on the new side). A message that
/// is in both old mailboxes with the same header block and INTERNALDATE is what this test pins
/// down too: how many copies the merged INBOX holds of it.
#[test]
fn merged_accounts_meet_in_one_new_account() {
    use common::{Dovecot, DovecotOpts, TestImap};
    let old = Dovecot::start(
        "old",
        &[("alice", "pw"), ("ali", "pw")],
        DovecotOpts::default(),
    );
    let new = Dovecot::start("new", &[("alice", "pw")], DovecotOpts::default());
    let m = |tag: &str, i: usize| {
        format!("Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@x>\r\n\r\nbody {tag} {i}\r\n")
            .into_bytes()
    };
    let shared = m("shared", 0);
    let date = "01-Jan-2024 10:00:00 +0000";
    let mut a = TestImap::connect(old.port(), "alice", "pw");
    a.append("INBOX", &[], None, &m("alice", 1)).unwrap();
    a.append("INBOX", &[], None, &m("alice", 2)).unwrap();
    a.append("INBOX", &[], Some(date), &shared).unwrap();
    a.create("Work");
    a.append("Work", &[], None, &m("work", 1)).unwrap();
    a.logout();
    let mut b = TestImap::connect(old.port(), "ali", "pw");
    b.append("INBOX", &[], None, &m("ali", 1)).unwrap();
    b.append("INBOX", &[], Some(date), &shared).unwrap();
    b.create("Hobby");
    b.append("Hobby", &[], None, &m("hobby", 1)).unwrap();
    b.logout();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let text_cfg = plain_config(old.port(), new.port(), "", "", "", &[])
        + "[[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\nmerge = true\n\
           [[users]]\nold = \"ali\"\nnew = \"alice\"\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\nmerge = true\n\
           [sync]\njobs = 1\n";
    std::fs::write(&cfg, text_cfg).unwrap();
    let c = cfg.to_str().unwrap();
    let out = run_imapshift(&["sync", "--config", c], &[("PW", "pw")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_imapshift(&["sync", "--config", c, "--json"], &[("PW", "pw")]);
    let j = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 0, "a second run copies nothing: {j}");
    let mut n = TestImap::connect(new.port(), "alice", "pw");
    let inbox = n.fetch_all("INBOX");
    let shared_copies = inbox.iter().filter(|x| x.body == shared).count();
    assert_eq!(
        inbox.len() - shared_copies,
        3,
        "alice 1, alice 2, ali 1 in the merged INBOX"
    );
    assert_eq!(
        shared_copies, 1,
        "the message in both old mailboxes is taken once"
    );
    assert_eq!(n.fetch_all("Work").len(), 1);
    assert_eq!(n.fetch_all("Hobby").len(), 1);
    n.logout();
    let out = run_imapshift(&["verify", "--config", c], &[("PW", "pw")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
