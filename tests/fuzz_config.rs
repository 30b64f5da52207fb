//! Fuzzing of the configuration loaders (issue 13): the TOML file (`config::load`,
//! `config::load_without_secrets`) and the users CSV it may name (`users_csv`).
//!
//! Inputs, each written to a file in a fresh temporary directory: arbitrary bytes as the
//! configuration or as the CSV; a valid configuration generated from parts and then mutated a
//! line at a time (lines deleted, duplicated, swapped or cut; values of the wrong type, out of
//! range or odd; unknown fields; NUL and non-UTF-8 bytes); a valid CSV mutated the same way (rows
//! with too many or too few fields, empty logins, literal passwords, odd quoting). Properties:
//! - nothing panics, with the secrets resolved or not;
//! - every error names the configuration file, and a CSV error the CSV file too;
//! - every line number an error names (`FILE:N:`) is a line of that file (1 to its last line);
//! - a fault put on one line (a value of the wrong type, out of range, an unknown or repeated
//!   key, a NUL or non-UTF-8 byte, a bad CSV row) is named with exactly that line;
//! - a valid configuration loads and gives back the servers, tuning and users put in, each user
//!   with its passwords (read from `file:` references) and the line it was defined on.
//!
//! Default case counts keep this binary to a few seconds in a debug build;
//! `PROPTEST_CASES=10000 cargo test --release --test fuzz_config` runs longer.

#[path = "common/proptest_cases.rs"]
mod proptest_cases;

use imapshift::config::{self, AuthMech, Config, Security};
use proptest::prelude::*;
use proptest_cases::cases;
use std::path::Path;

// ---- A valid configuration, generated from parts ----

#[derive(Clone, Debug)]
struct GenServer {
    host: String,
    port: Option<u16>,
    security: Option<&'static str>,
    auth: Option<&'static str>,
    timeout_secs: Option<u64>,
    /// `master_user`, with its password in `pw/<side>-master`.
    master: Option<String>,
}

#[derive(Clone, Debug)]
struct GenUser {
    old: String,
    new: String,
    merge: Option<bool>,
    /// `None`: left out (the side has a master login).
    old_password: Option<String>,
    new_password: Option<String>,
}

#[derive(Clone, Debug)]
struct GenConfig {
    old: GenServer,
    new: GenServer,
    jobs: Option<u64>,
    batch_messages: Option<u64>,
    users: Vec<GenUser>,
    /// The users in `users.csv` instead of `[[users]]` tables.
    csv: bool,
    /// CSV only: quote every field, and put comments and blank lines between rows.
    quote_all: bool,
    chatter: Vec<bool>,
}

fn gen_server() -> impl Strategy<Value = GenServer> {
    (
        "[a-z0-9][a-z0-9.-]{0,20}|127\\.0\\.0\\.[0-9]{1,2}|::1|\\[2001:db8::1\\]",
        prop::option::of(1u16..),
        prop::option::of(prop::sample::select(vec![
            "tls", "TLS", "ssl", "imaps", "starttls", "plain", "none",
        ])),
        prop::option::of(prop::sample::select(vec!["login", "plain", "PLAIN"])),
        prop::option::of(1u64..=3600),
        prop::option::of(login()),
    )
        .prop_map(
            |(host, port, security, auth, timeout_secs, master)| GenServer {
                host,
                port,
                security,
                auth,
                timeout_secs,
                master,
            },
        )
}

/// A login: letters, digits, punctuation that needs quoting in TOML or CSV, a space inside, a
/// non-ASCII letter; never blank at either end (the CSV reader trims fields).
fn login() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._@+'\"#,;\\\\ \u{e9}\u{4e2d}-]{1,14}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("not blank", |s| !s.is_empty())
}

/// A password as a file holds it (the loader strips one final newline).
fn password() -> impl Strategy<Value = String> {
    "[!-~ \u{e9}]{1,16}".prop_filter("no blank ends", |s| s.trim() == s)
}

fn gen_config() -> impl Strategy<Value = GenConfig> {
    (
        gen_server(),
        gen_server(),
        prop::option::of(1u64..=1024),
        prop::option::of(1u64..=100_000),
        prop::collection::vec(
            (
                login(),
                login(),
                prop::option::of(any::<bool>()),
                password(),
                password(),
            ),
            1..6,
        ),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<bool>(), 8),
    )
        .prop_map(
            |(old, new, jobs, batch_messages, users, csv, quote_all, chatter)| {
                // Distinct old and new logins, compared without case, and `merge` off: no
                // collisions.
                let mut seen_old = std::collections::HashSet::new();
                let mut seen_new = std::collections::HashSet::new();
                let users = users
                    .into_iter()
                    .filter(|(o, n, ..)| {
                        seen_old.insert(o.to_lowercase()) && seen_new.insert(n.to_lowercase())
                    })
                    .map(|(old_login, new_login, merge, op, np)| GenUser {
                        old: old_login,
                        new: new_login,
                        merge,
                        old_password: Some(op),
                        new_password: Some(np),
                    })
                    .collect();
                GenConfig {
                    old,
                    new,
                    jobs,
                    batch_messages,
                    users,
                    csv,
                    quote_all,
                    chatter,
                }
            },
        )
        .prop_flat_map(|g| {
            // With a master login a side's user passwords may be left out.
            let n = g.users.len();
            (
                Just(g),
                prop::collection::vec((any::<bool>(), any::<bool>()), n),
            )
        })
        .prop_map(|(mut g, drops)| {
            for (u, (drop_old, drop_new)) in g.users.iter_mut().zip(drops) {
                if drop_old && g.old.master.is_some() {
                    u.old_password = None;
                }
                if drop_new && g.new.master.is_some() {
                    u.new_password = None;
                }
            }
            g
        })
}

/// `s` as a TOML string.
fn t(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A CSV field, quoted when it must be (or always).
fn csv_field(s: &str, always: bool) -> String {
    if always || s.contains([',', '"', '#', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The files of a configuration: `imapshift.toml`, maybe `users.csv`, the password files.
#[derive(Clone, Debug)]
struct Files {
    toml: Vec<u8>,
    csv: Option<Vec<u8>>,
    passwords: Vec<(String, String)>,
    /// The line each user is defined on (the TOML's or the CSV's).
    user_lines: Vec<usize>,
}

fn write_server(out: &mut Vec<String>, side: &str, s: &GenServer, pw: &mut Vec<(String, String)>) {
    out.push(format!("[{side}]"));
    out.push(format!("host = {}", t(&s.host)));
    if let Some(p) = s.port {
        out.push(format!("port = {p}"));
    }
    if let Some(v) = s.security {
        out.push(format!("security = {}", t(v)));
    }
    if let Some(v) = s.auth {
        out.push(format!("auth = {}", t(v)));
    }
    if let Some(v) = s.timeout_secs {
        out.push(format!("timeout_secs = {v}"));
    }
    if let Some(m) = &s.master {
        out.push(format!("master_user = {}", t(m)));
        out.push(format!("master_password = \"file:pw/{side}-master\""));
        pw.push((format!("{side}-master"), format!("{side}-master-pw")));
    }
}

fn write_config(g: &GenConfig) -> Files {
    let mut passwords = Vec::new();
    let mut lines = vec![
        "# generated".to_string(),
        "state_dir = \"state\"".to_string(),
    ];
    if g.csv {
        lines.push("users_csv = \"users.csv\"".into());
    }
    write_server(&mut lines, "old", &g.old, &mut passwords);
    lines.push(String::new());
    write_server(&mut lines, "new", &g.new, &mut passwords);
    if g.jobs.is_some() || g.batch_messages.is_some() {
        lines.push("[sync]".into());
        if let Some(j) = g.jobs {
            lines.push(format!("jobs = {j}"));
        }
        if let Some(b) = g.batch_messages {
            lines.push(format!("batch_messages = {b}"));
        }
    }
    let mut user_lines = Vec::new();
    let mut csv = None;
    if g.csv {
        let merge_col = g.users.iter().any(|u| u.merge.is_some());
        let mut rows = vec![if merge_col {
            "old,new,old_password,new_password,merge".to_string()
        } else {
            "old,new,old_password,new_password".to_string()
        }];
        for (i, u) in g.users.iter().enumerate() {
            if g.quote_all && g.chatter[i % 8] {
                rows.push("# a comment, with \"quotes\"".into());
                rows.push(String::new());
            }
            let mut fields = vec![
                csv_field(&u.old, g.quote_all),
                csv_field(&u.new, g.quote_all),
            ];
            for (side, p) in [("old", &u.old_password), ("new", &u.new_password)] {
                fields.push(match p {
                    Some(p) => {
                        passwords.push((format!("{i}-{side}"), p.clone()));
                        csv_field(&format!("file:pw/{i}-{side}"), g.quote_all)
                    }
                    None => String::new(),
                });
            }
            if merge_col {
                fields.push(match u.merge {
                    None => String::new(),
                    Some(true) => "TRUE".into(),
                    Some(false) => "false".into(),
                });
            }
            rows.push(fields.join(","));
            user_lines.push(rows.len());
        }
        csv = Some((rows.join("\n") + "\n").into_bytes());
    } else {
        for (i, u) in g.users.iter().enumerate() {
            lines.push(String::new());
            lines.push("[[users]]".into());
            user_lines.push(lines.len());
            lines.push(format!("old = {}", t(&u.old)));
            lines.push(format!("new = {}", t(&u.new)));
            for (side, p) in [("old", &u.old_password), ("new", &u.new_password)] {
                if let Some(p) = p {
                    passwords.push((format!("{i}-{side}"), p.clone()));
                    lines.push(format!("{side}_password = \"file:pw/{i}-{side}\""));
                }
            }
            if let Some(m) = u.merge {
                lines.push(format!("merge = {m}"));
            }
        }
    }
    Files {
        toml: (lines.join("\n") + "\n").into_bytes(),
        csv,
        passwords,
        user_lines,
    }
}

/// Writes `files` into a fresh directory; the path of the configuration file.
fn materialize(dir: &Path, f: &Files) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("pw")).unwrap();
    for (name, pw) in &f.passwords {
        // One final newline, as an editor leaves it, is not part of the password.
        std::fs::write(dir.join("pw").join(name), format!("{pw}\n")).unwrap();
    }
    if let Some(csv) = &f.csv {
        std::fs::write(dir.join("users.csv"), csv).unwrap();
    }
    let path = dir.join("imapshift.toml");
    std::fs::write(&path, &f.toml).unwrap();
    path
}

fn security_of(s: Option<&str>) -> Security {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("tls" | "ssl" | "imaps") => Security::Tls,
        Some("starttls") => Security::Starttls,
        _ => Security::Plain,
    }
}

fn check_server(
    got: &config::ServerConfig,
    want: &GenServer,
    secrets: bool,
) -> Result<(), TestCaseError> {
    let security = security_of(want.security);
    prop_assert_eq!(&got.host, &want.host);
    prop_assert_eq!(got.security, security);
    let default_port = if security == Security::Tls { 993 } else { 143 };
    prop_assert_eq!(got.port, want.port.unwrap_or(default_port));
    let auth = match want.auth {
        Some(a) if a.eq_ignore_ascii_case("plain") => AuthMech::Plain,
        _ => AuthMech::Login,
    };
    prop_assert_eq!(got.auth, auth);
    prop_assert_eq!(got.timeout.as_secs(), want.timeout_secs.unwrap_or(120));
    match (&got.master, &want.master, secrets) {
        (None, None, _) | (None, Some(_), false) => {}
        (Some(m), Some(u), true) => {
            prop_assert_eq!(&m.user, u);
            let want = format!("{}-master-pw", got.side);
            prop_assert_eq!(m.password.expose(), want.as_str());
        }
        (got, want, _) => prop_assert!(false, "master {:?} for {:?}", got, want),
    }
    Ok(())
}

fn check_loaded(
    c: &Config,
    g: &GenConfig,
    f: &Files,
    dir: &Path,
    secrets: bool,
) -> Result<(), TestCaseError> {
    check_server(&c.old, &g.old, secrets)?;
    check_server(&c.new, &g.new, secrets)?;
    prop_assert_eq!(c.sync.jobs as u64, g.jobs.unwrap_or(4));
    prop_assert_eq!(
        c.sync.batch_messages as u64,
        g.batch_messages.unwrap_or(1000)
    );
    prop_assert_eq!(&c.state_dir, &dir.join("state"));
    prop_assert_eq!(c.users.len(), g.users.len());
    prop_assert_eq!(c.users_total, g.users.len());
    let file = if g.csv { "users.csv" } else { "imapshift.toml" };
    for ((got, want), line) in c.users.iter().zip(&g.users).zip(&f.user_lines) {
        prop_assert_eq!(&got.old_login, &want.old);
        prop_assert_eq!(&got.new_login, &want.new);
        prop_assert_eq!(got.merge, want.merge.unwrap_or(false));
        let origin = format!("{}:{line}", dir.join(file).display());
        prop_assert_eq!(&got.origin, &origin);
        for (got, want) in [
            (&got.old_password, &want.old_password),
            (&got.new_password, &want.new_password),
        ] {
            match (got, want, secrets) {
                (None, None, _) | (None, Some(_), false) => {}
                (Some(g), Some(w), true) => prop_assert_eq!(g.expose(), w.as_str()),
                (g, w, _) => prop_assert!(false, "password {:?}, wanted {:?}", g, w),
            }
        }
    }
    Ok(())
}

// ---- Errors: the file named, and only lines that exist ----

/// Checks an error of loading `path` (with the CSV at `csv`): it names the configuration file
/// or the CSV, and each `FILE:N` it contains is a line of that file.
fn check_error(msg: &str, path: &Path, csv: Option<&Path>) -> Result<(), TestCaseError> {
    let names = |p: &Path| msg.contains(&p.display().to_string());
    prop_assert!(
        names(path) || csv.is_some_and(names),
        "the error names no file: {}",
        msg
    );
    for file in std::iter::once(path).chain(csv) {
        let name = file.display().to_string();
        let lines = std::fs::read(file).map(|b| line_count(&b)).unwrap_or(0);
        for n in lines_named(msg, &name) {
            prop_assert!(
                (1..=lines).contains(&n),
                "line {} of {} named, which has {} lines: {}",
                n,
                name,
                lines,
                msg
            );
        }
    }
    Ok(())
}

/// The lines of a file as an editor numbers them, the empty one after a final newline too (an
/// error at the end of the file names it).
fn line_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count() + 1
}

/// The `N` of each `NAME:N` in `msg`.
fn lines_named(msg: &str, name: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = msg;
    while let Some(i) = rest.find(name) {
        rest = &rest[i + name.len()..];
        if let Some(after) = rest.strip_prefix(':') {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                out.push(n);
            }
        }
    }
    out
}

/// Loads with and without secrets; both must agree on success, and every error must pass
/// `check_error`. The error texts, if any.
fn load_both(path: &Path, csv: Option<&Path>) -> Result<Vec<String>, TestCaseError> {
    let mut errors = Vec::new();
    for secrets in [true, false] {
        let r = if secrets {
            config::load(path)
        } else {
            config::load_without_secrets(path)
        };
        if let Err(e) = r {
            let msg = e.to_string();
            check_error(&msg, path, csv)?;
            errors.push(msg);
        }
    }
    Ok(errors)
}

// ---- Mutations ----

/// What a mutation puts in place of a value: other types, out-of-range numbers, odd strings.
fn odd_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0",
        "-1",
        "70000",
        "9223372036854775807",
        "99999999999999999999",
        "1.5",
        "1e400",
        "nan",
        "true",
        "\"\"",
        "\"   \"",
        "\"x\"",
        "\"imaps://host\"",
        "\"a b\"",
        "\"env:\"",
        "\"hunter2\"",
        "\"file:no/such/file\"",
        "\"env:IMAPSHIFT_FUZZ_SURELY_UNSET\"",
        "\"cmd:\"",
        "'lit'",
        "'''multi\nline'''",
        "\"\"\"\n\"\"\"",
        "[]",
        "[1, \"a\"]",
        "{}",
        "{ a = 1 }",
        "1979-05-27T07:32:00Z",
        "\"\\u0000\"",
        "\"\\uD800\"",
        "\"unterminated",
        "",
    ])
    .prop_map(String::from)
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    Value(prop::sample::Index, String),
    Insert(prop::sample::Index, String),
    Byte(prop::sample::Index, prop::sample::Index, u8),
    Cut(prop::sample::Index),
}

fn edit(insert: BoxedStrategy<String>) -> impl Strategy<Value = Edit> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        i().prop_map(Edit::Delete),
        i().prop_map(Edit::Duplicate),
        (i(), i()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (i(), odd_value()).prop_map(|(a, v)| Edit::Value(a, v)),
        (i(), insert).prop_map(|(a, v)| Edit::Insert(a, v)),
        (
            i(),
            i(),
            prop::sample::select(vec![
                0u8, 0xff, 0xc3, 0x80, b'"', b'\'', b'[', b'=', b'\r', b',', b'#'
            ])
        )
            .prop_map(|(a, b, c)| Edit::Byte(a, b, c)),
        i().prop_map(Edit::Cut),
    ]
}

/// Lines a mutation inserts into the TOML.
fn toml_line() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "[old]",
            "[[users]]",
            "[sync]",
            "[mx]",
            "[filters]",
            "[new.quirks]",
            "users_csv = \"users.csv\"",
            "no_such_field = 1",
            "old = \"x\"",
            "port = \"143\"",
            "domains = [\"example.com\", \"\"]",
            "max_ttl = -5",
            "[[folder_rules]]",
            "match = \"(\"",
            "to = \"a//b\"",
        ])
        .prop_map(String::from),
        1 => ("[a-z_]{1,12}", odd_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
    ]
    .boxed()
}

/// Rows a mutation inserts into the CSV.
fn csv_line() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "old,new,old_password,new_password",
            "a,b,env:X",
            "a,b,env:X,env:Y,true,extra",
            ",b,file:pw/0-old,file:pw/0-new",
            "a,,file:pw/0-old,file:pw/0-new",
            "a,b,hunter2,file:pw/0-new",
            "\"a,b,file:pw/0-old,file:pw/0-new",
            "\"a\"x,b,file:pw/0-old,file:pw/0-new",
            "a,b,file:pw/0-old,file:pw/0-new,maybe",
            "# comment",
            "",
        ])
        .prop_map(String::from),
        1 => "[ -~]{0,30}",
    ]
    .boxed()
}

fn apply(text: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    for e in edits {
        if lines.is_empty() {
            lines.push(Vec::new());
        }
        let n = lines.len();
        match e {
            Edit::Delete(a) => {
                lines.remove(a.index(n));
            }
            Edit::Duplicate(a) => {
                let l = lines[a.index(n)].clone();
                lines.insert(a.index(n), l);
            }
            Edit::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            Edit::Value(a, v) => {
                let l = &mut lines[a.index(n)];
                let keep = match l.iter().position(|&b| b == b'=') {
                    Some(eq) => eq + 1,
                    None => l.len(),
                };
                l.truncate(keep);
                l.extend_from_slice(b" ");
                l.extend_from_slice(v.as_bytes());
            }
            Edit::Insert(a, v) => lines.insert(a.index(n + 1), v.clone().into_bytes()),
            Edit::Byte(a, at, b) => {
                let l = &mut lines[a.index(n)];
                let i = at.index(l.len() + 1);
                l.insert(i, *b);
            }
            Edit::Cut(a) => {
                let l = &mut lines[a.index(n)];
                let i = a.index(l.len() + 1);
                l.truncate(i);
            }
        }
    }
    lines.join(&b'\n')
}

proptest! {
    #![proptest_config(cases(150))]

    #[test]
    fn generated_configs_load_as_written(g in gen_config()) {
        let dir = tempfile::tempdir().unwrap();
        let f = write_config(&g);
        let path = materialize(dir.path(), &f);
        let c = config::load(&path).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&f.toml))))?;
        check_loaded(&c, &g, &f, dir.path(), true)?;
        let c = config::load_without_secrets(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_loaded(&c, &g, &f, dir.path(), false)?;
    }

    #[test]
    fn arbitrary_bytes_as_the_config(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imapshift.toml");
        std::fs::write(&path, &bytes).unwrap();
        load_both(&path, None)?;
    }

    #[test]
    fn arbitrary_bytes_as_the_csv(g in gen_config(), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let mut g = g;
        g.csv = true;
        let mut f = write_config(&g);
        f.csv = Some(bytes);
        let path = materialize(dir.path(), &f);
        let csv = dir.path().join("users.csv");
        prop_assert_eq!(load_both(&path, Some(&csv))?.len(), 2, "random bytes made a users list");
    }

    #[test]
    fn mutated_configs(g in gen_config(), edits in prop::collection::vec(edit(toml_line()), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut f = write_config(&g);
        f.toml = apply(&f.toml, &edits);
        let path = materialize(dir.path(), &f);
        let csv = dir.path().join("users.csv");
        load_both(&path, Some(&csv))?;
    }

    #[test]
    fn mutated_csvs(g in gen_config(), edits in prop::collection::vec(edit(csv_line()), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut g = g;
        g.csv = true;
        let mut f = write_config(&g);
        f.csv = Some(apply(f.csv.as_ref().unwrap(), &edits));
        let path = materialize(dir.path(), &f);
        let csv = dir.path().join("users.csv");
        load_both(&path, Some(&csv))?;
    }
}

// ---- A fault on one line is named with that line ----

/// A fault put on one `key = value` line, and the line (1-based) it must be named with.
#[derive(Clone, Debug)]
enum Fault {
    /// A value of another type.
    WrongType,
    /// A number out of its range (port, timeout_secs, jobs, batch_messages).
    OutOfRange,
    /// An unknown key on a new line after it.
    UnknownKey,
    /// The same line twice: the second is a repeated key.
    Repeated,
    /// A NUL byte in the value.
    Nul,
    /// A byte that is not UTF-8 in the value.
    NotUtf8,
}

fn fault_line(text: &[u8], fault: &Fault, pick: prop::sample::Index) -> Option<(Vec<u8>, usize)> {
    let text = std::str::from_utf8(text).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let keyed: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = &lines[i];
            l.contains(" = ")
                && !l.starts_with('#')
                && (!matches!(fault, Fault::OutOfRange)
                    || l.split(" = ")
                        .nth(1)
                        .is_some_and(|v| v.parse::<i64>().is_ok()))
        })
        .collect();
    if keyed.is_empty() {
        return None;
    }
    let i = keyed[pick.index(keyed.len())];
    let (key, value) = lines[i]
        .split_once(" = ")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .unwrap();
    let mut bytes_line = None;
    let at = match fault {
        Fault::WrongType => {
            let v = if value.starts_with(['"', '\'']) {
                "[1, 2]"
            } else {
                "\"x\""
            };
            lines[i] = format!("{key} = {v}");
            i + 1
        }
        Fault::OutOfRange => {
            lines[i] = format!("{key} = 0");
            i + 1
        }
        Fault::UnknownKey => {
            lines.insert(i + 1, "unknown_key = 1".into());
            i + 2
        }
        Fault::Repeated => {
            lines.insert(i + 1, lines[i].clone());
            i + 2
        }
        Fault::Nul | Fault::NotUtf8 => {
            let b = if matches!(fault, Fault::Nul) {
                0u8
            } else {
                0xff
            };
            let mut l = format!("{key} = ").into_bytes();
            if value.starts_with('"') {
                l.extend_from_slice(&value.as_bytes()[..1]);
                l.push(b);
                l.extend_from_slice(&value.as_bytes()[1..]);
            } else {
                l.push(b);
                l.extend_from_slice(value.as_bytes());
            }
            bytes_line = Some((i, l));
            i + 1
        }
    };
    let mut out: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
    if let Some((i, l)) = bytes_line {
        out[i] = l;
    }
    Some((out.join(&b'\n'), at))
}

fn fault() -> impl Strategy<Value = Fault> {
    prop::sample::select(vec![
        Fault::WrongType,
        Fault::OutOfRange,
        Fault::UnknownKey,
        Fault::Repeated,
        Fault::Nul,
        Fault::NotUtf8,
    ])
}

/// A bad row of the CSV (whose header has the `merge` column; `x!` and `y!` are logins no
/// generated user has): too many or too few fields, an
/// empty or control-character login, a literal password, a bad merge value, a NUL or non-UTF-8
/// byte, a password file that is missing (refused only when secrets are read).
fn bad_row() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b"x!,y!,file:pw/0-old"[..],
        b"x!,y!,file:pw/0-old,file:pw/0-new,true,x",
        b",y!,file:pw/0-old,file:pw/0-new,",
        b"x!,  ,file:pw/0-old,file:pw/0-new,",
        b"x!\x01,y!,file:pw/0-old,file:pw/0-new,",
        b"x!,y!,hunter2,file:pw/0-new,",
        b"x!,y!,file:pw/0-old,env:,",
        b"x!,y!,file:pw/no-such-file,file:pw/0-new,",
        b"\"x!\",\"y!\",\"file:pw/0-old\",\"file:pw/0-new\",\"maybe\"",
        b"x!\x00,y!,file:pw/0-old,file:pw/0-new,",
        b"x!\xff,y!,file:pw/0-old,file:pw/0-new,",
        b"\"x!,y!,file:pw/0-old,file:pw/0-new,",
    ])
    .prop_map(<[u8]>::to_vec)
}

proptest! {
    #![proptest_config(cases(150))]

    #[test]
    fn a_fault_on_one_line_is_named_with_it(g in gen_config(), fault in fault(), pick in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut f = write_config(&g);
        let Some((toml, line)) = fault_line(&f.toml, &fault, pick) else { return Ok(()) };
        f.toml = toml;
        let path = materialize(dir.path(), &f);
        let errors = load_both(&path, None)?;
        prop_assert_eq!(errors.len(), 2, "{:?} was not refused:\n{}", fault, String::from_utf8_lossy(&f.toml));
        for e in errors {
            let want = format!("{}:{line}:", path.display());
            prop_assert!(e.contains(&want), "{:?}: wanted {}, got {}\n{}", fault, want, e, String::from_utf8_lossy(&f.toml));
        }
    }

    #[test]
    fn a_bad_csv_row_is_named_with_its_line(g in gen_config(), row in bad_row(), pick in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut g = g;
        g.csv = true;
        for u in &mut g.users {
            u.merge = Some(false);
        }
        let mut f = write_config(&g);
        let csv = f.csv.take().unwrap();
        let mut rows: Vec<&[u8]> = csv.split(|&b| b == b'\n').collect();
        rows.pop(); // after the last newline
        // After the header and any row, before the end (a comment or blank line ahead is fine).
        let at = 1 + pick.index(rows.len());
        rows.insert(at, &row);
        f.csv = Some([rows.join(&b'\n'), b"\n".to_vec()].concat());
        let path = materialize(dir.path(), &f);
        let csv_path = dir.path().join("users.csv");
        let errors = load_both(&path, Some(&csv_path))?;
        // Without secrets a missing password file is not looked at.
        let want_errors = if row.starts_with(b"x!,y!,file:pw/no-such") { 1 } else { 2 };
        prop_assert_eq!(errors.len(), want_errors, "{:?}: {:?}", String::from_utf8_lossy(&row), errors);
        for e in errors {
            let want = format!("{}:{}:", csv_path.display(), at + 1);
            prop_assert!(e.contains(&want), "wanted {}, got {}", want, e);
        }
    }
}
