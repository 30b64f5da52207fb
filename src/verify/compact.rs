//! The compact record verify keeps per message, and the matching rule on it.
//!
//! A 1,000,000-message folder cannot be compared as lists of [`crate::store::Described`]
//! (Message-ID, INTERNALDATE, header hash and Subject strings for every message) within the run's
//! memory budget. Verify keeps 56 bytes per message instead: a 128-bit hash of the
//! [`crate::fingerprint::MatchKey`] in its munged form (8-bit header bytes as `X`, the key
//! itself for a 7-bit header), 64 bits of the hash of the exact key, the UID, the size, a hash of
//! the normalised flags and (with `--deep`) a hash of the body. A copy and its original share
//! the munged key whether the copy is identical or munged, so they land in one bucket.
//! [`pair_records`] is [`crate::fingerprint::pair_up`] on these records, step by step (a unit
//! test checks both give the same pairs): same exact key first, then an original with 8-bit
//! header bytes and a 7-bit copy of its munged key; in each tier exact sizes first for all
//! originals, then the smallest copy whose size line-end rewriting explains.
//!
//! Two different keys share a hash with a probability of about 2^-128 per pair; two different
//! exact keys of one munged key (messages that differ only in 8-bit header bytes), and two
//! different flag sets, with about 2^-64. All are far below any other risk of the comparison.

use crate::fingerprint::{Fingerprint, MatchKey};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

/// One message as verify keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Hash of the munged match key (Message-ID, INTERNALDATE as an instant, header hash, with
    /// 8-bit header bytes as `X`): the bucket and group of the record.
    pub key: u128,
    /// 64 bits of the hash of the exact match key: equal to `key`'s low 64 bits for a 7-bit
    /// header ([`Rec::plain`]).
    pub exact: u64,
    pub uid: u32,
    /// RFC822.SIZE.
    pub size: u32,
    /// Hash of the flags as compared (lower case, `\Recent` left out, as a set).
    pub flags: u64,
    /// Hash of the whole message with its header munged ([`body_hash`], `--deep`); 0 when not
    /// fetched.
    pub body: u128,
}

/// Bytes of one record on disk.
pub const REC_BYTES: usize = 56;

impl Rec {
    pub fn new(uid: u32, fp: &Fingerprint, flags: &[String]) -> Rec {
        let key = key_hash(&fp.munged_key().unwrap_or_else(|| fp.match_key()));
        Rec {
            key,
            exact: key_hash(&fp.match_key()) as u64,
            uid,
            size: fp.size,
            flags: flags_hash(flags),
            body: 0,
        }
    }

    /// Whether the message's header has no 8-bit bytes (its exact key is its munged key).
    pub fn plain(&self) -> bool {
        self.exact == self.key as u64
    }

    /// Whether this copy's header is not its original's byte for byte but the original's with
    /// 8-bit bytes as `X` (a pair [`pair_records`] made by that tolerance).
    pub fn altered_from(&self, original: &Rec) -> bool {
        self.exact != original.exact
    }

    pub fn to_bytes(self) -> [u8; REC_BYTES] {
        let mut b = [0u8; REC_BYTES];
        b[..16].copy_from_slice(&self.key.to_le_bytes());
        b[16..24].copy_from_slice(&self.exact.to_le_bytes());
        b[24..28].copy_from_slice(&self.uid.to_le_bytes());
        b[28..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.flags.to_le_bytes());
        b[40..].copy_from_slice(&self.body.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; REC_BYTES]) -> Rec {
        let u128_at = |i: usize| u128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Rec {
            key: u128_at(0),
            exact: u64_at(16),
            uid: u32_at(24),
            size: u32_at(28),
            flags: u64_at(32),
            body: u128_at(40),
        }
    }
}

/// Feeds what `Hash` writes into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }
}

fn digest128(d: &[u8]) -> u128 {
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// 128 bits of SHA-256 over the key as `Hash` writes it: equal keys give equal hashes (within one
/// process, which is as long as the records live).
pub fn key_hash(k: &MatchKey) -> u128 {
    let mut h = ShaHasher(Sha256::new());
    k.hash(&mut h);
    digest128(&h.0.finalize())
}

/// The flags as verify compares them: without `\Recent` (the server's), without case, as a set.
pub fn normalized_flags(flags: &[String]) -> BTreeSet<String> {
    flags
        .iter()
        .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
        .map(|x| x.to_ascii_lowercase())
        .collect()
}

pub fn flags_hash(flags: &[String]) -> u64 {
    let mut h = Sha256::new();
    for f in normalized_flags(flags) {
        h.update(f.as_bytes());
        h.update([0]);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// SHA-256 of the whole message with its header munged
/// ([`crate::fingerprint::munge_header_of`]). Of two messages whose exact keys are equal, these
/// are equal only if the messages are byte for byte (munging keeps every CR and LF where it is,
/// and the unified headers are equal); of an original and a munged copy, only if the copy is
/// exactly what munging makes of it. So `--deep` compares both kinds of pair by one hash.
pub fn body_hash(body: &[u8]) -> u128 {
    let munged = crate::fingerprint::munge_header_of(body);
    // Never 0, which means "not fetched".
    digest128(&Sha256::digest(&munged)).max(1)
}

/// [`crate::fingerprint::pair_up`] on records, by its tiers and passes
/// ([`crate::fingerprint::pair_grouped`]): for each original (in order) the index of its copy, or
/// `None`. First by the exact key, then an original with 8-bit header bytes by the 7-bit copies
/// of its munged key; in each tier copies of the exact size first, for all originals, then
/// originals left over, the smallest first, take the smallest copy (then the first) whose size
/// fits.
pub fn pair_records(originals: &[Rec], copies: &[Rec]) -> Vec<Option<usize>> {
    let mut groups: HashMap<(u128, u64), Vec<usize>> = HashMap::new();
    for (i, c) in copies.iter().enumerate() {
        groups.entry((c.key, c.exact)).or_default().push(i);
    }
    let exact: Vec<Option<(u128, u64)>> =
        originals.iter().map(|o| Some((o.key, o.exact))).collect();
    // The 7-bit form of the munged key: `(key, low 64 bits of key)`, as a plain copy has it.
    let munged: Vec<Option<(u128, u64)>> = originals
        .iter()
        .map(|o| (!o.plain()).then_some((o.key, o.key as u64)))
        .collect();
    let sizes: Vec<u32> = originals.iter().map(|o| o.size).collect();
    let copy_sizes: Vec<u32> = copies.iter().map(|c| c.size).collect();
    crate::fingerprint::pair_grouped(&[exact, munged], &sizes, &groups, &copy_sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let r = Rec {
            key: u128::MAX - 7,
            exact: 3,
            uid: 42,
            size: 1234,
            flags: 99,
            body: 5,
        };
        assert_eq!(Rec::from_bytes(&r.to_bytes()), r);
    }

    #[test]
    fn keys_as_the_fingerprint_compares_them() {
        let a = Fingerprint::of_header(
            b"Message-ID: <a@b>\r\nSubject: s\r\n\r\n",
            10,
            "14-Mar-2024 09:26:53 +0100",
        );
        let b = Fingerprint::of_header(
            b"Message-ID: <a@b>\nSubject: s\n\n",
            12,
            "14-Mar-2024 04:26:53 -0400",
        );
        let c = Fingerprint::of_header(
            b"Message-ID: <a@b>\r\nSubject: t\r\n\r\n",
            10,
            "14-Mar-2024 09:26:53 +0100",
        );
        assert_eq!(key_hash(&a.match_key()), key_hash(&b.match_key()));
        assert_ne!(key_hash(&a.match_key()), key_hash(&c.match_key()));
        // An 8-bit header and its munged copy share the bucket key, not the exact key.
        let date = "14-Mar-2024 09:26:53 +0100";
        let h = "Message-ID: <a@b>\r\nSubject: caf\u{e9}\r\n\r\n".as_bytes();
        let orig = Rec::new(1, &Fingerprint::of_header(h, 10, date), &[]);
        let munged = crate::fingerprint::munge_8bit(h);
        let copy = Rec::new(2, &Fingerprint::of_header(&munged, 10, date), &[]);
        assert_eq!(orig.key, copy.key);
        assert!(!orig.plain() && copy.plain() && copy.altered_from(&orig));
        assert_eq!(pair_records(&[orig], &[copy]), vec![Some(0)]);
        assert!(!Rec::new(3, &a, &[]).altered_from(&Rec::new(4, &b, &[])));
        let f = |v: &[&str]| flags_hash(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(f(&["\\Seen", "$X"]), f(&["$x", "\\Recent", "\\SEEN"]));
        assert_ne!(f(&["\\Seen"]), f(&[]));
    }

    /// The records pair exactly as `fingerprint::pair_up` pairs the fingerprints, over many
    /// random folders with few keys (many twins) and sizes near each other (grown copies).
    #[test]
    fn pairs_exactly_as_pair_up() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..2000 {
            // Keys 0..3, each as 7-bit, 8-bit (UTF-8) and munged header: identical copies,
            // munged copies and 7-bit twins of a munged form all meet.
            let fp = |key: u64, size: u64| {
                let form = ["", "caf\u{e9}", "cafXX"][(key % 3) as usize];
                Fingerprint::of_header(
                    format!("Subject: {} {form}\r\n\r\n", key / 3).as_bytes(),
                    size as u32,
                    "01-Jan-2020 00:00:00 +0000",
                )
            };
            let (no, nc) = (next(8), next(8));
            let olds: Vec<Fingerprint> = (0..no).map(|_| fp(next(9), 10 + next(4))).collect();
            let news: Vec<Fingerprint> = (0..nc).map(|_| fp(next(9), 10 + next(14))).collect();
            let want = crate::fingerprint::pair_up(
                &olds.iter().collect::<Vec<_>>(),
                &news.iter().collect::<Vec<_>>(),
            );
            let rec = |(i, f): (usize, &Fingerprint)| Rec::new(i as u32 + 1, f, &[]);
            let got = pair_records(
                &olds.iter().enumerate().map(rec).collect::<Vec<_>>(),
                &news.iter().enumerate().map(rec).collect::<Vec<_>>(),
            );
            assert_eq!(got, want, "round {round}");
        }
    }
}
