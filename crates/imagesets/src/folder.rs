//! Image folders in torchvision's `ImageFolder` convention.
//!
//! ```text
//! root/cat/0001.png      root/train/cat/...     (with train/: the training set,
//! root/cat/0002.jpg      root/train/dog/...      and test/ or val/ the test set,
//! root/dog/a.jpeg        root/test/cat/...       with the same class folders)
//! ```
//!
//! Each sub-folder of the root is a class; classes are numbered in sorted folder-name order, except
//! where every class folder is named by a number (`0`, `3`, `12`): then that number is the label,
//! so a folder holding images of only some labels (an auditor's few clean images) keeps the
//! model's label numbers, and the classes are `0..=max`. Within a class the `.png`, `.jpg` and `.jpeg` files (any case) are taken in sorted file-name
//! order. Other files, nested folders, and names starting with `.` (e.g. `.ipynb_checkpoints`,
//! macOS `._x.png`) are ignored. Unlike torchvision this reader does not descend into nested
//! folders and does not resize or convert silently: all images must have the same size; they are
//! given 1 channel if every one is grayscale, else 3 (RGB; alpha is dropped, grayscale images are
//! replicated into the three channels). Decoding runs in parallel; the order stays deterministic.
//!
//! [`write_folder`] writes `dir/<class>/<index>.png`, `<index>` being the image's position in the
//! set with at least five digits, so a set written and read back has the same images, labels and
//! classes, its images grouped by class (in their original order within each class).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat};
use rayon::prelude::*;

use crate::atomic::{rename_durable, tmp_path};
use crate::error::{Error, Result};
use crate::idx::require_dir;
use crate::{ImageSet, Split, MAX_ELEMENTS};

/// The file extensions read (compared case-insensitively).
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The class folders of one root and the image files found in them, in order.
struct Listing {
    root: PathBuf,
    classes: Vec<String>,
    files: Vec<(PathBuf, u32)>,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Lists the non-hidden entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list", e))? {
        let entry = entry.map_err(|e| Error::io(dir, "cannot list", e))?;
        let name = entry.file_name();
        if !is_hidden(&name) {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The label a class folder named by a number stands for (`"7"`, `"007"`), up to 99,999.
fn label_number(name: &str) -> Option<u32> {
    (!name.is_empty() && name.len() <= 5 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok())?
}

fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn list(root: &Path) -> Result<Listing> {
    require_dir(root)?;
    let mut classes = Vec::new();
    let mut class_dirs = Vec::new();
    for (name, path) in sorted_entries(root)? {
        if path.is_dir() {
            let name = name.into_string().map_err(|_| Error::format(&path, "class folder name is not UTF-8"))?;
            classes.push(name);
            class_dirs.push(path);
        }
    }
    if classes.is_empty() {
        return Err(Error::format(root, "no class folders (expected one sub-folder per class)"));
    }
    // Folders named by label number keep their numbers as labels.
    let numbered: Option<Vec<u32>> = classes.iter().map(|c| label_number(c)).collect();
    let labels: Vec<u32> = match &numbered {
        Some(numbers) => {
            let max = numbers.iter().copied().max().unwrap_or(0);
            classes = (0..=max).map(|i| i.to_string()).collect();
            numbers.clone()
        }
        None => (0..class_dirs.len() as u32).collect(),
    };
    let mut files = Vec::new();
    for (&label, dir) in labels.iter().zip(&class_dirs) {
        for (_, path) in sorted_entries(dir)? {
            if has_image_extension(&path) && path.is_file() {
                files.push((path, label));
            }
        }
    }
    if numbered.is_some() {
        // "3" and "03" are the same label: one folder per label.
        let mut seen = std::collections::BTreeSet::new();
        for (&label, dir) in labels.iter().zip(&class_dirs) {
            if !seen.insert(label) {
                return Err(Error::format(dir, format!("a second folder for label {label}")));
            }
        }
        files.sort_by_key(|(_, l)| *l);
    }
    if files.is_empty() {
        return Err(Error::format(root, "no .png/.jpg/.jpeg images in any class folder"));
    }
    Ok(Listing { root: root.to_path_buf(), classes, files })
}

/// One decoded image: 1 byte per pixel if grayscale, else 3.
struct Decoded {
    width: usize,
    height: usize,
    gray: bool,
    pixels: Vec<u8>,
}

/// The format to decode `bytes` (read from `path`) as, and its name for messages.
fn format_of(path: &Path, bytes: &[u8]) -> Result<(ImageFormat, &'static str)> {
    let by_extension = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => ImageFormat::Png,
        _ => ImageFormat::Jpeg,
    };
    // Trust the content over the name (a .png that is really a JPEG decodes as a JPEG).
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Ok(other) => return Err(Error::format(path, format!("is a {other:?} image; only PNG and JPEG are read"))),
        Err(_) => by_extension,
    };
    let label = if format == ImageFormat::Png { "PNG" } else { "JPEG" };
    Ok((format, label))
}

/// Width and height from the image's header, without decoding the pixels.
fn probe(path: &Path) -> Result<(usize, usize)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let (format, label) = format_of(path, &bytes)?;
    let (w, h) =
        guarded(|| image::ImageReader::with_format(std::io::Cursor::new(&bytes[..]), format).into_dimensions())
            .map_err(|e| Error::format(path, format!("cannot decode {label}: {e}")))?;
    Ok((w as usize, h as usize))
}

fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let (format, label) = format_of(path, &bytes)?;
    let img = guarded(|| image::load_from_memory_with_format(&bytes, format))
        .map_err(|e| Error::format(path, format!("cannot decode {label}: {e}")))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLuma16(_) => {
            Decoded { width, height, gray: true, pixels: img.into_luma8().into_raw() }
        }
        other => Decoded { width, height, gray: false, pixels: other.into_rgb8().into_raw() },
    })
}

/// Runs an `image` crate call, turning a panic of the decoder into an error.
///
/// The decoders should return errors on malformed data, but do not always: zune-jpeg 0.5.15 (the
/// JPEG decoder of image 0.25.10) panics in its IDCT (an out-of-range write, caught by a bounds
/// check, in `idct/avx2.rs` or `idct/scalar.rs`) on some damaged JPEGs (found by
/// fuzz/fuzz_targets/image_folder.rs; inputs in tests/regressions/zune_jpeg_idct_*.jpg).
/// Without this guard one bad file in a data set folder would end the whole program with a
/// panic (it crosses the rayon pool in [`decode_all`]). Decoding shares no state between calls,
/// so nothing is left inconsistent by the unwinding. (Only effective with `panic = "unwind"`,
/// the default profile setting.)
fn guarded<T>(f: impl FnOnce() -> image::ImageResult<T> + std::panic::UnwindSafe) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(format!("the decoder failed on malformed data (it panicked: {why})"))
        }
    }
}

/// Checks that every image has the first one's size and that `channels` bytes per pixel fit
/// [`MAX_ELEMENTS`]; returns the total byte count.
fn check_sizes(listing: &Listing, sizes: &[(usize, usize)], channels: usize) -> Result<usize> {
    let (w0, h0) = sizes[0];
    let first = &listing.files[0].0;
    for (&(w, h), (path, _)) in sizes.iter().zip(&listing.files) {
        if (w, h) != (w0, h0) {
            return Err(Error::format(
                path,
                format!(
                    "image is {w}x{h} but {} is {w0}x{h0}; all images must have one size (none is resized)",
                    first.display()
                ),
            ));
        }
    }
    let n = sizes.len();
    w0.checked_mul(h0)
        .and_then(|p| p.checked_mul(channels))
        .and_then(|p| p.checked_mul(n))
        .filter(|&t| t <= MAX_ELEMENTS)
        .ok_or_else(|| {
            Error::format(
                &listing.root,
                format!("{n} images of {w0}x{h0}x{channels}: more than {MAX_ELEMENTS} bytes, refused"),
            )
        })
}

fn decode_all(listing: Listing) -> Result<ImageSet> {
    // Sizes from the headers first: a file of a few hundred bytes can declare (and decode to) an
    // image of hundreds of megabytes, so nothing is decoded before every image is known to have
    // the first one's size and the whole set to fit MAX_ELEMENTS (with one byte per pixel, as
    // gray or RGB is only known after decoding). Found by fuzzing: twenty copies of a 458-byte
    // JPEG of 55031x2040 pixels took 2.2 GB before the set was refused.
    let probed: Vec<Result<(usize, usize)>> = listing.files.par_iter().map(|(path, _)| probe(path)).collect();
    let mut sizes = Vec::with_capacity(probed.len());
    for p in probed {
        sizes.push(p?);
    }
    check_sizes(&listing, &sizes, 1)?;

    let decoded: Vec<Result<Decoded>> = listing.files.par_iter().map(|(path, _)| decode(path)).collect();
    let mut images = Vec::with_capacity(decoded.len());
    for d in decoded {
        images.push(d?);
    }
    // Again on the decoded images (the files could have changed in between).
    let sizes: Vec<(usize, usize)> = images.iter().map(|d| (d.width, d.height)).collect();
    let channels = if images.iter().all(|d| d.gray) { 1 } else { 3 };
    let total = check_sizes(&listing, &sizes, channels)?;
    let (w0, h0) = sizes[0];
    let n = images.len();
    let mut pixels = Vec::with_capacity(total);
    for d in images {
        if d.gray && channels == 3 {
            pixels.extend(d.pixels.iter().flat_map(|&v| [v, v, v]));
        } else {
            pixels.extend_from_slice(&d.pixels);
        }
    }
    Ok(ImageSet {
        images: pixels,
        labels: listing.files.iter().map(|&(_, l)| l).collect(),
        n,
        height: h0,
        width: w0,
        channels,
        classes: listing.classes,
    })
}

/// Reads an image folder (see the [module docs](self)). If `dir/train` exists it is the training
/// set and `dir/test` (or else `dir/val`), if present, the test set, with the same class folders;
/// otherwise `dir` itself is the training set and there is no test set.
pub fn folder(dir: impl AsRef<Path>) -> Result<Split> {
    let dir = dir.as_ref();
    require_dir(dir)?;
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Ok(Split { train: decode_all(list(dir)?)?, test: None });
    }
    let train = list(&train_dir)?;
    let test = match ["test", "val"].map(|n| dir.join(n)).into_iter().find(|p| p.is_dir()) {
        None => None,
        Some(test_dir) => {
            let mut test = list(&test_dir)?;
            // Numbered folders: the test set may lack the highest labels; it keeps the train's classes.
            let numbered = |l: &Listing| l.classes.iter().enumerate().all(|(i, c)| *c == i.to_string());
            if numbered(&train) && numbered(&test) && test.classes.len() <= train.classes.len() {
                test.classes = train.classes.clone();
            }
            if test.classes != train.classes {
                return Err(Error::format(
                    &test_dir,
                    format!(
                        "class folders {:?} differ from those of {}: {:?}",
                        test.classes,
                        train_dir.display(),
                        train.classes
                    ),
                ));
            }
            Some(test)
        }
    };
    Ok(Split { train: decode_all(train)?, test: test.map(decode_all).transpose()? })
}

fn usable_folder_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0']) && name.trim() == name
}

/// Class names that [`write_folder`] accepts and that read back in the same label order: `classes`
/// unchanged if they already are (usable as folder names, sorted, unique), otherwise each prefixed
/// with its zero-padded label (`"0_T-shirt_top"`, ...; `/`, `\` and leading dots become `_`).
pub fn folder_class_names<S: AsRef<str>>(classes: &[S]) -> Vec<String> {
    let names: Vec<&str> = classes.iter().map(|s| s.as_ref()).collect();
    if check_class_names(&names).is_ok() {
        return names.iter().map(|s| s.to_string()).collect();
    }
    let width = classes.len().saturating_sub(1).to_string().len();
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let clean: String =
                name.trim().chars().map(|c| if matches!(c, '/' | '\\' | '\0') { '_' } else { c }).collect();
            format!("{k:0width$}_{clean}")
        })
        .collect()
}

/// Refuses class names that cannot be folder names or that would read back in another order.
fn check_class_names(classes: &[&str]) -> Result<()> {
    if let Some(bad) = classes.iter().find(|c| !usable_folder_name(c)) {
        return Err(Error::invalid(format!(
            "class name {bad:?} cannot be a folder name (empty, leading dot, slash or surrounding \
             spaces); see folder_class_names"
        )));
    }
    if let Some(w) = classes.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::invalid(format!(
            "class names {:?} and {:?} are not in strictly increasing order, so reading the folder \
             back would number the classes differently; see folder_class_names",
            w[0], w[1]
        )));
    }
    Ok(())
}

fn encode_png(set: &ImageSet, i: usize) -> std::result::Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let color = if set.channels == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(set.image(i), set.width as u32, set.height as u32, color)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(buf)
}

fn fill_tmp_dir(tmp: &Path, set: &ImageSet) -> Result<()> {
    std::fs::create_dir(tmp).map_err(|e| Error::io(tmp, "cannot create folder", e))?;
    for class in &set.classes {
        let d = tmp.join(class);
        std::fs::create_dir(&d).map_err(|e| Error::io(&d, "cannot create folder", e))?;
    }
    let digits = set.n.saturating_sub(1).to_string().len().max(5);
    (0..set.n).into_par_iter().try_for_each(|i| {
        let class = &set.classes[set.labels[i] as usize];
        let path = tmp.join(class).join(format!("{i:0digits$}.png"));
        let png = encode_png(set, i).map_err(|m| Error::format(&path, m))?;
        std::fs::write(&path, png).map_err(|e| Error::io(&path, "cannot write", e))
    })
}

/// Writes `set` as an image folder: `dir/<class>/<index>.png` for every image, plus an (empty)
/// folder for every class without images. Class names must be usable folder names in strictly
/// increasing order (see [`folder_class_names`]). `dir` must be absent or empty; everything is
/// written into a temporary folder beside it first (`<dir>.<pid>-<n>.tmp`, removed on failure),
/// which is then renamed to `dir`.
pub fn write_folder(dir: impl AsRef<Path>, set: &ImageSet) -> Result<()> {
    let dir = dir.as_ref();
    set.validate()?;
    let names: Vec<&str> = set.classes.iter().map(String::as_str).collect();
    check_class_names(&names)?;
    if u32::try_from(set.width.max(set.height)).is_err() {
        return Err(Error::invalid("images too large for PNG"));
    }
    let existing = dir.is_dir();
    if existing {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list", e))?;
        if entries.next().is_some() {
            return Err(Error::format(dir, "exists and is not empty; refusing to write into it"));
        }
    } else if dir.exists() {
        return Err(Error::format(dir, "exists and is not a folder"));
    }
    let tmp = tmp_path(dir);
    let result = fill_tmp_dir(&tmp, set).and_then(|()| {
        if existing {
            std::fs::remove_dir(dir).map_err(|e| Error::io(dir, "cannot replace empty folder", e))?;
        }
        rename_durable(&tmp, dir).map_err(|e| Error::io(dir, "cannot rename the temporary folder to", e))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;
    use image::{GrayImage, Rgb, RgbImage, Rgba, RgbaImage};

    fn err_of(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    fn named(mut s: ImageSet, names: &[&str]) -> ImageSet {
        s.classes = names.iter().map(|s| s.to_string()).collect();
        s
    }

    /// The set as `folder` reads it back: grouped by class, stable within a class.
    fn grouped(s: &ImageSet) -> ImageSet {
        let mut idx: Vec<usize> = (0..s.n).collect();
        idx.sort_by_key(|&i| s.labels[i]);
        s.subset(&idx)
    }

    #[test]
    fn round_trip_rgb_and_gray_with_train_test() {
        for c in [1, 3] {
            let d = tempfile::tempdir().unwrap();
            let train = named(tiny(11, 4, 6, c, 3), &["cat", "dog", "emu"]);
            let test = named(tiny(4, 4, 6, c, 3), &["cat", "dog", "emu"]);
            write_folder(d.path().join("train"), &train).unwrap();
            write_folder(d.path().join("test"), &test).unwrap();
            assert!(d.path().join("train/dog/00001.png").is_file());
            let s = folder(d.path()).unwrap();
            assert_eq!(s.train, grouped(&train));
            assert_eq!(s.test.unwrap(), grouped(&test));
            // the train folder alone is a set without test
            let s = folder(d.path().join("train")).unwrap();
            assert_eq!(s.train, grouped(&train));
            assert!(s.test.is_none());
        }
    }

    #[test]
    fn val_folder_empty_class_and_many_images() {
        let d = tempfile::tempdir().unwrap();
        let mut train = named(tiny(3, 2, 2, 3, 3), &["a", "b", "c"]);
        train.labels = vec![0, 2, 0]; // class b has no image
        write_folder(d.path().join("train"), &train).unwrap();
        std::fs::create_dir(d.path().join("val")).unwrap(); // empty folder is fine as a target
        write_folder(d.path().join("val"), &train).unwrap();
        assert!(d.path().join("val/b").is_dir());
        let s = folder(d.path()).unwrap();
        assert_eq!(s.train.classes, vec!["a", "b", "c"]);
        assert_eq!(s.test.unwrap(), grouped(&train));
        // more than 99999 images would need 6 digits: the width grows with n
        let big = named(tiny(2, 1, 1, 1, 1), &["x"]);
        write_folder(d.path().join("big"), &big).unwrap();
        assert!(d.path().join("big/x/00000.png").is_file());
    }

    #[test]
    fn ordering_extensions_hidden_and_mixed_gray_rgb() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for c in ["zebra", "ant", ".ipynb_checkpoints"] {
            std::fs::create_dir(p.join(c)).unwrap();
        }
        let px = |v: u8| RgbImage::from_pixel(3, 2, Rgb([v, v / 2, 255 - v]));
        px(10).save(p.join("zebra/b.PNG")).unwrap();
        px(20).save(p.join("zebra/a.png")).unwrap();
        GrayImage::from_pixel(3, 2, image::Luma([77])).save(p.join("ant/x.png")).unwrap();
        RgbaImage::from_pixel(3, 2, Rgba([1, 2, 3, 4])).save(p.join("ant/y.png")).unwrap();
        std::fs::write(p.join("ant/notes.txt"), "not an image").unwrap();
        std::fs::write(p.join("ant/._x.png"), "macOS resource fork").unwrap();
        std::fs::write(p.join(".ipynb_checkpoints/z.png"), "junk").unwrap();
        std::fs::write(p.join("stray.png"), "junk at the root").unwrap();
        let s = folder(p).unwrap().train;
        assert_eq!(s.classes, vec!["ant", "zebra"]);
        assert_eq!(s.labels, vec![0, 0, 1, 1]);
        assert_eq!((s.n, s.height, s.width, s.channels), (4, 2, 3, 3));
        assert_eq!(&s.image(0)[..3], &[77, 77, 77]); // gray replicated
        assert_eq!(&s.image(1)[..3], &[1, 2, 3]); // alpha dropped
        assert_eq!(&s.image(2)[..3], &[20, 10, 235]); // a.png before b.PNG
        assert_eq!(&s.image(3)[..3], &[10, 5, 245]);
    }

    #[test]
    fn jpeg_is_decoded() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("k")).unwrap();
        let img = RgbImage::from_pixel(16, 8, Rgb([200, 100, 50]));
        img.save(d.path().join("k/a.JPG")).unwrap();
        img.save(d.path().join("k/b.jpeg")).unwrap();
        let s = folder(d.path()).unwrap().train;
        assert_eq!((s.n, s.height, s.width, s.channels), (2, 8, 16, 3));
        let p = &s.image(1)[..3];
        assert!(p.iter().zip([200, 100, 50]).all(|(&a, b)| (a as i32 - b).abs() < 6), "{p:?}");
    }

    #[test]
    fn malformed_folders_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        assert!(err_of(folder(p.join("nope"))).ends_with("nope: no such folder"));
        assert!(err_of(folder(p)).contains("no class folders"));
        std::fs::create_dir_all(p.join("dogs")).unwrap();
        std::fs::write(p.join("dogs/readme.txt"), "x").unwrap();
        assert!(err_of(folder(p)).contains("no .png/.jpg/.jpeg images in any class folder"));
        // mixed sizes: the first offending file and both sizes
        RgbImage::new(4, 4).save(p.join("dogs/a.png")).unwrap();
        RgbImage::new(4, 4).save(p.join("dogs/b.png")).unwrap();
        RgbImage::new(5, 3).save(p.join("dogs/c.png")).unwrap();
        RgbImage::new(6, 6).save(p.join("dogs/d.png")).unwrap();
        let e = err_of(folder(p));
        assert!(e.contains("dogs/c.png: image is 5x3 but ") && e.contains("dogs/a.png is 4x4"), "{e}");
        std::fs::remove_file(p.join("dogs/c.png")).unwrap();
        std::fs::remove_file(p.join("dogs/d.png")).unwrap();
        // undecodable files
        std::fs::write(p.join("dogs/x.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
        let e = err_of(folder(p));
        assert!(e.contains("dogs/x.png: cannot decode PNG: "), "{e}");
        std::fs::remove_file(p.join("dogs/x.png")).unwrap();
        std::fs::write(p.join("dogs/y.jpg"), b"plain text").unwrap();
        let e = err_of(folder(p));
        assert!(e.contains("dogs/y.jpg: cannot decode JPEG: "), "{e}");
        std::fs::remove_file(p.join("dogs/y.jpg")).unwrap();
        std::fs::write(p.join("dogs/z.png"), b"GIF89a....").unwrap();
        let e = err_of(folder(p));
        assert!(e.contains("dogs/z.png: is a Gif image; only PNG and JPEG are read"), "{e}");
    }

    #[test]
    fn folders_named_by_label_number_keep_their_labels() {
        let d = tempfile::tempdir().unwrap();
        let set = tiny(6, 2, 2, 1, 3);
        // Labels 0, 1, 2 written as folders "3", "7", "12" (not in sorted order as strings).
        let s = named(set.clone(), &["a", "b", "c"]);
        write_folder(d.path().join("w"), &s).unwrap();
        for (from, to) in [("a", "3"), ("b", "7"), ("c", "12")] {
            std::fs::rename(d.path().join("w").join(from), d.path().join("w").join(to)).unwrap();
        }
        let r = folder(d.path().join("w")).unwrap().train;
        assert_eq!(r.classes.len(), 13);
        assert_eq!(r.classes[12], "12");
        let mut got: Vec<u32> = r.labels.clone();
        got.dedup();
        assert_eq!(got, vec![3, 7, 12], "labels are the folder numbers, in label order");
        // The images of folder "12" are those written for label 2.
        let per = set.height * set.width * set.channels;
        let first_c = set.labels.iter().position(|&l| l == 2).unwrap();
        let first_12 = r.labels.iter().position(|&l| l == 12).unwrap();
        assert_eq!(r.images[first_12 * per..(first_12 + 1) * per], set.images[first_c * per..(first_c + 1) * per]);
        // "7" and "07" would both be label 7.
        std::fs::create_dir(d.path().join("w/07")).unwrap();
        std::fs::copy(
            d.path().join("w/7").read_dir().unwrap().next().unwrap().unwrap().path(),
            d.path().join("w/07/x.png"),
        )
        .unwrap();
        assert!(err_of(folder(d.path().join("w"))).contains("a second folder for label 7"));
    }

    #[test]
    fn train_and_test_class_folders_must_match() {
        let d = tempfile::tempdir().unwrap();
        let s = named(tiny(2, 2, 2, 1, 2), &["a", "b"]);
        write_folder(d.path().join("train"), &s).unwrap();
        write_folder(d.path().join("test"), &named(tiny(2, 2, 2, 1, 2), &["a", "c"])).unwrap();
        let e = err_of(folder(d.path()));
        assert!(e.contains(r#"test: class folders ["a", "c"] differ from those of "#), "{e}");
    }

    #[test]
    fn writer_checks_names_and_target() {
        let d = tempfile::tempdir().unwrap();
        let s = named(tiny(2, 2, 2, 1, 2), &["b", "a"]);
        let e = err_of(write_folder(d.path().join("o"), &s));
        assert!(e.contains("\"b\" and \"a\" are not in strictly increasing order"), "{e}");
        let e = err_of(write_folder(d.path().join("o"), &named(s.clone(), &["T-shirt/top", "x"])));
        assert!(e.contains("\"T-shirt/top\" cannot be a folder name"), "{e}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // the helper makes any names writable, keeping label order
        let fm = folder_class_names(&crate::FASHION_MNIST_CLASSES);
        assert_eq!(fm[0], "0_T-shirt_top");
        assert_eq!(fm[9], "9_Ankle boot");
        assert_eq!(folder_class_names(&["a", "b"]), vec!["a", "b"]);
        let many: Vec<String> = (0..12).map(|i| format!("c{}", 11 - i)).collect();
        assert_eq!(folder_class_names(&many)[0], "00_c11");
        let s = s.with_classes(&folder_class_names(&["b", "a"])).unwrap();
        write_folder(d.path().join("o"), &s).unwrap();
        assert_eq!(folder(d.path().join("o")).unwrap().train, grouped(&s));
        // a non-empty target is refused
        let e = err_of(write_folder(d.path().join("o"), &s));
        assert!(e.ends_with("o: exists and is not empty; refusing to write into it"), "{e}");
    }

    #[test]
    fn writer_takes_a_folder_name_with_a_trailing_slash() {
        let d = tempfile::tempdir().unwrap();
        let s = named(tiny(3, 2, 2, 1, 2), &["a", "b"]);
        let target = format!("{}/", d.path().join("out").display());
        write_folder(&target, &s).unwrap();
        assert_eq!(folder(d.path().join("out")).unwrap().train, grouped(&s));
        // only the folder itself: no temporary left beside or inside it
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
