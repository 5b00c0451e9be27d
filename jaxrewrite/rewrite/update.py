"""The constrained update W1 = W0 + Λ D: projected Adam (official), Λ-parameterised Adam, and a
closed form for linear targets, each registered once in `METHODS` by name.

`target(w, goal_in) -> value fmap` is the cut generator between the first and last target
layers with the rewritten kernel `w` (HWIO, input channels on axis -2). Every method has one
signature, `(target, w0, d, goal_in, goal_out, lr, mask, *, niter, piter, record, report) -> Update`
(`report(step)`, when given, is called from inside the loop to show progress);
the single edit runs it under `jit` and many edits run the same function under `vmap`
(`mask` restricts the loss to each padded goal's own pixels), so the two cannot diverge.
Each optimiser is one `lax.scan`, so a whole edit compiles to a single XLA program.
"""

from dataclasses import dataclass
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..models import ops


@struct.dataclass
class Update:
    """An update's result: the new kernel, the loss curve (L1 before each step; the closed
    form: before and after) and, for projected Adam, the recorded snapshots."""

    weight: jax.Array
    losses: jax.Array
    snapshots: jax.Array | None = None


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable
    linear_only: bool = False  # needs a target linear in the kernel (a bare convolution)


METHODS = {}


def register(name, linear_only=False):
    """Register an update method under `name` (the command line's `--method` choices)."""
    def add(run):
        METHODS[name] = Method(name, run, linear_only)
        return run
    return add


def get(name):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def _check(w0, d):
    """A key [r, C_in] for a kernel [..., C_in, C_out]: a wrong one fails here, by name, rather
    than as a broadcasting error deep in the loop."""
    chex.assert_rank(d, 2)
    chex.assert_axis_dimension(d, 1, w0.shape[-2])


def project(w, d):
    """P(W): the input-channel axis of W projected onto the row space of D (orthonormal rows)."""
    return jnp.einsum("...jo,rj,ri->...io", w, d, d)


def zero(w0, d, amount=0.0):
    """The official `zero`: the weight's response along the context directions removed,
    W0 - P(W0) + amount * P(1) (the UI key tray's "zero"; with one-hot 'gandissect' rows, GAN
    Dissection's unit ablation)."""
    _check(w0, d)
    return w0 - project(w0, d) + amount * project(jnp.ones_like(w0), d)


def adam(w, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One `torch.optim.Adam` step (default betas/eps), in PyTorch's own arithmetic order."""
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    denom = jnp.sqrt(v) / jnp.sqrt(1 - b2 ** t) + eps
    return w - (lr / (1 - b1 ** t)) * m / denom, m, v


def l1(target, goal_in, goal_out, mask=None):
    """Mean absolute error; with `mask` [n, h, w], the mean over the masked pixels only (used to
    batch goals of different sizes, zero-padded to one shape)."""
    if mask is None:
        return lambda w: ops.total(jnp.abs(goal_out - target(w, goal_in))) / goal_out.size
    chex.assert_shape(mask, goal_out.shape[:-1])
    scale = jnp.sum(mask) * goal_out.shape[-1]
    return lambda w: ops.total(jnp.abs(goal_out - target(w, goal_in)) * mask[..., None]) / scale


def progress(report, it):
    """`report(step)` from inside a compiled loop (a host callback; none where `report` is
    None). Called between blocks of steps, never inside a step's body: a callback there changes
    how XLA fuses the step, and so the last bits of the result."""
    if report is not None:
        jax.debug.callback(report, it)


def blocked_scan(step, state, first, niter, report, every=50):
    """`lax.scan(step, state, first + arange(niter))` as blocks of `every` steps, reporting the
    first step of each block: the same arithmetic with or without a report."""
    def block(s, start, length):
        progress(report, start)
        return jax.lax.scan(step, s, start + jnp.arange(length))

    blocks, rest = divmod(niter, every)
    outs = []
    if blocks:
        state, out = jax.lax.scan(lambda s, b: block(s, first + b * every, every), state, jnp.arange(blocks))
        outs.append(out.reshape((-1,) + out.shape[2:]))
    if rest:
        state, out = block(state, first + blocks * every, rest)
        outs.append(out)
    return state, jnp.concatenate(outs)


@register("projected")
def projected_adam(target, w0, d, goal_in, goal_out, lr=0.05, mask=None, *, niter=2001, piter=10, record=(),
                   report=None):
    """The official `insert` (low_rank_insert): Adam on the whole weight; after the step of
    iteration `it`, when `it % piter == 0` or it is the last, W <- W0 - P(W0) + P(W).

    The loop runs as step 0, then blocks of `piter` steps (a nested scan), then the rest, each
    followed by one projection: the projection is computed only where it is applied (a
    `jnp.where` would evaluate it on every step) and no conditional is needed.

    Returns the Update: w1, losses [niter] measured before each step, snapshots [len(record),
    ...] of the weight after the Adam step and before the projection of each recorded iteration."""
    _check(w0, d)
    loss_fn = l1(target, goal_in, goal_out, mask)
    ortho = w0 - project(w0, d)
    record = jnp.asarray(record, jnp.int32).reshape(-1)

    def step(state, it):
        w, m, v, snaps = state
        loss, g = jax.value_and_grad(loss_fn)(w)
        w, m, v = adam(w, g, m, v, (it + 1).astype(w.dtype), lr)
        snaps = jnp.where((record == it)[(...,) + (None,) * w.ndim], w[None], snaps)
        return (w, m, v, snaps), loss

    def steps_then_project(state, first, length):
        progress(report, first)
        (w, m, v, snaps), losses = jax.lax.scan(step, state, first + jnp.arange(length))
        return (ortho + project(w, d), m, v, snaps), losses

    zeros = jnp.zeros_like(w0)
    state = (w0, zeros, zeros, jnp.zeros((record.shape[0],) + w0.shape, w0.dtype))
    state, losses = steps_then_project(state, 0, 1)
    blocks, rest = divmod(niter - 1, piter)
    if blocks:
        state, block_losses = jax.lax.scan(lambda s, b: steps_then_project(s, 1 + b * piter, piter), state,
                                           jnp.arange(blocks))
        losses = jnp.concatenate([losses, block_losses.reshape(-1)])
    if rest:
        state, rest_losses = steps_then_project(state, 1 + blocks * piter, rest)
        losses = jnp.concatenate([losses, rest_losses])
    w, _, _, snaps = state
    return Update(w, losses, snaps)


def _lambda_adam(target, w0, d, goal_in, goal_out, lr, mask, niter, report, kernel):
    """Adam on Λ [..., r, out] in W = W0 + Λ D (the official `linear_insert`); `kernel(lam)` is
    the W the target sees."""
    _check(w0, d)
    loss_fn = l1(lambda lam, x: target(kernel(lam), x), goal_in, goal_out, mask)

    def step(state, it):
        lam, m, v = state
        loss, g = jax.value_and_grad(loss_fn)(lam)
        lam, m, v = adam(lam, g, m, v, (it + 1).astype(lam.dtype), lr)
        return (lam, m, v), loss

    lam0 = jnp.zeros(w0.shape[:-2] + (d.shape[0], w0.shape[-1]), w0.dtype)
    (lam, _, _), losses = blocked_scan(step, (lam0, lam0, lam0), 0, niter, report)
    return Update(ops.LowRank(w0, lam, d).dense(), losses)


@register("lambda")
def lambda_adam(target, w0, d, goal_in, goal_out, lr=0.05, mask=None, *, niter=2001, report=None, **_):
    """The Λ update at low-rank cost: the target gets W0 + Λ D factored (`ops.LowRank`), so each
    step convolves r channels instead of C_in (conv(x, W0) is fixed; StyleGAN2's demodulation
    is a quadratic form in Λ). The same objective and Adam as `lambda-dense`."""
    return _lambda_adam(target, w0, d, goal_in, goal_out, lr, mask, niter, report,
                        lambda lam: ops.LowRank(w0, lam, d))


@register("lambda-dense")
def lambda_dense_adam(target, w0, d, goal_in, goal_out, lr=0.05, mask=None, *, niter=2001, report=None, **_):
    """The Λ update with W0 + Λ D expanded to a dense kernel every step (the official form's
    arithmetic; the reference the low-rank `lambda` is checked against)."""
    return _lambda_adam(target, w0, d, goal_in, goal_out, lr, mask, niter, report,
                        lambda lam: ops.LowRank(w0, lam, d).dense())


@register("closed", linear_only=True)
def closed_form(target, w0, d, goal_in, goal_out, lr=None, mask=None, **_):
    """Least-squares Λ for a target that is linear in the kernel, with output channel o
    depending only on W[..., o] (a bare conv or transposed conv).

    Probing the target with one output channel per element of a rank-r kernel basis
    (e_yx ⊗ D_r) gives the design matrix A [pixels, k*k*r] in a single call; then
    Λ = argmin ||A Λ - (goal_out - target(W0))||² and W1 = W0 + Λ D (the paper's
    W0 + Λ (C⁻¹k*)ᵀ, in an L2 sense); with `mask`, over the masked pixels only. No learning
    rate. Returns the Update with losses [L1 before, L1 after]."""
    _check(w0, d)
    spatial = w0.shape[:-2]
    r = d.shape[0]
    basis = jnp.eye(int(np.prod(spatial)) * r).reshape(spatial + (r, -1))  # [..., r, k*k*r]
    probe = jnp.einsum("...rb,ri->...ib", basis, d)
    rows = 1.0 if mask is None else mask.reshape(-1, 1)  # rows outside the mask weigh nothing
    a = target(probe, goal_in).reshape(-1, basis.shape[-1]) * rows
    residual = (goal_out - target(w0, goal_in)).reshape(-1, w0.shape[-1]) * rows
    lam = jnp.linalg.lstsq(a.astype(jnp.float32), residual)[0]  # [k*k*r, out]
    w1 = w0 + jnp.einsum("...ro,ri->...io", lam.reshape(spatial + (r, -1)), d)
    losses = jnp.stack([l1(target, goal_in, goal_out, mask)(w) for w in (w0, w1)])
    return Update(w1, losses)
