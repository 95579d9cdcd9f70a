//! Golden checks against PyTorch: ResNet-20s logits on fixed weights and input, loaded from checkpoints
//! PyTorch saved in the zip format, the legacy format (nested, `module.` prefixes) and with
//! torch.nn.utils.prune's reparametrisation. Values produced by tools/golden.py (committed output).
use std::path::Path;

use quarantine::model::{from_raw, load_checkpoint, Arch, InputOverrides};
use tch::{Device, Tensor};

fn golden() -> (Tensor, Tensor, Tensor) {
    let p = Path::new("tests/golden/golden.safetensors");
    let sd = torchfile::load(p).unwrap();
    let get = |n: &str| {
        let (_, raw) = sd.tensors.iter().find(|(k, _)| k == n).unwrap();
        from_raw(raw, p, n).unwrap()
    };
    (get("x"), get("logits"), get("pruned_logits"))
}

fn logits_of(file: &str) -> (Tensor, usize) {
    let ov = InputOverrides { arch: Some(Arch::Resnet20s), ..Default::default() };
    let (model, info, masks) = load_checkpoint(Path::new(file), &ov, Device::Cpu).unwrap();
    assert_eq!((info.meta.in_channels, info.meta.num_classes), (3, 10));
    let (x, _, _) = golden();
    (tch::no_grad(|| model.forward_t(&x, false)), masks.len())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn zip_format_matches_pytorch_logits() {
    let (_, want, _) = golden();
    let (got, masks) = logits_of("tests/golden/resnet20s_zip.pt");
    assert_eq!(masks, 0);
    assert!(max_diff(&got, &want) < 1e-4, "max diff {}", max_diff(&got, &want));
}

#[test]
fn legacy_format_matches_pytorch_logits() {
    let (_, want, _) = golden();
    let (got, _) = logits_of("tests/golden/resnet20s_legacy.pt");
    assert!(max_diff(&got, &want) < 1e-4, "max diff {}", max_diff(&got, &want));
}

#[test]
fn pruned_checkpoint_matches_pytorch_logits_and_keeps_masks() {
    let (_, _, want) = golden();
    let (got, masks) = logits_of("tests/golden/resnet20s_pruned.pt");
    assert_eq!(masks, 19, "one mask per conv layer");
    assert!(max_diff(&got, &want) < 1e-4, "max diff {}", max_diff(&got, &want));
}

#[test]
fn export_round_trip_keeps_logits() {
    let ov = InputOverrides { arch: Some(Arch::Resnet20s), ..Default::default() };
    let (model, _, _) = load_checkpoint(Path::new("tests/golden/resnet20s_zip.pt"), &ov, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (x, want, _) = golden();
    for name in ["m.pt", "m.safetensors"] {
        let p = dir.path().join(name);
        quarantine::model::export(&p, &model, 0).unwrap();
        let (again, _, _) = load_checkpoint(&p, &ov, Device::Cpu).unwrap();
        let got = tch::no_grad(|| again.forward_t(&x, false));
        assert!(max_diff(&got, &want) < 1e-4, "{name}");
    }
}
