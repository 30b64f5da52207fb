//! `imapshift verify` against real Dovecots: after a clean migration it says OK (exit 0); then
//! each injected difference on the new server is detected and named (a message deleted, a flag
//! removed, a keyword added, a message whose body differs but whose header block matches (only
//! with `--deep`), a missing folder, a message present twice, a lost subscription), while mail
//! only on the new side is listed and is no error. The HTML report renders in headless Chromium
//! and lists the users.

mod common;

use common::{run_imapshift, DovecotPair, TestImap, PW_ENVS};
use std::path::Path;
use std::process::Command;

const DATE: &str = "14-Mar-2024 09:26:53 +0000";

fn msg(id: &str, body: &str) -> Vec<u8> {
    format!("Subject: Note {id}\r\nMessage-ID: <{id}@example.com>\r\nFrom: a@example.com\r\n\r\n{body}\r\n").into_bytes()
}

fn verify(cfg: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["verify", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run_imapshift(&args, PW_ENVS);
    let j = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), j)
}

/// The entry of the user `old_login` in a verify report.
fn user<'a>(j: &'a serde_json::Value, old_login: &str) -> &'a serde_json::Value {
    j["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["old_login"] == old_login)
        .unwrap_or_else(|| panic!("no user {old_login} in {j:#}"))
}

fn kinds(j: &serde_json::Value, login: &str) -> Vec<(String, String, Option<u64>, Option<u64>)> {
    user(j, login)["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["folder"].as_str().unwrap().to_string(),
                d["old_uid"].as_u64(),
                d["new_uid"].as_u64(),
            )
        })
        .collect()
}

/// Headless Chromium, as the probe of this machine runs it.
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("install Chromium: apt-get install -y chromium (scripts/test does)");
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn verify_detects_and_names_every_difference() {
    let m = DovecotPair::plain(&["alice", "bob"], "");
    let (dir, cfg) = (&m.dir, &m.cfg);
    // Messages `<tag>0` to `<tag>{n-1}` in `user`'s `folder`, the first `seen` of them seen.
    let fill = |user: &str,
                folder: &str,
                tag: &str,
                n: usize,
                seen: usize,
                body: &dyn Fn(usize) -> String| {
        let mut c = TestImap::connect(m.old.port(), user, "pw");
        if folder != "INBOX" {
            c.create(folder);
            c.subscribe(folder);
        }
        for i in 0..n {
            let flags: &[&str] = if i < seen { &["\\Seen"] } else { &[] };
            c.append(
                folder,
                flags,
                Some(DATE),
                &msg(&format!("{tag}{i}"), &body(i)),
            )
            .unwrap();
        }
        c.logout();
    };
    fill("alice", "INBOX", "in", 6, 3, &|i| format!("inbox body {i}"));
    fill("alice", "Archive", "ar", 4, 4, &|i| {
        format!("archive body {i}")
    });
    fill("alice", "Projects", "pr", 2, 0, &|_| "project".into());
    fill("bob", "INBOX", "bob", 3, 0, &|_| "bob".into());
    m.run_cmd_ok("sync", &[]);

    // Every sync run leaves its report in the state directory (the last one, and all by time).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/last-run.json")).unwrap())
            .unwrap();
    assert_eq!(report["users"][0]["copied"], 12);
    let kept = std::fs::read_dir(dir.path().join("state/runs"))
        .unwrap()
        .count();
    assert_eq!(kept, 1);

    // A clean migration: OK, exit 0, the last run included.
    let (code, j) = verify(cfg, &[]);
    assert_eq!(code, Some(0), "{j:#}");
    assert_eq!(j["ok"], true);
    assert_eq!(j["totals"]["old_messages"], 15);
    assert_eq!(j["users"][0]["last_run"]["copied"], 12, "{j:#}");
    let human = m.run_cmd("verify", &[]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("OK      alice -> alice: 12 messages, 0 missing"),
        "{text}"
    );
    assert!(text.contains("VERIFIED: 2 of 2 users OK"), "{text}");

    // Differences on alice's new mailbox.
    let mut n = TestImap::connect(m.new.port(), "alice", "pw");
    let inbox = n.fetch_all("INBOX");
    let archive = n.fetch_all("Archive");
    let uid_of = |list: &[common::TestMsg], subject: &str| {
        list.iter()
            .find(|m| common::subject(m) == subject)
            .unwrap()
            .uid
    };
    // 1. deleted
    n.expunge_uid("INBOX", uid_of(&inbox, "Note in5"));
    // 2. a flag removed, 3. a keyword added
    n.store_flags("INBOX", uid_of(&inbox, "Note in0"), "-FLAGS", &["\\Seen"]);
    n.store_flags(
        "INBOX",
        uid_of(&inbox, "Note in4"),
        "+FLAGS",
        &["$Important"],
    );
    // 4. same header block, same size and date, other body
    let orig = msg("in3", "inbox body 3");
    let forged = msg("in3", "inbox BODY 3");
    assert_eq!(orig.len(), forged.len());
    n.expunge_uid("INBOX", uid_of(&inbox, "Note in3"));
    let forged_uid = n.append("INBOX", &[], Some(DATE), &forged).unwrap();
    // 5. a folder missing
    n.delete_mailbox("Projects");
    // 6. a message twice
    let twice = n
        .append(
            "Archive",
            &["\\Seen"],
            Some(DATE),
            &msg("ar1", "archive body 1"),
        )
        .unwrap();
    // 7. mail only on the new side
    let fresh = n
        .append("INBOX", &[], None, &msg("after-cutover", "new mail"))
        .unwrap();
    // 8. a subscription lost
    n.unsubscribe("Archive");
    n.logout();
    let _ = archive;

    let (code, j) = verify(cfg, &[]);
    assert_eq!(code, Some(7), "{j:#}");
    assert_eq!(j["ok"], false);
    let k = kinds(&j, "alice");
    let has = |kind: &str, folder: &str| k.iter().any(|(a, b, _, _)| a == kind && b == folder);
    assert!(has("missing", "INBOX"), "{k:?}");
    assert!(has("flags", "INBOX"), "{k:?}");
    assert!(has("folder_missing", "Projects"), "{k:?}");
    assert!(
        k.iter()
            .filter(|(a, b, _, _)| a == "missing" && b == "Projects")
            .count()
            == 2,
        "{k:?}"
    );
    assert!(
        k.iter()
            .any(|(a, _, _, n)| a == "duplicate" && *n == Some(u64::from(twice))),
        "{k:?}"
    );
    assert!(has("subscription", "Archive"), "{k:?}");
    assert!(
        !has("body", "INBOX"),
        "headers alone cannot see a changed body: {k:?}"
    );
    let alice = user(&j, "alice");
    let flags: Vec<&str> = alice["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "flags")
        .map(|d| d["detail"].as_str().unwrap())
        .collect();
    assert!(flags.contains(&"removed \\seen"), "{flags:?}");
    assert!(flags.contains(&"added $important"), "{flags:?}");
    let missing = alice["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "missing" && d["folder"] == "INBOX")
        .unwrap();
    assert_eq!(missing["subject"], "Note in5", "{missing}");
    assert_eq!(missing["message_id"], "<in5@example.com>", "{missing}");
    assert!(missing["old_uid"].as_u64().is_some() && missing["size"].as_u64().is_some());
    // Only on the new side: listed, not an error.
    assert_eq!(alice["only_new"], 1, "{alice:#}");
    assert_eq!(alice["only_new_messages"][0]["new_uid"], fresh);
    assert_eq!(
        alice["only_new_messages"][0]["subject"],
        "Note after-cutover"
    );
    // bob is untouched: OK.
    let bob = user(&j, "bob");
    assert_eq!(bob["status"], "ok", "{bob:#}");

    // --deep also sees the changed body.
    let (code, j) = verify(cfg, &["--deep"]);
    assert_eq!(code, Some(7));
    let k = kinds(&j, "alice");
    assert!(
        k.iter()
            .any(|(a, b, _, n)| a == "body" && b == "INBOX" && *n == Some(u64::from(forged_uid))),
        "{k:?}"
    );

    // The HTML report: self-contained, rendered by headless Chromium, listing the users.
    let html = dir.path().join("report.html");
    let out = m.run_cmd("verify", &["--html", html.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"));
    let profile = dir.path().join("chromium-profile");
    let url = format!("file://{}", html.display());
    let dom = chromium(&["--dump-dom", &url], &profile);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("id=\"overview\""),
        "Chromium did not render the page:\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for u in ["alice", "bob"] {
        assert!(
            dom_text.contains(&format!("href=\"#u-{u}\"")),
            "{u} not listed"
        );
    }
    assert!(dom_text.contains("Differences") && dom_text.contains("Note in5"));
    let png = dir.path().join("report.png");
    let shot = chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1500",
            &url,
        ],
        &profile,
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "no real screenshot ({size} bytes): {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    // `IMAPSHIFT_DOCS_SCREENSHOT=docs/verify-report.png` keeps this screenshot for the docs.
    if let Ok(keep) = std::env::var("IMAPSHIFT_DOCS_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

/// A folder larger than one header chunk (500): the listing is read chunk by chunk, for
/// `verify` and for rebuilding lost UID maps alike, and nothing is lost between chunks.
#[test]
fn large_folders_are_listed_in_chunks() {
    let m = DovecotPair::plain(&["alice", "bob"], "");
    let mut c = TestImap::connect(m.old.port(), "alice", "pw");
    for i in 0..1100 {
        c.append("INBOX", &[], Some(DATE), &msg(&format!("big{i}"), "x"))
            .unwrap();
    }
    // Holes in the UIDs, as expunges leave them.
    for uid in [3, 500, 501, 1001] {
        c.expunge_uid("INBOX", uid);
    }
    c.logout();
    m.run_cmd_ok("sync", &[]);
    let (code, j) = verify(&m.cfg, &[]);
    assert_eq!(code, Some(0), "{j:#}");
    assert_eq!(j["totals"]["old_messages"], 1096);
    assert_eq!(j["totals"]["new_messages"], 1096);
    // The state lost: the maps are rebuilt from the chunked listings, nothing copied again.
    std::fs::remove_dir_all(m.state()).unwrap();
    let out = m.run_cmd("sync", &["--json"]);
    let r = common::sync_report(&out.stdout).unwrap();
    assert_eq!(r["copied"], 0, "{r}");
    let (code, _) = verify(&m.cfg, &[]);
    assert_eq!(code, Some(0));
}
