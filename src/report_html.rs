//! The verification report as one self-contained HTML page (no external assets, no scripts), for
//! the admin's customer: an overview of every mailbox, totals, and per-mailbox details that name
//! each difference by folder, subject and Message-ID.

use crate::verify::{UserVerdict, Verdict};

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2433;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
.sub{color:#5b6475;margin-top:0}
.verdict{padding:1rem 1.2rem;border-radius:.5rem;font-size:1.15rem;margin:1.2rem 0}
.good{background:#e7f6ec;border:1px solid #9bd5ad}.bad{background:#fdecec;border:1px solid #f0a3a3}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}
th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tag{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600}
.ok{background:#d6f2de;color:#1c6b35}.differs{background:#fbd9d9;color:#8a1f1f}.error{background:#fde7c8;color:#7a4a05}
details{border:1px solid #e3e6ec;border-radius:.4rem;margin:.5rem 0;padding:.3rem .8rem}
summary{cursor:pointer;font-weight:600;padding:.2rem 0}
.muted{color:#5b6475}.small{font-size:.85rem}
footer{margin-top:3rem;color:#5b6475;font-size:.8rem}
";

fn tag(status: &str) -> String {
    let word = match status {
        "ok" => "OK",
        "differs" => "Differences",
        _ => "Not checked",
    };
    format!("<span class=\"tag {}\">{word}</span>", esc(status))
}

/// The whole page.
pub fn render(v: &Verdict) -> String {
    let t = &v.totals;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<title>Mail migration verification report</title>");
    h.push_str(&format!("<style>{STYLE}</style></head><body>\n"));
    h.push_str("<h1>Mail migration verification report</h1>\n");
    h.push_str(&format!(
        "<p class=\"sub\">From <b>{}</b> to <b>{}</b>, checked {} ({} mailboxes, {:.0} s{}).</p>\n",
        esc(&v.old_server),
        esc(&v.new_server),
        esc(&crate::timefmt::rfc3339(v.generated_unix)),
        t.users,
        v.seconds,
        if v.deep {
            "; every message's full content compared"
        } else {
            "; messages compared by their headers, size, date and flags"
        }
    ));
    let left_out = crate::verify::left_out(&t.counts, &[], &v.filters);
    if v.ok && left_out.is_none() {
        h.push_str(&format!(
            "<div class=\"verdict good\" id=\"verdict\">All {} mailboxes verified: every one of the {} messages on the old server is on the new server, with its flags. Nothing is missing.</div>\n",
            t.users, t.counts.messages.old_messages
        ));
    } else if v.ok {
        // Never "nothing is missing" for mail that was not compared.
        h.push_str(&format!(
            "<div class=\"verdict good\" id=\"verdict\">All {} mailboxes verified for the mail compared: every one of the {} messages compared is on the new server, with its flags. Mail the migration's filters leave out was not compared (see <a href=\"#filters\">Filters</a>).</div>\n",
            t.users, t.counts.messages.old_messages
        ));
    } else {
        h.push_str(&format!(
            "<div class=\"verdict bad\" id=\"verdict\">{} of {} mailboxes are complete. {} messages missing, {} changed, {} duplicated{}. Details below.</div>\n",
            t.users_ok,
            t.users,
            t.counts.messages.missing,
            t.counts.changed(),
            t.counts.messages.duplicates,
            if t.errors > 0 {
                format!(", {} mailboxes could not be checked", t.errors)
            } else {
                String::new()
            }
        ));
    }
    if let Some(l) = &left_out {
        h.push_str(&format!(
            "<p id=\"filters\"><b>Filters:</b> {} (age window as of {}).</p>\n",
            esc(&capitalized(l)),
            esc(&crate::timefmt::rfc3339(v.as_of_unix))
        ));
    }
    h.push_str("<h2>Overview</h2>\n<table id=\"overview\"><thead><tr><th>Mailbox (old)</th><th>Mailbox (new)</th><th>Result</th><th>Folders</th><th>Messages old</th><th>Messages new</th><th>Missing</th><th>Changed</th><th>Duplicates</th><th>Only on new</th></tr></thead><tbody>\n");
    for u in &v.users {
        h.push_str(&format!(
            "<tr><td><a href=\"#u-{id}\">{}</a></td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            esc(&u.old_login),
            esc(&u.new_login),
            tag(&u.status),
            u.folders.len(),
            u.counts.messages.old_messages,
            u.counts.messages.new_messages,
            u.counts.messages.missing,
            u.counts.changed(),
            u.counts.messages.duplicates,
            u.counts.messages.only_new,
            id = anchor(&u.old_login)
        ));
    }
    h.push_str(&format!(
        "</tbody><tfoot><tr><th>Total</th><th></th><th>{} of {} OK</th><th></th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th></tr></tfoot></table>\n",
        t.users_ok,
        t.users,
        t.counts.messages.old_messages,
        t.counts.messages.new_messages,
        t.counts.messages.missing,
        t.counts.changed(),
        t.counts.messages.duplicates,
        t.counts.messages.only_new
    ));
    h.push_str("<p class=\"muted small\">\"Only on new\" counts mail that arrived at the new server directly (for example after the switch); it is listed for completeness and is not a problem.</p>\n");
    h.push_str("<h2>Mailboxes</h2>\n");
    for u in &v.users {
        h.push_str(&user_section(u, &v.filters));
    }
    h.push_str("<footer>Generated by imapshift. Each old message is matched to a copy on the new server by its Message-ID, size, arrival date and a hash of its header");
    if v.deep {
        h.push_str(", and its whole content by SHA-256");
    }
    h.push_str(
        ". The comparison does not rely on imapshift's own records.</footer>\n</body></html>\n",
    );
    h
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn anchor(login: &str) -> String {
    login
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn user_section(u: &UserVerdict, filters: &crate::verify::FiltersUsed) -> String {
    let mut h = format!(
        "<details id=\"u-{}\"{}><summary>{} &rarr; {} {}</summary>\n",
        anchor(&u.old_login),
        if u.status == "ok" { "" } else { " open" },
        esc(&u.old_login),
        esc(&u.new_login),
        tag(&u.status)
    );
    if let Some(e) = &u.error {
        h.push_str(&format!("<p>Could not be checked: {}</p>\n", esc(e)));
    }
    if let Some(r) = &u.last_run {
        h.push_str(&format!(
            "<p class=\"muted small\">Last copy run: {} messages copied, {} failed, {:.1} MB in {:.1} s, {} retries.</p>\n",
            r["copied"].as_u64().unwrap_or(0),
            r["failed"].as_u64().unwrap_or(0),
            r["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["seconds"].as_f64().unwrap_or(0.0),
            r["retries"].as_u64().unwrap_or(0)
        ));
    }
    if !u.folders.is_empty() {
        h.push_str("<table><thead><tr><th>Folder (old)</th><th>Folder (new)</th><th>Messages old</th><th>Messages new</th><th>Missing</th><th>Changed</th><th>Duplicates</th><th>Only on new</th></tr></thead><tbody>\n");
        for f in &u.folders {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                esc(&f.old),
                if f.new_folder_missing {
                    format!("<b>missing</b> ({})", esc(&f.new))
                } else {
                    esc(&f.new)
                },
                f.counts.old_messages,
                f.counts.new_messages,
                f.counts.missing,
                f.counts.flags_differ + f.counts.body_differs + f.counts.altered,
                f.counts.duplicates,
                f.counts.only_new
            ));
        }
        h.push_str("</tbody></table>\n");
    }
    let excluded: Vec<&crate::verify::ExcludedFolder> = u.excluded_folders.iter().collect();
    if let Some(l) = crate::verify::left_out(&u.counts, &excluded, filters) {
        h.push_str(&format!(
            "<p class=\"small\">{}.</p>\n",
            esc(&capitalized(&l))
        ));
    }
    if !u.differences.is_empty() {
        let found = u.differences.len() + u.differences_omitted;
        h.push_str(&format!(
            "<p class=\"small\" id=\"shown-{}\">{} of {} differences shown{}.</p>\n",
            anchor(&u.old_login),
            u.differences.len(),
            found,
            if u.differences_omitted > 0 {
                " (the first by folder and UID; the counts above are exact, the JSON report lists the same)"
            } else {
                ""
            }
        ));
        h.push_str("<table><thead><tr><th>What</th><th>Folder</th><th>Subject</th><th>Message-ID</th><th>Size</th><th>Old UID</th><th>New UID</th><th>Details</th></tr></thead><tbody>\n");
        for d in &u.differences {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"small\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"small\">{}</td></tr>\n",
                esc(d.kind.describe()),
                esc(&d.folder),
                esc(d.subject.as_deref().unwrap_or("")),
                esc(d.message_id.as_deref().unwrap_or("")),
                d.size.map(|s| s.to_string()).unwrap_or_default(),
                d.old_uid.map(|s| s.to_string()).unwrap_or_default(),
                d.new_uid.map(|s| s.to_string()).unwrap_or_default(),
                esc(&d.detail)
            ));
        }
        h.push_str("</tbody></table>\n");
    }
    if !u.only_new_messages.is_empty() || !u.only_new_folders.is_empty() {
        h.push_str(&format!(
            "<p class=\"muted small\">Only on the new server (not a problem): {} message(s){}{}.</p>\n",
            u.counts.messages.only_new,
            if u.counts.messages.only_new > u.only_new_messages.len().min(200) {
                format!(", {} shown", u.only_new_messages.len().min(200))
            } else {
                String::new()
            },
            if u.only_new_folders.is_empty() {
                String::new()
            } else {
                format!("; folders {}", esc(&u.only_new_folders.join(", ")))
            }
        ));
        if !u.only_new_messages.is_empty() {
            h.push_str("<table class=\"small\"><thead><tr><th>Folder</th><th>Subject</th><th>Message-ID</th><th>Size</th><th>New UID</th></tr></thead><tbody>\n");
            for m in u.only_new_messages.iter().take(200) {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                    esc(&m.folder),
                    esc(m.subject.as_deref().unwrap_or("")),
                    esc(m.message_id.as_deref().unwrap_or("")),
                    m.size,
                    m.new_uid
                ));
            }
            h.push_str("</tbody></table>\n");
        }
    }
    h.push_str("</details>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_a_mailbox_may_contain() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        let v = Verdict {
            ok: true,
            users: vec![UserVerdict {
                old_login: "<img src=x>".into(),
                new_login: "b".into(),
                status: "ok".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let h = render(&v);
        assert!(!h.contains("<img src=x>"));
        assert!(h.contains("&lt;img src=x&gt;"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no external assets"
        );
    }

    /// Filtered mail is never covered by "Nothing is missing": the verdict says what was not
    /// compared, with counts; a capped difference table says how many it shows of how many.
    #[test]
    fn filters_are_stated_and_the_difference_table_is_counted() {
        use crate::verify::{
            Counts, Difference, ExcludedFolder, FiltersUsed, Kind, MessageCounts, Totals,
        };
        let counts = Counts {
            messages: MessageCounts {
                old_messages: 10,
                filtered: 3,
                filtered_size: 2,
                filtered_age: 1,
                ..Default::default()
            },
            folders_excluded: 1,
            excluded_messages: 4,
            ..Default::default()
        };
        let mut v = Verdict {
            ok: true,
            filters: FiltersUsed {
                max_size: Some(1000),
                age_window: Some("received on or after 5-Feb-2024".into()),
                ..Default::default()
            },
            totals: Totals {
                users: 1,
                users_ok: 1,
                counts: counts.clone(),
                ..Default::default()
            },
            users: vec![UserVerdict {
                old_login: "a".into(),
                status: "ok".into(),
                counts,
                excluded_folders: vec![ExcludedFolder {
                    name: "Trash".into(),
                    messages: Some(4),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let h = render(&v);
        assert!(!h.contains("Nothing is missing"), "{h}");
        assert!(h.contains("2 messages over max_size (1000 bytes)"), "{h}");
        assert!(h.contains("1 messages outside the age window (received on or after 5-Feb-2024)"));
        assert!(h.contains("Trash (4 messages)"), "{h}");
        let text = crate::verify::render(&v);
        assert!(text.contains("VERIFIED ONLY WHAT WAS COMPARED"), "{text}");

        let u = &mut v.users[0];
        u.status = "differs".into();
        u.counts.messages.missing = 1_000_000;
        u.differences = (1..=1000)
            .map(|i| Difference {
                kind: Kind::Missing,
                folder: "INBOX".into(),
                old_uid: Some(i),
                new_uid: None,
                message_id: None,
                subject: None,
                size: Some(1),
                detail: String::new(),
            })
            .collect();
        u.differences_omitted = 999_000;
        v.ok = false;
        v.max_listed = 1000;
        let h = render(&v);
        assert!(h.contains("1000 of 1000000 differences shown"), "{h}");
        let text = crate::verify::render(&v);
        assert!(
            text.contains("... and 999980 more (1000 listed in --json and --html, the first 1000 of each user)"),
            "{text}"
        );
    }
}
