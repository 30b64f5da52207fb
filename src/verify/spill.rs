//! Both sides of one folder partitioned by match key, spilled to disk when they do not fit in
//! memory: the first half of a grace hash join.
//!
//! Every record goes to bucket `key mod n`. Records are buffered in memory; when more than
//! `buffer_records` are buffered, every buffer is appended to its bucket's file (one file per
//! bucket and side, in a directory of its own under the state directory, removed when the
//! partition is dropped). All records with one key land in one bucket, in the order they were
//! pushed (UID order), so matching bucket by bucket pairs exactly as matching the whole folder.
//! Memory stays at the buffers plus one bucket at a time, whatever the folder's size.

use super::compact::{Rec, REC_BYTES};
use crate::error::{Error, Result, Retry, Scope};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Which server a record is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
}

#[derive(Default)]
struct Bucket {
    old: Vec<Rec>,
    new: Vec<Rec>,
    /// Records of each side already written to its file.
    spilled: [usize; 2],
}

/// How a folder's records are split (see the module docs).
pub struct Partition {
    buckets: Vec<Bucket>,
    buffered: usize,
    buffer_records: usize,
    /// Where the spill directory goes (created at the first spill).
    parent: PathBuf,
    dir: Option<PathBuf>,
}

impl Partition {
    /// `expected` records over both sides, at most `bucket_records` per bucket (so a bucket's
    /// join fits in memory), at most `buffer_records` in memory before a spill.
    pub fn new(
        expected: usize,
        bucket_records: usize,
        buffer_records: usize,
        parent: &Path,
    ) -> Partition {
        let n = expected.div_ceil(bucket_records.max(1)).max(1);
        Partition {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
            buffered: 0,
            buffer_records: buffer_records.max(1),
            parent: parent.to_path_buf(),
            dir: None,
        }
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Whether anything went to disk.
    pub fn spilled(&self) -> bool {
        self.dir.is_some()
    }

    pub fn push(&mut self, side: Side, r: Rec) -> Result<()> {
        let n = self.buckets.len() as u128;
        let b = &mut self.buckets[(r.key % n) as usize];
        match side {
            Side::Old => b.old.push(r),
            Side::New => b.new.push(r),
        }
        self.buffered += 1;
        if self.buffered > self.buffer_records {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let dir = self.dir()?;
        for (i, b) in self.buckets.iter_mut().enumerate() {
            for (s, recs) in [(0, &mut b.old), (1, &mut b.new)] {
                if recs.is_empty() {
                    continue;
                }
                let path = file(&dir, i, s);
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                let mut w = std::io::BufWriter::new(f);
                for r in recs.iter() {
                    w.write_all(&r.to_bytes()).map_err(|e| io_error(&path, e))?;
                }
                w.flush().map_err(|e| io_error(&path, e))?;
                b.spilled[s] += recs.len();
                recs.clear();
                recs.shrink_to_fit();
            }
        }
        self.buffered = 0;
        Ok(())
    }

    fn dir(&mut self) -> Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let k = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = self
            .parent
            .join(format!("verify-spill-{}-{k}", std::process::id()));
        std::fs::create_dir_all(&d).map_err(|e| io_error(&d, e))?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// The records of bucket `i`, old and new, each in the order pushed; the bucket is emptied.
    pub fn take(&mut self, i: usize) -> Result<(Vec<Rec>, Vec<Rec>)> {
        let b = std::mem::take(&mut self.buckets[i]);
        let mut out = [Vec::new(), Vec::new()];
        for (s, buffered) in [(0, b.old), (1, b.new)] {
            let mut recs = Vec::with_capacity(b.spilled[s] + buffered.len());
            if b.spilled[s] > 0 {
                let dir = self.dir.clone().expect("spilled records have a directory");
                let path = file(&dir, i, s);
                let mut f = std::io::BufReader::new(
                    std::fs::File::open(&path).map_err(|e| io_error(&path, e))?,
                );
                let mut buf = [0u8; REC_BYTES];
                for _ in 0..b.spilled[s] {
                    f.read_exact(&mut buf).map_err(|e| io_error(&path, e))?;
                    recs.push(Rec::from_bytes(&buf));
                }
                drop(f);
                let _ = std::fs::remove_file(&path);
            }
            recs.extend(buffered);
            out[s] = recs;
        }
        let [old, new] = out;
        Ok((old, new))
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn file(dir: &Path, bucket: usize, side: usize) -> PathBuf {
    dir.join(format!("{bucket}.{}", ["old", "new"][side]))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        Scope::Account,
        Retry::Fix,
        format!(
            "verify: cannot use the spill file {} ({e}); free space in the state directory or point state_dir elsewhere",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: u128, uid: u32) -> Rec {
        Rec {
            key,
            exact: key as u64,
            uid,
            size: 1,
            flags: 0,
            body: 0,
        }
    }

    /// Records come back per bucket and side in the order pushed, across spills, and the spill
    /// directory is gone afterwards.
    #[test]
    fn spills_and_reads_back_in_order() {
        let parent =
            std::env::temp_dir().join(format!("imapshift-spill-test-{}", std::process::id()));
        let mut p = Partition::new(100, 10, 7, &parent);
        assert_eq!(p.buckets(), 10);
        for uid in 1..=100u32 {
            p.push(Side::Old, r(u128::from(uid % 13), uid)).unwrap();
            p.push(Side::New, r(u128::from(uid % 5), uid + 1000))
                .unwrap();
        }
        assert!(p.spilled());
        let dir = p.dir.clone().unwrap();
        let mut seen = 0;
        for i in 0..p.buckets() {
            let (o, n) = p.take(i).unwrap();
            assert!(o.windows(2).all(|w| w[0].uid < w[1].uid));
            assert!(n.windows(2).all(|w| w[0].uid < w[1].uid));
            assert!(o.iter().chain(&n).all(|x| x.key % 10 == i as u128));
            seen += o.len() + n.len();
        }
        assert_eq!(seen, 200);
        drop(p);
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(&parent);
    }
}
