//! A bounded on-disk queue of records waiting to be sent: one file per record
//! (`<seq>.json`, written to a temporary name, fsynced, renamed, the folder fsynced), so
//! a record accepted by [`Spool::push`] survives a crash or a power cut and is found
//! again by [`Spool::open`] at the next start. Past `max_records` the oldest record is
//! dropped and counted. One producer and one sender share a spool.

use crate::{err, Error, Result};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Largest record a spool holds (an event is well under 1 KiB).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The queue.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_records: usize,
    /// Sequence numbers on disk, oldest first, and the next one to use.
    index: Mutex<(VecDeque<u64>, u64)>,
    changed: Condvar,
    dropped: AtomicU64,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| err!(Io, "{what}").caused_by(e)
}

impl Spool {
    /// Opens (creating it if needed, mode 0700) the spool in `dir`; records left by an
    /// earlier run are kept, in order, and temporary files of an interrupted write are
    /// removed.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the folder cannot be made or read;
    /// [`Config`](crate::ErrorKind::Config) for `max_records` of zero.
    pub fn open(dir: &Path, max_records: usize) -> Result<Spool> {
        if max_records == 0 {
            return Err(err!(
                Config,
                "spool {}: max_records must be at least 1",
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(io(format!("spool {}", dir.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(format!("spool {}", dir.display())))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(seq) = name.strip_suffix(".json").and_then(|s| s.parse().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let next = seqs.last().map_or(1, |s| s + 1);
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_records,
            index: Mutex::new((seqs.into(), next)),
            changed: Condvar::new(),
            dropped: AtomicU64::new(0),
        };
        spool.trim();
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<u64>, u64)> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Stores a record durably (written and fsynced before this returns).
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the disk refuses it (full, read-only): the
    /// record is not stored; [`Config`](crate::ErrorKind::Config) for a record above
    /// [`MAX_RECORD_BYTES`].
    pub fn push(&self, record: &[u8]) -> Result<()> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(err!(
                Config,
                "spool: a record of {} bytes (at most {MAX_RECORD_BYTES})",
                record.len()
            ));
        }
        let seq = {
            let mut g = self.lock();
            let seq = g.1;
            g.1 += 1;
            seq
        };
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(record)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err!(Io, "spool {}", path.display()).caused_by(e));
        }
        let mut g = self.lock();
        // Keep the order by sequence even if pushes raced.
        let at = g.0.partition_point(|s| *s < seq);
        g.0.insert(at, seq);
        drop(g);
        self.trim();
        self.changed.notify_all();
        Ok(())
    }

    /// Drops the oldest records past the bound.
    fn trim(&self) {
        loop {
            let oldest = {
                let mut g = self.lock();
                if g.0.len() <= self.max_records {
                    return;
                }
                g.0.pop_front()
            };
            if let Some(seq) = oldest {
                let _ = std::fs::remove_file(self.path(seq));
                self.dropped.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "spool {}: full ({} records), dropped the oldest",
                    self.dir.display(),
                    self.max_records
                );
            }
        }
    }

    /// The oldest record (its sequence number and bytes), waiting up to `wait` for one.
    /// A record whose file cannot be read is dropped (counted) and the next one tried.
    pub fn oldest(&self, wait: Duration) -> Option<(u64, Vec<u8>)> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let seq = {
                let mut g = self.lock();
                while g.0.is_empty() {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    g = self
                        .changed
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *g.0.front()?
            };
            match std::fs::read(self.path(seq)) {
                Ok(bytes) => return Some((seq, bytes)),
                Err(e) => {
                    log::warn!(
                        "spool {}: record {seq} unreadable ({e}); dropped",
                        self.dir.display()
                    );
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.remove(seq);
                }
            }
        }
    }

    /// Removes a record once it has been delivered.
    pub fn remove(&self, seq: u64) {
        let _ = std::fs::remove_file(self.path(seq));
        let mut g = self.lock();
        if let Some(at) = g.0.iter().position(|s| *s == seq) {
            g.0.remove(at);
        }
    }

    /// Records waiting.
    pub fn depth(&self) -> usize {
        self.lock().0.len()
    }

    /// Records dropped (spool full, or unreadable) since this spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The spool's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("avaction-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_and_survive_reopening() {
        let d = dir("order");
        let s = Spool::open(&d, 10).unwrap();
        for i in 0..5 {
            s.push(format!("r{i}").as_bytes()).unwrap();
        }
        let (seq, bytes) = s.oldest(Duration::ZERO).unwrap();
        assert_eq!(bytes, b"r0");
        s.remove(seq);
        drop(s);
        std::fs::write(d.join("00000000000000000099.tmp"), b"torn").unwrap();
        let s = Spool::open(&d, 10).unwrap();
        assert_eq!(s.depth(), 4);
        let mut seen = Vec::new();
        while let Some((seq, bytes)) = s.oldest(Duration::ZERO) {
            seen.push(String::from_utf8(bytes).unwrap());
            s.remove(seq);
        }
        assert_eq!(seen, ["r1", "r2", "r3", "r4"]);
        assert!(!d.join("00000000000000000099.tmp").exists());
        s.push(b"after").unwrap();
        assert_eq!(s.oldest(Duration::ZERO).unwrap().1, b"after");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn the_oldest_are_dropped_past_the_bound_and_counted() {
        let d = dir("bound");
        let s = Spool::open(&d, 3).unwrap();
        for i in 0..5 {
            s.push(format!("r{i}").as_bytes()).unwrap();
        }
        assert_eq!(s.depth(), 3);
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.oldest(Duration::ZERO).unwrap().1, b"r2");
        assert!(Spool::open(&d, 0).is_err());
        assert!(s.push(&vec![b'x'; MAX_RECORD_BYTES + 1]).is_err());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_waiting_sender_wakes_on_push() {
        let d = dir("wake");
        let s = std::sync::Arc::new(Spool::open(&d, 3).unwrap());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.oldest(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        s.push(b"x").unwrap();
        assert_eq!(t.join().unwrap().unwrap().1, b"x");
        std::fs::remove_dir_all(&d).ok();
    }
}
