//! Inputs found by fuzzing (fuzz/README.md) that once crashed a reader; each must now give an
//! error (or a valid set), never a panic.

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

/// zune-jpeg 0.5.15 (image 0.25.10's JPEG decoder) panics in its AVX2 IDCT
/// (`idct/avx2.rs:246`, `Option::unwrap()` on `None`) on these damaged JPEGs (found by the
/// `image_folder` fuzz target; the first is the minimised input, the second the original find).
/// imagesets::folder used to propagate the panic (through rayon) and abort the caller.
#[test]
fn zune_jpeg_avx2_idct_panic_is_an_error() {
    for name in ["zune_jpeg_avx2_idct.jpg", "zune_jpeg_avx2_idct_orig.jpg"] {
        let bytes = std::fs::read(regressions_dir().join(name)).unwrap();
        match read_as_folder(&bytes, "img.jpg") {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("img.jpg") && msg.contains("cannot decode JPEG"),
                    "{name}: {msg}"
                );
            }
            Ok(split) => {
                // Only the AVX2 code path of the decoder panics; elsewhere the file may decode.
                #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
                assert!(
                    !std::is_x86_feature_detected!("avx2"),
                    "{name}: expected an error on an AVX2 machine"
                );
                split.train.validate().unwrap();
            }
        }
    }
}

/// Same files, several at once: the panic used to cross the rayon pool of the parallel decode.
#[test]
fn decoder_panic_in_a_larger_folder_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("c");
    std::fs::create_dir(&class).unwrap();
    let bad = std::fs::read(regressions_dir().join("zune_jpeg_avx2_idct.jpg")).unwrap();
    for i in 0..8 {
        std::fs::write(class.join(format!("{i}.jpg")), &bad).unwrap();
    }
    if let Err(e) = imagesets::folder(root.path()) {
        assert!(e.to_string().contains("cannot decode JPEG"), "{e}");
    }
}
