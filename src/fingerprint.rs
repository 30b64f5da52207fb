//! Content fingerprints: how a message is recognised on either server without trusting UIDs.
//!
//! UIDs are only meaningful inside one folder of one server while its UIDVALIDITY holds. To
//! resume after a crash, to rebuild lost state and to verify a migration, messages are matched by
//! what they are: Message-ID, INTERNALDATE, a hash of the header block, and the size. Two
//! different messages may share a Message-ID (the test corpus has 89 such values), so the
//! Message-ID alone never decides; two byte-identical messages are matched as a multiset.
//!
//! The two servers differ, so a fingerprint is compared the way a copy can differ from its
//! original ([`pair_up`], the one matching rule of the engine and of `verify`):
//! - **INTERNALDATE as an instant**: a server in another zone spells every date differently
//!   (`14-Mar-2024 09:26:53 +0100` is `14-Mar-2024 04:26:53 -0400`), some pad the day with a space.
//! - **The header hash ignores line ends**: it is taken over the header block with CRLF and bare
//!   LF unified and trailing line ends dropped, so a server that turns bare LF into CRLF, or adds a
//!   final newline, on APPEND still produces the same hash.
//! - **The size may grow**: such a server reports a larger RFC822.SIZE for the copy. Copies of
//!   the exact size are paired first; only then is a copy paired whose size is larger, by at most
//!   what line-end rewriting can add (twice the size plus a final CRLF), the smallest originals
//!   first (so as many pair as the sizes allow). Sizes never shrink.
//!
//! - **8-bit header bytes may come back as `X`**: a server that munges them on APPEND (Cyrus's
//!   `munge8bit`, on by default) stores each header byte >= 0x80 as `X`, size unchanged. A
//!   fingerprint of a header with such bytes also keeps the [`Munged`] form (Message-ID and
//!   header hash of the header so rewritten), and only after every exact pairing is a copy paired
//!   whose own key is exactly that form ([`Fingerprint::munged_key`]). This is directed and
//!   narrow: the copy must be what munging makes of this header, nothing else; a header without
//!   8-bit bytes has no munged form, so its matching is unchanged. [`Fingerprint::munged_in`]
//!   tells such a copy ("rewritten") from an identical one; `verify` reports it as altered.
//!
//! What a fingerprint cannot tell apart: two messages with the same Message-ID, the same
//! INTERNALDATE to the second and the same header block byte for byte, but different bodies.
//! Between such twins a copy of one may stand for the other; `verify --deep` compares bodies.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What identifies a message's content.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The Message-ID field's value (trimmed), if the header has one.
    pub message_id: Option<String>,
    /// Size in bytes as the server delivers it (RFC822.SIZE).
    pub size: u32,
    /// INTERNALDATE as the server sent it (compared as an instant, see [`MatchKey`]).
    pub internaldate: String,
    /// First 16 bytes of the SHA-256 of the header block with line ends unified, hex (in a
    /// fingerprint of version 0, stored by imapshift before 2026-12, of the raw header block).
    pub header_hash: String,
    /// 1 for fingerprints made now; 0 (the default) for those a state store kept from earlier
    /// versions, whose `header_hash` is of the raw bytes.
    #[serde(default)]
    pub v: u8,
    /// The raw-bytes header hash of a fingerprint made now (not stored): pairs it with a
    /// version-0 original after an upgrade in the middle of a migration.
    #[serde(skip)]
    pub raw_hash: Option<String>,
    /// For a header with bytes >= 0x80: its form with each such byte replaced by `X`, as a
    /// munging server stores it. `None` for a 7-bit header, and in fingerprints stored before
    /// this field existed (those pair exactly only, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub munged: Option<Munged>,
}

/// A header's form after a server replaced each of its bytes >= 0x80 by `X` (Cyrus
/// `munge8bit`): what a copy's own fingerprint holds then.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Munged {
    /// The Message-ID of the munged header.
    pub message_id: Option<String>,
    /// Hash of the munged header block, line ends unified (as [`Fingerprint::header_hash`]).
    pub header_hash: String,
}

/// The part of a fingerprint that a copy shares with its original on any server: everything but
/// the size, with the INTERNALDATE as Unix seconds (its text when it cannot be parsed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatchKey {
    message_id: Option<String>,
    date: Result<i64, String>,
    header_hash: String,
}

impl Fingerprint {
    pub fn match_key(&self) -> MatchKey {
        MatchKey {
            message_id: self.message_id.clone(),
            date: crate::timefmt::parse_internaldate(&self.internaldate)
                .ok_or_else(|| self.internaldate.trim().to_string()),
            header_hash: if self.v == 0 {
                format!("raw:{}", self.header_hash)
            } else {
                self.header_hash.clone()
            },
        }
    }

    /// The key of this message's copy on a server that replaced its 8-bit header bytes by `X`;
    /// `None` when the header has none (or the fingerprint was stored without it).
    pub fn munged_key(&self) -> Option<MatchKey> {
        let m = self.munged.as_ref()?;
        Some(MatchKey {
            message_id: m.message_id.clone(),
            header_hash: m.header_hash.clone(),
            ..self.match_key()
        })
    }

    /// Whether `copy` is this message with its 8-bit header bytes replaced by `X` (and not
    /// identical): a pair [`pair_up`] made only by that tolerance.
    pub fn munged_in(&self, copy: &Fingerprint) -> bool {
        let k = copy.match_key();
        self.match_key() != k && self.munged_key().is_some_and(|m| m == k)
    }

    /// Whether a copy of this size can be this message after a server rewrote line ends (bare LF
    /// to CRLF, a final CRLF added) on APPEND.
    pub fn size_fits(&self, copy_size: u32) -> bool {
        size_fits(self.size, copy_size)
    }

    /// Whether `copy` can be a copy of this message (same key, a size that fits).
    pub fn matches(&self, copy: &Fingerprint) -> bool {
        self.match_key() == copy.match_key() && self.size_fits(copy.size)
    }
}

/// Pairs originals with copies as a multiset: for each original (in order) the index of its copy
/// in `copies`, or `None`. Each copy is taken once. Two tiers: first by the same key, then
/// (originals left over with 8-bit header bytes) by their [`Fingerprint::munged_key`]; in each
/// tier copies of the exact size are paired first, for all originals, then originals left over,
/// the smallest first, take the smallest copy whose size [`Fingerprint::size_fits`]. The pairs
/// (as contents) do not depend on the order of either list. The one matching rule behind
/// crash recovery, map rebuilding, UID lookup without UIDPLUS, rename detection and
/// verification.
pub fn pair_up(originals: &[&Fingerprint], copies: &[&Fingerprint]) -> Vec<Option<usize>> {
    let mut groups: HashMap<MatchKey, Vec<usize>> = HashMap::new();
    for (i, c) in copies.iter().enumerate() {
        groups.entry(c.match_key()).or_default().push(i);
    }
    // Version-0 originals (kept by an earlier version) carry the raw header hash: they are
    // looked up among the copies by theirs.
    if originals.iter().any(|o| o.v == 0) {
        for (i, c) in copies.iter().enumerate() {
            if let Some(raw) = &c.raw_hash {
                let key = MatchKey {
                    header_hash: format!("raw:{raw}"),
                    ..c.match_key()
                };
                groups.entry(key).or_default().push(i);
            }
        }
    }
    let exact: Vec<Option<MatchKey>> = originals.iter().map(|o| Some(o.match_key())).collect();
    let munged: Vec<Option<MatchKey>> = originals.iter().map(|o| o.munged_key()).collect();
    let sizes: Vec<u32> = originals.iter().map(|o| o.size).collect();
    let copy_sizes: Vec<u32> = copies.iter().map(|c| c.size).collect();
    pair_grouped(&[exact, munged], &sizes, &groups, &copy_sizes)
}

/// The passes of [`pair_up`] on keys and sizes: `groups` holds, per key, the indexes of the
/// copies with that key in order; `tiers` the originals' keys to look up, tier after tier (an
/// original without a key in a tier, `None`, sits that tier out; one paired in a tier is done).
/// Shared with `verify`, which pairs compact records by it.
pub fn pair_grouped<K: std::hash::Hash + Eq>(
    tiers: &[Vec<Option<K>>],
    sizes: &[u32],
    groups: &HashMap<K, Vec<usize>>,
    copy_sizes: &[u32],
) -> Vec<Option<usize>> {
    let mut taken = vec![false; copy_sizes.len()];
    let mut out: Vec<Option<usize>> = vec![None; sizes.len()];
    for keys in tiers {
        pair_tier(keys, sizes, groups, copy_sizes, &mut taken, &mut out);
    }
    out
}

/// One tier of [`pair_grouped`]: exact sizes first, then, smallest originals first, the
/// smallest copy that fits.
fn pair_tier<K: std::hash::Hash + Eq>(
    keys: &[Option<K>],
    sizes: &[u32],
    groups: &HashMap<K, Vec<usize>>,
    copy_sizes: &[u32],
    taken: &mut [bool],
    out: &mut [Option<usize>],
) {
    let group = |k: usize, out: &[Option<usize>]| {
        if out[k].is_some() {
            return None;
        }
        keys[k].as_ref().and_then(|key| groups.get(key))
    };
    for (k, &size) in sizes.iter().enumerate() {
        let Some(g) = group(k, out) else {
            continue;
        };
        if let Some(&i) = g.iter().find(|&&i| !taken[i] && copy_sizes[i] == size) {
            taken[i] = true;
            out[k] = Some(i);
        }
    }
    // Smallest originals first: each takes the smallest copy that fits, so no smaller
    // original is left without the copy a larger one took while another would have done for
    // that one (the most pairs the sizes allow), and the pairs do not depend on the order of
    // the originals.
    let mut by_size: Vec<usize> = (0..sizes.len()).collect();
    by_size.sort_by_key(|&k| (sizes[k], k));
    for k in by_size {
        let size = sizes[k];
        let Some(g) = group(k, out) else {
            continue;
        };
        let best = g
            .iter()
            .copied()
            .filter(|&i| !taken[i] && size_fits(size, copy_sizes[i]))
            .min_by_key(|&i| (copy_sizes[i], i));
        if let Some(i) = best {
            taken[i] = true;
            out[k] = Some(i);
        }
    }
}

/// [`Fingerprint::size_fits`] on sizes.
fn size_fits(original: u32, copy: u32) -> bool {
    let (o, c) = (u64::from(original), u64::from(copy));
    c == o || (c > o && c <= 2 * o + 2)
}

/// The header block: everything up to and including the first empty line (the whole message if
/// there is none).
pub fn header_block(msg: &[u8]) -> &[u8] {
    // A message that starts with an empty line has an empty header block.
    if msg.starts_with(b"\r\n") {
        return &msg[..2];
    }
    if msg.starts_with(b"\n") {
        return &msg[..1];
    }
    // The first line end that closes an empty line, `\n\n` or `\r\n\r\n`, whichever ends first:
    // one pass over the line ends (the header is a small part of a message; the old two scans
    // with `windows` read every byte of a CRLF message's body looking for `\n\n`).
    for i in memchr::memchr_iter(b'\n', msg) {
        match msg.get(i + 1) {
            Some(b'\n') => return &msg[..i + 2],
            Some(b'\r') if i > 0 && msg[i - 1] == b'\r' && msg.get(i + 2) == Some(&b'\n') => {
                return &msg[..i + 3];
            }
            _ => {}
        }
    }
    msg
}

/// The Message-ID of a header block, if any (first occurrence, unfolded and trimmed).
pub fn message_id(header: &[u8]) -> Option<String> {
    let (headers, _) = mailparse::parse_headers(header).ok()?;
    headers.iter().find_map(|h| {
        if h.get_key_ref().eq_ignore_ascii_case("Message-ID") {
            let v = String::from_utf8_lossy(h.get_value_raw())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            (!v.is_empty()).then_some(v)
        } else {
            None
        }
    })
}

/// The Subject of a header block, decoded (RFC 2047), for reports.
pub fn subject(header: &[u8]) -> Option<String> {
    let (headers, _) = mailparse::parse_headers(header).ok()?;
    headers
        .iter()
        .find(|h| h.get_key_ref().eq_ignore_ascii_case("Subject"))
        // Decoded text is the sender's: no control characters reach a terminal or a report.
        .map(|h| {
            h.get_value()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
}

#[cfg(test)]
mod subject_tests {
    #[test]
    fn subject_is_decoded_and_cleaned() {
        let h = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \x1b[31mred\r\nX: y\r\n\r\n";
        assert_eq!(super::subject(h).as_deref(), Some("Grüße [31mred"));
    }
}

/// The header block with CRLF and bare LF (and a stray CR before LF) as LF, and the line ends at
/// its end dropped: what survives a server that rewrites line ends on APPEND.
fn unified_line_ends(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for (i, &b) in header.iter().enumerate() {
        if b == b'\r' && header.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    while matches!(out.last(), Some(b'\n' | b'\r')) {
        out.pop();
    }
    out
}

/// Whether any byte is >= 0x80.
fn has_8bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b >= 0x80)
}

/// The bytes with each one >= 0x80 replaced by `X`: what Cyrus (`munge8bit`) stores of a header.
pub fn munge_8bit(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b >= 0x80 { b'X' } else { b })
        .collect()
}

/// A whole message with its header block munged ([`munge_8bit`]) and the rest as it is: the
/// message as a munging server stores it (the message itself when its header is 7-bit).
pub fn munge_header_of(msg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let header = header_block(msg);
    if !has_8bit(header) {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = munge_8bit(header);
    out.extend_from_slice(&msg[header.len()..]);
    std::borrow::Cow::Owned(out)
}

/// First 16 bytes of the SHA-256 of the header with line ends unified, hex.
fn header_hash(header: &[u8]) -> String {
    hex::encode(&Sha256::digest(unified_line_ends(header))[..16])
}

/// SHA-256 of all bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Fingerprint {
    /// Fingerprint of a full message as fetched.
    pub fn of_message(body: &[u8], internaldate: &str) -> Fingerprint {
        Fingerprint::of_header(header_block(body), body.len() as u32, internaldate)
    }

    /// Fingerprint from a header block (`BODY[HEADER]`), the size and the INTERNALDATE.
    pub fn of_header(header: &[u8], size: u32, internaldate: &str) -> Fingerprint {
        Fingerprint {
            message_id: message_id(header),
            size,
            internaldate: internaldate.to_string(),
            header_hash: header_hash(header),
            v: 1,
            raw_hash: Some(hex::encode(&Sha256::digest(header)[..16])),
            munged: has_8bit(header).then(|| {
                let m = munge_8bit(header);
                Munged {
                    message_id: message_id(&m),
                    header_hash: header_hash(&m),
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition [`header_block`] implements in one pass: the earlier end of the first
    /// `\r\n\r\n` and the first `\n\n`.
    fn header_block_by_definition(msg: &[u8]) -> &[u8] {
        let find = |needle: &[u8]| msg.windows(needle.len()).position(|w| w == needle);
        let end = match (
            find(b"\r\n\r\n").map(|p| p + 4),
            find(b"\n\n").map(|p| p + 2),
        ) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(msg.len()),
        };
        if msg.starts_with(b"\r\n") {
            return &msg[..2];
        }
        if msg.starts_with(b"\n") {
            return &msg[..1];
        }
        &msg[..end]
    }

    #[test]
    fn header_block_matches_its_definition() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"\r\n",
            b"\r",
            b"A",
            b"A: b\r\n\r\n",
            b"A: b\n\r\n\r\nx",
            b"A: b\r\n\nx",
            b"A: b\n\r\nx",
            b"A: b\r\r\n\r\nx",
            b"\n\r\n\r\n",
            b"A\r\n\r",
            b"A\r\n\r\n\n\n",
            b"A\nB\r\n\r\n",
            b"A\r\nB\n\n\r\n\r\n",
        ];
        for c in cases {
            assert_eq!(header_block(c), header_block_by_definition(c), "{c:?}");
        }
        // Every string of up to 6 bytes over the alphabet that matters.
        let alphabet = [b'\r', b'\n', b'A'];
        for len in 0..=6u32 {
            for n in 0..3usize.pow(len) {
                let mut k = n;
                let msg: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[k % 3];
                        k /= 3;
                        b
                    })
                    .collect();
                assert_eq!(
                    header_block(&msg),
                    header_block_by_definition(&msg),
                    "{msg:?}"
                );
            }
        }
    }

    #[test]
    fn header_block_variants() {
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_block(b"A: b\n\nbody\r\n\r\n"), b"A: b\n\n");
        assert_eq!(header_block(b"A: b\r\n"), b"A: b\r\n");
        assert_eq!(header_block(b"\r\nbody"), b"\r\n");
    }

    #[test]
    fn message_id_found_and_folded() {
        let h = b"Subject: x\r\nMessage-Id:\r\n <abc@example.com>\r\n\r\n";
        assert_eq!(message_id(h).as_deref(), Some("<abc@example.com>"));
        assert_eq!(message_id(b"Subject: x\r\n\r\n"), None);
    }

    #[test]
    fn same_id_different_content_differs() {
        let a = Fingerprint::of_message(
            b"Message-ID: <x@y>\r\nSubject: a\r\n\r\nA",
            "01-Jan-2020 00:00:00 +0000",
        );
        let b = Fingerprint::of_message(
            b"Message-ID: <x@y>\r\nSubject: b\r\n\r\nA",
            "01-Jan-2020 00:00:00 +0000",
        );
        assert_eq!(a.message_id, b.message_id);
        assert_ne!(a, b);
        let c = Fingerprint::of_message(
            b"Message-ID: <x@y>\r\nSubject: a\r\n\r\nA",
            "01-Jan-2020 00:00:00 +0000",
        );
        assert_eq!(a, c);
    }

    fn fp(_id: &str, size: u32, date: &str, header: &str) -> Fingerprint {
        Fingerprint::of_header(header.as_bytes(), size, date)
    }

    #[test]
    fn same_instant_in_other_zones_and_line_ends_match() {
        let a = fp(
            "x",
            100,
            "14-Mar-2024 09:26:53 +0100",
            "Message-ID: <a@b>\r\nSubject: s\r\n\r\n",
        );
        let b = fp(
            "x",
            100,
            "14-Mar-2024 04:26:53 -0400",
            "Message-ID: <a@b>\nSubject: s\n\n",
        );
        let c = fp(
            "x",
            100,
            " 4-Mar-2024 09:26:53 +0100",
            "Message-ID: <a@b>\r\nSubject: s\r\n\r\n",
        );
        assert_eq!(a.match_key(), b.match_key());
        assert!(a.matches(&b));
        assert_ne!(a.match_key(), c.match_key(), "another day");
        // Unparsable dates still compare, as text.
        let d = fp("x", 100, "garbage", "Subject: s\r\n\r\n");
        let e = fp("x", 100, " garbage ", "Subject: s\r\n\r\n");
        assert!(d.matches(&e));
    }

    #[test]
    fn pairing_table() {
        let h = "Subject: s\r\n\r\n";
        let date = "01-Jan-2020 00:00:00 +0000";
        let f = |size| fp("", size, date, h);
        struct Case {
            name: &'static str,
            originals: Vec<u32>,
            copies: Vec<u32>,
            want: Vec<Option<usize>>,
        }
        let cases = [
            Case {
                name: "exact sizes, in order",
                originals: vec![10, 10],
                copies: vec![10, 10],
                want: vec![Some(0), Some(1)],
            },
            Case {
                name: "exact before grown: the grown copy is not taken by the wrong original",
                originals: vec![10, 12],
                copies: vec![12, 13],
                want: vec![Some(1), Some(0)],
            },
            Case {
                name: "a copy grown by rewriting (CRLF, final newline) is found",
                originals: vec![100],
                copies: vec![102],
                want: vec![Some(0)],
            },
            Case {
                name: "never smaller, never more than line ends explain",
                originals: vec![100, 100],
                copies: vec![99, 203],
                want: vec![None, None],
            },
            Case {
                name: "multiset: one copy for two identical originals",
                originals: vec![10, 10],
                copies: vec![10],
                want: vec![Some(0), None],
            },
            Case {
                name: "the smallest fitting copy first",
                originals: vec![10],
                copies: vec![15, 11],
                want: vec![Some(1)],
            },
            // Found by tests/fuzz_fingerprint.rs: taken in list order, 10 took 11 and left 5
            // without a copy; and which of two originals took a copy depended on their order.
            Case {
                name: "grown copies go to the smallest originals first: as many pairs as can be",
                originals: vec![10, 5],
                copies: vec![11, 20],
                want: vec![Some(1), Some(0)],
            },
            Case {
                name: "and whatever the order of the originals",
                originals: vec![30, 29],
                copies: vec![38],
                want: vec![None, Some(0)],
            },
        ];
        for c in cases {
            let o: Vec<Fingerprint> = c.originals.iter().map(|&s| f(s)).collect();
            let n: Vec<Fingerprint> = c.copies.iter().map(|&s| f(s)).collect();
            let got = pair_up(&o.iter().collect::<Vec<_>>(), &n.iter().collect::<Vec<_>>());
            assert_eq!(got, c.want, "{}", c.name);
        }
        // Another key never pairs.
        let other = fp("", 10, date, "Subject: t\r\n\r\n");
        assert_eq!(pair_up(&[&f(10)], &[&other]), vec![None]);
    }

    /// Pairing rows with headers: a copy whose 8-bit header bytes a server replaced by `X`
    /// (Cyrus `munge8bit`) pairs, after every exact pairing; any other header difference never.
    #[test]
    fn munged_pairing_table() {
        let date = "01-Jan-2020 00:00:00 +0000";
        let utf8 = "Message-ID: <m@b>\r\nSubject: caf\u{e9}\r\n\r\n"
            .as_bytes()
            .to_vec();
        let latin1 = b"Message-ID: <m@b>\r\nFrom: J\xfcrgen <j@b>\r\n\r\n".to_vec();
        let ascii_xx = b"Message-ID: <m@b>\r\nSubject: cafXX\r\n\r\n".to_vec();
        let h = |s: &str| s.as_bytes().to_vec();
        struct Case {
            name: &'static str,
            originals: Vec<(Vec<u8>, u32)>,
            copies: Vec<(Vec<u8>, u32)>,
            want: Vec<Option<usize>>,
        }
        let cases = [
            Case {
                name: "UTF-8 Subject munged (each byte an X, same size)",
                originals: vec![(utf8.clone(), 50)],
                copies: vec![(munge_8bit(&utf8), 50)],
                want: vec![Some(0)],
            },
            Case {
                name: "Latin-1 From munged",
                originals: vec![(latin1.clone(), 50)],
                copies: vec![(munge_8bit(&latin1), 50)],
                want: vec![Some(0)],
            },
            Case {
                name: "8-bit Message-ID munged too",
                originals: vec![(h("Message-ID: <caf\u{e9}@b>\r\nSubject: s\r\n\r\n"), 50)],
                copies: vec![(h("Message-ID: <cafXX@b>\r\nSubject: s\r\n\r\n"), 50)],
                want: vec![Some(0)],
            },
            Case {
                name: "munged and line ends rewritten, size grown",
                originals: vec![(h("Message-ID: <m@b>\nSubject: caf\u{e9}\n\n"), 50)],
                copies: vec![(munge_8bit(&utf8), 53)],
                want: vec![Some(0)],
            },
            Case {
                name: "identical copies first: each original takes its own",
                originals: vec![(utf8.clone(), 50), (ascii_xx.clone(), 50)],
                copies: vec![(ascii_xx.clone(), 50), (utf8.clone(), 50)],
                want: vec![Some(1), Some(0)],
            },
            Case {
                name: "an original whose plain twin took the only exact copy takes the munged one",
                originals: vec![(utf8.clone(), 50), (ascii_xx.clone(), 50)],
                copies: vec![(ascii_xx.clone(), 50), (ascii_xx.clone(), 50)],
                want: vec![Some(1), Some(0)],
            },
            Case {
                name: "multiset: one munged copy for two identical originals",
                originals: vec![(utf8.clone(), 50), (utf8.clone(), 50)],
                copies: vec![(munge_8bit(&utf8), 50)],
                want: vec![Some(0), None],
            },
            Case {
                name: "the header differs elsewhere too: no pair",
                originals: vec![(
                    h("Message-ID: <m@b>\r\nSubject: caf\u{e9}\r\nX: 1\r\n\r\n"),
                    50,
                )],
                copies: vec![(h("Message-ID: <m@b>\r\nSubject: cafXX\r\nX: 2\r\n\r\n"), 50)],
                want: vec![None],
            },
            Case {
                name: "bytes replaced by something else than X, or only some: no pair",
                originals: vec![(utf8.clone(), 50), (utf8.clone(), 50)],
                copies: vec![
                    (h("Message-ID: <m@b>\r\nSubject: caf??\r\n\r\n"), 50),
                    (
                        b"Message-ID: <m@b>\r\nSubject: cafX\xa9\r\n\r\n".to_vec(),
                        50,
                    ),
                ],
                want: vec![None, None],
            },
            Case {
                name: "a copy never gains 8-bit bytes: a 7-bit original has no munged form",
                originals: vec![(ascii_xx.clone(), 50)],
                copies: vec![(utf8.clone(), 50)],
                want: vec![None],
            },
            Case {
                name: "munged, but never smaller",
                originals: vec![(utf8.clone(), 50)],
                copies: vec![(munge_8bit(&utf8), 49)],
                want: vec![None],
            },
        ];
        let fps = |v: &[(Vec<u8>, u32)]| -> Vec<Fingerprint> {
            v.iter()
                .map(|(h, s)| Fingerprint::of_header(h, *s, date))
                .collect()
        };
        for c in cases {
            let (o, n) = (fps(&c.originals), fps(&c.copies));
            let got = pair_up(&o.iter().collect::<Vec<_>>(), &n.iter().collect::<Vec<_>>());
            assert_eq!(got, c.want, "{}", c.name);
            // Every pair is told identical or munged by `munged_in`, as its bytes are.
            for (k, p) in got.iter().enumerate() {
                if let Some(j) = *p {
                    let rewritten = c.originals[k].0 != c.copies[j].0
                        && munge_8bit(&c.originals[k].0) != c.originals[k].0;
                    assert_eq!(o[k].munged_in(&n[j]), rewritten, "{}: pair {k}", c.name);
                }
            }
        }
        // Another day never pairs, munged or not.
        let other_day =
            Fingerprint::of_header(&munge_8bit(&utf8), 50, "02-Jan-2020 00:00:00 +0000");
        let orig = Fingerprint::of_header(&utf8, 50, date);
        assert_eq!(pair_up(&[&orig], &[&other_day]), vec![None]);
        assert!(Fingerprint::of_header(&ascii_xx, 50, date).munged.is_none());
        assert!(!orig.munged_in(&orig));
    }

    /// A fingerprint as the release before the munged form stored it (version 1, no `munged`
    /// field) reads back and pairs with one made now, 8-bit header or not; one made now keeps
    /// its munged form through the state store.
    #[test]
    fn version_1_fingerprints_stored_before_still_pair() {
        let date = "01-Jan-2020 00:00:00 +0000";
        let header = "Message-ID: <v1@example.com>\r\nSubject: caf\u{e9}\r\n\r\n";
        let stored = r#"{"message_id":"<v1@example.com>","size":60,"internaldate":"01-Jan-2020 00:00:00 +0000","header_hash":"fc9415d31d0b7b2c48d10f7abe1a1bac","v":1}"#;
        let old: Fingerprint = serde_json::from_str(stored).unwrap();
        assert_eq!((old.v, old.munged.as_ref()), (1, None));
        let now = Fingerprint::of_header(header.as_bytes(), 60, date);
        assert_eq!(
            now.header_hash, old.header_hash,
            "the hash kept its meaning"
        );
        assert_eq!(pair_up(&[&old], &[&now]), vec![Some(0)]);
        assert_eq!(pair_up(&[&now], &[&old]), vec![Some(0)]);
        assert!(!old.munged_in(&now) && !now.munged_in(&old));
        let json = serde_json::to_string(&now).unwrap();
        let back: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(back.munged, now.munged);
        let munged = Fingerprint::of_header(&munge_8bit(header.as_bytes()), 60, date);
        assert_eq!(pair_up(&[&back], &[&munged]), vec![Some(0)]);
        assert!(back.munged_in(&munged));
        // A 7-bit header's stored form is what it was: no `munged` field.
        let plain = Fingerprint::of_header(b"Subject: s\r\n\r\n", 10, date);
        assert!(!serde_json::to_string(&plain).unwrap().contains("munged"));
    }

    #[test]
    fn munge_header_of_leaves_the_body() {
        let m = "Subject: caf\u{e9}\r\n\r\nbody caf\u{e9}\r\n".as_bytes();
        assert_eq!(
            munge_header_of(m).as_ref(),
            "Subject: cafXX\r\n\r\nbody caf\u{e9}\r\n".as_bytes()
        );
        let plain = b"Subject: s\r\n\r\nbody \xe9\r\n";
        assert!(matches!(
            munge_header_of(plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// A fingerprint an earlier version stored (raw header hash, no version) still pairs with a
    /// copy listed now: an upgrade in the middle of a migration copies nothing twice.
    #[test]
    fn version_0_originals_pair_by_the_raw_hash() {
        let date = "01-Jan-2020 00:00:00 +0000";
        let now = Fingerprint::of_header(b"Subject: s\r\n\r\n", 10, date);
        let stored = Fingerprint {
            header_hash: now.raw_hash.clone().unwrap(),
            v: 0,
            raw_hash: None,
            ..now.clone()
        };
        let json = serde_json::to_string(&stored)
            .unwrap()
            .replace(",\"v\":0", "");
        let old: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(old.v, 0);
        assert_eq!(pair_up(&[&old], &[&now]), vec![Some(0)]);
        assert_eq!(pair_up(&[&now], &[&now]), vec![Some(0)]);
        // The stored form of a fingerprint made now says its version.
        assert!(serde_json::to_string(&now).unwrap().contains("\"v\":1"));
    }
}
