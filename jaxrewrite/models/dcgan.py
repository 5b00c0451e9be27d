"""DCGAN generator in the PyTorch tutorial layout.

`main` is ConvTranspose2d -> BatchNorm2d (eval mode: running statistics) -> ReLU blocks and a
final ConvTranspose2d -> Tanh. Here block `layerN` has the steps `conv`, `bn`, `relu` (the last
block `conv`, `tanh`). Strides and paddings are not stored in a state dict; the converter
records them in the config (tutorial: stride 1 / padding 0 first, then 2 / 1).

Parameter tree: `layerN.conv.kernel` [k, k, in, out] (forward-conv orientation),
optional `layerN.conv.bias`, `layerN.bn.{scale,bias,mean,var}`.
"""

import jax.numpy as jnp

from . import ops
from .sequential import Generator, Layer, z_map_inputs


def build(params, config):
    names = sorted(params, key=lambda k: int(k[5:]))
    strides, paddings = config["strides"], config["paddings"]
    eps = float(config.get("bn_eps", 1e-5))
    if len(strides) != len(names) or len(paddings) != len(names):
        raise ValueError(f"config has {len(strides)} strides / {len(paddings)} paddings for {len(names)} layers")
    layers = []
    for i, name in enumerate(names):

        def conv(params, bag, name=name, stride=strides[i], padding=paddings[i]):
            p = params[name]["conv"]
            out = ops.conv_transpose(bag["fmap"], p["kernel"], stride, padding)
            return {**bag, "fmap": out + p["bias"] if "bias" in p else out}

        def bn(params, bag, name=name):
            p = params[name]["bn"]
            scale = p["scale"] * jnp.reciprocal(jnp.sqrt(p["var"] + eps))
            return {**bag, "fmap": (bag["fmap"] - p["mean"]) * scale + p["bias"]}

        def relu(params, bag):
            return {**bag, "fmap": jnp.maximum(bag["fmap"], 0)}

        def tanh(params, bag):
            return {**bag, "fmap": jnp.tanh(bag["fmap"])}

        layers.append(Layer(f"{name}.conv", conv))
        if "bn" in params[name]:
            layers.append(Layer(f"{name}.bn", bn))
        last = i == len(names) - 1
        layers.append(Layer(f"{name}.tanh", tanh) if last else Layer(f"{name}.relu", relu))
    z_dim = params[names[0]]["conv"]["kernel"].shape[2]

    return Generator("dcgan", tuple(layers), z_dim, z_map_inputs)
