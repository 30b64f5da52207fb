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
    // The same old login twice, in another case: one account, refused naming both lines.
    let out = write(&[
        ("Alice@Example.com", "a1", false),
        ("alice@example.com", "a2", false),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("imapshift.toml:10")
            && err.contains("imapshift.toml:16")
            && err.contains("listed twice"),
        "{err}"
    );
    // Two old accounts onto one new login: refused unless both say merge = true.
    let out = write(&[
        ("alice@example.com", "team@example.net", true),
        ("bob@example.com", "Team@Example.net", false),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("imapshift.toml:10")
            && err.contains("imapshift.toml:16")
            && err.contains("merge = true"),
        "{err}"
    );
    // Both merge: the configuration is accepted (the run then fails to connect: exit 3).
    let out = write(&[
        ("alice@example.com", "team@example.net", true),
        ("bob@example.com", "Team@Example.net", true),
    ]);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
