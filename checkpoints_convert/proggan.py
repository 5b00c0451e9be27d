"""Progressive GAN state dicts (official `ProgressiveGenerator` names, or the old `features.N`)."""

import re

from collections import Counter

from .rules import MissingKey, Rules, numbered

RULES = Rules([
    ("{p}.conv.weight", "{p}.conv.kernel", "conv"),
    ("{p}.wscale.b", "{p}.wscale.bias", "same"),
])


def detect(keys):
    return "proggan" if "layer1.conv.weight" in keys else "proggan_old" if "features.0.conv.weight" in keys else None


def output_name(n_layers):
    res = 4 * 2 ** ((n_layers - 1) // 2)
    return f"output_{res}x{res}"


def renamer(keys):
    n_layers = sum(1 for k in keys if re.fullmatch(r"(features\.\d+|layer\d+)\.conv\.weight", k))

    def rename(key):
        m = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if m:
            return f"layer{int(m[1]) + 1}.{m[2]}"
        return re.sub(r"^output\.", output_name(n_layers) + ".", key)

    return rename


def checkpoint_names(keys):
    """canonical name -> the name this state dict uses (the inverse of `renamer`)."""
    if detect(keys) != "proggan_old":
        return lambda name: name

    def name(canonical):
        m = re.fullmatch(r"layer(\d+)\.(.+)", canonical)
        return f"features.{int(m[1]) - 1}.{m[2]}" if m else re.sub(r"^output_\d+x\d+\.", "output.", canonical)

    return name


def spec(sd):
    weights = numbered(sd, "layer%d.conv.weight")
    n_layers = len(weights)
    if n_layers < 2 or n_layers % 2:
        raise MissingKey(f"layer{n_layers + 1}.conv.weight", " (blocks come in pairs)")
    out = {}
    cin = weights[0].shape[1]
    for n, w in enumerate(weights, start=1):
        k = 4 if n == 1 else 3
        # a block's width as most of its tensors say (its weight, its bias, the next weight's
        # input), so that the one tensor that disagrees is the one reported
        said = [w.shape[0]] + [a.shape[i] for a, i in ((sd.get(f"layer{n}.wscale.b"), 0),
                                                       (sd.get(f"layer{n + 1}.conv.weight"), 1)) if a is not None]
        cout = Counter(said).most_common(1)[0][0]
        out[f"layer{n}.conv.weight"], out[f"layer{n}.wscale.b"] = (cout, cin, k, k), (cout,)
        cin = cout
    name = output_name(n_layers)
    out[f"{name}.conv.weight"], out[f"{name}.wscale.b"] = (3, cin, 1, 1), (3,)
    return out


def default_config(sd):
    return {}
