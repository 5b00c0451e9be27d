"""What an edit leaves for inspection: statistics, context, weights (PyTorch layout), losses,
goals and before/after images (NCHW, as the official arrays)."""

import numpy as np

from checkpoints_convert.rules import inverse

from .. import xla
from ..atomic import atomic_write
from ..tree import get
from ..zdataset import z_for


def render(rw, params, numbers):
    """Images (NHWC) of these image numbers, one per call as the official rewriter renders."""
    run = xla.jit(lambda p, z: rw.gen(p, z))
    return np.asarray(run(params, z_for(numbers, rw.gen.z_dim, rw.seed)))


def torch_layout(model, path, w):
    return inverse(model.spec.layout.RULES.to_key(path)[1], np.asarray(w))


def nchw(x):
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def save(path, result, before, after):
    """The npz of an EditResult, with its before/after images."""
    rw = result.rewriter
    arrays = {
        "c_matrix": np.asarray(rw.c_matrix, np.float32),
        "context": np.asarray(result.context),
        "weight_before": torch_layout(rw.model, rw.weight_path, get(rw.model.params, rw.weight_path)),
        "weight_after": torch_layout(rw.model, rw.weight_path, result.weight),
        "losses": np.asarray(result.losses),
        "images_before": nchw(before),
        "images_after": nchw(after),
    }
    if result.goal is not None:
        arrays.update(goal_in=nchw(result.goal.goal_in["fmap"]), goal_out=nchw(result.goal.goal_out["fmap"]))
    atomic_write(path, lambda f: np.savez(f, **arrays))
