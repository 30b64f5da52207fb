//! Admin logins: the admin needs no user passwords. A Dovecot master user (`LOGIN
//! alice*admin`) on the old side and SASL PLAIN with an authorization identity (authzid = the
//! user, authcid = the admin) on the new side, against real Dovecot master-user setups.

mod common;

use common::{dovecot_opts, run_cmd, run_cmd_ok, Dovecot, TestImap};

fn master_conf(dir: &std::path::Path) -> String {
    common::dovecot_master_conf(dir, "admin-secret")
}

#[test]
fn master_user_and_authzid_logins_migrate_without_user_passwords() {
    let mdir = tempfile::tempdir().unwrap();
    let conf = master_conf(mdir.path());
    let users = [
        ("alice", "alice-pw-unknown-to-admin"),
        ("bob", "bob-pw-unknown"),
    ];
    let old = Dovecot::start("old-master", &users, dovecot_opts(&conf));
    let new = Dovecot::start("new-master", &users, dovecot_opts(&conf));
    for (u, pw) in users {
        let mut c = TestImap::connect(old.port(), u, pw);
        c.create("Work");
        for i in 0..5 {
            let m = format!("From: x@example.com\r\nSubject: {u} {i}\r\nMessage-ID: <{u}{i}@example.com>\r\n\r\nbody {i}\r\n");
            c.append(
                if i % 2 == 0 { "INBOX" } else { "Work" },
                &["\\Seen"],
                None,
                m.as_bytes(),
            )
            .unwrap();
        }
        c.logout();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        format!(
            "[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nauth = \"login\"\nmaster_user = \"admin\"\nmaster_password = \"env:ADMIN_PW\"\n\
             [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nauth = \"plain\"\nmaster_user = \"admin\"\nmaster_password = \"env:ADMIN_PW\"\n\
             [[users]]\nold = \"alice\"\nnew = \"alice\"\n[[users]]\nold = \"bob\"\nnew = \"bob\"\n",
            old.port(),
            new.port()
        ),
    )
    .unwrap();
    let out = run_cmd_ok("sync", &cfg, &["--json"], &[("ADMIN_PW", "admin-secret")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 10, "{j}");
    assert!(
        !stderr.contains("admin-secret"),
        "the admin password leaked"
    );
    // The messages landed in each user's own mailbox.
    for (u, pw) in users {
        let mut n = TestImap::connect(new.port(), u, pw);
        assert_eq!(n.fetch_all("INBOX").len(), 3, "{u}");
        assert_eq!(n.fetch_all("Work").len(), 2, "{u}");
        n.logout();
    }
    // A wrong admin password is a clear account error naming the master user.
    let out = run_cmd("sync", &cfg, &["--json"], &[("ADMIN_PW", "wrong")]);
    assert_eq!(out.status.code(), Some(3));
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    let err = j["users"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("login failed") && err.contains("via master user admin"),
        "{err}"
    );
}
