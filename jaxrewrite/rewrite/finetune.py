"""Baseline: fine-tune every generator weight on the pasted RGB image (the official `overfit`).

The object's pixels are copied into the paste image (same alpha paste as the feature-space
goal, at image resolution) and Adam minimises the L1 error inside the pasted box. The
official baseline adds a VGG16 perceptual term; no VGG weights ship offline, so it is L1 only.
Buffers (fixed noise, FIR kernels, latent_avg, BatchNorm statistics) stay fixed.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import archs, progress, xla
from ..tree import flatten, unflatten
from ..zdataset import z_for
from . import goals


def _z(gen, image, seed):
    return z_for([image], gen.z_dim, seed) if np.ndim(image) == 0 else np.asarray(image, np.float32)[None]


def rgb_goal(gen, params, request, seed=1):
    """(z of the paste image, pasted RGB image [1, H, W, 3], paste box)."""
    render = xla.jit(lambda p, z: gen(p, z))
    obj = np.asarray(render(params, _z(gen, request.object.image, seed)))
    z = _z(gen, request.paste.image, seed)
    host = np.asarray(render(params, z))
    hw = host.shape[1:3]
    clip, clip_mask, _ = goals.cut_object(obj, request.object.weights(hw))
    pasted, box = goals.paste(host, clip, clip_mask, request.paste.weights(hw))
    return z, pasted, box


def finetune(gen, params, z, target, box, niter=20001, lr=0.01, show_progress=False):
    """(params, losses): Adam on all leaves but the architecture's buffers (`Arch.frozen`), L1
    inside `box`; raises if it diverges.

    One jitted step called from Python, not a `lax.scan`: XLA's CPU backend runs the whole
    generator's convolutions ~8x slower inside a loop (measured 136 vs 17 ms per step on the
    64 px towns ProGAN), and the step dominates the call overhead."""
    flat, fixed = flatten(params), archs.get(gen.arch).frozen
    trainable = lambda path: not any(f in path for f in fixed)
    train = {k: jnp.array(v) for k, v in flat.items() if trainable(k)}  # copies: the step donates them
    frozen = {k: v for k, v in flat.items() if not trainable(k)}
    t, l, b, r = box
    goal = jnp.asarray(target)[:, t:b, l:r]

    def loss_fn(train):
        image = gen(unflatten({**frozen, **train}), z)
        return jnp.mean(jnp.abs(goal - image[:, t:b, l:r]))

    opt = optax.adam(lr)

    @partial(xla.jit, donate_argnums=0)
    def step(state):
        train, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(train)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(train, updates), opt_state), loss

    state, losses = (train, opt.init(train)), []
    bar = progress.Bar(niter, f"fine-tuning ({niter} steps)") if show_progress else None
    for i in range(niter):
        state, loss = step(state)
        losses.append(loss)
        if bar and (i % 50 == 0 or i == niter - 1):
            bar.update(i + 1, f" L1 {float(loss):.4f}")
    if bar:
        bar.close()
    losses = np.asarray(jnp.stack(losses))
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError("fine-tuning diverged (NaN/inf); the model is left unchanged")
    return unflatten({**frozen, **{k: np.asarray(v) for k, v in state[0].items()}}), losses
