//! torchfile::script, the vetting of TorchScript archives before libtorch loads them: the zip reader,
//! the code scanner (op references outside strings and comments) and the script-mode pickle VM
//! (`__torch__` classes, list builders). The input is `[u16 len][code][u16 len][data.pkl][u16 len]
//! [constants.pkl][u16 len][storage]...` (quarantine_fuzz::torchscript_archive), assembled into a
//! valid archive so mutations pass the CRC check; the raw input also goes to `vet_bytes` and
//! `is_torchscript` as it is. Seeds: the fixtures of tools/make_script_fixtures.py, split up
//! (examples/make_seeds.rs).
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; an archive that passes lists only
//! allowed ops, and the scanner agrees with the vetting on the code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::torchscript_archive;
use torchfile::script::{is_torchscript, op_allowed, scan_ops, vet_bytes};

fuzz_target!(|data: &[u8]| {
    let name = std::path::Path::new("fuzz.pt");
    let _ = is_torchscript(data);
    let _ = vet_bytes(data, name, &[]);
    if let Some(zip) = torchscript_archive(data) {
        assert!(is_torchscript(&zip));
        if let Ok(archive) = vet_bytes(&zip, name, &[]) {
            assert!(archive.ops.iter().all(|op| op_allowed(op, &[])), "{:?}", archive.ops);
            let code = quarantine_fuzz::split_u16(data).map(|(c, _)| c).unwrap_or_default();
            let scanned = scan_ops(std::str::from_utf8(code).expect("vetted code is UTF-8")).expect("vetted code scans");
            assert_eq!(scanned, archive.ops);
        }
    }
});
