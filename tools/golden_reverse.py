"""Golden values for the trigger reverse-engineering step (src/reverse/tests.rs): PyTorch runs the
reference's per-label loop (`remask_tabor` of VITA-Group/Backdoor-LTH, SPEC §6), ONE label at a time
with its own torch.optim.Adam, for 2 steps; Rust must reproduce the per-label losses and the updated
trigger variables with all labels in one batched computation.

Model: the project's `cnn` architecture (src/model/cnn.rs) on 3x8x8 inputs, 4 classes, random
weights and non-trivial BN statistics, eval mode. Labels 1 and 3; label 3 starts with costs x1.5 so
that per-label costs are exercised. Two configurations:
  pixel_ce:       seeds in [0,1] pixel space, stamp, then normalize (CIFAR-10 constants); CE loss
  normalized_cw:  seeds N(0,1) in normalized space, stamp there (the reference); C&W margin, kappa 0
Writes tests/golden/reverse.safetensors:
  model.*                          the state dict (project names)
  am0 [2,1,8,8], ap0 [2,3,8,8]     initial tanh-space variables of labels 1 and 3
  {cfg}.x1, {cfg}.x2 [4,3,8,8]     seed batches of steps 1 and 2
  {cfg}.loss1, {cfg}.loss2 [2]     per-label total loss at steps 1 and 2 (before each update)
  {cfg}.am1, ap1, am2, ap2         the variables after steps 1 and 2
Run: /root/.cache/quarantine/venv-torch-2.13.0-full/bin/python tools/golden_reverse.py
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "reverse.safetensors")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
INIT_COST = [1e-3, 1e-5, 2e-3, 1e-4, 1]
LABELS = [1, 3]
COST_SCALE = {1: 1.0, 3: 1.5}


class SmallCnn(nn.Module):
    def __init__(self, c=3, hw=8, k=4):
        super().__init__()
        chans = [(c, 32), (32, 32), (32, 64), (64, 64)]
        for i, (a, b) in enumerate(chans):
            setattr(self, f"conv{i + 1}", nn.Conv2d(a, b, 3, 1, 1, bias=False))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(b))
        self.fc1 = nn.Linear(64 * (hw // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, k)

    def forward(self, x):
        for i in range(4):
            x = F.relu(getattr(self, f"bn{i + 1}")(getattr(self, f"conv{i + 1}")(x)))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2, 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def tanh_func(x):
    return x.tanh().add(1).mul(0.5)


def smooth(x, shape):  # the reference's TV^2
    re_1 = torch.pow(x[:, : shape[1] - 1] - x[:, 1:], 2)
    re_2 = torch.pow(x[: shape[0] - 1, :] - x[1:, :], 2)
    return re_1.norm(p=1) + re_2.norm(p=1)


def class_loss(logits, target, kind):
    y = torch.full((logits.shape[0],), target, dtype=torch.long)
    if kind == "ce":
        return F.cross_entropy(logits, y)
    zt = logits[:, target]
    other = logits.clone()
    other[:, target] = float("-inf")
    return torch.clamp(other.max(1).values - zt, min=0.0).mean()


def label_loss(model, atanh_mask, atanh_mark, x, target, cost, space, kind):
    """The reference's loss for one label (remask_tabor), with the stamp space and loss switchable."""
    to_model = (lambda t: (t - MEAN) / STD) if space == "pixel" else (lambda t: t)
    mask = tanh_func(atanh_mask)
    mark = tanh_func(atanh_mark)
    X = x + mask * (mark - x)
    loss_model = class_loss(model(to_model(X)), target, kind)
    mask_r1 = mask.norm(p=1) + torch.pow(mask.norm(p=2), 2)
    pattern = (torch.ones_like(mask) - mask) * mark
    pattern_r1 = pattern.norm(p=1) + torch.pow(pattern.norm(p=2), 2)
    mask_r2 = smooth(mask, mask.shape)
    pattern_r2 = torch.tensor(0, dtype=torch.float)
    for ch in range(mark.shape[0]):
        pattern_r2 = pattern_r2 + smooth(pattern[ch, ...], mask.shape)
    r4 = class_loss(model(to_model((mask * mark).unsqueeze(0))), target, kind)
    loss_vec = torch.stack([mask_r1, pattern_r1, mask_r2, pattern_r2, r4])
    return loss_model + torch.sum(loss_vec * cost)


def main():
    torch.manual_seed(20220619)
    model = SmallCnn()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    for p in model.parameters():  # frozen, as in the Rust code (the reference leaves them trainable;
        p.requires_grad_(False)    # their gradients never feed back, so the result is the same)
    am0 = torch.randn(2, 1, 8, 8)
    ap0 = torch.randn(2, 3, 8, 8)
    out = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    out["am0"], out["ap0"] = am0, ap0
    for name, space, kind in [("pixel_ce", "pixel", "ce"), ("normalized_cw", "normalized", "cw")]:
        xs = [torch.rand(4, 3, 8, 8) if space == "pixel" else torch.randn(4, 3, 8, 8) for _ in range(2)]
        out[f"{name}.x1"], out[f"{name}.x2"] = xs
        losses = [[], []]
        ams, aps = [[], []], [[], []]
        for i, t in enumerate(LABELS):
            am = am0[i, 0].clone().requires_grad_()
            ap = ap0[i].clone().requires_grad_()
            opt = torch.optim.Adam([ap, am], lr=0.1, betas=(0.5, 0.9))
            cost = torch.tensor(INIT_COST) * COST_SCALE[t]
            for s in range(2):
                loss = label_loss(model, am, ap, xs[s], t, cost, space, kind)
                losses[s].append(loss.detach())
                loss.backward()
                g = torch.cat([am.grad.flatten(), ap.grad.flatten()]).abs()
                print(f"{name} label {t} step {s + 1}: loss {loss.item():.6f}, min |grad| {g.min().item():.3e}")
                opt.step()
                opt.zero_grad()
                ams[s].append(am.detach().clone().unsqueeze(0))
                aps[s].append(ap.detach().clone())
        for s in range(2):
            out[f"{name}.loss{s + 1}"] = torch.stack(losses[s])
            out[f"{name}.am{s + 1}"] = torch.stack(ams[s])
            out[f"{name}.ap{s + 1}"] = torch.stack(aps[s])
    save_file({k: v.contiguous() for k, v in out.items()}, OUT)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
