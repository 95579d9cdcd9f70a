//! PyTorch's zip checkpoint format (`torch.save` since 1.6).
//!
//! ```text
//! <prefix>/data.pkl            the pickled object; storages appear as persistent ids
//!                              ('storage', torch.FloatStorage, '<key>', 'cpu', numel)
//! <prefix>/data/<key>          raw little-endian bytes of each storage
//! <prefix>/byteorder           "little" (absent in files from old versions)
//! <prefix>/version, .format_version, .storage_alignment, .data/serialization_id
//! ```
//! `<prefix>` is any single directory name (torch uses the file's stem, or `archive`).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::checkpoint::{self, Extracted, Storages};
use crate::error::{malformed, truncated, unsupported, Fault};
use crate::pickle;
use crate::tensor::StorageRef;
use crate::zip::Archive;

/// Reads a zip checkpoint.
pub(crate) fn load(bytes: &[u8]) -> Result<Extracted, Fault> {
    let ar = Archive::parse(bytes)?;
    let prefix = find_prefix(&ar)?;

    if ar.entries().iter().any(|e| e.name.starts_with(&format!("{prefix}code/"))) {
        return Err(unsupported(
            "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint \
             (quarantine's --model reads it as a TorchScript model)",
        ));
    }
    if let Some(e) = ar.find(&format!("{prefix}byteorder")) {
        let order = ar.read(e)?;
        if order.trim_ascii() != b"little" {
            return Err(unsupported(format!(
                "storages are in {} byte order; only little-endian is supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }

    let pkl_entry = ar.find(&format!("{prefix}data.pkl")).ok_or_else(|| malformed("zip archive has no data.pkl"))?;
    let pkl = ar.read(pkl_entry)?;
    let up = pickle::unpickle(&pkl, 0)?;
    let sel = checkpoint::select(&up.heap, up.root)?;

    // Read each storage entry the state dict needs once (stored entries are borrowed).
    let mut entries: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for (_, t) in &sel.tensors {
        let key = &t.storage.key;
        if entries.contains_key(key) {
            continue;
        }
        let name = format!("{prefix}data/{key}");
        let e = ar
            .find(&name)
            .ok_or_else(|| truncated(format!("storage '{key}' is missing (no `{name}` in the archive)")))?;
        entries.insert(key.clone(), ar.read(e)?);
    }
    checkpoint::materialise_all(sel, &ZipStorages { entries }, bytes.len())
}

/// The directory holding `data.pkl`.
fn find_prefix(ar: &Archive<'_>) -> Result<String, Fault> {
    let mut found = ar.entries().iter().filter_map(|e| {
        let p = e.name.strip_suffix("data.pkl")?;
        (p.is_empty() || (p.ends_with('/') && p.matches('/').count() == 1)).then(|| p.to_owned())
    });
    let first = found
        .next()
        .ok_or_else(|| malformed("zip archive has no `<name>/data.pkl`, so it is not a torch.save checkpoint"))?;
    if found.next().is_some() {
        return Err(malformed("zip archive holds more than one data.pkl"));
    }
    Ok(first)
}

struct ZipStorages<'a> {
    entries: HashMap<String, Cow<'a, [u8]>>,
}

impl Storages for ZipStorages<'_> {
    fn bytes(&self, r: &StorageRef) -> Result<&[u8], Fault> {
        let data = self.entries.get(&r.key).ok_or_else(|| truncated(format!("storage '{}' is missing", r.key)))?;
        let need = (r.numel as u128) * r.dtype.size() as u128;
        if need > data.len() as u128 {
            return Err(truncated(format!("storage '{}' needs {need} bytes, file has {}", r.key, data.len())));
        }
        Ok(&data[..need as usize])
    }
}
