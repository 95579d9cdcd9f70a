//! Writing: save_pt / save_safetensors then load gives the same tensors.

mod common;

use std::collections::BTreeMap;

use common::{expectations, fixtures_dir};
use torchfile::{load, save_pt, save_safetensors, DType, Error, Format, RawTensor};

fn loadable_fixtures() -> Vec<String> {
    expectations().into_iter().filter(|(_, e)| e.get("error").is_none()).map(|(f, _)| f).collect()
}

#[test]
fn save_pt_round_trips_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for file in loadable_fixtures() {
        let sd = load(&fixtures_dir().join(&file)).unwrap();
        let out = dir.path().join(format!("{file}.resaved.pt"));
        save_pt(&out, &sd.tensors).unwrap();
        let back = load(&out).unwrap();
        assert_eq!(back.format, Format::Zip);
        assert_eq!(back.tensors, sd.tensors, "{file}");
        assert!(back.masks.is_empty() && back.ignored.is_empty(), "{file}");
    }
    // no temporary left behind
    let tmps = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"));
    assert_eq!(tmps.count(), 0);
}

#[test]
fn save_safetensors_round_trips_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    for file in loadable_fixtures() {
        let sd = load(&fixtures_dir().join(&file)).unwrap();
        let out = dir.path().join(format!("{file}.safetensors"));
        save_safetensors(&out, &sd.tensors, &meta).unwrap();
        let back = load(&out).unwrap();
        assert_eq!(back.format, Format::Safetensors);
        assert_eq!(back.metadata, meta);
        // safetensors orders by dtype and name: compare sorted.
        let mut a = sd.tensors.clone();
        let mut b = back.tensors.clone();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b, "{file}");
    }
}

#[test]
fn every_dtype_and_odd_shapes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let values: Vec<f64> = (0..24).map(|v| ((v * 7 + i) % 5) as f64 - 1.0).collect();
        let values: Vec<f64> = if dtype == DType::U8 { values.iter().map(|v| v.abs()).collect() } else { values };
        tensors.push((format!("t.{}", dtype.name()), RawTensor::from_f64(dtype, &[2, 3, 4], &values)));
    }
    tensors.push(("scalar".into(), RawTensor::from_f32(&[], &[4.5])));
    tensors.push(("empty".into(), RawTensor::from_f32(&[3, 0, 2], &[])));
    tensors.push(("five_dims".into(), RawTensor::from_f32(&[1, 2, 1, 2, 1], &[1., 2., 3., 4.])));
    tensors.push(("ünïcode name".into(), RawTensor::from_f32(&[1], &[1.])));
    let path = dir.path().join("all.pt");
    save_pt(&path, &tensors).unwrap();
    assert_eq!(load(&path).unwrap().tensors, tensors);
    // Overwrites atomically.
    save_pt(&path, &tensors[..1]).unwrap();
    assert_eq!(load(&path).unwrap().tensors.len(), 1);
    // An empty state dict is a valid file.
    save_pt(&path, &[]).unwrap();
    assert!(load(&path).unwrap().tensors.is_empty());
}

#[test]
fn inconsistent_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pt");
    let bad = RawTensor { dtype: DType::F32, shape: vec![2, 2], data: vec![0; 15] };
    let e = save_pt(&path, &[("w".into(), bad.clone())]).unwrap_err();
    assert!(matches!(&e, Error::InvalidTensor { name, .. } if name == "w"), "{e}");
    assert!(e.to_string().contains("needs 16 bytes, data has 15"), "{e}");
    assert!(!path.exists());
    let ok = RawTensor::from_f32(&[1], &[1.]);
    let e = save_safetensors(&path, &[("a".into(), ok.clone()), ("a".into(), ok)], &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("occurs twice"), "{e}");
    let e = save_pt(&dir.path().join("no/such/dir/x.pt"), &[]).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}

/// Writes a file for checking with PyTorch by hand:
/// `TORCHFILE_SAVE_CHECK=/tmp/x.pt cargo test -p torchfile --test roundtrip -- write_for_torch`
/// then `python -c "import torch; print(torch.load('/tmp/x.pt', weights_only=True))"`.
#[test]
fn write_for_torch() {
    let Some(path) = std::env::var_os("TORCHFILE_SAVE_CHECK") else {
        return;
    };
    let mut tensors = load(&fixtures_dir().join("dtypes.pt")).unwrap().tensors;
    tensors.extend(load(&fixtures_dir().join("views.pt")).unwrap().tensors);
    save_pt(std::path::Path::new(&path), &tensors).unwrap();
}
