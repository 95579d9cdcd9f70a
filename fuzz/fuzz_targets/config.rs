//! expconfig::parse (the experiment files of `quarantine run`). The input is the file's text
//! (invalid UTF-8 is read lossily, as a user's editor might have written it).
//!
//! Oracle: no panic, abort, timeout or allocation above 2 GiB; a file that is accepted has a name
//! that is a safe folder name, every section token is `--KEY` or `--KEY=VALUE` with KEY a flag
//! name `quarantine run` does not set itself (so no value can pass as a second flag), and its
//! canonical form (`to_toml`) parses back to the same experiment.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(e) = expconfig::parse(&text, Path::new("fuzz.toml")) else { return };
    assert!(expconfig::valid_name(&e.name), "accepted name {:?}", e.name);
    for argv in [&e.attack, &e.train, &Some(e.prune.clone()), &e.score, &e.reverse].into_iter().flatten() {
        for tok in argv {
            let flag = tok.strip_prefix("--").unwrap_or_else(|| panic!("token {tok:?} is not a flag"));
            let key = flag.split_once('=').map_or(flag, |(k, _)| k);
            assert!(expconfig::valid_key(key), "token {tok:?}: key {key:?}");
            assert!(!expconfig::RESERVED.contains(&key), "token {tok:?} sets a reserved flag");
        }
    }
    let again = expconfig::parse(&e.to_toml(), Path::new("canonical.toml"))
        .unwrap_or_else(|err| panic!("canonical form does not parse: {err}\n{}", e.to_toml()));
    assert_eq!(again, e, "canonical form parses to another experiment");
});
