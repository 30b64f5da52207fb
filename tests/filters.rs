//! `[filters]`: folders by pattern, messages by size and age, as imapsync users expect; real
//! Dovecot servers. Left-out messages are counted, never deleted.

mod common;

use common::{sum_over_folders, DovecotPair, TestImap};

#[test]
fn folders_sizes_and_ages_are_filtered() {
    let m = DovecotPair::alice();
    let mut c = TestImap::connect(m.old.port(), "alice", "old-a");
    for f in ["Trash", "Junk E-Mail", "Archive", "Archive.2024"] {
        c.create(f);
    }
    let small = |i: usize| {
        format!("Subject: small {i}\r\nMessage-ID: <s{i}@example.com>\r\n\r\nhello\r\n")
            .into_bytes()
    };
    let big = format!(
        "Subject: big\r\nMessage-ID: <big@example.com>\r\n\r\n{}\r\n",
        "x".repeat(20_000)
    )
    .into_bytes();
    for i in 0..3 {
        c.append("INBOX", &[], None, &small(i)).unwrap();
    }
    c.append("INBOX", &[], None, &big).unwrap();
    c.append("INBOX", &[], Some("01-Jan-2015 10:00:00 +0000"), &small(99))
        .unwrap();
    c.append("Archive.2024", &[], None, &small(10)).unwrap();
    c.append("Trash", &[], None, &small(20)).unwrap();
    c.append("Junk E-Mail", &[], None, &small(21)).unwrap();
    c.logout();
    let text = std::fs::read_to_string(&m.cfg).unwrap();
    // The config with this `[filters]` table.
    let filters =
        |table: &str| std::fs::write(&m.cfg, format!("{text}[filters]\n{table}")).unwrap();
    filters("exclude_folders = [\"Trash\", \"Junk*\"]\nmax_size = 10000\nmax_age_days = 3650\n");
    let j = m.sync_ok(&[]);
    assert_eq!(
        j["copied"], 4,
        "3 small INBOX messages and the Archive one: {j}"
    );
    let filtered = sum_over_folders(&j, "filtered");
    assert_eq!(filtered, 2, "the big one and the one from 2015: {j}");
    // The report says what the filters left out, messages and folders, never silently.
    assert_eq!(j["users"][0]["filtered"], 2, "{j}");
    let excluded: Vec<&str> = j["users"][0]["folders_excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        excluded.contains(&"Trash") && excluded.iter().any(|f| f.starts_with("Junk")),
        "{j}"
    );
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    let names: Vec<String> = n.list().into_iter().map(|(_, _, name)| name).collect();
    assert!(
        !names.iter().any(|x| x == "Trash" || x.starts_with("Junk")),
        "{names:?}"
    );
    assert_eq!(n.fetch_all("INBOX").len(), 3);
    assert_eq!(n.fetch_all("Archive.2024").len(), 1);
    n.logout();
    // Left out stays left out; nothing is deleted.
    let j = m.sync_ok(&["--propagate-deletes"]);
    assert_eq!(j["copied"], 0, "{j}");
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 3);
    n.logout();
    let out = m.run_cmd("sync", &[]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("left out by [filters]: 2 messages (size or age)"),
        "the summary states it: {summary}"
    );

    // `verify` expects what the filters take, not what they leave out (regression: it used to
    // call every filtered message missing).
    let out = m.run_cmd("verify", &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["totals"]["missing"], 0, "{v:#}");
    assert!(v["users"][0]["filtered"].as_u64().unwrap() > 0, "{v:#}");

    // The size limit is lifted: the folders are unchanged on both servers, yet the message it
    // left out must be copied now (regression: the STATUS fast path skipped the folder, so a
    // message a filter once left out was never copied, not even by a cutover without filters).
    filters("exclude_folders = [\"Trash\", \"Junk*\"]\nmax_age_days = 3650\n");
    let j = m.sync_ok(&[]);
    assert_eq!(j["copied"], 1, "the big one, now taken: {j}");
    assert_eq!(j["users"][0]["filtered"], 1, "the one from 2015 still: {j}");
    let mut n = TestImap::connect(m.new.port(), "alice", "new-a");
    assert_eq!(n.fetch_all("INBOX").len(), 4);
    n.logout();

    // A bad filter is a configuration error naming the field.
    filters("min_age_days = 30\nmax_age_days = 10\n");
    let out = m.run_cmd("sync", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[filters].min_age_days"));
}
