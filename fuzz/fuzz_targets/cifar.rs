//! imagesets::cifar10 / cifar100 (they read folders, and no bytes-level reader is public, so
//! the input is written into a scratch folder once per run). Input:
//! `[mode][u16 len][class names][records]` (see quarantine_fuzz::cifar_input):
//! - mode bit 0: CIFAR-100 (`train.bin`) instead of CIFAR-10 (`data_batch_1.bin`);
//! - bit 1: also write the records as the test file (`test_batch.bin` / `test.bin`);
//! - bit 2: write the class names file (`batches.meta.txt`, `fine_label_names.txt` or
//!   `coarse_label_names.txt`);
//! - bit 3: CIFAR-100 coarse labels instead of fine;
//! - bit 4 (CIFAR-10): also write `data_batch_2.bin` (bit 5: as `data_batch_3.bin`, a gap).
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; returned sets pass validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::{check_image_set, put, scratch_dir, split_u16};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((names, records)) = split_u16(rest) else {
        return;
    };
    let dir = scratch_dir("cifar");
    let cifar100 = mode & 1 != 0;
    let test = (mode & 2 != 0).then_some(records);
    let names = (mode & 4 != 0).then_some(names);
    let coarse = mode & 8 != 0;
    let result = if cifar100 {
        for f in [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "test_batch.bin",
        ] {
            put(&dir.join(f), None);
        }
        put(&dir.join("train.bin"), Some(records));
        put(&dir.join("test.bin"), test);
        put(&dir.join("fine_label_names.txt"), names.filter(|_| !coarse));
        put(
            &dir.join("coarse_label_names.txt"),
            names.filter(|_| coarse),
        );
        let label = if coarse {
            imagesets::Cifar100Label::Coarse
        } else {
            imagesets::Cifar100Label::Fine
        };
        imagesets::cifar100(dir, label)
    } else {
        put(&dir.join("train.bin"), None);
        put(&dir.join("test.bin"), None);
        put(&dir.join("data_batch_1.bin"), Some(records));
        let second = (mode & 0x10 != 0).then_some(records);
        let gap = mode & 0x20 != 0;
        put(&dir.join("data_batch_2.bin"), second.filter(|_| !gap));
        put(&dir.join("data_batch_3.bin"), second.filter(|_| gap));
        put(&dir.join("test_batch.bin"), test);
        put(&dir.join("batches.meta.txt"), names);
        imagesets::cifar10(dir)
    };
    if let Ok(split) = result {
        check_image_set(&split.train);
        if let Some(t) = &split.test {
            check_image_set(t);
        }
    }
});
