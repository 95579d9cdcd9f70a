//! Read PyTorch checkpoints without executing them; write state dicts PyTorch can load.
//!
//! # What it reads
//! - the zip format `torch.save` writes since PyTorch 1.6 (src/zipfmt.rs),
//! - the legacy format (`_use_new_zipfile_serialization=False`, PyTorch < 1.6) (src/legacy.rs),
//! - safetensors (src/safetensors_io.rs).
//!
//! The format is recognised from the content (zip signature, legacy pickle magic number,
//! safetensors header), never from the file extension. The result is a [`StateDict`]: named
//! dense tensors, after undoing the common wrappers (a state dict nested under `"state_dict"`
//! and similar keys, DataParallel's `module.` prefix, `torch.nn.utils.prune`'s
//! `weight_orig`/`weight_mask` pairs; see src/checkpoint.rs and src/normalize.rs).
//!
//! # Why loading an untrusted checkpoint is safe here
//! A `.pt` file is a Python pickle, and unpickling with Python *runs code*: the pickle names any
//! importable callable (`os.system`, `builtins.eval`...) and calls it with arguments from the
//! file. This crate has its own pickle VM (src/pickle/) that cannot do that:
//! - **allow-list, not block-list**: a name in the pickle resolves only if it is one of the
//!   ~40 PyTorch/collections names in src/globals.rs; any other name stops loading with
//!   [`Error::ForbiddenGlobal`], which quotes it;
//! - **no code execution**: allow-listed names map to Rust enum variants whose "call" is an
//!   emulation that only builds values (dicts, lists, tuples, strings, numbers, tensor
//!   descriptions). Nothing is imported, evaluated or called;
//! - **bounded resources**: lengths from the file are checked against its real size before
//!   allocating; stack, memo and object counts are capped; objects refer to each other by index
//!   in an arena, so nothing recurses over the (possibly deep or cyclic) object graph; every
//!   tensor's strided reads are proven to stay inside its storage, and the total size of the
//!   loaded tensors is capped at 8x the file size plus 256 MiB (so broadcast or repeated views of
//!   one storage cannot blow it up). Malformed input yields an [`Error`], never a panic.
//!
//! # What it writes
//! [`save_pt`] writes the zip layout of `torch.save(OrderedDict)` (protocol-2 pickle,
//! 64-byte-aligned storages), which `torch.load(path, weights_only=True)` accepts;
//! [`save_safetensors`] writes safetensors. Both write a temporary beside the target, fsync it,
//! then rename it into place (crate `atomicfile`).

use std::collections::BTreeMap;
use std::path::Path;

mod checkpoint;
mod dtype;
mod elem;
mod error;
mod globals;
mod legacy;
mod normalize;
mod pickle;
mod safetensors_io;
pub mod script;
mod tensor;
mod write;
mod zip;
mod zipfmt;

#[cfg(test)]
mod malformed_tests;

pub use dtype::{DType, RawTensor};
pub use error::Error;
pub use write::{save_pt, save_safetensors};

use error::Fault;

/// Which container a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (PyTorch >= 1.6).
    Zip,
    /// `torch.save` legacy pickle stream (PyTorch < 1.6 or `_use_new_zipfile_serialization=False`).
    Legacy,
    /// `.safetensors`.
    Safetensors,
}

/// The tensors of a checkpoint, normalised (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct StateDict {
    /// In file order, with final names.
    pub tensors: Vec<(String, RawTensor)>,
    /// Pruning masks keyed by the parameter they mask (e.g. `"conv1.weight"`), as stored.
    pub masks: Vec<(String, RawTensor)>,
    /// The file format it was read from.
    pub format: Format,
    /// Keys of entries that were skipped because they are not tensors: top-level keys next to a
    /// nested state dict (`"epoch"`, `"optimizer"`...) and non-tensor values inside it.
    pub ignored: Vec<String>,
    /// safetensors `__metadata__` (empty for PyTorch formats).
    pub metadata: BTreeMap<String, String>,
}

impl StateDict {
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(k, _)| k == name).map(|(_, t)| t)
    }

    /// The pruning mask of parameter `name`, if it was pruned.
    pub fn mask(&self, name: &str) -> Option<&RawTensor> {
        self.masks.iter().find(|(k, _)| k == name).map(|(_, t)| t)
    }
}

/// Reads a checkpoint file. See [`load_bytes`].
pub fn load(path: &Path) -> Result<StateDict, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_bytes(&bytes, path)
}

/// Reads a checkpoint from memory; `name_for_errors` is only used in error messages.
pub fn load_bytes(bytes: &[u8], name_for_errors: &Path) -> Result<StateDict, Error> {
    load_inner(bytes).map_err(|f| f.at(name_for_errors))
}

/// Recognises the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else if legacy::sniff(bytes) {
        Some(Format::Legacy)
    } else if safetensors_io::sniff(bytes) {
        Some(Format::Safetensors)
    } else {
        None
    }
}

fn load_inner(bytes: &[u8]) -> Result<StateDict, Fault> {
    let format = match sniff(bytes) {
        Some(f) => f,
        None if bytes.get(257..262) == Some(b"ustar") => {
            return Err(error::unsupported("this is a tar checkpoint from PyTorch < 0.4, which is not supported"))
        }
        None => return Err(Fault::NotACheckpoint),
    };
    let (tensors, ignored, metadata) = match format {
        Format::Zip => {
            let ex = zipfmt::load(bytes)?;
            (ex.tensors, ex.ignored, BTreeMap::new())
        }
        Format::Legacy => {
            let ex = legacy::load(bytes)?;
            (ex.tensors, ex.ignored, BTreeMap::new())
        }
        Format::Safetensors => {
            let st = safetensors_io::load(bytes)?;
            (st.tensors, Vec::new(), st.metadata)
        }
    };
    let n = normalize::normalise(tensors)?;
    Ok(StateDict { tensors: n.tensors, masks: n.masks, format, ignored, metadata })
}
