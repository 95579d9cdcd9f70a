//! Inputs found by fuzzing (fuzz/README.md) that once crashed a reader; each must now give an
//! error, never a panic.

use std::path::{Path, PathBuf};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// Puts `bytes` as the only image of a one-class folder and reads the folder.
fn read_as_folder(bytes: &[u8], file_name: &str) -> imagesets::Result<imagesets::Split> {
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("c");
    std::fs::create_dir(&class).unwrap();
    std::fs::write(class.join(file_name), bytes).unwrap();
    imagesets::folder(root.path())
}

fn has_avx2() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    return std::is_x86_feature_detected!("avx2");
    #[allow(unreachable_code)]
    false
}

/// Damaged JPEGs on which zune-jpeg 0.5.15 (image 0.25.10's JPEG decoder) panics in its IDCT, an
/// out-of-range write stopped by a bounds check (`Option::unwrap()` on `None` or a slice index),
/// found by the `image_folder` fuzz target (minimised, except `*_original_find.jpg`); the name
/// says which IDCT panics (`idct/scalar.rs:37`, `idct/avx2.rs:246`, `idct/avx2.rs:378`).
/// imagesets::folder used to let the panic through (across rayon), aborting the caller; now it
/// is a "cannot decode JPEG" error naming the file.
const ZUNE_JPEG_IDCT: [&str; 4] = [
    "zune_jpeg_idct_scalar.jpg",
    "zune_jpeg_idct_avx2.jpg",
    "zune_jpeg_idct_avx2_4x4.jpg",
    "zune_jpeg_idct_avx2_original_find.jpg",
];

#[test]
fn zune_jpeg_idct_panics_are_errors() {
    for name in ZUNE_JPEG_IDCT {
        let bytes = std::fs::read(regressions_dir().join(name)).unwrap();
        match read_as_folder(&bytes, "img.jpg") {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("img.jpg") && msg.contains("cannot decode JPEG"),
                    "{name}: {msg}"
                );
            }
            // Without AVX2 the decoder takes another path, which may accept the AVX2 cases.
            Ok(split) if name.contains("avx2") && !has_avx2() => split.train.validate().unwrap(),
            Ok(_) => panic!("{name}: decoded, expected an error"),
        }
    }
}

/// The same files side by side: the panics used to cross the rayon pool of the parallel decode.
#[test]
fn decoder_panics_in_a_larger_folder_are_an_error() {
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("c");
    std::fs::create_dir(&class).unwrap();
    for (i, name) in ZUNE_JPEG_IDCT.iter().cycle().take(8).enumerate() {
        std::fs::copy(regressions_dir().join(name), class.join(format!("{i}.jpg"))).unwrap();
    }
    let e = imagesets::folder(root.path()).unwrap_err();
    assert!(e.to_string().contains("cannot decode JPEG"), "{e}");
}
