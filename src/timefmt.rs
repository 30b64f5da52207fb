//! Calendar dates from Unix time without a date crate: IMAP search dates and the RFC 3339
//! timestamps of the MX watcher and cutover logs. UTC only.

/// (year, month 1-12, day 1-31) of a Unix time, UTC (H. Hinnant's days-to-civil algorithm).
pub fn civil(unix: u64) -> (i64, u32, u32) {
    civil_from_days((unix / 86_400) as i64)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (may be negative).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-29T00:40:01Z`.
pub fn rfc3339(unix: u64) -> String {
    let (y, m, d) = civil(unix);
    let s = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's days-from-civil).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IMAP INTERNALDATE (`"14-Mar-2024 09:26:53 +0100"`, the day possibly space-padded) as Unix
/// seconds (UTC). Servers spell the same instant differently (zone, padding); this compares.
pub fn parse_internaldate(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"').trim();
    let (date, rest) = s.split_once(' ')?;
    let mut dp = date.split('-');
    let (d, mon, y) = (dp.next()?, dp.next()?, dp.next()?);
    let d: u32 = d.trim().parse().ok().filter(|d| (1..=31).contains(d))?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as u32 + 1;
    // Fields past their range are no instant (and would overflow the arithmetic below).
    let y: i64 = y.parse().ok().filter(|y| (0..=9999).contains(y))?;
    let rest = rest.trim();
    let (time, zone) = rest.split_once(' ')?;
    let mut tp = time.split(':');
    let field = |t: Option<&str>, max: i64| t?.parse().ok().filter(|v| (0..=max).contains(v));
    let (hh, mm, ss): (i64, i64, i64) = (
        field(tp.next(), 23)?,
        field(tp.next(), 59)?,
        field(tp.next(), 60)?,
    );
    let zone = zone.trim();
    if zone.len() != 5 || !zone.is_ascii() {
        return None;
    }
    let sign = match &zone[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    if !zone[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let local = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(local - sign * (zh * 3600 + zm * 60))
}

/// Now, as Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(civil(1_795_911_269), (2026, 11, 29));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2024, 2, 29) * 86_400 + 45_296,
            1_709_210_096
        );
        // The same instant, spelled three ways.
        let a = parse_internaldate("29-Feb-2024 12:34:56 +0000").unwrap();
        assert_eq!(a, 1_709_210_096);
        assert_eq!(parse_internaldate(" 29-Feb-2024 13:34:56 +0100"), Some(a));
        assert_eq!(
            parse_internaldate("\"29-feb-2024 05:34:56 -0700\""),
            Some(a)
        );
        assert_eq!(
            parse_internaldate(" 1-Mar-2024 00:00:00 +0000"),
            Some(a + 41_104)
        );
        assert_eq!(parse_internaldate("yesterday"), None);
        // A server's odd bytes never panic.
        assert_eq!(parse_internaldate("01-Jan-2020 00:00:00 +é00"), None);
        assert_eq!(parse_internaldate("01-Jan-2020 0é:00:00 +0000"), None);
    }
}
