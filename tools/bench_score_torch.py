"""PyTorch side of `quarantine bench --score-steps N`: the time of one scored pruning step (SPEC §5) for
ResNet-20s on CIFAR-sized input, written the way the reference code does it: masks as
torch.nn.utils.prune forward pre-hooks (global L1 over all conv weights, density 0.8^10), BN running
statistics recalibrated on the 1,024 score samples (one train-mode forward, cumulative average), a deep
copy finetuned k = 10 SGD steps (lr 1e-3, momentum 0.9, weight decay 5e-4, batch 128, shuffled, random
crop with zero padding 4 + flip) on 2,048 synthetic uint8 images, then the 11 points
alpha * phi + (1 - alpha) * phi_k of every state tensor evaluated in eval mode on the score samples
(0-1 error and cross-entropy). Timed: recalibration + finetuning + the 11 evaluations, per step, after
one warm-up step.
Run: QUARANTINE_TORCH=full; $(bash scripts/setup-torch.sh)/bin/python tools/bench_score_torch.py --threads 2 --steps 3
"""
import argparse, json, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

sys.path.insert(0, os.path.dirname(__file__))
from bench_torch import augment  # noqa: E402
from golden import ResNet20s  # noqa: E402

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def normalize(xb):
    return (xb.float() / 255 - MEAN) / STD


def recalibrate(model, x):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch -> its exact statistics
    model.train()
    with torch.no_grad():
        model(x)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1


def clone(model):
    """A copy with the same masks and state (a pruned module's computed `weight` defeats deepcopy)."""
    out = ResNet20s()
    for (_, src), (_, dst) in zip(model.named_modules(), out.named_modules()):
        if isinstance(src, nn.Conv2d):
            prune.custom_from_mask(dst, "weight", src.weight_mask.clone())
    out.load_state_dict(model.state_dict())
    return out


def finetune(phi, data, labels, k, gen):
    phik = clone(phi)
    opt = torch.optim.SGD(phik.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    phik.train()
    step = 0
    while step < k:
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), 128):
            if step >= k:
                break
            idx = order[i:i + 128]
            loss = F.cross_entropy(phik(normalize(augment(data[idx]))), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return phik


def evaluate(model, x, y):
    model.eval()
    wrong, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), 256):
            out = model(x[i:i + 256])
            loss += F.cross_entropy(out, y[i:i + 256], reduction="sum").item()
            wrong += (out.argmax(1) != y[i:i + 256]).sum().item()
    return wrong / len(x), loss / len(x)


def score(phi, phik, x, y):
    a, b = phi.state_dict(), phik.state_dict()
    interp = clone(phi)
    errors, losses = [], []
    for alpha in [i / 10 for i in range(11)]:
        interp.load_state_dict({n: (alpha * a[n] + (1 - alpha) * b[n]).to(a[n].dtype) if a[n].is_floating_point() else a[n] for n in a})
        e, l = evaluate(interp, x, y)
        errors.append(e)
        losses.append(l)
    return max(losses) - (losses[0] + losses[-1]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(2048) % 10
    pick = torch.randperm(2048, generator=gen)[:1024].sort().values
    x, y = normalize(data[pick]), labels[pick]
    model = ResNet20s()
    convs = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d)]
    prune.global_unstructured(convs, pruning_method=prune.L1Unstructured, amount=1 - 0.8 ** 10)
    seconds, parts = [], None
    for i in range(a.steps + 1):
        phi = clone(model)
        t = time.perf_counter()
        recalibrate(phi, x)
        t_recal = time.perf_counter() - t
        phik = finetune(phi, data, labels, 10, gen)
        t_ft = time.perf_counter() - t
        s = score(phi, phik, x, y)
        total = time.perf_counter() - t
        assert s == s, "non-finite score"
        if i > 0:
            seconds.append(total)
            parts = (t_recal, t_ft - t_recal, total - t_ft)
    print(json.dumps({"framework": "pytorch " + torch.__version__, "threads": a.threads, "seconds": seconds,
                      "median_seconds": sorted(seconds)[len(seconds) // 2], "recalibrate_seconds": parts[0],
                      "finetune_seconds": parts[1], "interpolate_seconds": parts[2]}))


if __name__ == "__main__":
    main()
