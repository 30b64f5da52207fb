//! Fuzzing of the small text parsers imapshift owns (issue 13): INTERNALDATE, uid-sets
//! (APPENDUID/COPYUID arguments), PERMANENTFLAGS, the DNS names and nameserver addresses the MX
//! watcher is given, and `--shard K/N`.
//!
//! Properties: none panics on any input (arbitrary strings and near-valid ones: huge numbers,
//! missing pieces), and round trips hold where a formatter exists. Default case counts keep
//! this binary to a few seconds in a debug build; `PROPTEST_CASES=100000 cargo test --release
//! --test fuzz_values` runs longer. Failures proptest finds are kept in
//! `proptest-regressions/` and replayed first on every run.

#[path = "common/proptest_cases.rs"]
mod proptest_cases;

use imapshift::config::Shard;
use imapshift::dns::{normalize_name, parse_domain, parse_nameserver};
use imapshift::imap::keywords::parse_permanentflags;
use imapshift::imap::wire::{format_uid_set, parse_uid_set};
use imapshift::timefmt::{civil_from_days, days_from_civil, parse_internaldate};
use proptest::prelude::*;
use proptest_cases::cases;

/// Digits of any length, some far past every integer type.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100).prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{15,40}",
        "-[0-9]{1,20}",
        Just(String::new()),
    ]
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// INTERNALDATE-shaped text with each field possibly out of range or huge.
fn near_date() -> impl Strategy<Value = String> {
    (
        number(),
        prop::sample::select(&MONTHS[..]),
        number(),
        number(),
        number(),
        number(),
        "[+-]?[0-9]{0,6}",
    )
        .prop_map(|(d, m, y, hh, mm, ss, z)| format!("\"{d}-{m}-{y} {hh}:{mm}:{ss} {z}\""))
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn internaldate_never_panics(s in "\\PC{0,40}") {
        let _ = parse_internaldate(&s);
    }

    #[test]
    fn internaldate_near_valid_never_panics(s in near_date()) {
        let _ = parse_internaldate(&s);
    }

    /// Every valid INTERNALDATE (years 1-9999, any zone) is the instant it names.
    #[test]
    fn internaldate_is_the_instant(
        y in 1i64..=9999, m in 0usize..12, d in 1u32..=28,
        hh in 0i64..24, mm in 0i64..60, ss in 0i64..60,
        neg in any::<bool>(), zh in 0i64..=14, zm in 0i64..60, pad in any::<bool>(),
    ) {
        let day = if pad && d < 10 { format!(" {d}") } else { format!("{d:02}") };
        let sign = if neg { '-' } else { '+' };
        let s = format!("{day}-{}-{y:04} {hh:02}:{mm:02}:{ss:02} {sign}{zh:02}{zm:02}", MONTHS[m]);
        let offset = (zh * 3600 + zm * 60) * if neg { -1 } else { 1 };
        let want = days_from_civil(y, m as u32 + 1, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
        prop_assert_eq!(parse_internaldate(&s), Some(want), "{}", s);
    }

    #[test]
    fn civil_round_trip(days in -3_000_000i64..3_000_000) {
        let (y, m, d) = civil_from_days(days);
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }

    #[test]
    fn uid_set_never_panics(s in "[0-9:,*]{0,40}|\\PC{0,40}") {
        let _ = parse_uid_set(&s);
    }

    #[test]
    fn uid_set_huge_numbers_never_panic(a in number(), b in number(), c in number()) {
        let _ = parse_uid_set(&format!("{a}:{b},{c}"));
    }

    /// `format_uid_set` of sorted distinct UIDs parses back to them.
    #[test]
    fn uid_set_round_trip(mut uids in prop::collection::vec(1u32..5000, 0..60)) {
        uids.sort_unstable();
        uids.dedup();
        let s = format_uid_set(&uids);
        if uids.is_empty() {
            prop_assert_eq!(s, "");
        } else {
            prop_assert_eq!(parse_uid_set(&s), Some(uids));
        }
    }

    /// Ranges near the top of the UID space, in either order.
    #[test]
    fn uid_set_ranges_ascend(a in 1u32.., len in 0u32..1000, rev in any::<bool>()) {
        let b = a.saturating_add(len);
        let s = if rev { format!("{b}:{a}") } else { format!("{a}:{b}") };
        let got = parse_uid_set(&s).unwrap();
        prop_assert_eq!(got, (a..=b).collect::<Vec<_>>());
    }

    #[test]
    fn permanentflags_never_panic(s in "\\PC{0,60}") {
        let _ = parse_permanentflags(&s);
    }

    /// Keywords come back lower-cased, `\*` is seen, system flags are left out.
    #[test]
    fn permanentflags_keywords(kws in prop::collection::btree_set("[A-Za-z$][A-Za-z0-9_$]{0,10}", 0..8), star in any::<bool>()) {
        let mut s = String::from("(\\Answered \\Seen");
        for k in &kws {
            s.push(' ');
            s.push_str(k);
        }
        if star {
            s.push_str(" \\*");
        }
        s.push(')');
        let p = parse_permanentflags(&s);
        prop_assert_eq!(p.new_keywords, star);
        let want: std::collections::BTreeSet<String> = kws.iter().map(|k| k.to_ascii_lowercase()).collect();
        prop_assert_eq!(p.keywords, want);
    }

    #[test]
    fn dns_names_never_panic(s in "\\PC{0,300}") {
        let _ = normalize_name(&s);
        let _ = parse_domain(&s);
        let _ = parse_nameserver(&s, 53);
    }

    /// A valid name is accepted, normalised (lower case, no final dot).
    #[test]
    fn dns_valid_names(labels in prop::collection::vec("[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", 1..5), dot in any::<bool>()) {
        let name = labels.join(".") + if dot { "." } else { "" };
        prop_assert_eq!(parse_domain(&name), Ok(labels.join(".").to_ascii_lowercase()));
    }

    #[test]
    fn nameserver_addresses(ip in any::<std::net::IpAddr>(), port in any::<u16>(), with_port in any::<bool>()) {
        let want = std::net::SocketAddr::new(ip, if with_port { port } else { 53 });
        let s = if with_port { want.to_string() } else { ip.to_string() };
        prop_assert_eq!(parse_nameserver(&s, 53), Ok(want));
    }

    #[test]
    fn shard_never_panics(s in "\\PC{0,20}|[0-9]{0,12}/[0-9]{0,12}") {
        if let Ok(sh) = s.parse::<Shard>() {
            prop_assert!(sh.k >= 1 && sh.k <= sh.n);
            let _ = sh.takes(&s);
        }
    }
}

/// Found by `internaldate_near_valid_never_panics`: fields past their range overflowed the
/// arithmetic (a panic in a debug build, a wrong instant in a release build). A date a server
/// spells that way is not an instant: `None`, and fingerprints compare its text instead.
#[test]
fn internaldate_with_huge_fields_is_none() {
    for s in [
        "\"0-Jan-0 2562047764143076:2468450131:-0 +0000\"",
        "01-Jan-9223372036854775807 00:00:00 +0000",
        "01-Jan-2024 99999999999:00:00 +0000",
        "99999999-Jan-2024 00:00:00 +0000",
        "01-Jan-2024 24:00:00 +0000",
        "01-Jan-2024 00:60:00 +0000",
        "32-Jan-2024 00:00:00 +0000",
        "01-Jan-2024 00:00:00 +0a00",
    ] {
        assert_eq!(parse_internaldate(s), None, "{s}");
    }
    assert!(parse_internaldate("31-Dec-9999 23:59:60 -1459").is_some());
}
