//! The state store: UID maps, per-folder sync state and the intent journal, in sled.
//!
//! This is the only home of sled. Keys are binary: an account key, the old folder's wire name,
//! the old UIDVALIDITY and UID (big-endian, so a prefix scan returns a folder's messages in UID
//! order). Values are JSON. No secret is ever stored here.
//!
//! The journal follows isync: before an APPEND the intent (which old message, its fingerprint, the
//! target folder and that folder's UIDNEXT at the time) is written and flushed; after the server
//! confirms, the map entry is written and the intent removed in one transaction. After a
//! crash, pending intents are resolved by looking for the messages on the new server before
//! anything is copied again. sled's flush is not fully durable (DEVELOPERS.md), so the store is a cache of truth that
//! can be rebuilt by matching messages on both sides; it is never the only proof.
//!
//! A full disk (measured on sled 0.34 against a small tmpfs, tests/disk_full.rs): the write that
//! meets ENOSPC fails with an I/O error, never a panic; sled then refuses every later write in the
//! process (its "global error"), and everything flushed before it is recovered at the next open.
//! So the journal's flush fails before the APPEND it guards, and the run stops; every sled error
//! here names the state directory, and a full disk says so with the fix ([`files::write_error`]).
//! The first error marks the store failed ([`StateStore::failure`]) so no further user starts.

pub mod files;
pub mod lock;

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::types::{MailboxPath, Uid, UidValidity};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::HashSet;
use std::path::Path;

/// Where one old message went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub new_folder: String,
    pub new_uidvalidity: Option<u32>,
    /// Unknown when the new server lacks UIDPLUS and the copy could not be found.
    pub new_uid: Option<u32>,
    pub fp: Fingerprint,
    /// The flags imapshift last set on the new copy (to notice changes on the old side).
    #[serde(default)]
    pub flags: Vec<String>,
}

/// An APPEND about to happen (or that happened without its confirmation being recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub new_folder: String,
    /// The new folder's UIDVALIDITY and UIDNEXT before the APPEND: the message, if it arrived,
    /// has a UID at or above this.
    pub new_uidvalidity: u32,
    pub new_uidnext_before: u32,
    /// The old message's fingerprint: its copy is found by it (headers only; an intent written
    /// by an earlier version also holds a body hash, which is ignored).
    pub fp: Fingerprint,
    /// The flags sent with the APPEND.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// The intents of one journaled batch: everything but the UID, fingerprint and flags is the
/// same for every message of a batch, and one record per batch is one write to the store
/// instead of one per message (and one to remove it after the APPEND).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IntentBatch {
    new_folder: String,
    new_uidvalidity: u32,
    new_uidnext_before: u32,
    /// (old UID, fingerprint, flags) of each message.
    items: Vec<(u32, Fingerprint, Vec<String>)>,
}

/// An intents record as stored: a batch (written now; its key names the batch's first UID),
/// or a single intent (moved from the per-message tree of an earlier version; its key names
/// its UID).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum IntentRecord {
    Batch(IntentBatch),
    One(Intent),
}

/// Only the UIDs of a batch record: what a commit needs to see whether it holds a message
/// just done, without decoding every fingerprint.
#[derive(Deserialize)]
struct BatchUids {
    items: Vec<(u32, serde::de::IgnoredAny, serde::de::IgnoredAny)>,
}

impl IntentRecord {
    /// Decodes a stored record: a batch, else a single intent (never serde's untagged
    /// guessing, which buffers the whole record first).
    fn decode(v: &[u8]) -> Result<IntentRecord> {
        match serde_json::from_slice::<IntentBatch>(v) {
            Ok(b) => Ok(IntentRecord::Batch(b)),
            Err(_) => dec(v).map(IntentRecord::One),
        }
    }

    /// The UIDs of the stored record under a key naming `key_uid`.
    fn uids(v: &[u8], key_uid: Uid) -> Vec<Uid> {
        match serde_json::from_slice::<BatchUids>(v) {
            Ok(b) => b
                .items
                .into_iter()
                .filter_map(|(u, _, _)| Uid::new(u))
                .collect(),
            Err(_) => vec![key_uid],
        }
    }

    /// The (UID, intent) pairs of the record stored under a key naming `key_uid`.
    fn expand(self, key_uid: Uid) -> Vec<(Uid, Intent)> {
        match self {
            IntentRecord::One(i) => vec![(key_uid, i)],
            IntentRecord::Batch(b) => b
                .items
                .into_iter()
                .filter_map(|(uid, fp, flags)| {
                    let i = Intent {
                        new_folder: b.new_folder.clone(),
                        new_uidvalidity: b.new_uidvalidity,
                        new_uidnext_before: b.new_uidnext_before,
                        fp,
                        flags,
                    };
                    Some((Uid::new(uid)?, i))
                })
                .collect(),
        }
    }

    /// Records for `items`, one per run of consecutive intents that share their folder,
    /// UIDVALIDITY and UIDNEXT mark (a batch is one such run), each with its first UID.
    fn group(items: &[(Uid, Intent)]) -> Vec<(Uid, IntentRecord)> {
        let mut out: Vec<(Uid, IntentBatch)> = Vec::new();
        for (uid, i) in items {
            let same = |b: &IntentBatch| {
                b.new_folder == i.new_folder
                    && b.new_uidvalidity == i.new_uidvalidity
                    && b.new_uidnext_before == i.new_uidnext_before
            };
            match out.last_mut() {
                Some((_, b)) if same(b) => b.items.push((uid.get(), i.fp.clone(), i.flags.clone())),
                _ => out.push((
                    *uid,
                    IntentBatch {
                        new_folder: i.new_folder.clone(),
                        new_uidvalidity: i.new_uidvalidity,
                        new_uidnext_before: i.new_uidnext_before,
                        items: vec![(uid.get(), i.fp.clone(), i.flags.clone())],
                    },
                )),
            }
        }
        out.into_iter()
            .map(|(u, b)| (u, IntentRecord::Batch(b)))
            .collect()
    }
}

/// An intents record with where it is stored: its key, and the UIDVALIDITY and UID the key names.
type StoredIntents = (Vec<u8>, UidValidity, Uid, IntentRecord);

/// What is remembered about one old folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    pub old_uidvalidity: u32,
    pub old_uidnext: u32,
    pub old_messages: u32,
    pub new_folder: String,
    pub new_uidvalidity: u32,
    pub last_sync_unix: u64,
    /// The old folder's HIGHESTMODSEQ at the end of that run (CONDSTORE servers).
    #[serde(default)]
    pub old_highestmodseq: Option<u64>,
    /// Copies of messages expunged on the old server, kept because deletions were not
    /// propagated: a run that propagates must look at the folder even if nothing changed.
    #[serde(default)]
    pub kept: u64,
    /// The new folder's UIDNEXT after that run: newer messages there are unknown to imapshift.
    #[serde(default)]
    pub new_uidnext: u32,
    /// Every message was copied in that run. An incomplete folder (a message failed) keeps its
    /// state, so renames and deletions on the old server are still followed, but is never
    /// skipped by the STATUS fast path.
    #[serde(default = "yes")]
    pub complete: bool,
    /// Messages `[filters]` left out in that run (size, age), and the filters' key then (size
    /// limit and age cut-off): the STATUS fast path is taken only under the same key, so a
    /// message that grows into the age window, or a changed filter, is looked at again.
    #[serde(default)]
    pub filtered: u64,
    #[serde(default)]
    pub filter_key: String,
}

fn yes() -> bool {
    true
}

/// An intent that was dropped because its message was not found on the new server: the APPEND
/// may still be committing there (a server busy with a large MULTIAPPEND when the connection
/// timed out, or when imapshift was killed). For a while the new folder is looked at again for a
/// late copy ([`crate::engine`]): a late copy of a message copied again since is imapshift's own
/// duplicate and is removed; one of a message not copied again becomes its copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ghost {
    pub new_folder: String,
    pub new_uidvalidity: u32,
    pub new_uidnext_before: u32,
    pub fp: Fingerprint,
    /// When the intent was dropped (Unix seconds).
    pub dropped_unix: u64,
}

/// The sled database.
#[derive(Clone)]
pub struct StateStore {
    db: sled::Db,
    maps: sled::Tree,
    /// Where intents lived before they moved into the maps tree (see [`INTENT`]); a store
    /// written by an earlier version has its pending ones moved at open, so it stays empty.
    intents: sled::Tree,
    folders: sled::Tree,
    runs: sled::Tree,
    created: sled::Tree,
    ghosts: sled::Tree,
    /// The state directory, named in every error.
    dir: std::sync::Arc<std::path::PathBuf>,
    /// The first error of a sled operation in this process (see [`StateStore::failure`]).
    broken: std::sync::Arc<std::sync::OnceLock<String>>,
}

/// Identifies a migration pair (old account to new account on given servers) in keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKey(Vec<u8>);

impl AccountKey {
    pub fn new(old_server: &str, old_login: &str, new_server: &str, new_login: &str) -> Self {
        let s = format!("{old_server}/{old_login}\u{1f}{new_server}/{new_login}");
        let mut v = s.into_bytes();
        v.push(0);
        AccountKey(v)
    }
}

fn folder_key(acct: &AccountKey, folder: &MailboxPath) -> Vec<u8> {
    let mut k = acct.0.clone();
    k.extend_from_slice(folder.as_str().as_bytes());
    k.push(0);
    k
}

fn msg_key(acct: &AccountKey, folder: &MailboxPath, uv: UidValidity, uid: Option<Uid>) -> Vec<u8> {
    let mut k = folder_key(acct, folder);
    k.extend_from_slice(&uv.get().to_be_bytes());
    if let Some(u) = uid {
        k.extend_from_slice(&u.get().to_be_bytes());
    }
    k
}

/// The first byte of an intent's key in the maps tree. No map key starts with it (an account
/// key is UTF-8 text, which never holds 0xFF), so a scan of an account's or a folder's maps
/// never meets an intent, and an intent and the map entry that replaces it live in one tree:
/// [`StateStore::commit`] swaps them in one atomic batch instead of a transaction over two
/// trees (which cost a fifth of the client's CPU in a full sync's profile).
const INTENT: u8 = 0xFF;

/// An intent's key: [`INTENT`], then the message key it is for.
fn intent_key(acct: &AccountKey, folder: &MailboxPath, uv: UidValidity, uid: Uid) -> Vec<u8> {
    intent_prefix(&msg_key(acct, folder, uv, Some(uid)))
}

/// [`INTENT`] before a map-style key or prefix.
fn intent_prefix(k: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.len() + 1);
    v.push(INTENT);
    v.extend_from_slice(k);
    v
}

fn uid_of_key(k: &[u8]) -> Option<Uid> {
    let b: [u8; 4] = k.get(k.len().checked_sub(4)?..)?.try_into().ok()?;
    Uid::new(u32::from_be_bytes(b))
}

/// The (UIDVALIDITY, UID) of the part of a message key after the folder.
fn uv_uid(rest: &[u8]) -> Option<(UidValidity, Uid)> {
    if rest.len() != 8 {
        return None;
    }
    let uv = UidValidity::new(u32::from_be_bytes(rest[..4].try_into().ok()?))?;
    let uid = Uid::new(u32::from_be_bytes(rest[4..].try_into().ok()?))?;
    Some((uv, uid))
}

/// sled's results, their errors in an admin's words ([`StateStore::failed`]).
trait InStore<T> {
    fn in_store(self, store: &StateStore) -> Result<T>;
}

impl<T> InStore<T> for std::result::Result<T, sled::Error> {
    fn in_store(self, store: &StateStore) -> Result<T> {
        self.map_err(|e| store.failed(&e))
    }
}

/// What a sled error says, for an admin: a full disk as such (with the fix), an I/O error by its
/// OS text, anything else as sled words it.
fn sled_text(dir: &Path, e: &sled::Error) -> String {
    match e {
        sled::Error::Io(io) => files::write_error(dir, io),
        other => other.to_string(),
    }
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state values serialize")
}

fn dec<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| {
        Error::state(format!(
            "state store holds an unreadable record ({e}); move the state directory aside and re-run"
        ))
    })
}

/// Why sled could not open the store in `dir`, with the way out: a full disk, another run, or
/// damage.
fn open_error(dir: &Path, e: &sled::Error) -> Error {
    if let sled::Error::Io(io) = e {
        if files::is_disk_full(io) {
            return Error::state(format!(
                "cannot open the state store in {}: {}",
                dir.display(),
                files::disk_full_text(dir)
            ));
        }
    }
    let said = sled_text(dir, e);
    let held = matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock);
    let hint = if held || said.contains("lock") || said.contains("WouldBlock") {
        " (another imapshift run uses this state directory; wait for it to finish)".to_string()
    } else {
        // The store is a cache of what both servers show: losing it costs time,
        // never a duplicate (docs/reliability.md).
        format!(
            ". If it is damaged, move it aside (mv {0} {0}.damaged) and run again: the UID maps are rebuilt by matching the messages on both servers, and nothing is copied twice",
            dir.display()
        )
    };
    Error::state(format!(
        "cannot open the state store in {}: {said}{hint}",
        dir.display()
    ))
}

/// How long [`StateStore::open`] waits for sled's own lock, released by a store of this
/// process that was just dropped.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<StateStore> {
        // A directory others can read is named once, when the command takes the state
        // directory's lock (`cli::lock_state`), which every command opening the store does first.
        files::private_dir(dir).map_err(|e| {
            let text = format!(
                "cannot create the state directory {}: {}",
                dir.display(),
                files::write_error(dir, &e)
            );
            if files::is_disk_full(&e) {
                Error::state(text)
            } else {
                Error::config(format!("{text} (set state_dir to a writable folder)"))
            }
        })?;
        let config = sled::Config::new()
            .path(dir.join("db"))
            .mode(sled::Mode::HighThroughput)
            // sled's page cache defaults to 1 GiB; the maps are small and read sequentially.
            .cache_capacity(16 * 1024 * 1024);
        // sled releases its file lock when its last handle goes, and its flusher thread may
        // still hold one for a moment after the store was dropped: a reopen in the same process
        // (cutover's verify after its sync) can meet the lock. Another process cannot hold it:
        // every command takes the state directory's own lock first (`state::lock`), so the
        // lock here is ours and soon free.
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        let db = loop {
            match config.open() {
                // sled 0.34 says so as ErrorKind::Other with this text.
                Err(sled::Error::Io(io))
                    if (io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock"))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.map_err(|e| open_error(dir, &e))?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(dir, &e));
        let store = StateStore {
            maps: tree("maps")?,
            intents: tree("intents")?,
            folders: tree("folders")?,
            runs: tree("runs")?,
            created: tree("created")?,
            ghosts: tree("ghosts")?,
            db,
            dir: std::sync::Arc::new(dir.to_path_buf()),
            broken: std::sync::Arc::default(),
        };
        store.move_legacy_intents()?;
        Ok(store)
    }

    /// Moves the pending intents a store of an earlier version kept in their own tree into the
    /// maps tree (under [`INTENT`]), in one transaction: a crash leaves them in one place or
    /// the other, never lost.
    fn move_legacy_intents(&self) -> Result<()> {
        if self.intents.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::new();
        for kv in self.intents.iter() {
            let (k, v) = kv.in_store(self)?;
            rows.push((k.to_vec(), v.to_vec()));
        }
        (&self.maps, &self.intents)
            .transaction(|(maps, intents)| {
                for (k, v) in &rows {
                    maps.insert(intent_prefix(k), v.as_slice())?;
                    intents.remove(k.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| self.tx_failed(e))?;
        tracing::debug!(
            "state store: moved {} pending intents into the maps tree",
            rows.len()
        );
        Ok(())
    }

    /// Every (UIDVALIDITY, UID, record) of one folder in a tree keyed like the maps.
    fn scan_messages<T: for<'de> Deserialize<'de>>(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
    ) -> Result<Vec<(UidValidity, Uid, T)>> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix(prefix) {
            let (k, v) = kv.in_store(self)?;
            if let Some((uv, uid)) = uv_uid(&k[prefix.len()..]) {
                out.push((uv, uid, dec(&v)?));
            }
        }
        Ok(out)
    }

    /// A sled error as the run's error, naming the state directory. The first one also marks
    /// the store failed ([`StateStore::failure`]): after a failed write (a full disk) sled
    /// refuses every later one, and the run must not start anything it cannot record.
    fn failed(&self, e: &sled::Error) -> Error {
        let text = match e {
            sled::Error::Io(io) if files::is_disk_full(io) => {
                format!(
                    "cannot write the state store: {}",
                    files::disk_full_text(&self.dir)
                )
            }
            _ => format!(
                "the state store in {} failed: {}",
                self.dir.display(),
                sled_text(&self.dir, e)
            ),
        };
        let first = self.broken.get_or_init(|| text.clone());
        tracing::debug!("state store error: {text} (first: {first})");
        Error::state(text)
    }

    fn tx_failed(&self, e: sled::transaction::TransactionError<()>) -> Error {
        match e {
            sled::transaction::TransactionError::Abort(()) => {
                Error::state("state store transaction aborted")
            }
            sled::transaction::TransactionError::Storage(e) => self.failed(&e),
        }
    }

    /// The error that broke the store in this process, if one did: a run stops starting users
    /// (and folders) once it is set, since nothing more could be recorded.
    pub fn failure(&self) -> Option<Error> {
        self.broken.get().map(|t| Error::state(t.clone()))
    }

    /// `Ok` while the store has not failed; else its first error (see [`StateStore::failure`]).
    pub fn usable(&self) -> Result<()> {
        self.failure().map_or(Ok(()), Err)
    }

    /// Makes everything written so far as durable as sled can.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await.in_store(self)?;
        Ok(())
    }

    /// Every map entry of a folder under one UIDVALIDITY, in UID order.
    pub fn map_entries(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
    ) -> Result<Vec<(Uid, MapEntry)>> {
        let prefix = msg_key(acct, folder, uv, None);
        let mut out = Vec::new();
        for kv in self.maps.scan_prefix(&prefix) {
            let (k, v) = kv.in_store(self)?;
            if let Some(u) = uid_of_key(&k) {
                out.push((u, dec(&v)?));
            }
        }
        Ok(out)
    }

    /// The UIDVALIDITYs under which a folder has map entries, with their counts.
    pub fn map_uidvalidities(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
    ) -> Result<Vec<(UidValidity, usize)>> {
        let prefix = folder_key(acct, folder);
        let mut out: Vec<(UidValidity, usize)> = Vec::new();
        for k in self.maps.scan_prefix(&prefix).keys() {
            let k = k.in_store(self)?;
            let rest = &k[prefix.len()..];
            if rest.len() != 8 {
                continue;
            }
            if let Some(uv) =
                UidValidity::new(u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")))
            {
                match out.last_mut() {
                    Some((last, n)) if *last == uv => *n += 1,
                    _ => out.push((uv, 1)),
                }
            }
        }
        Ok(out)
    }

    /// Removes map entries (messages deleted on the new server, or a void UIDVALIDITY).
    pub fn remove_maps(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
        uids: &[Uid],
    ) -> Result<()> {
        let mut b = sled::Batch::default();
        for uid in uids {
            b.remove(msg_key(acct, folder, uv, Some(*uid)));
        }
        self.maps.apply_batch(b).in_store(self)?;
        Ok(())
    }

    /// Removes every map entry of a folder under one UIDVALIDITY.
    pub fn remove_uidvalidity(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
    ) -> Result<()> {
        let uids: Vec<Uid> = self
            .map_entries(acct, folder, uv)?
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        self.remove_maps(acct, folder, uv, &uids)
    }

    /// Records that imapshift created this folder on the new server.
    pub fn mark_created(&self, acct: &AccountKey, new_folder: &MailboxPath) -> Result<()> {
        self.created
            .insert(folder_key(acct, new_folder), &[])
            .in_store(self)?;
        Ok(())
    }

    /// The new-side folders imapshift created (wire names).
    pub fn created_folders(&self, acct: &AccountKey) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for k in self.created.scan_prefix(&acct.0).keys() {
            let k = k.in_store(self)?;
            out.push(
                String::from_utf8_lossy(&k[acct.0.len()..k.len().saturating_sub(1)]).into_owned(),
            );
        }
        Ok(out)
    }

    /// Whether imapshift created this folder on the new server.
    pub fn was_created(&self, acct: &AccountKey, new_folder: &MailboxPath) -> Result<bool> {
        self.created
            .contains_key(folder_key(acct, new_folder))
            .in_store(self)
    }

    /// Moves everything recorded about old folder `from` to old folder `to` (a rename on the old
    /// server), pointing the maps, intents and ghosts at the new server's folder `new_folder`,
    /// in one transaction.
    pub fn move_folder(
        &self,
        acct: &AccountKey,
        from: &MailboxPath,
        to: &MailboxPath,
        new_folder: &MailboxPath,
    ) -> Result<()> {
        let src = folder_key(acct, from);
        let dst = folder_key(acct, to);
        let nf = new_folder.as_str().to_string();
        let rekey = |k: &[u8]| {
            let mut nk = dst.clone();
            nk.extend_from_slice(&k[src.len()..]);
            nk
        };
        let mut maps = Vec::new();
        for kv in self.maps.scan_prefix(&src) {
            let (k, v) = kv.in_store(self)?;
            let mut e: MapEntry = dec(&v)?;
            e.new_folder = nf.clone();
            maps.push((k.to_vec(), rekey(&k), enc(&e)));
        }
        let isrc = intent_prefix(&src);
        for kv in self.maps.scan_prefix(&isrc) {
            let (k, v) = kv.in_store(self)?;
            let mut r = IntentRecord::decode(&v)?;
            match &mut r {
                IntentRecord::One(i) => i.new_folder = nf.clone(),
                IntentRecord::Batch(b) => b.new_folder = nf.clone(),
            }
            maps.push((k.to_vec(), intent_prefix(&rekey(&k[1..])), enc(&r)));
        }
        let mut ghosts = Vec::new();
        for kv in self.ghosts.scan_prefix(&src) {
            let (k, v) = kv.in_store(self)?;
            let mut g: Ghost = dec(&v)?;
            g.new_folder = nf.clone();
            ghosts.push((k.to_vec(), rekey(&k), enc(&g)));
        }
        let folder = match self.folders.get(&src).in_store(self)? {
            Some(v) => {
                let mut st: FolderState = dec(&v)?;
                st.new_folder = nf.clone();
                Some(enc(&st))
            }
            None => None,
        };
        (&self.maps, &self.ghosts, &self.folders)
            .transaction(|(m, g, f)| {
                for (tree, rows) in [(m, &maps), (g, &ghosts)] {
                    for (old, new, v) in rows.iter() {
                        tree.remove(old.as_slice())?;
                        tree.insert(new.as_slice(), v.as_slice())?;
                    }
                }
                if let Some(v) = &folder {
                    f.remove(src.as_slice())?;
                    f.insert(dst.as_slice(), v.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| self.tx_failed(e))?;
        Ok(())
    }

    /// Forgets an old folder entirely (it was deleted on the old server and handled).
    pub fn remove_folder(&self, acct: &AccountKey, folder: &MailboxPath) -> Result<()> {
        for (uv, _) in self.map_uidvalidities(acct, folder)? {
            self.remove_uidvalidity(acct, folder, uv)?;
        }
        let prefix = folder_key(acct, folder);
        for (tree, p) in [
            (&self.maps, intent_prefix(&prefix)),
            (&self.ghosts, prefix.clone()),
        ] {
            for k in tree.scan_prefix(&p).keys() {
                tree.remove(k.in_store(self)?).in_store(self)?;
            }
        }
        self.folders.remove(prefix).in_store(self)?;
        Ok(())
    }

    /// Every map entry of a folder under every UIDVALIDITY.
    pub fn all_map_entries(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
    ) -> Result<Vec<(UidValidity, Uid, MapEntry)>> {
        let mut out = Vec::new();
        for (uv, _) in self.map_uidvalidities(acct, folder)? {
            for (uid, e) in self.map_entries(acct, folder, uv)? {
                out.push((uv, uid, e));
            }
        }
        Ok(out)
    }

    /// Forgets a folder's recorded state so the next run examines it fully.
    pub fn forget_folder_state(&self, acct: &AccountKey, folder: &MailboxPath) -> Result<()> {
        self.folders
            .remove(folder_key(acct, folder))
            .in_store(self)?;
        Ok(())
    }

    /// Every recorded folder of an account with its state.
    pub fn folder_states(&self, acct: &AccountKey) -> Result<Vec<(String, FolderState)>> {
        let mut out = Vec::new();
        for kv in self.folders.scan_prefix(&acct.0) {
            let (k, v) = kv.in_store(self)?;
            let name =
                String::from_utf8_lossy(&k[acct.0.len()..k.len().saturating_sub(1)]).into_owned();
            out.push((name, dec(&v)?));
        }
        Ok(out)
    }

    /// The intents records under `prefix` (an intent prefix of a folder, of one of its
    /// UIDVALIDITYs, or of an account): (key, UIDVALIDITY, record) each.
    fn intent_records(&self, prefix: &[u8]) -> Result<Vec<StoredIntents>> {
        let mut out = Vec::new();
        for kv in self.maps.scan_prefix(prefix) {
            let (k, v) = kv.in_store(self)?;
            // [INTENT] account folder 0 uidvalidity uid: the last 8 bytes.
            if let Some((uv, uid)) = k.len().checked_sub(8).and_then(|at| uv_uid(&k[at..])) {
                out.push((k.to_vec(), uv, uid, IntentRecord::decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Pending intents of a folder (from an interrupted run).
    pub fn intents(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
    ) -> Result<Vec<(UidValidity, Uid, Intent)>> {
        let mut out = Vec::new();
        for (_, uv, key_uid, r) in self.intent_records(&intent_prefix(&folder_key(acct, folder)))? {
            out.extend(r.expand(key_uid).into_iter().map(|(u, i)| (uv, u, i)));
        }
        out.sort_by_key(|(uv, u, _)| (*uv, *u));
        Ok(out)
    }

    /// Number of pending intents of an account.
    pub fn intent_count(&self, acct: &AccountKey) -> usize {
        self.intent_records(&intent_prefix(&acct.0))
            .map(|rs| rs.into_iter().map(|(_, _, u, r)| r.expand(u).len()).sum())
            .unwrap_or(0)
    }

    /// Records intents durably, before the APPEND: one record per batch.
    pub async fn journal(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
        items: &[(Uid, Intent)],
    ) -> Result<()> {
        let mut b = sled::Batch::default();
        for (first, r) in IntentRecord::group(items) {
            b.insert(intent_key(acct, folder, uv, first), enc(&r));
        }
        self.maps.apply_batch(b).in_store(self)?;
        self.flush().await
    }

    /// Commits results: map entries written, their intents (and those of refused messages)
    /// removed, in one atomic batch (a crash leaves either all or nothing).
    pub fn commit(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
        mapped: &[(Uid, MapEntry)],
        dropped: &[Uid],
    ) -> Result<()> {
        // One batch on one tree: sled applies it atomically (a crash leaves all or nothing).
        let mut b = sled::Batch::default();
        for (uid, e) in mapped {
            b.insert(msg_key(acct, folder, uv, Some(*uid)), enc(e));
        }
        let done: HashSet<Uid> = mapped
            .iter()
            .map(|(u, _)| *u)
            .chain(dropped.iter().copied())
            .collect();
        if !done.is_empty() {
            // The folder's pending records are few (the batches in flight): each that holds a
            // message done here loses it, and goes when nothing is left.
            let prefix = intent_prefix(&msg_key(acct, folder, uv, None));
            for kv in self.maps.scan_prefix(&prefix) {
                let (key, v) = kv.in_store(self)?;
                let Some(key_uid) = key
                    .len()
                    .checked_sub(4)
                    .and_then(|at| uid_of_key(&key[at..]))
                else {
                    continue;
                };
                let uids = IntentRecord::uids(&v, key_uid);
                if !uids.iter().any(|u| done.contains(u)) {
                    continue;
                }
                if uids.iter().all(|u| done.contains(u)) {
                    b.remove(key);
                } else {
                    let left: Vec<(Uid, Intent)> = IntentRecord::decode(&v)?
                        .expand(key_uid)
                        .into_iter()
                        .filter(|(u, _)| !done.contains(u))
                        .collect();
                    // What is left, under the key of its first UID (removed first: that key
                    // may be this record's own).
                    b.remove(key);
                    for (u, rec) in IntentRecord::group(&left) {
                        b.insert(intent_key(acct, folder, uv, u), enc(&rec));
                    }
                }
            }
        }
        self.maps.apply_batch(b).in_store(self)?;
        Ok(())
    }

    /// Records ghosts of dropped intents (see [`Ghost`]).
    pub fn add_ghosts(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        uv: UidValidity,
        ghosts: &[(Uid, Ghost)],
    ) -> Result<()> {
        let mut b = sled::Batch::default();
        for (uid, g) in ghosts {
            b.insert(msg_key(acct, folder, uv, Some(*uid)), enc(g));
        }
        self.ghosts.apply_batch(b).in_store(self)?;
        Ok(())
    }

    /// The ghosts of an old folder: (old UIDVALIDITY, old UID, ghost).
    pub fn ghosts(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
    ) -> Result<Vec<(UidValidity, Uid, Ghost)>> {
        self.scan_messages(&self.ghosts, &folder_key(acct, folder))
    }

    /// Forgets ghosts (a late copy found, or too old to still come).
    pub fn remove_ghosts(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        which: &[(UidValidity, Uid)],
    ) -> Result<()> {
        let mut b = sled::Batch::default();
        for (uv, uid) in which {
            b.remove(msg_key(acct, folder, *uv, Some(*uid)));
        }
        self.ghosts.apply_batch(b).in_store(self)?;
        Ok(())
    }

    pub fn folder_state(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
    ) -> Result<Option<FolderState>> {
        match self.folders.get(folder_key(acct, folder)).in_store(self)? {
            Some(v) => Ok(Some(dec(&v)?)),
            None => Ok(None),
        }
    }

    pub fn set_folder_state(
        &self,
        acct: &AccountKey,
        folder: &MailboxPath,
        st: &FolderState,
    ) -> Result<()> {
        self.folders
            .insert(folder_key(acct, folder), enc(st))
            .in_store(self)?;
        Ok(())
    }

    /// Number of mapped messages of an account.
    pub fn mapped_count(&self, acct: &AccountKey) -> usize {
        self.maps.scan_prefix(&acct.0).count()
    }

    /// Stores the JSON summary of an account's last run.
    pub fn set_last_run(&self, acct: &AccountKey, json: &[u8]) -> Result<()> {
        self.runs.insert(&acct.0, json).in_store(self)?;
        Ok(())
    }

    pub fn last_run(&self, acct: &AccountKey) -> Result<Option<Vec<u8>>> {
        Ok(self.runs.get(&acct.0).in_store(self)?.map(|v| v.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint::of_message(b"Subject: a\r\n\r\nx", "01-Jan-2020 00:00:00 +0000")
    }

    /// A store of an earlier version kept pending intents in a tree of their own: they are
    /// found after the upgrade (moved at open), and neither an account's maps nor its map
    /// count see them.
    #[test]
    fn intents_of_an_earlier_layout_are_moved_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let a = AccountKey::new("o:1", "alice", "n:2", "alice");
        let f = MailboxPath::new("INBOX").unwrap();
        let uv = UidValidity::new(7).unwrap();
        let intent = Intent {
            new_folder: "INBOX".into(),
            new_uidvalidity: 9,
            new_uidnext_before: 5,
            fp: fp(),
            flags: vec!["\\Seen".into()],
        };
        {
            let s = StateStore::open(dir.path()).unwrap();
            for uid in [3, 4] {
                let k = msg_key(&a, &f, uv, Uid::new(uid));
                s.intents.insert(k, enc(&intent)).unwrap();
            }
            s.db.flush().unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert!(s.intents.is_empty(), "the old tree is emptied");
        let got = s.intents(&a, &f).unwrap();
        assert_eq!(
            got.iter()
                .map(|(v, u, _)| (v.get(), u.get()))
                .collect::<Vec<_>>(),
            vec![(7, 3), (7, 4)]
        );
        let i = &got[0].2;
        assert_eq!(
            (i.new_uidnext_before, &i.flags, &i.fp.header_hash),
            (5, &intent.flags, &intent.fp.header_hash)
        );
        assert_eq!(s.intent_count(&a), 2);
        assert!(s.map_entries(&a, &f, uv).unwrap().is_empty());
        assert_eq!(s.map_uidvalidities(&a, &f).unwrap().len(), 0);
        s.commit(&a, &f, uv, &[], &[Uid::new(3).unwrap()]).unwrap();
        assert_eq!(s.intent_count(&a), 1);
    }

    /// A batch is one record; committing part of it keeps the rest pending, under its key,
    /// and the last commit removes it. Intents with another UIDNEXT mark are a record of their own.
    #[tokio::test]
    async fn a_batch_record_is_committed_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let a = AccountKey::new("o:1", "alice", "n:2", "alice");
        let f = MailboxPath::new("INBOX").unwrap();
        let uv = UidValidity::new(7).unwrap();
        let intent = |mark: u32| Intent {
            new_folder: "INBOX".into(),
            new_uidvalidity: 9,
            new_uidnext_before: mark,
            fp: fp(),
            flags: vec![],
        };
        let u = |n: u32| Uid::new(n).unwrap();
        let items: Vec<(Uid, Intent)> = vec![
            (u(3), intent(1)),
            (u(4), intent(1)),
            (u(5), intent(1)),
            (u(9), intent(4)),
        ];
        s.journal(&a, &f, uv, &items).await.unwrap();
        assert_eq!(
            s.maps.scan_prefix([INTENT]).count(),
            2,
            "one record per mark"
        );
        let pending = |s: &StateStore| -> Vec<(u32, u32)> {
            s.intents(&a, &f)
                .unwrap()
                .into_iter()
                .map(|(_, u, i)| (u.get(), i.new_uidnext_before))
                .collect()
        };
        assert_eq!(pending(&s), vec![(3, 1), (4, 1), (5, 1), (9, 4)]);
        let e = MapEntry {
            new_folder: "INBOX".into(),
            new_uidvalidity: Some(9),
            new_uid: Some(1),
            fp: fp(),
            flags: vec![],
        };
        // What is left keeps the record's own key (its first UID): removed, then written again.
        s.commit(&a, &f, uv, &[(u(4), e.clone())], &[u(5)]).unwrap();
        assert_eq!(pending(&s), vec![(3, 1), (9, 4)]);
        assert_eq!(s.intent_count(&a), 2);
        s.commit(&a, &f, uv, &[(u(3), e.clone()), (u(9), e)], &[])
            .unwrap();
        assert!(pending(&s).is_empty());
        assert_eq!(s.maps.scan_prefix([INTENT]).count(), 0, "no record left");
        assert_eq!(s.map_entries(&a, &f, uv).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn journal_then_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let a = AccountKey::new("o:1", "alice", "n:2", "alice");
        let b = AccountKey::new("o:1", "alicex", "n:2", "alice");
        let f = MailboxPath::new("INBOX").unwrap();
        let uv = UidValidity::new(7).unwrap();
        let intent = Intent {
            new_folder: "INBOX".into(),
            new_uidvalidity: 9,
            new_uidnext_before: 1,
            fp: fp(),
            flags: vec![],
        };
        s.journal(
            &a,
            &f,
            uv,
            &[
                (Uid::new(3).unwrap(), intent.clone()),
                (Uid::new(4).unwrap(), intent),
            ],
        )
        .await
        .unwrap();
        assert_eq!(s.intents(&a, &f).unwrap().len(), 2);
        assert_eq!(
            s.intents(&b, &f).unwrap().len(),
            0,
            "prefix must not leak across accounts"
        );
        let e = MapEntry {
            new_folder: "INBOX".into(),
            new_uidvalidity: Some(9),
            new_uid: Some(1),
            fp: fp(),
            flags: vec![],
        };
        s.commit(
            &a,
            &f,
            uv,
            &[(Uid::new(3).unwrap(), e)],
            &[Uid::new(4).unwrap()],
        )
        .unwrap();
        assert!(s.intents(&a, &f).unwrap().is_empty());
        let uids = |f: &MailboxPath, uv: UidValidity| -> Vec<Uid> {
            s.map_entries(&a, f, uv)
                .unwrap()
                .into_iter()
                .map(|(u, _)| u)
                .collect()
        };
        assert_eq!(uids(&f, uv), vec![Uid::new(3).unwrap()]);
        assert!(uids(&f, UidValidity::new(8).unwrap()).is_empty());
        // A folder whose name is a prefix of another must not see its maps.
        let f2 = MailboxPath::new("INBOX2").unwrap();
        assert!(uids(&f2, uv).is_empty());
        assert_eq!(s.map_uidvalidities(&a, &f).unwrap(), vec![(uv, 1)]);
        assert_eq!(s.map_entries(&a, &f, uv).unwrap().len(), 1);
        s.remove_uidvalidity(&a, &f, uv).unwrap();
        assert!(s.map_uidvalidities(&a, &f).unwrap().is_empty());
    }

    /// Regression (issue 10, item 11): a folder renamed on the old server takes its intents and
    /// ghosts along, pointed at the new folder, so none stays pending under the old name.
    #[tokio::test]
    async fn move_folder_moves_maps_intents_ghosts_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let a = AccountKey::new("o:1", "alice", "n:2", "alice");
        let from = MailboxPath::new("2019").unwrap();
        let to = MailboxPath::new("Old2019").unwrap();
        let nf = MailboxPath::new("Old2019").unwrap();
        let uv = UidValidity::new(7).unwrap();
        let u = |n| Uid::new(n).unwrap();
        let intent = Intent {
            new_folder: "2019".into(),
            new_uidvalidity: 9,
            new_uidnext_before: 1,
            fp: fp(),
            flags: vec![],
        };
        s.journal(&a, &from, uv, &[(u(2), intent)]).await.unwrap();
        let e = MapEntry {
            new_folder: "2019".into(),
            new_uidvalidity: Some(9),
            new_uid: Some(1),
            fp: fp(),
            flags: vec![],
        };
        s.commit(&a, &from, uv, &[(u(1), e)], &[]).unwrap();
        let g = Ghost {
            new_folder: "2019".into(),
            new_uidvalidity: 9,
            new_uidnext_before: 1,
            fp: fp(),
            dropped_unix: 0,
        };
        s.add_ghosts(&a, &from, uv, &[(u(3), g)]).unwrap();
        s.set_folder_state(
            &a,
            &from,
            &FolderState {
                old_uidvalidity: 7,
                old_uidnext: 4,
                old_messages: 3,
                new_folder: "2019".into(),
                new_uidvalidity: 9,
                last_sync_unix: 0,
                old_highestmodseq: None,
                kept: 0,
                new_uidnext: 2,
                complete: false,
                filtered: 0,
                filter_key: String::new(),
            },
        )
        .unwrap();
        s.move_folder(&a, &from, &to, &nf).unwrap();
        assert!(s.intents(&a, &from).unwrap().is_empty());
        assert!(s.ghosts(&a, &from).unwrap().is_empty());
        assert!(s.map_entries(&a, &from, uv).unwrap().is_empty());
        assert!(s.folder_state(&a, &from).unwrap().is_none());
        let i = s.intents(&a, &to).unwrap();
        assert_eq!((i.len(), i[0].2.new_folder.as_str()), (1, "Old2019"));
        let g = s.ghosts(&a, &to).unwrap();
        assert_eq!((g.len(), g[0].2.new_folder.as_str()), (1, "Old2019"));
        let m = s.map_entries(&a, &to, uv).unwrap();
        assert_eq!(m[0].1.new_folder, "Old2019");
        let st = s.folder_state(&a, &to).unwrap().unwrap();
        assert_eq!(st.new_folder, "Old2019");
        assert!(!st.complete, "an incomplete folder stays incomplete");
        // An intent written by an earlier version (with a body hash) still reads.
        let legacy = serde_json::to_value(Intent {
            new_folder: "x".into(),
            new_uidvalidity: 1,
            new_uidnext_before: 1,
            fp: fp(),
            flags: vec![],
        })
        .unwrap();
        let mut legacy = legacy.as_object().unwrap().clone();
        legacy.insert("body_sha256".into(), "00".into());
        let back: Intent = serde_json::from_value(legacy.into()).unwrap();
        assert_eq!(back.new_folder, "x");
        // A state written before `complete` existed was written only for complete folders.
        let old_json = br#"{"old_uidvalidity":1,"old_uidnext":2,"old_messages":1,"new_folder":"x","new_uidvalidity":3,"last_sync_unix":0}"#;
        let st: FolderState = serde_json::from_slice(old_json).unwrap();
        assert!(st.complete);
    }

    /// `cutover` syncs, then verifies in the same process, and `verify` opens the store for the
    /// sync's folder plan: a store dropped by the sync must open again at once.
    #[test]
    fn reopens_after_drop_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = AccountKey::new("o:1", "alice", "n:2", "alice");
        let s = StateStore::open(dir.path()).unwrap();
        s.mark_created(&a, &MailboxPath::new("X").unwrap()).unwrap();
        drop(s);
        let s = StateStore::open(dir.path()).expect("reopened");
        assert!(s.was_created(&a, &MailboxPath::new("X").unwrap()).unwrap());
    }
}
