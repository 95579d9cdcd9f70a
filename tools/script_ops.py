"""The TorchScript op allow-list: every node kind in the compiled code of common image classifiers.

`quarantine` refuses a TorchScript model whose code uses an op outside this list
(crates/torchfile/src/script.rs reads the list before libtorch loads the archive, src/model/script.rs
checks the compiled graphs again after loading, before anything runs). The list is data: the ops that
torchvision's classifiers and the test fixtures (tools/make_script_fixtures.py) use when scripted and
when traced, so every op on it is tensor math or TorchScript control flow that such models need. This
script prints it; its output is committed as crates/torchfile/src/script_ops.txt.

Run (full PyTorch install plus torchvision): python tools/script_ops.py > crates/torchfile/src/script_ops.txt
"""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import make_script_fixtures as fixtures  # noqa: E402

# Ops on no account allowed, even if some model used them: they read or write files, talk to the
# process or load code. Checked against the collected list below (the script fails if one appears).
DENY = {"aten::from_file", "aten::save", "aten::load", "prim::PythonOp", "aten::_load_for_mobile"}


# Tensor math that classifiers use beyond what the models below happen to use (activations, norms,
# pooling, resampling, padding, linear algebra, reductions, elementwise math, shape and indexing,
# tensor creation, dtype and device casts, scalar arithmetic and list helpers of TorchScript code).
# Each must be a real aten op (checked below); none reads or writes anything but tensors.
EXTRA = """
abs abs_ adaptive_avg_pool1d adaptive_max_pool2d add addmm arange argmax argmin avg_pool1d baddbmm bmm
cat ceil channel_shuffle clamp clamp_ clamp_max clamp_min clone constant_pad_nd conv1d conv_transpose2d
cos cumsum detach div einsum elu embedding eq erf exp expand_as flatten floor full full_like gather ge
group_norm hardsigmoid_ hardswish hardtanh index_select instance_norm layer_norm leaky_relu
leaky_relu_ log log_softmax logsumexp masked_fill matmul max max_pool1d max_pool2d_with_indices
maximum min minimum mish mm mul_ narrow neg new_zeros new_ones norm ones ones_like pad pixel_shuffle
pow prelu reciprocal relu6 roll rsqrt selu sigmoid_ sign sin softmax softplus sort sqrt square stack
std sub_ sum t tanh tanh_ to topk type_as upsample_bilinear2d upsample_nearest2d var where zeros_like
Float Bool ScalarImplicit str list __range_length __derive_index warn ceil floor sqrt numel item
dim size len format __getitem__ append extend
""".split()


def walk(block, kinds):
    for node in block.nodes():
        kinds.add(node.kind())
        for sub in node.blocks():
            walk(sub, kinds)


def collect(module, kinds):
    """Node kinds of every method of every submodule, and of the inlined forward."""
    walk(module.inlined_graph, kinds)
    for _, sub in [("", module)] + list(module.named_modules()):
        for name in sub._c._method_names():
            walk(sub._c._get_method(name).graph, kinds)


def models():
    yield from fixtures.architectures()
    try:
        import torchvision.models as tvm
    except ImportError:
        print("torchvision not installed: the list covers the fixtures only", file=sys.stderr)
        return
    for name in ["resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small", "densenet121",
                 "efficientnet_b0", "shufflenet_v2_x0_5", "squeezenet1_1", "regnet_y_400mf", "convnext_tiny",
                 "mnasnet0_5", "alexnet", "wide_resnet50_2", "resnext50_32x4d", "vit_b_16"]:
        shape = (1, 3, 224, 224) if name in ("vit_b_16", "alexnet") else (1, 3, 64, 64)
        yield name, getattr(tvm, name)(num_classes=10), shape


def main():
    kinds = set()
    for name, model, shape in models():
        model = model.eval()
        try:
            collect(torch.jit.script(model), kinds)
        except Exception as e:  # noqa: BLE001 - some models cannot be scripted; tracing still counts
            print(f"{name}: not scriptable ({type(e).__name__})", file=sys.stderr)
        with torch.no_grad():
            collect(torch.jit.trace(model, torch.randn(*shape)), kinds)
        print(f"{name}: {len(kinds)} kinds so far", file=sys.stderr)
    for name in EXTRA:
        if not torch._C._jit_get_schemas_for_operator(f"aten::{name}"):
            sys.exit(f"aten::{name} is not an op")
        kinds.add(f"aten::{name}")
    bad = kinds & DENY
    if bad:
        sys.exit(f"denied ops appeared: {sorted(bad)}")
    print("# TorchScript ops a model may use (tools/script_ops.py; one per line; aten::X is torch.X in the")
    print("# archive's code, NS::X is ops.NS.X). Generated, do not edit by hand.")
    for k in sorted(kinds):
        print(k)


if __name__ == "__main__":
    main()
