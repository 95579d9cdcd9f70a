#!/usr/bin/env bash
# The README's test command: sets up libtorch and headless Chromium (once), checks formatting, the
# API docs and clippy (no warning), builds, runs every test of the workspace and the library example.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/setup-chromium.sh
# One test at a time: the heavy tests run libtorch with 2 threads each, and on 2 cores concurrent
# OpenMP pools slow each other down several-fold (measured), so serial is faster overall.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-1}
if [ $# -eq 0 ]; then
    cargo fmt --all --check
    RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --workspace --quiet
    cargo clippy --release --workspace --all-targets --quiet -- -D warnings
fi
cargo test --release --workspace "$@"
if [ $# -eq 0 ]; then
    # The crate docs' example, as a program, on a tiny fixture model it makes itself.
    cargo run --release --quiet --example detect
fi
