//! `--shard K/N` splits the users between machines: every user in exactly one shard, each shard
//! with its own state directory, all against real Dovecot servers.

mod common;

use common::{run_cmd, sync_json_ok, Dovecot, DovecotOpts, TestImap, PW_ENVS};
use std::collections::BTreeSet;

#[test]
fn shards_split_users_and_keep_separate_state() {
    let names: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    let users: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "pw")).collect();
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    for n in &names {
        let mut c = TestImap::connect(old.port(), n, "pw");
        let m = format!("Subject: for {n}\r\nMessage-ID: <{n}@example.com>\r\n\r\nhi\r\n");
        c.append("INBOX", &[], None, m.as_bytes()).unwrap();
        c.logout();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n[new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
        old.port(),
        new.port()
    );
    for n in &names {
        text.push_str(&format!("[[users]]\nold = \"{n}\"\nnew = \"{n}\"\nold_password = \"cmd:echo {n} >> asked.log; echo pw\"\nnew_password = \"env:PW\"\n"));
    }
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let j = sync_json_ok(&cfg, &["--shard", &shard], PW_ENVS);
        let mut mine = BTreeSet::new();
        for u in j["users"].as_array().unwrap() {
            let name = u["old_login"].as_str().unwrap().to_string();
            assert!(seen.insert(name.clone()), "{name} is in two shards");
            assert_eq!(u["copied"], 1);
            mine.insert(name);
        }
        // Only this shard's password commands ran: other shards' secrets are never read.
        let log = dir.path().join("asked.log");
        let asked: BTreeSet<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(asked, mine, "shard {k} resolved the passwords of {asked:?}");
        let _ = std::fs::remove_file(&log);
        assert!(
            dir.path().join(format!("state/shard-{k}-of-3")).is_dir(),
            "shard {k} has its own state"
        );
    }
    assert_eq!(seen.len(), 6, "every user in some shard: {seen:?}");
    for n in &names {
        let mut c = TestImap::connect(new.port(), n, "pw");
        assert_eq!(c.fetch_all("INBOX").len(), 1, "{n}");
        c.logout();
    }
    let out = run_cmd("sync", &cfg, &["--shard", "4/3"], PW_ENVS);
    assert_eq!(out.status.code(), Some(2), "a bad --shard is a usage error");

    // --user must name a user of the list (and of the shard), for every command that takes it.
    for cmd in ["sync", "verify", "preflight"] {
        let out = run_cmd(cmd, &cfg, &["--user", "nobody"], PW_ENVS);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("\"nobody\" is not in the users list"),
            "{cmd}: {err}"
        );
    }
    let other = names.iter().find(|n| {
        let out = run_cmd(
            "sync",
            &cfg,
            &["--shard", "1/3", "--user", n.as_str(), "--dry-run"],
            PW_ENVS,
        );
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("is not in this shard's users")
    });
    assert!(other.is_some(), "a user of another shard is named as such");
}
