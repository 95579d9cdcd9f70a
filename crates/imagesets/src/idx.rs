//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! An IDX file is a big-endian header followed by the data:
//!
//! * a 4-byte magic `0x00 0x00 TYPE NDIM`; this crate reads TYPE `0x08` (unsigned byte), so
//!   `0x00000801` for labels (1 dimension) and `0x00000803` for images (3 dimensions);
//! * NDIM big-endian `u32` sizes: `N` for labels, `N, H, W` for images;
//! * the `N * H * W` (or `N`) bytes, row-major: image after image, row after row.
//!
//! A set is a pair of files, e.g. `train-images-idx3-ubyte` + `train-labels-idx1-ubyte`, each of
//! which may be gzipped (`.gz`; detected by the `1f 8b` magic bytes, not by the name). Images are
//! grayscale, so the [`ImageSet`] has 1 channel. As an extension, RGB images are read and written
//! as `0x00000804` with sizes `N, H, W, 3` (the last dimension is the channel), so that any
//! [`ImageSet`] can be written as IDX.
//!
//! IDX files carry no class names: [`idx_pair`] names classes `"0"`, `"1"`, ... (at least ten);
//! [`mnist_dir`] takes the names (see [`MNIST_CLASSES`], [`FASHION_MNIST_CLASSES`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::atomic::write_atomic_with;
use crate::error::{Error, Result};
use crate::{check_labels, numeric_classes, to_strings, ImageSet, Split, MAX_ELEMENTS};

/// MNIST class names: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Extension: RGB images, sizes N, H, W, C.
const IMAGES_HWC_MAGIC: u32 = 0x0000_0804;

/// Images parsed from an IDX file, borrowing the pixel bytes.
struct RawImages<'a> {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    pixels: &'a [u8],
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Gunzips `bytes` if they start with the gzip magic, refusing more than `MAX_ELEMENTS` (+ header).
fn maybe_gunzip(bytes: &[u8]) -> std::result::Result<std::borrow::Cow<'_, [u8]>, String> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let cap = (MAX_ELEMENTS + 64) as u64;
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress gzip: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!("gzip decompresses to more than {cap} bytes, refused"));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn check_magic(b: &[u8], accepted: &[u32], what: &str) -> std::result::Result<u32, String> {
    if b.len() < 4 {
        return Err(format!("{} bytes is too short for an IDX header ({what})", b.len()));
    }
    let magic = be_u32(b, 0);
    if accepted.contains(&magic) {
        Ok(magic)
    } else {
        Err(format!("wrong magic 0x{magic:08x}, expected 0x{:08x} ({what})", accepted[0]))
    }
}

fn parse_images(b: &[u8]) -> std::result::Result<RawImages<'_>, String> {
    let magic = check_magic(b, &[IMAGES_MAGIC, IMAGES_HWC_MAGIC], "IDX images")?;
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if b.len() < header {
        return Err(format!("truncated header: {} bytes, an {ndim}-dimension IDX header needs {header}", b.len()));
    }
    let dims: Vec<usize> = (0..ndim).map(|i| be_u32(b, 4 + 4 * i) as usize).collect();
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    let c = if ndim == 4 { dims[3] } else { 1 };
    let shape = if ndim == 4 { format!("{h}x{w}x{c}") } else { format!("{h}x{w}") };
    if ndim == 4 && c != 1 && c != 3 {
        return Err(format!("header says {c} channels; only 1 or 3 are supported"));
    }
    if h == 0 || w == 0 {
        return Err(format!("header says images of {shape}: empty images"));
    }
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&e| e <= MAX_ELEMENTS);
    let Some(expected) = expected else {
        return Err(format!("header says {n} images of {shape}: more than {MAX_ELEMENTS} bytes, refused"));
    };
    let have = b.len() - header;
    if have != expected {
        return Err(format!("header says {n} images of {shape} = {expected} bytes, file has {have}"));
    }
    Ok(RawImages { n, h, w, c, pixels: &b[header..] })
}

fn parse_labels(b: &[u8]) -> std::result::Result<&[u8], String> {
    check_magic(b, &[LABELS_MAGIC], "IDX labels")?;
    if b.len() < 8 {
        return Err(format!("truncated header: {} bytes, an IDX labels header needs 8", b.len()));
    }
    let n = be_u32(b, 4) as usize;
    let have = b.len() - 8;
    if n != have {
        return Err(format!("header says {n} labels, file has {have}"));
    }
    Ok(&b[8..])
}

/// Why a pair of IDX byte strings could not be assembled into a set.
enum PairError {
    Images(String),
    Labels(String),
    Counts { images: usize, labels: usize },
}

/// Builds the set from the (possibly gzipped) bytes of an images file and a labels file.
fn assemble(images: &[u8], labels: &[u8]) -> std::result::Result<ImageSet, PairError> {
    let images = maybe_gunzip(images).map_err(PairError::Images)?;
    let labels = maybe_gunzip(labels).map_err(PairError::Labels)?;
    let raw = parse_images(&images).map_err(PairError::Images)?;
    let labels = parse_labels(&labels).map_err(PairError::Labels)?;
    if labels.len() != raw.n {
        return Err(PairError::Counts { images: raw.n, labels: labels.len() });
    }
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    Ok(ImageSet {
        images: raw.pixels.to_vec(),
        labels: labels.iter().map(|&l| l as u32).collect(),
        n: raw.n,
        height: raw.h,
        width: raw.w,
        channels: raw.c,
        classes: numeric_classes((max + 1).max(10)),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))
}

/// Reads an IDX images file and its IDX labels file (each raw or gzipped).
///
/// Classes are named `"0"`, `"1"`, ... up to the largest label, at least ten of them; use
/// [`ImageSet::with_classes`] to name them.
pub fn idx_pair(images_path: impl AsRef<Path>, labels_path: impl AsRef<Path>) -> Result<ImageSet> {
    let (ip, lp) = (images_path.as_ref(), labels_path.as_ref());
    let images = read_file(ip)?;
    let labels = read_file(lp)?;
    assemble(&images, &labels).map_err(|e| match e {
        PairError::Images(m) => Error::format(ip, m),
        PairError::Labels(m) => Error::format(lp, m),
        PairError::Counts { images, labels } => {
            Error::format(ip, format!("{images} images, but {} has {labels} labels", lp.display()))
        }
    })
}

/// Like [`idx_pair`] for bytes in memory (e.g. from `include_bytes!`); `name` stands for the file
/// names in error messages, as `"{name} (images)"` and `"{name} (labels)"`.
pub fn idx_pair_from_bytes(images: &[u8], labels: &[u8], name: &str) -> Result<ImageSet> {
    assemble(images, labels).map_err(|e| match e {
        PairError::Images(m) => Error::format_named(&format!("{name} (images)"), m),
        PairError::Labels(m) => Error::format_named(&format!("{name} (labels)"), m),
        PairError::Counts { images, labels } => Error::format_named(
            &format!("{name} (images)"),
            format!("{images} images, but {name} (labels) has {labels} labels"),
        ),
    })
}

/// Finds `{prefix}-{kind}-idx{d}-ubyte` or `{prefix}-{kind}.idx{d}-ubyte`, each optionally `.gz`.
fn find_idx(dirs: &[PathBuf], prefix: &str, kind: &str, d: u32) -> Option<PathBuf> {
    let names = [
        format!("{prefix}-{kind}-idx{d}-ubyte"),
        format!("{prefix}-{kind}-idx{d}-ubyte.gz"),
        format!("{prefix}-{kind}.idx{d}-ubyte"),
        format!("{prefix}-{kind}.idx{d}-ubyte.gz"),
    ];
    dirs.iter().flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// Checks that `dir` is an existing folder.
pub(crate) fn require_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else if dir.exists() {
        Err(Error::format(dir, "not a folder"))
    } else {
        Err(Error::format(dir, "no such folder"))
    }
}

/// Reads an MNIST-style folder: `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (required)
/// and `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (optional, as a pair), each possibly
/// gzipped (`.gz`) or named with a dot (`train-images.idx3-ubyte`). The files may also lie in a
/// `raw` sub-folder (torchvision's layout). `classes` names the labels, e.g.
/// [`FASHION_MNIST_CLASSES`]; a label `>= classes.len()` is an error.
pub fn mnist_dir(dir: impl AsRef<Path>, classes: &[&str]) -> Result<Split> {
    let dir = dir.as_ref();
    require_dir(dir)?;
    if classes.is_empty() {
        return Err(Error::invalid("mnist_dir: no class names given"));
    }
    let dirs = [dir.to_path_buf(), dir.join("raw")];
    let read = |prefix: &str, required: bool| -> Result<Option<ImageSet>> {
        let images = find_idx(&dirs, prefix, "images", 3);
        let labels = find_idx(&dirs, prefix, "labels", 1);
        let (ip, lp) = match (images, labels) {
            (Some(i), Some(l)) => (i, l),
            (None, None) if !required => return Ok(None),
            (i, _) => {
                let (kind, d) = if i.is_none() { ("images", 3) } else { ("labels", 1) };
                return Err(Error::format(
                    dir,
                    format!(
                        "no {prefix}-{kind}-idx{d}-ubyte[.gz] (or {prefix}-{kind}.idx{d}-ubyte[.gz]) found here or in raw/"
                    ),
                ));
            }
        };
        let mut set = idx_pair(&ip, &lp)?;
        check_labels(&set.labels, classes.len()).map_err(|m| Error::format(&lp, m))?;
        set.classes = to_strings(classes);
        Ok(Some(set))
    };
    let train = read("train", true)?.expect("required set is present");
    let test = read("t10k", false)?;
    Ok(Split { train, test })
}

fn images_bytes(set: &ImageSet) -> Result<Vec<u8>> {
    let too_big = |d: usize| u32::try_from(d).is_err();
    if [set.n, set.height, set.width].into_iter().any(too_big) {
        return Err(Error::invalid("image set too large for IDX (sizes must fit in u32)"));
    }
    let mut header = Vec::with_capacity(20);
    if set.channels == 1 {
        header.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    } else {
        header.extend_from_slice(&IMAGES_HWC_MAGIC.to_be_bytes());
    }
    for d in [set.n, set.height, set.width] {
        header.extend_from_slice(&(d as u32).to_be_bytes());
    }
    if set.channels != 1 {
        header.extend_from_slice(&(set.channels as u32).to_be_bytes());
    }
    Ok(header)
}

fn write_maybe_gzip(path: &Path, parts: &[&[u8]], gzip: bool) -> Result<()> {
    write_atomic_with(path, |w| {
        if gzip {
            let mut gz = GzEncoder::new(w, Compression::default());
            for p in parts {
                gz.write_all(p)?;
            }
            gz.finish()?;
        } else {
            for p in parts {
                w.write_all(p)?;
            }
        }
        Ok(())
    })
}

/// Writes `set` as an IDX images file and an IDX labels file, gzipped if `gzip` (the names are
/// used as given: add `.gz` yourself). Grayscale sets get the standard `0x00000803` header, RGB sets
/// the `0x00000804` (N, H, W, C) extension. Labels must fit in a byte.
pub fn write_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    set: &ImageSet,
    gzip: bool,
) -> Result<()> {
    set.validate()?;
    if let Some(&l) = set.labels.iter().find(|&&l| l > 255) {
        return Err(Error::invalid(format!("label {l} does not fit in the u8 labels of IDX")));
    }
    let header = images_bytes(set)?;
    let labels: Vec<u8> = set.labels.iter().map(|&l| l as u8).collect();
    let mut labels_header = LABELS_MAGIC.to_be_bytes().to_vec();
    labels_header.extend_from_slice(&(set.n as u32).to_be_bytes());
    write_maybe_gzip(images_path.as_ref(), &[&header, &set.images], gzip)?;
    write_maybe_gzip(labels_path.as_ref(), &[&labels_header, &labels], gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;

    fn idx_images(n: u32, h: u32, w: u32, data: &[u8]) -> Vec<u8> {
        let mut v = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, h, w] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn idx_labels(n: u32, data: &[u8]) -> Vec<u8> {
        let mut v = LABELS_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn err_of(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn parses_hand_made_bytes_raw_and_gzipped() {
        let px: Vec<u8> = (0..2 * 2 * 3).collect();
        let im = idx_images(2, 2, 3, &px);
        let lb = idx_labels(2, &[7, 3]);
        for (i, l) in [(im.clone(), lb.clone()), (gz(&im), gz(&lb)), (im.clone(), gz(&lb))] {
            let s = idx_pair_from_bytes(&i, &l, "t").unwrap();
            assert_eq!((s.n, s.height, s.width, s.channels), (2, 2, 3, 1));
            assert_eq!(s.images, px);
            assert_eq!(s.labels, vec![7, 3]);
            assert_eq!(s.classes, to_strings(&MNIST_CLASSES));
            // row-major: pixel (row 1, col 2) of image 1
            assert_eq!(s.image(1)[3 + 2], 6 + 5);
            s.validate().unwrap();
        }
        // a label above 9 widens the numeric class list
        let s = idx_pair_from_bytes(&im, &idx_labels(2, &[0, 14]), "t").unwrap();
        assert_eq!(s.num_classes(), 15);
    }

    #[test]
    fn malformed_bytes_are_clear_errors() {
        let px = vec![0u8; 2 * 28 * 28];
        let im = idx_images(2, 28, 28, &px);
        let lb = idx_labels(2, &[1, 2]);
        // wrong magic (labels file given as images and vice versa)
        assert_eq!(
            err_of(idx_pair_from_bytes(&lb, &lb, "x")),
            "x (images): wrong magic 0x00000801, expected 0x00000803 (IDX images)"
        );
        assert_eq!(
            err_of(idx_pair_from_bytes(&im, &im, "x")),
            "x (labels): wrong magic 0x00000803, expected 0x00000801 (IDX labels)"
        );
        // truncated pixels, trailing bytes
        let e = err_of(idx_pair_from_bytes(&im[..im.len() - 10], &lb, "x"));
        assert_eq!(e, "x (images): header says 2 images of 28x28 = 1568 bytes, file has 1558");
        let mut long = im.clone();
        long.push(0);
        assert!(err_of(idx_pair_from_bytes(&long, &lb, "x")).contains("= 1568 bytes, file has 1569"));
        // truncated header, empty file
        assert!(err_of(idx_pair_from_bytes(&im[..10], &lb, "x")).contains("truncated header: 10 bytes"));
        assert!(err_of(idx_pair_from_bytes(&[], &lb, "x")).contains("0 bytes is too short"));
        assert!(err_of(idx_pair_from_bytes(&im, &lb[..6], "x")).contains("x (labels): truncated header: 6 bytes"));
        // labels count vs. data
        assert_eq!(
            err_of(idx_pair_from_bytes(&im, &idx_labels(3, &[1, 2]), "x")),
            "x (labels): header says 3 labels, file has 2"
        );
        // inconsistent counts between files
        let e = err_of(idx_pair_from_bytes(&im, &idx_labels(1, &[1]), "x"));
        assert_eq!(e, "x (images): 2 images, but x (labels) has 1 labels");
        // absurd declared sizes: refused before allocating
        let e = err_of(idx_pair_from_bytes(&idx_images(u32::MAX, 65535, 65535, &[]), &lb, "x"));
        assert!(e.contains("more than 2147483648 bytes, refused"), "{e}");
        assert!(err_of(idx_pair_from_bytes(&idx_images(1, 0, 5, &[]), &lb, "x")).contains("empty images"));
        // broken gzip
        let mut bad = gz(&im);
        bad.truncate(bad.len() / 2);
        assert!(err_of(idx_pair_from_bytes(&bad, &lb, "x")).contains("x (images): cannot decompress gzip"));
    }

    #[test]
    fn file_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let ip = d.path().join("train-images-idx3-ubyte");
        let lp = d.path().join("train-labels-idx1-ubyte.gz");
        std::fs::write(&ip, idx_images(2, 1, 1, &[1, 2])).unwrap();
        std::fs::write(&lp, gz(&idx_images(2, 1, 1, &[1, 2]))).unwrap();
        let e = err_of(idx_pair(&ip, &lp));
        assert!(
            e.ends_with("train-labels-idx1-ubyte.gz: wrong magic 0x00000803, expected 0x00000801 (IDX labels)"),
            "{e}"
        );
        std::fs::write(&lp, gz(&idx_labels(3, &[1, 2, 3]))).unwrap();
        let e = err_of(idx_pair(&ip, &lp));
        assert!(
            e.contains("train-images-idx3-ubyte: 2 images, but ")
                && e.ends_with("train-labels-idx1-ubyte.gz has 3 labels"),
            "{e}"
        );
        let e = err_of(idx_pair(d.path().join("nope"), &lp));
        assert!(e.contains("nope: cannot read: "), "{e}");
    }

    #[test]
    fn round_trip_gray_and_rgb_raw_and_gzip() {
        let d = tempfile::tempdir().unwrap();
        for (c, gzip) in [(1, false), (1, true), (3, false), (3, true)] {
            let set = tiny(7, 4, 5, c, 10);
            let ip = d.path().join(format!("i{c}{gzip}"));
            let lp = d.path().join(format!("l{c}{gzip}"));
            write_idx_pair(&ip, &lp, &set, gzip).unwrap();
            let raw = std::fs::read(&ip).unwrap();
            assert_eq!(raw[..2] == [0x1f, 0x8b], gzip);
            assert_eq!(idx_pair(&ip, &lp).unwrap(), set);
        }
    }

    #[test]
    fn writer_refuses_labels_over_255() {
        let d = tempfile::tempdir().unwrap();
        let mut set = tiny(2, 1, 1, 1, 300);
        set.labels[1] = 299;
        let e = err_of(write_idx_pair(d.path().join("i"), d.path().join("l"), &set, false));
        assert!(e.contains("label 299 does not fit"), "{e}");
    }

    #[test]
    fn mnist_dir_finds_names_and_checks_labels() {
        let d = tempfile::tempdir().unwrap();
        let set = tiny(6, 3, 3, 1, 10);
        let test = tiny(2, 3, 3, 1, 10);
        let p = d.path();
        write_idx_pair(p.join("train-images-idx3-ubyte.gz"), p.join("train-labels-idx1-ubyte.gz"), &set, true).unwrap();
        // train only: test is None
        let s = mnist_dir(p, &FASHION_MNIST_CLASSES).unwrap();
        assert_eq!(s.train.images, set.images);
        assert_eq!(s.train.classes[0], "T-shirt/top");
        assert!(s.test.is_none());
        // dotted names for the test pair, in raw/
        std::fs::create_dir(p.join("raw")).unwrap();
        write_idx_pair(p.join("raw/t10k-images.idx3-ubyte"), p.join("raw/t10k-labels.idx1-ubyte"), &test, false)
            .unwrap();
        let s = mnist_dir(p, &MNIST_CLASSES).unwrap();
        assert_eq!(s.test.unwrap().labels, test.labels);
        // half a test pair
        std::fs::remove_file(p.join("raw/t10k-labels.idx1-ubyte")).unwrap();
        let e = err_of(mnist_dir(p, &MNIST_CLASSES));
        assert!(e.contains("no t10k-labels-idx1-ubyte[.gz]"), "{e}");
        // labels out of range for the class list
        let e = err_of(mnist_dir(p, &["a", "b", "c"]));
        assert!(e.contains("train-labels-idx1-ubyte.gz: label 3 (image 3) out of range for 3 classes"), "{e}");
        // missing train, missing dir
        let empty = tempfile::tempdir().unwrap();
        let e = err_of(mnist_dir(empty.path(), &MNIST_CLASSES));
        assert!(e.contains("no train-images-idx3-ubyte[.gz]"), "{e}");
        let e = err_of(mnist_dir(p.join("nothing"), &MNIST_CLASSES));
        assert!(e.ends_with("nothing: no such folder"), "{e}");
    }

    fn builtin_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/builtin")
    }

    #[test]
    fn reads_the_builtin_fashion_mnist_subset() {
        let s = mnist_dir(builtin_dir(), &FASHION_MNIST_CLASSES).unwrap();
        let test = s.test.expect("builtin has a test set");
        for (set, n, per_class) in [(&s.train, 6000, 600), (&test, 1000, 100)] {
            set.validate().unwrap();
            assert_eq!((set.n, set.height, set.width, set.channels), (n, 28, 28, 1));
            assert_eq!(set.class_counts(), vec![per_class; 10]);
            assert_eq!(set.classes, to_strings(&FASHION_MNIST_CLASSES));
            assert!(set.images.iter().any(|&p| p > 200), "images are not blank");
        }
        // the same bytes through the in-memory entry point
        let b = builtin_dir();
        let s2 = idx_pair_from_bytes(
            &std::fs::read(b.join("t10k-images-idx3-ubyte.gz")).unwrap(),
            &std::fs::read(b.join("t10k-labels-idx1-ubyte.gz")).unwrap(),
            "builtin test",
        )
        .unwrap()
        .with_classes(&FASHION_MNIST_CLASSES)
        .unwrap();
        assert_eq!(s2, test);
    }

    #[test]
    #[ignore = "needs the full Fashion-MNIST in /usr/share/datasets/fashion-mnist"]
    fn reads_full_fashion_mnist() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        let s = mnist_dir(dir, &FASHION_MNIST_CLASSES).unwrap();
        assert_eq!((s.train.n, s.train.height, s.train.width), (60000, 28, 28));
        assert_eq!(s.train.class_counts(), vec![6000; 10]);
        let test = s.test.unwrap();
        assert_eq!(test.n, 10000);
        assert_eq!(test.class_counts(), vec![1000; 10]);
    }
}
