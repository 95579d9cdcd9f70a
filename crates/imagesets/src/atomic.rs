//! Atomic writes through the `atomicfile` crate, with its errors mapped into this crate's [`Error`]
//! (naming the temporary for create/write/sync failures, the target for a failed rename).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) use atomicfile::{rename_durable, tmp_path};

/// This crate's error for a failed atomic write.
fn mapped(e: atomicfile::Error) -> Error {
    Error::io(&e.path, e.step.action(), e.source)
}

/// Writes `path` atomically with what `fill` writes into the buffered temporary it is given.
pub(crate) fn write_atomic_with<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    atomicfile::write_atomic_with(path, fill).map_err(mapped)
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomicfile::write_atomic(path, bytes).map_err(mapped)
}

/// Creates `dir` (and its parents) if missing.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create folder", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn errors_name_the_temporary_and_the_step() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("a.bin.") && err.ends_with(".tmp: cannot write: boom"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let err = write_atomic(&d.path().join("no/such/dir/a.bin"), b"x").unwrap_err().to_string();
        assert!(err.contains("a.bin.") && err.contains(".tmp: cannot create: "), "{err}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
