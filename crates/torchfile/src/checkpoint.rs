//! Finding the state dict inside an unpickled checkpoint and materialising its tensors.
//!
//! `torch.save` accepts any object; in practice a checkpoint is either a state dict or a dict
//! that holds one next to training metadata (`{"epoch": 7, "state_dict": {...}, "optimizer":
//! {...}}`). [`select`] picks the state dict; [`materialise_all`] copies its tensors out of the
//! storages a format module provides.

use crate::dtype::RawTensor;
use crate::error::{state_dict, Fault};
use crate::pickle::{Dict, Heap, Value};
use crate::tensor::{materialise, OutputBudget, StorageRef, TensorRef};

/// Keys under which training scripts commonly nest the state dict, in order of preference.
pub(crate) const NESTED_KEYS: [&str; 5] = ["state_dict", "model", "model_state_dict", "net", "state_dict_ema"];

/// The tensors of the chosen state dict (still descriptions) and the keys that were skipped.
pub(crate) struct Selection<'h> {
    pub tensors: Vec<(String, &'h TensorRef)>,
    pub ignored: Vec<String>,
}

/// Tensors copied out, with the keys that were skipped.
pub(crate) struct Extracted {
    pub tensors: Vec<(String, RawTensor)>,
    pub ignored: Vec<String>,
}

/// Where a format keeps storage bytes.
pub(crate) trait Storages {
    /// The bytes of storage `r.key`, exactly as long as the format says the storage is.
    fn bytes(&self, r: &StorageRef) -> Result<&[u8], Fault>;
}

fn has_tensor(heap: &Heap, d: &Dict) -> bool {
    d.entries.iter().any(|&(_, v)| heap.as_tensor(v).is_some())
}

/// Picks the state dict: the first of [`NESTED_KEYS`] whose value is a dict holding tensors,
/// else the top-level dict itself.
pub(crate) fn select(heap: &Heap, root: Value) -> Result<Selection<'_>, Fault> {
    let top = heap.as_dict(root).ok_or_else(|| {
        state_dict(format!("the checkpoint holds a {} at top level, not a dict of tensors", heap.type_name(root)))
    })?;
    let nested = NESTED_KEYS.iter().find_map(|&k| {
        let d = heap.as_dict(top.get_str(k)?)?;
        has_tensor(heap, d).then_some((k, d))
    });
    let mut ignored = Vec::new();
    let sd = match nested {
        Some((chosen, d)) => {
            for &(k, _) in &top.entries {
                if heap.as_str(k) != Some(chosen) {
                    ignored.push(heap.key_repr(k));
                }
            }
            d
        }
        None => top,
    };
    let mut tensors = Vec::new();
    for &(k, v) in &sd.entries {
        match (heap.as_str(k), heap.as_tensor(v)) {
            (Some(name), Some(t)) => tensors.push((name.to_owned(), t)),
            _ => ignored.push(heap.key_repr(k)),
        }
    }
    Ok(Selection { tensors, ignored })
}

/// Copies every selected tensor out of `storages`; `input_len` (the file size) bounds the total.
pub(crate) fn materialise_all(
    sel: Selection<'_>,
    storages: &dyn Storages,
    input_len: usize,
) -> Result<Extracted, Fault> {
    let mut budget = OutputBudget::for_input(input_len);
    let mut tensors = Vec::with_capacity(sel.tensors.len());
    for (name, t) in sel.tensors {
        let bytes = storages.bytes(&t.storage)?;
        let raw = materialise(&name, t, bytes, &mut budget)?;
        tensors.push((name, raw));
    }
    Ok(Extracted { tensors, ignored: sel.ignored })
}
