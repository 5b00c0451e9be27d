"""One layer of one model, set up for rewriting: the cut, the key statistics, goals, keys and
the compiled update programs. `jaxrewrite.edit` (pipeline.py) runs an edit through it; a
front end that makes many edits of one layer keeps one Rewriter.

Per-image steps run one image per call as the official rewriter does (for StyleGAN2 that
means noise row 0); statistics emulate the official batches of 10.
"""

import dataclasses
import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .. import archs, progress, xla
from ..modelfile import Model
from ..models import ops
from ..tree import get, replace
from ..zdataset import z_for
from . import goals, keys, stats, update


class NotApplicable(ValueError):
    """A method that cannot run on this target or edit (the closed form on a nonlinear target):
    a comparison of methods skips it, where any other error stops."""


def rewritable(gen):
    """{block: (first, last)} of every rewritable target: block `layerN`'s first convolution
    through the architecture's `target_end` (StyleGAN2: dconv..activate; ProGAN, DCGAN: the
    bare conv)."""
    end, out = archs.get(gen.arch).target_end, {}
    for name in gen.names:
        block = name.split(".")[0]
        if block.startswith("layer") and block not in out and name.endswith((".conv", ".dconv")):
            start, stop = gen.span(block)
            out[block] = (name, next((n for n in gen.names[start:stop] if end and n.endswith("." + end)), name))
    return out


def target_span(gen, layer, params=None):
    """(first, last) layer names of the target for `layer`: a block (`layer6`) or its first
    convolution's own name (`layer6.sconv.mconv.dconv`, `layer5.conv`) means the block's
    target; 'first:last' names both ends (a rewritable convolution, then any layer from it
    on). Anything else is an error listing the rewritable layers (with their key and value
    resolutions, given `params`)."""
    targets = rewritable(gen)
    firsts = {first: block for block, (first, _) in targets.items()}
    if ":" in layer:
        first, last = layer.split(":", 1)
        if first in firsts and last in gen.names and gen.names.index(last) >= gen.names.index(first):
            return first, last
    elif layer in targets or layer in firsts:
        return targets[firsts.get(layer, layer)]
    raise ValueError(f"{layer!r} is not a rewritable layer; rewritable: {describe(gen, params, targets)}")


def resolutions(gen, params, targets=None):
    """{block: (key (h, w), value (h, w), input channels)} of the rewritable targets."""
    targets = rewritable(gen) if targets is None else targets
    shapes, bag = {}, gen.inputs(np.zeros((1, gen.z_dim), np.float32))
    for layer in gen.layers:
        before = bag["fmap"].shape if "fmap" in bag else None
        bag = jax.eval_shape(lambda p, b, layer=layer: layer.apply(p, b), params, bag)
        shapes[layer.name] = (before, bag["fmap"].shape if "fmap" in bag else None)
    return {b: (tuple(shapes[f][0][1:3]), tuple(shapes[l][1][1:3]), shapes[f][0][3]) for b, (f, l) in targets.items()}


def describe(gen, params, targets):
    """'layer1 (keys 1x1, values 4x4), ...': the rewritable blocks with their resolutions."""
    if params is None:
        return ", ".join(targets)
    hw = lambda s: "x".join(map(str, s))
    return ", ".join(f"{b} (keys {hw(k)}, values {hw(v)})" for b, (k, v, _) in resolutions(gen, params, targets).items())


@dataclass(frozen=True, eq=False)
class Goal:
    """What the target must map between: the cropped key-side bag and value-side bag, and where
    (`box`: the paste box at value resolution, for a copy-paste; `units`: the erased key units)."""

    goal_in: dict
    goal_out: dict
    box: tuple | None = None
    units: np.ndarray | None = None


@dataclass(eq=False)
class Rewriter:
    model: Model
    layer: str
    stats_samples: int = 1000
    seed: int = 1
    stats_batch: int = 10
    cache_dir: str | None = None
    show_progress: bool = False
    precomputed_c: np.ndarray | None = None  # C = E[k kᵀ] given by the caller; else computed on first use
    options: dict = field(default_factory=dict)  # further generator options (a conditional model's `label`)
    gen: object = field(init=False)

    def __post_init__(self):
        unknown = set(self.options) - set(self.model.spec.options)
        if unknown:
            what = "a class (the model is not conditional)" if unknown == {"label"} else ", ".join(sorted(unknown))
            raise ValueError(f"a {self.model.arch} generator takes no {what}")
        self.gen = self.model.generator(**self.model.official_options(1), **self.options)
        self.first, self.last = target_span(self.gen, self.layer, self.model.params)
        self.weight_path = f"{self.first}.kernel"
        try:
            w0 = get(self.model.params, self.weight_path)
        except KeyError:
            raise ValueError(f"layer {self.first!r} has no kernel to rewrite") from None
        self.stats_options = {**self.model.official_options(self.stats_batch), **self.options}
        self.channels = w0.shape[-2]
        if self.precomputed_c is not None and np.shape(self.precomputed_c) != (self.channels,) * 2:
            raise ValueError(f"c_matrix is {np.shape(self.precomputed_c)}, the layer's keys have {self.channels} channels")
        # on the device once: every jitted call would copy host (numpy) parameters again
        self.device_params = jax.device_put(self.model.params)
        self._programs, self.reporter = {}, None
        gen, first, last = self.gen, self.first, self.last
        self._context = xla.jit(lambda p, z: gen.upto(p, gen.inputs(z), first))
        self._value = xla.jit(lambda p, bag: gen.between(p, bag, first, last))
        probe = self.context([0])
        self.k_hw = probe["fmap"].shape[1:3]
        self.v_hw = self.value(probe)["fmap"].shape[1:3]

    @property
    def linear(self):
        """Whether the target is the bare convolution (linear in the kernel)."""
        return self.first == self.last

    @functools.cached_property
    def c_matrix(self):
        """C = E[k kᵀ] of the layer's keys: given, or computed (and cached in `cache_dir`) on first use."""
        if self.precomputed_c is not None:
            return np.asarray(self.precomputed_c)
        return stats.cached_second_moment(self.model, self.stats_options, self.first, self.stats_samples, self.seed,
                                          50, self.cache_dir, self.show_progress)

    def statistics(self, key_method, kind):
        """Compute (or read) what an edit by `key_method` needs, now: C, and its ZCA matrix or
        the unit quantiles; an erase ranks units by C's diagonal."""
        if key_method is not None or kind == "erase":
            self.c_matrix
        if key_method == "zca":
            self.zca_matrix
        elif key_method == "gandissect":
            self.quantiles

    def check(self, request, kind, rank=1, drank=None, key_method="zca"):
        """Stop before any work on what this layer cannot take: masks that are empty at its
        resolutions, a rank beyond the key pixels selected (or the input channels), more
        units to erase than the key has."""
        sizes = {"object": self.v_hw, "paste": self.k_hw if kind == "erase" else self.v_hw}
        for name, e in request.examples():
            if name == "query" or (name in sizes and kind == "zero"):
                continue
            size = sizes.get(name, self.k_hw)
            if not (e.weights(size) > 0).any():
                raise ValueError(f"the {name} mask of image {_name(e)} is empty at the layer's resolution {size}")
        keys.check_rank(key_method, rank)
        pixels = sum(int((e.weights(self.k_hw) > 0).sum()) for e in request.key)
        most = self.channels if key_method in keys.UNITS else min(pixels, self.channels)
        if rank != "full" and rank > most:
            raise ValueError(f"rank {rank} exceeds the {most} directions the key can have "
                             f"({pixels} selected key pixels at {self.k_hw}, {self.channels} input channels)")
        if drank is not None and kind == "erase" and drank > self.channels:
            raise ValueError(f"{drank} units to erase, the key has {self.channels}")

    @functools.cached_property
    def zca_matrix(self):
        return stats.zca(self.c_matrix)

    @functools.cached_property
    def quantiles(self):
        """Per-unit quantiles of the keys (the 'gandissect' key method)."""
        return stats.unit_quantiles(self.model.generator(**self.stats_options), self.model.params, self.first,
                                    self.stats_samples, self.seed)

    def z(self, images):
        """z rows [n, z_dim] for image numbers of this rewriter's seed or explicit z vectors."""
        rows = [_z_row(int(i), self.gen.z_dim, self.seed) if np.ndim(i) == 0 else np.asarray(i, np.float32)
                for i in images]
        for i, row in zip(images, rows):
            if row.shape != (self.gen.z_dim,):
                raise ValueError(f"a z vector must have {self.gen.z_dim} entries, got shape {np.shape(i)}")
        return np.stack(rows).astype(np.float32)

    def context(self, images):
        """The bag entering the rewritten weight, for these image numbers or z vectors (one image per row)."""
        return jax.tree_util.tree_map(np.asarray, self._context(self.device_params, self.z(images)))

    def value(self, bag):
        """The target's output bag (its `fmap` is the value map) with the original weights."""
        return jax.tree_util.tree_map(np.asarray, self._value(self.device_params, bag))

    def target(self, params, w, bag):
        with ops.patch_gemm():  # the goal input is fixed through the whole optimisation
            return self.gen.between(replace(params, self.weight_path, w), bag, self.first, self.last)["fmap"]

    def key_examples(self, examples):
        """(keys [pixels, C_in], mask weights [pixels]) of each Example at key resolution."""
        out = []
        for e in examples:
            k = self.context([e.image])["fmap"][0]
            w = e.weights(self.k_hw).reshape(-1)
            if not np.any(w > 0):
                raise ValueError(f"key mask for image {_name(e)} is empty at the layer's resolution {self.k_hw}")
            out.append((k.reshape(-1, k.shape[-1]), w))
        return out

    def key(self, examples, rank=1, method="zca"):
        """The context directions D [rank, C_in] of these Examples by a registered key method."""
        return keys.get(method)(self.key_examples(examples), self, rank)

    def copy_paste_goal(self, request):
        """The official copy-paste goal: the object's value features pasted into the paste image."""
        goal_in, goal_out, _, box = self._copy_paste(request)
        return Goal(goal_in, goal_out, box=box)

    def pasted(self, request):
        """(the paste image's value bag with the object pasted in, the paste box at value
        resolution): what the goal asks the rest of the generator to render."""
        _, _, (bag, pasted), box = self._copy_paste(request)
        return {**bag, "fmap": pasted}, box

    def _copy_paste(self, request):
        obj, where = request.object, request.paste
        obj_values = self.value(self.context([obj.image]))["fmap"]
        ctx = self.context([where.image])
        bag = self.value(ctx)
        goal_in, goal_out, pasted, box = goals.copy_paste(ctx, bag, obj_values, obj.weights(self.v_hw),
                                                          where.weights(self.v_hw))
        return goal_in, goal_out, (bag, pasted), box

    def erase_goal(self, request, drank):
        """The official erase goal: the value the target gives in the paste region with the
        `drank` most distinctive key units of the context zeroed."""
        where = request.paste
        units = goals.erase_units(self.key_examples(request.key), np.diag(self.c_matrix), drank)
        ctx = self.context([where.image])
        erased = ctx["fmap"].copy()
        erased[..., units] = 0
        k_box = goals.bounding_box(where.weights(self.k_hw))
        v_box = goals.bounding_box(where.weights(self.v_hw))
        if k_box is None or v_box is None:
            raise ValueError("paste mask is empty at the layer's resolution")
        goal_in = goals.crop_bag(ctx, ctx["fmap"], k_box, origin=(0, 0))  # the key input is not cropped
        goal_out = goals.crop_bag(self.value(ctx), self.value({**ctx, "fmap": erased})["fmap"], v_box)
        return Goal(goal_in, goal_out, units=units)

    def check_method(self, method):
        """The registered Method; NotApplicable where it needs a linear target and this is not."""
        m = update.get(method)
        if m.linear_only and not self.linear:
            raise NotApplicable(f"the {method} method needs a linear target; {self.first}..{self.last} is not")
        return m

    def update_fn(self, method, niter, piter, record=(), progress=False):
        """(params, goal_in, goal_out, mask, d, lr) -> Update: one edit by a registered method.
        `insert` jits it, `batch.insert_many` vmaps the same function. With `progress`, the
        loop reports its steps to the Rewriter's current `reporter` (the bar of the edit
        running now: a compiled program keeps the callback it was traced with)."""
        run = self.check_method(method).run
        report = (lambda it: self.reporter and self.reporter(int(it))) if progress else None

        def one(params, gi, go, mask, d, lr):  # params are an argument, not constants baked into the program
            target = lambda w, x: self.target(params, w, x)
            return run(target, get(params, self.weight_path), d, gi, go, lr, mask, niter=niter, piter=piter,
                       record=record, report=report)
        return one

    def insert(self, goal, d, method="projected", niter=2001, piter=10, lr=0.05, record=(), show_progress=False):
        """The Update (numpy) of one edit; raises if the optimisation diverges."""
        record = tuple(record)
        run = self.program(("insert", method, niter, piter, record, show_progress),
                           lambda: self.update_fn(method, niter, piter, record, show_progress))
        goal_in = {k: jnp.asarray(v) for k, v in goal.goal_in.items()}
        bar = progress.Bar(niter, f"{method} update ({niter} steps)") if show_progress else None
        self.reporter = bar and (lambda it: bar.update(it + 1))
        try:
            result = jax.tree.map(np.asarray, run(self.device_params, goal_in, jnp.asarray(goal.goal_out["fmap"]),
                                                  None, jnp.asarray(d, jnp.float32), lr))
            if bar:
                bar.update(niter)
        finally:
            self.reporter = None
            if bar:
                bar.close()
        check_finite(result)
        return result

    def program(self, key, build):
        """`xla.jit(build())`, built once per key: later calls with other goals, keys or rates
        of the same shapes run without compiling again."""
        if key not in self._programs:
            self._programs[key] = xla.jit(build())
        return self._programs[key]

    def edited(self, weight):
        """The model with this layer's kernel replaced."""
        return dataclasses.replace(self.model, params=replace(self.model.params, self.weight_path, np.asarray(weight)))


@functools.lru_cache(maxsize=4096)
def _z_row(number, dim, seed):
    """One z row, kept: drawing it costs a chunk of the generator's stream (~16 ms), and an
    edit's examples are rendered again and again."""
    row = z_for([number], dim, seed)[0]
    row.flags.writeable = False
    return row


def check_finite(result):
    if not (np.all(np.isfinite(result.weight)) and np.all(np.isfinite(result.losses))):
        raise FloatingPointError("the optimisation diverged (NaN/inf); the model is left unchanged")


def _name(example):
    return example.image if example.number is not None else "given by its z vector"
