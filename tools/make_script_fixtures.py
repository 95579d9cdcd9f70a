"""TorchScript fixtures: four architectures that are not built into quarantine, exported as PyTorch
users export them, with their PyTorch logits, plus hostile and malformed archives.

Writes tests/fixtures/script/ (committed; the tests in tests/script.rs and src/model/script.rs read it):
  wrn16_1.script.pt       WideResNet-16-1 (pre-activation basic blocks, 1x1 projection shortcuts)
  vgg_elu.script.pt       a small VGG with ELU and dropout
  mobilenet.script.pt     MobileNetV2-style inverted residuals with depthwise convolutions
  functional.script.pt    F.conv2d / F.batch_norm / F.linear on the module's own parameters
  vgg_elu.trace.pt        the VGG traced (torch.jit.trace) instead of scripted
  golden.safetensors      input [4, 1, 28, 28] and each model's eval-mode logits ("<name>.logits")
  reads_file.script.pt    forward calls torch.from_file: must be refused before it runs
  custom_op.script.pt     code calls ops.evil.run (an unknown custom-op namespace): must be refused
  bad_output.script.pt    returns [N, classes, 1] instead of [N, classes]
  flat28.script.pt        a linear model that only takes 1x28x28 inputs
Each model: 1 input channel, 28x28 images (the built-in data's shape), 10 classes, seed 0 weights
with BN statistics moved off their defaults so that eval mode is really tested.

Run (full PyTorch install): python tools/make_script_fixtures.py [OUT_DIR]
"""
import io
import os
import sys
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F


class WideBasic(nn.Module):
    """Pre-activation basic block of a WideResNet (Zagoruyko & Komodakis), dropout off."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        if self.shortcut is not None:
            return y + self.shortcut(o)
        return y + x


class WideResNet(nn.Module):
    """WRN-depth-k: depth 16, widen 1 gives 16-16-32-64 channels, 2 blocks per group."""

    def __init__(self, depth=16, widen=1, in_channels=1, num_classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers = []
        cin = widths[0]
        for g, stride in zip(range(3), [1, 2, 2]):
            for i in range(n):
                layers.append(WideBasic(cin, widths[g + 1], stride if i == 0 else 1))
                cin = widths[g + 1]
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.blocks(self.conv1(x))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VggElu(nn.Module):
    """A small VGG: conv-BN-ELU pairs, max-pooling, dropout before a two-layer head."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        cfg = [16, 16, "M", 32, 32, "M", 64, "M"]
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ELU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(c * 9, 64), nn.ELU(), nn.Dropout(0.3), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes match."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        if self.use_res:
            return x + self.block(x)
        return self.block(x)


class MobileNetSmall(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 4), InvertedResidual(16, 24, 2, 4), InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4), InvertedResidual(32, 32, 1, 4),
        )
        self.head = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(inplace=True))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean([2, 3]))


class Functional(nn.Module):
    """Written with functional ops on its own parameters and buffers (no nn.Conv2d / nn.BatchNorm2d)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, in_channels, 3, 3) * 0.3)
        self.b1 = nn.Parameter(torch.zeros(16))
        self.w2 = nn.Parameter(torch.randn(32, 16, 3, 3) * 0.1)
        self.gamma = nn.Parameter(torch.ones(32))
        self.beta = nn.Parameter(torch.zeros(32))
        self.register_buffer("mean", torch.zeros(32))
        self.register_buffer("var", torch.ones(32))
        self.wf = nn.Parameter(torch.randn(num_classes, 32) * 0.1)
        self.bf = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        x = F.gelu(F.conv2d(x, self.w1, self.b1, padding=1))
        x = F.max_pool2d(x, 2)
        x = F.conv2d(x, self.w2, None, stride=2, padding=1)
        x = F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, self.training, 0.1, 1e-5)
        x = F.silu(x)
        return F.linear(x.mean(dim=(2, 3)), self.wf, self.bf)


class ReadsFile(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        leak = torch.from_file("/etc/hostname", False, 1, dtype=torch.uint8)
        return self.fc(x.flatten(1)) + leak.float().sum()


class BadOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)).unsqueeze(-1)


class Flat28(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.view(-1, 784))


def architectures():
    """(name, model, example input shape) of the four architectures, seeded."""
    torch.manual_seed(0)
    for name, cls in [("wrn16_1", WideResNet), ("vgg_elu", VggElu), ("mobilenet", MobileNetSmall), ("functional", Functional)]:
        yield name, cls(), (1, 1, 28, 28)


def settle_bn(model):
    """Moves BN running statistics off (0, 1) with a few train-mode passes, then evaluates."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, 1, 28, 28) * 2 + 0.5)
    return model.eval()


def replace_in_code(src, dst, old, new):
    """Copies archive `src` to `dst` with `old` replaced by `new` in its code files."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        hits = 0
        for item in zin.infolist():
            data = zin.read(item.filename)
            if "/code/" in item.filename and item.filename.endswith(".py") and old.encode() in data:
                data = data.replace(old.encode(), new.encode())
                hits += 1
            zout.writestr(item, data)
    assert hits, f"{old!r} not in {src}"


def write_fuzz_seeds(fixtures, corpus):
    """Seeds for fuzz/fuzz_targets/torchscript.rs: each fixture's main code file, data.pkl,
    constants.pkl and storages in the target's `[u16 len][part]...` layout."""
    import struct

    os.makedirs(corpus, exist_ok=True)
    for f in sorted(os.listdir(fixtures)):
        if not f.endswith(".pt"):
            continue
        with zipfile.ZipFile(os.path.join(fixtures, f)) as z:
            names = z.namelist()
            prefix = names[0].split("/")[0] + "/"
            codes = [n for n in names if n.startswith(prefix + "code/") and n.endswith(".py")]
            main = max(codes, key=lambda n: len(z.read(n)))
            parts = [z.read(main), z.read(prefix + "data.pkl"), z.read(prefix + "constants.pkl")]
            parts += [z.read(n) for n in names if n.startswith(prefix + "data/")][:8]
        if any(len(p) > 0xFFFF for p in parts):
            parts = [p for p in parts if len(p) <= 0xFFFF]
        with open(os.path.join(corpus, f"seed-{f[:-3]}"), "wb") as out:
            for p in parts:
                out.write(struct.pack("<H", len(p)) + p)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "script")
    os.makedirs(out, exist_ok=True)
    from safetensors.torch import save_file

    torch.manual_seed(1)
    x = torch.rand(4, 1, 28, 28)
    golden = {"input": x}
    for name, model, _ in architectures():
        model = settle_bn(model)
        with torch.no_grad():
            golden[f"{name}.logits"] = model(x)
        torch.jit.script(model).save(os.path.join(out, f"{name}.script.pt"))
        if name == "vgg_elu":
            torch.jit.trace(model, x).save(os.path.join(out, f"{name}.trace.pt"))
        print(name, sum(p.numel() for p in model.parameters()), "parameters", file=sys.stderr)
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(out, "golden.safetensors"))

    torch.manual_seed(2)
    torch.jit.script(ReadsFile()).save(os.path.join(out, "reads_file.script.pt"))
    torch.jit.script(BadOutput()).save(os.path.join(out, "bad_output.script.pt"))
    torch.jit.script(Flat28()).save(os.path.join(out, "flat28.script.pt"))
    replace_in_code(os.path.join(out, "bad_output.script.pt"), os.path.join(out, "custom_op.script.pt"),
                    "torch.unsqueeze(", "ops.evil.run(")
    # The traced VGG and scripted models load in PyTorch and give the golden logits.
    for name in ["wrn16_1", "vgg_elu", "mobilenet", "functional"]:
        m = torch.jit.load(os.path.join(out, f"{name}.script.pt"))
        assert torch.allclose(m(x), golden[f"{name}.logits"], atol=1e-5), name
    assert torch.allclose(torch.jit.load(os.path.join(out, "vgg_elu.trace.pt"))(x), golden["vgg_elu.logits"], atol=1e-5)
    write_fuzz_seeds(out, os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "torchscript"))


if __name__ == "__main__":
    main()
