//! Hostile and damaged inputs, built by hand, through the public `load_bytes`.
//! Each must give a precise error, never a panic or a huge allocation.

use std::path::Path;

use crate::dtype::DType;
use crate::legacy::MAGIC;
use crate::write::{archive_bytes, pickle_entries, PickledTensor};
use crate::{load_bytes, Error, Format};

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn entry<'a>(name: &'a str, numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> PickledTensor<'a> {
    PickledTensor {
        name,
        dtype: DType::F32,
        storage_key: "0".into(),
        storage_numel: numel,
        offset,
        shape: shape.to_vec(),
        stride: stride.to_vec(),
    }
}

fn zip_with(entries: &[PickledTensor<'_>], storage: &[u8]) -> Vec<u8> {
    archive_bytes(&pickle_entries(entries), &[("0", storage)])
}

/// A legacy file: the three header pickles, `main`, the key list, then the data sections.
fn legacy_with(main: &[u8], keys: &[&str], sections: &[(u64, &[u8])]) -> Vec<u8> {
    let mut f = vec![0x80, 2, 0x8a, 10];
    f.extend_from_slice(&MAGIC);
    f.push(b'.');
    f.extend_from_slice(b"\x80\x02M\xe9\x03.");
    f.extend_from_slice(b"\x80\x02}X\x0d\x00\x00\x00little_endian\x88s.");
    f.extend_from_slice(main);
    f.extend_from_slice(b"\x80\x02](");
    for k in keys {
        f.push(b'X');
        f.extend_from_slice(&(k.len() as u32).to_le_bytes());
        f.extend_from_slice(k.as_bytes());
    }
    f.extend_from_slice(b"e.");
    for (numel, data) in sections {
        f.extend_from_slice(&numel.to_le_bytes());
        f.extend_from_slice(data);
    }
    f
}

fn load(bytes: &[u8]) -> Result<crate::StateDict, Error> {
    load_bytes(bytes, Path::new("model.pth"))
}

#[test]
fn crafted_files_load_when_consistent() {
    let z = zip_with(&[entry("w", 6, 0, &[2, 3], &[3, 1])], &f32_bytes(6));
    let sd = load(&z).unwrap();
    assert_eq!(sd.format, Format::Zip);
    assert_eq!(sd.tensors[0].1.to_f64_vec(), vec![0., 1., 2., 3., 4., 5.]);

    let main = pickle_entries(&[entry("w", 6, 1, &[2, 2], &[1, 2])]);
    let data = f32_bytes(6);
    let l = legacy_with(&main, &["0"], &[(6, &data)]);
    let sd = load(&l).unwrap();
    assert_eq!(sd.format, Format::Legacy);
    assert_eq!(sd.tensors[0].1.to_f64_vec(), vec![1., 3., 2., 4.]);
}

#[test]
fn storage_shorter_than_numel() {
    let z = zip_with(&[entry("w", 256, 0, &[256], &[1])], &f32_bytes(128));
    let e = load(&z).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    assert_eq!(e.to_string(), "model.pth: truncated: storage '0' needs 1024 bytes, file has 512");

    let main = pickle_entries(&[entry("w", 256, 0, &[256], &[1])]);
    let data = f32_bytes(128);
    let e = load(&legacy_with(&main, &["0"], &[(256, &data)])).unwrap_err();
    assert_eq!(e.to_string(), "model.pth: truncated: storage '0' needs 1024 bytes, file has 512");
}

#[test]
fn missing_storage_entry() {
    let z = archive_bytes(&pickle_entries(&[entry("w", 4, 0, &[4], &[1])]), &[]);
    let e = load(&z).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("storage '0' is missing"), "{e}");
}

#[test]
fn stride_out_of_bounds() {
    // A 4x4 view of a 12-element storage.
    let z = zip_with(&[entry("w", 12, 0, &[4, 4], &[4, 1])], &f32_bytes(12));
    let e = load(&z).unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("tensor `w`"), "{e}");
    // An offset past the end.
    let z = zip_with(&[entry("w", 12, 12, &[1], &[1])], &f32_bytes(12));
    assert!(matches!(load(&z), Err(Error::Malformed { .. })));
    // A stride so large the index computation overflows.
    let z = zip_with(&[entry("w", 12, 0, &[3, 3], &[u64::MAX / 2, 1])], &f32_bytes(12));
    assert!(matches!(load(&z), Err(Error::Malformed { .. })));
}

#[test]
fn huge_shape_errors_without_allocating() {
    // 2^40 x 2^40 elements claimed in a 48-byte storage, as a broadcast (stride 0) view.
    let big = 1u64 << 40;
    let z = zip_with(&[entry("w", 12, 0, &[big, big], &[0, 0])], &f32_bytes(12));
    let e = load(&z).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
    // A huge declared storage: checked against the entry, nothing allocated.
    let z = zip_with(&[entry("w", 1 << 60, 0, &[1], &[1])], &f32_bytes(12));
    assert!(matches!(load(&z), Err(Error::Truncated { .. })));
    // Beyond i64 it is not even an integer the VM accepts as a size.
    let z = zip_with(&[entry("w", u64::MAX, 0, &[1], &[1])], &f32_bytes(12));
    assert!(matches!(load(&z), Err(Error::Malformed { .. })));
    // Legacy: a data section claiming 2^62 elements.
    let main = pickle_entries(&[entry("w", 4, 0, &[4], &[1])]);
    let e = load(&legacy_with(&main, &["0"], &[(1 << 62, &[0u8; 16])])).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
}

#[test]
fn deep_recursion_is_harmless() {
    // 100k nested lists as data.pkl: loads without recursion, then is rejected as not a dict.
    let n = 100_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat(b']').take(n));
    p.extend(std::iter::repeat(b'a').take(n - 1));
    p.push(b'.');
    let e = load(&archive_bytes(&p, &[])).unwrap_err();
    assert!(matches!(e, Error::InvalidStateDict { .. }), "{e}");
    // {"a": [[[...]]]}: a dict without tensors whose value nests deeply; loads as an empty
    // state dict with "a" ignored.
    let mut p = b"\x80\x02}(X\x01\x00\x00\x00a".to_vec();
    p.extend(std::iter::repeat(b']').take(n));
    p.extend(std::iter::repeat(b'a').take(n - 1));
    p.extend_from_slice(b"u.");
    let sd = load(&archive_bytes(&p, &[])).unwrap();
    assert!(sd.tensors.is_empty());
    assert_eq!(sd.ignored, vec!["a".to_string()]);
}

#[test]
fn forbidden_globals_are_named() {
    let mut p = b"\x80\x02}(X\x01\x00\x00\x00x".to_vec();
    p.extend_from_slice(b"cposix\nsystem\n(X\x02\x00\x00\x00idtRu.");
    let e = load(&archive_bytes(&p, &[])).unwrap_err();
    match &e {
        Error::ForbiddenGlobal { global, .. } => assert_eq!(global, "posix.system"),
        other => panic!("{other}"),
    }
    assert_eq!(
        e.to_string(),
        "model.pth: pickle refers to `posix.system`, which is not a tensor-rebuild function; refusing to load"
    );
    // Same in a legacy file, in the object pickle.
    let e = load(&legacy_with(&p, &[], &[])).unwrap_err();
    assert!(matches!(&e, Error::ForbiddenGlobal { global, .. } if global == "posix.system"), "{e}");
    // numpy gets a hint.
    let p = b"\x80\x02cnumpy.core.multiarray\nscalar\n.";
    let e = load(&archive_bytes(p, &[])).unwrap_err();
    assert!(e.to_string().contains("NumPy"), "{e}");
}

#[test]
fn wrong_magic_and_garbage() {
    let e = load(b"hello world, this is not a checkpoint").unwrap_err();
    assert!(matches!(e, Error::NotACheckpoint { .. }));
    assert_eq!(e.to_string(), "model.pth: not a PyTorch checkpoint (no zip, legacy pickle or safetensors signature)");
    // Legacy with one magic byte changed.
    let main = pickle_entries(&[]);
    let mut l = legacy_with(&main, &[], &[]);
    l[6] ^= 0xff;
    assert!(matches!(load(&l), Err(Error::NotACheckpoint { .. })));
    // Legacy with a wrong protocol version.
    let mut l = legacy_with(&main, &[], &[]);
    let at = l.windows(3).position(|w| w == b"M\xe9\x03").unwrap();
    l[at + 1] = 0xea;
    assert!(matches!(load(&l), Err(Error::Unsupported { .. })));
    assert!(matches!(load(b""), Err(Error::NotACheckpoint { .. })));
    assert!(matches!(load(b"PK\x03\x04"), Err(Error::Truncated { .. })));
}

#[test]
fn every_truncation_is_an_error() {
    let z = zip_with(&[entry("w", 6, 0, &[2, 3], &[3, 1])], &f32_bytes(6));
    for cut in 0..z.len() {
        assert!(load(&z[..cut]).is_err(), "zip cut at {cut}");
    }
    let main = pickle_entries(&[entry("w", 6, 0, &[6], &[1])]);
    let data = f32_bytes(6);
    let l = legacy_with(&main, &["0"], &[(6, &data)]);
    for cut in 0..l.len() {
        let r = load(&l[..cut]);
        assert!(r.is_err(), "legacy cut at {cut}");
    }
}

#[test]
fn legacy_storage_views_and_orphans() {
    // A legacy view: ('storage', FloatStorage, root, 'cpu', 6, ('view', 2, 3)) over 6 floats.
    let mut p = b"\x80\x02}X\x01\x00\x00\x00vctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
    p.extend_from_slice(b"X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06");
    p.extend_from_slice(b"X\x04\x00\x00\x00viewK\x02K\x03\x87tQK\x01K\x02\x85K\x01\x85\x89}tRs.");
    let data = f32_bytes(6);
    let sd = load(&legacy_with(&p, &["0"], &[(6, &data)])).unwrap();
    assert_eq!(sd.tensors[0].1.to_f64_vec(), vec![3., 4.]);
    // A data section nobody refers to: its element size is unknown.
    let e = load(&legacy_with(&p, &["0", "9"], &[(6, &data), (1, &[0; 4])])).unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
}

/// Mutates the data.pkl of real torch-written archives (re-zipped with valid checksums, which
/// whole-file fuzzing cannot get past) and loads them: errors are fine, panics are not.
#[test]
fn fuzz_pickles_inside_zip_archives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for file in ["zip_basic.pt", "views.pt", "dtypes.pt", "nested.pt", "pruned.pt", "zip_proto4.pt"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let ar = crate::zip::Archive::parse(&bytes).unwrap();
        let mut pickle = Vec::new();
        let mut storages = Vec::new();
        for e in ar.entries() {
            let data = ar.read(e).unwrap().into_owned();
            if e.name.ends_with("/data.pkl") {
                pickle = data;
            } else if let Some((_, key)) = e.name.split_once("/data/") {
                storages.push((key.to_owned(), data));
            }
        }
        let storages: Vec<(&str, &[u8])> = storages.iter().map(|(k, d)| (k.as_str(), d.as_slice())).collect();
        let iterations = std::env::var("TORCHFILE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
        for _ in 0..iterations {
            let mut p = pickle.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % p.len() as u64) as usize;
                match next() % 4 {
                    0 => p[i] ^= 1 << (next() % 8),
                    1 => p[i] = [0x00, 0xff, 0x80, b'(', b'.', b'R', b'Q', b'K', b'h', b'u'][(next() % 10) as usize],
                    2 => p.truncate(i),
                    _ => {
                        p.remove(i);
                    }
                }
                if p.is_empty() {
                    break;
                }
            }
            let z = archive_bytes(&p, &storages);
            if let Err(e) = load(&z) {
                assert!(e.to_string().starts_with("model.pth: "), "{e}");
            }
        }
    }
}

#[test]
fn one_storage_under_many_keys_is_bounded() {
    // 5000 keys that all name one 128 KiB tensor (BINGET of the memoised tensor): 640 MiB of
    // output from a ~200 KB file. Refused once past 8x the file + 256 MiB.
    let storage = vec![0u8; 128 << 10];
    let mut p = pickle_entries(&[entry("t0", 32 << 10, 0, &[32 << 10], &[1])]);
    p.truncate(p.len() - 2); // drop SETITEMS and STOP; the MARK frame is still open
    p.extend_from_slice(b"q\xff"); // memoise the tensor (top of stack) in slot 255
    for i in 1..5000 {
        let key = format!("t{i}");
        p.push(b'X');
        p.extend_from_slice(&(key.len() as u32).to_le_bytes());
        p.extend_from_slice(key.as_bytes());
        p.extend_from_slice(b"h\xff");
    }
    p.extend_from_slice(b"u.");
    let e = load(&archive_bytes(&p, &[("0", &storage)])).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
    assert!(e.to_string().contains("repeats or broadcasts"), "{e}");
}
