//! Issue 13, bad input: TLS certificates. Real Dovecots (old and new in different zones) serve
//! implicit TLS and STARTTLS with a self-signed certificate, certificates from a private test
//! CA (good, expired a day ago, for another name), and imapshift must:
//! - refuse each faulty certificate by default, on either side and either way of starting TLS,
//!   failing that user (exit 3) with a message that says what is wrong with the certificate and
//!   the three ways out (a proper certificate, `ca_file`, `accept_invalid_certs`), having
//!   written nothing to the new server and no UID map (the corrected run copies each message
//!   exactly once);
//! - accept a certificate from a CA named in `ca_file` (a path relative to the configuration);
//! - accept a faulty one only with the side's `accept_invalid_certs = true`, and then warn once
//!   per side, in the run and in `preflight`;
//! - refuse a `ca_file` that is missing, not PEM or cut short as a configuration error (exit 2,
//!   file and line named), before any server is contacted.

mod common;

use common::tls::TestCa;
use common::*;
use std::path::Path;

const PW: &str = "pw";

/// How imapshift reaches one side.
struct Side<'a> {
    port: u16,
    security: &'a str,
    extra: &'a str,
}

fn config(old: &Side, new: &Side) -> String {
    format!(
        "state_dir = \"state\"\n\
         [old]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"{}\"\n{}\n\
         [new]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"{}\"\n{}\n\
         [[users]]\nold = \"alice\"\nnew = \"alice\"\nold_password = \"env:PW\"\nnew_password = \"env:PW\"\n",
        old.port, old.security, old.extra, new.port, new.security, new.extra
    )
}

fn run(dir: &Path, cmd: &str, text: &str) -> (i32, String, String) {
    let cfg = dir.join("imapshift.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = run_imapshift(&[cmd, "--config", cfg.to_str().unwrap()], &[("PW", PW)]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TLS Dovecot serving `cert` (the self-signed default when `None`), with three messages in
/// alice's INBOX when it is an old server.
fn server(name: &str, cert: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Dovecot {
    let d = Dovecot::start(
        name,
        &[("alice", PW)],
        DovecotOpts {
            tls: true,
            cert,
            ..Default::default()
        },
    );
    if name.starts_with("old") {
        let mut c = TestImap::connect(d.port(), "alice", PW);
        for i in 0..3 {
            let m =
                format!("Subject: {name} {i}\r\nMessage-ID: <{name}.{i}@x>\r\n\r\nbody {i}\r\n");
            c.append("INBOX", &["\\Seen"], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }
    d
}

fn tls(d: &Dovecot) -> u16 {
    d.tls_port().expect("the TLS Dovecot has an imaps port")
}

fn inbox_count(d: &Dovecot) -> u32 {
    let mut c = TestImap::connect(d.port(), "alice", PW);
    let n = c.status("INBOX").0;
    c.logout();
    n
}

#[test]
fn a_faulty_certificate_fails_that_user_naming_the_fault_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let here = "DNS:localhost,IP:127.0.0.1";
    let old_self = server("old-self-signed", None);
    let old_expired = server("old-expired", Some(ca.issue("expired", here, -1)));
    let old_other = server(
        "old-other-name",
        Some(ca.issue("other", "DNS:mail.other.example", 365)),
    );
    let old_good = server("old-good", Some(ca.issue("good-old", here, 365)));
    let new = server("new-good", Some(ca.issue("good-new", here, 365)));
    let new_self = server("new-self-signed", None);
    std::fs::copy(&ca.cert, dir.path().join("ca.pem")).unwrap();
    let trust = "ca_file = \"ca.pem\"";
    let new_ok = Side {
        port: new.port(),
        security: "starttls",
        extra: trust,
    };
    let cases = [
        (
            "a self-signed old server (implicit TLS)",
            config(
                &Side {
                    port: tls(&old_self),
                    security: "tls",
                    extra: trust,
                },
                &new_ok,
            ),
            "the certificate is self-signed",
            "[old]",
        ),
        (
            "an expired certificate from a trusted CA",
            config(
                &Side {
                    port: tls(&old_expired),
                    security: "tls",
                    extra: trust,
                },
                &new_ok,
            ),
            "the certificate has expired",
            "[old]",
        ),
        (
            "a certificate from a trusted CA for another name",
            config(
                &Side {
                    port: tls(&old_other),
                    security: "tls",
                    extra: trust,
                },
                &new_ok,
            ),
            "the certificate is for another name than the configured host",
            "[old]",
        ),
        (
            "a good certificate from a CA this host does not trust (no ca_file)",
            config(
                &Side {
                    port: tls(&old_good),
                    security: "tls",
                    extra: "",
                },
                &new_ok,
            ),
            "issued by a CA this host does not trust",
            "[old]",
        ),
        (
            "a self-signed new server (STARTTLS)",
            config(
                &Side {
                    port: tls(&old_good),
                    security: "tls",
                    extra: trust,
                },
                &Side {
                    port: new_self.port(),
                    security: "starttls",
                    extra: trust,
                },
            ),
            "the certificate is self-signed",
            "[new]",
        ),
    ];
    for (what, text, fault, side) in &cases {
        let (code, _, err) = run(dir.path(), "sync", text);
        assert_eq!(code, 3, "{what}: {err}");
        assert!(err.contains("TLS certificate refused"), "{what}: {err}");
        assert!(err.contains(fault), "{what}: {fault:?} not in {err}");
        for fix in [
            format!("{side}.ca_file"),
            format!("{side}.accept_invalid_certs = true"),
        ] {
            assert!(err.contains(&fix), "{what}: the fix {fix:?} not in {err}");
        }
        assert!(!err.contains("is not checked"), "{what}: {err}");
    }
    assert_eq!(inbox_count(&new), 0, "nothing reached the new server");
    assert_eq!(inbox_count(&new_self), 0, "nothing reached the new server");

    // Trusted by `ca_file`, both ways of starting TLS: every message exactly once, no warning.
    let good = config(
        &Side {
            port: tls(&old_good),
            security: "tls",
            extra: trust,
        },
        &new_ok,
    );
    let (code, _, err) = run(dir.path(), "sync", &good);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("accept_invalid_certs"), "{err}");
    let mut o = TestImap::connect(old_good.port(), "alice", PW);
    let mut n = TestImap::connect(new.port(), "alice", PW);
    if let Err(e) = diff_folder("INBOX", &o.fetch_all("INBOX"), &n.fetch_all("INBOX")) {
        panic!("{e}");
    }
    let (code, out, err) = run(dir.path(), "preflight", &good);
    assert_eq!(code, 0, "{out}{err}");
    let ca_path = dir.path().join("ca.pem");
    for side in ["old", "new"] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("security {side}")))
            .unwrap_or_else(|| panic!("no security {side} check in {out}"));
        assert!(line.contains("PASS"), "{line}");
        assert!(
            line.contains(&format!(
                "certificate checked against the system's CAs and {}",
                ca_path.display()
            )),
            "{line}"
        );
    }
}

#[test]
fn accept_invalid_certs_lets_a_faulty_certificate_through_and_warns_once_per_side() {
    let dir = tempfile::tempdir().unwrap();
    let old = server("old-self-signed", None);
    let new = server("new-self-signed", None);
    let text = config(
        &Side {
            port: tls(&old),
            security: "tls",
            extra: "accept_invalid_certs = true",
        },
        &Side {
            port: new.port(),
            security: "starttls",
            extra: "accept_invalid_certs = true",
        },
    );
    let (code, _, err) = run(dir.path(), "sync", &text);
    assert_eq!(code, 0, "{err}");
    for (side, port) in [("old", tls(&old)), ("new", new.port())] {
        let warning = format!(
            "[{side}] accept_invalid_certs = true: the certificate of 127.0.0.1:{port} is not checked"
        );
        assert_eq!(
            err.matches(&warning).count(),
            1,
            "{warning:?} once in {err}"
        );
    }
    let mut o = TestImap::connect(old.port(), "alice", PW);
    let mut n = TestImap::connect(new.port(), "alice", PW);
    if let Err(e) = diff_folder("INBOX", &o.fetch_all("INBOX"), &n.fetch_all("INBOX")) {
        panic!("{e}");
    }
    let (code, out, err) = run(dir.path(), "preflight", &text);
    assert_eq!(code, 0, "a warning is no failure: {out}{err}");
    for side in ["old", "new"] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("security {side}")))
            .unwrap_or_else(|| panic!("no security {side} check in {out}"));
        assert!(
            line.contains("WARN") && line.contains("the certificate is NOT checked"),
            "{line}"
        );
    }
}

#[test]
fn a_bad_ca_file_is_a_configuration_error_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let pem = std::fs::read_to_string(&ca.cert).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("cut.pem"), &pem[..pem.len() / 2]).unwrap();
    let mut broken = pem.clone();
    broken.replace_range(40..60, "!!!!!!!!!!!!!!!!!!!!");
    std::fs::write(dir.path().join("broken.pem"), broken).unwrap();
    // Nothing listens: a connection attempt would fail with exit 3, not 2.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (file, named) in [
        ("missing.pem", "cannot read"),
        ("junk.pem", "holds no PEM certificate"),
        ("cut.pem", "has no END CERTIFICATE line"),
        ("broken.pem", "certificate 1 does not parse"),
    ] {
        let extra = format!("ca_file = \"{file}\"");
        let text = config(
            &Side {
                port,
                security: "tls",
                extra: &extra,
            },
            &Side {
                port,
                security: "tls",
                extra: "",
            },
        );
        let (code, _, err) = run(dir.path(), "sync", &text);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(
            err.contains("imapshift.toml:6: [old].ca_file:") && err.contains(named),
            "{file}: {named:?} not in {err}"
        );
        assert!(!dir.path().join("state").exists(), "{file}: state written");
    }
}
