#!/usr/bin/env bash
# The README's test command: sets up libtorch and headless Chromium (once), builds, and runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/setup-chromium.sh
cargo test --release --workspace "$@"
