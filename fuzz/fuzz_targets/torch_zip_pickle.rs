//! The pickle VM of torchfile (private, so not fuzzable on its own) through the zip format:
//! the input is `[u16 len][data.pkl][u16 len][storage 0][u16 len][storage 1]...` (see
//! quarantine_fuzz::zip_pickle_archive), turned into a valid `archive/` zip with correct
//! CRC-32s, so every mutation of the pickle or of a storage reaches the unpickler, the
//! state-dict selection and the tensor materialisation instead of the checksum check.
//! Seeds: the data.pkl and storages of the zip fixtures.
//!
//! Oracle: as torch_zip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::{check_state_dict, zip_pickle_archive};

fuzz_target!(|data: &[u8]| {
    if let Some(zip) = zip_pickle_archive(data) {
        check_state_dict(torchfile::load_bytes(&zip, std::path::Path::new("fuzz.pt")));
    }
});
