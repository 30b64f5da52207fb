//! `imapshift watch-mx` against two real Knot DNS nameservers on 127.0.0.1 and 127.0.0.2: the
//! MX changes on one before the other (propagation lag) and `--until` waits for both; a paused
//! nameserver (SIGSTOP) shows as unreachable, not as "no MX".

mod common;

use common::{imapshift_bin, wait_exit, zone_text, Knot, LameDns};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const OLD_MX: &str = "old-mx.example.net.";
const PARK: &str = "park.example.net.";

fn two_nameservers() -> (Knot, Knot) {
    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2"]);
    let com = zone_text("example.com", &[], &[(10, OLD_MX)], 300);
    let org = zone_text("example.org", &[], &[(10, OLD_MX)], 120);
    let zones = [("example.com", com.as_str()), ("example.org", org.as_str())];
    (
        Knot::start("ns1", "127.0.0.1", port, &zones),
        Knot::start("ns2", "127.0.0.2", port, &zones),
    )
}

/// Starts `imapshift watch-mx ... --json` and returns its stdout lines as they come.
fn spawn_watch(
    args: &[String],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut child = Command::new(imapshift_bin())
        .arg("watch-mx")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start imapshift");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs `imapshift watch-mx args...` to its end.
fn watch_mx<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> std::process::Output {
    Command::new(imapshift_bin())
        .arg("watch-mx")
        .args(args)
        .output()
        .expect("run imapshift watch-mx")
}

fn next_event(rx: &std::sync::mpsc::Receiver<serde_json::Value>, what: &str) -> serde_json::Value {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no event while waiting for {what}"))
}

fn ns_args(a: &Knot, b: &Knot) -> Vec<String> {
    vec![
        "--domain".into(),
        "example.com".into(),
        "--domain".into(),
        "example.org".into(),
        "--nameserver".into(),
        a.addr().to_string(),
        "--nameserver".into(),
        b.addr().to_string(),
        "--interval".into(),
        "0.3".into(),
        "--timeout".into(),
        "0.5".into(),
    ]
}

/// `watch-mx --until` [`PARK`] polling both nameservers ([`ns_args`]), giving up after
/// `max_wait` seconds.
fn watch_until(
    a: &Knot,
    b: &Knot,
    max_wait: &str,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut args = ns_args(a, b);
    args.extend([
        "--until".into(),
        PARK.into(),
        "--max-wait".into(),
        max_wait.into(),
    ]);
    spawn_watch(&args)
}

/// The events of the first poll: one per (nameserver, domain) pair of [`ns_args`].
fn first_poll(rx: &std::sync::mpsc::Receiver<serde_json::Value>) -> Vec<serde_json::Value> {
    (0..4).map(|_| next_event(rx, "the first poll")).collect()
}

#[test]
fn until_waits_for_every_nameserver_and_domain() {
    let (a, b) = two_nameservers();
    let (mut child, rx) = watch_until(&a, &b, "60");
    // The first poll: four pairs, all the old MX, authoritative.
    let first = first_poll(&rx);
    for e in &first {
        assert_eq!(e["event"], "mx_state", "{e}");
        assert_eq!(e["state"], "answer", "{e}");
        assert_eq!(e["authoritative"], true, "{e}");
        assert_eq!(e["records"][0]["exchange"], "old-mx.example.net", "{e}");
    }
    let ttl_com = first.iter().find(|e| e["domain"] == "example.com").unwrap();
    assert_eq!(ttl_com["records"][0]["ttl"], 300);
    // ns1 changes both domains; ns2 only example.com: not yet.
    a.set_mx("example.com", "@", 60, &[(10, PARK)]);
    a.set_mx("example.org", "@", 60, &[(10, PARK)]);
    b.set_mx("example.com", "@", 60, &[(10, PARK)]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = next_event(&rx, "three changes");
        assert_eq!(e["event"], "mx_change", "{e}");
        assert_eq!(e["records"][0]["exchange"], "park.example.net", "{e}");
        seen.push(e);
    }
    assert_eq!(seen.last().unwrap()["serving"], serde_json::json!([3, 4]));
    // A poll at 3 of 4 must not end the wait. Seen, not slept for: ns2 lowers example.org's
    // TTL (still the old MX), and the watcher reports that change at 3 of 4, so it polled again
    // without reaching; an early end would be an `mx_reached` (or no event) here instead.
    b.set_mx("example.org", "@", 119, &[(10, OLD_MX)]);
    let e = next_event(&rx, "the TTL change on ns2");
    assert_eq!(
        e["event"], "mx_change",
        "exited before ns2 served example.org: {e}"
    );
    assert_eq!(e["records"][0]["exchange"], "old-mx.example.net", "{e}");
    assert_eq!(e["serving"], serde_json::json!([3, 4]), "{e}");
    b.set_mx("example.org", "@", 60, &[(10, PARK)]);
    let e = next_event(&rx, "the last change");
    assert_eq!(e["event"], "mx_change", "{e}");
    assert_eq!(e["serving"], serde_json::json!([4, 4]));
    let e = next_event(&rx, "reached");
    assert_eq!(e["event"], "mx_reached", "{e}");
    assert_eq!(e["target"], "park.example.net");
    assert_eq!(
        e["max_ttl"], 300,
        "the largest TTL seen, the old one included: {e}"
    );
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn a_paused_nameserver_is_unreachable_and_until_gives_up() {
    let (a, b) = two_nameservers();
    a.set_mx("example.com", "@", 60, &[(10, PARK)]);
    a.set_mx("example.org", "@", 60, &[(10, PARK)]);
    b.pause();
    let (mut child, rx) = watch_until(&a, &b, "3");
    for e in &first_poll(&rx) {
        if e["nameserver"] == b.addr().to_string() {
            assert_eq!(
                e["state"], "timeout",
                "a paused server is no answer, not 'no MX': {e}"
            );
        } else {
            assert_eq!(e["state"], "answer", "{e}");
        }
    }
    let mut last = serde_json::Value::Null;
    while last["event"] != "mx_gave_up" {
        last = next_event(&rx, "giving up");
    }
    assert_eq!(last["serving"], serde_json::json!([2, 4]), "{last}");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)),
        Some(5),
        "exit 5: not propagated"
    );
    b.resume();
}

#[test]
fn table_for_people_and_bad_input() {
    let (a, b) = two_nameservers();
    let mut args = ns_args(&a, &b);
    args.extend(["--count".into(), "1".into()]);
    let out = watch_mx(&args);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nameserver"), "{text}");
    for ns in [a.addr().to_string(), b.addr().to_string()] {
        assert!(
            text.lines().any(|l| l.starts_with(&ns)
                && l.contains("example.org")
                && l.contains("10 old-mx.example.net (ttl 120)")),
            "{text}"
        );
    }
    // A nameserver that is not an address: a usage error naming the fix, exit 2.
    let out = watch_mx(["--domain", "example.com", "--nameserver", "ns1.example.com"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a nameserver address"), "{err}");
    // NXDOMAIN is named as such.
    let out = watch_mx([
        "--domain",
        "nope.example.com",
        "--nameserver",
        &a.addr().to_string(),
        "--count",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NXDOMAIN"), "{text}");
}

#[test]
fn nameservers_discovered_from_ns_records() {
    // The zone names ns1 (127.0.0.1) and ns2 (127.0.0.2); each serves it on the same port.
    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2"]);
    let zone = zone_text(
        "example.com",
        &["ns1.example.com.", "ns2.example.com."],
        &[(10, OLD_MX)],
        300,
    );
    let z = [("example.com", zone.as_str())];
    let a = Knot::start("ns1", "127.0.0.1", port, &z);
    let _b = Knot::start("ns2", "127.0.0.2", port, &z);
    a.set_mx("example.com", "@", 60, &[(10, PARK)]);
    let out = watch_mx([
        "--domain",
        "example.com",
        "--count",
        "1",
        "--timeout",
        "0.5",
        "--resolver",
        &a.addr().to_string(),
        "--ns-port",
        &port.to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first poll of 2 nameserver(s)"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("ns1.example.com (127.0.0.1:") && l.contains("park.example.net")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ns2.example.com (127.0.0.2:")
                && l.contains("old-mx.example.net")),
        "{text}"
    );
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    // 60 MX records with long names do not fit a UDP answer (EDNS 1232 bytes): the server
    // truncates it and the watcher must ask again over TCP to see them all.
    let port = Knot::free_port(&["127.0.0.1"]);
    let zone = zone_text("example.com", &[], &[(10, OLD_MX)], 300);
    let a = Knot::start("ns1", "127.0.0.1", port, &[("example.com", zone.as_str())]);
    let names: Vec<String> = (0..60)
        .map(|i| format!("mail-exchanger-number-{i:02}.a-rather-long-provider-name.example.net."))
        .collect();
    let records: Vec<(u16, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u16, n.as_str()))
        .collect();
    a.set_mx("example.com", "@", 300, &records);
    let out = watch_mx([
        "--domain",
        "example.com",
        "--count",
        "1",
        "--json",
        "--nameserver",
        &a.addr().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let e: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(e["state"], "answer", "{e}");
    assert_eq!(
        e["records"].as_array().unwrap().len(),
        60,
        "all records, over TCP: {e}"
    );
}

#[test]
fn an_answer_without_authority_never_serves_the_target() {
    // A lame server (AA bit clear) hands out the parking MX; the zone's own nameserver still
    // has the old one. Neither the lame answer nor Knot's REFUSED for a zone it does not serve
    // may count as serving.
    let lame = LameDns::start("127.0.0.5", "park.example.net");
    let zone = zone_text("example.org", &[], &[(10, OLD_MX)], 300);
    let k = Knot::start("ns1", "127.0.0.1", 0, &[("example.org", zone.as_str())]);
    for ns in [lame.addr(), k.addr()] {
        let out = watch_mx([
            "--domain",
            "example.com",
            "--until",
            PARK,
            "--nameserver",
            &ns.to_string(),
            "--count",
            "2",
            "--interval",
            "0.2",
            "--timeout",
            "0.5",
            "--json",
        ]);
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let first = &events[0];
        if ns == lame.addr() {
            assert_eq!(first["state"], "answer", "{first}");
            assert_eq!(first["authoritative"], false, "{first}");
            assert_eq!(
                first["records"][0]["exchange"], "park.example.net",
                "{first}"
            );
        } else {
            assert_eq!(first["state"], "refused", "{first}");
        }
        let last = events.last().unwrap();
        assert_eq!(last["event"], "mx_gave_up", "{last}");
        assert_eq!(last["serving"], serde_json::json!([0, 1]), "{last}");
        assert_eq!(out.status.code(), Some(5), "never reached: {events:?}");
    }
}

/// Spawns `watch-mx --until` against a nameserver that never changes, waits for its first
/// event, sends `signal` and expects exit 130. The interval between polls is an hour, so an
/// exit at all (within the guard) means the signal ended the sleep between polls: no clock
/// decides the result.
fn interrupted_by(signal: &str, extra: &[&str]) {
    let zone = zone_text("example.com", &[], &[(10, OLD_MX)], 300);
    let k = Knot::start("ns1", "127.0.0.1", 0, &[("example.com", zone.as_str())]);
    let mut args: Vec<String> = ["--domain", "example.com", "--nameserver"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(k.addr().to_string());
    args.extend(["--interval", "3600"].iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let (mut child, rx) = spawn_watch(&args);
    let e = next_event(&rx, "the first poll");
    assert_eq!(e["event"], "mx_state", "{e}");
    let st = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // Within the hour-long sleep between polls, not after it (the guard is a minute).
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(60)),
        Some(130),
        "SIG{signal} during watch-mx {extra:?}"
    );
}

#[test]
fn sigterm_and_sigint_during_until_exit_130() {
    interrupted_by("TERM", &["--until", PARK]);
    interrupted_by("INT", &["--until", PARK]);
}

#[test]
fn sigterm_without_until_exits_130() {
    interrupted_by("TERM", &[]);
}
