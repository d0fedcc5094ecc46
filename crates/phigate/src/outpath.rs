//! Refusing to write over an input. A command that opened its output first would truncate (or
//! replace) its own input before reading it, lose it and still exit 0: every output is checked
//! against every input before anything is created.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// What names one file. An existing regular file is its device and inode (so another spelling
/// of its path, a hard or a symbolic link, is the same file); a path that names nothing yet is
/// itself, with its directory resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileId {
    /// An existing file (on systems without inodes: its canonical path).
    Existing(Key),
    /// A file to be made.
    New(PathBuf),
}

#[cfg(unix)]
type Key = (u64, u64);
#[cfg(not(unix))]
type Key = PathBuf;

impl FileId {
    /// The file `path` names; None when that exists but is no regular file (a directory, or a
    /// device such as /dev/null or a FIFO: writing to one destroys nothing).
    pub fn of(path: &Path) -> Option<FileId> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Some(FileId::Existing(key(&m, path))),
            Ok(_) => None,
            Err(_) => Some(FileId::New(resolved(path))),
        }
    }

    /// The file behind standard input (`fd` 0) or output (1), when it is a regular file.
    #[cfg(unix)]
    fn of_std(stdout: bool) -> Option<FileId> {
        use std::os::fd::AsFd;
        let fd = if stdout {
            std::io::stdout().as_fd().try_clone_to_owned()
        } else {
            std::io::stdin().as_fd().try_clone_to_owned()
        };
        let m = std::fs::File::from(fd.ok()?).metadata().ok()?;
        m.is_file().then(|| FileId::Existing(key(&m, Path::new(""))))
    }

    #[cfg(not(unix))]
    fn of_std(_stdout: bool) -> Option<FileId> {
        None
    }
}

#[cfg(unix)]
fn key(m: &std::fs::Metadata, _path: &Path) -> Key {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn key(_m: &std::fs::Metadata, path: &Path) -> Key {
    resolved(path)
}

/// `path` made absolute, its longest part that exists resolved (canonical: links followed,
/// `.` and `..` gone) and the rest of it joined as it is.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(mut p) = at.canonicalize() {
            p.extend(rest.iter().rev());
            return p;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return abs,
        }
    }
}

/// The input files of a run (`-` is standard input), as files.
pub struct Inputs(Vec<(String, FileId)>);

impl Inputs {
    /// The inputs among `files` that are regular files.
    pub fn new(files: &[String]) -> Inputs {
        let ids = files.iter().filter_map(|f| {
            let id = if f == "-" { FileId::of_std(false) } else { FileId::of(Path::new(f)) };
            Some((crate::input::display_name(f), id?))
        });
        Inputs(ids.collect())
    }

    fn find(&self, out: &FileId) -> Option<&str> {
        self.0.iter().find(|(_, id)| id == out).map(|(name, _)| name.as_str())
    }

    /// Refuses `out` when it is one of the inputs.
    pub fn check(&self, out: &Path) -> anyhow::Result<()> {
        if let Some(name) = FileId::of(out).and_then(|id| self.find(&id)) {
            bail!(
                "refusing to write {}: it is the input {name} (the same file), which writing \
                 would destroy; nothing was written: give an output of another name",
                out.display()
            );
        }
        Ok(())
    }

    /// Refuses a standard output that is one of the inputs (`>> notes.jsonl`).
    pub fn check_stdout(&self) -> anyhow::Result<()> {
        if let Some(name) = FileId::of_std(true).and_then(|id| self.find(&id)) {
            bail!(
                "refusing to write to the standard output: it is the input {name} (the same \
                 file); redirect the output elsewhere"
            );
        }
        Ok(())
    }

    /// [`Inputs::check`] for each of `outs`, the output of `files` in the same order, and
    /// refuses two inputs that would be written to the same output.
    pub fn check_each(&self, files: &[String], outs: &[PathBuf]) -> anyhow::Result<()> {
        let mut seen: Vec<(FileId, &str)> = Vec::with_capacity(outs.len());
        for (f, out) in files.iter().zip(outs) {
            self.check(out)?;
            let Some(id) = FileId::of(out) else { continue };
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id) {
                bail!(
                    "refusing to write: the inputs {} and {} would both be written to {}; \
                     nothing was written: give them other names or other output directories",
                    crate::input::display_name(first),
                    crate::input::display_name(f),
                    out.display()
                );
            }
            seen.push((id, f));
        }
        Ok(())
    }
}

/// Refuses `out` when it is the SQLite file of `store` or one that SQLite or the ledger keeps
/// beside it (its WAL, shared memory, rollback journal, ledger journal).
pub fn check_not_store(out: &Path, store: &store::Store) -> anyhow::Result<()> {
    let Some(db) = store.sqlite_path() else { return Ok(()) };
    let Some(out_id) = FileId::of(out) else { return Ok(()) };
    let mut files = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        files.push(name.into());
    }
    files.extend(ledger::journal_path(store));
    if files.iter().any(|f| FileId::of(f).as_ref() == Some(&out_id)) {
        bail!(
            "refusing to write {}: it is the store {} (or a file of it), which writing would \
             destroy; nothing was written: give an output of another name",
            out.display(),
            db.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_links_of_one_file_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.jsonl");
        std::fs::write(&f, "x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let inputs = Inputs::new(&[f.to_string_lossy().into_owned()]);
        for other in [f.clone(), dir.path().join("./a.jsonl"), dir.path().join("sub/../a.jsonl")] {
            assert!(inputs.check(&other).is_err(), "{}", other.display());
        }
        assert!(inputs.check(&dir.path().join("b.jsonl")).is_ok());
        assert!(inputs.check(Path::new("/dev/null")).is_ok());
        // Two new files of one path are one; of two paths, two.
        let new = |n: &str| FileId::of(&dir.path().join(n));
        assert_eq!(new("out/n.txt"), FileId::of(&dir.path().join("sub/../out/n.txt")));
        assert_ne!(new("out/n.txt"), new("out/m.txt"));
    }
}
