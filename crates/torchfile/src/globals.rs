//! The allow-list of Python globals a checkpoint pickle may name.
//!
//! A pickle's GLOBAL/STACK_GLOBAL opcodes name a `module.attribute`; Python's `pickle` imports it
//! and REDUCE then *calls* it with arguments from the file, which is how a malicious checkpoint
//! runs `os.system(...)`. This crate never imports or calls anything: [`resolve`] maps a name to
//! one of the [`Global`] variants below, each of which the VM (src/pickle/) *emulates* by
//! building a plain value. Every other name is refused with [`Fault::Forbidden`], or with
//! [`Fault::Unsupported`] for PyTorch names that are harmless but not implemented here.

use crate::dtype::DType;
use crate::error::{unsupported, Fault};

/// A global the VM knows how to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`, `builtins.dict`: builds a dict.
    Dict,
    /// `builtins.list`.
    List,
    /// `builtins.tuple`, `torch.Size`: builds a tuple.
    Tuple,
    /// `builtins.set`, `builtins.frozenset`.
    Set,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`.
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])`.
    RebuildTensorV3,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`: returns `data`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state)`.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`: applies `func` (which
    /// must itself be a rebuild function here) to `args`.
    RebuildFromTypeV2,
    /// `torch.FloatStorage` etc. (and `torch.UntypedStorage` as bytes): a marker in persistent ids.
    StorageType(DType),
    /// `torch.float32` etc.: a value (used by `_rebuild_tensor_v3`).
    TorchDType(DType),
    /// `torch.Tensor`, `torch.nn.parameter.Parameter`: a marker for `_rebuild_from_type_v2`.
    TensorClass,
    /// `torch.device(str[, index])`: builds the string `"type[:index]"`.
    TorchDevice,
    /// `_codecs.encode(str, "latin1")`: how protocol-2 pickles write `bytes`; builds bytes.
    CodecsEncode,
    /// A TorchScript archive's own class `__torch__.*` (only in [`resolve_script`]): creating one
    /// builds an empty dict; its state (BUILD) is dropped.
    ScriptClass,
    /// `torch.jit._pickle.build_intlist` and its siblings, `restore_type_tag` (only in
    /// [`resolve_script`]): return their first argument.
    ScriptIdentity,
}

impl Global {
    /// True for the functions that produce a tensor.
    pub(crate) fn is_tensor_rebuild(self) -> bool {
        matches!(
            self,
            Global::RebuildTensor
                | Global::RebuildTensorV2
                | Global::RebuildTensorV3
                | Global::RebuildParameter
                | Global::RebuildParameterWithState
        )
    }
}

/// Torch dtypes that exist but that [`DType`] does not cover.
const UNSUPPORTED_DTYPES: &[&str] = &[
    "uint16",
    "uint32",
    "uint64",
    "complex32",
    "complex64",
    "complex128",
    "cfloat",
    "cdouble",
    "chalf",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
];

/// Torch storage classes that exist but that [`DType`] does not cover.
const UNSUPPORTED_STORAGES: &[&str] = &[
    "ComplexFloatStorage",
    "ComplexDoubleStorage",
    "QInt8Storage",
    "QUInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
];

/// Torch rebuild functions for tensor kinds this crate does not read.
const UNSUPPORTED_REBUILDS: &[(&str, &str)] = &[
    ("_rebuild_qtensor", "quantized tensors"),
    ("_rebuild_sparse_tensor", "sparse tensors"),
    ("_rebuild_sparse_csr", "sparse tensors"),
    ("_rebuild_nested_tensor", "nested tensors"),
    ("_rebuild_device_tensor_from_numpy", "tensors stored as NumPy arrays"),
    ("_rebuild_device_tensor_from_cpu_tensor", "device tensors"),
    ("_rebuild_meta_tensor_no_storage", "meta tensors without data"),
    ("_rebuild_wrapper_subclass", "tensor subclasses"),
    ("_rebuild_xla_tensor", "XLA tensors"),
    ("_rebuild_mtia_tensor", "MTIA tensors"),
];

/// Maps `module.name` from a GLOBAL opcode to what the VM may do with it.
pub(crate) fn resolve(module: &str, name: &str) -> Result<Global, Fault> {
    // Python 2 module names that Python 3's unpickler maps (fix_imports).
    let module = match module {
        "__builtin__" => "builtins",
        m => m,
    };
    let global = match (module, name) {
        ("collections", "OrderedDict") | ("builtins", "dict") => Global::Dict,
        ("builtins", "list") => Global::List,
        ("builtins", "tuple") | ("torch", "Size") => Global::Tuple,
        ("builtins", "set") | ("builtins", "frozenset") => Global::Set,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorClass,
        ("torch", "device") => Global::TorchDevice,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => Global::StorageType(DType::U8),
        ("torch" | "torch.cuda", n) if DType::from_storage_class(n).is_some() => {
            Global::StorageType(DType::from_storage_class(n).unwrap_or(DType::U8))
        }
        ("torch" | "torch.cuda", n) if UNSUPPORTED_STORAGES.contains(&n) => {
            return Err(unsupported(format!(
                "storage type `{module}.{name}` (complex or quantized tensors) is not supported"
            )))
        }
        ("torch", n) if DType::from_name(n).is_some() => Global::TorchDType(DType::from_name(n).unwrap_or(DType::U8)),
        ("torch", n) if UNSUPPORTED_DTYPES.contains(&n) => {
            return Err(unsupported(format!("tensors of dtype `torch.{n}` are not supported")))
        }
        ("torch._utils", n) if UNSUPPORTED_REBUILDS.iter().any(|(f, _)| *f == n) => {
            let what = UNSUPPORTED_REBUILDS.iter().find(|(f, _)| *f == n).map_or("these tensors", |(_, w)| w);
            return Err(unsupported(format!(
                "the checkpoint contains {what} (`torch._utils.{n}`), which this reader does not handle"
            )));
        }
        _ => return Err(Fault::Forbidden { global: format!("{module}.{name}"), hint: hint(module).to_owned() }),
    };
    Ok(global)
}

/// TorchScript's pickle helpers that return their first argument.
const SCRIPT_IDENTITIES: &[&str] = &[
    "build_intlist",
    "build_doublelist",
    "build_boollist",
    "build_tensorlist",
    "build_genericlist",
    "build_tensor_from_id",
    "restore_type_tag",
];

/// [`resolve`] for the pickles inside a TorchScript archive (`data.pkl`, `constants.pkl`): also the
/// archive's own classes, `__torch__.<qualified name>` (their code is in the archive's `code/`,
/// vetted separately), and TorchScript's typed-list builders. Nothing outside `__torch__` and
/// `torch.jit._pickle` is added.
pub(crate) fn resolve_script(module: &str, name: &str) -> Result<Global, Fault> {
    if (module == "__torch__" || module.starts_with("__torch__.")) && is_identifier(name) {
        return Ok(Global::ScriptClass);
    }
    if module == "torch.jit._pickle" && SCRIPT_IDENTITIES.contains(&name) {
        return Ok(Global::ScriptIdentity);
    }
    resolve(module, name)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A short explanation for globals that are common in *benign* checkpoints.
fn hint(module: &str) -> &'static str {
    let top = module.split('.').next().unwrap_or(module);
    match top {
        "__torch__" => {
            "; this looks like a TorchScript archive (torch.jit.save): export model.state_dict() with torch.save instead"
        }
        "numpy" => "; the checkpoint stores NumPy values next to the weights: re-save only model.state_dict()",
        "argparse" => {
            "; the checkpoint stores training arguments next to the weights: re-save only model.state_dict()"
        }
        "torch" | "torchvision" | "timm" if module.contains(".models") || module.contains(".nn.modules") => {
            "; a whole model object was pickled: save model.state_dict() instead"
        }
        "__main__" => "; an object of a class from the training script (often a whole model) was pickled: save model.state_dict() instead",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_resolve() {
        assert_eq!(resolve("torch", "FloatStorage").unwrap(), Global::StorageType(DType::F32));
        assert_eq!(resolve("torch", "BFloat16Storage").unwrap(), Global::StorageType(DType::BF16));
        assert_eq!(resolve("torch", "bfloat16").unwrap(), Global::TorchDType(DType::BF16));
        assert_eq!(resolve("__builtin__", "set").unwrap(), Global::Set);
        assert_eq!(resolve("collections", "OrderedDict").unwrap(), Global::Dict);
    }

    #[test]
    fn dangerous_names_are_forbidden() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("builtins", "exec"),
            ("builtins", "getattr"),
            ("subprocess", "Popen"),
            ("torch", "load"),
            ("torch._utils", "_import_dotted_name"),
            ("torch.serialization", "load"),
        ] {
            match resolve(m, n) {
                Err(Fault::Forbidden { global, .. }) => assert_eq!(global, format!("{m}.{n}")),
                other => panic!("{m}.{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn script_pickles_add_only_archive_classes_and_list_builders() {
        assert_eq!(resolve_script("__torch__.torchvision.models.resnet", "ResNet").unwrap(), Global::ScriptClass);
        assert_eq!(resolve_script("torch.jit._pickle", "build_intlist").unwrap(), Global::ScriptIdentity);
        assert_eq!(resolve_script("torch._utils", "_rebuild_tensor_v2").unwrap(), Global::RebuildTensorV2);
        for (m, n) in [("os", "system"), ("torch.jit._pickle", "eval"), ("__torch__x", "A"), ("__torch__", "a.b")] {
            assert!(matches!(resolve_script(m, n), Err(Fault::Forbidden { .. })), "{m}.{n}");
        }
        assert!(matches!(resolve("__torch__", "Net"), Err(Fault::Forbidden { .. })));
    }

    #[test]
    fn benign_but_unsupported_names_say_so() {
        assert!(matches!(resolve("torch", "complex64"), Err(Fault::Unsupported(_))));
        assert!(matches!(resolve("torch._utils", "_rebuild_qtensor"), Err(Fault::Unsupported(_))));
        match resolve("numpy.core.multiarray", "scalar") {
            Err(Fault::Forbidden { hint, .. }) => assert!(hint.contains("NumPy")),
            other => panic!("{other:?}"),
        }
    }
}
