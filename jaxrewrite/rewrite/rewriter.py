"""One layer of one model, set up for rewriting: the cut, the key statistics, and the edits.

Per-image steps run one image per call as the official rewriter does (for StyleGAN2 that
means noise row 0); statistics emulate the official batches of 10.
"""

import dataclasses
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .. import xla
from ..modelfile import Model
from ..models import ops
from ..tree import get, replace
from ..zdataset import z_for
from . import goals, keys, stats, update
from .editfile import decode_mask

KEY_METHODS = ("zca", "svd", "mean", "gandissect")
METHODS = ("projected", "lambda", "closed")


class NotApplicable(ValueError):
    """A method that cannot run on this target or edit (the closed form on a nonlinear target):
    a comparison of methods skips it, where any other error stops."""


def target_span(gen, layer):
    """(first, last) layer names of the target for `layer`: 'layer6' means the styled conv's
    dconv..activate for StyleGAN2 and the bare conv for ProGAN/DCGAN; 'first:last' is explicit."""
    if ":" in layer:
        first, last = layer.split(":", 1)
    else:
        block = layer.split(".")[0]
        start, stop = gen.span(block)
        names = gen.names[start:stop]
        convs = [n for n in names if n.endswith((".dconv", ".conv"))]
        if not convs:
            raise ValueError(f"layer {layer!r} has no convolution to rewrite")
        first = convs[0]
        last = next((n for n in names if n.endswith(".activate")), first) if gen.arch == "stylegan2" else first
    gen.span(first), gen.span(last)  # unknown names raise here
    return first, last


@dataclass
class Rewriter:
    model: Model
    layer: str
    stats_samples: int = 1000
    seed: int = 1
    stats_batch: int = 10
    cache_dir: str | None = None
    show_progress: bool = False
    gen: object = field(init=False)

    def __post_init__(self):
        self.gen_options = self.model.official_options(1)
        self.gen = self.model.generator(**self.gen_options)
        self.first, self.last = target_span(self.gen, self.layer)
        self.weight_path = f"{self.first}.kernel"
        try:
            get(self.model.params, self.weight_path)
        except KeyError:
            raise ValueError(f"layer {self.first!r} has no kernel to rewrite") from None
        self.stats_options = self.model.official_options(self.stats_batch)
        self.c_matrix = stats.cached_second_moment(
            self.model, self.stats_options, self.first, self.stats_samples, self.seed, 50, self.cache_dir,
            self.show_progress)
        self.zca_matrix = stats.zca(self.c_matrix)
        # on the device once: every jitted call would copy host (numpy) parameters again
        self.device_params = jax.device_put(self.model.params)
        self._programs = {}
        gen, first, last = self.gen, self.first, self.last
        self._context = xla.jit(lambda p, z: gen.upto(p, gen.inputs(z), first))
        self._value = xla.jit(lambda p, bag: gen.between(p, bag, first, last))
        probe = self.context([0])
        self.k_hw = probe["fmap"].shape[1:3]
        self.v_hw = self.value(probe)["fmap"].shape[1:3]

    def context(self, numbers):
        """The bag entering the rewritten weight, for these image numbers (one image per row)."""
        return jax.tree_util.tree_map(np.asarray, self._context(self.device_params, z_for(numbers, self.gen.z_dim, self.seed)))

    def value(self, bag):
        """The target's output bag (its `fmap` is the value map) with the original weights."""
        return jax.tree_util.tree_map(np.asarray, self._value(self.device_params, bag))

    def target(self, params, w, bag):
        with ops.patch_gemm():  # the goal input is fixed through the whole optimisation
            return self.gen.between(replace(params, self.weight_path, w), bag, self.first, self.last)["fmap"]

    def key_examples(self, pairs):
        out = []
        for number, mask in pairs:
            k = self.context([number])["fmap"][0]
            w = decode_mask(mask, self.k_hw).reshape(-1)
            if not np.any(w > 0):
                raise ValueError(f"key mask for image {number} is empty at the layer's resolution {self.k_hw}")
            out.append((k.reshape(-1, k.shape[-1]), w))
        return out

    def key(self, pairs, rank=1, method="zca"):
        if method not in KEY_METHODS:
            raise ValueError(f"unknown key method {method!r}; choose from {', '.join(KEY_METHODS)}")
        examples = self.key_examples(pairs)
        if method == "zca":
            return keys.zca_key(examples, self.zca_matrix, rank)
        if method == "gandissect":
            quantiles = stats.unit_quantiles(self.model.generator(**self.stats_options), self.model.params,
                                             self.first, self.stats_samples, self.seed)
            return keys.gandissect_key(examples, quantiles, rank)
        return getattr(keys, f"{method}_key")(examples, self.c_matrix, rank)

    def copy_paste_goal(self, edit):
        o_num, o_mask = edit.object
        p_num, p_mask = edit.paste
        obj_values = self.value(self.context([o_num]))["fmap"]
        ctx = self.context([p_num])
        return goals.copy_paste(ctx, self.value(ctx), obj_values, decode_mask(o_mask, self.v_hw),
                                decode_mask(p_mask, self.v_hw))

    def erase_goal(self, edit, drank):
        p_num, p_mask = edit.paste
        units = goals.erase_units(self.key_examples(edit.key), np.diag(self.c_matrix), drank)
        ctx = self.context([p_num])
        erased = ctx["fmap"].copy()
        erased[..., units] = 0
        k_box = goals.bounding_box(decode_mask(p_mask, self.k_hw))
        v_box = goals.bounding_box(decode_mask(p_mask, self.v_hw))
        if k_box is None or v_box is None:
            raise ValueError("paste mask is empty at the layer's resolution")
        goal_in = goals.crop_bag(ctx, ctx["fmap"], k_box)
        goal_out = goals.crop_bag(self.value(ctx), self.value({**ctx, "fmap": erased})["fmap"], v_box)
        return goal_in, goal_out, units

    def insert(self, goal_in, goal_out, d, method="projected", niter=2001, piter=10, lr=0.05, record=()):
        """New params, losses and recorded snapshots; raises if the optimisation diverges."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if method == "closed" and self.first != self.last:
            raise NotApplicable(f"the closed form needs a linear target; {self.first}..{self.last} is not")
        params = self.device_params
        goal_in = {k: jnp.asarray(v) for k, v in goal_in.items()}
        run = self.program(("insert", method, niter, piter, tuple(record)),
                           lambda: self._optimiser(method, niter, piter, record))
        w1, losses, snaps = run(params, get(params, self.weight_path), d, goal_in, jnp.asarray(goal_out["fmap"]), lr)
        w1, losses = np.asarray(w1), np.asarray(losses)
        if not (np.all(np.isfinite(w1)) and np.all(np.isfinite(losses))):
            raise FloatingPointError("the optimisation diverged (NaN/inf); the model is left unchanged")
        return replace(self.model.params, self.weight_path, w1), losses, snaps

    def program(self, key, build):
        """`xla.jit(build())`, built once per key: later calls with other goals, keys or rates
        of the same shapes run without compiling again."""
        if key not in self._programs:
            self._programs[key] = xla.jit(build())
        return self._programs[key]

    def _optimiser(self, method, niter, piter, record):
        """(params, w0, d, goal_in, goal_out, lr) -> (w1, losses, snapshots or None)."""
        def run(p, w0, d, gi, go, lr):
            target = lambda w, x: self.target(p, w, x)
            if method == "projected":
                return update.projected_adam(target, w0, d, gi, go, niter, piter, lr, record)
            if method == "lambda":
                return update.lambda_adam(target, w0, d, gi, go, niter, lr) + (None,)
            return update.closed_form(target, w0, d, gi, go) + (None,)
        return run

    def edited(self, params):
        return dataclasses.replace(self.model, params=params)


def apply_edit(model, layer, edit, *, kind="edit", rank=1, key_method="zca", method="projected", niter=2001,
               piter=10, lr=0.05, drank=30, stats_samples=1000, seed=1, cache_dir=None, show_progress=False):
    """One edit (kind 'edit': copy-paste; 'erase') of `layer`: (edited Model, details)."""
    rw = Rewriter(model, layer, stats_samples=stats_samples, seed=seed, cache_dir=cache_dir,
                  show_progress=show_progress)
    if kind == "erase":
        goal_in, goal_out, where = rw.erase_goal(edit, drank)
    else:
        goal_in, goal_out, _, where = rw.copy_paste_goal(edit)
    d = rw.key(edit.key, rank, key_method)
    params, losses, _ = rw.insert(goal_in, goal_out, d, method, niter, piter, lr)
    info = {"rewriter": rw, "context": d, "losses": losses, "goal_in": goal_in, "goal_out": goal_out,
            "erased_units" if kind == "erase" else "paste_box": where}
    return rw.edited(params), info


def compose(model, steps):
    """Edits applied one after another; each step is (layer, edit, options for `apply_edit`).
    Statistics are recomputed (or found in the cache) for each step's model."""
    infos = []
    for layer, edit, options in steps:
        model, info = apply_edit(model, layer, edit, **options)
        infos.append(info)
    return model, infos
