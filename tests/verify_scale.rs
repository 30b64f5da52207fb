//! `imapshift verify` on a 20,000-message folder through its chunked, spilling path (issue 11,
//! item 8), against real Dovecots. Both Maildirs are written directly (the same files, the same
//! mtimes, so the same INTERNALDATEs), then the new one differs on purpose: 3 messages missing,
//! one message twice, one with `\Seen` removed, one only on the new side.
//! `IMAPSHIFT_VERIFY_CHUNK=1000` forces listing chunks of 1000 messages, buckets of 1000 records
//! (40 of them) and spills to disk; the result must be exactly the one of the default (one
//! bucket in memory), and `IMAPSHIFT_VERIFY_MAX_LISTED=2` caps the list while every count stays
//! exact.

mod common;

use common::{run_imapshift, Dovecot, DovecotOpts};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const N: usize = 20_000;
const MISSING: [usize; 3] = [5, 7777, 19_999];
const TWICE: usize = 100;
const UNSEEN: usize = 200;

fn body(i: usize) -> String {
    format!("Message-ID: <m{i}@example.com>\nSubject: msg {i}\nFrom: a@example.com\n\nbody {i}\n")
}

/// A Maildir for `login` with the files `(name, content)`, owned by the mail user, every file's
/// mtime (the INTERNALDATE) at a fixed instant plus its index in seconds.
fn fill(server: &Dovecot, login: &str, files: &[(String, String)]) {
    let md = server.maildir(login);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (k, (name, text)) in files.iter().enumerate() {
        let p = md.join("cur").join(name);
        std::fs::write(&p, text).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(base + std::time::Duration::from_secs(k as u64 % 86_400))
            .unwrap();
    }
    let home = server.dir().join("home");
    let meta = std::fs::metadata(&home).unwrap();
    let out = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", meta.uid(), meta.gid()))
        .arg(home.join(login))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn name(i: usize, copy: usize, flags: &str) -> String {
    format!("1700000000.M{i:06}P{copy}.test:2,{flags}")
}

fn verify(cfg: &Path, envs: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let mut e = vec![("PW", "pw")];
    e.extend_from_slice(envs);
    let out = run_imapshift(&["verify", "--config", cfg.to_str().unwrap(), "--json"], &e);
    let j = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), j)
}

/// (kind, Message-ID, detail) of every listed difference.
fn listed(j: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    j["users"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["message_id"].as_str().unwrap_or("").to_string(),
                d["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_large_folder_verifies_in_chunks_and_buckets() {
    let users = [("alice", "pw")];
    let old = Dovecot::start("old", &users, DovecotOpts::default());
    let new = Dovecot::start("new", &users, DovecotOpts::default());
    // The same file (name, content, mtime) on both sides; the index k sets the mtime.
    let old_files: Vec<(String, String)> = (0..N).map(|i| (name(i, 1, "S"), body(i))).collect();
    let mut new_files: Vec<(String, String)> = old_files
        .iter()
        .enumerate()
        .map(|(i, (n, b))| {
            if i == UNSEEN {
                (name(i, 1, ""), b.clone())
            } else {
                (n.clone(), b.clone())
            }
        })
        .collect();
    fill(&old, "alice", &old_files);
    // Missing files keep their index (so every other file keeps its mtime): they are written
    // under another name and removed before Dovecot first sees the Maildir.
    let extra = [
        (name(TWICE, 2, "S"), body(TWICE)),
        (name(N + 1, 1, ""), body(N + 1)),
    ];
    for i in MISSING {
        new_files[i].0 = format!("gone-{i}");
    }
    fill(&new, "alice", &new_files);
    let cur = new.maildir("alice").join("cur");
    for i in MISSING {
        std::fs::remove_file(cur.join(format!("gone-{i}"))).unwrap();
    }
    // The duplicate gets the original's mtime (its index TWICE), the new-only message any.
    let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (k, (n, b)) in extra.iter().enumerate() {
        let p = cur.join(n);
        std::fs::write(&p, b).unwrap();
        let at = if k == 0 { TWICE as u64 } else { 50_000 };
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(base + std::time::Duration::from_secs(at))
            .unwrap();
    }
    fill(&new, "alice", &[]);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imapshift.toml");
    std::fs::write(
        &cfg,
        common::plain_config(old.port(), new.port(), "", "", "", &["alice"]),
    )
    .unwrap();

    let want: BTreeSet<(String, String, String)> = MISSING
        .iter()
        .map(|i| {
            (
                "missing".to_string(),
                format!("<m{i}@example.com>"),
                String::new(),
            )
        })
        .chain([
            (
                "flags".to_string(),
                format!("<m{UNSEEN}@example.com>"),
                "removed \\seen".to_string(),
            ),
            (
                "duplicate".to_string(),
                format!("<m{TWICE}@example.com>"),
                "one more copy than on the old server".to_string(),
            ),
        ])
        .collect();
    let check_counts = |j: &serde_json::Value| {
        let u = &j["users"][0];
        assert_eq!(u["status"], "differs", "{u:#}");
        assert_eq!(u["old_messages"], N, "{}", u["error"]);
        assert_eq!(u["new_messages"], N - 3 + 2);
        assert_eq!(u["missing"], 3);
        assert_eq!(u["flags_differ"], 1);
        assert_eq!(u["duplicates"], 1);
        assert_eq!(u["only_new"], 1);
    };

    // The default: one bucket, in memory.
    let (code, j) = verify(&cfg, &[]);
    assert_eq!(code, Some(7));
    check_counts(&j);
    assert_eq!(j["users"][0]["folders"][0]["buckets"], 1);
    assert_eq!(j["users"][0]["folders"][0]["spilled"], false);
    assert_eq!(listed(&j), want);
    // The listing order: old-side findings by old UID, then new-side ones by new UID.
    let mut old_side: Vec<(u64, String)> = j["users"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| Some((d["old_uid"].as_u64()?, d["message_id"].to_string())))
        .collect();
    let listed_order: Vec<(u64, String)> = old_side.clone();
    old_side.sort();
    assert_eq!(
        listed_order, old_side,
        "old-side differences in old UID order"
    );
    let first_two: Vec<String> = old_side.iter().take(2).map(|x| x.1.clone()).collect();

    // Chunks of 1000, 40 buckets on disk: the same findings.
    let (code, j) = verify(&cfg, &[("IMAPSHIFT_VERIFY_CHUNK", "1000")]);
    assert_eq!(code, Some(7));
    check_counts(&j);
    let f = &j["users"][0]["folders"][0];
    assert_eq!(f["buckets"], 40, "{f:#}");
    assert_eq!(f["spilled"], true, "{f:#}");
    assert_eq!(listed(&j), want);
    assert_eq!(
        j["users"][0]["only_new_messages"][0]["message_id"],
        format!("<m{}@example.com>", N + 1)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("verify-spill")),
        "spill files left behind: {leftovers:?}"
    );

    // At most 2 listed, the first by UID (old-side findings first); the counts exact.
    let (code, j) = verify(
        &cfg,
        &[
            ("IMAPSHIFT_VERIFY_CHUNK", "1000"),
            ("IMAPSHIFT_VERIFY_MAX_LISTED", "2"),
        ],
    );
    assert_eq!(code, Some(7));
    check_counts(&j);
    let u = &j["users"][0];
    assert_eq!(u["differences"].as_array().unwrap().len(), 2, "{u:#}");
    assert_eq!(u["differences_omitted"], 3);
    let ids: Vec<String> = u["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message_id"].to_string())
        .collect();
    assert_eq!(ids, first_two, "{u:#}");
    assert_eq!(j["max_listed"], 2);
}
