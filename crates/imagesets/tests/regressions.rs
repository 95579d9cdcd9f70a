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

/// zune-jpeg 0.5.15 (image 0.25.10's JPEG decoder) panics in its IDCT (`idct/avx2.rs:246` or
/// `idct/scalar.rs:37`, an out-of-range write caught by a bounds check) on these damaged JPEGs,
/// found by the `image_folder` fuzz target: the first is the minimised input, the second the
/// original find. imagesets::folder used to let the panic through (across rayon), aborting the
/// caller; it is now a "cannot decode JPEG" error naming the file.
#[test]
fn zune_jpeg_idct_panic_is_an_error() {
    for name in ["zune_jpeg_idct.jpg", "zune_jpeg_idct_orig.jpg"] {
        let bytes = std::fs::read(regressions_dir().join(name)).unwrap();
        let msg = match read_as_folder(&bytes, "img.jpg") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{name}: decoded, expected an error"),
        };
        assert!(
            msg.contains("img.jpg") && msg.contains("cannot decode JPEG"),
            "{name}: {msg}"
        );
    }
}

/// The same file eight times: the panic used to cross the rayon pool of the parallel decode.
#[test]
fn decoder_panic_in_a_larger_folder_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("c");
    std::fs::create_dir(&class).unwrap();
    let bad = std::fs::read(regressions_dir().join("zune_jpeg_idct.jpg")).unwrap();
    for i in 0..8 {
        std::fs::write(class.join(format!("{i}.jpg")), &bad).unwrap();
    }
    let e = imagesets::folder(root.path()).unwrap_err();
    assert!(e.to_string().contains("cannot decode JPEG"), "{e}");
}
