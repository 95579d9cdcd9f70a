"""Benchmark of the reference's trigger reverse engineering in PyTorch, for comparison with
`quarantine reverse` (batched over labels) and `quarantine reverse --bench-sequential`.

The loop is the reference's `remask_tabor` (VITA-Group/Backdoor-LTH, new_test_reverse_trigger.py):
labels one after another, each with its own Adam; per epoch one batch of N(0,1) noise images
(`--noise_image`, data_number 100, batch size 200 -> one 100-image batch per epoch); the model in
eval mode but with trainable weights (the reference never freezes them, so backward also computes
weight gradients; `--frozen` turns that off). Model: ResNet-20s, random weights, 3x32x32 inputs.

  python tools/bench_reverse_torch.py --save /tmp/r20.pt            # weights for the Rust runs
  python tools/bench_reverse_torch.py --script /tmp/r20.script.pt   # the same weights as TorchScript
  python tools/bench_reverse_torch.py --epochs 10 --threads 2       # time the reference loop
Prints one JSON line: seconds for all labels, seconds per epoch (all labels).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)
        return F.relu(out + short)


class ResNet20s(nn.Module):
    def __init__(self, num_classes=10, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            layers = []
            for j in range(3):
                layers.append(BasicBlock(planes_in, planes, stride if j == 0 else 1))
                planes_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def tanh_func(x):
    return x.tanh().add(1).mul(0.5)


def smooth(x, shape):
    re_1 = torch.pow(x[:, : shape[1] - 1] - x[:, 1:], 2)
    re_2 = torch.pow(x[: shape[0] - 1, :] - x[1:, :], 2)
    return re_1.norm(p=1) + re_2.norm(p=1)


def remask_tabor(model, target_label, epochs, n_seeds, img_shape=(3, 32, 32), patience=5):
    """The reference's loop for one label, noise seeds, without its file output and printing."""
    criterion = nn.CrossEntropyLoss()
    atanh_mark = torch.randn(img_shape).requires_grad_()
    atanh_mask = torch.randn(img_shape[1:]).requires_grad_()
    mask, mark = tanh_func(atanh_mask), tanh_func(atanh_mark)
    optimizer = torch.optim.Adam([atanh_mark, atanh_mask], lr=0.1, betas=(0.5, 0.9))
    cost = torch.tensor([1e-3, 1e-5, 2e-3, 1e-4, 1])
    up = down = 0
    mask_best = None
    for _ in range(epochs):
        _input = torch.randn(n_seeds, *img_shape)
        X = _input + mask * (mark - _input)
        Y = torch.full((n_seeds,), target_label, dtype=torch.long)
        predict = model(X)
        loss_model = criterion(predict, Y)
        acc = Y.eq(predict.argmax(1)).float().mean().item()
        mask_r1 = mask.norm(p=1) + torch.pow(mask.norm(p=2), 2)
        pattern = (torch.ones_like(mask) - mask) * mark
        pattern_r1 = pattern.norm(p=1) + torch.pow(pattern.norm(p=2), 2)
        mask_r2 = smooth(mask, img_shape[1:])
        pattern_r2 = torch.tensor(0, dtype=torch.float)
        for ch in range(img_shape[0]):
            pattern_r2 += smooth(pattern[ch, ...], img_shape[1:])
        r4 = criterion(model((mask * mark).unsqueeze(0)), torch.tensor([target_label]))
        loss = loss_model + torch.sum(torch.stack([mask_r1, pattern_r1, mask_r2, pattern_r2, r4]) * cost)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mask, mark = tanh_func(atanh_mask), tanh_func(atanh_mark)
        if acc >= 0.99:
            mask_best = mask.detach()
            up, down = up + 1, 0
        else:
            up, down = 0, down + 1
        if up >= patience:
            up, cost = 0, cost * 1.5
        elif down >= patience:
            down, cost = 0, cost / 1.5 ** 1.5
    return mask_best if mask_best is not None else mask.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frozen", action="store_true", help="no weight gradients (not the reference)")
    ap.add_argument("--save", help="write the random weights here (.pt) and exit")
    ap.add_argument("--script", help="write the model (same weights) as TorchScript here (torch.jit.script) and exit")
    ap.add_argument("--model", help="a trained ResNet-20s state dict (`quarantine export --format pt`) instead of random weights")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet20s(channels=a.channels)
    if a.model:
        sd = torch.load(a.model, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, strict=False)
    if a.save:
        torch.save(model.state_dict(), a.save)
        print("wrote", a.save)
        return
    if a.script:
        torch.jit.script(model.eval()).save(a.script)
        print("wrote", a.script)
        return
    model.eval()
    if a.frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    t0 = time.time()
    l1 = []
    shape = (a.channels, a.size, a.size)
    for t in range(a.labels):
        l1.append(remask_tabor(model, t, a.epochs, a.seeds, img_shape=shape).sum().item())
        model.zero_grad(set_to_none=True)
    s = time.time() - t0
    print(json.dumps({"impl": "pytorch-reference-loop", "torch": torch.__version__, "threads": a.threads, "labels": a.labels,
                      "epochs": a.epochs, "seeds": a.seeds, "frozen": a.frozen, "seconds": s, "seconds_per_epoch": s / a.epochs,
                      "model": a.model, "l1": l1}))


if __name__ == "__main__":
    main()
