//! Comparing a folder on two servers, with a diagnosis that names duplicated and missing
//! messages: shared by the exactly-once tests. INTERNALDATEs are compared as instants
//! ([`internaldate_secs`]): the test servers run in different time zones (see
//! `tests/common/dovecot.rs`), so the same instant is spelled differently on each.

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

/// What must be equal on both servers: body, flags, INTERNALDATE as Unix seconds.
pub type Key = (Vec<u8>, Vec<String>, i64);

pub fn key(m: &TestMsg) -> Key {
    (m.body.clone(), m.flags.clone(), m.instant())
}

/// An IMAP date-time (`"17-Jul-1996 02:44:25 -0700"`, the day may be space-padded: `" 7-Jul-..."`)
/// as Unix seconds, or `None` if it is not one.
pub fn parse_internaldate(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let mut d = date.split('-');
    let day: i64 = d.next()?.parse().ok()?;
    let mon = d.next()?;
    let year: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as i64 + 1;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = t[..] else {
        return None;
    };
    let zb = zone.as_bytes();
    if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let offset = (zh * 3600 + zm * 60) * if zb[0] == b'-' { -1 } else { 1 };
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// [`parse_internaldate`], panicking with the text when it is not an IMAP date-time.
pub fn internaldate_secs(s: &str) -> i64 {
    parse_internaldate(s).unwrap_or_else(|| panic!("not an IMAP date-time: {s:?}"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
