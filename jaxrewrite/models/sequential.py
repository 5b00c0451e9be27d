"""A generator as an ordered list of named layers, so it can be cut anywhere.

Data flows between layers as a *bag*: a dict of named arrays (`fmap` is the feature map,
NHWC; StyleGAN2 also carries `latent`, `style`, `output` = running RGB image and the noise
selector). Every layer is a pure function `(params, bag) -> bag` over the whole parameter
tree, so a cut model is just a slice of the list and a rewritten weight is just a different
leaf in `params`.
"""

import difflib
from dataclasses import dataclass
from typing import Any, Callable

import jax.numpy as jnp

Bag = dict


@dataclass(frozen=True)
class Layer:
    name: str
    apply: Callable[[Any, Bag], Bag]
    # Every output pixel copies one input pixel and every input pixel is copied equally often
    # (nearest upsampling): per-pixel means such as the key statistics are the same on either side.
    replicates: bool = False
    # (params, bag) -> bag: the layer before this one and this one in one step, from the bag
    # entering the layer before (a convolution of a nearest upsample, computed at the low
    # resolution). Used wherever both run; a cut between them runs them one by one.
    with_previous: Callable[[Any, Bag], Bag] | None = None


@dataclass(frozen=True, eq=False)
class Generator:
    arch: str
    layers: tuple
    z_dim: int
    inputs: Callable[..., Bag]  # (z, **options) -> the bag entering the first layer
    output_key: str = "fmap"

    @property
    def names(self):
        return [layer.name for layer in self.layers]

    def span(self, name):
        """[start, stop) of the layers called `name` or nested under it (`layer6` covers `layer6.*`)."""
        hits = [i for i, n in enumerate(self.names) if n == name or n.startswith(name + ".")]
        if not hits:
            close = difflib.get_close_matches(name, self.names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown layer {name!r} for {self.arch}{hint}")
        return hits[0], hits[-1] + 1

    def run(self, params, bag, start=0, stop=None):
        layers = self.layers[start:stop]
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and layers[i + 1].with_previous is not None:
                bag, i = layers[i + 1].with_previous(params, bag), i + 2
            else:
                bag, i = layers[i].apply(params, bag), i + 1
        return bag

    def upto(self, params, bag, name):
        """Everything before `name`: the bag entering it (the context model)."""
        return self.run(params, bag, 0, self.span(name)[0])

    def between(self, params, bag, first, last):
        """`first` through `last`, both included (the target model)."""
        start, stop = self.span(first)[0], self.span(last)[1]
        if start >= stop:
            raise ValueError(f"layer {first!r} comes after {last!r}")
        return self.run(params, bag, start, stop)

    def stats_cut(self, name):
        """The earliest layer whose input has the same per-pixel statistics as `name`'s input:
        `name` itself, or the first of the replicating layers right before it."""
        start = self.span(name)[0]
        while start > 0 and self.layers[start - 1].replicates:
            start -= 1
        return self.names[start]

    def after(self, params, bag, name):
        """Everything after `name` (the rendering model)."""
        return self.run(params, bag, self.span(name)[1])

    def image(self, bag):
        return bag[self.output_key]

    def __call__(self, params, z, **options):
        return self.image(self.run(params, self.inputs(z, **options)))


def z_map_inputs(z, image_numbers=None, noise_key=None):
    """The bag for generators without noise that read z as a 1x1 map (ProGAN, DCGAN).

    They take the same options as StyleGAN2's `inputs`, so callers need not care."""
    z = jnp.asarray(z, jnp.float32)
    return {"fmap": z.reshape(z.shape[0], 1, 1, -1)}
