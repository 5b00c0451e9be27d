"""Many edits of one layer at once: the registered update method `vmap`ped over goals, keys
and learning rates (the function a single edit jits: `Rewriter.update_fn`), and a sweep over
layers x ranks x learning rates.

Goals of different sizes are zero-padded at the bottom/right to one shape and the loss is
restricted to each goal's own pixels. For a plain conv target this is exactly the separate
runs (the crop's own zero padding is what the conv sees either way); StyleGAN2's official
noise, drawn per feature-map shape, then comes from the padded shape. Keys of different ranks
are padded with zero rows, which add nothing to the projection (nor to W0 + Λ D): one program
serves every rank.
"""

import jax
import numpy as np

from .. import sharding
from .rewriter import Rewriter, check_finite


def _pad(x, shape):
    x = np.asarray(x)
    return np.pad(x, [(0, t - s) for s, t in zip(x.shape, shape)])


def stack_goals(goals):
    """[Goal] -> (stacked padded goal_in, goal_out [E, ...], mask [E, 1, h, w])."""
    def spatial_max(arrays):
        return tuple(np.max([a.shape for a in arrays], axis=0))

    ins = [g.goal_in for g in goals]
    outs = [np.asarray(g.goal_out["fmap"]) for g in goals]
    goal_in = {}
    for name in ins[0]:
        arrays = [np.asarray(b[name]) for b in ins]
        shape = spatial_max(arrays)
        goal_in[name] = np.stack([_pad(a, shape) for a in arrays])
    shape = spatial_max(outs)
    mask = np.stack([_pad(np.ones(o.shape[:3], np.float32), shape[:3]) for o in outs])
    return goal_in, np.stack([_pad(o, shape) for o in outs]), mask


def insert_many(rw, goals, contexts, lrs, niter=2001, piter=10, method="projected", group=None):
    """The Update of E edits of `rw`'s layer, stacked (weight [E, ...], losses [E, ...]), split
    over all devices of every process; every process gets all of them.

    goals: E Goals; contexts: E key directions [r, C_in] (any ranks); lrs: [E] learning rates.
    `group`: edits per device per call (default: all in one call, what fills an accelerator);
    the rest run as further calls of the same compiled program. It bounds memory, and with a
    CPU device per core small groups run faster (64 StyleGAN2 golden edits on 2 cores: 9.1 s
    at once, 6.5 s with group=2; slower on one device; benchmarks/README.md)."""
    if group is not None and group < 1:
        raise ValueError(f"group is a number of edits per device, not {group}")
    if not len(goals) == len(contexts) == len(lrs) > 0:
        raise ValueError(f"one goal, context and learning rate per edit: got {len(goals)}, {len(contexts)} "
                         f"and {len(lrs)}")
    goal_in, goal_out, mask = stack_goals(goals)
    rank = max(len(d) for d in contexts)
    contexts = [_pad(d, (rank, np.shape(d)[1])) for d in contexts]
    n = len(goals)
    size = sharding.round_up(n if group is None else min(n, group * len(sharding.devices())))
    run = rw.program(("insert_many", method, niter, piter),
                     lambda: jax.vmap(rw.update_fn(method, niter, piter), in_axes=(None, 0, 0, 0, 0, 0)))
    params = sharding.replicate(rw.device_params)  # already on a device: no host copy
    batched = [goal_in, goal_out, mask, np.asarray(contexts, np.float32), np.asarray(lrs, np.float32)]
    results = []
    for start in range(0, n, size):  # the last call padded with copies of its last edit
        part = jax.tree.map(lambda x: sharding.split(sharding.pad(x[start:start + size], size))[0], batched)
        results.append(run(params, *part))
    result = jax.tree.map(lambda *parts: np.concatenate([sharding.to_host(p) for p in parts])[:n], *results)
    check_finite(result)
    return result


def sweep(model, request, layers, ranks, lrs, *, niter=2001, piter=10, key_method="zca", method="projected",
          group=None, **rewriter_options):
    """Final loss of every (layer, rank, lr) of a copy-paste request; each layer's ranks x lrs
    run as one vmapped batch (one compilation per layer; `group` as in `insert_many`)."""
    rows = []
    for layer in layers:
        rw = Rewriter(model, layer, **rewriter_options)
        goal = rw.copy_paste_goal(request)
        keys = {rank: rw.key(request.key, rank, key_method) for rank in ranks}
        configs = [(rank, lr) for rank in ranks for lr in lrs]
        result = insert_many(rw, [goal] * len(configs), [keys[r] for r, _ in configs], [lr for _, lr in configs],
                             niter, piter, method, group)
        rows += [{"layer": layer, "rank": rank, "lr": lr, "loss_start": float(l[0]), "loss_end": float(l[-1])}
                 for (rank, lr), l in zip(configs, result.losses)]
    return rows
