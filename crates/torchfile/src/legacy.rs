//! PyTorch's legacy checkpoint format (`torch.save(..., _use_new_zipfile_serialization=False)`,
//! the default before torch 1.6).
//!
//! ```text
//! pickle: magic number 0x1950a86a20f9469cfc6c
//! pickle: protocol version 1001
//! pickle: sys_info {'protocol_version': 1001, 'little_endian': True, 'type_sizes': {...}}
//! pickle: the object; storages are persistent ids
//!         ('storage', torch.FloatStorage, '<key>', 'cpu', numel, view_metadata)
//! pickle: list of storage keys, in the order their data follows
//! for each key: int64 little-endian element count, then count * element_size raw bytes
//! ```
//! The element size of each storage comes from the storage type in the object pickle.

use std::collections::HashMap;

use crate::checkpoint::{self, Extracted, Storages};
use crate::dtype::DType;
use crate::error::{malformed, truncated, unsupported, Fault};
use crate::pickle::{self, Object, Value};
use crate::tensor::StorageRef;

/// `0x1950a86a20f9469cfc6c` as LONG1 stores it (little-endian).
pub(crate) const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Whether `bytes` starts like a legacy checkpoint: a pickle PROTO opcode and the magic number
/// within its first few bytes.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x80)
        && bytes.get(..32.min(bytes.len())).is_some_and(|head| head.windows(MAGIC.len()).any(|w| w == MAGIC))
}

/// Reads a legacy checkpoint.
pub(crate) fn load(bytes: &[u8]) -> Result<Extracted, Fault> {
    let magic = pickle::unpickle(bytes, 0)?;
    if !matches!(magic.heap.get(magic.root), Some(Object::BigInt(b)) if b[..] == MAGIC) {
        return Err(malformed("legacy checkpoint has a wrong magic number"));
    }
    let version = pickle::unpickle(bytes, magic.end)?;
    if version.root != Value::Int(PROTOCOL_VERSION) {
        return Err(unsupported(format!("legacy checkpoint protocol {:?} (expected 1001)", version.root)));
    }
    let sys_info = pickle::unpickle(bytes, version.end)?;
    if let Some(d) = sys_info.heap.as_dict(sys_info.root) {
        if d.get_str("little_endian") == Some(Value::Bool(false)) {
            return Err(unsupported("the checkpoint was written on a big-endian machine"));
        }
    }
    let main = pickle::unpickle(bytes, sys_info.end)?;
    let keys = pickle::unpickle(bytes, main.end)?;
    let key_list: Vec<&str> = match keys.heap.get(keys.root) {
        Some(Object::List(items)) => items
            .iter()
            .map(|&v| keys.heap.as_str(v))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed("legacy storage key list holds a non-string"))?,
        _ => return Err(malformed("legacy checkpoint has no storage key list")),
    };

    // Element type of each root storage, from the persistent ids.
    let mut dtypes: HashMap<&str, DType> = HashMap::new();
    for s in main.heap.storages() {
        dtypes.entry(s.key.as_str()).or_insert(s.dtype);
    }

    // The data sections, in key-list order.
    let mut sections: HashMap<String, &[u8]> = HashMap::with_capacity(key_list.len().min(bytes.len()));
    let mut pos = keys.end;
    for key in key_list {
        let dtype = *dtypes
            .get(key)
            .ok_or_else(|| malformed(format!("storage '{key}' has data but no tensor refers to it")))?;
        let header = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| truncated(format!("storage '{key}': the file ends before its size")))?;
        let numel = u64::from_le_bytes(header.try_into().unwrap_or_default());
        pos += 8;
        let need = numel as u128 * dtype.size() as u128;
        let have = bytes.len() - pos;
        if need > have as u128 {
            return Err(truncated(format!("storage '{key}' needs {need} bytes, file has {have}")));
        }
        sections.insert(key.to_owned(), &bytes[pos..pos + need as usize]);
        pos += need as usize;
    }

    let sel = checkpoint::select(&main.heap, main.root)?;
    checkpoint::materialise_all(sel, &LegacyStorages { sections }, bytes.len())
}

struct LegacyStorages<'a> {
    sections: HashMap<String, &'a [u8]>,
}

impl Storages for LegacyStorages<'_> {
    fn bytes(&self, r: &StorageRef) -> Result<&[u8], Fault> {
        self.sections.get(&r.key).copied().ok_or_else(|| truncated(format!("storage '{}' has no data section", r.key)))
    }
}
