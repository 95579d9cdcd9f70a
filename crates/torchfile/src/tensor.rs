//! From a pickled tensor description (storage, offset, size, stride) to a dense [`RawTensor`].
//!
//! The pickle only *describes* tensors; the bytes live elsewhere (zip entries, or the data
//! section after a legacy pickle). [`materialise`] performs the strided copy that
//! `Tensor.set_(storage, offset, size, stride).contiguous()` would, after proving that every
//! element it reads lies inside the storage.

use crate::dtype::{DType, RawTensor};
use crate::error::{limit, malformed, Fault};

/// Most dimensions accepted for one tensor (PyTorch's own limit is 64 in practice).
pub(crate) const MAX_DIMS: usize = 64;

/// The loaded tensors of one file may take at most `OUTPUT_FACTOR * file length + OUTPUT_SLACK`
/// bytes. Real checkpoints stay near 1x (views of one storage sum to at most its size; tied
/// weights double it); without a cap, broadcast (stride-0) views or one tensor stored under many
/// keys would let a small file ask for terabytes.
pub(crate) const OUTPUT_FACTOR: u128 = 8;
pub(crate) const OUTPUT_SLACK: u128 = 256 << 20;

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel[,
/// view_metadata])`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// Zip: the entry `data/<key>`; legacy: the key of a data section.
    pub key: String,
    /// The element type the persistent id declares for the storage.
    pub dtype: DType,
    /// Declared number of `dtype` elements.
    pub numel: u64,
    /// Legacy storage views: `(offset, numel)` in `dtype` elements within the storage `key`.
    pub view: Option<(u64, u64)>,
}

/// A tensor as the pickle describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    /// The tensor's element type (differs from the storage's only with `_rebuild_tensor_v3`).
    pub dtype: DType,
    /// In elements of `dtype`.
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// Tracks the [`OUTPUT_FACTOR`] limit across one file.
pub(crate) struct OutputBudget {
    total: u128,
    left: u128,
}

impl OutputBudget {
    pub(crate) fn for_input(input_len: usize) -> Self {
        let total = OUTPUT_FACTOR * input_len as u128 + OUTPUT_SLACK;
        OutputBudget { total, left: total }
    }
}

/// Copies tensor `name` out of `storage` (the bytes of `t.storage.key`, already cut to the
/// declared storage length).
pub(crate) fn materialise(
    name: &str,
    t: &TensorRef,
    storage: &[u8],
    budget: &mut OutputBudget,
) -> Result<RawTensor, Fault> {
    // Legacy storage views select a window of the root storage.
    let base: &[u8] = match t.storage.view {
        None => storage,
        Some((off, len)) => {
            let es = t.storage.dtype.size() as u128;
            let start = off as u128 * es;
            let end = start + len as u128 * es;
            if end > storage.len() as u128 {
                return Err(malformed(format!(
                    "tensor `{name}`: storage view [{off}, {off}+{len}) of storage '{}' lies outside it ({} bytes)",
                    t.storage.key,
                    storage.len()
                )));
            }
            storage.get(start as usize..end as usize).unwrap_or_default()
        }
    };
    let es = t.dtype.size();
    let storage_elems = (base.len() / es) as u128;

    let mut numel: u128 = 1;
    for &s in &t.size {
        numel = numel
            .checked_mul(s as u128)
            .filter(|&n| n <= u64::MAX as u128)
            .ok_or_else(|| limit(format!("tensor `{name}` has shape {:?}, which is too large", t.size)))?;
    }
    let shape: Vec<usize> = t
        .size
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<Result<_, _>>()
        .map_err(|_| limit(format!("tensor `{name}` has shape {:?}, which is too large", t.size)))?;
    if numel == 0 {
        return Ok(RawTensor { dtype: t.dtype, shape, data: Vec::new() });
    }

    // The element with the largest index; all indices are offset + sum(i_d * stride_d) >= offset.
    let mut last: u128 = t.offset as u128;
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        last = last
            .checked_add((s as u128 - 1) * st as u128)
            .ok_or_else(|| malformed(format!("tensor `{name}`: stride {:?} overflows", t.stride)))?;
    }
    if last >= storage_elems {
        return Err(malformed(format!(
            "tensor `{name}` (shape {:?}, stride {:?}, offset {}) reads element {last} of storage '{}', which has only {storage_elems} {} elements",
            t.size, t.stride, t.offset, t.storage.key, t.dtype
        )));
    }

    let out_bytes = numel * es as u128;
    if out_bytes > budget.left {
        return Err(limit(format!(
            "tensor `{name}` (shape {:?}, stride {:?}, from a {}-byte storage) would bring the loaded tensors \
             past {} bytes ({OUTPUT_FACTOR}x the file plus {} MiB); the file repeats or broadcasts storages",
            t.size,
            t.stride,
            base.len(),
            budget.total,
            OUTPUT_SLACK >> 20
        )));
    }
    budget.left -= out_bytes;
    // Both fit in usize now: last < storage_elems and out_bytes <= the budget.
    let offset = t.offset as usize;
    let stride: Vec<usize> = t.stride.iter().map(|&s| s as usize).collect();
    let mut out = Vec::with_capacity(out_bytes as usize);
    copy_strided(base, es, offset, &shape, &stride, &mut out)
        .ok_or_else(|| malformed(format!("tensor `{name}` reads outside its storage")))?;
    Ok(RawTensor { dtype: t.dtype, shape, data: out })
}

/// Whether a (size, stride) pair describes row-major contiguous memory.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&s, &st) in shape.iter().zip(stride).rev() {
        if s != 1 && st != expected {
            return false;
        }
        expected = expected.saturating_mul(s);
    }
    true
}

/// Appends the elements of the strided view to `out`. Returns `None` on an out-of-range read,
/// which [`materialise`] has already ruled out.
fn copy_strided(
    base: &[u8],
    es: usize,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
    out: &mut Vec<u8>,
) -> Option<()> {
    let numel: usize = shape.iter().product();
    if is_contiguous(shape, stride) {
        out.extend_from_slice(base.get(offset * es..(offset + numel) * es)?);
        return Some(());
    }
    let ndim = shape.len(); // >= 1 here: a scalar is always contiguous
    let (inner, inner_stride) = (shape[ndim - 1], stride[ndim - 1]);
    let mut index = vec![0usize; ndim - 1];
    loop {
        let start = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(base.get(start * es..(start + inner) * es)?);
        } else {
            for i in 0..inner {
                let p = (start + i * inner_stride) * es;
                out.extend_from_slice(base.get(p..p + es)?);
            }
        }
        // Advance the odometer over the outer dimensions.
        let mut d = ndim - 1;
        loop {
            if d == 0 {
                return Some(());
            }
            d -= 1;
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage_f32(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    fn tref(n: u64, offset: u64, size: &[u64], stride: &[u64]) -> TensorRef {
        TensorRef {
            storage: StorageRef { key: "0".into(), dtype: DType::F32, numel: n, view: None },
            dtype: DType::F32,
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn run(t: &TensorRef, storage: &[u8]) -> Result<RawTensor, Fault> {
        materialise("t", t, storage, &mut OutputBudget::for_input(storage.len()))
    }

    #[test]
    fn transpose_and_views() {
        let s = storage_f32(12);
        // 3x4 row-major, transposed to 4x3.
        let t = run(&tref(12, 0, &[4, 3], &[1, 4]), &s).unwrap();
        assert_eq!(t.to_f64_vec(), vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        // Rows 1..3 of the 3x4 matrix.
        let t = run(&tref(12, 4, &[2, 4], &[4, 1]), &s).unwrap();
        assert_eq!(t.to_f64_vec(), (4..12).map(|i| i as f64).collect::<Vec<_>>());
        // Every other column.
        let t = run(&tref(12, 0, &[3, 2], &[4, 2]), &s).unwrap();
        assert_eq!(t.to_f64_vec(), vec![0., 2., 4., 6., 8., 10.]);
        // Scalar with offset.
        let t = run(&tref(12, 7, &[], &[]), &s).unwrap();
        assert_eq!((t.shape.len(), t.to_f64_vec()), (0, vec![7.]));
        // Broadcast (stride 0).
        let t = run(&tref(12, 1, &[2, 3], &[0, 1]), &s).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1., 2., 3., 1., 2., 3.]);
        // Empty tensors need no storage at all.
        let t = run(&tref(0, 99, &[0, 1 << 40], &[1, 1]), &[]).unwrap();
        assert!(t.data.is_empty());
    }

    #[test]
    fn stride_out_of_bounds_is_an_error() {
        let s = storage_f32(12);
        let e = run(&tref(12, 0, &[4, 4], &[4, 1]), &s).unwrap_err();
        assert!(matches!(&e, Fault::Malformed(m) if m.contains("reads element 15")), "{e:?}");
        let e = run(&tref(12, 12, &[], &[]), &s).unwrap_err();
        assert!(matches!(e, Fault::Malformed(_)));
        let e = run(&tref(12, u64::MAX, &[2], &[u64::MAX]), &s).unwrap_err();
        assert!(matches!(e, Fault::Malformed(_)));
    }

    #[test]
    fn huge_shapes_do_not_allocate() {
        let s = storage_f32(12);
        let e = run(&tref(12, 0, &[1 << 40, 1 << 40], &[0, 0]), &s).unwrap_err();
        assert!(matches!(e, Fault::Limit(_)), "{e:?}");
        let e = run(&tref(12, 0, &[u64::MAX, u64::MAX], &[0, 0]), &s).unwrap_err();
        assert!(matches!(e, Fault::Limit(_)), "{e:?}");
        let e = run(&tref(12, 0, &[1 << 30], &[0]), &s).unwrap_err(); // 4 GiB broadcast
        assert!(matches!(e, Fault::Limit(_)), "{e:?}");
    }
}
