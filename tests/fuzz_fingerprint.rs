//! Fuzzing of the content fingerprints and the one matching rule built on them (issue 13):
//! `fingerprint::{Fingerprint, pair_up, pair_grouped, header_block, message_id, subject,
//! munge_8bit}`.
//!
//! Inputs: arbitrary bytes as a message and arbitrary text as its INTERNALDATE; folders of
//! fingerprints drawn from a few headers (7-bit and 8-bit, CRLF and LF, with and without a
//! Message-ID), a few instants each spelled in many zones, and sizes near each other, so that
//! twins, grown copies and munged copies all meet. Properties:
//! - nothing panics;
//! - pairing is deterministic, and independent of the order of the originals and of the copies:
//!   the same number of pairs, the same (original, copy) contents paired;
//! - a pair is always a copy with the original's instant (or the same unparsable date text),
//!   its key or exactly its munged key, and a size neither smaller nor grown by more than line
//!   ends explain; each copy is paired at most once;
//! - nothing is left that could pair: no unpaired original matches an unpaired copy;
//! - within one tier the number of pairs is the largest any pairing could make;
//! - a message re-spelled as a server may store it (bare LF to CRLF, a final CRLF added, the
//!   INTERNALDATE in another zone or with the day space-padded, 8-bit header bytes munged to
//!   `X`) pairs with its original; the key never depends on line ends, so the other direction
//!   (CRLF to LF, a smaller copy) has the same key and is refused only for its size.
//!
//! Default case counts keep this binary to a few seconds in a debug build;
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz_fingerprint` runs longer.

#[path = "common/proptest_cases.rs"]
mod proptest_cases;

use imapshift::fingerprint::{
    header_block, message_id, munge_header_of, pair_grouped, pair_up, subject, Fingerprint,
};
use imapshift::timefmt::{civil_from_days, parse_internaldate};
use proptest::prelude::*;
use proptest_cases::cases;
use std::collections::HashMap;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `unix` as an INTERNALDATE in the zone `offset_min` minutes east of UTC, the day padded with
/// a space or a zero.
fn spell(unix: i64, offset_min: i32, space_pad: bool) -> String {
    let local = unix + i64::from(offset_min) * 60;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let day = if space_pad {
        format!("{d:>2}")
    } else {
        format!("{d:02}")
    };
    let sign = if offset_min < 0 { '-' } else { '+' };
    let off = offset_min.abs();
    format!(
        "{day}-{}-{y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[m as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 60,
        off % 60
    )
}

/// Zones servers are in: whole hours from -12 to +14, and the half and three-quarter ones.
fn zone() -> impl Strategy<Value = i32> {
    prop_oneof![
        (-12i32..=14).prop_map(|h| h * 60),
        prop::sample::select(vec![
            -570, -210, 210, 270, 330, 345, 390, 525, 570, 765, 825
        ]),
    ]
}

/// A few instants, 1970 to 2099, some one second apart (instants that differ a little).
fn instant() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![
        0i64,
        1_710_404_813,
        1_710_404_814,
        951_782_400,
        4_102_444_799,
    ])
}

/// A few header blocks, 7-bit and 8-bit, with CRLF or LF, with and without a Message-ID,
/// among them the 7-bit twin (`cafXX`) of a munged 8-bit header.
fn header() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            "Message-ID: <a@example.com>\r\nSubject: s\r\n\r\n",
            "Message-ID: <a@example.com>\r\nSubject: t\r\n\r\n",
            "Message-ID: <a@example.com>\r\nSubject: caf\u{e9}\r\n\r\n",
            "Message-ID: <a@example.com>\r\nSubject: cafXX\r\n\r\n",
            "Subject: no id\r\n\r\n",
            "Message-ID: <b@example.com>\r\nFrom: J\u{fc}rgen <j@b>\r\n\r\n",
        ]),
        any::<bool>(),
    )
        .prop_map(|(h, lf)| {
            let h = if lf {
                h.replace("\r\n", "\n")
            } else {
                h.into()
            };
            h.into_bytes()
        })
}

#[derive(Clone, Debug)]
struct Msg {
    header: Vec<u8>,
    unix: i64,
    zone: i32,
    pad: bool,
    size: u32,
}

fn msg() -> impl Strategy<Value = Msg> {
    (header(), instant(), zone(), any::<bool>(), 28u32..40).prop_map(
        |(header, unix, zone, pad, size)| Msg {
            header,
            unix,
            zone,
            pad,
            size,
        },
    )
}

impl Msg {
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_header(
            &self.header,
            self.size,
            &spell(self.unix, self.zone, self.pad),
        )
    }
}

/// A folder: messages; sometimes with an unparsable date.
fn folder(max: usize) -> impl Strategy<Value = Vec<Fingerprint>> {
    prop::collection::vec(
        (
            msg(),
            prop::option::weighted(0.1, prop::sample::select(vec!["garbage", " garbage "])),
        ),
        0..max,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(m, bad_date)| match bad_date {
                None => m.fingerprint(),
                Some(d) => Fingerprint::of_header(&m.header, m.size, d),
            })
            .collect()
    })
}

fn refs(v: &[Fingerprint]) -> Vec<&Fingerprint> {
    v.iter().collect()
}

/// What a pair is made of, comparable across orders: (the original's key and size, the
/// copy's key and size).
fn contents(o: &[Fingerprint], c: &[Fingerprint], pairs: &[Option<usize>]) -> Vec<String> {
    let mut v: Vec<String> = pairs
        .iter()
        .enumerate()
        .filter_map(|(k, p)| {
            p.map(|j| {
                format!(
                    "{:?}",
                    (o[k].match_key(), o[k].size, c[j].match_key(), c[j].size)
                )
            })
        })
        .collect();
    v.sort();
    v
}

/// The largest number of pairs any pairing could make when an original may take any copy with
/// its key and a size that fits (augmenting paths; folders are small).
fn maximum_matching(o: &[Fingerprint], c: &[Fingerprint]) -> usize {
    fn augment(
        k: usize,
        edges: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &j in &edges[k] {
            if !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|k2| augment(k2, edges, seen, owner)) {
                    owner[j] = Some(k);
                    return true;
                }
            }
        }
        false
    }
    let edges: Vec<Vec<usize>> = o
        .iter()
        .map(|x| (0..c.len()).filter(|&j| x.matches(&c[j])).collect())
        .collect();
    let mut owner = vec![None; c.len()];
    (0..o.len())
        .filter(|&k| augment(k, &edges, &mut vec![false; c.len()], &mut owner))
        .count()
}

/// Whether `copy` may stand for `orig` by the rule: the instant, the key or the munged key, the
/// size.
fn may_pair(orig: &Fingerprint, copy: &Fingerprint) -> bool {
    let same_instant = match (
        parse_internaldate(&orig.internaldate),
        parse_internaldate(&copy.internaldate),
    ) {
        (Some(a), Some(b)) => a == b,
        (None, None) => orig.internaldate.trim() == copy.internaldate.trim(),
        _ => false,
    };
    let (o, c) = (u64::from(orig.size), u64::from(copy.size));
    same_instant
        && c >= o
        && c <= 2 * o + 2
        && (orig.match_key() == copy.match_key() || orig.munged_key() == Some(copy.match_key()))
}

fn check_pairs(
    o: &[Fingerprint],
    c: &[Fingerprint],
    pairs: &[Option<usize>],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(pairs.len(), o.len());
    let mut used = vec![false; c.len()];
    for (k, p) in pairs.iter().enumerate() {
        if let Some(j) = *p {
            prop_assert!(!used[j], "copy {} paired twice: {:?}", j, pairs);
            used[j] = true;
            prop_assert!(may_pair(&o[k], &c[j]), "{:?} paired with {:?}", o[k], c[j]);
        }
    }
    for (k, p) in pairs.iter().enumerate() {
        if p.is_none() {
            for j in (0..c.len()).filter(|&j| !used[j]) {
                prop_assert!(
                    !may_pair(&o[k], &c[j]),
                    "{:?} and {:?} are both left, yet match",
                    o[k],
                    c[j]
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn any_message_and_date_never_panic(body in prop::collection::vec(any::<u8>(), 0..600), date in "\\PC{0,40}") {
        let f = Fingerprint::of_message(&body, &date);
        let h = header_block(&body);
        prop_assert!(body.starts_with(h));
        let _ = (message_id(h), subject(h), f.match_key(), f.munged_key());
        prop_assert!(f.matches(&f) && !f.munged_in(&f));
        prop_assert_eq!(pair_up(&[&f], &[&f]), vec![Some(0)]);
        prop_assert_eq!(f.munged.is_some(), h.iter().any(|&b| b >= 0x80));
        // The message as a munging server stores it pairs, by the munged key.
        let m = Fingerprint::of_message(&munge_header_of(&body), &date);
        prop_assert_eq!(pair_up(&[&f], &[&m]), vec![Some(0)]);
        prop_assert_eq!(f.munged_in(&m), f.munged.is_some());
    }

    #[test]
    fn pairing_follows_the_rule(o in folder(12), c in folder(12)) {
        let pairs = pair_up(&refs(&o), &refs(&c));
        check_pairs(&o, &c, &pairs)?;
        prop_assert_eq!(&pair_up(&refs(&o), &refs(&c)), &pairs, "not deterministic");
    }

    #[test]
    fn pairing_is_independent_of_order(
        (o, o2, c, c2) in (folder(12), folder(12)).prop_flat_map(|(o, c)| {
            (Just(o.clone()), Just(o).prop_shuffle(), Just(c.clone()), Just(c).prop_shuffle())
        })
    ) {
        let a = pair_up(&refs(&o), &refs(&c));
        let b = pair_up(&refs(&o2), &refs(&c2));
        prop_assert_eq!(contents(&o, &c, &a), contents(&o2, &c2, &b));
    }

    /// Without 8-bit headers (one tier): copies of the exact size are paired first (on
    /// purpose: the likelier copy, even where a grown one would have let one more pair), and
    /// of what is left as many pair as can.
    #[test]
    fn one_tier_pairs_as_many_as_can_be(o in folder(10), c in folder(10)) {
        let plain = |v: Vec<Fingerprint>| -> Vec<Fingerprint> {
            v.into_iter().filter(|f| f.munged.is_none()).collect()
        };
        let (o, c) = (plain(o), plain(c));
        let pairs = pair_up(&refs(&o), &refs(&c));
        let exact: Vec<(usize, usize)> = pairs
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.filter(|&j| c[j].size == o[k].size).map(|j| (k, j)))
            .collect();
        let left_o: Vec<Fingerprint> =
            (0..o.len()).filter(|k| !exact.iter().any(|e| e.0 == *k)).map(|k| o[k].clone()).collect();
        let left_c: Vec<Fingerprint> =
            (0..c.len()).filter(|j| !exact.iter().any(|e| e.1 == *j)).map(|j| c[j].clone()).collect();
        let n = pairs.iter().flatten().count();
        prop_assert_eq!(n, exact.len() + maximum_matching(&left_o, &left_c));
    }

    #[test]
    fn a_respelled_copy_pairs(
        m in msg(),
        body in "[a-z \\n]{0,60}",
        other_zone in zone(),
        pad in any::<bool>(),
        final_crlf in any::<bool>(),
        munge in any::<bool>(),
        others in folder(6),
    ) {
        // The original as the old server holds it, with bare LF in the header and body.
        let lf_header = String::from_utf8(m.header.clone()).unwrap().replace("\r\n", "\n");
        let original = format!("{lf_header}{body}").into_bytes();
        let date = spell(m.unix, m.zone, m.pad);
        let orig = Fingerprint::of_message(&original, &date);
        // The copy: every LF as CRLF, maybe a final CRLF, another zone, maybe munged.
        let mut copy = String::from_utf8(original.clone()).unwrap().replace('\n', "\r\n").into_bytes();
        if final_crlf {
            copy.extend_from_slice(b"\r\n");
        }
        if munge {
            copy = munge_header_of(&copy).into_owned();
        }
        let c = Fingerprint::of_message(&copy, &spell(m.unix, other_zone, pad));
        prop_assert!(c.size >= orig.size);
        // Alone, and among others (which pair first if they are identical twins, so the copy
        // must be paired with the original or with a twin of it).
        prop_assert_eq!(pair_up(&[&orig], &[&c]), vec![Some(0)]);
        prop_assert_eq!(orig.munged_in(&c), munge && orig.munged.is_some());
        let mut copies = others.clone();
        copies.push(c.clone());
        let pairs = pair_up(&[&orig], &refs(&copies));
        prop_assert!(pairs[0].is_some(), "{:?} not paired among {:?}", c, others);
        // The other direction: a CRLF original and its LF copy have the same key, but the copy
        // is smaller, which the rule never allows.
        if !munge {
            let crlf = Fingerprint::of_message(&copy, &date);
            prop_assert_eq!(crlf.match_key(), orig.match_key());
            let want = if crlf.size == orig.size { vec![Some(0)] } else { vec![None] };
            prop_assert_eq!(pair_up(&[&crlf], &[&orig]), want);
        }
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// `pair_grouped` on plain keys, as `verify` calls it, holds to the same rules: each copy
    /// once, the same key, a size that fits, deterministic.
    #[test]
    fn pair_grouped_on_plain_keys(
        originals in prop::collection::vec((prop::option::of(0u8..3), 5u32..13), 0..8),
        copies in prop::collection::vec((0u8..3, 4u32..16), 0..8),
    ) {
        let mut groups: HashMap<u8, Vec<usize>> = HashMap::new();
        for (i, (k, _)) in copies.iter().enumerate() {
            groups.entry(*k).or_default().push(i);
        }
        let tiers = [originals.iter().map(|o| o.0).collect::<Vec<_>>()];
        let sizes: Vec<u32> = originals.iter().map(|o| o.1).collect();
        let csizes: Vec<u32> = copies.iter().map(|c| c.1).collect();
        let got = pair_grouped(&tiers, &sizes, &groups, &csizes);
        prop_assert_eq!(&got, &pair_grouped(&tiers, &sizes, &groups, &csizes));
        let mut used = vec![false; copies.len()];
        for (k, p) in got.iter().enumerate() {
            if let Some(j) = *p {
                prop_assert!(!used[j]);
                used[j] = true;
                prop_assert_eq!(originals[k].0, Some(copies[j].0));
                prop_assert!(csizes[j] >= sizes[k] && csizes[j] <= 2 * sizes[k] + 2);
            }
        }
    }
}
