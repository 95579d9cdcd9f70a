//! imagesets::idx_pair_from_bytes (IDX images + labels, each raw or gzipped). The input is
//! `[u32 LE split][bytes]`: the images file is the first `split % (len + 1)` bytes, the labels
//! file the rest (see quarantine_fuzz::idx_split).
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; a set that is returned passes
//! ImageSet::validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::{check_image_set, idx_split};

fuzz_target!(|data: &[u8]| {
    if let Some((images, labels)) = idx_split(data) {
        if let Ok(set) = imagesets::idx_pair_from_bytes(images, labels, "fuzz") {
            check_image_set(&set);
        }
    }
});
