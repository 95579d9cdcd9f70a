//! Every fixture written by PyTorch (tools/make_torch_fixtures.py) loads as expected.json says.

mod common;

use std::path::Path;

use common::{assert_state_dict, expectations, fixtures_dir};
use torchfile::{load, load_bytes, Error, Format};

#[test]
fn every_fixture_matches_expectations() {
    for (file, exp) in expectations() {
        let path = fixtures_dir().join(&file);
        let result = load(&path);
        if let Some(kind) = exp.get("error") {
            assert_eq!(kind, "ForbiddenGlobal");
            let global = exp["global"].as_str().unwrap();
            match result {
                Err(e @ Error::ForbiddenGlobal { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
                    assert!(msg.contains(&format!("`{global}`")), "{msg}");
                    assert!(matches!(&e, Error::ForbiddenGlobal { global: g, .. } if g == global));
                }
                other => panic!("{file}: expected ForbiddenGlobal({global}), got {other:?}"),
            }
        } else {
            let sd = result.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_state_dict(&file, &sd, &exp);
        }
    }
}

#[test]
fn load_bytes_agrees_with_load() {
    for (file, _) in expectations() {
        let path = fixtures_dir().join(&file);
        let bytes = std::fs::read(&path).unwrap();
        let from_mem = load_bytes(&bytes, Path::new("mem.pt"));
        match (load(&path), from_mem) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{file}"),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string().replace(&path.display().to_string(), "mem.pt"), b.to_string(), "{file}")
            }
            (a, b) => panic!("{file}: {a:?} vs {b:?}"),
        }
    }
}

#[test]
fn format_is_sniffed_from_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    for (src, format) in
        [("zip_basic.pt", Format::Zip), ("legacy_basic.pt", Format::Legacy), ("model.safetensors", Format::Safetensors)]
    {
        let renamed = dir.path().join("weights.bin");
        std::fs::copy(fixtures_dir().join(src), &renamed).unwrap();
        assert_eq!(load(&renamed).unwrap().format, format, "{src}");
    }
}

#[test]
fn same_weights_in_every_layout() {
    let dir = fixtures_dir();
    let reference = load(&dir.join("zip_basic.pt")).unwrap().tensors;
    for f in ["legacy_basic.pt", "zip_proto4.pt", "legacy_proto4.pt", "nested.pt", "dataparallel.pt"] {
        assert_eq!(load(&dir.join(f)).unwrap().tensors, reference, "{f}");
    }
    let zip = load(&dir.join("views.pt")).unwrap();
    let legacy = load(&dir.join("views_legacy.pt")).unwrap();
    assert_eq!(zip.tensors, legacy.tensors);
    let zip = load(&dir.join("dtypes.pt")).unwrap();
    let legacy = load(&dir.join("dtypes_legacy.pt")).unwrap();
    assert_eq!(zip.tensors, legacy.tensors);
}

#[test]
fn pruned_weights_are_masked() {
    let sd = load(&fixtures_dir().join("pruned.pt")).unwrap();
    let w = sd.get("0.weight").unwrap().to_f64_vec();
    let m = sd.mask("0.weight").unwrap().to_f64_vec();
    assert_eq!(w.len(), 24);
    assert_eq!(m.iter().filter(|&&v| v == 0.0).count(), 12, "l1_unstructured(amount=0.5)");
    for (w, m) in w.iter().zip(&m) {
        if *m == 0.0 {
            assert_eq!(*w, 0.0);
        }
    }
    assert!(sd.get("0.weight_orig").is_none() && sd.get("0.weight_mask").is_none());
    assert!(sd.mask("2.bias").is_some());
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let e = load(Path::new("/nonexistent/model.pth")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().starts_with("/nonexistent/model.pth: "), "{e}");
}
