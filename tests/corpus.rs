//! Every message of the real-world corpus (`$IMAPSHIFT_CORPUS/real`, 937 files) must survive a
//! migration byte for byte, with flags and INTERNALDATE.
//!
//! `.ci/run` sets `IMAPSHIFT_CORPUS`; then this test must run and fails if the folder is missing.
//! On a user's machine without the corpus it says plainly that it did not run. Messages the old
//! server itself refuses are listed, never hidden.

mod common;

use common::{
    corpus_dir, corpus_files, run_imapshift, write_config, Dovecot, DovecotOpts, TestImap,
};
use std::collections::BTreeMap;

/// The old-server folder of a corpus file: one per source project, under `corpus`.
fn folder_of(rel: &std::path::Path) -> String {
    let source = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    format!("corpus.{}", source.replace('.', "-"))
}

#[test]
fn corpus_round_trips_byte_for_byte() {
    let Some(dir) = corpus_dir() else {
        eprintln!("corpus_round_trips_byte_for_byte: DID NOT RUN: IMAPSHIFT_CORPUS is not set (scripts/test sets it to ../shared/corpus)");
        return;
    };
    let files = corpus_files(&dir);
    assert!(
        files.len() >= 900,
        "expected the 937-message corpus, found {} files",
        files.len()
    );

    let old = Dovecot::start(
        "corpus-old",
        &[("alice", "old-a")],
        DovecotOpts {
            tls: false,
            extra_conf: "namespace inbox {\n  inbox = yes\n  separator = .\n}\n".into(),
            ..Default::default()
        },
    );
    let new = Dovecot::start(
        "corpus-new",
        &[("alice", "new-a")],
        DovecotOpts {
            tls: false,
            extra_conf: "namespace inbox {\n  inbox = yes\n  separator = /\n}\n".into(),
            ..Default::default()
        },
    );

    // One folder per source project, nested under "corpus"; flags and dates vary.
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    let mut folders: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_by_old = Vec::new();
    let mut binary_appended = 0;
    for (i, f) in files.iter().enumerate() {
        let rel = f.strip_prefix(dir.join("real")).unwrap();
        let folder = folder_of(rel);
        if !folders.contains_key(&folder) {
            c.create(&folder);
        }
        let bytes = std::fs::read(f).unwrap();
        let flags: &[&str] = match i % 5 {
            0 => &[],
            1 => &["\\Seen"],
            2 => &["\\Seen", "\\Answered", "$Forwarded"],
            3 => &["\\Flagged", "customer-acme"],
            _ => &["\\Draft", "\\Deleted"],
        };
        let date = format!(
            "{:02}-Jun-20{:02} {:02}:{:02}:{:02} +0{}00",
            1 + i % 28,
            10 + i % 15,
            i % 24,
            i % 60,
            (i * 13) % 60,
            i % 10
        );
        let r = c.append(&folder, flags, Some(&date), &bytes);
        let r = match r {
            Err(_) if bytes.contains(&0) => {
                binary_appended += 1;
                c.append_binary(&folder, flags, Some(&date), &bytes)
            }
            r => r,
        };
        match r {
            Ok(_) => *folders.entry(folder).or_default() += 1,
            Err(e) => {
                folders.entry(folder).or_default();
                refused_by_old.push(format!("{} ({e})", rel.display()));
            }
        }
    }
    c.logout();
    let stored: usize = folders.values().sum();
    eprintln!(
        "corpus: {} files, {stored} stored on the old server in {} folders ({binary_appended} needed BINARY), {} refused by the old server:",
        files.len(),
        folders.len(),
        refused_by_old.len()
    );
    for r in &refused_by_old {
        eprintln!("  refused by old server: {r}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &old,
        &new,
        &[("alice", "alice", "A_OLD", "A_NEW")],
    );
    let envs = [("A_OLD", "old-a"), ("A_NEW", "new-a")];
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &envs,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let j: serde_json::Value =
        common::sync_report(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    eprintln!(
        "sync: copied {} failed {} in {:.2} s",
        j["copied"],
        j["failed"],
        j["seconds"].as_f64().unwrap_or(0.0)
    );
    for f in j["users"][0]["failures"].as_array().unwrap() {
        eprintln!("  refused by new server: {f}");
    }
    assert_eq!(out.status.code(), Some(0), "{j}\n{stderr}");
    assert_eq!(j["copied"].as_u64().unwrap() as usize, stored, "{j}");

    // Independent check: every message, old against new, in order.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let mut compared = 0;
    for (folder, count) in &folders {
        let a = o.fetch_all(folder);
        let b = n.fetch_all(&folder.replace('.', "/"));
        assert_eq!(a.len(), *count, "old {folder}");
        assert_eq!(
            a.len(),
            b.len(),
            "{folder}: {} old, {} new",
            a.len(),
            b.len()
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x.body == y.body,
                "{folder}: old UID {} and new UID {} differ in bytes ({} vs {} bytes)",
                x.uid,
                y.uid,
                x.body.len(),
                y.body.len()
            );
            assert_eq!(x.flags, y.flags, "{folder}: flags of old UID {}", x.uid);
            // The same instant; the servers spell it in their own zones.
            assert_eq!(
                x.instant(),
                y.instant(),
                "{folder}: INTERNALDATE of old UID {}: {:?} vs {:?}",
                x.uid,
                x.internaldate,
                y.internaldate
            );
            compared += 1;
        }
    }
    assert_eq!(compared, stored);

    // Messages with NUL bytes: Dovecot shows NUL as 0x80 in BODY[] (quirk nul-as-0x80). Where
    // BINARY[] reveals the NULs without changing anything else, the new server must hold the
    // NULs too; other cases are listed (they are copied as the old server shows them).
    let mut nul_checked = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if !bytes.contains(&0) {
            continue;
        }
        let rel = f.strip_prefix(dir.join("real")).unwrap();
        let folder = folder_of(rel);
        let olds = o.fetch_all(&folder);
        let news = n.fetch_all(&folder.replace('.', "/"));
        for (x, y) in olds.iter().zip(&news) {
            if !x.body.contains(&0x80) {
                continue;
            }
            let bo = o.fetch_binary(&folder, x.uid);
            if !bo.contains(&0) {
                continue;
            }
            let restorable = bo.len() == x.body.len()
                && bo
                    .iter()
                    .zip(&x.body)
                    .all(|(&b, &a)| a == b || (a == 0x80 && b == 0));
            let bn = n.fetch_binary(&folder.replace('.', "/"), y.uid);
            if restorable {
                assert_eq!(
                    bo,
                    bn,
                    "{}: NUL bytes not preserved (old UID {}, new UID {})",
                    rel.display(),
                    x.uid,
                    y.uid
                );
                nul_checked += 1;
            } else {
                eprintln!("  NUL shown as 0x80 by the old server, BINARY[] differs otherwise: {} (old UID {}); copied as BODY[] shows it", rel.display(), x.uid);
            }
        }
    }
    eprintln!("corpus: {nul_checked} messages with NUL bytes preserved via BINARY");

    // A re-run over the corpus copies nothing, fetches no message body and appends nothing
    // (the IMAP conversation is traced; literals are shown by size only).
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[envs[0], envs[1], ("IMAPSHIFT_LOG", "trace")],
    );
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(j["copied"], 0, "{j}");
    let log = String::from_utf8_lossy(&out.stderr);
    let commands: Vec<&str> = log.lines().filter(|l| l.contains(" C: ")).collect();
    assert!(!commands.is_empty(), "the trace shows the commands");
    for bad in ["BODY.PEEK[]", "BINARY.PEEK[]", "APPEND"] {
        assert!(
            !commands.iter().any(|l| l.contains(bad)),
            "no-change re-run sent {bad}:\n{}",
            commands.join("\n")
        );
    }

    // And `verify`, by content, down to every message's bytes: OK, exit 0.
    let out = run_imapshift(
        &[
            "verify",
            "--config",
            cfg.to_str().unwrap(),
            "--deep",
            "--json",
        ],
        &[envs[0], envs[1]],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "verify: {v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["totals"]["missing"], 0);
    assert_eq!(v["totals"]["body_differs"], 0, "{v:#}");
    eprintln!(
        "corpus: verify --deep OK over {} messages",
        v["totals"]["old_messages"]
    );
}
