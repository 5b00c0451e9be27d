"""DCGAN state dicts in the PyTorch tutorial layout (`main.N` ConvTranspose2d / BatchNorm2d)."""

import re

from .rules import Rules, numbered

RULES = Rules([
    ("{p}.conv.weight", "{p}.conv.kernel", "conv_t"),
    ("{p}.conv.bias", "{p}.conv.bias", "same"),
    ("{p}.bn.weight", "{p}.bn.scale", "same"),
    ("{p}.bn.bias", "{p}.bn.bias", "same"),
    ("{p}.bn.running_mean", "{p}.bn.mean", "same"),
    ("{p}.bn.running_var", "{p}.bn.var", "same"),
    ("{p}.bn.num_batches_tracked", None, "same"),  # no forward pass reads it; kept for export
])


def detect(keys):
    return "dcgan" if "main.0.weight" in keys else None


def renamer(keys):
    """`main.N` -> `layerK.conv` for the K-th ConvTranspose2d, `layerK.bn` for the BatchNorm after it."""
    bns = {int(m[1]) for k in keys if (m := re.fullmatch(r"main\.(\d+)\.running_mean", k))}
    convs = sorted({int(m[1]) for k in keys if (m := re.fullmatch(r"main\.(\d+)\.weight", k))} - bns)
    block = {i: f"layer{n}.conv" for n, i in enumerate(convs, start=1)}
    block.update({i + 1: f"layer{n}.bn" for n, i in enumerate(convs, start=1) if i + 1 in bns})

    def rename(key):
        m = re.fullmatch(r"main\.(\d+)\.(.+)", key)
        if not m or int(m[1]) not in block:
            return key  # reported as unknown
        return f"{block[int(m[1])]}.{m[2]}"

    return rename


def checkpoint_names(keys):
    """canonical name -> the name this state dict uses: `main.N` by the blocks it has (the
    tutorial's ConvTranspose2d, BatchNorm2d, ReLU spacing for a block it lacks)."""
    bns = {int(m[1]) for k in keys if (m := re.fullmatch(r"main\.(\d+)\.running_mean", k))}
    convs = sorted({int(m[1]) for k in keys if (m := re.fullmatch(r"main\.(\d+)\.weight", k))} - bns)

    def name(canonical):
        m = re.fullmatch(r"layer(\d+)\.(conv|bn)\.(.+)", canonical)
        if not m:
            return canonical
        n = int(m[1])
        index = convs[n - 1] if n <= len(convs) else 3 * (n - 1)
        return f"main.{index + (m[2] == 'bn')}.{m[3]}"

    return name


def spec(sd):
    out = {}
    weights = numbered(sd, "layer%d.conv.weight")
    cin = weights[0].shape[0] if weights else 0
    for n, w in enumerate(weights, start=1):
        _, cout, k, _ = w.shape
        out[f"layer{n}.conv.weight"] = (cin, cout, k, k)
        if f"layer{n}.conv.bias" in sd:
            out[f"layer{n}.conv.bias"] = (cout,)
        if any(s.startswith(f"layer{n}.bn.") for s in sd):
            for p in ("weight", "bias", "running_mean", "running_var"):
                out[f"layer{n}.bn.{p}"] = (cout,)
            if f"layer{n}.bn.num_batches_tracked" in sd:  # absent before PyTorch 0.4.1
                out[f"layer{n}.bn.num_batches_tracked"] = ()
        cin = cout
    return out


def default_config(sd):
    """The tutorial's strides/paddings: 1x1 z -> 4x4, then doubling."""
    n = len(numbered(sd, "layer%d.conv.weight"))
    return {"strides": [1] + [2] * (n - 1), "paddings": [0] + [1] * (n - 1), "bn_eps": 1e-5}
