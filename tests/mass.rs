//! Many users at once under a per-server connection cap, checked on the server side: each
//! Dovecot allows only as many IMAP processes as the cap (`service imap { process_limit }`) and
//! logs when a client exceeds it.

mod common;

use common::{dovecot_opts, plain_config, run_cmd, Dovecot, TestImap, PW_ENVS};

fn run(
    users: usize,
    cap: Option<usize>,
    jobs: usize,
) -> (Dovecot, Dovecot, serde_json::Value, Vec<String>) {
    let names: Vec<String> = (0..users).map(|i| format!("u{i:02}")).collect();
    let accounts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "pw")).collect();
    let limit = "service imap {\n  process_limit = 4\n}\n";
    let old = Dovecot::start("old-mass", &accounts, dovecot_opts(limit));
    let new = Dovecot::start("new-mass", &accounts, dovecot_opts(limit));
    for (i, n) in names.iter().enumerate() {
        let mut c = TestImap::connect(old.port(), n, "pw");
        for k in 0..(1 + i % 4) {
            let m = format!(
                "Subject: {n} {k}\r\nMessage-ID: <{n}.{k}@example.com>\r\n\r\n{}\r\n",
                "z".repeat(100 * k)
            );
            c.append("INBOX", &["\\Seen"], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }
    let dir = tempfile::tempdir().unwrap();
    let cap_line = cap
        .map(|c| format!("max_connections = {c}\n"))
        .unwrap_or_default();
    let logins: Vec<&str> = names.iter().map(String::as_str).collect();
    let sync = format!("[sync]\njobs = {jobs}\n");
    let text = plain_config(old.port(), new.port(), &cap_line, &cap_line, &sync, &logins);
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = run_cmd("sync", &cfg, &["--json"], PW_ENVS);
    let j: serde_json::Value = common::sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (old, new, j, names)
}

#[test]
fn fifty_users_with_eight_jobs_stay_under_the_connection_cap() {
    let (old, new, j, names) = run(50, Some(4), 8);
    assert_eq!(j["exit_code"], 0, "{j}");
    assert_eq!(j["users"].as_array().unwrap().len(), 50);
    let expected: usize = (0..50).map(|i| 1 + i % 4).sum();
    assert_eq!(j["copied"].as_u64().unwrap() as usize, expected, "{j}");
    for u in j["users"].as_array().unwrap() {
        assert_eq!(u["status"], "ok", "{u}");
        assert_eq!(u["retries"], 0, "no connection was refused: {u}");
    }
    for d in [&old, &new] {
        let log = d.log();
        assert!(
            !log.contains("process_limit"),
            "the cap was exceeded on {}:\n{}",
            d.name(),
            d.log_tail(20)
        );
    }
    for (i, n) in names.iter().enumerate() {
        let mut c = TestImap::connect(new.port(), n, "pw");
        assert_eq!(c.fetch_all("INBOX").len(), 1 + i % 4, "{n}");
        c.logout();
    }
}

/// The control: without a cap, 8 parallel users exceed the servers' limit of 4 and Dovecot logs
/// it, so the check above can fail.
#[test]
fn without_a_cap_the_server_sees_too_many_connections() {
    let (old, new, _j, _) = run(16, None, 8);
    let logs = format!("{}{}", old.log(), new.log());
    assert!(
        logs.contains("process_limit"),
        "expected Dovecot to log the limit being reached"
    );
}
