#!/usr/bin/env bash
# The README's test command: sets up libtorch and headless Chromium (once), builds, and runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/setup-chromium.sh
# One test at a time: the heavy tests run libtorch with 2 threads each, and on 2 cores concurrent
# OpenMP pools slow each other down several-fold (measured), so serial is faster overall.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-1}
cargo test --release --workspace "$@"
