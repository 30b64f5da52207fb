//! Fuzzing of the modified UTF-7 mailbox-name codec (issue 13), alone and differentially
//! against the `utf7-imap` crate.
//!
//! Properties: `decode` never panics and accepts exactly the canonical forms (`decode(w) ==
//! Ok(n)` implies `encode(n) == w`); `decode(encode(n)) == n` for every name; `decode_lossy`
//! never panics. Differential: for every name without U+007F, `utf7-imap` encodes it to the same
//! bytes and decodes our encoding back to it (utf7-imap passes DEL through raw, which RFC 3501
//! forbids; it panics on some invalid input, so it is only given valid input).
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz_mutf7` runs longer.

#[path = "common/proptest_cases.rs"]
mod proptest_cases;

use imapshift::mutf7::{decode, decode_lossy, encode};
use proptest::prelude::*;
use proptest_cases::cases;

/// Wire-shaped text: ASCII, `&`, `-`, BASE64 letters and a few non-ASCII characters.
fn wire_like() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+,&\\-/. ~\u{7f}\u{e9}\u{1F600}]{0,24}"
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn decode_accepts_only_canonical(w in wire_like()) {
        if let Ok(n) = decode(&w) {
            prop_assert_eq!(encode(&n), w.clone());
        }
        let _ = decode_lossy(&w);
    }

    #[test]
    fn decode_never_panics(w in "\\PC{0,30}|[\\x00-\\x7f]{0,30}") {
        let _ = decode(&w);
        let _ = decode_lossy(&w);
    }

    #[test]
    fn round_trip(n in any::<String>()) {
        let w = encode(&n);
        prop_assert!(w.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", w);
        prop_assert_eq!(decode(&w), Ok(n.clone()));
        prop_assert_eq!(decode_lossy(&w), n);
    }
}

proptest! {
    // utf7-imap compiles a regex on every decode (20 ms each in a debug build): fewer cases.
    #![proptest_config(cases(100))]

    #[test]
    fn agrees_with_utf7_imap(n in any::<String>().prop_filter("utf7-imap passes DEL raw", |n| !n.contains('\u{7f}'))) {
        let w = encode(&n);
        prop_assert_eq!(&utf7_imap::encode_utf7_imap(n.clone()), &w);
        prop_assert_eq!(utf7_imap::decode_utf7_imap(w), n);
    }
}

/// What the differential run found in utf7-imap (why it is not adopted): DEL travels raw, and
/// a short invalid run makes its decoder panic where ours reports an error.
#[test]
fn utf7_imap_differences() {
    assert_eq!(encode("a\u{7f}"), "a&AH8-");
    assert_eq!(utf7_imap::encode_utf7_imap("a\u{7f}".into()), "a\u{7f}");
    assert!(decode("&A-").is_err());
    let theirs = std::panic::catch_unwind(|| utf7_imap::decode_utf7_imap("&A-".into()));
    assert!(theirs.is_err(), "utf7-imap now returns {theirs:?}");
}
