#!/usr/bin/env bash
# Runs every fuzz target one after another, each for $SECONDS_PER_TARGET (default 600) seconds,
# at the lowest CPU priority, on stable Rust (no sanitizer; see README.md). Logs: logs/<target>.log.
#   ./run_all.sh                      all targets
#   SECONDS_PER_TARGET=60 ./run_all.sh idx cifar
set -u
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The cifar and image_folder targets write their input to a scratch folder: keep it in memory.
[ -d /dev/shm ] && export TMPDIR="${TMPDIR:-/dev/shm}"
secs="${SECONDS_PER_TARGET:-600}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(torch_zip torch_zip_pickle torchscript torch_legacy safetensors idx cifar image_folder config)
fi
mkdir -p logs
nice -n 19 cargo fuzz build -s none -a || exit 1
for t in "${targets[@]}"; do
    extra=()
    # CIFAR records are 3073/3074 bytes: leave room for a few of them.
    [ "$t" = cifar ] && extra=(-max_len=16384)
    # TOML syntax and the experiment keys.
    [ "$t" = config ] && extra=(-dict=config.dict -max_len=8192)
    start=$(date +%s)
    nice -n 19 cargo fuzz run -s none -a "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30 \
        -print_final_stats=1 "${extra[@]}" >"logs/$t.log" 2>&1
    rc=$?
    end=$(date +%s)
    rm -rf "${TMPDIR:-/tmp}/quarantine-fuzz-$t-"*
    echo "$t: exit $rc, wall $((end - start)) s, $(grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "logs/$t.log" | tr '\n' ' ')"
done
