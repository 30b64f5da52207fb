//! Issue 11, items 3 and 5: domains on different nameservers, unreachable nameservers, and the
//! MX TTLs remembered in the state directory. Real Knot DNS servers on 127.0.0.1-4, the real
//! binary.

mod common;

use common::{imapshift_bin, plain_config, zone_text, Knot};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const OLD_MX: &str = "old-mx.example.net.";
const PARK: &str = "park.example.net.";

/// A configuration with `[mx]` given as `mx`; the IMAP servers are never contacted here.
fn write_config(dir: &Path, mx: &str) -> String {
    let path = dir.join("imapshift.toml");
    std::fs::write(&path, plain_config(1, 1, "", "", mx, &["alice"])).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs imapshift; the guard only catches a run that never ends.
fn run(args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(imapshift_bin())
        .args(args)
        .env("PW", "pw")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "imapshift {args:?} still running after {within:?}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `watch-mx ARGS --until park.example.net` polling fast: (exit code, stdout, stderr).
fn watch_until(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["watch-mx"];
    all.extend_from_slice(args);
    all.extend(["--until", PARK, "--interval", "0.2", "--timeout", "0.5"]);
    let out = run(&all, Duration::from_secs(60));
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// example.com on 127.0.0.1 and .2, example.org on 127.0.0.3 and .4: each pair serves its own
/// zone only (and answers the other with REFUSED), as two DNS providers do.
fn two_providers() -> [Knot; 4] {
    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let com = zone_text("example.com", &[], &[(10, OLD_MX)], 300);
    let org = zone_text("example.org", &[], &[(10, OLD_MX)], 120);
    let c = [("example.com", com.as_str())];
    let o = [("example.org", org.as_str())];
    [
        Knot::start("com1", "127.0.0.1", port, &c),
        Knot::start("com2", "127.0.0.2", port, &c),
        Knot::start("org1", "127.0.0.3", port, &o),
        Knot::start("org2", "127.0.0.4", port, &o),
    ]
}

#[test]
fn domains_at_two_providers_reach_the_target() {
    let ns = two_providers();
    for (k, zone) in ns
        .iter()
        .zip(["example.com", "example.com", "example.org", "example.org"])
    {
        k.set_mx(zone, "@", 60, &[(10, PARK)]);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[mx]\ndomains = [\"example.com\", \"example.org\"]\nnameservers = [\"{}\", \"{}\"]\n\
             [mx.domain_nameservers]\n\"example.org\" = [\"{}\", \"{}\"]\n",
            ns[0].addr(),
            ns[1].addr(),
            ns[2].addr(),
            ns[3].addr()
        ),
    );
    let (code, stdout, stderr) = watch_until(&["--config", &cfg, "--max-wait", "20"]);
    assert_eq!(
        code,
        Some(0),
        "{stdout}
{stderr}"
    );
    assert!(stdout.contains("first poll of 4 nameserver(s)"), "{stdout}");
    assert!(
        !stdout.contains("REFUSED"),
        "each domain asks its own nameservers only: {stdout}"
    );
    assert!(
        stdout.contains("every nameserver serves park.example.net"),
        "{stdout}"
    );
    // watch-mx --config remembered the TTLs it saw, per domain and nameserver.
    let log: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/mx-ttl.json")).unwrap(),
    )
    .unwrap();
    let seen = log["seen"].as_array().unwrap();
    assert_eq!(seen.len(), 4, "{log:#}");
    assert!(
        seen.iter()
            .all(|e| e["source"] == "watch-mx" && e["ttl"] == 60),
        "{log:#}"
    );

    // On the command line, every given nameserver is asked about every given domain (as before).
    let out = run(
        &[
            "watch-mx",
            "--domain",
            "example.com",
            "--domain",
            "example.org",
            "--nameserver",
            &ns[0].addr().to_string(),
            "--nameserver",
            &ns[2].addr().to_string(),
            "--count",
            "1",
            "--timeout",
            "0.5",
        ],
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("REFUSED").count(), 2, "{stdout}");
}

/// An IPv6 address this host cannot send to at all: on this machine a link-local address
/// without an interface (the routing lookup fails with EINVAL; nothing is sent). A global
/// address such as 2001:db8::53 would go out through the default IPv6 route here.
const NO_ROUTE: &str = "[fe80::53]:53";

fn assert_cannot_send(addr: &str) {
    let a: std::net::SocketAddr = addr.parse().unwrap();
    let r = std::net::UdpSocket::bind("[::]:0").and_then(|s| s.connect(a));
    assert!(
        r.is_err(),
        "this host can send to {addr}: the test needs an address it cannot reach (pick another)"
    );
}

#[test]
fn an_unreachable_nameserver_is_reported_once_and_ends_the_wait_with_exit_5() {
    assert_cannot_send(NO_ROUTE);
    let ns = two_providers();
    ns[0].set_mx("example.com", "@", 60, &[(10, PARK)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[mx]\ndomains = [\"example.com\", \"example.org\"]\nnameservers = [\"{}\"]\n\
             [mx.domain_nameservers]\n\"example.org\" = [\"{NO_ROUTE}\"]\n",
            ns[0].addr()
        ),
    );
    // No --max-wait: only the unreachable nameserver can end this wait.
    let (code, stdout, stderr) = watch_until(&["--config", &cfg]);
    assert_eq!(code, Some(5), "exit 5 (not propagated): {stdout}\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("fe80::53")).collect();
    assert_eq!(errors.len(), 1, "reported once: {stderr}");
    assert!(
        errors[0].contains("example.org")
            && errors[0].contains("cannot be reached from this host")
            && errors[0].contains("[mx.domain_nameservers]"),
        "{stderr}"
    );
    assert_eq!(
        stdout.matches("fe80::53").count(),
        1,
        "one table row: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("fe80::53") && l.contains("unreachable (")),
        "shown as unreachable, not as a timeout: {stdout}"
    );
}

#[test]
fn a_discovered_address_this_host_cannot_reach_is_left_out_with_one_warning() {
    assert_cannot_send(NO_ROUTE);
    let port = Knot::free_port(&["127.0.0.1"]);
    // ns1.example.com has 127.0.0.1 and the unreachable fe80::53.
    let zone = zone_text("example.com", &["ns1.example.com."], &[(10, OLD_MX)], 300)
        + "ns1 300 IN AAAA fe80::53\n";
    let k = Knot::start("ns1", "127.0.0.1", port, &[("example.com", zone.as_str())]);
    k.set_mx("example.com", "@", 60, &[(10, PARK)]);
    let (addr, port) = (k.addr().to_string(), port.to_string());
    let (code, stdout, stderr) = watch_until(&[
        "--domain",
        "example.com",
        "--resolver",
        &addr,
        "--ns-port",
        &port,
        "--max-wait",
        "20",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches("leaving out").count(), 1, "{stderr}");
    assert!(stderr.contains("fe80::53"), "{stderr}");
    assert!(stdout.contains("first poll of 1 nameserver(s)"), "{stdout}");
}

#[test]
fn preflight_remembers_the_old_ttl_after_it_was_lowered() {
    let zone = zone_text("example.com", &[], &[(10, OLD_MX)], 86_400);
    let k = Knot::start("ns", "127.0.0.1", 0, &[("example.com", zone.as_str())]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[mx]\ndomains = [\"example.com\"]\nnameservers = [\"{0}\"]\nresolver = \"{0}\"\nmax_ttl = 300\n",
            k.addr()
        ),
    );
    // The IMAP servers are not there: those checks fail, the DNS ones still run.
    let first = run(&["preflight", "--config", &cfg], Duration::from_secs(60));
    let stdout = text(&first.stdout);
    assert!(stdout.contains("TTL 86400s is above max_ttl"), "{stdout}");
    k.set_mx("example.com", "@", 2, &[(10, OLD_MX)]);
    let second = run(&["preflight", "--config", &cfg], Duration::from_secs(60));
    let stdout = text(&second.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("PASS  mx ttl example.com") && l.contains("(ttl 2)")),
        "{stdout}"
    );
    // The old TTL still binds: its lifetime has not ended.
    let history = stdout
        .lines()
        .find(|l| l.starts_with("WARN  mx ttl history"))
        .unwrap_or_else(|| panic!("no history line: {stdout}"));
    assert!(
        history.contains(&format!(
            "ttl 86400 of example.com at {} (10 old-mx.example.net), seen by preflight",
            k.addr()
        )),
        "{history}"
    );
    let path = dir.path().join("state/mx-ttl.json");
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ttls: Vec<u64> = log["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ttl"].as_u64().unwrap())
        .collect();
    assert!(ttls.contains(&86_400) && ttls.contains(&2), "{log:#}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A damaged log is named with the fix, never ignored.
    std::fs::write(&path, "{").unwrap();
    let third = run(&["preflight", "--config", &cfg], Duration::from_secs(60));
    let stdout = text(&third.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL  mx ttl log")
            && l.contains("mx-ttl.json")
            && l.contains("delete it")),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{");
    let watch = run(
        &["watch-mx", "--config", &cfg, "--count", "1"],
        Duration::from_secs(30),
    );
    assert_eq!(watch.status.code(), Some(4), "{}", text(&watch.stderr));
    assert!(text(&watch.stderr).contains("delete it"));
}

/// Issue 13: a watched domain that is an alias (CNAME). Knot, asked directly, answers with the
/// CNAME and, when the target is in its own zone, the target's MX: the watcher follows the
/// chain within that answer and watches the target's MX. A target in another zone has no MX in
/// the answer: the domain is shown so, with the name to watch instead, and never as serving.
#[test]
fn a_cnamed_domain_is_followed_within_the_answer() {
    let zone = zone_text("example.com", &[], &[(10, OLD_MX)], 300)
        + "sales 300 IN CNAME example.com.\nshop 300 IN CNAME shop.example.org.\n";
    let k = Knot::start("ns", "127.0.0.1", 0, &[("example.com", zone.as_str())]);
    let ns = k.addr().to_string();
    let once = |domain: &str, json: bool| {
        let mut args = vec!["watch-mx", "--domain", domain, "--nameserver", &ns];
        if json {
            args.push("--json");
        }
        args.extend(["--count", "1", "--timeout", "0.5"]);
        let out = run(&args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let stdout = once("sales.example.com", false);
    assert!(
        stdout.contains("10 old-mx.example.net (ttl 300) [CNAME to example.com]"),
        "{stdout}"
    );
    let json = once("sales.example.com", true);
    let state: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        state["cname_chain"],
        serde_json::json!(["example.com"]),
        "{json}"
    );
    assert_eq!(
        state["records"][0]["exchange"], "old-mx.example.net",
        "{json}"
    );

    // The MX of the target changes: the alias serves it.
    k.set_mx("example.com", "@", 60, &[(10, PARK)]);
    let until = |domain: &str, stop: [&str; 2]| {
        watch_until(&["--domain", domain, "--nameserver", &ns, stop[0], stop[1]])
    };
    let (code, stdout, stderr) = until("sales.example.com", ["--max-wait", "20"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every nameserver serves park.example.net"),
        "{stdout}"
    );

    // An alias into another zone: nothing to count here, so never reached.
    let (code, stdout, stderr) = until("shop.example.com", ["--count", "1"]);
    assert_eq!(code, Some(5), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "no MX records for shop.example.org in this answer (if it is in another zone, watch shop.example.org at its own nameservers) [CNAME to shop.example.org]"
        ),
        "{stdout}"
    );
}
