//! Generated mailboxes and the checks around them, shared by the exactly-once tests
//! (tests/fault_proxy.rs, tests/kill_resume.rs, tests/protocol_faults.rs,
//! tests/differing_faults.rs, tests/differing_servers.rs): one deterministic generator of seed
//! mail ([`MailGen`]), seeding and reading a fixed set of folders, sums over a sync report's
//! folders, the "no intent left" check after a complete run, the premise of the tests whose
//! servers run in different time zones, and the folder names of Dovecot's stock special-use
//! namespace. They exist so that each of those tests states only what makes it different (its
//! word list, sizes, folders, where its twins go).

use super::{run_imapshift, Rng, TestImap, TestMsg};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

/// INBOX and the folders of Dovecot's stock special-use namespace
/// ([`super::STOCK_SPECIAL_USE_NS`]: two `\Sent`, two `\Trash`).
pub const STOCK_SPECIAL_USE_FOLDERS: [&str; 5] = [
    "INBOX",
    "Sent",
    "Sent Messages",
    "Trash",
    "Deleted Messages",
];

/// One message to seed: where it goes, its flags, its INTERNALDATE and its bytes.
pub struct SeedMsg {
    pub folder: &'static str,
    pub flags: Vec<&'static str>,
    pub date: String,
    pub body: Vec<u8>,
}

/// The shape of a generated mailbox. Every choice is drawn from one [`Rng`] in a fixed order,
/// so a seed always gives the same messages, byte for byte.
pub struct MailGen {
    /// The words body lines are made of, separated by spaces.
    pub words: &'static str,
    /// The flags, separated by spaces: a message gets each with probability 1/2 (`\Seen`) or
    /// 1/5 (the others).
    pub flags: &'static str,
    /// INTERNALDATE years: `first..first + span`.
    pub years: (usize, usize),
    /// Body sizes: a `(base, spread)` tier picked by weight, then `base + below(spread)` bytes.
    pub sizes: &'static [(usize, (usize, usize))],
    /// A body line has `4 + below(extra_words)` words.
    pub extra_words: usize,
    /// The folders, picked by weight.
    pub folders: &'static [(usize, &'static str)],
    /// The folder that holds two byte-identical twins (same bytes, flags and date), and the
    /// 1-based positions among its generated messages before which they are put.
    pub twins: (&'static str, [usize; 2]),
    /// The twins' body has a `To:` header.
    pub twin_to: bool,
}

/// `items[k].1` with probability `items[k].0 / total weight` (one draw).
fn pick<T: Copy>(rng: &mut Rng, items: &[(usize, T)]) -> T {
    let mut n = rng.below(items.iter().map(|(w, _)| w).sum());
    for &(w, t) in items {
        if n < w {
            return t;
        }
        n -= w;
    }
    unreachable!("a draw below the total weight")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl MailGen {
    /// An INTERNALDATE with an explicit zone.
    fn date(&self, rng: &mut Rng) -> String {
        let zones = ["+0000", "+0200", "-0500", "+0530", "-0930"];
        format!(
            "{:02}-{}-{} {:02}:{:02}:{:02} {}",
            1 + rng.below(28),
            MONTHS[rng.below(12)],
            self.years.0 + rng.below(self.years.1),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            zones[rng.below(zones.len())]
        )
    }

    /// Message `i` of `folder`: headers naming both, then lines of words up to its size.
    fn message(&self, rng: &mut Rng, words: &[&str], tag: &str, i: usize, folder: &str) -> Vec<u8> {
        let (base, spread) = pick(rng, self.sizes);
        let size = base + rng.below(spread);
        let mut m = format!(
            "From: Sender {i} <s{i}@old.example>\r\nTo: alice@old.example\r\n\
             Subject: {tag} message {i} in {folder}\r\nMessage-ID: <{tag}-{i}@old.example>\r\n\
             Date: Mon, 1 Jan 2024 10:{:02}:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            i % 60
        )
        .into_bytes();
        while m.len() < size {
            let n = 4 + rng.below(self.extra_words);
            let line: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
            m.extend_from_slice(line.join(" ").as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(format!("-- \r\nend of {tag} {i}\r\n").as_bytes());
        m
    }

    /// `n` generated messages plus the two twins, in append order, deterministic for `seed`.
    pub fn generate(&self, n: usize, seed: u64, tag: &str) -> Vec<SeedMsg> {
        let mut rng = Rng::new(seed);
        let words: Vec<&str> = self.words.split(' ').collect();
        let to = if self.twin_to {
            "To: alice@old.example\r\n"
        } else {
            ""
        };
        let twin = format!(
            "From: twin@old.example\r\n{to}Subject: {tag} twin\r\n\
             Message-ID: <{tag}-twin@old.example>\r\n\r\nI have a twin.\r\n"
        )
        .into_bytes();
        let (twin_folder, twin_at) = self.twins;
        let mut out = Vec::new();
        let mut in_twin_folder = 0;
        for i in 0..n {
            let folder = pick(&mut rng, self.folders);
            if folder == twin_folder {
                in_twin_folder += 1;
                if twin_at.contains(&in_twin_folder) {
                    out.push(SeedMsg {
                        folder,
                        flags: vec!["\\Seen", "Project-X"],
                        date: "06-Jun-2021 06:06:06 +0000".into(),
                        body: twin.clone(),
                    });
                }
            }
            let flags = self
                .flags
                .split(' ')
                .filter(|f| rng.below(if *f == "\\Seen" { 2 } else { 5 }) == 0)
                .collect();
            let date = self.date(&mut rng);
            let body = self.message(&mut rng, &words, tag, i, folder);
            out.push(SeedMsg {
                folder,
                flags,
                date,
                body,
            });
        }
        out
    }
}

/// Creates `create` in `login`'s account and appends `msgs` in order.
pub fn seed(port: u16, login: &str, pw: &str, create: &[&str], msgs: &[SeedMsg]) {
    let mut c = TestImap::connect(port, login, pw);
    for f in create {
        c.create(f);
    }
    for (i, m) in msgs.iter().enumerate() {
        c.append(m.folder, &m.flags, Some(&m.date), &m.body)
            .unwrap_or_else(|e| panic!("seeding {login}: APPEND #{i} to {}: {e}", m.folder));
    }
    c.logout();
}

/// Every message of each of `folders` (empty for a folder that does not exist), keyed by the
/// folder's name in `folders`, read from the server as `name_there(folder)`.
pub fn snapshot_folders(
    port: u16,
    login: &str,
    pw: &str,
    folders: &[&str],
    name_there: impl Fn(&str) -> String,
) -> BTreeMap<String, Vec<TestMsg>> {
    let mut c = TestImap::connect(port, login, pw);
    let names: Vec<String> = c.list().into_iter().map(|(_, _, n)| n).collect();
    let mut out = BTreeMap::new();
    for f in folders {
        let name = name_there(f);
        let msgs = if names.contains(&name) {
            c.fetch_all(&name)
        } else {
            Vec::new()
        };
        out.insert(f.to_string(), msgs);
    }
    c.logout();
    out
}

/// A per-folder counter of a sync report, summed over all users and folders.
pub fn folder_sum(j: &serde_json::Value, key: &str) -> u64 {
    j["users"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["folders"].as_array().into_iter().flatten())
        .map(|f| f[key].as_u64().unwrap_or(0))
        .sum()
}

/// A run's exit status, its whole stdout and the last `n` lines of its stderr.
pub fn show_tail(out: &Output, n: usize) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// `imapshift status --json` succeeds and the (first) user has no pending intent: what a
/// complete run leaves.
pub fn assert_no_intents(what: &str, cfg: &Path, envs: &[(&str, &str)]) {
    let st = run_imapshift(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        envs,
    );
    assert!(
        st.status.success(),
        "{what}: status\n{}",
        show_tail(&st, 60)
    );
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        st[0]["pending_intents"], 0,
        "{what}: intents left after a complete run: {st}"
    );
}

/// The zone offsets the messages' INTERNALDATEs are spelled in, sorted, each once.
pub fn zones<'a>(msgs: impl IntoIterator<Item = &'a TestMsg>) -> Vec<String> {
    let mut z: Vec<String> = msgs.into_iter().map(|m| m.zone().to_string()).collect();
    z.sort();
    z.dedup();
    z
}

/// The premise of the tests whose old server runs in Europe/Berlin and new one in
/// America/New_York: the old one's dates (at least one) carry Berlin offsets, the new one's
/// New York offsets.
pub fn assert_zones<'a>(
    old: impl IntoIterator<Item = &'a TestMsg>,
    new: impl IntoIterator<Item = &'a TestMsg>,
) {
    let (zo, zn) = (zones(old), zones(new));
    assert!(
        !zo.is_empty() && zo.iter().all(|z| z == "+0100" || z == "+0200"),
        "the old server is not in Europe/Berlin: {zo:?}"
    );
    assert!(
        zn.iter().all(|z| z == "-0500" || z == "-0400"),
        "the new server is not in America/New_York: {zn:?}"
    );
}
