"""Progressive GAN state dicts (official `ProgressiveGenerator` names, or the old `features.N`)."""

import re

from .rules import Rules
from .torch_format import CheckpointError

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


def spec(sd):
    n_layers = sum(1 for k in sd if re.fullmatch(r"layer\d+\.conv\.weight", k))
    if n_layers < 2 or n_layers % 2:
        raise CheckpointError(f"missing key 'layer{n_layers + 1}.conv.weight' (blocks come in pairs)")
    out = {}
    cin = None
    for n in range(1, n_layers + 1):
        key = f"layer{n}.conv.weight"
        if key not in sd:
            raise CheckpointError(f"missing key {key!r}")
        cout = sd[key].shape[0]
        if cin is None:
            cin = sd[key].shape[1]
        out[key], out[f"layer{n}.wscale.b"] = (cout, cin, 4 if n == 1 else 3, 4 if n == 1 else 3), (cout,)
        cin = cout
    name = output_name(n_layers)
    out[f"{name}.conv.weight"], out[f"{name}.wscale.b"] = (3, cin, 1, 1), (3,)
    return out


def default_config(sd):
    return {}
