//! Reading and writing `.safetensors` files with the `safetensors` crate.
//!
//! Layout: u64 little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`),
//! then the tensor bytes. The format has no code in it; the only hazard is arithmetic on
//! hostile offsets, so [`precheck`] bounds them before the crate sees the header.

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorInfo};

use crate::dtype::{DType, RawTensor};
use crate::error::{malformed, truncated, unsupported, Fault};

/// Tensors in file (offset) order and the `__metadata__` map.
pub(crate) struct Loaded {
    pub tensors: Vec<(String, RawTensor)>,
    pub metadata: BTreeMap<String, String>,
}

/// Whether `bytes` starts like a safetensors file: a header length that fits the file,
/// followed by `{`.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(len.try_into().unwrap_or_default());
    n >= 2 && n <= (bytes.len() as u64 - 8) && bytes.get(8) == Some(&b'{')
}

pub(crate) fn load(bytes: &[u8]) -> Result<Loaded, Fault> {
    precheck(bytes)?;
    let (n, meta) = SafeTensors::read_metadata(bytes).map_err(describe)?;
    let data = bytes.get(8 + n..).unwrap_or_default();

    let mut order: Vec<(String, &TensorInfo)> = meta.tensors().into_iter().collect();
    order.sort_by(|a, b| a.1.data_offsets.cmp(&b.1.data_offsets).then_with(|| a.0.cmp(&b.0)));

    let mut tensors = Vec::with_capacity(order.len());
    for (name, info) in order {
        let dtype = from_st(info.dtype)
            .ok_or_else(|| unsupported(format!("tensor `{name}` has safetensors dtype {:?}", info.dtype)))?;
        let (begin, end) = info.data_offsets;
        let bytes = data
            .get(begin..end)
            .ok_or_else(|| truncated(format!("safetensors tensor `{name}` lies outside the file")))?;
        tensors.push((name, RawTensor { dtype, shape: info.shape.clone(), data: bytes.to_vec() }));
    }
    let metadata =
        meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    Ok(Loaded { tensors, metadata })
}

/// The crate's errors in words.
fn describe(e: SafeTensorError) -> Fault {
    use SafeTensorError as E;
    match e {
        E::InvalidHeader => malformed("safetensors header is not valid UTF-8"),
        E::InvalidHeaderStart | E::InvalidHeaderDeserialization | E::JsonError(_) => {
            malformed("safetensors header is not a valid tensor table")
        }
        E::HeaderTooLarge => malformed("safetensors header is larger than 100 MB"),
        E::HeaderTooSmall | E::InvalidHeaderLength => truncated("safetensors header is cut short"),
        E::TensorInvalidInfo | E::InvalidTensorView(..) | E::ValidationOverflow => {
            malformed("a safetensors tensor's shape and dtype do not match its byte range")
        }
        E::InvalidOffset(name) => {
            malformed(format!("safetensors tensor `{name}` does not start where the previous one ends"))
        }
        E::MetadataIncompleteBuffer => {
            truncated("the safetensors data section does not match the tensor table (file cut short or padded)")
        }
        other => malformed(format!("safetensors: {other:?}")),
    }
}

/// Checks every `data_offsets` entry against the file length, so that the crate's own
/// arithmetic on them cannot overflow.
fn precheck(bytes: &[u8]) -> Result<(), Fault> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .ok_or_else(|| truncated("safetensors header length is cut short"))?;
    let header_end = 8u64.saturating_add(n);
    if header_end > bytes.len() as u64 {
        return Err(truncated(format!(
            "safetensors header needs {n} bytes, file has {}",
            bytes.len().saturating_sub(8)
        )));
    }
    let data_len = bytes.len() as u64 - header_end;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end as usize])
        .map_err(|e| malformed(format!("safetensors header is not valid JSON: {e}")))?;
    let obj = header.as_object().ok_or_else(|| malformed("safetensors header is not a JSON object"))?;
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets").and_then(|o| o.as_array());
        let ok = offsets.is_some_and(|o| o.len() == 2 && o.iter().all(|v| v.as_u64().is_some_and(|v| v <= data_len)));
        if !ok {
            return Err(truncated(format!(
                "safetensors tensor `{name}` has data offsets outside the {data_len} data bytes"
            )));
        }
    }
    Ok(())
}

fn from_st(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

fn to_st(d: DType) -> Dtype {
    match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// Serialises into `out` (the caller makes the file appear atomically). Tensors must already be
/// validated: lengths match shapes and names are unique.
///
/// Written here rather than by `safetensors::serialize_to_file`, whose `__metadata__` is a HashMap
/// (random key order): the same tensors must give the same bytes (reproducible runs are compared
/// bit for bit). Layout: u64 LE header size, JSON header (keys sorted, `__metadata__` included,
/// space-padded to a multiple of 8), then the tensors' bytes in name order.
pub(crate) fn write(
    out: &mut impl std::io::Write,
    tensors: &[(String, RawTensor)],
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut order: Vec<&(String, RawTensor)> = tensors.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    debug_assert!(order.windows(2).all(|w| w[0].0 != w[1].0), "duplicate names are refused before writing");
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialize"));
    }
    let mut offset = 0usize;
    for (name, t) in &order {
        let end = offset + t.data.len();
        header.insert(name.clone(), serde_json::json!({"dtype": format!("{:?}", to_st(t.dtype)), "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).expect("header serializes");
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    out.write_all(&(head.len() as u64).to_le_bytes())?;
    out.write_all(&head)?;
    for (_, t) in &order {
        out.write_all(&t.data)?;
    }
    Ok(())
}
