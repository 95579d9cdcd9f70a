#!/usr/bin/env bash
# The README's first command: sets up libtorch (once), builds, and runs `quarantine demo` on the
# built-in data: a BadNets-Trojaned model with a hidden target and a clean control, detection on
# both as black boxes, the verdicts, and a self-contained report.html. Each run gets a new folder
# runs/demo-SEED (nothing is overwritten); extra arguments go to `quarantine demo` (e.g. --seed 7,
# --trigger paper-rgb).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --bin quarantine
exec ./target/release/quarantine demo "$@"
