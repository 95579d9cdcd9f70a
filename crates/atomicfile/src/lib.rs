//! Atomic file writes, with no dependency beyond `std`.
//!
//! [`write_atomic`] and [`write_atomic_with`] write the content into a temporary file in the same
//! folder ([`tmp_path`]: `<name>.<pid>-<n>.tmp`, unique per process and call, so concurrent writers
//! never share one), flush and fsync it, rename it over the target and fsync the folder
//! ([`rename_durable`]). A reader therefore sees either the old file or the complete new one, never
//! a half-written file, and an interrupted program leaves the last complete version in place. A
//! failed write removes its temporary.
//!
//! Errors are an [`Error`]: the [`Step`] that failed, the file it concerned and the OS error, so
//! that each caller can map it into its own error type.

#![warn(missing_docs)]

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Size of the write buffer handed to [`write_atomic_with`]'s `fill`.
const BUFFER: usize = 1 << 20;

/// The step of an atomic write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the temporary file.
    Create,
    /// Writing (or flushing) the content into the temporary file.
    Write,
    /// Syncing the temporary file to disk.
    Sync,
    /// Renaming the temporary over the target.
    Rename,
}

impl Step {
    /// What was being done, as a phrase that reads before a colon and the OS error:
    /// "cannot create", "cannot write", "cannot sync", "cannot rename the temporary file to".
    pub fn action(self) -> &'static str {
        match self {
            Step::Create => "cannot create",
            Step::Write => "cannot write",
            Step::Sync => "cannot sync",
            Step::Rename => "cannot rename the temporary file to",
        }
    }
}

/// A failed atomic write.
#[derive(Debug)]
pub struct Error {
    /// The step that failed.
    pub step: Step,
    /// The file concerned: the temporary for [`Step::Create`], [`Step::Write`] and [`Step::Sync`],
    /// the target for [`Step::Rename`].
    pub path: PathBuf,
    /// The operating system's error (or the one `fill` returned).
    pub source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path.display(), self.step.action(), self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A fresh temporary name beside `path`: `<name>.<pid>-<n>.tmp` in the same folder, where `<n>`
/// counts the calls in this process. A path without a final name (`/`, `..`) gets the suffix
/// appended to the whole path.
pub fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let suffix = format!(".{}-{n}.tmp", std::process::id());
    match path.file_name() {
        Some(name) => {
            let mut name: OsString = name.to_owned();
            name.push(suffix);
            path.with_file_name(name)
        }
        None => {
            let mut whole: OsString = path.as_os_str().to_owned();
            whole.push(suffix);
            PathBuf::from(whole)
        }
    }
}

/// Renames `from` over `to` (a file or a folder), then fsyncs `to`'s folder so that the rename
/// itself survives a crash. The folder sync is best effort: where a folder cannot be opened or
/// synced (some platforms and file systems), the rename alone is done.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `path` atomically with what `fill` writes into the buffered temporary file it is given.
/// On any error (including one `fill` returns, reported as [`Step::Write`]) the temporary is removed
/// and `path` is untouched.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> Result<(), Error>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = tmp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(at(Step::Create, &tmp))?;
        let mut w = BufWriter::with_capacity(BUFFER, file);
        fill(&mut w).map_err(at(Step::Write, &tmp))?;
        let file = w.into_inner().map_err(|e| at(Step::Write, &tmp)(e.into_error()))?;
        file.sync_all().map_err(at(Step::Sync, &tmp))?;
        drop(file);
        rename_durable(&tmp, path).map_err(at(Step::Rename, path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The [`Error`] for `step` on `path`, as a `map_err` argument.
fn at(step: Step, path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error { step, path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty folder under the system's temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("atomicfile-test-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writes_and_replaces_without_leaving_a_temporary() {
        let d = TempDir::new("replace");
        let p = d.0.join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(d.names(), vec!["a.bin"]);
    }

    #[test]
    fn temporary_names_are_unique_and_beside_the_target() {
        let p = Path::new("some/dir/a.json");
        let (a, b) = (tmp_path(p), tmp_path(p));
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.parent(), p.parent());
            let name = t.file_name().unwrap().to_str().unwrap();
            let middle = name.strip_prefix("a.json.").and_then(|s| s.strip_suffix(".tmp")).unwrap();
            let (pid, n) = middle.split_once('-').unwrap();
            assert_eq!(pid, std::process::id().to_string());
            assert!(n.parse::<u64>().is_ok(), "{name}");
        }
        // a trailing slash names the folder itself, not a file inside it
        let t = tmp_path(Path::new("out/"));
        assert!(t.parent() == Some(Path::new("")) && t.to_str().unwrap().starts_with("out."), "{t:?}");
    }

    #[test]
    fn failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let d = TempDir::new("fill");
        let p = d.0.join("a.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert_eq!(err.step, Step::Write);
        let msg = err.to_string();
        assert!(msg.contains("a.bin.") && msg.ends_with(".tmp: cannot write: boom"), "{msg}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(d.names(), vec!["a.bin"]);
    }

    #[test]
    fn a_missing_folder_fails_at_create_naming_the_temporary() {
        let d = TempDir::new("missing");
        let p = d.0.join("no/such/dir/a.bin");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(err.step, Step::Create);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.path.starts_with(d.0.join("no/such/dir")), "{err}");
        assert!(err.to_string().contains(": cannot create: "), "{err}");
    }

    #[test]
    fn a_rename_over_a_folder_fails_at_rename_naming_the_target() {
        let d = TempDir::new("rename");
        let p = d.0.join("taken");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"x").unwrap();
        let err = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert_eq!(err.path, p);
        assert_eq!(d.names(), vec!["taken"]);
    }

    #[test]
    fn rename_durable_moves_folders_too() {
        let d = TempDir::new("dir");
        let from = d.0.join("staging");
        std::fs::create_dir(&from).unwrap();
        std::fs::write(from.join("f"), b"x").unwrap();
        rename_durable(&from, &d.0.join("final")).unwrap();
        assert_eq!(std::fs::read(d.0.join("final/f")).unwrap(), b"x");
        assert_eq!(d.names(), vec!["final"]);
    }

    #[test]
    fn concurrent_writers_of_one_file_never_mix_their_contents() {
        let d = TempDir::new("race");
        let p = d.0.join("shared.bin");
        std::thread::scope(|s| {
            for t in 0u8..8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(p, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]));
        assert_eq!(d.names(), vec!["shared.bin"]);
    }
}
