//! Atomic file writes: the content goes to `<path>.tmp` first, which is flushed, synced and then
//! renamed over `<path>`. A reader therefore sees either the old file or the complete new one,
//! never a half-written file; a failed write leaves no `.tmp` behind.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `<path>.tmp`: the name appended to (not replacing) the extension.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `path` atomically with what `fill` writes into the (buffered) writer it is given.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let tmp = tmp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, "cannot create", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w).map_err(|e| Error::io(&tmp, "cannot write", e))?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, "cannot write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(&tmp, "cannot sync", e))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(path, "cannot rename the .tmp file to", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Creates `dir` (and its parents) if missing.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create folder", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_without_leaving_tmp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        assert_eq!(tmp_path(&p).file_name().unwrap(), "a.bin.tmp");
    }

    #[test]
    fn failed_fill_keeps_old_file_and_removes_tmp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("a.bin.tmp: cannot write: boom"),
            "{err}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/a.bin");
        let err = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(err.contains("a.bin.tmp: cannot create"), "{err}");
    }
}
