//! Test certificates made with the `openssl` command: the self-signed one every TLS Dovecot
//! serves by default, and a private test CA that issues certificates for a name, already
//! expired, or for another name, so the TLS tests meet each certificate fault a migration meets
//! (issue 13: self-signed, expired, for another name).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Serial numbers of issued certificates, distinct within a test process.
static SERIAL: AtomicU32 = AtomicU32::new(1000);

fn openssl(args: &[&str], what: &str) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl to make {what}: {e} (install openssl)"));
    assert!(
        out.status.success(),
        "openssl {} ({what}) failed: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// `openssl req -x509`: a new key and a self-signed certificate for `subj`, ten years valid.
fn req_x509(subj: &str, extra: &[&str], cert: &Path, key: &Path, what: &str) {
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", subj,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-keyout", s(key), "-out", s(cert)]);
    openssl(&args, what);
}

/// A self-signed certificate for `CN=localhost` (SAN `DNS:localhost`, `IP:127.0.0.1`), valid
/// for ten years, written to `dir/cert.pem` and `dir/key.pem`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    req_x509(
        "/CN=localhost",
        &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        &cert,
        &key,
        "a self-signed test certificate",
    );
    (cert, key)
}

/// A private CA (`dir/ca.pem`), as a company's own CA or a hosting provider's.
pub struct TestCa {
    dir: PathBuf,
    /// The CA's certificate: what `ca_file` names to trust it.
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        req_x509("/CN=imapshift test CA", &[], &cert, &key, "a test CA");
        TestCa {
            dir: dir.to_path_buf(),
            cert,
            key,
        }
    }

    /// A certificate issued by this CA for `sans` (e.g. `DNS:localhost,IP:127.0.0.1`), valid for
    /// `days` from now; `-1` gives one that expired a day ago. `name` names its files.
    pub fn issue(&self, name: &str, sans: &str, days: i32) -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.csr")),
            self.dir.join(format!("{name}.ext")),
        );
        fs::write(&ext, format!("subjectAltName={sans}\n")).unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                s(&key),
                "-out",
                s(&csr),
            ],
            "a test certificate request",
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                s(&csr),
                "-CA",
                s(&self.cert),
                "-CAkey",
                s(&self.key),
                "-set_serial",
                &SERIAL.fetch_add(1, Ordering::Relaxed).to_string(),
                "-days",
                &days.to_string(),
                "-extfile",
                s(&ext),
                "-out",
                s(&cert),
            ],
            "a certificate from the test CA",
        );
        (cert, key)
    }
}
