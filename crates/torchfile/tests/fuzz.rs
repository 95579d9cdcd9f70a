//! Mutation fuzzing on the fixtures: no input may panic; every error names the file.
//! (Zip entries are checksummed, so most zip mutations stop there; src/malformed_tests.rs
//! fuzzes the pickles inside zip archives directly.)
//! Deterministic (fixed-seed xorshift), a few thousand cases, well under a second.

mod common;

use std::path::Path;

use common::{expectations, fixtures_dir};
use torchfile::load_bytes;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x = [0x00, 0xff, 0x7f, 0x80, b'(', b'.', b'R', b'Q'][rng.below(8)];
                }
            }
            2 => b.truncate(rng.below(b.len())),
            3 => {
                let i = rng.below(b.len());
                b.insert(i.min(b.len()), rng.next() as u8);
            }
            4 => {
                // Overwrite 4 bytes with a large little-endian number (sizes, offsets, counts).
                let i = rng.below(b.len().saturating_sub(4));
                let v = [u32::MAX, 0x8000_0000, 0xffff, 1 << 20][rng.below(4)].to_le_bytes();
                if let Some(dst) = b.get_mut(i..i + 4) {
                    dst.copy_from_slice(&v);
                }
            }
            _ => {
                let i = rng.below(b.len());
                if i < b.len() {
                    b.remove(i);
                }
            }
        }
    }
    b
}

/// Cases per fixture; `TORCHFILE_FUZZ_ITERS=100000` for a long run.
fn iterations() -> usize {
    std::env::var("TORCHFILE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let name = Path::new("fuzz.pt");
    for (file, _) in expectations() {
        let src = std::fs::read(fixtures_dir().join(&file)).unwrap();
        for _ in 0..iterations() {
            let input = mutate(&mut rng, &src);
            if let Err(e) = load_bytes(&input, name) {
                let msg = e.to_string();
                assert!(msg.starts_with("fuzz.pt: ") && msg.len() > 12, "{file}: {msg}");
            }
        }
    }
}
