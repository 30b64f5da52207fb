//! Content fingerprints: how a message is recognised on either server without trusting UIDs.
//!
//! UIDs are only meaningful inside one folder of one server while its UIDVALIDITY holds. To
//! resume after a crash, to rebuild lost state and (later) to verify a migration, messages are
//! matched by what they are: Message-ID, size, INTERNALDATE and a hash of the header block. Two
//! different messages may share a Message-ID (the test corpus has 89 such values), so the
//! Message-ID alone never decides; two byte-identical messages are matched as a multiset.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What identifies a message's content.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The Message-ID field's value (trimmed), if the header has one.
    pub message_id: Option<String>,
    /// Size in bytes as the server delivers it (RFC822.SIZE).
    pub size: u32,
    /// INTERNALDATE as the server sent it.
    pub internaldate: String,
    /// First 16 bytes of the SHA-256 of the header block, hex.
    pub header_hash: String,
}

/// The header block: everything up to and including the first empty line (the whole message if
/// there is none).
pub fn header_block(msg: &[u8]) -> &[u8] {
    let crlf = find(msg, b"\r\n\r\n").map(|p| p + 4);
    let lf = find(msg, b"\n\n").map(|p| p + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => msg.len(),
    };
    // A message that starts with an empty line has an empty header block.
    if msg.starts_with(b"\r\n") {
        return &msg[..2];
    }
    if msg.starts_with(b"\n") {
        return &msg[..1];
    }
    &msg[..end]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
            header_hash: hex::encode(&Sha256::digest(header)[..16]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
