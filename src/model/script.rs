//! Foreign architectures: a TorchScript archive (`torch.jit.save` of a scripted or traced module)
//! as the network (docs/METHOD.md §3, README "Any architecture").
//!
//! The archive is vetted first (`torchfile::script::vet`: op allow-list over its code, safe reading
//! of its pickles), then loaded by libtorch, then its compiled graphs are checked against the same
//! allow-list (csrc/script_shim.cpp lists every node of every compiled function) before anything
//! runs. The module's parameters and buffers (found by the shim; tch 0.26 lists parameters only)
//! are registered in the model's `VarStore` under their dotted PyTorch names, sharing storage with
//! the module, so that everything written against the store (masks, interpolation, state dicts,
//! optimizers, BN recalibration) acts on the module. The forward pass is the module's own, in its
//! train or eval mode; [`Mode::Frozen`] is its eval mode with parameter gradients off.
//!
//! Measured cost against the built-in ResNet-20s with the same weights: BENCHMARKS.md.
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tch::{nn, Tensor};
use torch_sys::C_tensor;
use torchfile::script::ScriptArchive;

use super::arch::ArchSpec;
use super::layers::Mode;
use super::{ModelMeta, Net};
use crate::error::{Error, Result};

/// Where a TorchScript network comes from: the archive and what it was vetted with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScriptSource {
    /// The archive, as an absolute path.
    pub path: PathBuf,
    /// SHA-256 of the archive's bytes when it was first loaded (checked on every later load).
    pub sha256: String,
    /// Ops allowed on top of the allow-list (`--allow-op`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ops: Vec<String>,
}

impl ScriptSource {
    /// The source for the archive at `path` (made absolute, hashed).
    pub fn new(path: &Path, allow_ops: &[String]) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        Ok(ScriptSource { path, sha256: sha256_hex(&bytes), allow_ops: allow_ops.to_vec() })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

type TensorCb = extern "C" fn(*mut c_void, *const c_char, *mut C_tensor);
type OpCb = extern "C" fn(*mut c_void, *const c_char, *const c_char);

extern "C" {
    fn qt_free_str(s: *mut c_char);
    fn qt_load(path: *const c_char, out: *mut *mut c_void) -> *mut c_char;
    fn qt_free(m: *mut c_void);
    fn qt_named_buffers(m: *mut c_void, data: *mut c_void, f: TensorCb) -> *mut c_char;
    fn qt_named_parameters(m: *mut c_void, data: *mut c_void, f: TensorCb) -> *mut c_char;
    fn qt_graph_ops(m: *mut c_void, data: *mut c_void, f: OpCb) -> *mut c_char;
    fn qt_set_train(m: *mut c_void, on: i32) -> *mut c_char;
    fn qt_forward(m: *mut c_void, x: *mut C_tensor, out: *mut *mut C_tensor) -> *mut c_char;
    fn qt_save(m: *mut c_void, path: *const c_char) -> *mut c_char;
}

/// The shim's error string, if any, as an owned `String` (the C string freed).
fn check(err: *mut c_char) -> std::result::Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns NULL or a malloc'd NUL-terminated string, freed exactly once here.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { qt_free_str(err) };
    Err(msg)
}

extern "C" fn push_tensor(data: *mut c_void, name: *const c_char, t: *mut C_tensor) {
    // SAFETY: `data` is the `&mut Vec` passed below; `name` a NUL-terminated string valid for the
    // call; `t` a new heap tensor handle whose ownership passes to `Tensor`.
    let v = unsafe { &mut *(data as *mut Vec<(String, Tensor)>) };
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    v.push((name, unsafe { Tensor::from_ptr(t) }));
}

extern "C" fn push_op(data: *mut c_void, func: *const c_char, op: *const c_char) {
    // SAFETY: as in `push_tensor`.
    let v = unsafe { &mut *(data as *mut Vec<(String, String)>) };
    let func = unsafe { CStr::from_ptr(func) }.to_string_lossy().into_owned();
    let op = unsafe { CStr::from_ptr(op) }.to_string_lossy().into_owned();
    v.push((func, op));
}

/// A loaded TorchScript module (a `torch::jit::Module` owned through the shim).
struct ScriptModule {
    ptr: *mut c_void,
}

// SAFETY: the module is only used through `&mut`/a mutex (see `ScriptNet`); libtorch modules may move
// between threads.
unsafe impl Send for ScriptModule {}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from qt_load and is freed once.
        unsafe { qt_free(self.ptr) }
    }
}

impl ScriptModule {
    /// Vets the archive (`bytes`, read from `path`: op allow-list, safe pickles), loads it, and checks
    /// its compiled graphs; returns the module with what the vetting read.
    fn load(path: &Path, bytes: &[u8], allow_ops: &[String]) -> Result<(ScriptModule, ScriptArchive)> {
        let archive = torchfile::script::vet_bytes(bytes, path, allow_ops)?;
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::bad_file(path, "the path contains a NUL byte"))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `c` is a valid C string; on success `ptr` receives a module we own.
        check(unsafe { qt_load(c.as_ptr(), &mut ptr) })
            .map_err(|e| Error::bad_file(path, format!("libtorch cannot load this TorchScript archive: {e}")))?;
        let m = ScriptModule { ptr };
        for (func, op) in m.graph_ops().map_err(|e| Error::bad_file(path, e))? {
            if !torchfile::script::op_allowed(&op, allow_ops) && !STRUCTURAL.contains(&op.as_str()) {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "refusing to run this TorchScript model: its compiled code uses `{op}` (in {func}), which is not \
                         on the allow-list of tensor ops; {}",
                        torchfile::script::remedy(&op)
                    ),
                ));
            }
        }
        Ok((m, archive))
    }

    fn tensors(
        &self,
        f: unsafe extern "C" fn(*mut c_void, *mut c_void, TensorCb) -> *mut c_char,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut v: Vec<(String, Tensor)> = vec![];
        // SAFETY: the callback receives `&mut v` back, for the duration of the call.
        check(unsafe { f(self.ptr, &mut v as *mut _ as *mut c_void, push_tensor) })
            .map_err(|e| Error::invalid("TorchScript module", e))?;
        Ok(v)
    }

    fn graph_ops(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let mut v: Vec<(String, String)> = vec![];
        // SAFETY: as in `tensors`.
        check(unsafe { qt_graph_ops(self.ptr, &mut v as *mut _ as *mut c_void, push_op) })?;
        Ok(v)
    }

    fn set_train(&mut self, on: bool) -> std::result::Result<(), String> {
        // SAFETY: `ptr` is a live module.
        check(unsafe { qt_set_train(self.ptr, on as i32) })
    }

    fn forward(&self, x: &Tensor) -> std::result::Result<Tensor, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: `x` outlives the call; on success `out` is a new tensor handle we own.
        check(unsafe { qt_forward(self.ptr, x.as_ptr() as *mut C_tensor, &mut out) })?;
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    fn save(&self, path: &Path) -> std::result::Result<(), String> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| "path contains NUL".to_string())?;
        // SAFETY: `c` is a valid C string.
        check(unsafe { qt_save(self.ptr, c.as_ptr()) })
    }
}

/// Node kinds of compiled graphs that are TorchScript's own structure (constants, attribute access,
/// calls of the module's own methods and functions, control flow, containers), allowed on top of
/// the op list (which holds what tools/script_ops.py saw in real classifiers).
const STRUCTURAL: &[&str] = &[
    "prim::Constant",
    "prim::GetAttr",
    "prim::SetAttr",
    "prim::CallMethod",
    "prim::CallFunction",
    "prim::If",
    "prim::Loop",
    "prim::Return",
    "prim::ListConstruct",
    "prim::ListUnpack",
    "prim::TupleConstruct",
    "prim::TupleUnpack",
    "prim::TupleIndex",
    "prim::DictConstruct",
    "prim::Uninitialized",
    "prim::unchecked_cast",
    "prim::RaiseException",
    "prim::NumToTensor",
    "prim::device",
    "prim::dtype",
    "prim::isinstance",
    "prim::max",
    "prim::min",
    "prim::data",
    "prim::requires_grad",
    "prim::is_cuda",
    "prim::Enter",
    "prim::Exit",
    "prim::CreateObject",
];

/// The registry's entry for TorchScript networks: built from the archive named in the meta.
pub(super) struct ScriptSpec;

impl ArchSpec for ScriptSpec {
    fn build(&self, root: &nn::Path, meta: &ModelMeta) -> Result<Box<dyn Net>> {
        let src = meta.script.as_ref().ok_or_else(|| {
            Error::invalid("model", "a torchscript model needs its archive: pass it with --model (or --model-init)")
        })?;
        let bytes = std::fs::read(&src.path).map_err(|e| Error::io(&src.path, e))?;
        let hash = sha256_hex(&bytes);
        if hash != src.sha256 {
            return Err(Error::bad_file(
                &src.path,
                format!("the TorchScript archive changed since it was used (SHA-256 {hash}, recorded {})", src.sha256),
            ));
        }
        Ok(Box::new(ScriptNet::new(root, &src.path, &bytes, &src.allow_ops)?))
    }
    fn head(&self) -> &'static str {
        ""
    }
    fn stem(&self) -> &'static str {
        ""
    }
    /// Unknown architectures get a conservative budget (a quarter of the cnn's).
    fn reverse_images_at_32x32(&self) -> usize {
        256
    }
}

/// A TorchScript module as a [`Net`].
pub(crate) struct ScriptNet {
    module: Mutex<(ScriptModule, Option<bool>)>,
    params: Vec<Tensor>,
}

impl std::fmt::Debug for ScriptNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScriptNet({} parameters)", self.params.len())
    }
}

impl ScriptNet {
    /// Loads the archive (`bytes`, read from `path`) and registers its parameters (trainable) and
    /// buffers under `root`.
    fn new(root: &nn::Path, path: &Path, bytes: &[u8], allow_ops: &[String]) -> Result<Self> {
        let (module, _) = ScriptModule::load(path, bytes, allow_ops)?;
        let params = module.tensors(qt_named_parameters)?;
        let buffers = module.tensors(qt_named_buffers)?;
        let device = root.device();
        let mut kept = vec![];
        for (trainable, list) in [(true, params), (false, buffers)] {
            for (name, t) in list {
                if device != tch::Device::Cpu {
                    // set_data keeps the tensor object, so the module sees the moved data.
                    let mut shared = t.shallow_clone();
                    tch::no_grad(|| shared.set_data(&t.to_device(device)));
                }
                let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
                let p = prefix.split('.').filter(|s| !s.is_empty()).fold(root.clone(), |p, part| p.sub(part));
                let v = p.add(leaf, t, trainable);
                if trainable {
                    kept.push(v);
                }
            }
        }
        Ok(ScriptNet { module: Mutex::new((module, None)), params: kept })
    }

    /// Saves the module (its code and current weights) as a TorchScript archive, atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp.pt");
        let guard = self.module.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.save(&tmp).map_err(|e| Error::bad_file(path, format!("cannot save TorchScript: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// The forward pass in train (`true`) or eval mode, with the module's error as an `Err`.
    pub(crate) fn try_forward(&self, x: &Tensor, train: bool) -> std::result::Result<Tensor, String> {
        let mut guard = self.module.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1 != Some(train) {
            guard.0.set_train(train)?;
            guard.1 = Some(train);
        }
        guard.0.forward(x)
    }
}

impl Net for ScriptNet {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let result = match mode {
            Mode::Train => self.try_forward(x, true),
            Mode::Eval => self.try_forward(x, false),
            Mode::Frozen => {
                // Eval mode without parameter gradients: only the input's gradient is wanted.
                let was: Vec<bool> = self.params.iter().map(|p| p.requires_grad()).collect();
                for p in &self.params {
                    let _ = p.set_requires_grad(false);
                }
                let y = self.try_forward(x, false);
                for (p, w) in self.params.iter().zip(was) {
                    let _ = p.set_requires_grad(w);
                }
                y
            }
        };
        // The shapes were checked when the model was described (`describe`); a failure here is a
        // module that behaves differently on later inputs.
        result.unwrap_or_else(|e| panic!("the TorchScript module's forward failed: {e}"))
    }

    fn as_script(&self) -> Option<&ScriptNet> {
        Some(self)
    }
}

/// What `quarantine inspect` shows of a TorchScript archive, found without running it: what the
/// vetting read (ops, code files, traced or scripted) and the parameters and buffers libtorch loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScriptSummary {
    /// Ops its code names (all on the allow-list, or it would not load).
    pub ops: Vec<String>,
    /// Code files in the archive.
    pub code_files: Vec<String>,
    /// Written by `torch.jit.trace` (its BN and dropout are fixed in their traced mode).
    pub traced: bool,
    /// `(name, shape, is_parameter)`, parameters first, in the module's order.
    pub tensors: Vec<(String, Vec<i64>, bool)>,
}

/// Vets and loads the archive at `path` (nothing runs) and summarises it.
pub fn summarize(path: &Path, allow_ops: &[String]) -> Result<ScriptSummary> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (module, archive) = ScriptModule::load(path, &bytes, allow_ops)?;
    let mut tensors = vec![];
    for (is_param, list) in [(true, module.tensors(qt_named_parameters)?), (false, module.tensors(qt_named_buffers)?)] {
        tensors.extend(list.into_iter().map(|(n, t)| (n, t.size(), is_param)));
    }
    Ok(ScriptSummary {
        ops: archive.ops.into_iter().collect(),
        code_files: archive.code_files,
        traced: archive.traced,
        tensors,
    })
}

/// The last non-empty line of a TorchScript error: its message (the lines before are the traceback).
fn last_line(e: &str) -> &str {
    e.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or(e)
}

/// What a TorchScript model's sidecar or flags leave open, found by running it: input channels
/// (given, else the first 4-D parameter's second dimension, else 3), side (given, else 28 for one
/// channel and 32 otherwise) and classes (the output's width on two zero images). The output must be
/// `[2, classes]`.
pub fn describe(
    path: &Path,
    allow_ops: &[String],
    channels: Option<usize>,
    side: Option<usize>,
) -> Result<(usize, usize, usize)> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let net = ScriptNet::new(&vs.root(), path, &bytes, allow_ops)?;
    // The first 4-D parameter in definition order (`named_parameters` order) is the stem.
    let stem_channels = {
        let guard = net.module.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.tensors(qt_named_parameters)?.into_iter().find(|(_, t)| t.dim() == 4).map(|(_, t)| t.size()[1] as usize)
    };
    let c = channels.or(stem_channels).unwrap_or(3);
    let s = side.unwrap_or(if c == 1 { 28 } else { 32 });
    let x = Tensor::zeros([2, c as i64, s as i64, s as i64], (tch::Kind::Float, tch::Device::Cpu));
    let y = tch::no_grad(|| net.try_forward(&x, false)).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "the module fails on {c}x{s}x{s} inputs ({}); give its input shape with --channels and --image-size",
                last_line(&e)
            ),
        )
    })?;
    let size = y.size();
    if size.len() != 2 || size[0] != 2 || size[1] < 2 {
        return Err(Error::bad_file(
            path,
            format!(
                "the module maps [2, {c}, {s}, {s}] inputs to {size:?}; a classifier must return [N, classes] logits"
            ),
        ));
    }
    Ok((c, s, size[1] as usize))
}
