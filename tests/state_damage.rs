//! Issue 13: a damaged state store never costs a duplicate, a panic or a silent wrong answer.
//! Against real Dovecots (different time zones): after a first sync, the sled store under
//! `state/db` is damaged in several ways, then new mail arrives and `sync` runs again.
//!
//! Measured on sled 0.34: a truncated or overwritten data file is mostly opened without a word
//! (sled drops what fails its checksums): the UID maps that are gone are rebuilt by matching, so
//! only the new mail is copied. Some damage (an emptied data file after an earlier repair, a
//! damaged `conf` file) makes the open fail: exit 4, with the way out (move the directory aside
//! and run again), which then copies nothing twice either. A
//! `state_dir` that is a file is a configuration error (exit 2). No case panics.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const PW: &str = "pw";

/// alice's two servers and the config (password [`PW`]), and how many messages were sent.
struct World {
    m: DovecotPair,
    sent: usize,
}

impl World {
    fn new() -> World {
        let mut w = World {
            m: DovecotPair::plain(&["alice"], "[sync]\njobs = 1\n"),
            sent: 0,
        };
        w.mail(30);
        let (code, copied, err) = w.sync();
        assert_eq!((code, copied), (0, Some(30)), "{err}");
        w
    }

    /// `n` more messages on the old server (INBOX and Work).
    fn mail(&mut self, n: usize) {
        let mut c = TestImap::connect(self.m.old.port(), "alice", PW);
        if self.sent == 0 {
            c.create("Work");
        }
        for _ in 0..n {
            let i = self.sent;
            self.sent += 1;
            let m = format!(
                "From: a@example.com\r\nSubject: m {i}\r\nMessage-ID: <m{i}@example.com>\r\n\r\nbody {i}\r\n"
            );
            let folder = if i % 3 == 0 { "Work" } else { "INBOX" };
            c.append(folder, &["\\Seen"], None, m.as_bytes()).unwrap();
        }
        c.logout();
    }

    fn state(&self) -> PathBuf {
        self.m.state()
    }

    fn sync(&self) -> (i32, Option<u64>, String) {
        let out = self.m.run_cmd("sync", &["--json"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        let copied = sync_report(&out.stdout)
            .ok()
            .and_then(|j| j["copied"].as_u64());
        (out.status.code().unwrap_or(-1), copied, err)
    }

    /// The new server holds each old message exactly once.
    fn assert_exact(&self) {
        let mut o = TestImap::connect(self.m.old.port(), "alice", PW);
        let mut n = TestImap::connect(self.m.new.port(), "alice", PW);
        for f in ["INBOX", "Work"] {
            if let Err(e) = diff_folder(f, &o.fetch_all(f), &n.fetch_all(f)) {
                panic!("{f}: {e}");
            }
        }
    }
}

/// A way to damage a file.
type Damage = Box<dyn Fn(&Path)>;

fn overwrite(path: &Path, seed: u64, count: usize) {
    let mut b = std::fs::read(path).unwrap();
    let mut rng = Rng::new(seed);
    let n = b.len();
    for _ in 0..count {
        let i = rng.below(n);
        b[i] = rng.below(256) as u8;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_damaged_data_file_is_rebuilt_by_matching_without_duplicates() {
    let mut w = World::new();
    let data = w.state().join("db/db");
    let damages: [(&str, Damage); 4] = [
        (
            "truncated to half",
            Box::new(|p: &Path| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len / 2).unwrap();
            }),
        ),
        (
            "emptied",
            Box::new(|p: &Path| std::fs::write(p, b"").unwrap()),
        ),
        (
            "200 bytes overwritten",
            Box::new(|p: &Path| overwrite(p, 7, 200)),
        ),
        (
            "4000 bytes overwritten",
            Box::new(|p: &Path| overwrite(p, 11, 4000)),
        ),
    ];
    for (what, damage) in damages {
        damage(&data);
        w.mail(3);
        let (code, copied, err) = w.sync();
        if code == 4 {
            // sled refused to open it: the way out is named, and taken.
            assert!(err.contains("move it aside"), "{what}: {err}");
            std::fs::remove_dir_all(w.state()).unwrap();
            let (code, copied, err) = w.sync();
            assert_eq!((code, copied), (0, Some(3)), "{what}, moved aside: {err}");
        } else {
            assert_eq!((code, copied), (0, Some(3)), "{what}: {err}");
        }
        w.assert_exact();
    }
    let out = w.m.run_cmd("verify", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_store_that_cannot_be_opened_names_the_way_out() {
    let mut w = World::new();
    std::fs::write(w.state().join("db/conf"), b"garbage\n\x00\x01").unwrap();
    w.mail(4);
    let (code, _, err) = w.sync();
    let state = w.state();
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "move it aside (mv {0} {0}.damaged) and run again",
            state.display()
        )),
        "{err}"
    );
    // Nothing was touched on the new server.
    let mut n = TestImap::connect(w.m.new.port(), "alice", PW);
    assert_eq!(n.status("INBOX").0 + n.status("Work").0, 30);
    n.logout();
    // The way out.
    std::fs::rename(&state, w.m.dir.path().join("state.damaged")).unwrap();
    let (code, copied, err) = w.sync();
    assert_eq!((code, copied), (0, Some(4)), "{err}");
    w.assert_exact();
}

#[test]
fn a_state_dir_that_is_a_file_is_a_configuration_error() {
    let w = World::new();
    std::fs::remove_dir_all(w.state()).unwrap();
    std::fs::write(w.state(), b"not a directory").unwrap();
    let (code, _, err) = w.sync();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot create the state directory") && err.contains("state_dir"),
        "{err}"
    );
}
