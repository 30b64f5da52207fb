//! Repeated syncs bring the new server to the old server's current state, exactly once:
//! flag changes, expunges (only with --propagate-deletes), mail delivered only to the new side,
//! folders recreated on either side (UIDVALIDITY changes), a lost state directory, and servers
//! without UIDPLUS and CONDSTORE. Real Dovecot servers; the independent `TestImap` judges.

mod common;

use common::{
    dovecot_opts, run_imapshift, sum_over_folders as total, Dovecot, DovecotPair, TestImap, TestMsg,
};
use std::path::Path;

const ENVS: &[(&str, &str)] = common::ALICE_ENVS;

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: s{i}@example.com\r\nTo: alice@example.com\r\nSubject: message {i}\r\nMessage-ID: <inc{i}@example.com>\r\n\r\n{}\r\n",
        "text ".repeat(20 + i * 3)
    )
    .into_bytes()
}

fn seed(old: &Dovecot) {
    let mut c = TestImap::connect(old.port(), "alice", "old-a");
    c.create("Work");
    for i in 0..20 {
        let folder = if i % 4 == 0 { "Work" } else { "INBOX" };
        let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
        c.append(
            folder,
            flags,
            Some("10-Oct-2022 10:10:10 +0000"),
            &message(i),
        )
        .unwrap();
    }
    c.logout();
}

/// Two servers, alice seeded on the old one, one complete sync done.
fn synced() -> (Dovecot, Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let m = DovecotPair::alice();
    seed(&m.old);
    sync_ok(&m.cfg, &[]);
    (m.old, m.new, m.dir, m.cfg)
}

fn sync(cfg: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["sync", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run_imapshift(&args, ENVS);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut j: serde_json::Value = common::sync_report(stdout.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}"));
    j["exit"] = out.status.code().unwrap_or(-1).into();
    j["stderr"] = stderr.into_owned().into();
    j
}

fn ok(j: &serde_json::Value) {
    assert_eq!(j["exit"], 0, "sync failed: {}", j);
}

/// [`sync`], which must succeed.
#[track_caller]
fn sync_ok(cfg: &Path, extra: &[&str]) -> serde_json::Value {
    let j = sync(cfg, extra);
    ok(&j);
    j
}

/// Mail delivered to alice's `folder` on the new server only (after the cutover).
fn deliver_to_new(new: &Dovecot, folder: &str, body: &[u8]) {
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    n.append(folder, &[], None, body).unwrap();
    n.logout();
}

/// Appends copies of `msgs` (bytes, flags, INTERNALDATE) to `folder`.
fn append_copies(c: &mut TestImap, folder: &str, msgs: &[TestMsg]) {
    for m in msgs {
        let flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
        c.append(folder, &flags, Some(&m.internaldate), &m.body)
            .unwrap();
    }
}

/// Body, flags and INTERNALDATE as an instant (the servers spell it in different zones).
fn key(m: &TestMsg) -> (Vec<u8>, Vec<String>, i64) {
    (m.body.clone(), m.flags.clone(), m.instant())
}

/// The new folder holds exactly the old folder's messages (plus `extra` new-only bodies).
fn assert_mirror(old: &Dovecot, new: &Dovecot, folder: &str, extra: &[&[u8]]) {
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let a: Vec<_> = o.fetch_all(folder).iter().map(key).collect();
    let mut b: Vec<_> = n.fetch_all(folder).iter().map(key).collect();
    for e in extra {
        let pos = b.iter().position(|(body, _, _)| body.as_slice() == *e);
        assert!(
            pos.is_some(),
            "{folder}: new-only message missing on the new server"
        );
        b.remove(pos.unwrap());
    }
    let mut a_sorted = a.clone();
    a_sorted.sort();
    b.sort();
    assert_eq!(
        a_sorted.len(),
        b.len(),
        "{folder}: {} old vs {} new (duplicate or gap)",
        a_sorted.len(),
        b.len()
    );
    assert_eq!(a_sorted, b, "{folder}: contents or flags differ");
}

/// Also the regression test for pipelined FETCHes that Dovecot runs in parallel: their replies
/// interleave, and the flag changes used to be lost among the new-message replies.
#[test]
fn flag_and_keyword_changes_are_carried() {
    let (old, new, _dir, cfg) = synced();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let msgs = o.fetch_all("INBOX");
    o.store_flags("INBOX", msgs[0].uid, "+FLAGS", &["\\Flagged", "$Important"]);
    o.store_flags("INBOX", msgs[1].uid, "-FLAGS", &["\\Seen"]);
    o.store_flags("INBOX", msgs[2].uid, "+FLAGS", &["\\Answered"]);
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
    assert_eq!(total(&j, "flags_updated"), 3, "{j}");
    assert_mirror(&old, &new, "INBOX", &[]);
    // Nothing changed since: nothing to do.
    let j = sync_ok(&cfg, &[]);
    assert_eq!(total(&j, "flags_updated"), 0, "{j}");
}

#[test]
fn expunges_propagate_only_when_asked_and_new_only_mail_survives() {
    let (old, new, _dir, cfg) = synced();
    // Mail delivered only to the new server (after cutover): sacred.
    let only_new: &[u8] = b"From: x@example.com\r\nSubject: delivered to the new server\r\nMessage-ID: <new-only@example.com>\r\n\r\nhello\r\n";
    deliver_to_new(&new, "INBOX", only_new);
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let msgs = o.fetch_all("INBOX");
    o.expunge_uid("INBOX", msgs[0].uid);
    o.expunge_uid("INBOX", msgs[3].uid);
    o.logout();

    // Default: the copies stay.
    let j = sync_ok(&cfg, &[]);
    assert_eq!(total(&j, "kept"), 2, "{j}");
    assert_eq!(total(&j, "deleted"), 0, "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(
        n.fetch_all("INBOX").len(),
        15 + 1,
        "nothing deleted without --propagate-deletes"
    );
    n.logout();
    // --final without propagate_deletes_on_final: still nothing deleted.
    let j = sync_ok(&cfg, &["--final"]);
    assert_eq!(total(&j, "deleted"), 0, "{j}");

    // With propagation: exactly the two copies go; the new-only message stays.
    let j = sync_ok(&cfg, &["--propagate-deletes"]);
    assert_eq!(total(&j, "deleted"), 2, "{j}");
    assert_mirror(&old, &new, "INBOX", &[only_new]);
    assert_mirror(&old, &new, "Work", &[]);
    let j = sync_ok(&cfg, &["--propagate-deletes"]);
    assert_eq!(total(&j, "deleted"), 0, "{j}");
    assert_mirror(&old, &new, "INBOX", &[only_new]);

    // --final with propagate_deletes_on_final = true propagates too.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}[sync]\npropagate_deletes_on_final = true\n"),
    )
    .unwrap();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let w = o.fetch_all("Work");
    o.expunge_uid("Work", w[0].uid);
    o.logout();
    let j = sync_ok(&cfg, &["--final"]);
    assert_eq!(total(&j, "deleted"), 1, "{j}");
    assert_mirror(&old, &new, "Work", &[]);
    assert_mirror(&old, &new, "INBOX", &[only_new]);
}

#[test]
fn lost_state_directory_copies_nothing_twice() {
    let (old, new, dir, cfg) = synced();
    let only_new: &[u8] = b"Subject: only on new\r\nMessage-ID: <only@example.com>\r\n\r\nx\r\n";
    deliver_to_new(&new, "INBOX", only_new);
    // A new message on the old side and a flag change, then the state is lost.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.append("INBOX", &[], None, &message(100)).unwrap();
    let m = o.fetch_all("INBOX");
    o.store_flags("INBOX", m[1].uid, "+FLAGS", &["\\Flagged"]);
    o.logout();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 1, "only the new message is copied: {j}");
    assert_eq!(total(&j, "remapped"), 20, "{j}");
    assert_eq!(total(&j, "flags_updated"), 1, "{j}");
    assert_mirror(&old, &new, "INBOX", &[only_new]);
    assert_mirror(&old, &new, "Work", &[]);
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
    assert_eq!(total(&j, "remapped"), 0, "{j}");
}

#[test]
fn old_folder_recreated_with_same_mail_is_remapped() {
    let (old, new, _dir, cfg) = synced();
    // Work is deleted and recreated (new UIDVALIDITY) with 4 of its 5 messages plus a new one.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let before = o.fetch_all("Work");
    assert_eq!(before.len(), 5);
    // Dovecot ends a session whose selected folder is deleted: delete from a fresh one.
    o.logout();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.delete_mailbox("Work");
    o.create("Work");
    append_copies(&mut o, "Work", &before[1..]);
    o.append("Work", &[], None, &message(200)).unwrap();
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 1, "{j}");
    assert_eq!(total(&j, "remapped"), 4, "{j}");
    // The copy of the message that is gone stays (deletions are not propagated).
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("Work").len(), 6);
    n.logout();
    sync_ok(&cfg, &[]);
}

#[test]
fn old_folder_replaced_by_different_mail_stops_that_folder() {
    let (old, new, _dir, cfg) = synced();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.delete_mailbox("Work");
    o.create("Work");
    for i in 300..304 {
        o.append("Work", &[], None, &message(i)).unwrap();
    }
    o.logout();
    let j = sync(&cfg, &[]);
    assert_eq!(j["exit"], 1, "the folder fails, the run goes on: {j}");
    let f = j["users"][0]["failures"].as_array().unwrap();
    assert!(
        f.iter().any(|f| f["folder"] == "Work"
            && f["reason"]
                .as_str()
                .unwrap()
                .contains("UIDVALIDITY changed")
            && f["reason"].as_str().unwrap().contains("--force-remap")),
        "{j}"
    );
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(
        n.fetch_all("Work").len(),
        5,
        "nothing copied into Work on a guess"
    );
    n.logout();
    assert_mirror(&old, &new, "INBOX", &[]);
    // The admin confirms: the 4 new messages are copied, the old copies stay.
    let j = sync_ok(&cfg, &["--force-remap"]);
    assert_eq!(j["copied"], 4, "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("Work").len(), 9);
    n.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn new_folder_recreated_is_filled_again() {
    let (old, new, _dir, cfg) = synced();
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    n.delete_mailbox("Work");
    n.create("Work");
    n.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 5, "{j}");
    assert_mirror(&old, &new, "Work", &[]);
    assert_mirror(&old, &new, "INBOX", &[]);
    let j = sync(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn server_without_uidplus_and_condstore() {
    let caps = "imap_capability = IMAP4rev1 LITERAL+ MULTIAPPEND\n";
    let DovecotPair {
        old, new, dir, cfg, ..
    } = DovecotPair::alice_with(dovecot_opts(caps), dovecot_opts(caps));
    seed(&old);
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 20);
    assert_mirror(&old, &new, "INBOX", &[]);
    // New UIDs were found without APPENDUID: flag changes reach the right copies.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let m = o.fetch_all("INBOX");
    o.store_flags("INBOX", m[4].uid, "+FLAGS", &["\\Flagged"]);
    o.expunge_uid("INBOX", m[5].uid);
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(total(&j, "flags_updated"), 1, "{j}");
    // Deleting needs UID EXPUNGE (UIDPLUS): refused with a clear reason, nothing else deleted.
    let j = sync(&cfg, &["--propagate-deletes"]);
    assert_eq!(j["exit"], 1, "{j}");
    assert!(j.to_string().contains("lacks UIDPLUS"), "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 15);
    n.logout();
    // Lost state on such a server: still nothing copied twice.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn dry_run_shows_the_plan_and_status_shows_the_state() {
    let (old, _new, _dir, cfg) = synced();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let m = o.fetch_all("INBOX");
    o.store_flags("INBOX", m[0].uid, "+FLAGS", &["\\Flagged"]);
    o.expunge_uid("INBOX", m[1].uid);
    o.append("INBOX", &[], None, &message(500)).unwrap();
    o.logout();
    let out = run_imapshift(
        &[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--dry-run",
            "--propagate-deletes",
        ],
        ENVS,
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("INBOX -> INBOX: 1 to copy") && text.contains("1 flag updates, 1 to delete"),
        "{text}"
    );
    // Nothing was changed by the dry run.
    let j = sync_ok(&cfg, &["--propagate-deletes"]);
    assert_eq!(j["copied"], 1);
    assert_eq!(total(&j, "flags_updated"), 1);
    assert_eq!(total(&j, "deleted"), 1);

    let out = run_imapshift(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        ENVS,
    );
    assert_eq!(out.status.code(), Some(0));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s[0]["mapped_messages"], 20, "{s}");
    assert_eq!(s[0]["pending_intents"], 0, "{s}");
    assert_eq!(s[0]["folders"], 2, "{s}");
    assert_eq!(s[0]["last_run"]["status"], "ok", "{s}");
    let out = run_imapshift(&["status", "--config", cfg.to_str().unwrap()], ENVS);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alice") && text.contains("ok "), "{text}");
}

#[test]
fn unchanged_rerun_is_one_status_per_folder() {
    let (_old, _new, _dir, cfg) = synced();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap()],
        &[ENVS[0], ENVS[1], ("IMAPSHIFT_LOG", "trace")],
    );
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    let commands: Vec<&str> = log.lines().filter(|l| l.contains(" C: ")).collect();
    for bad in ["EXAMINE", "FETCH", "APPEND", "SELECT", "STORE"] {
        assert!(
            !commands.iter().any(|l| l.contains(bad)),
            "unexpected {bad} in a no-change run:\n{}",
            commands.join("\n")
        );
    }
    assert_eq!(
        commands.iter().filter(|l| l.contains("STATUS")).count(),
        4,
        "one STATUS per folder and side:\n{}",
        commands.join("\n")
    );
}

#[test]
fn folder_renamed_on_old_is_renamed_on_new() {
    let (old, new, _dir, cfg) = synced();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let r = o.raw("RENAME \"Work\" \"Projects\"");
    assert!(r.is_ok(), "{} {}", r.status, r.text);
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "a renamed folder is not copied again: {j}");
    assert_eq!(j["users"][0]["renamed_folders"][0][0], "Work", "{j}");
    assert_eq!(j["users"][0]["renamed_folders"][0][1], "Projects", "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let names: Vec<String> = n.list().into_iter().map(|(_, _, name)| name).collect();
    assert!(
        names.contains(&"Projects".to_string()) && !names.contains(&"Work".to_string()),
        "{names:?}"
    );
    n.logout();
    assert_mirror(&old, &new, "Projects", &[]);
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
}

#[test]
fn folder_deleted_on_old_is_kept_or_removed_with_propagation() {
    let DovecotPair {
        old,
        new,
        dir: _dir,
        cfg,
        ..
    } = DovecotPair::alice();
    seed(&old);
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.create("Old2");
    o.append("Old2", &[], None, &message(700)).unwrap();
    o.logout();
    sync_ok(&cfg, &[]);
    // Work also receives mail on the new server only.
    let only_new: &[u8] = b"Subject: new-only in Work\r\nMessage-ID: <w@example.com>\r\n\r\nx\r\n";
    deliver_to_new(&new, "Work", only_new);
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.delete_mailbox("Work");
    o.delete_mailbox("Old2");
    o.logout();
    let j = sync_ok(&cfg, &[]);
    let gone = j["users"][0]["gone_folders"].to_string();
    assert!(gone.contains("Work") && gone.contains("Old2"), "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    assert_eq!(
        n.fetch_all("Work").len(),
        6,
        "kept without --propagate-deletes"
    );
    assert_eq!(n.fetch_all("Old2").len(), 1);
    n.logout();
    let j = sync_ok(&cfg, &["--propagate-deletes"]);
    let deleted = j["users"][0]["deleted_folders"].to_string();
    assert!(deleted.contains("Work") && deleted.contains("Old2"), "{j}");
    let mut n = TestImap::connect(new.port(), "alice", "new-a");
    let names: Vec<String> = n.list().into_iter().map(|(_, _, name)| name).collect();
    assert!(
        !names.contains(&"Old2".to_string()),
        "the emptied folder imapshift created is gone: {names:?}"
    );
    let work = n.fetch_all("Work");
    assert_eq!(work.len(), 1, "only the new-only message stays in Work");
    assert_eq!(work[0].body, only_new);
    n.logout();
    assert_mirror(&old, &new, "INBOX", &[]);
}

#[test]
fn folder_recreated_under_another_name_is_recognised_by_content() {
    let (old, new, _dir, cfg) = synced();
    // "Work" becomes "Projects" with a new UIDVALIDITY (as a server without stable RENAME does).
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let before = o.fetch_all("Work");
    o.logout();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.delete_mailbox("Work");
    o.create("Projects");
    append_copies(&mut o, "Projects", &before);
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
    assert_eq!(total(&j, "remapped"), 5, "{j}");
    assert_eq!(j["users"][0]["renamed_folders"][0][1], "Projects", "{j}");
    assert_mirror(&old, &new, "Projects", &[]);
}

#[test]
fn changed_folder_is_read_incrementally_with_condstore() {
    let (old, new, _dir, cfg) = synced();
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let m = o.fetch_all("INBOX");
    o.store_flags("INBOX", m[2].uid, "+FLAGS", &["\\Flagged"]);
    o.append("INBOX", &[], None, &message(600)).unwrap();
    o.logout();
    let out = run_imapshift(
        &["sync", "--config", cfg.to_str().unwrap(), "--json"],
        &[ENVS[0], ENVS[1], ("IMAPSHIFT_LOG", "imapshift=trace")],
    );
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = common::sync_report(&out.stdout).unwrap();
    assert_eq!(j["copied"], 1, "{j}");
    assert_eq!(total(&j, "flags_updated"), 1, "{j}");
    let log = String::from_utf8_lossy(&out.stderr);
    let old_cmds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" C: ") && l.contains("old server"))
        .collect();
    assert!(
        old_cmds.iter().any(|l| l.contains("CHANGEDSINCE")),
        "{}",
        old_cmds.join("\n")
    );
    assert!(
        // The full listing is a sequence-number FETCH; the incremental reads use UID FETCH.
        !old_cmds.iter().any(|l| l
            .split(" C: ")
            .nth(1)
            .is_some_and(|c| c.split(' ').nth(1) == Some("FETCH"))),
        "no full listing of a folder with few changes:\n{}",
        old_cmds.join("\n")
    );
    assert_mirror(&old, &new, "INBOX", &[]);
    // An expunge is found too (UID SEARCH), and propagated when asked.
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    let m = o.fetch_all("INBOX");
    o.expunge_uid("INBOX", m[3].uid);
    o.logout();
    let j = sync_ok(&cfg, &["--propagate-deletes"]);
    assert_eq!(total(&j, "deleted"), 1, "{j}");
    assert_mirror(&old, &new, "INBOX", &[]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn stale_state_restored_from_a_backup_copies_nothing_twice() {
    let (old, new, dir, cfg) = synced();
    // A backup of the state, then more mail is copied by a run the backup does not know.
    let backup = dir.path().join("state-backup");
    copy_dir(&dir.path().join("state"), &backup);
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    for i in 800..806 {
        o.append("INBOX", &[], None, &message(i)).unwrap();
    }
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 6, "{j}");
    // Mail delivered only to the new server meanwhile.
    let only_new: &[u8] =
        b"Subject: delivered to new\r\nMessage-ID: <stale-new@example.com>\r\n\r\nx\r\n";
    deliver_to_new(&new, "INBOX", only_new);
    // The state directory is replaced by the older backup, and one more message arrives.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    copy_dir(&backup, &dir.path().join("state"));
    let mut o = TestImap::connect(old.port(), "alice", "old-a");
    o.append("INBOX", &[], None, &message(900)).unwrap();
    o.logout();
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 1, "only the really new message: {j}");
    assert_eq!(total(&j, "remapped"), 6, "{j}");
    assert_mirror(&old, &new, "INBOX", &[only_new]);
    let j = sync_ok(&cfg, &[]);
    assert_eq!(j["copied"], 0, "{j}");
}
