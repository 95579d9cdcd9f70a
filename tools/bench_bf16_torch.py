"""Does bfloat16 autocast pay on this CPU? Times the reverse-engineering step's work (ResNet-20s
forward + input-gradient backward on a batch of stamped images, weights frozen) in float32 and under
`torch.autocast("cpu", dtype=torch.bfloat16)`, and compares the logits.

  python tools/bench_bf16_torch.py --threads 2 --batch 200 --iters 10
Prints one JSON line. Without native bf16 units (AVX512_BF16 / AMX) libtorch emulates bf16 and it is
slower; see BENCHMARKS.md.
"""
import argparse
import json
import time

import torch

from bench_reverse_torch import ResNet20s


def step(model, x):
    x = x.detach().requires_grad_()
    out = model(x)
    out.logsumexp(1).sum().backward()
    return out.detach().float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet20s().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(a.batch, 3, 32, 32)
    res = {}
    for name, ctx in [("float32", None), ("bfloat16-autocast", torch.bfloat16)]:
        def run():
            if ctx is None:
                return step(model, x)
            with torch.autocast("cpu", dtype=ctx):
                return step(model, x)
        logits = run()
        t0 = time.time()
        for _ in range(a.iters):
            run()
        res[name] = {"seconds_per_step": (time.time() - t0) / a.iters, "logits": logits}
    diff = (res["float32"]["logits"] - res["bfloat16-autocast"]["logits"]).abs().max().item()
    agree = (res["float32"]["logits"].argmax(1) == res["bfloat16-autocast"]["logits"].argmax(1)).float().mean().item()
    flags = open("/proc/cpuinfo").read()
    print(json.dumps({
        "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
        "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
        "float32_s": res["float32"]["seconds_per_step"], "bf16_s": res["bfloat16-autocast"]["seconds_per_step"],
        "max_logit_diff": diff, "argmax_agreement": agree}))


if __name__ == "__main__":
    main()
