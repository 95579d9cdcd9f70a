# Source this file: installs (once) the pinned libtorch and exports what the tch build needs.
#   . scripts/env.sh            # slim CPU libtorch (default)
#   QUARANTINE_TORCH=full . scripts/env.sh   # with CUDA libraries; builds link libtorch_cuda
_q_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUARANTINE_VENV="$(bash "$_q_root/scripts/setup-torch.sh")" || return 1 2>/dev/null || exit 1
export QUARANTINE_VENV
export LIBTORCH="$(echo "$QUARANTINE_VENV"/lib/python3*/site-packages/torch)"
export LIBTORCH_CXX11_ABI=1
if [ "${QUARANTINE_TORCH:-slim}" = full ]; then export TCH_LINK_CUDA=1; else export TCH_LINK_CUDA=0; fi
unset _q_root
