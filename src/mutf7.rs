//! IMAP modified UTF-7 mailbox-name codec (RFC 3501 section 5.1.3).
//!
//! IMAP servers that do not speak `UTF8=ACCEPT` send and expect mailbox names
//! in *modified UTF-7*: printable US-ASCII represents itself, `&` is written
//! `&-`, and everything else travels as `&...-` runs of a modified BASE64
//! encoding of UTF-16BE. async-imap hands mailbox names to us exactly as they
//! appear on the wire and does not decode them, so without this module we
//! would log, compare and display `Entw&APw-rfe` instead of `Entwürfe`.
//!
//! More importantly, a migration must recreate every folder on the new server
//! under the *same* name. We decode the old server's name to Unicode (the
//! identity of the folder), and re-encode it for the new server with
//! [`encode`], which always produces the single canonical wire form. The
//! decoder is strict and accepts exactly the strings [`encode`] can produce,
//! so for every `wire` for which `decode(wire)` is `Ok(name)`,
//! `encode(&name) == wire` holds byte for byte. A name that is not valid,
//! canonical modified UTF-7 is reported as an error (with the byte offset of
//! the problem) instead of being silently "repaired" into a different folder.
//! [`decode_lossy`] exists for display only.

use std::error::Error;
use std::fmt;

/// The modified BASE64 alphabet: RFC 2045 BASE64 with `,` in place of `/`.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a wire-form mailbox name is not valid modified UTF-7.
///
/// Every variant carries `pos`, a byte offset into the input given to
/// [`decode`]. Decoding stops at the first raw non-ASCII character, so every
/// byte before `pos` is ASCII and `pos` is also a character offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutf7Error {
    /// A `&` at `pos` opens a shifted run that never reaches its closing `-`.
    Unterminated { pos: usize },
    /// `found` at `pos`, inside a shifted run, is not in the modified BASE64
    /// alphabet (`A-Z a-z 0-9 + ,`) and is not the closing `-`.
    InvalidBase64 { pos: usize, found: char },
    /// The run whose last BASE64 character is at `pos` has a character left
    /// over that carries no complete byte (its length is 1 modulo 4).
    ExcessBase64 { pos: usize },
    /// The run ending at `pos` encodes an odd number of bytes, which is not
    /// UTF-16.
    OddLength { pos: usize },
    /// The last BASE64 character of a run, at `pos`, has non-zero padding
    /// bits.
    NonZeroPadding { pos: usize },
    /// The UTF-16 code unit starting at the BASE64 character at `pos` is a
    /// surrogate without its partner.
    UnpairedSurrogate { pos: usize, unit: u16 },
    /// The BASE64 character at `pos` starts the encoding of `ch`, a printable
    /// US-ASCII character, which must represent itself (RFC 3501: modified
    /// BASE64 MUST NOT be used for it).
    EncodedPrintable { pos: usize, ch: char },
    /// The shifted run opened by the `&` at `pos` directly follows another
    /// shifted run; the canonical form is a single merged run (RFC 9051
    /// appendix A.1 gives `&U,BTFw-&ZeVnLIqe-` as a non-conforming example).
    AdjacentRuns { pos: usize },
    /// `found` at `pos` is outside US-ASCII; a modified UTF-7 name is pure
    /// 7-bit ASCII (probably a raw UTF-8 or 8-bit name).
    RawNonAscii { pos: usize, found: char },
    /// The ASCII control character `byte` at `pos` appears unencoded; only
    /// 0x20..=0x7e may represent themselves.
    RawControl { pos: usize, byte: u8 },
}

impl Mutf7Error {
    /// Byte offset into the decoded input where the problem was found.
    #[must_use]
    pub fn position(&self) -> usize {
        match *self {
            Mutf7Error::Unterminated { pos }
            | Mutf7Error::InvalidBase64 { pos, .. }
            | Mutf7Error::ExcessBase64 { pos }
            | Mutf7Error::OddLength { pos }
            | Mutf7Error::NonZeroPadding { pos }
            | Mutf7Error::UnpairedSurrogate { pos, .. }
            | Mutf7Error::EncodedPrintable { pos, .. }
            | Mutf7Error::AdjacentRuns { pos }
            | Mutf7Error::RawNonAscii { pos, .. }
            | Mutf7Error::RawControl { pos, .. } => pos,
        }
    }
}

impl fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid modified UTF-7 at byte {}: ", self.position())?;
        match *self {
            Mutf7Error::Unterminated { .. } => f.write_str("'&' run is not terminated by '-'"),
            Mutf7Error::InvalidBase64 { found, .. } => {
                write!(f, "{found:?} is not a modified BASE64 character")
            }
            Mutf7Error::ExcessBase64 { .. } => {
                f.write_str("superfluous BASE64 character (run length is 1 mod 4)")
            }
            Mutf7Error::OddLength { .. } => {
                f.write_str("run encodes an odd number of bytes, not UTF-16")
            }
            Mutf7Error::NonZeroPadding { .. } => {
                f.write_str("non-zero padding bits at the end of the run")
            }
            Mutf7Error::UnpairedSurrogate { unit, .. } => {
                write!(f, "unpaired UTF-16 surrogate 0x{unit:04X}")
            }
            Mutf7Error::EncodedPrintable { ch, .. } => write!(
                f,
                "printable ASCII {ch:?} is BASE64-encoded (non-canonical)"
            ),
            Mutf7Error::AdjacentRuns { .. } => {
                f.write_str("shifted run directly follows another one (non-canonical)")
            }
            Mutf7Error::RawNonAscii { found, .. } => {
                write!(f, "raw non-ASCII character {found:?}")
            }
            Mutf7Error::RawControl { byte, .. } => {
                write!(f, "raw control character 0x{byte:02X}")
            }
        }
    }
}

impl Error for Mutf7Error {}

/// True for the characters that represent themselves on the wire (and `&`,
/// which is printable but is written `&-`).
fn is_printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

fn base64_value(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Encodes a Unicode mailbox name to its canonical modified UTF-7 wire form.
///
/// Printable ASCII other than `&` passes through, `&` becomes `&-`, and each
/// maximal stretch of other characters becomes one `&...-` run of modified
/// BASE64 (`,` instead of `/`, no `=` padding) over its UTF-16BE encoding.
/// The output is always printable ASCII. Hierarchy delimiters are ordinary
/// characters here: encode the full name, not its parts.
#[must_use]
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + name.len() / 2);
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_printable(u32::from(c)) {
            flush_run(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut pending, &mut out);
    out
}

/// Writes `units` as one `&...-` run (if there are any) and clears them.
fn flush_run(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut nbits: u32 = 0;
    for &unit in units.iter() {
        acc = (acc << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((acc >> nbits) & 0x3f) as usize]));
        }
        acc &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - nbits)) & 0x3f) as usize]));
    }
    out.push('-');
    units.clear();
}

/// Decodes a modified UTF-7 wire name to Unicode, strictly.
///
/// Accepts exactly the canonical form produced by [`encode`]; on success
/// `encode(&decode(wire)?) == wire`. Rejected (see [`Mutf7Error`]):
/// unterminated `&` runs, characters outside the modified BASE64 alphabet in a
/// run, superfluous trailing BASE64 characters, non-zero padding bits,
/// odd-length UTF-16, unpaired surrogates, BASE64-encoded printable ASCII,
/// a run directly following another run, raw non-ASCII characters and raw
/// control characters.
///
/// # Errors
///
/// Returns the first [`Mutf7Error`] found, scanning left to right.
pub fn decode(wire: &str) -> Result<String, Mutf7Error> {
    let bytes = wire.as_bytes();
    let mut out = String::with_capacity(wire.len());
    let mut units: Vec<u16> = Vec::new();
    // Whether the previous token was a non-empty shifted run.
    let mut after_run = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'&' {
            let amp = i;
            let start = i + 1;
            let mut end = start;
            loop {
                match bytes.get(end) {
                    None => return Err(Mutf7Error::Unterminated { pos: amp }),
                    Some(b'-') => break,
                    Some(&c) if base64_value(c).is_some() => end += 1,
                    Some(_) => {
                        let found = wire[end..].chars().next().unwrap_or('\u{FFFD}');
                        return Err(Mutf7Error::InvalidBase64 { pos: end, found });
                    }
                }
            }
            i = end + 1;
            if start == end {
                out.push('&');
                after_run = false;
                continue;
            }
            if after_run {
                return Err(Mutf7Error::AdjacentRuns { pos: amp });
            }
            decode_run(&bytes[start..end], start, &mut units, &mut out)?;
            after_run = true;
        } else if b >= 0x80 {
            // Every earlier byte was ASCII, so `i` is a char boundary.
            let found = wire[i..].chars().next().unwrap_or('\u{FFFD}');
            return Err(Mutf7Error::RawNonAscii { pos: i, found });
        } else if !is_printable(u32::from(b)) {
            return Err(Mutf7Error::RawControl { pos: i, byte: b });
        } else {
            out.push(char::from(b));
            after_run = false;
            i += 1;
        }
    }
    Ok(out)
}

/// Decodes one non-empty run of BASE64 characters (`run`, which starts at
/// byte offset `base` of the input) and appends the characters to `out`.
/// `units` is scratch space.
fn decode_run(
    run: &[u8],
    base: usize,
    units: &mut Vec<u16>,
    out: &mut String,
) -> Result<(), Mutf7Error> {
    let last = base + run.len() - 1;
    // n characters carry floor(6n / 8) bytes plus 6n mod 8 padding bits.
    // Canonical runs carry an even byte count and fewer than 6 padding bits,
    // which depends only on n mod 8.
    match run.len() % 8 {
        0 | 3 | 6 => {}
        1 => return Err(Mutf7Error::ExcessBase64 { pos: last }),
        _ => return Err(Mutf7Error::OddLength { pos: last }),
    }

    units.clear();
    let mut acc: u32 = 0;
    let mut nbits: u32 = 0;
    for &c in run {
        // The caller only passes alphabet characters.
        let v = base64_value(c).unwrap_or(0);
        acc = (acc << 6) | v;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push(((acc >> nbits) & 0xffff) as u16);
            acc &= (1 << nbits) - 1;
        }
    }
    if acc != 0 {
        return Err(Mutf7Error::NonZeroPadding { pos: last });
    }

    // Code unit k occupies bits 16k.. of the run, so its first bit lies in
    // BASE64 character 16k / 6.
    let unit_pos = |k: usize| base + (16 * k) / 6;
    let mut k = 0;
    while k < units.len() {
        let u = units[k];
        let cp = match u {
            0xD800..=0xDBFF => match units.get(k + 1) {
                Some(&lo @ 0xDC00..=0xDFFF) => {
                    k += 1;
                    0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
                }
                _ => {
                    return Err(Mutf7Error::UnpairedSurrogate {
                        pos: unit_pos(k),
                        unit: u,
                    })
                }
            },
            0xDC00..=0xDFFF => {
                return Err(Mutf7Error::UnpairedSurrogate {
                    pos: unit_pos(k),
                    unit: u,
                })
            }
            _ => u32::from(u),
        };
        let start_k = if cp > 0xFFFF { k - 1 } else { k };
        // Always Some: surrogates were rejected above.
        let Some(ch) = char::from_u32(cp) else {
            return Err(Mutf7Error::UnpairedSurrogate {
                pos: unit_pos(start_k),
                unit: u,
            });
        };
        if is_printable(cp) {
            return Err(Mutf7Error::EncodedPrintable {
                pos: unit_pos(start_k),
                ch,
            });
        }
        out.push(ch);
        k += 1;
    }
    Ok(())
}

/// Decodes for display: the decoded name, or `wire` unchanged when it is not
/// valid modified UTF-7. Never use the result to address a mailbox.
#[must_use]
pub fn decode_lossy(wire: &str) -> String {
    decode(wire).unwrap_or_else(|_| wire.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_pair(name: &str, wire: &str) {
        assert_eq!(encode(name), wire, "encode({name:?})");
        assert_eq!(decode(wire).as_deref(), Ok(name), "decode({wire:?})");
    }

    #[test]
    fn rfc3501_example() {
        assert_pair("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    }

    #[test]
    fn ampersand() {
        assert_pair("&", "&-");
        assert_pair("&&x&&", "&-&-x&-&-");
        assert_pair("Tom & Jerry", "Tom &- Jerry");
        assert_pair("&-", "&--");
    }

    #[test]
    fn plain_ascii_passes_through() {
        let all: String = (0x20u8..=0x7e)
            .filter(|&b| b != b'&')
            .map(char::from)
            .collect();
        assert_pair(&all, &all);
        assert_pair("", "");
        assert_pair("INBOX", "INBOX");
        assert_pair("Sent Items/2024", "Sent Items/2024");
    }

    #[test]
    fn german_drafts() {
        assert_pair("Entwürfe", "Entw&APw-rfe");
        assert_pair("tietäjä", "tiet&AOQ-j&AOQ-");
    }

    #[test]
    fn french_sent() {
        assert_pair("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s");
    }

    #[test]
    fn emoji_surrogate_pairs() {
        // U+1F600 is D83D DE00 in UTF-16.
        assert_pair("😀", "&2D3eAA-");
        assert_pair("emoji 🎉", "emoji &2DzfiQ-");
        assert_pair("😀😀", "&2D3eANg93gA-");
        assert_pair("a😀b", "a&2D3eAA-b");
        // The RFC 3501 "☺!" example.
        assert_pair("☺!", "&Jjo-!");
    }

    #[test]
    fn mixed_runs() {
        // One merged run for adjacent non-ASCII chars, split by ASCII.
        assert_pair("台北 日本語", "&U,BTFw- &ZeVnLIqe-");
        assert_pair("日本&語", "&ZeVnLA-&-&ip4-");
        assert_pair("é-", "&AOk--");
        assert_pair("é&é", "&AOk-&-&AOk-");
        assert_pair("Привет/мир", "&BB8EQAQ4BDIENQRC-/&BDwEOARA-");
        // Control characters are not printable, so they are encoded.
        assert_pair("tab\there", "tab&AAk-here");
        assert_pair("\u{7f}", "&AH8-");
        assert_pair("\0", "&AAA-");
        // Mixed BMP and astral chars in one run.
        assert_pair("é😀ü", "&AOnYPd4AAPw-");
    }

    #[test]
    fn decode_lossy_falls_back() {
        assert_eq!(decode_lossy("Entw&APw-rfe"), "Entwürfe");
        assert_eq!(decode_lossy("&Jjo!"), "&Jjo!");
        assert_eq!(decode_lossy("Entwürfe"), "Entwürfe");
        assert_eq!(decode_lossy("&AGE-"), "&AGE-");
    }

    fn err(wire: &str) -> Mutf7Error {
        match decode(wire) {
            Ok(s) => panic!("decode({wire:?}) unexpectedly gave {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rejects_unterminated() {
        assert_eq!(err("&"), Mutf7Error::Unterminated { pos: 0 });
        assert_eq!(err("&Jjo"), Mutf7Error::Unterminated { pos: 0 });
        assert_eq!(err("abc&U,BTFw"), Mutf7Error::Unterminated { pos: 3 });
    }

    #[test]
    fn rejects_bad_base64() {
        assert_eq!(
            err("&Jjo!"),
            Mutf7Error::InvalidBase64 { pos: 4, found: '!' }
        );
        // '/' is standard BASE64 but not modified BASE64.
        assert_eq!(
            err("&U/BTFw-"),
            Mutf7Error::InvalidBase64 { pos: 2, found: '/' }
        );
        // No '=' padding.
        assert_eq!(
            err("&AOk=-"),
            Mutf7Error::InvalidBase64 { pos: 4, found: '=' }
        );
        assert_eq!(
            err("&Jjo&-"),
            Mutf7Error::InvalidBase64 { pos: 4, found: '&' }
        );
        assert_eq!(
            err("&AOé-"),
            Mutf7Error::InvalidBase64 {
                pos: 3, found: 'é'
            }
        );
    }

    #[test]
    fn rejects_excess_base64() {
        assert_eq!(err("&A-"), Mutf7Error::ExcessBase64 { pos: 1 });
        assert_eq!(err("x&ZeVnLIqeA-"), Mutf7Error::ExcessBase64 { pos: 10 });
    }

    #[test]
    fn rejects_nonzero_padding() {
        // "&AOk-" is é; 'l' = 37 = 0b100101 sets the two padding bits.
        assert_eq!(err("&AOl-"), Mutf7Error::NonZeroPadding { pos: 3 });
        assert_eq!(err("ab&2D3eAB-"), Mutf7Error::NonZeroPadding { pos: 8 });
    }

    #[test]
    fn rejects_odd_length() {
        // Two characters carry one byte.
        assert_eq!(err("&AO-"), Mutf7Error::OddLength { pos: 2 });
        // Four characters carry three bytes.
        assert_eq!(err("&AOkA-"), Mutf7Error::OddLength { pos: 4 });
    }

    #[test]
    fn rejects_unpaired_surrogates() {
        // Lone high surrogate D83D.
        assert_eq!(
            err("&2D0-"),
            Mutf7Error::UnpairedSurrogate {
                pos: 1,
                unit: 0xD83D
            }
        );
        // Lone low surrogate DE00.
        assert_eq!(
            err("&3gA-"),
            Mutf7Error::UnpairedSurrogate {
                pos: 1,
                unit: 0xDE00
            }
        );
        // High surrogate followed by a non-surrogate (D83D 00E9).
        assert_eq!(
            err("&2D0A6Q-"),
            Mutf7Error::UnpairedSurrogate {
                pos: 1,
                unit: 0xD83D
            }
        );
        // "é" then a reversed pair (00E9 DE00 D83D): the error names the
        // BASE64 char where the second unit starts.
        assert_eq!(
            err("&AOneANg9-"),
            Mutf7Error::UnpairedSurrogate {
                pos: 3,
                unit: 0xDE00
            }
        );
        // A pair split across two runs is not a pair.
        assert!(matches!(
            err("&2D0-x&3gA-"),
            Mutf7Error::UnpairedSurrogate { pos: 1, .. }
        ));
    }

    #[test]
    fn rejects_encoded_printable_ascii() {
        // "a" encoded as a run.
        assert_eq!(
            err("&AGE-"),
            Mutf7Error::EncodedPrintable { pos: 1, ch: 'a' }
        );
        // "&" encoded instead of written "&-".
        assert_eq!(
            err("&ACY-"),
            Mutf7Error::EncodedPrintable { pos: 1, ch: '&' }
        );
        // Whole run of printable ASCII "abc".
        assert_eq!(
            err("x&AGEAYgBj-"),
            Mutf7Error::EncodedPrintable { pos: 2, ch: 'a' }
        );
        // A space hidden between two non-ASCII chars ("é é" as one run): the
        // second unit starts at the third BASE64 char.
        assert_eq!(
            err("&AOkAIADp-"),
            Mutf7Error::EncodedPrintable { pos: 3, ch: ' ' }
        );
        assert_eq!(encode("é é"), "&AOk- &AOk-");
    }

    #[test]
    fn rejects_adjacent_runs() {
        assert_eq!(
            err("&U,BTFw-&ZeVnLIqe-"),
            Mutf7Error::AdjacentRuns { pos: 8 }
        );
        assert_eq!(err("a&AOk-&AOk-"), Mutf7Error::AdjacentRuns { pos: 6 });
        // "&-" is a literal '&', not a run, so these are fine.
        assert_eq!(decode("&AOk-&-&AOk-").as_deref(), Ok("é&é"));
    }

    #[test]
    fn rejects_raw_non_ascii() {
        assert_eq!(
            err("Entwürfe"),
            Mutf7Error::RawNonAscii {
                pos: 4, found: 'ü'
            }
        );
        assert_eq!(
            err("&AOk-台"),
            Mutf7Error::RawNonAscii {
                pos: 5,
                found: '台'
            }
        );
    }

    #[test]
    fn rejects_raw_control() {
        assert_eq!(
            err("tab\there"),
            Mutf7Error::RawControl {
                pos: 3,
                byte: b'\t'
            }
        );
        assert_eq!(
            err("x\u{7f}"),
            Mutf7Error::RawControl { pos: 1, byte: 0x7f }
        );
    }

    #[test]
    fn error_display_names_position() {
        let e = err("abc&Jjo!");
        let msg = e.to_string();
        assert!(msg.contains("byte 7"), "{msg}");
        assert!(msg.contains("'!'"), "{msg}");
        assert_eq!(e.position(), 7);
        let boxed: Box<dyn Error> = Box::new(err("&"));
        assert!(boxed.to_string().contains("byte 0"));
        for wire in [
            "&AOl-",
            "&A-",
            "&AO-",
            "&2D0-",
            "&AGE-",
            "&AOk-&AOk-",
            "ü",
            "\t",
        ] {
            let msg = err(wire).to_string();
            assert!(msg.starts_with("invalid modified UTF-7 at byte "), "{msg}");
        }
    }

    /// xorshift64*: deterministic, good enough for test-case generation.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn char(&mut self) -> char {
            let cp = match self.below(8) {
                // Printable ASCII, with extra weight on the special ones.
                0 | 1 => 0x20 + self.below(0x5f) as u32,
                2 => [0x26, 0x2d, 0x2f, 0x2e, 0x20][self.below(5) as usize],
                // Controls and DEL.
                3 => [0x00, 0x09, 0x0a, 0x1f, 0x7f][self.below(5) as usize],
                // Latin-1 and Latin Extended.
                4 => 0x80 + self.below(0x200) as u32,
                // Anywhere in the BMP.
                5 => self.below(0x1_0000) as u32,
                // CJK.
                6 => 0x4e00 + self.below(0x5200) as u32,
                // Astral planes, emoji-heavy.
                _ => {
                    if self.below(2) == 0 {
                        0x1_F300 + self.below(0x300) as u32
                    } else {
                        0x1_0000 + self.below(0x10_0000) as u32
                    }
                }
            };
            // Surrogate code points are not chars; resample those.
            char::from_u32(cp).unwrap_or_else(|| self.char())
        }
    }

    #[test]
    fn round_trip_generated_names() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let len = rng.below(24) as usize;
            let name: String = (0..len).map(|_| rng.char()).collect();
            let wire = encode(&name);
            assert!(
                wire.bytes().all(|b| is_printable(u32::from(b))),
                "{name:?} -> {wire:?}"
            );
            assert_eq!(
                decode(&wire).as_deref(),
                Ok(name.as_str()),
                "{name:?} -> {wire:?}"
            );
            assert_eq!(decode_lossy(&wire), name);
        }
    }

    #[test]
    fn decode_accepts_only_canonical_wire_forms() {
        // Random strings over the wire alphabet: whatever decodes must
        // re-encode to the identical bytes, and nothing panics.
        const WIRE: &[u8] = b"&&&---AAAOkZeVnLI2D3e,+/g!x 9\t";
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = 1 + rng.below(12) as usize;
            let wire: String = (0..len)
                .map(|_| char::from(WIRE[rng.below(WIRE.len() as u64) as usize]))
                .collect();
            match decode(&wire) {
                Ok(name) => {
                    accepted += 1;
                    assert_eq!(encode(&name), wire, "decode({wire:?}) = {name:?}");
                }
                Err(e) => {
                    assert!(e.position() < wire.len(), "{wire:?}: {e}");
                    assert_eq!(decode_lossy(&wire), wire);
                }
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} accepted; generator too weak"
        );
    }
}
