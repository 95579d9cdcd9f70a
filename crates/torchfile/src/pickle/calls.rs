//! What REDUCE, NEWOBJ, INST/OBJ and BINPERSID do: emulations of the allow-listed globals
//! (src/globals.rs) that build values. Nothing here calls into Python or any other code.

use super::{Dict, Machine, Object, Value};
use crate::dtype::DType;
use crate::error::{unsupported, Fault};
use crate::globals::Global;
use crate::tensor::{StorageRef, TensorRef};

impl Machine<'_> {
    // ---- emulated calls ----

    /// Emulates calling an allow-listed global. Anything else on the stack is not callable.
    pub(super) fn call(&mut self, callee: Value, args: Vec<Value>) -> Result<Value, Fault> {
        let g = match self.heap.get(callee) {
            Some(Object::Global(g)) => *g,
            _ => return Err(self.err(format!("a {} is called, which is not callable", self.heap.type_name(callee)))),
        };
        match g {
            Global::Dict => {
                let d = self.heap.alloc(Object::Dict(Dict::default()))?;
                if let Some(&init) = args.first() {
                    let pairs = self.dict_init_items(init)?;
                    self.set_items(d, pairs)?;
                }
                Ok(d)
            }
            Global::List | Global::Tuple | Global::Set => {
                let items = match args.first() {
                    None => Vec::new(),
                    Some(&v) => match self.heap.get(v) {
                        Some(Object::List(l) | Object::Tuple(l) | Object::Set(l)) => l.clone(),
                        _ => return Err(self.err(format!("cannot build a sequence from a {}", self.heap.type_name(v)))),
                    },
                };
                self.heap.alloc(match g {
                    Global::List => Object::List(items),
                    Global::Tuple => Object::Tuple(items),
                    _ => Object::Set(items),
                })
            }
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                let expected: &[usize] = if g == Global::RebuildTensor { &[4] } else { &[6, 7] };
                self.check_arity("_rebuild_tensor_v2", &args, expected)?;
                self.rebuild_tensor(&args, None)
            }
            Global::RebuildTensorV3 => {
                self.check_arity("_rebuild_tensor_v3", &args, &[7, 8])?;
                let dtype = match self.heap.get(args[6]) {
                    Some(Object::Global(Global::TorchDType(d))) => *d,
                    _ => return Err(self.err("_rebuild_tensor_v3 needs a dtype as 7th argument")),
                };
                self.rebuild_tensor(&args, Some(dtype))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let n = if g == Global::RebuildParameter { 3 } else { 4 };
                self.check_arity("_rebuild_parameter", &args, &[n])?;
                match self.heap.get(args[0]) {
                    Some(Object::Tensor(_)) => Ok(args[0]),
                    _ => Err(self.err("_rebuild_parameter needs a tensor")),
                }
            }
            Global::RebuildFromTypeV2 => {
                self.check_arity("_rebuild_from_type_v2", &args, &[4])?;
                let func = match self.heap.get(args[0]) {
                    Some(Object::Global(f)) if f.is_tensor_rebuild() => args[0],
                    _ => return Err(self.err("_rebuild_from_type_v2 needs a tensor-rebuild function")),
                };
                if !matches!(self.heap.get(args[1]), Some(Object::Global(Global::TensorClass))) {
                    return Err(self.err("_rebuild_from_type_v2 needs torch.Tensor or torch.nn.Parameter"));
                }
                let inner = self.tuple_items(args[2], "_rebuild_from_type_v2 arguments")?;
                self.call(func, inner) // cannot recurse further: `func` is not RebuildFromTypeV2
            }
            Global::TorchDevice => {
                let kind = args.first().and_then(|&v| self.heap.as_str(v)).map(str::to_owned);
                let kind = kind.ok_or_else(|| self.err("torch.device needs a string"))?;
                let s = match args.get(1) {
                    Some(Value::Int(i)) => format!("{kind}:{i}"),
                    _ => kind,
                };
                self.heap.alloc(Object::Str(s))
            }
            Global::CodecsEncode => {
                let text = args.first().and_then(|&v| self.heap.as_str(v)).map(str::to_owned);
                let codec = args.get(1).and_then(|&v| self.heap.as_str(v));
                match (text, codec) {
                    (Some(t), Some("latin1" | "latin-1")) => {
                        let mut bytes = Vec::with_capacity(t.len());
                        for c in t.chars() {
                            let c = u8::try_from(c as u32).map_err(|_| self.err("latin1 text outside latin1"))?;
                            bytes.push(c);
                        }
                        self.heap.alloc(Object::Bytes(bytes))
                    }
                    _ => Err(self.err("_codecs.encode is only emulated for (str, 'latin1')")),
                }
            }
            Global::ScriptClass => self.heap.alloc(Object::Dict(Dict::default())),
            Global::ScriptIdentity => {
                args.first().copied().ok_or_else(|| self.err("a torch.jit._pickle builder called without argument"))
            }
            Global::StorageType(_) | Global::TorchDType(_) | Global::TensorClass => {
                Err(self.err("a torch type is called directly; only the rebuild functions are emulated"))
            }
        }
    }

    pub(super) fn check_arity(&self, func: &str, args: &[Value], expected: &[usize]) -> Result<(), Fault> {
        if expected.contains(&args.len()) {
            Ok(())
        } else {
            Err(self.err(format!("{func} called with {} arguments", args.len())))
        }
    }

    /// `dict(x)` for `x` a dict or a sequence of pairs: the flat key/value list.
    pub(super) fn dict_init_items(&self, init: Value) -> Result<Vec<Value>, Fault> {
        match self.heap.get(init) {
            Some(Object::Dict(d)) => Ok(d.entries.iter().flat_map(|&(k, v)| [k, v]).collect()),
            Some(Object::List(l) | Object::Tuple(l)) => {
                let mut out = Vec::with_capacity(l.len() * 2);
                for &pair in l {
                    match self.heap.get(pair) {
                        Some(Object::Tuple(p) | Object::List(p)) if p.len() == 2 => out.extend_from_slice(p),
                        _ => return Err(self.err("dict() item is not a pair")),
                    }
                }
                Ok(out)
            }
            _ => Err(self.err(format!("cannot build a dict from a {}", self.heap.type_name(init)))),
        }
    }

    pub(super) fn rebuild_tensor(&mut self, args: &[Value], dtype: Option<DType>) -> Result<Value, Fault> {
        let storage = match self.heap.get(args[0]) {
            Some(Object::Storage(s)) => s.clone(),
            _ => {
                return Err(
                    self.err(format!("a tensor is rebuilt from a {}, not a storage", self.heap.type_name(args[0])))
                )
            }
        };
        let offset = self.uint(args[1], "storage offset")?;
        let size = self.uint_seq(args[2], "tensor size")?;
        let stride = self.uint_seq(args[3], "tensor stride")?;
        if size.len() != stride.len() {
            return Err(self.err(format!("tensor size {size:?} and stride {stride:?} differ in length")));
        }
        let dtype = dtype.unwrap_or(storage.dtype);
        self.heap.alloc(Object::Tensor(TensorRef { storage, dtype, offset, size, stride }))
    }

    /// BINPERSID: `('storage', storage_type, key, location, numel[, view_metadata])`.
    pub(super) fn persistent_load(&mut self, pid: Value) -> Result<Value, Fault> {
        let items = match self.heap.get(pid) {
            Some(Object::Tuple(t)) => t.clone(),
            _ => {
                return Err(unsupported(format!(
                    "persistent id is a {}, not a ('storage', ...) tuple",
                    self.heap.type_name(pid)
                )))
            }
        };
        let typename = items.first().and_then(|&v| self.text(v)).unwrap_or_default();
        match typename.as_str() {
            "storage" => {}
            "module" => {
                return Err(unsupported(
                    "the file pickles a whole nn.Module (legacy 'module' record); save model.state_dict() instead",
                ))
            }
            other => return Err(self.err(format!("unknown persistent id type {other:?}"))),
        }
        if items.len() != 5 && items.len() != 6 {
            return Err(self.err(format!("storage persistent id has {} fields", items.len())));
        }
        let dtype = match self.heap.get(items[1]) {
            Some(Object::Global(Global::StorageType(d))) => *d,
            _ => return Err(self.err("storage persistent id has no storage type")),
        };
        let key = match items[2] {
            Value::Int(i) => i.to_string(),
            v => self.text(v).ok_or_else(|| self.err("storage key is not a string"))?,
        };
        let numel = self.uint(items[4], "storage size")?;
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(&v) => {
                let t = self.tuple_items(v, "storage view")?;
                if t.len() != 3 {
                    return Err(self.err("storage view metadata must have 3 fields"));
                }
                Some((self.uint(t[1], "view offset")?, self.uint(t[2], "view size")?))
            }
        };
        self.heap.alloc(Object::Storage(StorageRef { key, dtype, numel, view }))
    }

    /// A str, or ASCII bytes (pickles from Python 2 loaded with encoding='bytes').
    pub(super) fn text(&self, v: Value) -> Option<String> {
        match self.heap.get(v)? {
            Object::Str(s) => Some(s.clone()),
            Object::Bytes(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }
}
