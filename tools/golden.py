"""Golden values for tests/golden.rs: PyTorch ResNet-20s (SPEC §3) logits on fixed weights and input.

Writes tests/golden/:
  resnet20s_zip.pt      state dict, torch.save zip format (torch >= 1.6), head named `fc`
  resnet20s_legacy.pt   the same weights, legacy format, nested under "state_dict" with `module.` prefixes
  resnet20s_pruned.pt   torch.nn.utils.prune.global_unstructured (L1, 80% of conv weights) applied:
                        `weight_orig` + `weight_mask`, head named `linear`
  golden.safetensors    input x [4,3,32,32], logits (eval mode) of the dense and the pruned model
Run: $(bash scripts/setup-torch.sh full)/bin/python tools/golden.py   (QUARANTINE_TORCH=full)
"""
import os
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "golden")


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
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)
        return F.relu(out + short)


class ResNet20s(nn.Module):
    def __init__(self, num_classes=10, head="fc"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            layers = []
            for j in range(3):
                layers.append(BasicBlock(planes_in, planes, stride if j == 0 else 1))
                planes_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.head = head
        setattr(self, head, nn.Linear(64, num_classes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return getattr(self, self.head)(out)


def main():
    torch.manual_seed(20220601)
    os.makedirs(OUT, exist_ok=True)
    model = ResNet20s()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial BN state
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(123)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
    torch.save(sd, f"{OUT}/resnet20s_zip.pt")
    legacy = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 200, "best_acc": 91.5}
    torch.save(legacy, f"{OUT}/resnet20s_legacy.pt", _use_new_zipfile_serialization=False)

    pruned = ResNet20s(head="linear")
    pruned.load_state_dict({k.replace("fc.", "linear."): v for k, v in sd.items()})
    convs = [(m, "weight") for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    prune.global_unstructured(convs, pruning_method=prune.L1Unstructured, amount=0.8)
    pruned.eval()
    with torch.no_grad():
        pruned_logits = pruned(x)
    torch.save(pruned.state_dict(), f"{OUT}/resnet20s_pruned.pt")
    save_file({"x": x.contiguous(), "logits": logits.contiguous(), "pruned_logits": pruned_logits.contiguous()}, f"{OUT}/golden.safetensors")
    print("dense logits[0]", logits[0].tolist())
    print("pruned density", sum(int(m.weight_mask.sum()) for m, _ in convs) / sum(m.weight_mask.numel() for m, _ in convs))


if __name__ == "__main__":
    main()
