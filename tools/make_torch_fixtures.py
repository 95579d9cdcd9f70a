#!/usr/bin/env python3
"""Generate the PyTorch checkpoint fixtures of crates/torchfile/tests/fixtures/.

Run with the torch venv (scripts/setup-torch.sh, QUARANTINE_TORCH=full):
    $VENV/bin/python tools/make_torch_fixtures.py

Writes small checkpoints (< 20 KB each) in every format and layout the Rust reader must handle,
plus expected.json with, per file, what `torchfile::load` must return: tensors (name, dtype,
shape, flat values) in order, pruning masks, ignored keys, format; or, for malicious files, the
forbidden global the error must name. The output is committed; rerun only to change fixtures.
"""

import collections
import io
import json
import os
import pickle
import sys
import zipfile

import torch
import torch.nn as nn
import torch.nn.utils.prune as prune
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "torchfile", "tests", "fixtures")
MAX_BYTES = 20 * 1024
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # reproducible zip entries

expected = {}


def describe(name, t):
    t = t.detach()
    values = t.reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16):
        values = values.float()
    if t.dtype == torch.bool:
        values = values.to(torch.uint8)
    return {
        "name": name,
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": list(t.shape),
        "values": values.tolist(),
    }


def normalised(sd):
    """What torchfile::load returns for state dict `sd` (see crates/torchfile/src/normalize.rs)."""
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        sd = collections.OrderedDict((k[len("module."):], v) for k, v in sd.items())
    tensors, masks = [], []
    for k, v in sd.items():
        if k.endswith("_mask") and k[: -len("_mask")] + "_orig" in sd:
            continue
        if k.endswith("_orig"):
            base = k[: -len("_orig")]
            mask = sd[base + "_mask"]
            tensors.append(describe(base, v * mask))
            masks.append(describe(base, mask))
        else:
            tensors.append(describe(k, v))
    return tensors, masks


def save(name, obj, sd=None, ignored=(), legacy=False, protocol=2, fmt=None):
    path = os.path.join(OUT, name)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    record(name, sd if sd is not None else obj, ignored, fmt or ("legacy" if legacy else "zip"))


def record(name, sd, ignored, fmt):
    size = os.path.getsize(os.path.join(OUT, name))
    assert size < MAX_BYTES, f"{name} is {size} bytes"
    tensors, masks = normalised(sd)
    expected[name] = {"format": fmt, "tensors": tensors, "masks": masks, "ignored": list(ignored)}


def record_error(name, global_name):
    size = os.path.getsize(os.path.join(OUT, name))
    assert size < MAX_BYTES, f"{name} is {size} bytes"
    expected[name] = {"error": "ForbiddenGlobal", "global": global_name}


class Evil:
    """Runs a shell command when unpickled by Python's pickle."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvalEvil:
    def __reduce__(self):
        return (eval, ("print('pwned')",))


def tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.tensor([0.25, -0.5]))
        net[1].running_var.copy_(torch.tensor([1.5, 2.0]))
        net[1].num_batches_tracked.fill_(12)
    return net


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))

    sd = tiny_net().state_dict()
    save("zip_basic.pt", sd)
    save("legacy_basic.pt", sd, legacy=True)
    save("zip_proto4.pt", sd, protocol=4)
    # The same archive re-zipped with deflate (as archive tools do): still readable.
    with zipfile.ZipFile(os.path.join(OUT, "zip_basic.pt")) as src, zipfile.ZipFile(
        os.path.join(OUT, "zip_deflated.pt"), "w", zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, FIXED_TIME), src.read(info.filename), zipfile.ZIP_DEFLATED)
    record("zip_deflated.pt", sd, [], "zip")
    save("legacy_proto4.pt", sd, legacy=True, protocol=4)

    # Training checkpoint: state dict nested next to non-tensor entries.
    nested = {
        "epoch": 7,
        "arch": "tiny",
        "state_dict": sd,
        "optimizer": {
            "state": {0: {"step": 3, "momentum_buffer": [1, 2]}},
            "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1, 2]}],
        },
        "best_acc": 0.5,
    }
    save("nested.pt", nested, sd=sd, ignored=["epoch", "arch", "optimizer", "best_acc"])

    dp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    save("dataparallel.pt", dp)

    # torch.nn.utils.prune leaves weight_orig + weight_mask.
    torch.manual_seed(1)
    pruned = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    prune.l1_unstructured(pruned[2], "bias", amount=0.5)
    psd = pruned.state_dict()
    assert "0.weight_orig" in psd and "0.weight_mask" in psd
    save("pruned.pt", psd)

    # Views: non-contiguous tensors and tensors sharing one storage.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    attr = torch.tensor([1.0, 2.0])
    attr.note = "python attribute -> _rebuild_from_type_v2"
    views = collections.OrderedDict(
        base=base,
        transposed=base.t(),
        rows=base[1:3],
        cols=base[:, ::2],
        tied=base,
        element=base[2, 3],
        expanded=torch.arange(3, dtype=torch.int64).expand(4, 3),
        param=nn.Parameter(torch.tensor([0.5, -0.5])),
        with_attr=attr,
    )
    save("views.pt", views)
    save("views_legacy.pt", views, legacy=True)

    dtypes = collections.OrderedDict(
        f64=torch.tensor([1.5, -2.25, 1e-300], dtype=torch.float64),
        f32_scalar=torch.tensor(3.25),
        f16=torch.tensor([0.1, -65504.0, 6e-8, 1.0], dtype=torch.float16),
        bf16=torch.tensor([0.1, -3.0e38, 1.0], dtype=torch.bfloat16),
        i64=torch.tensor([[-(2**40), 5], [7, 2**50]], dtype=torch.int64),
        i32=torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32),
        i16=torch.tensor([-300, 300], dtype=torch.int16),
        i8=torch.tensor([-128, 127], dtype=torch.int8),
        u8=torch.tensor([0, 255], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        empty=torch.zeros(0, 3),
    )
    save("dtypes.pt", dtypes)
    save("dtypes_legacy.pt", dtypes, legacy=True)

    # Malicious checkpoints: Python's pickle would run `echo pwned`.
    evil = {"weight": torch.ones(2), "evil": Evil()}
    torch.save(evil, os.path.join(OUT, "malicious_zip.pt"))
    record_error("malicious_zip.pt", f"{os.system.__module__}.system")
    torch.save(evil, os.path.join(OUT, "malicious_legacy.pt"), _use_new_zipfile_serialization=False)
    record_error("malicious_legacy.pt", f"{os.system.__module__}.system")
    # Hidden in an entry that would be ignored, to show it is refused anyway.
    torch.save({"epoch": Evil(), "state_dict": sd}, os.path.join(OUT, "malicious_nested.pt"))
    record_error("malicious_nested.pt", f"{os.system.__module__}.system")
    # A hand-made archive: a raw protocol-4 pickle (STACK_GLOBAL) as data.pkl.
    with zipfile.ZipFile(os.path.join(OUT, "malicious_raw.pt"), "w") as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl", FIXED_TIME), pickle.dumps(EvalEvil(), protocol=4))
        z.writestr(zipfile.ZipInfo("archive/version", FIXED_TIME), "3\n")
    record_error("malicious_raw.pt", "builtins.eval")

    st = collections.OrderedDict(
        (k, v.contiguous()) for k, v in [("conv.weight", sd["0.weight"]), ("conv.bias", sd["0.bias"]),
                                           ("half", dtypes["f16"]), ("flags", dtypes["bool"])]
    )
    save_file(st, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt", "source": "fixture"})
    # safetensors orders tensors by dtype alignment, then name: read the order back.
    with open(os.path.join(OUT, "model.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    record("model.safetensors", collections.OrderedDict((k, st[k]) for k in order), [], "safetensors")
    expected["model.safetensors"]["metadata"] = {"format": "pt", "source": "fixture"}

    # Sanity: torch itself loads the plain fixtures with weights_only=True (its restricted
    # unpickler lacks protocol 4's FRAME opcode; `with_attr` in views needs an extra allow).
    for name, exp in expected.items():
        if "error" in exp or name.endswith(".safetensors") or "proto4" in name or name.startswith("views"):
            continue
        torch.load(os.path.join(OUT, name), weights_only=True)

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"torch_version": torch.__version__, "files": expected}, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(expected)} fixtures ({total} bytes) to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
