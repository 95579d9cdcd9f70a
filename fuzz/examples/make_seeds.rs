//! Writes the seed corpus: `fuzz/corpus/<target>/seed-*` (see ../README.md).
//!
//! `cd fuzz && cargo run --example make_seeds` (no fuzzing instrumentation needed). Copies the small
//! torchfile fixtures and generates tiny IDX, CIFAR, safetensors, PNG and JPEG files. Seeds are
//! deterministic; rerunning overwrites them. After a fuzzing session `cargo fuzz cmin` replaces
//! each folder with a minimised one (the `seed-` names may then be gone).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};
use quarantine_fuzz::{cifar_input, idx_input, zip_pickle_input};
use torchfile::{DType, RawTensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// The stored entries of a zip, from its central directory (enough for the fixtures).
fn zip_entries(z: &[u8]) -> Vec<(String, Vec<u8>)> {
    let rd16 = |at: usize| u16::from_le_bytes([z[at], z[at + 1]]) as usize;
    let rd32 = |at: usize| u32::from_le_bytes(z[at..at + 4].try_into().unwrap()) as usize;
    let eocd = (0..z.len() - 21)
        .rev()
        .find(|&i| z[i..i + 4] == [0x50, 0x4b, 5, 6])
        .unwrap();
    let (count, mut at) = (rd16(eocd + 10), rd32(eocd + 16));
    let mut out = Vec::new();
    for _ in 0..count {
        let method = rd16(at + 10);
        let csize = rd32(at + 20);
        let (nlen, xlen, clen) = (rd16(at + 28), rd16(at + 30), rd16(at + 32));
        let off = rd32(at + 42);
        let name = String::from_utf8(z[at + 46..at + 46 + nlen].to_vec()).unwrap();
        let start = off + 30 + rd16(off + 26) + rd16(off + 28);
        let raw = &z[start..start + csize];
        let data = match method {
            0 => raw.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec(raw).unwrap(),
            m => panic!("method {m}"),
        };
        out.push((name, data));
        at += 46 + nlen + xlen + clen;
    }
    out
}

fn torch_seeds() {
    let fixtures = root().join("../crates/torchfile/tests/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() >= 20_000 || file.ends_with(".json") {
            continue;
        }
        match torchfile::sniff(&bytes) {
            Some(torchfile::Format::Zip) => {
                write("torch_zip", &file, &bytes);
                // The same checkpoint as torch_zip_pickle input: data.pkl, storages 0..n.
                let entries = zip_entries(&bytes);
                let find = |suffix: &str| {
                    entries
                        .iter()
                        .find(|(n, _)| n.ends_with(suffix))
                        .map(|(_, d)| d.as_slice())
                };
                let pkl = find("data.pkl").unwrap();
                let storages: Vec<&[u8]> =
                    (0..).map_while(|k| find(&format!("/data/{k}"))).collect();
                write(
                    "torch_zip_pickle",
                    &file.replace(".pt", ".bin"),
                    &zip_pickle_input(pkl, &storages),
                );
            }
            Some(torchfile::Format::Legacy) => write("torch_legacy", &file, &bytes),
            Some(torchfile::Format::Safetensors) => write("safetensors", &file, &bytes),
            None => panic!("{file}: unknown format"),
        }
    }

    // Generated safetensors: every dtype, a scalar, an empty tensor, metadata.
    let tmp = std::env::temp_dir().join(format!("make-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut tensors = Vec::new();
    for (i, d) in DType::ALL.into_iter().enumerate() {
        let shape: Vec<usize> = match i % 3 {
            0 => vec![2, 3],
            1 => vec![],
            _ => vec![0, 4],
        };
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|v| v as f64 - 1.5).collect();
        tensors.push((
            format!("t.{}", d.name()),
            RawTensor::from_f64(d, &shape, &values),
        ));
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let p = tmp.join("all.safetensors");
    torchfile::save_safetensors(&p, &tensors, &meta).unwrap();
    write(
        "safetensors",
        "all_dtypes.safetensors",
        &std::fs::read(&p).unwrap(),
    );
    let one = vec![(
        "conv.weight".to_string(),
        RawTensor::from_f32(&[2, 1, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]),
    )];
    torchfile::save_safetensors(&p, &one, &BTreeMap::new()).unwrap();
    write(
        "safetensors",
        "one_f32.safetensors",
        &std::fs::read(&p).unwrap(),
    );
    // The same as a zip checkpoint written by torchfile itself.
    let p = tmp.join("one.pt");
    torchfile::save_pt(&p, &one).unwrap();
    write("torch_zip", "save_pt_one.pt", &std::fs::read(&p).unwrap());
    let _ = std::fs::remove_dir_all(&tmp);
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn idx_seeds() {
    // 3 grayscale 2x2 images, labels 0 1 9.
    let mut images = [be(0x803), be(3), be(2), be(2)].concat();
    images.extend((0..12).map(|i| i * 20));
    let labels = [&be(0x801)[..], &be(3), &[0, 1, 9]].concat();
    write("idx", "gray", &idx_input(&images, &labels));
    write("idx", "gray_gz", &idx_input(&gz(&images), &gz(&labels)));
    // 2 RGB 1x2 images (the HWC 4-dimension variant).
    let mut rgb = [be(0x804), be(2), be(1), be(2), be(3)].concat();
    rgb.extend(0..12u8);
    let labels2 = [&be(0x801)[..], &be(2), &[4, 12]].concat();
    write("idx", "rgb", &idx_input(&rgb, &labels2));
    write("idx", "rgb_gz_labels", &idx_input(&rgb, &gz(&labels2)));
}

fn cifar_seeds() {
    let record = |labels: &[u8], seed: u8| {
        let mut r = labels.to_vec();
        r.extend((0..3072u32).map(|i| (i as u8).wrapping_mul(seed)));
        r
    };
    let c10 = [record(&[3], 7), record(&[9], 13)].concat();
    let names10 = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    write("cifar", "c10", &cifar_input(0, b"", &c10));
    write(
        "cifar",
        "c10_test_meta",
        &cifar_input(2 | 4, names10, &c10[..3073]),
    );
    write(
        "cifar",
        "c10_two_batches",
        &cifar_input(0x10, b"", &c10[..3073]),
    );
    let c100 = record(&[19, 99], 5);
    write("cifar", "c100_fine", &cifar_input(1 | 2, b"", &c100));
    write(
        "cifar",
        "c100_coarse_names",
        &cifar_input(1 | 4 | 8, b"a\nb\n\nc\n", &c100),
    );
}

fn png(w: u32, h: u32, color: ExtendedColorType, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(bytes, w, h, color)
        .unwrap();
    out
}

fn jpeg(w: u32, h: u32, color: ExtendedColorType, bytes: &[u8], quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(bytes, w, h, color)
        .unwrap();
    out
}

fn image_seeds() {
    let ramp = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 37 % 256) as u8).collect() };
    write(
        "image_folder",
        "gray.png",
        &png(4, 4, ExtendedColorType::L8, &ramp(16)),
    );
    write(
        "image_folder",
        "rgb.png",
        &png(3, 2, ExtendedColorType::Rgb8, &ramp(18)),
    );
    write(
        "image_folder",
        "rgba.png",
        &png(2, 2, ExtendedColorType::Rgba8, &ramp(16)),
    );
    write(
        "image_folder",
        "gray16.png",
        &png(2, 3, ExtendedColorType::L16, &ramp(12)),
    );
    write(
        "image_folder",
        "gray.jpg",
        &jpeg(8, 8, ExtendedColorType::L8, &ramp(64), 90),
    );
    write(
        "image_folder",
        "rgb.jpg",
        &jpeg(9, 7, ExtendedColorType::Rgb8, &ramp(189), 50),
    );
}

fn main() {
    torch_seeds();
    idx_seeds();
    cifar_seeds();
    image_seeds();
    verify();
    let corpus = root().join("corpus");
    let mut total = 0;
    for dir in std::fs::read_dir(&corpus).unwrap() {
        let dir = dir.unwrap().path();
        let (mut n, mut bytes) = (0, 0);
        for f in std::fs::read_dir(&dir).unwrap() {
            n += 1;
            bytes += f.unwrap().metadata().unwrap().len();
        }
        total += bytes;
        println!("{}: {n} files, {bytes} bytes", display(&dir));
    }
    println!("total {total} bytes");
}

fn display(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Prints what each seed gives when read the way its target reads it (the seeds should mostly
/// load, so fuzzing starts from deep paths).
fn verify() {
    let corpus = root().join("corpus");
    let tmp = std::env::temp_dir().join(format!("make-seeds-verify-{}", std::process::id()));
    for target in [
        "torch_zip",
        "torch_zip_pickle",
        "torch_legacy",
        "safetensors",
        "idx",
        "image_folder",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(corpus.join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let name = Path::new("seed");
            let what = match target {
                "idx" => {
                    let (a, b) = quarantine_fuzz::idx_split(&data).unwrap();
                    imagesets::idx_pair_from_bytes(a, b, "seed")
                        .map(|s| format!("{} images {}x{}x{}", s.n, s.height, s.width, s.channels))
                        .map_err(|e| e.to_string())
                }
                "image_folder" => {
                    let class = tmp.join("c");
                    let _ = std::fs::remove_dir_all(&tmp);
                    std::fs::create_dir_all(&class).unwrap();
                    let ext = if data.starts_with(b"\x89PNG") {
                        "png"
                    } else {
                        "jpg"
                    };
                    std::fs::write(class.join(format!("img.{ext}")), &data).unwrap();
                    imagesets::folder(&tmp)
                        .map(|s| {
                            format!("{}x{}x{}", s.train.height, s.train.width, s.train.channels)
                        })
                        .map_err(|e| e.to_string())
                }
                _ => {
                    let bytes = if target == "torch_zip_pickle" {
                        quarantine_fuzz::zip_pickle_archive(&data).unwrap()
                    } else {
                        data
                    };
                    torchfile::load_bytes(&bytes, name)
                        .map(|sd| format!("{} tensors", sd.tensors.len()))
                        .map_err(|e| e.to_string())
                }
            };
            println!("{target}/{}: {what:?}", display(&f));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
