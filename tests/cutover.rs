//! `imapshift cutover` end to end: two Dovecots, two Knot nameservers. Mail keeps arriving on
//! the old server until the MX flips to the parking target (first on one nameserver, then on
//! the other); the cutover waits for both and one TTL, the final delta catches every message,
//! the verification passes, and mail that reaches the old server afterwards (stale DNS) is
//! carried by `--follow`, at once thanks to IDLE rather than at the next interval.

mod common;

use common::{diff_folder, imapshift_bin, zone_text, Dovecot, DovecotOpts, Knot, TestImap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARK: &str = "park.example.net.";

fn msg(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@example.com>\r\n\r\nbody {i} {}\r\n",
        "x".repeat(i * 13)
    )
    .into_bytes()
}

fn assert_same(old: &Dovecot, new: &Dovecot, user: &str, folders: &[&str]) {
    let mut o = TestImap::connect(old.port(), user, "pw");
    let mut n = TestImap::connect(new.port(), user, "pw");
    for f in folders {
        if let Err(e) = diff_folder(f, &o.fetch_all(f), &n.fetch_all(f)) {
            panic!("{user}: {e}");
        }
    }
}

#[test]
fn cutover_catches_everything_and_follows_stray_mail() {
    let users = [("alice", "pw"), ("bob", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    c.create("Archive");
    for i in 0..10 {
        c.append(
            if i % 2 == 0 { "INBOX" } else { "Archive" },
            &["\\Seen"],
            None,
            &msg("pre", i),
        )
        .unwrap();
    }
    c.logout();
    let mut c = TestImap::connect(old.port(), "bob", "pw");
    for i in 0..5 {
        c.append("INBOX", &[], None, &msg("bob", i)).unwrap();
    }
    c.logout();

    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2"]);
    let zone = zone_text("example.com", &[], &[(10, "old-mx.example.net.")], 2);
    let ns1 = Knot::start("ns1", "127.0.0.1", port, &[("example.com", zone.as_str())]);
    let ns2 = Knot::start("ns2", "127.0.0.2", port, &[("example.com", zone.as_str())]);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let mx = format!(
        "[mx]\ndomains = [\"example.com\"]\nnameservers = [\"{}\", \"{}\"]\n\
         parking_target = \"park.example.net\"\nnew_target = \"new-mx.example.net\"\nmax_ttl = 2\n\
         resolver = \"{}\"\n",
        ns1.addr(),
        ns2.addr(),
        ns1.addr()
    );
    let text = common::plain_config(old.port(), new.port(), "", "", &mx, &["alice", "bob"]);
    std::fs::write(&cfg, text).unwrap();

    // Days before: the pre-sync.
    let out = common::run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap()],
        &[("PW", "pw")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Mail keeps arriving on the old server until the MX flips.
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicUsize::new(0));
    let deliverer = {
        let (stop, delivered, port) = (stop.clone(), delivered.clone(), old.port());
        std::thread::spawn(move || {
            let mut c = TestImap::connect(port, "alice", "pw");
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                c.append("INBOX", &[], None, &msg("during", i)).unwrap();
                i += 1;
                delivered.store(i, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
            c.logout();
        })
    };

    let mut child = Command::new(imapshift_bin())
        .args([
            "cutover",
            "--config",
            cfg.to_str().unwrap(),
            "--dns-interval",
            "0.3s",
            "--follow",
            "12s",
            "--follow-interval",
            "60s",
            "--json",
        ])
        .env("PW", "pw")
        .env("IMAPSHIFT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
    }
    let wait_for = |what: &str, secs: u64| {
        let t = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains(what) => return,
                _ if t.elapsed() > Duration::from_secs(secs) => {
                    panic!("no {what:?} within {secs}s:\n{}", log.lock().unwrap())
                }
                _ => {}
            }
        }
    };
    wait_for("cutover: waiting until 2 nameserver(s) serve", 20);
    std::thread::sleep(Duration::from_millis(800));
    // Propagation lag: ns1 first, ns2 a moment later.
    ns1.set_mx("example.com", "@", 2, &[(10, PARK)]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(child.try_wait().unwrap().is_none());
    ns2.set_mx("example.com", "@", 2, &[(10, PARK)]);
    stop.store(true, Ordering::SeqCst);
    deliverer.join().unwrap();
    let during = delivered.load(Ordering::SeqCst);
    assert!(
        during >= 10,
        "mail kept arriving during the propagation: {during}"
    );

    wait_for("cutover: NEXT STEP", 60);
    // The admin flips the MX to the new server; a sender with stale DNS still reaches the old.
    ns1.set_mx("example.com", "@", 2, &[(10, "new-mx.example.net.")]);
    ns2.set_mx("example.com", "@", 2, &[(10, "new-mx.example.net.")]);
    let stray_at = Instant::now();
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    for i in 0..3 {
        c.append("INBOX", &[], None, &msg("stray", i)).unwrap();
    }
    c.logout();
    // IDLE wakes the follow loop: the stray mail arrives long before the 60 s interval.
    let mut n = TestImap::connect(new.port(), "alice", "pw");
    let want = 5 + during + 3;
    loop {
        let got = n.fetch_all("INBOX").len();
        if got == want {
            break;
        }
        assert!(
            stray_at.elapsed() < Duration::from_secs(8),
            "stray mail not carried promptly ({got}/{want}):\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    n.logout();

    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}\n{}", log.lock().unwrap());
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "parking MX",
            "TTL wait",
            "re-check",
            "final sync",
            "verification",
            "follow"
        ],
        "{r:#}"
    );
    assert!(
        r["phases"][1]["detail"].as_str().unwrap().starts_with("2s"),
        "the TTL seen: {r:#}"
    );
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(
        r["final_sync"]["copied"].as_u64(),
        Some(during as u64),
        "the final delta: {r:#}"
    );
    assert_eq!(r["followed"], 3, "{r:#}");
    assert!(r["downtime_seconds"].as_u64().is_some(), "{r:#}");
    assert!(r["next_step"]
        .as_str()
        .unwrap()
        .contains("new-mx.example.net"));
    assert_same(&old, &new, "alice", &["INBOX", "Archive"]);
    assert_same(&old, &new, "bob", &["INBOX"]);
}

#[test]
fn cutover_gives_up_when_a_nameserver_never_changes() {
    let users = [("alice", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2"]);
    let zone = zone_text("example.com", &[], &[(10, "old-mx.example.net.")], 2);
    let ns1 = Knot::start("ns1", "127.0.0.1", port, &[("example.com", zone.as_str())]);
    let ns2 = Knot::start("ns2", "127.0.0.2", port, &[("example.com", zone.as_str())]);
    ns1.set_mx("example.com", "@", 2, &[(10, PARK)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let mx = format!("[mx]\ndomains = [\"example.com\"]\nnameservers = [\"{}\", \"{}\"]\nparking_target = \"park.example.net\"\nresolver = \"{}\"\n", ns1.addr(), ns2.addr(), ns1.addr());
    std::fs::write(
        &cfg,
        common::plain_config(old.port(), new.port(), "", "", &mx, &["alice"]),
    )
    .unwrap();
    let out = common::run_imapshift(
        &[
            "cutover",
            "--config",
            cfg.to_str().unwrap(),
            "--dns-interval",
            "0.3s",
            "--max-wait",
            "2s",
            "--json",
        ],
        &[("PW", "pw")],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["phases"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("1 of 2"),
        "{r:#}"
    );
    assert!(
        r["final_sync"].is_null(),
        "no sync before the MX is parked: {r:#}"
    );
}

#[test]
fn ctrl_c_during_follow_stops_at_once() {
    let users = [("alice", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    let port = Knot::free_port(&["127.0.0.1"]);
    let zone = zone_text("example.com", &[], &[(10, PARK)], 1);
    let ns = Knot::start("ns1", "127.0.0.1", port, &[("example.com", zone.as_str())]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    let mx = format!("[mx]\ndomains = [\"example.com\"]\nnameservers = [\"{}\"]\nparking_target = \"park.example.net\"\nmax_ttl = 1\nresolver = \"{}\"\n", ns.addr(), ns.addr());
    std::fs::write(
        &cfg,
        common::plain_config(old.port(), new.port(), "", "", &mx, &["alice"]),
    )
    .unwrap();
    let mut child = Command::new(imapshift_bin())
        .args([
            "cutover",
            "--config",
            cfg.to_str().unwrap(),
            "--dns-interval",
            "0.2s",
        ])
        .args(["--follow", "10m", "--follow-interval", "10m"])
        .env("PW", "pw")
        .env("IMAPSHIFT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines().map_while(Result::ok);
    let t = Instant::now();
    assert!(
        lines.any(|l| l.contains("cutover: NEXT STEP")),
        "no NEXT STEP (already parked, TTL 1 s)"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "Ctrl-C during --follow waited for the 10 min interval ({:?})",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(130), "interrupted follow: exit 130");
}
