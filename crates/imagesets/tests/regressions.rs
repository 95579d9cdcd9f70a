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
                assert!(msg.contains("img.jpg") && msg.contains("cannot decode JPEG"), "{name}: {msg}");
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

/// Peak resident memory of this process so far (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A 458-byte grayscale JPEG declaring 55031x2040 pixels (from the `image_folder` fuzz corpus; it
/// decodes, to 112 MB). imagesets::folder used to decode every image before comparing sizes and
/// checking the set against MAX_ELEMENTS: twenty copies (9 KB of files) took 2.2 GB of memory
/// before being refused, two hundred would take 22 GB. Sizes now come from the headers first.
#[test]
fn tiny_files_declaring_huge_images_are_refused_before_decoding() {
    let bomb = std::fs::read(regressions_dir().join("jpeg_55031x2040_in_458_bytes.jpg")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let class = root.path().join("c");
    std::fs::create_dir(&class).unwrap();
    for i in 0..20 {
        std::fs::write(class.join(format!("b{i:02}.jpg")), &bomb).unwrap();
    }
    let e = imagesets::folder(root.path()).unwrap_err().to_string();
    assert!(e.contains("20 images of 55031x2040x1: more than 2147483648 bytes, refused"), "{e}");
    // Different sizes: refused at the first mismatching header, before anything is decoded.
    for i in 1..20 {
        std::fs::remove_file(class.join(format!("b{i:02}.jpg"))).unwrap();
    }
    image::GrayImage::new(4, 4).save(class.join("a.png")).unwrap();
    let e = imagesets::folder(root.path()).unwrap_err().to_string();
    assert!(e.contains("b00.jpg: image is 55031x2040 but ") && e.contains("a.png is 4x4"), "{e}");
    if let Some(peak) = peak_rss() {
        assert!(peak < 1 << 30, "peak RSS {} MB", peak >> 20);
    }
}
