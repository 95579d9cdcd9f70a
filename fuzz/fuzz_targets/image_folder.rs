//! imagesets::folder on a scratch folder `root/c/img.<ext>` holding the input as its single
//! image: `.png` if the input starts with the PNG signature, else `.jpg` (the reader trusts
//! the content over the name anyway). Decoding goes through the `image` crate's PNG and JPEG
//! decoders as imagesets configures them. Rayon is limited to one thread (one worker only).
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; a returned set passes validate.
//! Panics inside the decoders (dependencies) count only if they escape imagesets::folder, which
//! turns them into errors (see quarantine_fuzz::contain_dependency_panics).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::{check_image_set, contain_dependency_panics, put, scratch_dir};

fuzz_target!(|data: &[u8]| {
    let root = scratch_dir("image_folder");
    let class = root.join("c");
    if !class.is_dir() {
        // First run: make the folder and keep rayon to one thread.
        std::env::set_var("RAYON_NUM_THREADS", "1");
        contain_dependency_panics();
        std::fs::create_dir_all(&class).expect("cannot create the class folder");
    }
    let png = data.starts_with(b"\x89PNG\r\n\x1a\n");
    put(&class.join("img.png"), png.then_some(data));
    put(&class.join("img.jpg"), (!png).then_some(data));
    if let Ok(split) = imagesets::folder(root) {
        assert!(split.test.is_none());
        check_image_set(&split.train);
        assert_eq!(split.train.n, 1);
    }
});
