//! Tests of the Knot DNS harness (`tests/common/knot.rs`) against real
//! private knotd instances: two nameservers on the same port of 127.0.0.1
//! and 127.0.0.2, a runtime MX change on one of them, a paused (silent)
//! nameserver, and a clean stop.
//!
//! Facts about Debian's Knot DNS 3.2.6 established here (with the config
//! written by `common::Knot`):
//!
//! * `knotc zone-begin` / `zone-unset` / `zone-set` / `zone-commit` changes
//!   are served as soon as `zone-commit` returns, and the commit bumps the
//!   SOA serial by one (`serial-policy: increment`, the default).
//! * A SIGSTOPped knotd keeps its sockets, so queries just time out (kdig
//!   with `+timeout=1 +retry=0` gives up after ~1 s); after SIGCONT it
//!   answers again at once.

mod common;

use common::{zone_text, Knot};
use std::path::Path;
use std::time::{Duration, Instant};

const ZONE: &str = "example.com";

fn mx(k: &Knot) -> Vec<String> {
    k.query(ZONE, "MX")
        .unwrap_or_else(|e| panic!("no MX answer from {}: {e}", k.addr()))
}

#[test]
fn two_servers_set_mx_pause_resume_stop() {
    let t0 = Instant::now();
    let port = Knot::free_port(&["127.0.0.1", "127.0.0.2"]);
    let text = zone_text(
        ZONE,
        &["ns1.example.com", "ns2.example.com"],
        &[(10, "old-mx.example.net.")],
        300,
    );
    let a = Knot::start("ns-a", "127.0.0.1", port, &[(ZONE, &text)]);
    let b = Knot::start("ns-b", "127.0.0.2", port, &[(ZONE, &text)]);
    assert_eq!(a.addr(), format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(b.addr(), format!("127.0.0.2:{port}").parse().unwrap());
    assert_ne!(a.pid(), b.pid());

    assert_eq!(mx(&a), ["10 old-mx.example.net."]);
    assert_eq!(mx(&b), ["10 old-mx.example.net."]);
    // The glue zone_text added for the in-zone nameservers.
    assert_eq!(a.query("ns2.example.com", "A").unwrap(), ["127.0.0.2"]);
    // Also over TCP (same port).
    let tcp = std::process::Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tcp", "+short"])
        .args(["+timeout=1", "+retry=0", ZONE, "MX"])
        .output()
        .expect("run kdig");
    assert_eq!(
        String::from_utf8_lossy(&tcp.stdout).trim(),
        "10 old-mx.example.net."
    );

    // Runtime change on the first server only; the serial goes up.
    let serial = a.serial(ZONE);
    assert_eq!(serial, 1);
    a.set_mx(
        ZONE,
        "@",
        60,
        &[(5, "new-mx.example.org."), (20, "backup.example.org.")],
    );
    assert_eq!(a.serial(ZONE), serial + 1);
    let mut got = mx(&a);
    got.sort();
    assert_eq!(got, ["20 backup.example.org.", "5 new-mx.example.org."]);
    assert_eq!(mx(&b), ["10 old-mx.example.net."]);
    assert_eq!(b.serial(ZONE), 1);
    // The SOA seen over DNS carries the new serial too.
    let soa = a.query(ZONE, "SOA").unwrap();
    assert_eq!(soa[0].split_whitespace().nth(2), Some("2"), "{soa:?}");
    // Runtime changes do not touch the zone file.
    let file = std::fs::read_to_string(a.dir().join("zones/example.com.zone")).unwrap();
    assert_eq!(file, text);
    // Replacing again (and at a name with no MX yet) works.
    a.set_mx(ZONE, "@", 60, &[(1, "only.example.org.")]);
    assert_eq!(mx(&a), ["1 only.example.org."]);
    a.set_mx(ZONE, "sub", 60, &[(7, "sub-mx.example.org.")]);
    assert_eq!(
        a.query("sub.example.com", "MX").unwrap(),
        ["7 sub-mx.example.org."]
    );
    assert_eq!(a.serial(ZONE), 4);

    // A paused server answers nothing; resumed, it answers again.
    b.pause();
    let t = Instant::now();
    let err = b.query(ZONE, "MX").expect_err("paused knotd answered");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(err.contains("timeout") || err.contains("failed"), "{err}");
    assert_eq!(
        mx(&a),
        ["1 only.example.org."],
        "the other server is unaffected"
    );
    b.resume();
    assert_eq!(mx(&b), ["10 old-mx.example.net."]);

    // Drop (paused again, to check Drop resumes before SIGTERM) stops both.
    b.pause();
    let (pa, pb) = (a.pid(), b.pid());
    let (da, db) = (a.dir().to_path_buf(), b.dir().to_path_buf());
    drop(a);
    drop(b);
    for pid in [pa, pb] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "knotd {pid} still exists after drop"
        );
    }
    if std::env::var_os("IMAPSHIFT_KEEP_TMP").is_none() {
        assert!(!da.exists() && !db.exists(), "temp dirs not removed");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
#[should_panic(expected = "failed to load")]
fn broken_zone_fails_fast() {
    let text = "$ORIGIN broken.test.\n@ 300 IN SOA ns1 h 1 2 3 4 5\n@ 300 IN MX nonsense\n";
    let _k = Knot::start("broken", "127.0.0.1", 0, &[("broken.test", text)]);
}

#[test]
fn port_zero_picks_a_free_port_and_several_zones() {
    let k = Knot::start(
        "multi",
        "127.0.0.3",
        0,
        &[
            (
                "one.test",
                &zone_text("one.test", &[], &[(10, "mx.one.test")], 60),
            ),
            (
                "two.test.",
                &zone_text("two.test", &["ns.one.test"], &[], 60),
            ),
        ],
    );
    assert_ne!(k.port(), 0);
    assert_eq!(k.query("one.test", "MX").unwrap(), ["10 mx.one.test."]);
    assert_eq!(k.query("two.test", "NS").unwrap(), ["ns.one.test."]);
    assert_eq!(k.query("two.test", "MX").unwrap(), Vec::<String>::new());
    assert!(k.log().contains("[two.test.] loaded"), "{}", k.log());
}

#[test]
fn bad_set_mx_panics_with_knotc_output_and_aborts() {
    let k = Knot::start(
        "bad-set",
        "127.0.0.1",
        0,
        &[(
            ZONE,
            &zone_text(ZONE, &[], &[(10, "old-mx.example.net.")], 300),
        )],
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        k.set_mx(ZONE, "@", 60, &[(10, "ok.example.org."), (20, "bad..name")]);
    }));
    let msg = r.expect_err("set_mx with a bad exchange did not panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("zone-set") && msg.contains("transaction aborted"),
        "{msg}"
    );
    // Nothing was committed, and the aborted transaction does not block the next one.
    assert_eq!(mx(&k), ["10 old-mx.example.net."]);
    assert_eq!(k.serial(ZONE), 1);
    k.set_mx(ZONE, "@", 60, &[(10, "ok.example.org.")]);
    assert_eq!(mx(&k), ["10 ok.example.org."]);
}
