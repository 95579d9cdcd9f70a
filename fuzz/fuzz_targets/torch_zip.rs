//! Raw bytes into torchfile::load_bytes, seeded with torch.save zip archives (corpus/torch_zip).
//! Most mutations stop at the zip CRC check; torch_zip_pickle gets past it.
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; a successful load returns only
//! tensors (and masks) whose byte length matches shape x dtype (RawTensor's documented contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::check_state_dict;

fuzz_target!(|data: &[u8]| {
    check_state_dict(torchfile::load_bytes(data, std::path::Path::new("fuzz.pt")));
});
