"""The paper's section 5.1 protocol on a world with a trusted segmenter.

For an edit whose rule turns `source` classes into `target` classes (spire -> tree):
* effect: of the source-class pixels of the unedited images, the fraction that the
  segmenter labels as a target class after the edit (and the fraction of images where
  at least half of them did);
* collateral: mean absolute pixel change (RGB in [0, 1]) outside the source region, dilated
  by `radius` pixels (the paper uses LPIPS there; this world is flat colours, so plain
  pixel change is the honest measure);
* distribution: total-variation distance between the class histograms before and after.
"""

import jax
import numpy as np

from .. import xla
from ..images import dilate  # noqa: F401 (edits and tests use it from here)
from ..zdataset import z_for
from . import towns


def classes(names):
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in towns.CLASS]
    if unknown or not names:
        raise ValueError(f"unknown class {unknown or names}; classes are {', '.join(towns.CLASSES)}")
    return np.array([towns.CLASS[n] for n in names])


def compare(before, after, source, target, radius=3):
    """Metrics of one edit from images (NHWC in [-1, 1]) rendered before and after it."""
    lb, la = towns.segment(before), towns.segment(after)
    src = np.isin(lb, classes(source))
    hit = src & np.isin(la, classes(target))
    per_image = hit.sum((1, 2)) / np.maximum(src.sum((1, 2)), 1)
    has_source = src.any((1, 2))
    outside = ~dilate(src, radius)
    change = np.abs(np.asarray(after) - np.asarray(before)).mean(-1) / 2
    hb, off_b = towns.histogram(lb)
    ha, off_a = towns.histogram(la)
    return {
        "images": len(before),
        "images_with_source": int(has_source.sum()),
        "effect": float(hit.sum() / max(src.sum(), 1)),
        "images_changed": float(np.mean(per_image[has_source] >= 0.5)) if has_source.any() else 0.0,
        "collateral": float(change[outside].mean()),
        "collateral_changed_px": float(np.mean(change[outside] > 0.1)),
        "histogram_tv": float(0.5 * np.abs(ha - hb).sum()),
        "histogram_before": dict(zip(towns.CLASSES, np.round(hb, 5).tolist())),
        "histogram_after": dict(zip(towns.CLASSES, np.round(ha, 5).tolist())),
        "off_palette": [off_b, off_a],
    }


def render(gen, params, n, seed, batch=100):
    """Image numbers 0..n-1 of `seed`, in batches (numpy NHWC)."""
    run, params = xla.jit(lambda p, z: gen(p, z)), jax.device_put(params)
    return np.concatenate([np.asarray(run(params, z_for(range(s, min(s + batch, n)), gen.z_dim, seed)))
                           for s in range(0, n, batch)])


def evaluate(model, edited, source, target, n=1000, seed=2, radius=3):
    """`compare` over n samples of `seed` (unseen: edits pick their examples from seed 1)."""
    gen = model.generator()
    return compare(render(gen, model.params, n, seed), render(gen, edited.params, n, seed), source, target, radius)
