//! Element types and the plain tensor type the crate hands out.

use crate::elem;

/// Element type of a tensor. Names follow PyTorch (`torch.float32` is [`DType::F32`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// All supported types.
    pub const ALL: [DType; 10] = [
        DType::F64,
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name without the `torch.` prefix: `"float32"`, `"bfloat16"`, `"bool"`...
    pub fn name(&self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Inverse of [`DType::name`]; also accepts PyTorch's aliases (`"float"`, `"half"`,
    /// `"long"`...).
    pub fn from_name(name: &str) -> Option<DType> {
        Some(match name {
            "float64" | "double" => DType::F64,
            "float32" | "float" => DType::F32,
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "int16" | "short" => DType::I16,
            "int8" => DType::I8,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }

    /// True for the floating-point types.
    pub fn is_float(&self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The legacy storage class PyTorch pickles for this type (`torch.FloatStorage`...).
    pub(crate) fn storage_class(&self) -> &'static str {
        match self {
            DType::F64 => "DoubleStorage",
            DType::F32 => "FloatStorage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::I64 => "LongStorage",
            DType::I32 => "IntStorage",
            DType::I16 => "ShortStorage",
            DType::I8 => "CharStorage",
            DType::U8 => "ByteStorage",
            DType::Bool => "BoolStorage",
        }
    }

    /// Inverse of [`DType::storage_class`].
    pub(crate) fn from_storage_class(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.storage_class() == name)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense tensor: contiguous, row-major, little-endian element bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// `numel() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (the product of `shape`, 1 for a scalar). Saturates instead of
    /// overflowing for nonsensical shapes.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// The byte length `shape` and `dtype` call for, or `None` if it overflows.
    pub fn expected_len(&self) -> Option<usize> {
        self.shape.iter().try_fold(self.dtype.size(), |n, &d| n.checked_mul(d))
    }

    /// Whether `data` has exactly the length `shape` and `dtype` call for.
    pub fn is_consistent(&self) -> bool {
        self.expected_len() == Some(self.data.len())
    }

    /// Builds an F32 tensor. Panics if `values.len()` does not match `shape` (a programming
    /// error, not a data error).
    pub fn from_f32(shape: &[usize], values: &[f32]) -> RawTensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape/values mismatch");
        RawTensor {
            dtype: DType::F32,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Builds a tensor of any type from `f64` values (rounded/truncated as `as` casts do; bool
    /// is `v != 0`). Panics if `values.len()` does not match `shape`.
    pub fn from_f64(dtype: DType, shape: &[usize], values: &[f64]) -> RawTensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape/values mismatch");
        let size = dtype.size();
        let mut data = vec![0u8; values.len() * size];
        for (chunk, &v) in data.chunks_exact_mut(size).zip(values) {
            elem::write_f64(dtype, v, chunk);
        }
        RawTensor { dtype, shape: shape.to_vec(), data }
    }

    /// All elements converted to `f64` (exact for every type except I64 beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data.chunks_exact(self.dtype.size()).map(|c| elem::read_f64(self.dtype, c)).collect()
    }

    /// All elements converted to `f32`.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.data.chunks_exact(self.dtype.size()).map(|c| elem::read_f64(self.dtype, c) as f32).collect()
    }
}
