//! `imapshift cutover` end to end: two Dovecots, two Knot nameservers. Mail keeps arriving on
//! the old server until the MX flips to the parking target (first on one nameserver, then on
//! the other); the cutover waits for both and one TTL, the final delta catches every message,
//! the verification passes, and mail that reaches the old server afterwards (stale DNS) is
//! carried by `--follow`, at once thanks to IDLE rather than at the next interval.
//!
//! No step waits for a moment: each acts on what the cutover's log shows (a poll at 1 of 2, the
//! NEXT STEP) or what the old Dovecot shows (alice's IDLE running, `verbose_proctitle`);
//! durations are failure guards only.

mod common;

use common::{
    assert_exit, diff_folder, run_cmd, run_cmd_ok, spawn_cmd, zone_text, Dovecot, DovecotOpts,
    Knot, StderrLog, TestImap, PW_ENVS,
};
use std::path::Path;
use std::process::{Child, Command};
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

/// The old server: its process titles say which command a session runs (IDLE, for the follow:
/// see [`wait_idle`]).
fn old_dovecot(users: &[(&str, &str)]) -> Dovecot {
    let opts = DovecotOpts {
        extra_conf: "verbose_proctitle = yes\n".into(),
        ..Default::default()
    };
    Dovecot::start("old", users, opts)
}

/// Waits (a failure guard only) until one of `server`'s processes runs IDLE for `user`: Dovecot's
/// `verbose_proctitle` shows `[user 127.0.0.1 IDLE]` in its command line.
fn wait_idle(server: &Dovecot, user: &str, guard: Duration) {
    let t = Instant::now();
    let idling = || {
        server.processes().iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains(&format!("[{user} ")) && c.contains(" IDLE]")
                })
                .unwrap_or(false)
        })
    };
    while !idling() {
        assert!(
            t.elapsed() < guard,
            "no IDLE of {user} on the old server within {guard:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `imapshift cutover` on `cfg` in the background, polling the DNS every `dns_interval`, then
/// following for `follow.0` with a pass every `follow.1`; its log at `info` (the steps it logs).
fn spawn_cutover(cfg: &Path, dns_interval: &str, follow: (&str, &str), extra: &[&str]) -> Child {
    let mut args = vec!["--dns-interval", dns_interval, "--follow", follow.0];
    args.extend(["--follow-interval", follow.1]);
    args.extend_from_slice(extra);
    spawn_cmd(
        "cutover",
        cfg,
        &args,
        &[("PW", "pw"), ("IMAPSHIFT_LOG", "info")],
    )
}

#[test]
fn cutover_catches_everything_and_follows_stray_mail() {
    let users = [("alice", "pw"), ("bob", "pw")];
    let old = old_dovecot(&users);
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
    run_cmd_ok("sync", &cfg, &[], PW_ENVS);

    let mut child = spawn_cutover(&cfg, "0.3s", ("30s", "60s"), &["--json"]);
    let log = StderrLog::of(&mut child);
    // Waits (a failure guard only) for a line of the cutover's log with all of `what`.
    let wait_for = |what: &[&str], secs: u64| log.wait_for(what, Duration::from_secs(secs));
    // Mail keeps arriving on the old server until the MX flips on both nameservers.
    let mut during = 0;
    let mut deliver = |n: usize| {
        let mut c = TestImap::connect(old.port(), "alice", "pw");
        for _ in 0..n {
            c.append("INBOX", &[], None, &msg("during", during))
                .unwrap();
            during += 1;
        }
        c.logout();
    };
    wait_for(&["cutover: waiting until 2 nameserver(s) serve"], 20);
    deliver(5);
    // Propagation lag: ns1 first; the cutover sees it at 1 of 2 and goes on waiting.
    ns1.set_mx("example.com", "@", 2, &[(10, PARK)]);
    wait_for(&[&ns1.addr().to_string(), "[1/2 serve the target]"], 30);
    deliver(5);
    // Another poll at 1 of 2 (ns2 lowers its TTL, still the old MX) must not end the wait
    // either: the cutover reports it, so it polled again without going on.
    ns2.set_mx("example.com", "@", 1, &[(10, "old-mx.example.net.")]);
    wait_for(&[&ns2.addr().to_string(), "[1/2 serve the target]"], 30);
    assert!(
        !log.text().contains("for caches to expire"),
        "went on at 1 of 2:\n{}",
        log.text()
    );
    ns2.set_mx("example.com", "@", 2, &[(10, PARK)]);

    wait_for(&["cutover: NEXT STEP"], 60);
    // The admin flips the MX to the new server; a sender with stale DNS still reaches the old,
    // while the follow's IDLE on alice's old INBOX runs.
    ns1.set_mx("example.com", "@", 2, &[(10, "new-mx.example.net.")]);
    ns2.set_mx("example.com", "@", 2, &[(10, "new-mx.example.net.")]);
    wait_idle(&old, "alice", Duration::from_secs(20));
    let mut c = TestImap::connect(old.port(), "alice", "pw");
    for i in 0..3 {
        c.append("INBOX", &[], None, &msg("stray", i)).unwrap();
    }
    c.logout();
    // IDLE wakes the follow loop: a pass carries the stray mail, not the 60 s interval nor the
    // pass at the end of the 30 s follow (which the loop logs no wake-up for).
    wait_for(&["follow: new mail on the old server (IDLE)"], 30);
    wait_for(&["follow: carried 3 messages"], 30);
    let want = 5 + during + 3;
    let mut n = TestImap::connect(new.port(), "alice", "pw");
    assert_eq!(n.fetch_all("INBOX").len(), want, "stray mail carried");
    n.logout();

    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}\n{}", log.finish());
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
    let out = run_cmd(
        "cutover",
        &cfg,
        &["--dns-interval", "0.3s", "--max-wait", "2s", "--json"],
        PW_ENVS,
    );
    assert_exit(&out, 5);
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
    let old = old_dovecot(&users);
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
    let mut child = spawn_cutover(&cfg, "0.2s", ("10m", "10m"), &[]);
    let log = StderrLog::of(&mut child);
    // Already parked (TTL 1 s): the follow starts, and waits once its IDLE runs.
    log.wait_for(&["cutover: NEXT STEP"], Duration::from_secs(60));
    wait_idle(&old, "alice", Duration::from_secs(20));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    // The follow lasts 10 min and passes every 10 min: an exit within the guard (a minute) is
    // the Ctrl-C ending the wait between passes.
    let code = common::wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(
        code,
        Some(130),
        "interrupted follow: exit 130\n{}",
        log.finish()
    );
}
