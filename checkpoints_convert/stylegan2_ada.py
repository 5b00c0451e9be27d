"""NVIDIA StyleGAN2-ADA generators (`stylegan2-ada-pytorch` network pickles, `G_ema` or `G`),
mapped onto the sequential StyleGAN2 tree: block `bR` of the synthesis network is two styled
convolutions and a to-RGB (`b4`: `conv1` only), so `b4.conv1` is `layer2.conv`, `b8.conv0`
and `b8.conv1` are `layer3.sconv` and `layer4.sconv`, and so on; the mapping network's
`fc{i}` is `style.{i+1}`. Canonical names are the tree paths themselves; filters a layer
never reads (the non-upsampling layers' and `b4`'s `resample_filter`) are kept aside for
export.
"""

import re

from .rules import MissingKey, Rules

RULES = Rules([
    ("style.{n}.kernel", "style.{n}.kernel", "linear"),
    ("style.{n}.bias", "style.{n}.bias", "same"),
    ("embed.kernel", "embed.kernel", "linear"),
    ("embed.bias", "embed.bias", "same"),
    ("latents.latent_avg", "latents.latent_avg", "same"),
    ("noises.noise_{n}", "noises.noise_{n}", "hw"),
    ("input.input", "input.input", "chw"),
    ("{p}.mconv.modulation.kernel", "{p}.mconv.modulation.kernel", "linear"),
    ("{p}.mconv.modulation.bias", "{p}.mconv.modulation.bias", "same"),
    ("{p}.mconv.dconv.kernel", "{p}.mconv.dconv.kernel", "conv"),
    ("{p}.mconv.blur.kernel", "{p}.mconv.blur.kernel", "fir_up2"),
    ("{p}.noise.strength", "{p}.noise.strength", "scalar"),
    ("{p}.activate.bias", "{p}.activate.bias", "same"),
    ("{p}.rgb.conv.kernel", "{p}.rgb.conv.kernel", "conv"),
    ("{p}.rgb.conv.modulation.kernel", "{p}.rgb.conv.modulation.kernel", "linear"),
    ("{p}.rgb.conv.modulation.bias", "{p}.rgb.conv.modulation.bias", "same"),
    ("{p}.rgb.bias", "{p}.rgb.bias", "rgb_bias"),
    ("up_rgb{n}.kernel", "up_rgb{n}.kernel", "fir_up2"),
    ("unused.{p}", None, "same"),
])

_LAYER = {"weight": "mconv.dconv.kernel", "bias": "activate.bias", "noise_strength": "noise.strength",
          "affine.weight": "mconv.modulation.kernel", "affine.bias": "mconv.modulation.bias",
          "resample_filter": "mconv.blur.kernel"}
_RGB = {"weight": "rgb.conv.kernel", "bias": "rgb.bias", "affine.weight": "rgb.conv.modulation.kernel",
        "affine.bias": "rgb.conv.modulation.bias"}


def detect(keys):
    return "nvidia-ada" if "synthesis.b4.const" in keys else None


def _layer(res, conv):
    """(tree prefix, latent index) of NVIDIA's `b{res}.conv{0,1}`."""
    j = res.bit_length() - 3  # b4 -> 0, b8 -> 1, ...
    n = 2 if j == 0 else 2 * j + 1 + conv
    return ("layer2.conv" if n == 2 else f"layer{n}.sconv"), n - 2


def _to_tree(key):
    m = re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key)
    if m:
        return f"style.{int(m[1]) + 1}.{'kernel' if m[2] == 'weight' else 'bias'}"
    m = re.fullmatch(r"mapping\.embed\.(weight|bias)", key)
    if m:
        return f"embed.{'kernel' if m[1] == 'weight' else 'bias'}"
    if key == "mapping.w_avg":
        return "latents.latent_avg"
    if key == "synthesis.b4.const":
        return "input.input"
    m = re.fullmatch(r"synthesis\.b(\d+)\.conv([01])\.(.+)", key)
    if m:
        res, conv, rest = int(m[1]), int(m[2]), m[3]
        prefix, lat = _layer(res, conv)
        if rest == "noise_const":
            return f"noises.noise_{lat}"
        if rest == "resample_filter" and (res == 4 or conv == 1):
            return f"unused.{key}"  # a layer that does not upsample never reads it
        return f"{prefix}.{_LAYER[rest]}" if rest in _LAYER else key
    m = re.fullmatch(r"synthesis\.b(\d+)\.torgb\.(.+)", key)
    if m and m[2] in _RGB:
        return f"to_rgb{int(m[1]).bit_length() - 2}.{_RGB[m[2]]}"
    m = re.fullmatch(r"synthesis\.b(\d+)\.resample_filter", key)
    if m:
        j = int(m[1]).bit_length() - 3
        return f"up_rgb{j}.kernel" if j else f"unused.{key}"
    return key  # reported as unknown


def renamer(keys):
    return _to_tree


def checkpoint_names(keys):
    inverse = {_to_tree(k): k for k in keys}
    return lambda name: inverse.get(name, name)


def spec(sd):
    """Expected shapes, from the widths the state dict itself declares."""
    def shape(key):
        if key not in sd:
            raise MissingKey(key)
        return tuple(sd[key].shape)

    out = {}
    style_dim = shape("latents.latent_avg")[0]
    n_mlp = max(int(m[1]) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.kernel", k)))
    for i in range(1, n_mlp + 1):
        out[f"style.{i}.kernel"] = (style_dim, shape(f"style.{i}.kernel")[1] if i == 1 else style_dim)
        out[f"style.{i}.bias"] = (style_dim,)
    if "embed.kernel" in sd:
        out["embed.kernel"], out["embed.bias"] = (style_dim, shape("embed.kernel")[1]), (style_dim,)
    out["latents.latent_avg"] = (style_dim,)
    cin = shape("input.input")[0]
    out["input.input"] = (cin, 4, 4)
    layers = sorted(int(m[1]) for k in sd if (m := re.fullmatch(r"layer(\d+)\.\w+\.mconv\.dconv\.kernel", k)))
    if not layers or layers != list(range(2, layers[-1] + 1)) or layers[-1] % 2:
        raise MissingKey(f"layer{len(layers) + 2}.sconv.mconv.dconv.kernel", " (blocks come whole)")
    for n in layers:
        base = "layer2.conv" if n == 2 else f"layer{n}.sconv"
        cout = shape(f"{base}.mconv.dconv.kernel")[0]
        out[f"{base}.mconv.dconv.kernel"] = (cout, cin, 3, 3)
        out[f"{base}.mconv.modulation.kernel"], out[f"{base}.mconv.modulation.bias"] = (cin, style_dim), (cin,)
        out[f"{base}.activate.bias"], out[f"{base}.noise.strength"] = (cout,), ()
        h = 4 * 2 ** ((n - 1) // 2)
        out[f"noises.noise_{n - 2}"] = (h, h)
        if n % 2:
            out[f"{base}.mconv.blur.kernel"] = (4, 4)
            out[f"up_rgb{(n - 1) // 2}.kernel"] = (4, 4)
        else:
            rgb = f"to_rgb{n // 2}.rgb"
            out[f"{rgb}.conv.kernel"], out[f"{rgb}.bias"] = (3, cout, 1, 1), (3,)
            out[f"{rgb}.conv.modulation.kernel"], out[f"{rgb}.conv.modulation.bias"] = (cout, style_dim), (cout,)
        cin = cout
    out.update({k: tuple(sd[k].shape) for k in sd if k.startswith("unused.")})
    return out


def default_config(sd):
    return {"lr_mlp": 0.01}
