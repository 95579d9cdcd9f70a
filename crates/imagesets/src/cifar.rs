//! The binary versions of CIFAR-10 and CIFAR-100.
//!
//! **CIFAR-10** (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin` (training,
//! 10,000 images each) and `test_batch.bin`, each a plain sequence of 3,073-byte records:
//! 1 label byte (0..9) then 3,072 pixel bytes, which are three 32x32 planes (CHW order: all red
//! values row by row, then green, then blue). `batches.meta.txt` lists the class names one per line.
//!
//! **CIFAR-100** (`cifar-100-binary/`): `train.bin` (50,000 images) and `test.bin` (10,000), records
//! of 3,074 bytes: the coarse label (0..19), the fine label (0..99), then the 3,072 pixel bytes as
//! above. `coarse_label_names.txt` and `fine_label_names.txt` list the class names.
//!
//! Readers convert the planes to HWC (pixel by pixel, R G B), the layout of [`ImageSet`]; writers
//! convert back. There is no header, so a file's length must be a whole number of records.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::{create_dir_all, write_atomic, write_atomic_with};
use crate::error::{Error, Result};
use crate::idx::require_dir;
use crate::{chw_to_hwc, to_strings, ImageSet, Split};

/// CIFAR-10 class names, in label order (as in `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100 fine class names, in label order (as in `fine_label_names.txt`).
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// CIFAR-100 coarse class names (super-classes), in label order (as in `coarse_label_names.txt`).
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// The coarse label of each CIFAR-100 fine label (each coarse class has five fine classes).
pub const CIFAR100_COARSE_OF_FINE: [u8; 100] = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10,
    12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16,
    12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14,
    13,
];

/// Which of the two CIFAR-100 labels becomes [`ImageSet::labels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Label {
    /// The 100 fine classes.
    Fine,
    /// The 20 coarse classes (super-classes).
    Coarse,
}

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const IMAGE_BYTES: usize = 3 * PLANE;
/// Records per `data_batch_*.bin` file written.
const BATCH_RECORDS: usize = 10_000;

/// Appends one HWC image to `dst` as CHW planes.
fn hwc_to_chw(src: &[u8], dst: &mut Vec<u8>) {
    for c in 0..3 {
        dst.extend(src.iter().skip(c).step_by(3));
    }
}

/// The file layout of one CIFAR variant.
struct Layout {
    /// "CIFAR-10" or "CIFAR-100", for messages.
    name: &'static str,
    /// Label bytes before the pixels.
    label_bytes: usize,
    /// Which of them is used.
    label_at: usize,
}

const CIFAR10: Layout = Layout { name: "CIFAR-10", label_bytes: 1, label_at: 0 };

impl Layout {
    fn record(&self) -> usize {
        self.label_bytes + IMAGE_BYTES
    }
}

/// Appends the records of one file to `images`/`labels`, checking length and label range.
fn read_records(
    path: &Path,
    layout: &Layout,
    num_classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let rec = layout.record();
    if bytes.is_empty() {
        return Err(Error::format(path, format!("empty file: no {} records", layout.name)));
    }
    if bytes.len() % rec != 0 {
        return Err(Error::format(
            path,
            format!("truncated: {} bytes is not a multiple of the {rec}-byte {} record", bytes.len(), layout.name),
        ));
    }
    let n = bytes.len() / rec;
    images.reserve(n * IMAGE_BYTES);
    labels.reserve(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[layout.label_at] as usize;
        if label >= num_classes {
            return Err(Error::format(
                path,
                format!("record {i}: label {label} out of range for {num_classes} classes"),
            ));
        }
        labels.push(label as u32);
        images.extend(chw_to_hwc(&r[layout.label_bytes..], 3, |v| v));
    }
    Ok(())
}

fn read_set(paths: &[PathBuf], layout: &Layout, classes: Vec<String>) -> Result<ImageSet> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for p in paths {
        read_records(p, layout, classes.len(), &mut images, &mut labels)?;
    }
    Ok(ImageSet { n: labels.len(), images, labels, height: SIDE, width: SIDE, channels: 3, classes })
}

/// `dir/sub` if that folder exists, else `dir` (which must exist).
fn resolve(dir: &Path, sub: &str) -> Result<PathBuf> {
    require_dir(dir)?;
    let inner = dir.join(sub);
    Ok(if inner.is_dir() { inner } else { dir.to_path_buf() })
}

/// Class names from a text file (one per line, blank lines ignored), or `default` if it is absent.
fn class_names(path: &Path, default: &[&str]) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(to_strings(default));
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let text = String::from_utf8(text).map_err(|_| Error::format(path, "not UTF-8 text"))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() {
        return Err(Error::format(path, "no class names in it"));
    }
    Ok(names)
}

/// The numbers k of the files `data_batch_k.bin` in `dir` (canonical spelling only), sorted.
fn batch_numbers(dir: &Path) -> Result<Vec<usize>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list", e))?;
    let mut nums = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "cannot list", e))?;
        let name = entry.file_name();
        let Some(k) = name
            .to_str()
            .and_then(|n| n.strip_prefix("data_batch_"))
            .and_then(|n| n.strip_suffix(".bin"))
            .and_then(|k| k.parse::<usize>().ok().filter(|v| v.to_string() == k))
        else {
            continue;
        };
        nums.push(k);
    }
    nums.sort_unstable();
    Ok(nums)
}

/// Reads CIFAR-10 (binary version) from `dir` or its `cifar-10-batches-bin` sub-folder.
///
/// The training set is `data_batch_1.bin`, `data_batch_2.bin`, ... (five in the original; any
/// number from one up is read, but without gaps), the test set `test_batch.bin` if present.
/// Class names come from `batches.meta.txt` if present, else [`CIFAR10_CLASSES`].
pub fn cifar10(dir: impl AsRef<Path>) -> Result<Split> {
    let dir = resolve(dir.as_ref(), "cifar-10-batches-bin")?;
    let nums = batch_numbers(&dir)?;
    if nums.is_empty() {
        return Err(Error::format(&dir, "no data_batch_1.bin (CIFAR-10 binary version) found here"));
    }
    if let Some((i, &k)) = nums.iter().enumerate().find(|&(i, &k)| k != i + 1) {
        return Err(Error::format(
            &dir,
            format!("data_batch_{k}.bin is present but data_batch_{}.bin is missing", i + 1),
        ));
    }
    let classes = class_names(&dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    let train_files: Vec<PathBuf> = nums.iter().map(|k| dir.join(format!("data_batch_{k}.bin"))).collect();
    let train = read_set(&train_files, &CIFAR10, classes.clone())?;
    let test_file = dir.join("test_batch.bin");
    let test = if test_file.exists() { Some(read_set(&[test_file], &CIFAR10, classes)?) } else { None };
    Ok(Split { train, test })
}

/// Reads CIFAR-100 (binary version) from `dir` or its `cifar-100-binary` sub-folder: `train.bin`
/// (required) and `test.bin` (optional), with the fine or the coarse labels. Class names come from
/// `fine_label_names.txt` / `coarse_label_names.txt` if present, else [`CIFAR100_FINE_CLASSES`] /
/// [`CIFAR100_COARSE_CLASSES`].
pub fn cifar100(dir: impl AsRef<Path>, label: Cifar100Label) -> Result<Split> {
    let dir = resolve(dir.as_ref(), "cifar-100-binary")?;
    let train_file = dir.join("train.bin");
    if !train_file.exists() {
        return Err(Error::format(&dir, "no train.bin (CIFAR-100 binary version) found here"));
    }
    let (layout, classes) = match label {
        Cifar100Label::Fine => (
            Layout { name: "CIFAR-100", label_bytes: 2, label_at: 1 },
            class_names(&dir.join("fine_label_names.txt"), &CIFAR100_FINE_CLASSES)?,
        ),
        Cifar100Label::Coarse => (
            Layout { name: "CIFAR-100", label_bytes: 2, label_at: 0 },
            class_names(&dir.join("coarse_label_names.txt"), &CIFAR100_COARSE_CLASSES)?,
        ),
    };
    let train = read_set(&[train_file], &layout, classes.clone())?;
    let test_file = dir.join("test.bin");
    let test = if test_file.exists() { Some(read_set(&[test_file], &layout, classes)?) } else { None };
    Ok(Split { train, test })
}

/// Checks that `set` can be written as CIFAR records: valid, 32x32 RGB, labels fitting a byte.
fn check_writable(set: &ImageSet) -> Result<()> {
    set.validate()?;
    if (set.height, set.width, set.channels) != (SIDE, SIDE, 3) {
        return Err(Error::invalid(format!(
            "CIFAR needs 32x32 RGB images, this set has {}x{}x{}",
            set.height, set.width, set.channels
        )));
    }
    if let Some(&l) = set.labels.iter().find(|&&l| l > 255) {
        return Err(Error::invalid(format!("label {l} does not fit in a CIFAR label byte")));
    }
    if set.n == 0 {
        return Err(Error::invalid("cannot write an empty set as CIFAR"));
    }
    Ok(())
}

/// Writes images `range` of `set` as CIFAR records, each preceded by `prefix(i)` label bytes.
fn write_records(
    path: &Path,
    set: &ImageSet,
    range: std::ops::Range<usize>,
    prefix: impl Fn(usize) -> Vec<u8>,
) -> Result<()> {
    write_atomic_with(path, |w| {
        let mut rec = Vec::with_capacity(2 + IMAGE_BYTES);
        for i in range {
            rec.clear();
            rec.extend(prefix(i));
            hwc_to_chw(set.image(i), &mut rec);
            w.write_all(&rec)?;
        }
        Ok(())
    })
}

fn write_cifar10_batches(dir: &Path, set: &ImageSet, per_batch: usize) -> Result<()> {
    check_writable(set)?;
    if let Some(c) = set.classes.iter().find(|c| c.contains('\n') || c.trim().is_empty()) {
        return Err(Error::invalid(format!("class name {c:?} cannot be a line of batches.meta.txt")));
    }
    create_dir_all(dir)?;
    let batches = set.n.div_ceil(per_batch);
    for b in 0..batches {
        let range = b * per_batch..((b + 1) * per_batch).min(set.n);
        let path = dir.join(format!("data_batch_{}.bin", b + 1));
        write_records(&path, set, range, |i| vec![set.labels[i] as u8])?;
    }
    for k in batch_numbers(dir)?.into_iter().filter(|&k| k > batches) {
        let stale = dir.join(format!("data_batch_{k}.bin"));
        std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, "cannot remove stale batch", e))?;
    }
    let mut meta = set.classes.join("\n");
    meta.push('\n');
    write_atomic(&dir.join("batches.meta.txt"), meta.as_bytes())
}

/// Writes a CIFAR-10 training set into `dir` (created if needed): `data_batch_1.bin`, ... with
/// 10,000 records each (so five files for 50,000 images; the last file holds the remainder), and
/// `batches.meta.txt` with the class names. `data_batch_k.bin` files left from an earlier, larger
/// set are removed so that [`cifar10`] reads back exactly this set. Needs 32x32 RGB images.
pub fn write_cifar10_bin(dir: impl AsRef<Path>, set: &ImageSet) -> Result<()> {
    write_cifar10_batches(dir.as_ref(), set, BATCH_RECORDS)
}

/// Writes a CIFAR-10 test set as `dir/test_batch.bin` (`dir` created if needed).
pub fn write_cifar10_test(dir: impl AsRef<Path>, set: &ImageSet) -> Result<()> {
    check_writable(set)?;
    let dir = dir.as_ref();
    create_dir_all(dir)?;
    write_records(&dir.join("test_batch.bin"), set, 0..set.n, |i| vec![set.labels[i] as u8])
}

/// Writes a CIFAR-100 file (`train.bin` or `test.bin`) at `path`. `set.labels` are the fine labels;
/// the coarse labels are `coarse_labels` if given (one per image), else derived from the fine ones
/// with the standard [`CIFAR100_COARSE_OF_FINE`] (which needs every label below 100).
pub fn write_cifar100_bin(path: impl AsRef<Path>, set: &ImageSet, coarse_labels: Option<&[u32]>) -> Result<()> {
    check_writable(set)?;
    let coarse: Vec<u8> = match coarse_labels {
        Some(c) => {
            if c.len() != set.n {
                return Err(Error::invalid(format!("{} coarse labels for {} images", c.len(), set.n)));
            }
            if let Some(&l) = c.iter().find(|&&l| l > 255) {
                return Err(Error::invalid(format!("coarse label {l} does not fit in a byte")));
            }
            c.iter().map(|&l| l as u8).collect()
        }
        None => set
            .labels
            .iter()
            .map(|&l| {
                CIFAR100_COARSE_OF_FINE.get(l as usize).copied().ok_or_else(|| {
                    Error::invalid(format!("fine label {l} has no standard CIFAR-100 coarse class; pass coarse_labels"))
                })
            })
            .collect::<Result<_>>()?,
    };
    write_records(path.as_ref(), set, 0..set.n, |i| vec![coarse[i], set.labels[i] as u8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;

    fn err_of(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    /// A 32x32 RGB set with `n` images and labels `i % k`.
    fn rgb32(n: usize, k: usize) -> ImageSet {
        let mut s = tiny(n, 32, 32, 3, k);
        s.classes = (0..k).map(|i| format!("class {i}")).collect();
        s
    }

    #[test]
    fn chw_record_becomes_hwc() {
        let mut rec = vec![0u8; 3073];
        rec[0] = 3;
        rec[1 + 5 * 32 + 7] = 11; // R at row 5, col 7
        rec[1 + PLANE + 5 * 32 + 7] = 22; // G at row 5, col 7
        rec[1 + 2 * PLANE + 31 * 32] = 33; // B at row 31, col 0
        rec[1 + 31] = 44; // R at row 0, col 31
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("data_batch_1.bin"), &rec).unwrap();
        std::fs::write(d.path().join("test_batch.bin"), &rec).unwrap();
        let s = cifar10(d.path()).unwrap();
        let img = s.train.image(0);
        assert_eq!(s.train.labels, vec![3]);
        assert_eq!(s.train.classes[3], "cat");
        let at = |row: usize, col: usize, ch: usize| img[(row * 32 + col) * 3 + ch];
        assert_eq!((at(5, 7, 0), at(5, 7, 1), at(5, 7, 2)), (11, 22, 0));
        assert_eq!(at(31, 0, 2), 33);
        assert_eq!(at(0, 31, 0), 44);
        assert_eq!(img.iter().map(|&v| v as u32).sum::<u32>(), 11 + 22 + 33 + 44);
        // and back: writing gives the same record
        write_cifar10_test(d.path().join("out"), &s.test.unwrap()).unwrap();
        assert_eq!(std::fs::read(d.path().join("out/test_batch.bin")).unwrap(), rec);
    }

    #[test]
    fn cifar10_round_trip_with_batches_and_meta() {
        let d = tempfile::tempdir().unwrap();
        let train = rgb32(25, 4);
        let test = rgb32(3, 4);
        write_cifar10_batches(d.path(), &train, 10).unwrap();
        write_cifar10_test(d.path(), &test).unwrap();
        let sizes: Vec<u64> =
            (1..=3).map(|k| std::fs::metadata(d.path().join(format!("data_batch_{k}.bin"))).unwrap().len()).collect();
        assert_eq!(sizes, vec![10 * 3073, 10 * 3073, 5 * 3073]);
        let s = cifar10(d.path()).unwrap();
        assert_eq!(s.train, train);
        assert_eq!(s.test.unwrap(), test);
        // a smaller set written over it removes the stale batches
        write_cifar10_bin(d.path(), &test).unwrap();
        assert!(!d.path().join("data_batch_2.bin").exists());
        assert_eq!(cifar10(d.path()).unwrap().train, test);
        // no .tmp left behind
        let tmps = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"));
        assert_eq!(tmps.count(), 0);
    }

    #[test]
    fn cifar10_subfolder_default_names_and_no_test() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("cifar-10-batches-bin");
        let mut set = rgb32(3, 10);
        set.classes = to_strings(&CIFAR10_CLASSES);
        write_cifar10_bin(&sub, &set).unwrap();
        std::fs::remove_file(sub.join("batches.meta.txt")).unwrap();
        let s = cifar10(d.path()).unwrap();
        assert_eq!(s.train, set);
        assert!(s.test.is_none());
    }

    #[test]
    fn cifar10_malformed_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        // non-existent and empty folders
        assert!(err_of(cifar10(p.join("nope"))).ends_with("nope: no such folder"));
        assert!(err_of(cifar10(p)).contains("no data_batch_1.bin"));
        // truncated
        std::fs::write(p.join("data_batch_1.bin"), vec![0u8; 3073 * 2 - 5]).unwrap();
        let e = err_of(cifar10(p));
        assert!(
            e.ends_with("data_batch_1.bin: truncated: 6141 bytes is not a multiple of the 3073-byte CIFAR-10 record"),
            "{e}"
        );
        std::fs::write(p.join("data_batch_1.bin"), b"").unwrap();
        assert!(err_of(cifar10(p)).ends_with("data_batch_1.bin: empty file: no CIFAR-10 records"));
        // label out of range
        let mut two = vec![0u8; 3073 * 2];
        two[3073] = 12;
        std::fs::write(p.join("data_batch_1.bin"), &two).unwrap();
        let e = err_of(cifar10(p));
        assert!(e.ends_with("data_batch_1.bin: record 1: label 12 out of range for 10 classes"), "{e}");
        // label out of range for a shorter meta list
        two[3073] = 2;
        std::fs::write(p.join("data_batch_1.bin"), &two).unwrap();
        std::fs::write(p.join("batches.meta.txt"), "a\nb\n\n").unwrap();
        assert!(err_of(cifar10(p)).contains("label 2 out of range for 2 classes"));
        std::fs::write(p.join("batches.meta.txt"), "\n\n").unwrap();
        assert!(err_of(cifar10(p)).ends_with("batches.meta.txt: no class names in it"));
        std::fs::remove_file(p.join("batches.meta.txt")).unwrap();
        // a gap in the batch numbers
        std::fs::write(p.join("data_batch_3.bin"), &two).unwrap();
        let e = err_of(cifar10(p));
        assert!(e.contains("data_batch_3.bin is present but data_batch_2.bin is missing"), "{e}");
        std::fs::remove_file(p.join("data_batch_3.bin")).unwrap();
        // a bad test batch
        std::fs::write(p.join("test_batch.bin"), vec![0u8; 3074]).unwrap();
        assert!(err_of(cifar10(p)).contains("test_batch.bin: truncated: 3074 bytes"));
    }

    #[test]
    fn cifar_writers_refuse_wrong_shapes() {
        let d = tempfile::tempdir().unwrap();
        let e = err_of(write_cifar10_bin(d.path(), &tiny(2, 28, 28, 1, 10)));
        assert_eq!(e, "CIFAR needs 32x32 RGB images, this set has 28x28x1");
        let e = err_of(write_cifar10_bin(d.path(), &rgb32(0, 10)));
        assert!(e.contains("empty set"), "{e}");
        let mut bad = rgb32(2, 3);
        bad.labels[0] = 5;
        assert!(err_of(write_cifar10_test(d.path(), &bad)).contains("label 5 (image 0) out of range"));
    }

    #[test]
    fn cifar100_round_trip_fine_and_coarse() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("cifar-100-binary");
        std::fs::create_dir(&sub).unwrap();
        let mut train = rgb32(30, 100);
        train.classes = to_strings(&CIFAR100_FINE_CLASSES);
        let test = train.subset(&[29, 3, 0]);
        write_cifar100_bin(sub.join("train.bin"), &train, None).unwrap();
        write_cifar100_bin(sub.join("test.bin"), &test, None).unwrap();
        let fine = cifar100(d.path(), Cifar100Label::Fine).unwrap();
        assert_eq!(fine.train, train);
        assert_eq!(fine.test.unwrap(), test);
        let coarse = cifar100(d.path(), Cifar100Label::Coarse).unwrap();
        assert_eq!(coarse.train.images, train.images);
        assert_eq!(coarse.train.classes, to_strings(&CIFAR100_COARSE_CLASSES));
        let expect: Vec<u32> = train.labels.iter().map(|&l| CIFAR100_COARSE_OF_FINE[l as usize] as u32).collect();
        assert_eq!(coarse.train.labels, expect);
        // explicit coarse labels, and names files
        let mine: Vec<u32> = (0..30).map(|i| i % 2).collect();
        write_cifar100_bin(sub.join("train.bin"), &train, Some(&mine)).unwrap();
        std::fs::write(sub.join("coarse_label_names.txt"), "even\nodd\n").unwrap();
        std::fs::remove_file(sub.join("test.bin")).unwrap();
        let coarse = cifar100(&sub, Cifar100Label::Coarse).unwrap();
        assert_eq!(coarse.train.labels, mine);
        assert_eq!(coarse.train.classes, vec!["even", "odd"]);
        // bad record size; missing train.bin; wrong count of coarse labels
        std::fs::write(sub.join("test.bin"), vec![0u8; 3073]).unwrap();
        let e = err_of(cifar100(&sub, Cifar100Label::Fine));
        assert!(
            e.ends_with("test.bin: truncated: 3073 bytes is not a multiple of the 3074-byte CIFAR-100 record"),
            "{e}"
        );
        std::fs::remove_file(sub.join("train.bin")).unwrap();
        assert!(err_of(cifar100(&sub, Cifar100Label::Fine)).contains("no train.bin"));
        let e = err_of(write_cifar100_bin(sub.join("x.bin"), &train, Some(&mine[..3])));
        assert_eq!(e, "3 coarse labels for 30 images");
        // a coarse label beyond the names file
        let mut rec = vec![0u8; 3074];
        rec[0] = 2;
        std::fs::write(sub.join("train.bin"), &rec).unwrap();
        let e = err_of(cifar100(&sub, Cifar100Label::Coarse));
        assert!(e.ends_with("train.bin: record 0: label 2 out of range for 2 classes"), "{e}");
    }

    #[test]
    fn cifar100_tables_are_consistent() {
        let mut per_coarse = [0; 20];
        for &c in &CIFAR100_COARSE_OF_FINE {
            per_coarse[c as usize] += 1;
        }
        assert_eq!(per_coarse, [5; 20]);
        let mut sorted = CIFAR100_FINE_CLASSES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, CIFAR100_FINE_CLASSES, "fine names are in alphabetical order");
        assert_eq!(CIFAR100_FINE_CLASSES[CIFAR100_COARSE_OF_FINE.iter().position(|&c| c == 14).unwrap()], "baby");
        let fine = |name: &str| CIFAR100_FINE_CLASSES.iter().position(|&n| n == name).unwrap();
        let coarse = |f: &str| CIFAR100_COARSE_CLASSES[CIFAR100_COARSE_OF_FINE[fine(f)] as usize];
        assert_eq!(coarse("whale"), "aquatic_mammals");
        assert_eq!(coarse("tulip"), "flowers");
        assert_eq!(coarse("tractor"), "vehicles_2");
        assert_eq!(coarse("bicycle"), "vehicles_1");
        assert_eq!(coarse("worm"), "non-insect_invertebrates");
    }
}
