"""PyTorch side of the data-free seed synthesis (`--seeds synth:N`, src/reverse/synth.rs): the time of
one DeepInversion Adam step for ResNet-20s on the built-in 1x28x28 input, written the way PyTorch users
write it: forward hooks on every BatchNorm2d that take the batch mean and variance of its input, loss
= CE + sum over BN layers of ||mu - running_mean||_2 + ||var - running_var||_2 + 0.005 * TV^2, gradient
to the input only (weights frozen, eval mode), Adam on the tanh-parametrised pixels. Batch 100 images
(the default `synth:100`), random roll jitter of up to 2 pixels. Timed: `--iters` steps after 3
warm-up steps; prints one JSON line.
Run: QUARANTINE_TORCH=full; $(bash scripts/setup-torch.sh)/bin/python tools/bench_synth_torch.py --threads 2
"""
import argparse, json, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden import ResNet20s  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet20s()
    model.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    stats = []

    def hook(m, inp, out):
        x = inp[0]
        mu = x.mean([0, 2, 3])
        var = x.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False)
        stats.append(torch.norm(mu - m.running_mean) + torch.norm(var - m.running_var))

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(hook)
    y = torch.arange(a.n) % 10
    z = (0.5 * torch.randn(a.n, 1, 28, 28)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1, betas=(0.5, 0.9))

    def step():
        stats.clear()
        x = (z.tanh() + 1) * 0.5
        dy, dx = torch.randint(-2, 3, (2,)).tolist()
        inp = (x.roll((dy, dx), (2, 3)) - 0.5) / 0.25
        if a.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        logits = model(inp)
        tv = ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).sum([1, 2, 3]) + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum([1, 2, 3])
        loss = F.cross_entropy(logits, y) + sum(stats) + 0.005 * tv.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(a.iters):
        step()
    dt = (time.perf_counter() - t) / a.iters
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "n": a.n, "channels_last": a.channels_last, "ms_per_step": round(dt * 1000, 1)}))


if __name__ == "__main__":
    main()
