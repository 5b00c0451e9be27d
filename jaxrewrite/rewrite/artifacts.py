"""What an edit leaves for inspection: statistics, context, weights (PyTorch layout), losses,
goals and before/after images (NCHW, as the official arrays)."""

import numpy as np

from .. import xla
from ..atomic import atomic_write
from ..tree import get
from ..zdataset import z_for


def render(rw, params, numbers):
    """Images (NHWC) of these image numbers, one per call as the official rewriter renders."""
    run = xla.jit(lambda p, z: rw.gen(p, z))
    return np.asarray(run(params, z_for(numbers, rw.gen.z_dim, rw.seed)))


def torch_layout(model, path, w):
    from checkpoints_convert import ARCHS
    from checkpoints_convert.rules import inverse

    return inverse(ARCHS[model.arch].RULES.to_key(path)[1], np.asarray(w))


def nchw(x):
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def save(path, rw, params, d, losses, goal_in, goal_out, before, after):
    arrays = {
        "c_matrix": np.asarray(rw.c_matrix, np.float32),
        "context": np.asarray(d),
        "weight_before": torch_layout(rw.model, rw.weight_path, get(rw.model.params, rw.weight_path)),
        "weight_after": torch_layout(rw.model, rw.weight_path, get(params, rw.weight_path)),
        "losses": np.asarray(losses),
        "goal_in": nchw(goal_in["fmap"]),
        "goal_out": nchw(goal_out["fmap"]),
        "images_before": nchw(before),
        "images_after": nchw(after),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))
