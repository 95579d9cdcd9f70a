//! Shared helpers of the fuzz targets (see ../README.md).
//!
//! - [`GuardAlloc`], the global allocator of every target: aborts (a crash libFuzzer records)
//!   on any single allocation above [`MAX_ALLOC`]. libFuzzer's own `-malloc_limit_mb` needs a
//!   sanitizer's malloc hooks, and the targets run with `--sanitizer none` on stable Rust, so
//!   this does its job; `-rss_limit_mb` still works as usual.
//! - [`scratch_dir`]: one temporary folder per fuzzing process, for the readers that take paths.
//! - [`build_zip`]: a stored zip with correct CRCs, so `torch_zip_pickle` reaches the pickle VM
//!   without being stopped by a checksum mismatch.
//! - [`split_u16`]: cuts a length-prefixed part off an input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The largest single allocation a target may make (2 GiB, like `-malloc_limit_mb=2048`).
pub const MAX_ALLOC: usize = 2048 << 20;

/// The system allocator, refusing (by aborting) any allocation above [`MAX_ALLOC`].
pub struct GuardAlloc;

fn too_big(size: usize) -> ! {
    // No allocation here: format the number into a stack buffer.
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = size;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"==fuzz== GuardAlloc: single allocation of ");
    let _ = err.write_all(&buf[i..]);
    let _ = err.write_all(b" bytes exceeds the 2048 MiB limit\n");
    std::process::abort();
}

unsafe impl GlobalAlloc for GuardAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_big(layout.size());
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_big(layout.size());
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            too_big(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: GuardAlloc = GuardAlloc;

/// A fresh folder `$TMPDIR/quarantine-fuzz-<target>-<pid>`, created once per process and
/// removed at exit is not attempted (libFuzzer exits with `_exit`); it is small and per-pid.
pub fn scratch_dir(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d =
            std::env::temp_dir().join(format!("quarantine-fuzz-{target}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("cannot create the scratch folder");
        d
    })
}

/// Writes `bytes` to `path`, or removes `path` when `bytes` is `None`.
pub fn put(path: &Path, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => std::fs::write(path, b).expect("cannot write into the scratch folder"),
        None => match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", path.display()),
        },
    }
}

/// Splits `data` into a part whose length is given by the first two bytes (little-endian,
/// clamped to what is there) and the rest. `None` if `data` has fewer than two bytes.
pub fn split_u16(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let n = (u16::from_le_bytes(*len) as usize).min(rest.len());
    Some(rest.split_at(n))
}

/// A zip archive of stored entries with correct CRC-32s (the layout torchfile's reader expects;
/// sizes in the central directory, no zip64).
pub fn build_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let crc = crc32fast::hash(data);
        let offset = out.len() as u32;
        let size = data.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&0u16.to_le_bytes()); // flags
        central.extend_from_slice(&0u16.to_le_bytes()); // method
        central.extend_from_slice(&0u16.to_le_bytes()); // time
        central.extend_from_slice(&0x21u16.to_le_bytes()); // date
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out
}

/// `[u16 len][storage]...` (at most 64) as archive entries `archive/data/0`, `1`, ...
fn storage_entries(mut rest: &[u8]) -> Vec<(String, &[u8])> {
    let mut storages = Vec::new();
    while let Some((s, r)) = split_u16(rest) {
        if storages.len() == 64 {
            break;
        }
        storages.push((format!("archive/data/{}", storages.len()), s));
        rest = r;
    }
    storages
}

/// The `torch_zip_pickle` input layout: `[u16 len][data.pkl][u16 len][storage 0][u16 len]
/// [storage 1]...` (at most 64 storages), turned into a torch.save-like archive `archive/...`.
pub fn zip_pickle_archive(data: &[u8]) -> Option<Vec<u8>> {
    let (pkl, rest) = split_u16(data)?;
    let storages = storage_entries(rest);
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("archive/data.pkl", pkl),
        ("archive/byteorder", b"little"),
        ("archive/version", b"3\n"),
    ];
    entries.extend(storages.iter().map(|(n, s)| (n.as_str(), *s)));
    Some(build_zip(&entries))
}

/// The `torchscript` input layout: `[u16 len][code text][u16 len][data.pkl][u16 len][constants.pkl]`
/// then any number of `[u16 len][storage]`, turned into a TorchScript-like archive `archive/...`
/// (`code/__torch__.py`, both pickles, storages `data/0..`) with correct CRC-32s, so mutations reach
/// the code scanner and the script-mode unpickler instead of the checksum check.
pub fn torchscript_archive(data: &[u8]) -> Option<Vec<u8>> {
    let (code, rest) = split_u16(data)?;
    let (pkl, rest) = split_u16(rest)?;
    let (constants, rest) = split_u16(rest)?;
    let storages = storage_entries(rest);
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("archive/data.pkl", pkl),
        ("archive/code/__torch__.py", code),
        ("archive/constants.pkl", constants),
        ("archive/version", b"3\n"),
    ];
    entries.extend(storages.iter().map(|(n, s)| (n.as_str(), *s)));
    Some(build_zip(&entries))
}

/// The inverse of [`zip_pickle_archive`]'s layout, for seeds: `data.pkl` then storages `0..n`.
pub fn zip_pickle_input(pkl: &[u8], storages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in std::iter::once(pkl).chain(storages.iter().copied()) {
        out.extend_from_slice(&(part.len() as u16).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The `cifar` input layout: `[mode][u16 len][class names text][records...]`; see
/// fuzz_targets/cifar.rs.
pub fn cifar_input(mode: u8, names: &[u8], records: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(&(names.len() as u16).to_le_bytes());
    out.extend_from_slice(names);
    out.extend_from_slice(records);
    out
}

/// The `idx` input layout: `[u32 LE split][images ++ labels]`, images being the first
/// `split % (len + 1)` bytes after the prefix.
pub fn idx_input(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut out = (images.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(images);
    out.extend_from_slice(labels);
    out
}

/// Splits an `idx` input (see [`idx_input`]).
pub fn idx_split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (split, rest) = data.split_first_chunk::<4>()?;
    let at = u32::from_le_bytes(*split) as usize % (rest.len() + 1);
    Some(rest.split_at(at))
}

/// The oracle of the torchfile targets beyond "no crash": every tensor and mask of a loaded
/// checkpoint has `shape x dtype` bytes, and every error has a message naming the input.
pub fn check_state_dict(result: Result<torchfile::StateDict, torchfile::Error>) {
    match result {
        Ok(sd) => {
            for (name, t) in sd.tensors.iter().chain(&sd.masks) {
                assert!(
                    t.is_consistent(),
                    "tensor `{name}`: {} bytes for {:?} {}",
                    t.data.len(),
                    t.shape,
                    t.dtype
                );
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.pt") && msg.len() > 9, "{msg}");
        }
    }
}

/// The oracle of the imagesets targets beyond "no crash": a returned set is consistent.
pub fn check_image_set(set: &imagesets::ImageSet) {
    if let Err(e) = set.validate() {
        panic!("reader returned an inconsistent set: {e}");
    }
}

/// Lets panics raised inside dependencies (code under a cargo registry) unwind instead of
/// aborting at once, so that a reader that contains them with `catch_unwind` (imagesets' image
/// decoding, see crates/imagesets/src/folder.rs) is fuzzed as it behaves in the program. A
/// dependency panic that is *not* contained still crashes: libfuzzer-sys aborts when one
/// reaches the fuzz target. Panics in the project's own code abort at once, as usual. Each
/// contained panic location is reported once on stderr.
pub fn contain_dependency_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let seen = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
        let abort_hook = std::panic::take_hook(); // libfuzzer-sys: print, then abort
        std::panic::set_hook(Box::new(move |info| {
            let loc = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if loc.contains("/registry/src/") {
                if seen
                    .lock()
                    .map(|mut s| s.insert(loc.clone()))
                    .unwrap_or(false)
                {
                    eprintln!("==fuzz== dependency panic at {loc} (first time; must be contained)");
                }
            } else {
                abort_hook(info);
            }
        }));
    });
}
