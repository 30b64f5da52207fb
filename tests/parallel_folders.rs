//! A large account's folders are synced over several connection pairs at once
//! (`[sync] connections_per_user`), only as far as the per-server cap (`max_connections`)
//! allows, and the result is the same exact copy, also when an extra connection breaks.

mod common;

use common::{diff_folder, run_imapshift, Dovecot, DovecotOpts, TestImap};

const FOLDERS: [&str; 4] = ["INBOX", "Archive", "Sent", "Lists"];
const PER_FOLDER: usize = 150;

fn seed(old: &Dovecot) {
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    for f in &FOLDERS[1..] {
        c.create(f);
    }
    for f in FOLDERS {
        for i in 0..PER_FOLDER {
            let m = format!(
                "Subject: {f} {i}\r\nMessage-ID: <{f}.{i}@example.com>\r\n\r\n{}\r\n",
                "p".repeat(200 + 37 * i)
            );
            let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
            c.append(f, flags, None, m.as_bytes()).unwrap();
        }
    }
    c.logout();
}

fn logins(d: &Dovecot) -> usize {
    d.log().matches("Login: user=<alice>").count()
}

fn sync(old: &Dovecot, new: &Dovecot, dir: &std::path::Path, extra: &str) -> serde_json::Value {
    let cfg = dir.join("imapshift.toml");
    let tables = "[sync]\nconnections_per_user = 3\nbatch_messages = 40\n";
    let text = common::plain_config(old.port(), new.port(), extra, extra, tables, &["alice"]);
    std::fs::write(&cfg, text).unwrap();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", "pw")],
    );
    let j = common::sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{j}");
    j
}

fn assert_same(old: &Dovecot, new: &Dovecot) {
    let mut o = TestImap::connect(old.port(), "alice", "pw");
    let mut n = TestImap::connect(new.port(), "alice", "pw");
    for f in FOLDERS {
        let (a, b) = (o.fetch_all(f), n.fetch_all(f));
        assert_eq!(a.len(), PER_FOLDER, "{f}");
        if let Err(e) = diff_folder(f, &a, &b) {
            panic!("{e}");
        }
    }
}

#[test]
fn a_large_account_uses_several_connections_and_copies_exactly() {
    let old = Dovecot::start("old", &[("alice", "pw")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "pw")], DovecotOpts::default());
    seed(&old);
    let before = (logins(&old), logins(&new));
    let dir = tempfile::tempdir().unwrap();
    let j = sync(&old, &new, dir.path(), "");
    assert_eq!(j["copied"], (FOLDERS.len() * PER_FOLDER) as u64, "{j}");
    assert_eq!(j["users"][0]["connections"], 3, "{j}");
    // The server saw them: three logins on each side.
    assert_eq!(logins(&old) - before.0, 3, "{}", old.log_tail(20));
    assert_eq!(logins(&new) - before.1, 3, "{}", new.log_tail(20));
    let order = |j: &serde_json::Value| -> Vec<String> {
        j["users"][0]["folders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["old"].as_str().unwrap().to_string())
            .collect()
    };
    let parallel_order = order(&j);
    assert_eq!(parallel_order.len(), 4, "{j}");
    assert_same(&old, &new);
    // A re-run with little to do stays on one pair and copies nothing.
    let j = sync(&old, &new, dir.path(), "");
    assert_eq!(
        (j["copied"].as_u64(), j["users"][0]["connections"].as_u64()),
        (Some(0), Some(1)),
        "{j}"
    );
    // Folders are reported in plan order, whichever worker took them: as the one-pair run does.
    assert_eq!(parallel_order, order(&j));
}

#[test]
fn extra_connections_only_when_the_cap_allows() {
    // Each server allows 2 IMAP processes and the run is capped to 2 connections per server:
    // the account gets its pair plus one more, never the 3 it asks for.
    let limit = "service imap {\n  process_limit = 2\n}\n";
    let opts = || DovecotOpts {
        tls: false,
        extra_conf: limit.into(),
        ..Default::default()
    };
    let old = Dovecot::start("old", &[("alice", "pw")], opts());
    let new = Dovecot::start("new", &[("alice", "pw")], opts());
    seed(&old);
    let dir = tempfile::tempdir().unwrap();
    let j = sync(&old, &new, dir.path(), "max_connections = 2\n");
    assert_eq!(j["users"][0]["connections"], 2, "{j}");
    assert_eq!(j["users"][0]["retries"], 0, "{j}");
    for d in [&old, &new] {
        assert!(
            !d.log().contains("process_limit"),
            "cap exceeded on {}:\n{}",
            d.name(),
            d.log_tail(20)
        );
    }
    assert_same(&old, &new);
    // Capped to 1: no extra connection at all, the same result.
    let new1 = Dovecot::start("new1", &[("alice", "pw")], opts());
    let dir1 = tempfile::tempdir().unwrap();
    let j = sync(&old, &new1, dir1.path(), "max_connections = 1\n");
    assert_eq!(j["users"][0]["connections"], 1, "{j}");
    assert_same(&old, &new1);
}

/// Forwards connections to `target`; the `nth` connection (0-based) is cut after `after`
/// bytes from the server.
fn cutting_proxy(target: u16, nth: usize, after: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, c) in l.incoming().enumerate() {
            let Ok(client) = c else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut ci, mut so) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut b = [0u8; 16384];
                while let Ok(n) = ci.read(&mut b) {
                    if n == 0 || so.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
                let _ = so.shutdown(Shutdown::Both);
            });
            let (mut si, mut co) = (server, client);
            let limit = if i == nth { after } else { usize::MAX };
            std::thread::spawn(move || {
                let mut b = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n) = si.read(&mut b) {
                    let n = n.min(limit - sent);
                    if n == 0 || co.write_all(&b[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = co.shutdown(Shutdown::Both);
                let _ = si.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_broken_extra_connection_gives_its_folder_back() {
    let old = Dovecot::start("old", &[("alice", "pw")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "pw")], DovecotOpts::default());
    seed(&old);
    // Connection 0 is the main pair's old side; 1 is the first extra pair's: cut mid-FETCH.
    let proxy = cutting_proxy(old.port(), 1, 60_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let tables = "[sync]\nconnections_per_user = 3\nbatch_messages = 40\n";
    let text = common::plain_config(proxy, new.port(), "", "", tables, &["alice"]);
    std::fs::write(&cfg, text).unwrap();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", "pw")],
    );
    let j = common::sync_report(&out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{j}\n{err}");
    assert!(
        err.contains("an extra connection failed"),
        "the cut happened: {err}"
    );
    assert_eq!(
        j["users"][0]["retries"], 0,
        "no reconnect of the whole user: {j}"
    );
    assert_eq!(j["copied"], (FOLDERS.len() * PER_FOLDER) as u64, "{j}");
    assert_same(&old, &new);
}
