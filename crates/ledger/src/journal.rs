//! The write-ahead journal of a single-node (SQLite) ledger: one file beside the database where
//! a record is made durable with one small write and one `fdatasync`, before the store has it.
//!
//! An append is acknowledged once its frames are on the disk here. A filler task then copies
//! them into the store in batches, off the caller's path; reads of the ledger wait for it to
//! catch up. When the file reaches [`WRAP`] bytes and the store holds everything in it, writing
//! starts again at offset 0, so the file stays about that size (it is filled with zeros when
//! created: overwriting written blocks needs no metadata change at each flush).
//!
//! A frame: `magic u32 | body length u32 | database u32 | epoch u64 | seq u64 | leaf hash [32] |
//! body`, integers little-endian. `database` is the SQLite file's identity
//! ([`store::Store::sqlite_id`]); `epoch` is drawn at random each time the journal is opened;
//! `seq` counts from 0 within an epoch. The journal's content is the run of frames from offset 0
//! with one database and epoch, consecutive `seq`s and leaf hashes that match their bodies; it
//! ends at the first frame that is not (a torn write, zeros, or an older frame that was not
//! overwritten). Everything before a wrap was in the store already, so nothing is lost by the run
//! ending there. A journal whose run belongs to another database (the file was deleted and made
//! anew beside it) is set aside, renamed, never replayed into the wrong one.
//!
//! Opening the journal replays its run into the store: every frame whose record is not in the
//! store yet, in order. A record is found in the store by its leaf hash among the entries at or
//! after the earliest time in the run (a record's time is part of its bytes, so a copied record
//! has the same time), counted, so two equal records are two. Other processes may append to the
//! same store directly (`phigate vault shred`, `phigate audit append`): the store orders entries,
//! and the journal never claims an index.
//!
//! The file is locked (an exclusive advisory lock) while it is open: one process per database.
//!
//! Each write covers whole pages of [`PAGE`] bytes: it starts at the page that holds the end of
//! the last frame (its bytes before that end, kept in memory, written again unchanged) and is
//! padded with zeros to the end of its last page. A write into part of a page that is not in the
//! page cache makes the kernel read that page from the disk first, inside the `pwrite`. At a low
//! request rate the journal's pages go cold long before the writer comes round to them again,
//! and a host that reclaims cold page cache (memory pressure, or a reclaim daemon such as
//! DAMON's, which this project's test VMs run) drops them: one request in every few would wait
//! for a disk read before its flush. The zeros end the run where they start, as zeros did
//! before; the next write puts its frames over them. The disk writes whole pages either way.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::merkle::leaf_hash;

const MAGIC: u32 = 0x314c_4a50; // "PJL1"
const HEADER: usize = 4 + 4 + 4 + 8 + 8 + 32;
/// The largest record body a frame may carry (records are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;
/// Write from offset 0 again once this much is written and the store has all of it.
pub(crate) const WRAP: u64 = 4 << 20;
/// The page size writes are aligned to (the common page size; on a system with larger pages a
/// write still covers whole 4 KiB blocks of the file system).
pub(crate) const PAGE: u64 = 4096;

/// A frame read back from the file.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) leaf_hash: [u8; 32],
    pub(crate) body: Vec<u8>,
}

/// The open journal file; written by one task at a time.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    database: u32,
    epoch: u64,
    next_seq: u64,
    offset: u64,
    /// The bytes from the start of `offset`'s page to `offset`, as written.
    tail: Vec<u8>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("next_seq", &self.next_seq)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

fn io_context(path: &Path, what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("ledger journal {}: {what}: {e}", path.display()))
}

impl Journal {
    /// Opens (creating it, zero-filled to [`WRAP`], when missing) and locks the journal at
    /// `path` for the database `database`, and returns it with the frames of its run, and where
    /// a journal of another database was moved. Writing starts at offset 0 in a new epoch: the
    /// caller must put the returned frames in the store, and flush it, before it writes.
    pub(crate) fn open(
        path: &Path,
        database: u32,
    ) -> std::io::Result<(Journal, Vec<Frame>, Option<PathBuf>)> {
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_context(path, "cannot open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "ledger journal {} is locked by another process: one phigate serve \
                         per database",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_context(path, "cannot lock", e));
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io_context(path, "cannot read", e))?;
        let (owner, frames) = parse_run(&bytes);
        if !frames.is_empty() && owner != database {
            // Never over an earlier one set aside for the same database.
            let name = |n: u32| {
                let mut aside = path.as_os_str().to_os_string();
                aside.push(format!(".{owner:08x}.other-database"));
                if n > 0 {
                    aside.push(format!(".{n}"));
                }
                PathBuf::from(aside)
            };
            let aside = (0..u32::MAX).map(name).find(|p| !p.exists()).unwrap_or_else(|| name(0));
            std::fs::rename(path, &aside).map_err(|e| io_context(path, "cannot set aside", e))?;
            drop(file);
            let (j, frames, _) = Journal::open(path, database)?;
            return Ok((j, frames, Some(aside)));
        }
        if (bytes.len() as u64) < WRAP {
            // Zeros up to WRAP, flushed, so that later flushes carry data only.
            let zeros = vec![0u8; (WRAP as usize) - bytes.len()];
            file.write_all_at(&zeros, bytes.len() as u64)
                .map_err(|e| io_context(path, "cannot fill", e))?;
            file.sync_all().map_err(|e| io_context(path, "cannot flush", e))?;
        }
        if created {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_context(path, "cannot flush its directory", e))?;
            }
        }
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            database,
            epoch: rand::random(),
            next_seq: 0,
            offset: 0,
            tail: Vec::with_capacity(PAGE as usize),
            buf: Vec::with_capacity(64 * 1024),
        };
        Ok((journal, frames, None))
    }

    /// The path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The `seq` the next frame gets (the number of frames written in this epoch).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the next write should start at offset 0 again (once the store holds everything
    /// written so far: see [`Journal::wrap`]).
    pub(crate) fn wants_wrap(&self) -> bool {
        self.offset >= WRAP
    }

    /// Starts writing at offset 0 again. Only when every frame written so far is in the store.
    pub(crate) fn wrap(&mut self) {
        self.offset = 0;
        self.tail.clear();
    }

    /// Empties the journal: zeros over the first frame's header, flushed, and writing starts at
    /// offset 0 again. Only when the store holds every frame written so far, durably (the next
    /// open then has nothing to read back).
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file
            .write_all_at(&[0u8; HEADER], 0)
            .map_err(|e| io_context(&self.path, "cannot write", e))?;
        self.file.sync_data().map_err(|e| io_context(&self.path, "cannot flush", e))?;
        self.offset = 0;
        self.tail.clear();
        Ok(())
    }

    /// Writes one frame per `(leaf hash, body)` and flushes them (`fdatasync`): durable when this
    /// returns `Ok`. After an error the journal must not be written again (a failed flush may
    /// have dropped pages the kernel then reports clean).
    pub(crate) fn write<'a>(
        &mut self,
        records: impl Iterator<Item = (&'a [u8; 32], &'a [u8])>,
    ) -> std::io::Result<()> {
        // From the start of the page (see the module's documentation).
        let start = self.offset - self.tail.len() as u64;
        self.buf.clear();
        self.buf.extend_from_slice(&self.tail);
        let mut seq = self.next_seq;
        for (hash, body) in records {
            if body.len() > MAX_BODY {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a record is larger than a journal frame may be",
                ));
            }
            self.buf.extend_from_slice(&MAGIC.to_le_bytes());
            self.buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(&self.database.to_le_bytes());
            self.buf.extend_from_slice(&self.epoch.to_le_bytes());
            self.buf.extend_from_slice(&seq.to_le_bytes());
            self.buf.extend_from_slice(hash);
            self.buf.extend_from_slice(body);
            seq += 1;
        }
        let end = start + self.buf.len() as u64;
        let kept = (end % PAGE) as usize;
        self.buf.resize((end.next_multiple_of(PAGE) - start) as usize, 0);
        self.file
            .write_all_at(&self.buf, start)
            .map_err(|e| io_context(&self.path, "cannot write", e))?;
        self.file.sync_data().map_err(|e| io_context(&self.path, "cannot flush", e))?;
        self.offset = end;
        self.tail.clear();
        let used = (end - start) as usize;
        self.tail.extend_from_slice(&self.buf[used - kept..used]);
        self.next_seq = seq;
        Ok(())
    }
}

/// The run of valid frames from offset 0 and the database they belong to (see the module's
/// documentation).
pub(crate) fn parse_run(bytes: &[u8]) -> (u32, Vec<Frame>) {
    let mut frames = Vec::new();
    let mut at = 0usize;
    let mut expect: Option<(u64, u64, u64)> = None;
    while bytes.len() - at >= HEADER {
        let h = &bytes[at..at + HEADER];
        let word = |r: std::ops::Range<usize>| -> u64 {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&h[r]);
            u64::from_le_bytes(b)
        };
        if word(0..4) != u64::from(MAGIC) {
            break;
        }
        let len = word(4..8) as usize;
        let (database, epoch, seq) = (word(8..12), word(12..20), word(20..28));
        if len > MAX_BODY || bytes.len() - at - HEADER < len {
            break;
        }
        if expect.is_some_and(|e| e != (database, epoch, seq)) {
            break;
        }
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&h[28..60]);
        let body = &bytes[at + HEADER..at + HEADER + len];
        if leaf_hash(body) != stored {
            break;
        }
        frames.push(Frame { leaf_hash: stored, body: body.to_vec() });
        expect = Some((database, epoch, seq.wrapping_add(1)));
        at += HEADER + len;
    }
    (expect.map_or(0, |e| e.0 as u32), frames)
}

/// The positions of the `frames` the store does not hold, given the leaf hashes of the store's
/// entries at or after the run's earliest time: each stored hash accounts for one frame, in
/// order.
pub(crate) fn missing(frames: &[Frame], stored: &[[u8; 32]]) -> Vec<usize> {
    let mut counts: HashMap<[u8; 32], usize> = HashMap::with_capacity(stored.len());
    for h in stored {
        *counts.entry(*h).or_default() += 1;
    }
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        match counts.get_mut(&f.leaf_hash) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(i),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u32) -> Vec<u8> {
        format!("record number {i}").into_bytes()
    }

    fn write(j: &mut Journal, range: std::ops::Range<u32>) {
        let bodies: Vec<Vec<u8>> = range.map(body).collect();
        let hashes: Vec<[u8; 32]> = bodies.iter().map(|b| leaf_hash(b)).collect();
        j.write(hashes.iter().zip(bodies.iter().map(Vec::as_slice))).unwrap();
    }

    fn bodies(frames: &[Frame]) -> Vec<Vec<u8>> {
        frames.iter().map(|f| f.body.clone()).collect()
    }

    #[test]
    fn frames_written_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, frames, _) = Journal::open(&path, 7).unwrap();
        assert!(frames.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), WRAP);
        write(&mut j, 0..3);
        write(&mut j, 3..5);
        drop(j);
        let (_j, frames, _) = Journal::open(&path, 7).unwrap();
        assert_eq!(bodies(&frames), (0..5).map(body).collect::<Vec<_>>());
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (_j, _, _) = Journal::open(&path, 7).unwrap();
        let e = Journal::open(&path, 7).unwrap_err();
        assert!(e.to_string().contains("locked by another process"), "{e}");
    }

    #[test]
    fn the_run_ends_at_a_torn_or_corrupt_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _, _) = Journal::open(&path, 7).unwrap();
        write(&mut j, 0..4);
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let third = 2 * (HEADER + body(0).len());
        // A flipped bit in the third record's body: the run is the first two.
        bytes[third + HEADER + 3] ^= 1;
        assert_eq!(bodies(&parse_run(&bytes).1), vec![body(0), body(1)]);
        // A frame cut short at the end of the file.
        let bytes = std::fs::read(&path).unwrap();
        let cut = &bytes[..third + HEADER + 2];
        assert_eq!(bodies(&parse_run(cut).1), vec![body(0), body(1)]);
    }

    #[test]
    fn after_a_wrap_older_frames_behind_the_new_ones_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _, _) = Journal::open(&path, 7).unwrap();
        write(&mut j, 0..10);
        j.wrap();
        write(&mut j, 100..102);
        drop(j);
        let (mut j, frames, _) = Journal::open(&path, 7).unwrap();
        assert_eq!(bodies(&frames), vec![body(100), body(101)]);
        // A new epoch overwrites from 0: the previous epoch's frames after it do not continue it.
        write(&mut j, 200..201);
        drop(j);
        let (_j, frames, _) = Journal::open(&path, 7).unwrap();
        assert_eq!(bodies(&frames), vec![body(200)]);
    }

    #[test]
    fn a_journal_of_another_database_is_set_aside_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _, _) = Journal::open(&path, 7).unwrap();
        write(&mut j, 0..3);
        drop(j);
        let (_j, frames, aside) = Journal::open(&path, 8).unwrap();
        assert!(frames.is_empty());
        let aside = aside.expect("set aside");
        assert!(aside.to_string_lossy().ends_with("j.00000007.other-database"), "{aside:?}");
        let (owner, kept) = parse_run(&std::fs::read(&aside).unwrap());
        assert_eq!((owner, bodies(&kept)), (7, (0..3).map(body).collect::<Vec<_>>()));
        // Database 7's journal again (its database made anew twice): the first one set aside
        // is kept, the second goes beside it.
        drop(_j);
        std::fs::remove_file(&path).unwrap();
        let (mut j, _, _) = Journal::open(&path, 7).unwrap();
        write(&mut j, 10..12);
        drop(j);
        let (_j, _, second) = Journal::open(&path, 9).unwrap();
        let second = second.expect("set aside");
        assert!(second.to_string_lossy().ends_with("j.00000007.other-database.1"), "{second:?}");
        assert_eq!(bodies(&parse_run(&std::fs::read(&aside).unwrap()).1).len(), 3);
        assert_eq!(
            bodies(&parse_run(&std::fs::read(&second).unwrap()).1),
            vec![body(10), body(11)]
        );
    }

    /// Bytes this thread has had read from the disk.
    fn read_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("read_bytes:")).unwrap();
        line["read_bytes:".len()..].trim().parse().unwrap()
    }

    /// On a tmpfs nothing is ever read back and this passes either way; the temp dir of this
    /// project's machines is on the disk.
    #[test]
    fn writes_cover_whole_pages_so_cold_pages_are_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _, _) = Journal::open(&path, 7).unwrap();
        let mut n = 0;
        let mut written = Vec::new();
        // Frames of about 60 bytes: every few writes the end crosses into a new page.
        for round in 0..40 {
            write(&mut j, n..n + 3);
            written.extend((n..n + 3).map(body));
            n += 3;
            // The journal's pages leave the page cache, as on a host that reclaims cold pages
            // (they are clean after the flush).
            let file = File::open(&path).unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            let before = read_bytes();
            write(&mut j, n..n + 1);
            written.push(body(n));
            n += 1;
            assert_eq!(read_bytes(), before, "round {round}: a write read a page back first");
        }
        drop(j);
        let (_j, frames, _) = Journal::open(&path, 7).unwrap();
        assert_eq!(bodies(&frames), written);
    }

    #[test]
    fn missing_counts_equal_records() {
        let frames: Vec<Frame> = [1, 2, 1, 3]
            .iter()
            .map(|&i| Frame { leaf_hash: leaf_hash(&body(i)), body: body(i) })
            .collect();
        // The store has record 1 once and record 2: the second 1 and the 3 are missing.
        let stored = [leaf_hash(&body(1)), leaf_hash(&body(2)), leaf_hash(&body(9))];
        assert_eq!(missing(&frames, &stored), vec![2, 3]);
    }
}
