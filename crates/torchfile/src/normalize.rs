//! Naming conventions that wrap a plain state dict, undone so callers see parameter names.
//!
//! - `torch.nn.DataParallel` saves every key with a `module.` prefix; it is stripped when *all*
//!   tensor keys carry it.
//! - `torch.nn.utils.prune` replaces parameter `X` by `X_orig` and a buffer `X_mask`, computing
//!   `X = X_orig * X_mask` on the fly. Here `X` is computed the same way and the mask is returned
//!   separately, keyed by `X`.

use std::collections::{HashMap, HashSet};

use crate::dtype::{DType, RawTensor};
use crate::elem;
use crate::error::{state_dict, Fault};

const DATA_PARALLEL_PREFIX: &str = "module.";
const ORIG_SUFFIX: &str = "_orig";
const MASK_SUFFIX: &str = "_mask";

/// Tensors and pruning masks after normalisation.
pub(crate) struct Normalised {
    pub tensors: Vec<(String, RawTensor)>,
    pub masks: Vec<(String, RawTensor)>,
}

/// Applies both conventions, keeping file order (a pruned `X` takes the place of `X_orig`).
pub(crate) fn normalise(mut tensors: Vec<(String, RawTensor)>) -> Result<Normalised, Fault> {
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with(DATA_PARALLEL_PREFIX)) {
        for (k, _) in tensors.iter_mut() {
            k.drain(..DATA_PARALLEL_PREFIX.len());
        }
    }

    let index: HashMap<&str, usize> = tensors.iter().enumerate().map(|(i, (k, _))| (k.as_str(), i)).collect();
    // For each `X_orig`: the index of `X_mask`.
    let mut mask_of: HashMap<usize, usize> = HashMap::new();
    for (i, (k, _)) in tensors.iter().enumerate() {
        let Some(base) = k.strip_suffix(ORIG_SUFFIX) else {
            continue;
        };
        let mask_name = format!("{base}{MASK_SUFFIX}");
        let Some(&m) = index.get(mask_name.as_str()) else {
            return Err(state_dict(format!(
                "`{k}` has no matching `{mask_name}` (incomplete torch.nn.utils.prune reparametrisation)"
            )));
        };
        if index.contains_key(base) {
            return Err(state_dict(format!("both `{base}` and the pruned `{k}` are present")));
        }
        mask_of.insert(i, m);
    }
    if mask_of.is_empty() {
        return Ok(Normalised { tensors, masks: Vec::new() });
    }

    let consumed: HashSet<usize> = mask_of.values().copied().collect();
    let mut slots: Vec<Option<(String, RawTensor)>> = tensors.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    let mut masks = Vec::with_capacity(mask_of.len());
    for i in 0..slots.len() {
        if consumed.contains(&i) && !mask_of.contains_key(&i) {
            continue; // a mask, emitted next to its parameter
        }
        let Some((name, t)) = slots[i].take() else {
            continue;
        };
        match mask_of.get(&i) {
            None => out.push((name, t)),
            Some(&m) => {
                let base = name[..name.len() - ORIG_SUFFIX.len()].to_owned();
                let Some((_, mask)) = slots[m].take() else {
                    continue;
                };
                let pruned = apply_mask(&base, &t, &mask)?;
                out.push((base.clone(), pruned));
                masks.push((base, mask));
            }
        }
    }
    Ok(Normalised { tensors: out, masks })
}

/// `orig * mask` elementwise, in `orig`'s dtype (16-bit floats computed in f32 and rounded,
/// as PyTorch does).
fn apply_mask(name: &str, orig: &RawTensor, mask: &RawTensor) -> Result<RawTensor, Fault> {
    if orig.shape != mask.shape {
        return Err(state_dict(format!(
            "pruning mask of `{name}` has shape {:?}, the parameter {:?}",
            mask.shape, orig.shape
        )));
    }
    let (os, ms) = (orig.dtype.size(), mask.dtype.size());
    let mut data = vec![0u8; orig.data.len()];
    for ((out, o), m) in data.chunks_exact_mut(os).zip(orig.data.chunks_exact(os)).zip(mask.data.chunks_exact(ms)) {
        match orig.dtype {
            DType::F64 | DType::F32 | DType::F16 | DType::BF16 => {
                let v = elem::read_f64(orig.dtype, o) * elem::read_f64(mask.dtype, m);
                elem::write_f64(orig.dtype, v, out)
            }
            _ => {
                let v = elem::read_i64(orig.dtype, o).wrapping_mul(elem::read_i64(mask.dtype, m));
                elem::write_i64(orig.dtype, v, out)
            }
        }
    }
    Ok(RawTensor { dtype: orig.dtype, shape: orig.shape.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> RawTensor {
        RawTensor::from_f32(&[v.len()], v)
    }

    fn names(v: &[(String, RawTensor)]) -> Vec<&str> {
        v.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn strips_data_parallel_prefix_only_when_universal() {
        let n = normalise(vec![("module.a".into(), t(&[1.])), ("module.b".into(), t(&[2.]))]).unwrap();
        assert_eq!(names(&n.tensors), ["a", "b"]);
        let n = normalise(vec![("module.a".into(), t(&[1.])), ("b".into(), t(&[2.]))]).unwrap();
        assert_eq!(names(&n.tensors), ["module.a", "b"]);
    }

    #[test]
    fn folds_pruning_masks() {
        let n = normalise(vec![
            ("module.fc.bias".into(), t(&[0.5])),
            ("module.fc.weight_orig".into(), t(&[1., -2., 3.])),
            ("module.fc.weight_mask".into(), t(&[1., 0., 1.])),
            ("module.attn_mask".into(), t(&[1.])),
        ])
        .unwrap();
        assert_eq!(names(&n.tensors), ["fc.bias", "fc.weight", "attn_mask"]);
        assert_eq!(n.tensors[1].1.to_f64_vec(), vec![1., 0., 3.]);
        assert_eq!(names(&n.masks), ["fc.weight"]);
        assert_eq!(n.masks[0].1.to_f64_vec(), vec![1., 0., 1.]);
    }

    #[test]
    fn masks_apply_in_every_dtype() {
        for dtype in DType::ALL {
            let orig = RawTensor::from_f64(dtype, &[3], &[1., 1., 0.]);
            let mask = RawTensor::from_f64(DType::Bool, &[3], &[0., 1., 1.]);
            let n = normalise(vec![("w_orig".into(), orig), ("w_mask".into(), mask)]).unwrap();
            assert_eq!(n.tensors[0].1.dtype, dtype);
            assert_eq!(n.tensors[0].1.to_f64_vec(), vec![0., 1., 0.], "{dtype}");
        }
    }

    #[test]
    fn orphan_orig_is_an_error() {
        let e = normalise(vec![("fc.weight_orig".into(), t(&[1.]))]).err().unwrap();
        assert!(matches!(&e, Fault::StateDict(m) if m.contains("fc.weight_mask")), "{e:?}");
        let e = normalise(vec![("w_orig".into(), t(&[1., 2.])), ("w_mask".into(), t(&[1.]))]).err().unwrap();
        assert!(matches!(e, Fault::StateDict(_)));
    }
}
