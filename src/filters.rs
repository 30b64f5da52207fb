//! Per-run selection of what to migrate, as admins know it from imapsync: folders by pattern,
//! messages by size and age.
//!
//! Pure logic: glob patterns on folder names (levels joined with `/`, whatever the server's
//! delimiter), and the IMAP SEARCH criteria for age limits (INTERNALDATE, day granularity, as
//! `SEARCH SINCE` / `BEFORE` define it). Messages left out are counted, never deleted.

use crate::store::FolderInfo;

/// What a run takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Old folders to take (all when empty); glob patterns (`*`, `?`) on the `/`-joined name.
    pub include_folders: Vec<String>,
    /// Old folders to leave out; wins over `include_folders`.
    pub exclude_folders: Vec<String>,
    /// Messages larger than this many bytes are left out.
    pub max_size: Option<u64>,
    /// Messages whose INTERNALDATE is more than this many days ago are left out.
    pub max_age_days: Option<u32>,
    /// Messages whose INTERNALDATE is less than this many days ago are left out.
    pub min_age_days: Option<u32>,
}

/// `*` matches any run of characters (also `/`), `?` one character; case-sensitive, except that
/// a leading `INBOX` matches in any case (RFC 3501).
pub fn glob(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| rec(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && rec(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    let norm = |s: &str| -> Vec<char> {
        if s.get(..5).is_some_and(|h| h.eq_ignore_ascii_case("INBOX")) {
            format!("INBOX{}", &s[5..]).chars().collect()
        } else {
            s.chars().collect()
        }
    };
    rec(&norm(pattern), &norm(name))
}

/// A folder's name for patterns: mUTF-7 decoded, levels joined with `/`.
pub fn pattern_name(f: &FolderInfo) -> String {
    let display = f.name.display();
    match f.delimiter {
        Some(d) if d != '/' => display.replace(d, "/"),
        _ => display,
    }
}

impl Filters {
    /// Whether a folder is taken.
    pub fn folder_allowed(&self, f: &FolderInfo) -> bool {
        let name = pattern_name(f);
        (self.include_folders.is_empty() || self.include_folders.iter().any(|p| glob(p, &name)))
            && !self.exclude_folders.iter().any(|p| glob(p, &name))
    }

    /// The `UID SEARCH` criteria selecting the messages the age limits allow, if any limit is
    /// set; `now_unix` is the current time.
    pub fn age_criteria(&self, now_unix: u64) -> Option<String> {
        let day = |days: u32| imap_date(now_unix.saturating_sub(u64::from(days) * 86_400));
        let mut c = Vec::new();
        if let Some(d) = self.max_age_days {
            c.push(format!("SINCE {}", day(d)));
        }
        if let Some(d) = self.min_age_days {
            c.push(format!("BEFORE {}", day(d)));
        }
        (!c.is_empty()).then(|| c.join(" "))
    }

    /// The age window in words, for reports (`received on or after 6-Feb-2024 and before
    /// 6-Mar-2024`), computed from the same reference time as [`Filters::age_criteria`].
    pub fn describe_age(&self, as_of_unix: u64) -> Option<String> {
        let day = |days: u32| imap_date(as_of_unix.saturating_sub(u64::from(days) * 86_400));
        let mut c = Vec::new();
        if let Some(d) = self.max_age_days {
            c.push(format!("on or after {}", day(d)));
        }
        if let Some(d) = self.min_age_days {
            c.push(format!("before {}", day(d)));
        }
        (!c.is_empty()).then(|| format!("received {}", c.join(" and ")))
    }

    /// Whether any message filter (size or age) is set.
    pub fn filters_messages(&self) -> bool {
        self.max_size.is_some() || self.max_age_days.is_some() || self.min_age_days.is_some()
    }
}

/// An IMAP date (`7-Mar-2024`) for a Unix time (UTC).
pub fn imap_date(unix: u64) -> String {
    let (y, m, d) = crate::timefmt::civil(unix);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{d}-{}-{y}", MONTHS[(m - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MailboxPath;

    fn f(name: &str, delim: char) -> FolderInfo {
        FolderInfo {
            name: MailboxPath::new(name).unwrap(),
            delimiter: Some(delim),
            attrs: vec![],
            subscribed: false,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("Archive/*", "Archive/2024/Q1"));
        assert!(!glob("Archive/*", "Archive"));
        assert!(glob("Junk*", "Junk E-Mail"));
        assert!(glob("inbox", "INBOX"));
        assert!(glob("INBOX/?ists", "inbox/Lists"));
        assert!(!glob("Sent", "sent"));
    }

    #[test]
    fn folder_selection() {
        let filt = Filters {
            include_folders: vec!["INBOX".into(), "Archive/*".into()],
            exclude_folders: vec!["Archive/Old*".into()],
            ..Default::default()
        };
        assert!(filt.folder_allowed(&f("INBOX", '.')));
        assert!(filt.folder_allowed(&f("Archive.2024", '.')));
        assert!(!filt.folder_allowed(&f("Archive.Old2019", '.')));
        assert!(!filt.folder_allowed(&f("Trash", '.')));
        assert!(Filters::default().folder_allowed(&f("Trash", '/')));
        let umlaut = Filters {
            exclude_folders: vec!["Entwürfe".into()],
            ..Default::default()
        };
        assert!(!umlaut.folder_allowed(&f("Entw&APw-rfe", '/')));
    }

    #[test]
    fn dates_and_criteria() {
        assert_eq!(imap_date(0), "1-Jan-1970");
        assert_eq!(imap_date(1_709_769_600), "7-Mar-2024");
        assert_eq!(imap_date(951_782_400), "29-Feb-2000");
        let filt = Filters {
            max_age_days: Some(30),
            min_age_days: Some(1),
            ..Default::default()
        };
        assert_eq!(
            filt.age_criteria(1_709_769_600).unwrap(),
            "SINCE 6-Feb-2024 BEFORE 6-Mar-2024"
        );
        assert!(Filters::default().age_criteria(0).is_none());
    }

    /// A sync that starts at 23:59:59 and a verification that runs after midnight select the
    /// same messages when the verification is given the sync's reference time: the criteria
    /// depend on that instant only, never on when they are computed. With "now" instead, the
    /// window would move by a day and the day that fell out would show as missing.
    #[test]
    fn the_same_reference_time_gives_the_same_criteria_across_midnight() {
        let filt = Filters {
            max_age_days: Some(30),
            min_age_days: Some(2),
            ..Default::default()
        };
        let sync_started = 1_709_769_600 - 1; // 6-Mar-2024 23:59:59 UTC
        let verify_runs = sync_started + 2; // 7-Mar-2024 00:00:01 UTC
        let at_sync = filt.age_criteria(sync_started).unwrap();
        assert_eq!(at_sync, "SINCE 5-Feb-2024 BEFORE 4-Mar-2024");
        assert_eq!(filt.age_criteria(sync_started).unwrap(), at_sync);
        assert_ne!(
            filt.age_criteria(verify_runs).unwrap(),
            at_sync,
            "the clock's now would move the window"
        );
        assert_eq!(
            filt.describe_age(sync_started).unwrap(),
            "received on or after 5-Feb-2024 and before 4-Mar-2024"
        );
    }
}
