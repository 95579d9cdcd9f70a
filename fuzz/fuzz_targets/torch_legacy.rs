//! Raw bytes into torchfile::load_bytes, seeded with legacy (pre-1.6) pickle checkpoints
//! (corpus/torch_legacy). No checksums in this format, so this target drives the pickle VM,
//! the legacy data sections and the tensor materialisation directly.
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; a successful load returns only
//! tensors (and masks) whose byte length matches shape x dtype (RawTensor's documented contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::check_state_dict;

fuzz_target!(|data: &[u8]| {
    check_state_dict(torchfile::load_bytes(data, std::path::Path::new("fuzz.pt")));
});
