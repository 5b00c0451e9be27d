"""StyleGAN2 state dicts: rosinality's `stylegan2-pytorch` names or the official sequential names.

Canonical names are the official sequential model's (`layer6.sconv.mconv.dconv.weight`).
"""

import re

from .rules import MissingKey, Rules

RULES = Rules([
    ("style.{n}.weight", "style.{n}.kernel", "linear"),
    ("style.{n}.bias", "style.{n}.bias", "same"),
    ("latents.latent_avg", "latents.latent_avg", "same"),
    ("noises.noise_{n}", "noises.noise_{n}", "nchw"),
    ("input.input", "input.input", "nchw"),
    ("{p}.modulation.weight", "{p}.modulation.kernel", "linear"),
    ("{p}.modulation.bias", "{p}.modulation.bias", "same"),
    ("{p}.mconv.dconv.weight", "{p}.mconv.dconv.kernel", "mconv"),
    ("{p}.blur.kernel", "{p}.blur.kernel", "same"),
    ("{p}.noise.weight", "{p}.noise.strength", "same"),
    ("{p}.activate.bias", "{p}.activate.bias", "same"),
    ("{p}.rgb.conv.weight", "{p}.rgb.conv.kernel", "mconv"),
    ("{p}.rgb.bias", "{p}.rgb.bias", "nchw"),
    ("up_rgb{n}.kernel", "up_rgb{n}.kernel", "same"),
])


def detect(keys):
    if "conv1.conv.weight" in keys:
        return "rosinality"
    if "layer2.conv.mconv.dconv.weight" in keys:
        return "seq"
    return None


def renamer(keys):
    return _rosinality_to_seq if detect(keys) == "rosinality" else (lambda key: key)


def _rosinality_to_seq(key):
    m = re.fullmatch(r"(conv1|convs\.(\d+))\.(conv|noise|activate)\.(.+)", key)
    if m:
        layer = "layer2.conv" if m[2] is None else f"layer{int(m[2]) + 3}.sconv"
        if m[3] == "conv":
            return f"{layer}.mconv.{'dconv.weight' if m[4] == 'weight' else m[4]}"
        return f"{layer}.{m[3]}.{m[4]}"
    m = re.fullmatch(r"to_rgb(?:1|s\.(\d+))\.(.+)", key)
    if m:
        j = 1 if m[1] is None else int(m[1]) + 2
        return f"up_rgb{j - 1}.kernel" if m[2] == "upsample.kernel" else f"to_rgb{j}.rgb.{m[2]}"
    return "latents.latent_avg" if key == "latent_avg" else key


def checkpoint_names(keys):
    """canonical (official sequential) name -> the name this state dict uses."""
    return _seq_to_rosinality if detect(keys) == "rosinality" else (lambda name: name)


def _seq_to_rosinality(name):
    m = re.fullmatch(r"layer(\d+)\.(conv|sconv)\.(mconv|noise|activate)\.(.+)", name)
    if m:
        layer = "conv1" if m[1] == "2" else f"convs.{int(m[1]) - 3}"
        if m[3] == "mconv":
            return f"{layer}.conv.{'weight' if m[4] == 'dconv.weight' else m[4]}"
        return f"{layer}.{m[3]}.{m[4]}"
    m = re.fullmatch(r"to_rgb(\d+)\.rgb\.(.+)", name)
    if m:
        return f"to_rgb1.{m[2]}" if m[1] == "1" else f"to_rgbs.{int(m[1]) - 2}.{m[2]}"
    m = re.fullmatch(r"up_rgb(\d+)\.kernel", name)
    if m:
        return f"to_rgbs.{int(m[1]) - 1}.upsample.kernel"
    return "latent_avg" if name == "latents.latent_avg" else name


def spec(sd):
    """Expected shapes of every canonical key, from the widths the state dict itself declares."""

    def shape(key):
        if key not in sd:
            raise MissingKey(key)
        return tuple(sd[key].shape)

    style_dim = shape("style.1.weight")[1]
    n_mlp = max(int(m[1]) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    last = max(int(m[1]) for k in sd if (m := re.match(r"layer(\d+)\.", k)))
    if last % 2:
        raise MissingKey(f"layer{last + 1}.sconv.mconv.dconv.weight", " (layers come in pairs)")
    out = {}
    for i in range(1, n_mlp + 1):
        out[f"style.{i}.weight"], out[f"style.{i}.bias"] = (style_dim, style_dim), (style_dim,)
    cin = shape("input.input")[1]
    out["input.input"] = (1, cin, 4, 4)

    def modulated(prefix, cin, cout, k):
        out[f"{prefix}.modulation.weight"], out[f"{prefix}.modulation.bias"] = (cin, style_dim), (cin,)
        return (1, cout, cin, k, k)

    for n in range(2, last + 1):
        base = "layer2.conv" if n == 2 else f"layer{n}.sconv"
        _, cout, _, k, _ = shape(f"{base}.mconv.dconv.weight")
        out[f"{base}.mconv.dconv.weight"] = modulated(f"{base}.mconv", cin, cout, k)
        out[f"{base}.noise.weight"], out[f"{base}.activate.bias"] = (1,), (cout,)
        if n % 2:
            j = (n - 1) // 2
            out[f"up_rgb{j}.kernel"] = _square(shape(f"up_rgb{j}.kernel"))
            out[f"{base}.mconv.blur.kernel"] = _square(shape(f"{base}.mconv.blur.kernel"))
        else:
            rgb = f"to_rgb{max(1, n // 2)}.rgb"
            out[f"{rgb}.conv.weight"] = modulated(f"{rgb}.conv", cout, 3, 1)
            out[f"{rgb}.bias"] = (1, 3, 1, 1)
        cin = cout
    if any(k.startswith("noises.") for k in sd):
        for j in range(last - 1):
            res = 4 * 2 ** ((j + 1) // 2)
            out[f"noises.noise_{j}"] = (1, 1, res, res)
    if "latents.latent_avg" in sd:
        out["latents.latent_avg"] = (style_dim,)
    return out


def _square(shape):
    return shape if len(shape) == 2 and shape[0] == shape[1] else (4, 4)


def default_config(sd):
    return {"lr_mlp": 0.01}
