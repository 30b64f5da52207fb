//! Comparing a folder on two servers, with a diagnosis that names duplicated and missing
//! messages: shared by the exactly-once tests.

use crate::common::TestMsg;
use std::collections::BTreeMap;

/// The Subject of a test message, for diagnoses.
pub fn subject(m: &TestMsg) -> String {
    let text = String::from_utf8_lossy(&m.body);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("(no subject)")
        .to_string()
}

pub type Key = (Vec<u8>, Vec<String>, String);

pub fn key(m: &TestMsg) -> Key {
    (m.body.clone(), m.flags.clone(), m.internaldate.clone())
}

/// `Err` with a diagnosis (counts, duplicated / missing / changed messages) unless `new` holds
/// exactly `old`'s messages, in order.
pub fn diff_folder(folder: &str, old: &[TestMsg], new: &[TestMsg]) -> Result<(), String> {
    let ka: Vec<Key> = old.iter().map(key).collect();
    let kb: Vec<Key> = new.iter().map(key).collect();
    if ka == kb {
        return Ok(());
    }
    let mut s = format!(
        "folder {folder}: {} messages on old, {} on new",
        old.len(),
        new.len()
    );
    let mut by_body: BTreeMap<&[u8], (usize, usize, String)> = BTreeMap::new();
    for m in old {
        by_body.entry(&m.body).or_insert((0, 0, subject(m))).0 += 1;
    }
    for m in new {
        by_body.entry(&m.body).or_insert((0, 0, subject(m))).1 += 1;
    }
    for (o, n, subj) in by_body.values() {
        if n > o {
            s.push_str(&format!("\n  DUPLICATED: {subj:?}: {n} on new, {o} on old"));
        } else if n < o {
            s.push_str(&format!("\n  MISSING: {subj:?}: {n} on new, {o} on old"));
        }
    }
    for (i, (a, b)) in old.iter().zip(new).enumerate() {
        if key(a) != key(b) {
            s.push_str(&format!(
                "\n  first difference at position {i}: old UID {} {:?} flags {:?} date {:?} \
                 / new UID {} {:?} flags {:?} date {:?}",
                a.uid,
                subject(a),
                a.flags,
                a.internaldate,
                b.uid,
                subject(b),
                b.flags,
                b.internaldate
            ));
            break;
        }
    }
    Err(s)
}
