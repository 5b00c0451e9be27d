"""StyleGAN2 in the official *sequential* form (`SeqStyleGAN2`, `mconv='seq'`).

The modulated convolution is split into `modulation` (style -> per-input-channel scale),
`adain` (scale the input) and `dconv` (plain conv of the raw weight with demodulation), so
the key of a rewrite is the modulated input and the rewritten leaf is an ordinary HWIO
kernel. Layer names, latent indices and noise follow the official model; everything about
the size (resolution, widths, style_dim, n_mlp) is read off the parameter shapes.

Parameter tree (leaves by official name, Flax leaf names):
  style.{i}.{kernel,bias}                     mapping net, i = 1..n_mlp, kernel [in, out]
  latents.latent_avg                          [style_dim] (optional; truncation only)
  noises.noise_{j}                            [1, H, W, 1] fixed noise buffers
  input.input                                 [1, 4, 4, C]
  layerN.{conv|sconv}.mconv.modulation.{kernel,bias}
  layerN.{conv|sconv}.mconv.dconv.kernel      [k, k, in, out]
  layerN.sconv.mconv.blur.kernel              [4, 4] FIR kernel (upsampling layers)
  layerN.{conv|sconv}.noise.strength          [1]
  layerN.{conv|sconv}.activate.bias           [out]
  to_rgbJ.rgb.conv.{kernel [1,1,in,3], modulation.{kernel,bias}}, to_rgbJ.rgb.bias [1,1,1,3]
  up_rgbJ.kernel                              [4, 4] FIR kernel for the RGB skip
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import ops
from ..tree import get
from .sequential import Generator, Layer

NOISE_MODES = ("official", "fixed", "zero", "random")


def equal_linear(p, x, lr_mul=1.0):
    """Equalised-learning-rate linear layer: the stored weight is scaled at run time."""
    scale = lr_mul / math.sqrt(p["kernel"].shape[0])
    return x @ (p["kernel"] * scale), p["bias"] * lr_mul


@functools.lru_cache(maxsize=None)
def official_noise_table(rows, height, width):
    """The official sequential model's noise: `RandomState(0).randn(batch, H*W)`, drawn afresh
    on every call, so sample `i` of a batch always gets row `i` whatever the layer."""
    return np.random.RandomState(0).randn(rows, height * width).astype(np.float32).reshape(rows, height, width, 1)


def noise_for(bag, shape, mode, noise_batch, buffer, salt):
    n, h, w, _ = shape
    if mode == "official":
        return jnp.asarray(official_noise_table(noise_batch, h, w))[bag["noise_row"]]
    if mode == "fixed":
        if "noise_origin" in bag:  # a crop of the map (a rewrite's goal): the buffer's same crop; padded,
            # so that a goal zero-padded to a larger batch shape is never shifted by slice clamping
            padded = jnp.pad(buffer, ((0, 0), (0, h), (0, w), (0, 0)))
            return jax.lax.dynamic_slice(padded, (0, bag["noise_origin"][0], bag["noise_origin"][1], 0), (1, h, w, 1))
        if buffer.shape[1:3] != (h, w):
            raise ValueError(f"fixed noise buffer is {buffer.shape[1:3]}, feature map is {(h, w)}")
        return buffer
    if mode == "random":  # one key per sample: an image's noise does not depend on its batch
        return jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, salt), (h, w, 1)))(bag["noise_key"])
    return jnp.zeros((1, 1, 1, 1))


def demodulation(kernel, style):
    """rsqrt(sum_{y,x,i} (kernel/sqrt(fan_in) * style_i)^2 + 1e-8) per sample and output channel.

    It depends on the kernel, so a rewrite of `dconv` is nonlinear in the weight; for a
    factored kernel (`ops.LowRank`, the Λ update) the sum is a quadratic form in Λ."""
    k, _, cin, _ = kernel.shape
    if isinstance(kernel, ops.LowRank):
        return jax.lax.rsqrt(ops.squared_norms(kernel, jnp.square(style)) / (cin * k * k) + 1e-8)
    w2 = ops.tap_squares(kernel) / (cin * k * k)  # [in, out]
    return jax.lax.rsqrt(jnp.square(style) @ w2 + 1e-8)  # [n, out]


def styled_conv(name, sub, lat, upsample, mode, noise_batch, clamp=None):
    """The named steps of one styled convolution; `lat` indexes its latent and its noise buffer."""
    base = f"{name}.{sub}"

    def pick(params, bag):
        return {**bag, "style": bag["latent"][:, lat]}

    def modulation(params, bag):
        y, b = equal_linear(get(params, f"{base}.mconv.modulation"), bag["style"])
        return {**bag, "style": y + b}

    def adain(params, bag):
        return {**bag, "fmap": bag["style"][:, None, None, :] * bag["fmap"]}

    def dconv(params, bag):
        kernel = get(params, f"{base}.mconv.dconv")["kernel"]
        k, _, cin, _ = kernel.shape
        scaled = kernel / math.sqrt(cin * k * k)
        if upsample:
            out = ops.conv_transpose(bag["fmap"], scaled, stride=2, padding=0)
        else:
            out = ops.conv(bag["fmap"], scaled, padding=k // 2)
        return {**bag, "fmap": ops.scale_channels(out, demodulation(kernel, bag["style"]))}

    def blur(params, bag):
        fir = get(params, f"{base}.mconv.blur")["kernel"]
        k = get(params, f"{base}.mconv.dconv")["kernel"].shape[0]
        p = fir.shape[0] - 2 - (k - 1)  # trims the transposed conv's 2H+k-2 back to 2H
        return {**bag, "fmap": ops.upfirdn2d(bag["fmap"], fir, pad=((p + 1) // 2 + 1, p // 2 + 1))}

    def noise(params, bag):
        buffer = params["noises"][f"noise_{lat}"] if mode == "fixed" else None
        n = noise_for(bag, bag["fmap"].shape, mode, noise_batch, buffer, lat)
        return {**bag, "fmap": bag["fmap"] + get(params, f"{base}.noise")["strength"] * n}

    def activate(params, bag):
        out = ops.fused_leaky_relu(bag["fmap"], get(params, f"{base}.activate")["bias"])
        return {**bag, "fmap": out if clamp is None else jnp.clip(out, -clamp, clamp)}

    steps = [
        (f"{name}.lat{lat}", pick),
        (f"{base}.mconv.modulation", modulation),
        (f"{base}.mconv.adain", adain),
        (f"{base}.mconv.dconv", dconv),
    ]
    if upsample:
        steps.append((f"{base}.mconv.blur", blur))
    steps += [(f"{base}.noise", noise), (f"{base}.activate", activate)]
    return [Layer(n, f) for n, f in steps]


def to_rgb(name, lat, skip, clamp=None):
    def pick(params, bag):
        return {**bag, "style": bag["latent"][:, lat]}

    def rgb(params, bag):
        p = get(params, f"{name}.rgb")
        y, b = equal_linear(p["conv"]["modulation"], bag["style"])
        kernel = p["conv"]["kernel"][0, 0]  # [in, 3]; 1x1 conv, no demodulation
        out = jnp.einsum("nhwi,ni,io->nhwo", bag["fmap"], y + b, kernel / math.sqrt(kernel.shape[0]))
        out = out + p["bias"]
        out = out if clamp is None else jnp.clip(out, -clamp, clamp)
        return {**bag, "output": out + bag["output"] if skip else out}

    return [Layer(f"{name}.lat{lat}", pick), Layer(f"{name}.rgb", rgb)]


def build(params, config=None, *, noise="official", noise_batch=1, truncation=1.0, truncation_cutoff=None,
          label=None):
    """The sequential StyleGAN2 for these parameters (rosinality's and the official rewriting
    code's, and NVIDIA's StyleGAN2-ADA: config `conv_clamp` clamps every activation and RGB
    output as NVIDIA does, an `embed` parameter makes it conditional on `labels`, and
    `truncation_cutoff` truncates the first ws only, as NVIDIA's mapping does; `label`: the
    class of every image a conditional model draws where `inputs` is given no `labels`).

    noise: 'official' reproduces the official code (row `noise_row` of RandomState(0) noise,
    fresh for every feature-map shape; `noise_batch` = the official batch size being
    emulated, 1 = one image per call as the rewriter does), 'fixed' uses the checkpoint's
    `noises.noise_j` buffers, 'zero' none, 'random' draws from the bag's `noise_key`.
    """
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    if noise == "fixed" and "noises" not in params:
        raise ValueError("noise='fixed' needs the checkpoint's noise buffers (noises.noise_j), and it has none")
    if int(noise_batch) < 1:
        raise ValueError(f"noise_batch must be >= 1, got {noise_batch}")
    config = config or {}
    lr_mlp = float(config.get("lr_mlp", 0.01))
    clamp = config.get("conv_clamp")
    n_mlp = len(params["style"])
    n_conv = sum(1 for k in params if k.startswith("layer"))
    n_latent = n_conv + 1
    conditional = "embed" in params
    if label is not None and not conditional:
        raise ValueError("this model is not conditional: a class does not apply")
    z_dim = params["style"]["1"]["kernel"].shape[0] - (params["embed"]["kernel"].shape[1] if conditional else 0)

    def pixel_norm(params, bag):
        z = ops.pixel_norm(bag["latent"])
        if conditional:  # the label's embedding, normalised, beside z
            y, b = equal_linear(params["embed"], bag["label"])
            z = jnp.concatenate([z, ops.pixel_norm(y + b)], axis=1)
        return {**bag, "latent": z}

    def mapping(i):
        def apply(params, bag):
            y, b = equal_linear(params["style"][str(i)], bag["latent"], lr_mlp)
            return {**bag, "latent": ops.fused_leaky_relu(y, b)}

        return Layer(f"style.{i}", apply)

    def latents(params, bag):
        w = bag["latent"]
        if truncation != 1.0:
            if "latent_avg" not in params.get("latents", {}):
                raise ValueError("truncation needs latent_avg, which this checkpoint does not have")
            avg = params["latents"]["latent_avg"]
            ws = jnp.repeat(w[:, None, :], n_latent, axis=1)
            cut = n_latent if truncation_cutoff is None else int(truncation_cutoff)
            return {**bag, "latent": ws.at[:, :cut].set(avg + truncation * (ws[:, :cut] - avg))}
        return {**bag, "latent": jnp.repeat(w[:, None, :], n_latent, axis=1)}

    def constant(params, bag):
        const = params["input"]["input"]
        return {**bag, "fmap": jnp.broadcast_to(const, (bag["latent"].shape[0],) + const.shape[1:])}

    def upsample_rgb(j):
        def apply(params, bag):
            fir = params[f"up_rgb{j}"]["kernel"]
            p = fir.shape[0] - 2
            return {**bag, "output": ops.upfirdn2d(bag["output"], fir, up=2, pad=((p + 1) // 2 + 1, p // 2))}

        return Layer(f"up_rgb{j}", apply)

    layers = [Layer("style.0", pixel_norm)] + [mapping(i) for i in range(1, n_mlp + 1)]
    layers += [Layer("latents", latents), Layer("input", constant)]
    layers += styled_conv("layer2", "conv", 0, False, noise, noise_batch, clamp)
    layers += to_rgb("to_rgb1", 1, skip=False, clamp=clamp)
    for j, n in enumerate(range(3, n_conv + 2, 2), start=1):
        layers.append(upsample_rgb(j))
        layers += styled_conv(f"layer{n}", "sconv", n - 2, True, noise, noise_batch, clamp)
        layers += styled_conv(f"layer{n + 1}", "sconv", n - 1, False, noise, noise_batch, clamp)
        layers += to_rgb(f"to_rgb{j + 1}", n, skip=True, clamp=clamp)

    def inputs(z, image_numbers=None, noise_key=None, labels=None):
        z = jnp.asarray(z, jnp.float32)
        bag = {"latent": z}
        if conditional:
            classes = params["embed"]["kernel"].shape[0]
            if labels is None and label is None:
                raise ValueError(f"this model is conditional on {classes} classes: give the class (--class 0..{classes - 1})")
            if labels is None and not 0 <= int(label) < classes:
                raise ValueError(f"class {label} is not one of this model's 0..{classes - 1}")
            labels = jnp.eye(classes)[int(label)] if labels is None else labels
            bag["label"] = jnp.broadcast_to(jnp.asarray(labels, jnp.float32), (z.shape[0], classes))
        if noise == "official":
            numbers = jnp.arange(z.shape[0]) if image_numbers is None else jnp.asarray(image_numbers)
            bag["noise_row"] = (numbers % noise_batch).astype(jnp.int32)
        elif noise == "random":
            if noise_key is None:
                raise ValueError("noise='random' needs an explicit noise_key")
            numbers = jnp.arange(z.shape[0]) if image_numbers is None else jnp.asarray(image_numbers)
            bag["noise_key"] = jax.vmap(jax.random.fold_in, (None, 0))(noise_key, numbers)
        return bag

    return Generator("stylegan2", tuple(layers), z_dim, inputs, output_key="output")
