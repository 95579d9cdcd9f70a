//! Shared helpers: the fixtures made by tools/make_torch_fixtures.py and their expectations.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use torchfile::{DType, RawTensor, StateDict};

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// `expected.json`'s `files` object: file name -> expectation.
pub fn expectations() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json")).expect("expected.json");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let files = json["files"].as_object().expect("files object");
    let mut out: Vec<(String, Value)> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 16, "expected.json lists {} fixtures", out.len());
    out
}

/// Asserts that `actual` matches an expected tensor list from the JSON.
pub fn assert_tensors(file: &str, what: &str, actual: &[(String, RawTensor)], expected: &Value) {
    let expected = expected.as_array().expect("tensor list");
    let names: Vec<&str> = actual.iter().map(|(n, _)| n.as_str()).collect();
    let exp_names: Vec<&str> = expected.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, exp_names, "{file}: {what} names");
    for ((name, t), exp) in actual.iter().zip(expected) {
        let ctx = format!("{file}: {what} `{name}`");
        assert_eq!(t.dtype.name(), exp["dtype"].as_str().unwrap(), "{ctx}: dtype");
        assert_eq!(DType::from_name(t.dtype.name()), Some(t.dtype));
        let shape: Vec<usize> = exp["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{ctx}: shape");
        assert!(t.is_consistent(), "{ctx}: data length");
        let values = exp["values"].as_array().unwrap();
        assert_eq!(t.numel(), values.len(), "{ctx}: numel");
        if t.dtype == DType::I64 {
            // Compare exactly, beyond 2^53.
            let actual: Vec<i64> = t.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            let exp: Vec<i64> = values.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(actual, exp, "{ctx}: values");
        } else {
            let exp: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(t.to_f64_vec(), exp, "{ctx}: values");
        }
    }
}

/// Asserts a loaded state dict matches its expectation (format, tensors, masks, ignored).
pub fn assert_state_dict(file: &str, sd: &StateDict, exp: &Value) {
    let format = match sd.format {
        torchfile::Format::Zip => "zip",
        torchfile::Format::Legacy => "legacy",
        torchfile::Format::Safetensors => "safetensors",
    };
    assert_eq!(format, exp["format"].as_str().unwrap(), "{file}: format");
    assert_tensors(file, "tensor", &sd.tensors, &exp["tensors"]);
    assert_tensors(file, "mask", &sd.masks, &exp["masks"]);
    let ignored: Vec<&str> = exp["ignored"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(sd.ignored, ignored, "{file}: ignored");
    if let Some(meta) = exp.get("metadata").and_then(|m| m.as_object()) {
        let meta: Vec<(String, String)> =
            meta.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        let actual: Vec<(String, String)> = sd.metadata.clone().into_iter().collect();
        assert_eq!(actual, meta, "{file}: metadata");
    }
}
