"""PyTorch side of `quarantine bench`: ResNet-20s training and inference throughput (images/s), the same
work as the Rust command: synthetic uint8 CIFAR-sized data, random crop (zero padding 4) + flip,
normalization, forward, cross-entropy, backward, SGD(momentum 0.9, wd 5e-4) step; inference in eval
mode under no_grad. Augmentation is done with batched tensor ops (cheaper than torchvision's per-image
PIL transforms), so the comparison favours PyTorch.
Run: QUARANTINE_TORCH=full; $(bash scripts/setup-torch.sh)/bin/python tools/bench_torch.py --threads 2
"""
import argparse, json, os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden import ResNet20s  # noqa: E402


def augment(xb, pad=4):
    n, c, h, w = xb.shape
    padded = F.pad(xb, (pad, pad, pad, pad))
    out = torch.empty_like(xb)
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    flip = torch.rand(n) < 0.5
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bs = a.batch_size
    data = torch.randint(0, 256, ((a.iters + 3) * bs, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange((a.iters + 3) * bs) % 10
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    model = ResNet20s()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(i):
        xb = augment(data[i * bs:(i + 1) * bs])
        xb = (xb.float() / 255 - mean) / std
        loss = F.cross_entropy(model(xb), labels[i * bs:(i + 1) * bs])
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    for i in range(3):
        step(i)
    t = time.perf_counter()
    for i in range(3, a.iters + 3):
        step(i)
    train_ips = a.iters * bs / (time.perf_counter() - t)

    model.eval()
    xs = [((data[i * bs:(i + 1) * bs].float() / 255 - mean) / std) for i in range(3, a.iters + 3)]
    with torch.no_grad():
        for x in xs[:3]:
            model(x)
        t = time.perf_counter()
        for x in xs:
            model(x).sum().item()
        infer_ips = a.iters * bs / (time.perf_counter() - t)
    print(json.dumps({"framework": "pytorch " + torch.__version__, "threads": a.threads, "batch_size": bs,
                      "train_images_per_second": train_ips, "inference_images_per_second": infer_ips}))


if __name__ == "__main__":
    main()
