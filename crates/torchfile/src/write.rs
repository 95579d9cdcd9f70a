//! Writing state dicts: PyTorch's zip format (loadable with `torch.load(path,
//! weights_only=True)`) and safetensors. Files appear atomically (`atomicfile`): data goes to a
//! temporary beside `path`, is fsynced, then renamed over `path`.
//!
//! The pickle written is what `torch.save(OrderedDict)` writes with protocol 2:
//! ```text
//! collections.OrderedDict() then SETITEMS of
//!   'name' -> torch._utils._rebuild_tensor_v2(
//!                 persistent_id(('storage', torch.FloatStorage, '<i>', 'cpu', numel)),
//!                 0, (shape...), (strides...), False, collections.OrderedDict())
//! ```
//! Each tensor gets its own storage `archive/data/<i>`, aligned to 64 bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::dtype::{DType, RawTensor};
use crate::error::Error;
use crate::safetensors_io;
use crate::zip::ZipWriter;

const ARCHIVE: &str = "archive";
const ALIGNMENT: u64 = 64;

/// Writes `tensors` as a PyTorch zip checkpoint holding an `OrderedDict[str, Tensor]`.
pub fn save_pt(path: &Path, tensors: &[(String, RawTensor)]) -> Result<(), Error> {
    validate(path, tensors)?;
    let pickle = state_dict_pickle(tensors);
    write_atomic_with(path, |out| {
        let mut z = ZipWriter::new(out);
        z.add(&format!("{ARCHIVE}/data.pkl"), &pickle, ALIGNMENT)?;
        z.add(&format!("{ARCHIVE}/.format_version"), b"1", ALIGNMENT)?;
        z.add(&format!("{ARCHIVE}/.storage_alignment"), ALIGNMENT.to_string().as_bytes(), ALIGNMENT)?;
        z.add(&format!("{ARCHIVE}/byteorder"), b"little", ALIGNMENT)?;
        for (i, (_, t)) in tensors.iter().enumerate() {
            z.add(&format!("{ARCHIVE}/data/{i}"), &t.data, ALIGNMENT)?;
        }
        z.add(&format!("{ARCHIVE}/version"), b"3\n", ALIGNMENT)?;
        z.finish()?;
        Ok(())
    })
}

/// A zip checkpoint holding `pickle` and the given storage entries (for tests).
#[cfg(test)]
pub(crate) fn archive_bytes(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = ZipWriter::new(Vec::new());
    z.add(&format!("{ARCHIVE}/data.pkl"), pickle, ALIGNMENT).unwrap();
    z.add(&format!("{ARCHIVE}/byteorder"), b"little", ALIGNMENT).unwrap();
    for (key, data) in storages {
        z.add(&format!("{ARCHIVE}/data/{key}"), data, ALIGNMENT).unwrap();
    }
    z.add(&format!("{ARCHIVE}/version"), b"3\n", ALIGNMENT).unwrap();
    z.finish().unwrap()
}

/// Writes `tensors` as a safetensors file with `metadata` as its `__metadata__`. Note that the
/// format orders tensors by dtype alignment and name, not by the order given here.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, RawTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), Error> {
    validate(path, tensors)?;
    write_atomic_with(path, |out| safetensors_io::write(out, tensors, metadata))
}

/// Data length matches shape and dtype; names are unique.
fn validate(path: &Path, tensors: &[(String, RawTensor)]) -> Result<(), Error> {
    let mut seen = HashSet::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid_tensor(path, name, "the name occurs twice"));
        }
        match t.expected_len() {
            Some(n) if n == t.data.len() => {}
            Some(n) => {
                return Err(Error::invalid_tensor(
                    path,
                    name,
                    format!("shape {:?} of {} needs {n} bytes, data has {}", t.shape, t.dtype, t.data.len()),
                ))
            }
            None => return Err(Error::invalid_tensor(path, name, format!("shape {:?} overflows", t.shape))),
        }
    }
    Ok(())
}

/// Writes `path` atomically with what `fill` writes; any failure is an [`Error::Io`] on `path`.
fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    atomicfile::write_atomic_with(path, fill).map_err(|e| Error::io(path, e.source))
}

/// One state-dict entry as the pickle describes it. [`save_pt`] always writes contiguous tensors
/// with their own storage; tests use other values to build hostile files.
pub(crate) struct PickledTensor<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub storage_key: String,
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The pickle [`save_pt`] writes for `tensors`.
fn state_dict_pickle(tensors: &[(String, RawTensor)]) -> Vec<u8> {
    let entries: Vec<PickledTensor<'_>> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, t))| PickledTensor {
            name,
            dtype: t.dtype,
            storage_key: i.to_string(),
            storage_numel: t.numel() as u64,
            offset: 0,
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            stride: contiguous_strides(&t.shape).into_iter().map(|d| d as u64).collect(),
        })
        .collect();
    pickle_entries(&entries)
}

/// Emits the protocol-2 pickle of an `OrderedDict` of tensors.
pub(crate) fn pickle_entries(tensors: &[PickledTensor<'_>]) -> Vec<u8> {
    let mut p = PickleOut::default();
    p.out.extend_from_slice(&[0x80, 2]); // PROTO 2
    p.global("collections", "OrderedDict");
    p.out.push(b')'); // EMPTY_TUPLE
    p.out.push(b'R'); // REDUCE
    if !tensors.is_empty() {
        p.out.push(b'('); // MARK
        for t in tensors {
            p.string(t.name);
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.out.push(b'('); // MARK: arguments
            {
                p.out.push(b'('); // MARK: persistent id
                p.string("storage");
                p.global("torch", t.dtype.storage_class());
                p.string(&t.storage_key);
                p.string("cpu");
                p.int(t.storage_numel);
                p.out.push(b't'); // TUPLE
                p.out.push(b'Q'); // BINPERSID
            }
            p.int(t.offset);
            p.tuple_of_ints(&t.shape);
            p.tuple_of_ints(&t.stride);
            p.out.push(0x89); // NEWFALSE: requires_grad
            p.global("collections", "OrderedDict"); // backward hooks
            p.out.push(b')');
            p.out.push(b'R');
            p.out.push(b't'); // TUPLE
            p.out.push(b'R'); // REDUCE
        }
        p.out.push(b'u'); // SETITEMS
    }
    p.out.push(b'.'); // STOP
    p.out
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].saturating_mul(shape[d + 1].max(1));
    }
    strides
}

/// A tiny pickle emitter: globals are memoised so each is spelled out once.
#[derive(Default)]
struct PickleOut {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
}

impl PickleOut {
    fn global(&mut self, module: &str, name: &str) {
        let key = format!("{module}\n{name}\n");
        if let Some(&i) = self.memo.get(&key) {
            if i < 256 {
                self.out.extend_from_slice(&[b'h', i as u8]); // BINGET
            } else {
                self.out.push(b'j'); // LONG_BINGET
                self.out.extend_from_slice(&i.to_le_bytes());
            }
            return;
        }
        self.out.push(b'c'); // GLOBAL
        self.out.extend_from_slice(key.as_bytes());
        let i = self.memo.len() as u32;
        if i < 256 {
            self.out.extend_from_slice(&[b'q', i as u8]); // BINPUT
        } else {
            self.out.push(b'r'); // LONG_BINPUT
            self.out.extend_from_slice(&i.to_le_bytes());
        }
        self.memo.insert(key, i);
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X'); // BINUNICODE
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: u64) {
        if v < 0x100 {
            self.out.extend_from_slice(&[b'K', v as u8]); // BININT1
        } else if v < 0x1_0000 {
            self.out.push(b'M'); // BININT2
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < 0x8000_0000 {
            self.out.push(b'J'); // BININT
            self.out.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            // LONG1: minimal little-endian two's complement (a 0x00 byte keeps it positive).
            let mut bytes = v.to_le_bytes().to_vec();
            while bytes.len() > 1 && bytes[bytes.len() - 1] == 0 && bytes[bytes.len() - 2] & 0x80 == 0 {
                bytes.pop();
            }
            self.out.extend_from_slice(&[0x8a, bytes.len() as u8]);
            self.out.extend_from_slice(&bytes);
        }
    }

    fn tuple_of_ints(&mut self, v: &[u64]) {
        match v.len() {
            0 => self.out.push(b')'),
            1..=3 => {
                for &x in v {
                    self.int(x);
                }
                self.out.push(0x84 + v.len() as u8); // TUPLE1..3
            }
            _ => {
                self.out.push(b'(');
                for &x in v {
                    self.int(x);
                }
                self.out.push(b't');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::{unpickle, Value};

    #[test]
    fn emitted_ints_read_back() {
        for v in [0u64, 255, 256, 65535, 65536, 0x7fff_ffff, 0x8000_0000, 1 << 40, u64::MAX >> 1] {
            let mut p = PickleOut::default();
            p.int(v);
            p.out.push(b'.');
            assert_eq!(unpickle(&p.out, 0).unwrap().root, Value::Int(v as i64), "{v}");
        }
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        assert_eq!(contiguous_strides(&[5, 0, 2]), vec![2, 2, 1]);
    }

    #[test]
    fn many_globals_use_long_memo_indices() {
        let mut p = PickleOut::default();
        for i in 0..300 {
            p.global("torch", &format!("x{i}"));
        }
        p.global("torch", "x299");
        assert!(p.out.ends_with(&[b'j', 43, 1, 0, 0]));
    }
}
