//! `timeout_secs` is an inactivity timeout: a large message over a slow link that keeps moving
//! must not time out, even when moving it takes several times `timeout_secs`; a link that stops
//! moving still does (tests/fault_proxy.rs, the stall case).
//!
//! A throttling TCP proxy (std threads) sits between imapshift and the old Dovecot and passes
//! the server's bytes on at about 160 KB/s. A 700 KB message then needs over 4 s, twice the
//! configured 2 s timeout.

mod common;

use common::{run_imapshift, Dovecot, DovecotOpts, TestImap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Accepts connections on a free port and forwards them to `target`, the server-to-client
/// direction in `chunk`-byte pieces with `pause` between them.
fn slow_proxy(target: u16, chunk: usize, pause: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            thread::spawn(move || {
                let mut buf = vec![0u8; chunk];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    thread::sleep(pause);
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn a_slow_but_moving_link_does_not_time_out() {
    let old = Dovecot::start("old", &[("alice", "pw")], DovecotOpts::default());
    let new = Dovecot::start("new", &[("alice", "pw")], DovecotOpts::default());
    let mut body = String::from("Subject: big\r\nMessage-ID: <big@example.com>\r\n\r\n");
    while body.len() < 700_000 {
        body.push_str(&format!("{:0>76}\r\n", body.len()));
    }
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    c.append("INBOX", &["\\Seen"], None, body.as_bytes())
        .unwrap();
    c.logout();
    let proxy = slow_proxy(old.port(), 16 * 1024, Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let timeout = "timeout_secs = 2\n";
    let text = common::plain_config(proxy, new.port(), timeout, timeout, "", &["alice"]);
    std::fs::write(&cfg, text).unwrap();
    let started = Instant::now();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[("PW", "pw")],
    );
    let took = started.elapsed();
    let report = common::sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(
        report["users"][0]["retries"], 0,
        "the slow transfer must not be cut by the timeout: {report}"
    );
    assert!(
        took > Duration::from_secs(4),
        "the proxy did not slow the transfer down ({took:?}): the test proves nothing"
    );
    let mut n = TestImap::connect(new.port(), "alice", "pw");
    let got = n.fetch_all("INBOX");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body.as_bytes(), "byte for byte");
    n.logout();
}
