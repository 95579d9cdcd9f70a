#!/usr/bin/env bash
# Installs the pinned libtorch (from the PyPI `torch` wheel) into a per-user cache venv, once.
# Idempotent: a second run (or a second clone) finds the venv and returns at once.
#   QUARANTINE_TORCH=slim (default, CPU only, ~1.2 GB) | full (with CUDA libraries, ~4.7 GB)
# Prints the venv path on stdout. Build with LIBTORCH="$VENV/lib/python3*/site-packages/torch"
# (see scripts/env.sh), since `import torch` works only in the full flavour.
set -euo pipefail
TORCH_VERSION=2.13.0
FLAVOUR=${QUARANTINE_TORCH:-slim}
CACHE=${QUARANTINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quarantine}
VENV="$CACHE/venv-torch-$TORCH_VERSION-$FLAVOUR"
if [ -f "$VENV/.complete" ]; then
  echo "$VENV"
  exit 0
fi
echo "setup-torch: installing torch==$TORCH_VERSION ($FLAVOUR) into $VENV" >&2
mkdir -p "$CACHE"
rm -rf "$VENV.tmp"
python3 -m venv "$VENV.tmp"
PIP="$VENV.tmp/bin/pip"
"$PIP" install -q --disable-pip-version-check --upgrade pip >&2
if [ "$FLAVOUR" = full ]; then
  "$PIP" install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy safetensors >&2
else
  "$PIP" install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 2>&1 | grep -v "requires\|dependency resolver" >&2 || true
  # The slim venv serves libtorch to the Rust build only: `import torch` needs the CUDA libraries
  # (cudnn, cublas...) of the full flavour, which the PyTorch-side tools under tools/ use.
fi
# venv paths are absolute; move it into place only when complete.
rm -rf "$VENV"
mv "$VENV.tmp" "$VENV"
# A venv records its own path in scripts; recreate pyvenv links for the new location.
python3 -m venv --upgrade "$VENV" >/dev/null 2>&1 || true
touch "$VENV/.complete"
echo "$VENV"
