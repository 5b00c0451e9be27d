"""Progressive GAN generator as the official `ProgressiveGenerator` runs it.

Blocks `layer1..layerN` are pixel-norm -> [nearest x2 upsample on odd blocks >= 3] -> bias-free
conv -> wscale (x gain/sqrt(in_channels), + bias) -> LeakyReLU(0.2); `output_RxR` is
pixel-norm -> 1x1 conv -> wscale(gain 1) -> hardtanh. Each step is its own named layer, so
rewriting `layerN.conv` cuts right around the bare (linear) convolution.

Parameter tree: `layerN.conv.kernel` [k, k, in, out], `layerN.wscale.bias` [out], same for
`output_RxR`. Widths and depth are read off the tree.
"""

import math

import jax.numpy as jnp

from . import ops
from .sequential import Generator, Layer, z_map_inputs


def block_names(params):
    names = sorted((k for k in params if k.startswith("layer")), key=lambda k: int(k[5:]))
    outputs = [k for k in params if k.startswith("output_")]
    if len(outputs) != 1:
        raise ValueError(f"expected one output_RxR block, found {outputs}")
    return names, outputs[0]


def block(name, upsample, gain, activation):
    def norm(params, bag):
        return {**bag, "fmap": ops.pixel_norm(bag["fmap"])}

    def up(params, bag):
        return {**bag, "fmap": ops.nearest_upsample(bag["fmap"])}

    def conv(params, bag):
        kernel = params[name]["conv"]["kernel"]
        k = kernel.shape[0]  # layer1 turns the 1x1 z map into a k x k map: full padding
        return {**bag, "fmap": ops.conv(bag["fmap"], kernel, padding=k - 1 if name == "layer1" else k // 2)}

    def up_conv(params, bag):
        kernel = params[name]["conv"]["kernel"]
        return {**bag, "fmap": ops.upsample_conv(bag["fmap"], kernel, padding=kernel.shape[0] // 2)}

    def wscale(params, bag):
        kernel = params[name]["conv"]["kernel"]
        k, cin = kernel.shape[0], kernel.shape[2]
        scale = gain(k) / math.sqrt(cin)
        return {**bag, "fmap": bag["fmap"] * scale + params[name]["wscale"]["bias"]}

    def act(params, bag):
        return {**bag, "fmap": activation(bag["fmap"])}

    steps = [("norm", norm)] + ([("up", up)] if upsample else []) + [("conv", conv), ("wscale", wscale)]
    steps.append(("clamp", act) if name.startswith("output_") else ("relu", act))
    return [Layer(f"{name}.{n}", f, replicates=n == "up", with_previous=up_conv if upsample and n == "conv" else None)
            for n, f in steps]


def build(params, config=None):
    names, output = block_names(params)
    layers = []
    for i, name in enumerate(names, start=1):
        layers += block(name, upsample=i >= 3 and i % 2 == 1, gain=lambda k: math.sqrt(2) / k, activation=ops.leaky_relu)
    layers += block(output, upsample=False, gain=lambda k: 1.0, activation=lambda x: jnp.clip(x, -1.0, 1.0))
    z_dim = params["layer1"]["conv"]["kernel"].shape[2]

    return Generator("proggan", tuple(layers), z_dim, z_map_inputs)
