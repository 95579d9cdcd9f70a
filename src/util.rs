//! Small shared helpers: atomic writes, run folders.
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (`atomicfile`: a uniquely named temporary in the same
/// folder, fsync, rename). A reader never sees a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomicfile::write_atomic(path, bytes).map_err(|e| Error::io(path, e.source))
}

/// Creates an output folder for a new run. An existing folder that already holds `marker` is refused
/// unless `resume` (continue it) or `force` (overwrite) is set: results are never silently overwritten.
pub fn prepare_out_dir(dir: &Path, marker: &str, resume: bool, force: bool) -> Result<()> {
    let m = dir.join(marker);
    if m.exists() && !resume && !force {
        return Err(Error::WouldOverwrite { path: m });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Writes `value` as pretty JSON plus a newline, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializable");
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_overwrite_a_finished_run() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.safetensors"), b"x").unwrap();
        let e = prepare_out_dir(d.path(), "model.safetensors", false, false).unwrap_err().to_string();
        assert!(e.contains("resume") && e.contains("model.safetensors"), "{e}");
        prepare_out_dir(d.path(), "model.safetensors", true, false).unwrap();
    }
}
