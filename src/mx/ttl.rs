//! The MX TTLs seen, remembered across commands in `<state_dir>/mx-ttl.json`.
//!
//! The TTL that matters at the cutover is the old one: a resolver that fetched the MX while it
//! still had a TTL of 86400 may hand it out for a day, even if the TTL was lowered to 300 an hour
//! ago. So `preflight`, `watch-mx --config` and `cutover` record every authoritative MX TTL they
//! see, with when, and the cutover waits the largest one whose lifetime (seen + TTL) has not
//! ended ([`TtlLog::binding`]). Entries whose lifetime is over are pruned. The file is small
//! JSON, written to a temp file and renamed (never half-written), mode 0600; a state directory
//! created for it gets 0700. A log that cannot be read is an error naming the file and the fix:
//! silently forgetting an old TTL would shorten the wait.

use super::Snapshot;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in the state directory.
pub const FILE: &str = "mx-ttl.json";

/// A sighting already recorded is written again only when it is this much newer, so a watch
/// does not write on every poll (the lifetime it records is then at most this much short; the
/// moment a record really changed is only known to within a poll anyway).
const REFRESH_SECS: u64 = 60;

/// One MX TTL as a nameserver served it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlSeen {
    pub ttl: u32,
    /// The last time it was seen (Unix seconds).
    pub seen_unix: u64,
    pub domain: String,
    /// The nameserver's label.
    pub nameserver: String,
    /// `preflight`, `watch-mx` or `cutover`.
    pub source: String,
    /// The MX records, e.g. `10 old-mx.example.net`.
    pub targets: String,
}

impl TtlSeen {
    /// When a resolver that fetched it at the last sighting drops it.
    pub fn ends_unix(&self) -> u64 {
        self.seen_unix.saturating_add(u64::from(self.ttl))
    }

    /// `ttl 86400 of example.com at ns1 (10 old-mx.example.net), seen by preflight at ...`.
    pub fn describe(&self) -> String {
        format!(
            "ttl {} of {} at {} ({}), seen by {} at {}",
            self.ttl,
            self.domain,
            self.nameserver,
            self.targets,
            self.source,
            crate::timefmt::rfc3339(self.seen_unix)
        )
    }

    fn same_record(&self, o: &TtlSeen) -> bool {
        self.ttl == o.ttl
            && self.domain == o.domain
            && self.nameserver == o.nameserver
            && self.targets == o.targets
    }
}

#[derive(Serialize, Deserialize)]
struct LogFile {
    version: u32,
    seen: Vec<TtlSeen>,
}

/// The log of one state directory.
#[derive(Debug)]
pub struct TtlLog {
    dir: PathBuf,
    seen: Vec<TtlSeen>,
}

impl TtlLog {
    /// Reads `<state_dir>/mx-ttl.json` (none yet: an empty log; nothing is created until the
    /// first record).
    pub fn open(state_dir: &Path) -> Result<TtlLog, String> {
        let seen = read(&state_dir.join(FILE))?;
        Ok(TtlLog {
            dir: state_dir.to_path_buf(),
            seen,
        })
    }

    /// The path of the file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Everything remembered.
    pub fn entries(&self) -> &[TtlSeen] {
        &self.seen
    }

    /// Records the authoritative MX TTLs of a poll; writes the file only when a record is new,
    /// seen again after a while, or an entry's lifetime ended.
    pub fn record(&mut self, source: &str, snap: &Snapshot) -> Result<(), String> {
        let mut changed = false;
        for a in &snap.asked {
            let (true, Some(ttl), Some(records)) = (
                a.outcome.is_authoritative_answer(),
                a.outcome.max_ttl(),
                a.outcome.targets_line(),
            ) else {
                continue;
            };
            changed |= self.note(TtlSeen {
                ttl,
                seen_unix: snap.unix,
                domain: a.domain.clone(),
                nameserver: a.nameserver.clone(),
                source: source.to_string(),
                targets: records,
            });
        }
        changed |= self.prune(snap.unix);
        if changed {
            self.save(snap.unix)?;
        }
        Ok(())
    }

    /// Takes one sighting in; whether the log changed.
    pub fn note(&mut self, s: TtlSeen) -> bool {
        match self.seen.iter_mut().find(|e| e.same_record(&s)) {
            None => {
                self.seen.push(s);
                true
            }
            Some(e) if s.seen_unix >= e.seen_unix.saturating_add(REFRESH_SECS) => {
                *e = s;
                true
            }
            Some(_) => false,
        }
    }

    /// Forgets what no resolver can still hold at `now`; whether anything went.
    fn prune(&mut self, now: u64) -> bool {
        let before = self.seen.len();
        self.seen.retain(|e| e.ends_unix() > now);
        self.seen.len() != before
    }

    /// The largest TTL whose lifetime has not ended at `at_unix` (the latest such sighting on a
    /// tie).
    pub fn binding(&self, at_unix: u64) -> Option<TtlSeen> {
        self.seen
            .iter()
            .filter(|e| e.ends_unix() > at_unix)
            .max_by_key(|e| (e.ttl, e.seen_unix))
            .cloned()
    }

    /// Writes the log, merged with what another command wrote meanwhile: temp file, then rename.
    fn save(&mut self, now: u64) -> Result<(), String> {
        let path = self.path();
        for s in read(&path)? {
            self.note(s);
        }
        self.prune(now);
        crate::state::files::private_dir(&self.dir).map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                self.dir.display()
            )
        })?;
        let text = serde_json::to_string_pretty(&LogFile {
            version: 1,
            seen: self.seen.clone(),
        })
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
        crate::state::files::write_private(&path, text.as_bytes()).map_err(|e| {
            format!(
                "cannot write {}: {e} (check the state directory: disk full, permissions?)",
                path.display()
            )
        })
    }
}

/// The entries of the file at `path`; none if it does not exist.
fn read(path: &Path) -> Result<Vec<TtlSeen>, String> {
    let fix = "it only holds the MX TTLs imapshift saw: delete it to go on, then wait the MX's old TTL yourself before the cutover (imapshift no longer knows it)";
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}; {fix}", path.display())),
    };
    let file: LogFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is damaged ({e}); {fix}", path.display()))?;
    if file.version != 1 {
        return Err(format!(
            "{} has version {}, which this imapshift does not know; {fix}",
            path.display(),
            file.version
        ));
    }
    Ok(file.seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{MxRecord, Outcome};
    use crate::mx::Asked;

    fn snap(unix: u64, ttl: u32, authoritative: bool) -> Snapshot {
        Snapshot {
            unix,
            asked: vec![Asked {
                domain: "example.com".into(),
                nameserver: "ns1".into(),
                outcome: Outcome::answer(
                    vec![MxRecord {
                        preference: 10,
                        exchange: "old-mx.example.net".into(),
                        ttl,
                    }],
                    authoritative,
                ),
            }],
        }
    }

    #[test]
    fn the_old_ttl_binds_until_its_lifetime_ends() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let t0 = 1_800_000_000;
        let mut log = TtlLog::open(&state).unwrap();
        assert_eq!(log.binding(t0), None);
        log.record("preflight", &snap(t0, 86_400, true)).unwrap();
        // Lowered to 300 an hour later: the old TTL still binds.
        log.record("watch-mx", &snap(t0 + 3600, 300, true)).unwrap();
        let b = TtlLog::open(&state).unwrap().binding(t0 + 3600).unwrap();
        assert_eq!(
            (b.ttl, b.seen_unix, b.source.as_str()),
            (86_400, t0, "preflight")
        );
        assert_eq!(
            b.describe(),
            "ttl 86400 of example.com at ns1 (10 old-mx.example.net), seen by preflight at 2027-01-15T08:00:00Z"
        );
        // Once its lifetime is over, the lower one binds, and the next record prunes the old.
        let late = t0 + 86_400;
        assert_eq!(log.binding(late - 1).unwrap().ttl, 86_400);
        log.record("cutover", &snap(late, 300, true)).unwrap();
        assert_eq!(log.binding(late).unwrap().ttl, 300);
        let log = TtlLog::open(&state).unwrap();
        assert!(
            log.entries().iter().all(|e| e.ttl == 300),
            "{:?}",
            log.entries()
        );
        assert_eq!(log.binding(late + 301), None);
        // Private: the directory 0700 (created here), the file 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(FILE)), 0o600);
    }

    #[test]
    fn a_watch_writes_only_what_changed_and_not_lame_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TtlLog::open(dir.path()).unwrap();
        let t0 = 1_800_000_000;
        log.record("watch-mx", &snap(t0, 300, false)).unwrap();
        assert!(
            !dir.path().join(FILE).exists(),
            "a lame answer's TTL is no zone's"
        );
        log.record("watch-mx", &snap(t0, 300, true)).unwrap();
        // The same record polled again within a minute: no write (the file, taken away to
        // see that, stays away).
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        log.record("watch-mx", &snap(t0 + 5, 300, true)).unwrap();
        assert!(!dir.path().join(FILE).exists(), "written on a steady poll");
        // A minute later it is written: the sighting is newer.
        log.record("watch-mx", &snap(t0 + 61, 300, true)).unwrap();
        let e = TtlLog::open(dir.path()).unwrap().entries().to_vec();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].seen_unix, t0 + 61);
    }

    #[test]
    fn a_damaged_log_is_an_error_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "{ not json").unwrap();
        let e = TtlLog::open(dir.path()).unwrap_err();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("delete it"),
            "{e}"
        );
        // Damaged after opening: the write refuses too and leaves the file as it was.
        std::fs::remove_file(&path).unwrap();
        let mut log = TtlLog::open(dir.path()).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        let e = log
            .record("preflight", &snap(1_800_000_000, 300, true))
            .unwrap_err();
        assert!(e.contains("damaged"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    }
}
