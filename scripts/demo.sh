#!/usr/bin/env bash
# The README's first command: sets up libtorch (once), builds, and runs the demo on the built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --bin quarantine
exec ./target/release/quarantine train --data builtin --arch cnn --epochs 15 --out runs/demo --force "$@"
