"""Checks a TorchScript model's winning ticket from PyTorch's side (issue 15, acceptance 3).

`quarantine detect` / `score` on a TorchScript model save the ticket three ways: winning-ticket.ts.pt
(TorchScript), winning-ticket.pt (state dict, torch.load) and winning-ticket.mask.safetensors. This
loads the TorchScript ticket with torch.jit.load, loads the state dict into the original archive,
and compares their logits on random inputs; it also checks that every masked weight is zero.

Run (full PyTorch install): python tools/check_script_ticket.py RUN_DIR ORIGINAL.ts.pt
Prints one JSON line: max |logit difference|, masked entries that are not zero, density.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file


def main():
    run, original = sys.argv[1], sys.argv[2]
    ticket = torch.jit.load(os.path.join(run, "winning-ticket.ts.pt")).eval()
    reference = torch.jit.load(original).eval()
    sd = torch.load(os.path.join(run, "winning-ticket.pt"), weights_only=True)
    reference.load_state_dict(sd)
    masks = load_file(os.path.join(run, "winning-ticket.mask.safetensors"))
    params = dict(ticket.named_parameters())
    nonzero_masked = sum(int((params[k][m == 0] != 0).sum()) for k, m in masks.items())
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    first = next(p for p in ticket.parameters() if p.dim() == 4)
    torch.manual_seed(0)
    x = torch.rand(16, first.shape[1], *[int(s) for s in sys.argv[3:5]] or [28, 28])
    with torch.no_grad():
        diff = (ticket(x) - reference(x)).abs().max().item()
    print(json.dumps({"run": run, "max_abs_logit_diff": diff, "masked_nonzero": nonzero_masked, "density": kept / total}))


if __name__ == "__main__":
    main()
