"""Train a ProGAN-layout generator on the towns world, resumably, on CPU or GPU.

The generator is `models.proggan` itself (layers `layer1..layer10`, `output_64x64`, weights
N(0, 1) scaled at run time as the official wscale does), so the trained model is rewritten
by the same code as a converted official checkpoint. Training follows StyleGAN2's recipe
without progressive growing: non-saturating logistic loss, lazy R1 on reals every
`r1_every` steps, Adam(0, 0.99), an EMA of the generator. The whole state is checkpointed
atomically every few minutes; rerunning the same command resumes bit-for-bit (batch `s`
is drawn from seed (seed, s)).

    python -m jaxrewrite.worlds.train_gan --state benchmarks/runs/towns64.state --steps 15000 \
        --export jaxrewrite/assets/towns64.msgpack
"""

import argparse
import collections
import functools
import itertools
import math
import multiprocessing
import os
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from .. import modelfile, xla
from ..atomic import atomic_write
from ..models import ops, proggan
from . import towns


def config(**overrides):
    cfg = dict(
        z_dim=128, widths=(64, 64, 64, 32, 16), d_widths=(64, 64, 64, 32, 16), batch=32,
        lr=0.002, betas=(0.0, 0.99), r1_gamma=0.1, r1_every=16, ema_images=10_000, seed=0,
    )
    cfg.update(overrides)
    if cfg["batch"] < 1 or (cfg["batch"] > 4 and cfg["batch"] % 4):
        raise ValueError(f"batch must be 1-4 or a multiple of 4 (the discriminator's minibatch-deviation "
                         f"groups of 4), got {cfg['batch']}")
    return cfg


def init_generator(key, z_dim, widths):
    """Official ProGAN names: two convs per resolution 4, 8, ... then output_RxR."""
    shapes, cin = {}, z_dim
    for i, w in enumerate(widths):
        shapes[f"layer{2 * i + 1}"] = (4, 4, cin, w) if i == 0 else (3, 3, cin, w)
        shapes[f"layer{2 * i + 2}"] = (3, 3, w, w)
        cin = w
    size = 4 * 2 ** (len(widths) - 1)
    shapes[f"output_{size}x{size}"] = (1, 1, cin, 3)
    keys = jax.random.split(key, len(shapes))
    return {name: {"conv": {"kernel": jax.random.normal(k, s)}, "wscale": {"bias": jnp.zeros(s[-1])}}
            for k, (name, s) in zip(keys, shapes.items())}


def init_discriminator(key, widths):
    """widths[i] at resolution 4 * 2**i: per level a conv, a 2x2 average pool and a widening
    conv at the lower resolution (half the cost of both convs before pooling); from_rgb at the
    top, a minibatch-stddev head at 4x4."""
    shapes = {"from_rgb": (1, 1, 3, widths[-1])}
    for i in range(len(widths) - 1, 0, -1):
        shapes[f"down{i}a"] = (3, 3, widths[i], widths[i])
        shapes[f"down{i}b"] = (3, 3, widths[i], widths[i - 1])
    shapes["head_conv"] = (3, 3, widths[0] + 1, widths[0])
    shapes["head_dense"] = (4 * 4 * widths[0], widths[0])
    shapes["head_out"] = (widths[0], 1)
    keys = jax.random.split(key, len(shapes))
    return {name: {"w": jax.random.normal(k, s), "b": jnp.zeros(s[-1])} for k, (name, s) in zip(keys, shapes.items())}


def _dense_or_conv(p, x):
    """Equalised learning rate: weights N(0, 1), scaled by He's constant at run time."""
    w = p["w"]
    scale = math.sqrt(2.0 / np.prod(w.shape[:-1]))
    if w.ndim == 2:
        return x @ (w * scale) + p["b"]
    return ops.conv(x, w * scale, padding=w.shape[0] // 2) + p["b"]


def discriminate(params, x):
    act = ops.leaky_relu
    n_down = sum(1 for k in params if k.endswith("a") and k.startswith("down"))
    x = act(_dense_or_conv(params["from_rgb"], x))
    for i in range(n_down, 0, -1):
        x = act(_dense_or_conv(params[f"down{i}a"], x))
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
        x = act(_dense_or_conv(params[f"down{i}b"], x))
    group = min(4, x.shape[0])  # minibatch standard deviation (one feature per group)
    g = x.reshape(group, -1, *x.shape[1:])
    std = jnp.sqrt(g.var(0) + 1e-8).mean((1, 2, 3))
    std = jnp.tile(std, group)[:, None, None, None] * jnp.ones_like(x[..., :1])
    x = act(_dense_or_conv(params["head_conv"], jnp.concatenate([x, std], -1)))
    x = act(_dense_or_conv(params["head_dense"], x.reshape(x.shape[0], -1)))
    return _dense_or_conv(params["head_out"], x)[:, 0]


def make_step(cfg):
    """(jitted step, optimizer); compiled once per config within a process."""
    return _make_step(tuple(sorted(cfg.items())))


@functools.lru_cache(maxsize=None)
def _make_step(items):
    cfg = dict(items)
    optimizer = optax.adam(cfg["lr"], *cfg["betas"], eps=1e-8)

    def generate(g_params, z):
        return proggan.build(g_params)(g_params, z)

    def d_loss(d_params, g_params, reals, z, r1):
        fakes = jax.lax.stop_gradient(generate(g_params, z))
        loss = jax.nn.softplus(discriminate(d_params, fakes)).mean()
        real_logits, pullback = jax.vjp(lambda x: discriminate(d_params, x), reals)
        loss += jax.nn.softplus(-real_logits).mean()
        if r1:
            (grad,) = pullback(jnp.ones_like(real_logits))
            loss += 0.5 * cfg["r1_gamma"] * cfg["r1_every"] * jnp.sum(grad ** 2, (1, 2, 3)).mean()
        return loss

    def g_loss(g_params, d_params, z):
        return jax.nn.softplus(-discriminate(d_params, generate(g_params, z))).mean()

    def step(state, reals, r1):
        key, kd, kg = jax.random.split(state["key"], 3)
        shape = (reals.shape[0], cfg["z_dim"])
        ld, grads = jax.value_and_grad(d_loss)(state["d"], state["g"], reals, jax.random.normal(kd, shape), r1)
        updates, d_opt = optimizer.update(grads, state["d_opt"])
        d = optax.apply_updates(state["d"], updates)
        lg, grads = jax.value_and_grad(g_loss)(state["g"], d, jax.random.normal(kg, shape))
        updates, g_opt = optimizer.update(grads, state["g_opt"])
        g = optax.apply_updates(state["g"], updates)
        images = (state["step"] + 1) * reals.shape[0]
        beta = 0.5 ** (reals.shape[0] / jnp.maximum(jnp.minimum(cfg["ema_images"], 0.05 * images), 1e-8))
        ema = jax.tree.map(lambda e, p: beta * e + (1 - beta) * p, state["ema"], g)
        new = dict(state, key=key, d=d, g=g, d_opt=d_opt, g_opt=g_opt, ema=ema, step=state["step"] + 1)
        return new, {"d_loss": ld, "g_loss": lg}

    return xla.jit(step, static_argnums=2, donate_argnums=0), optimizer


def init_state(cfg):
    kg, kd, key = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
    g = init_generator(kg, cfg["z_dim"], cfg["widths"])
    d = init_discriminator(kd, cfg["d_widths"])
    _, optimizer = make_step(cfg)
    return {"key": key, "g": g, "d": d, "g_opt": optimizer.init(g), "d_opt": optimizer.init(d),
            "ema": jax.tree.map(jnp.array, g), "step": jnp.zeros((), jnp.int32)}


def save_state(path, state, cfg):
    data = serialization.msgpack_serialize({"config": _plain(cfg), "state": serialization.to_state_dict(jax.device_get(state))})
    atomic_write(path, lambda f: f.write(data))


def _read(path):
    """The stored {config, state} of a state file; one-line SystemExit if it is not one."""
    try:
        with open(path, "rb") as f:
            stored = serialization.msgpack_restore(f.read())
        if not isinstance(stored, dict) or not {"config", "state"} <= set(stored):
            raise ValueError("no config/state entries")
        return stored
    except Exception as e:  # msgpack raises its own types for truncated or foreign files
        raise SystemExit(f"{path}: not a training state file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


PHASE_KEYS = ("lr", "ema_images")  # may change when a run resumes (a new phase); Adam's state does not depend on them


def load_state(path, cfg):
    stored = _read(path)
    fixed = lambda c: {k: v for k, v in c.items() if k not in PHASE_KEYS}
    if fixed(_plain(cfg)) != fixed(stored["config"]):
        raise SystemExit(f"{path}: saved with config {stored['config']}, not {_plain(cfg)}")
    return serialization.from_state_dict(init_state(cfg), stored["state"])


def export(path, state, cfg):
    """The EMA generator as a model file, with how it was trained."""
    training = {**_plain(cfg), "step": int(state["step"]), "world": "towns"}
    model = modelfile.Model("proggan", jax.device_get(state["ema"]), {"training": training})
    modelfile.save(model, path)


def _real_batch(seed, batch, step):
    return towns.scenes([seed, step], batch)[0]


def batches(cfg, start, workers=1):
    """Real batches from step `start` on, in step order whatever `workers` is (batch s always
    comes from seed (seed, s)): a background thread for one worker, else `workers` spawned
    processes (scene drawing is numpy-bound, ~30 ms per batch of 32, so a GPU step outruns one)."""
    draw = functools.partial(_real_batch, cfg["seed"], cfg["batch"])
    if workers <= 1:
        q = queue.Queue(maxsize=4)
        threading.Thread(target=lambda: [q.put(draw(s)) for s in itertools.count(start)], daemon=True).start()
        while True:
            yield q.get()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending = collections.deque(pool.apply_async(draw, (s,)) for s in range(start, start + 4 * workers))
        for s in itertools.count(start + 4 * workers):
            yield pending.popleft().get()
            pending.append(pool.apply_async(draw, (s,)))


def train(state_path, steps, cfg, export_path=None, save_every_s=300, log_every=100, max_seconds=None, workers=1):
    """Train until `steps` in all or `max_seconds` of wall time, whichever comes first; the
    state (and the export) are written at every checkpoint and at the end."""
    state = load_state(state_path, cfg) if os.path.exists(state_path) else init_state(cfg)
    step_fn, _ = make_step(cfg)
    start = int(state["step"])
    print(f"step {start} -> {steps} (batch {cfg['batch']}, widths {cfg['widths']}, lr {cfg['lr']}), state {state_path}", flush=True)
    saved = t0 = time.time()
    data = batches(cfg, start, workers)
    for s in range(start, steps):
        state, losses = step_fn(state, jnp.asarray(next(data)), s % cfg["r1_every"] == 0)
        if (s + 1) % log_every == 0:
            rate = (time.time() - t0) / (s + 1 - start)
            print(f"step {s + 1} d {float(losses['d_loss']):.3f} g {float(losses['g_loss']):.3f} "
                  f"{rate:.4f}s/step", flush=True)
        out_of_time = max_seconds is not None and time.time() - t0 > max_seconds
        if time.time() - saved > save_every_s or s + 1 == steps or out_of_time:
            save_state(state_path, state, cfg)
            if export_path:
                export(export_path, state, cfg)
            saved = time.time()
        if out_of_time:
            print(f"stopped at step {s + 1}: {max_seconds:.0f} s of wall time used", flush=True)
            break
    return state


def stored_config(path):
    """The config a state file was saved with (tuples restored), so a resume needs no flags."""
    cfg = _read(path)["config"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def _plain(cfg):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state", required=True, help="training state file (created, or resumed from)")
    p.add_argument("--steps", type=int, required=True, help="train until this many steps in all")
    p.add_argument("--export", help="also write the EMA generator as a model file at each save")
    p.add_argument("--save-every", type=float, default=300, help="seconds between checkpoints")
    p.add_argument("--max-minutes", type=float, help="stop (saving first) after this much wall time")
    p.add_argument("--workers", type=int, default=1, help="processes drawing real batches")
    p.add_argument("--batch", type=int, help="new runs only (default 32); a resume uses the stored config")
    p.add_argument("--seed", type=int, help="new runs only (default 0)")
    p.add_argument("--widths", help="new runs only: G and D widths from 4x4 up, e.g. 128,128,128,64,32")
    p.add_argument("--lr", type=float, help="learning rate (default 0.002); on a resume, a new phase from here on")
    p.add_argument("--ema-images", type=float, help="EMA half-life in images (default 10000); on a resume, a new phase")
    a = p.parse_args(argv)
    given = {k: v for k, v in [("batch", a.batch), ("seed", a.seed)] if v is not None}
    if a.widths:
        given["widths"] = given["d_widths"] = tuple(int(w) for w in a.widths.split(","))
    if os.path.exists(a.state):
        cfg = stored_config(a.state)
        changed = {k: v for k, v in given.items() if cfg.get(k) != v}
        if changed:
            raise SystemExit(f"{a.state}: saved with {', '.join(f'{k}={cfg.get(k)}' for k in changed)}; "
                             "a resume keeps the stored config")
    else:
        try:
            cfg = config(**given)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    cfg = {**cfg, **{k: v for k, v in [("lr", a.lr), ("ema_images", a.ema_images)] if v is not None}}
    os.makedirs(os.path.dirname(os.path.abspath(a.state)), exist_ok=True)
    max_seconds = None if a.max_minutes is None else 60 * a.max_minutes
    train(a.state, a.steps, cfg, a.export, a.save_every, max_seconds=max_seconds, workers=a.workers)


if __name__ == "__main__":
    main()
