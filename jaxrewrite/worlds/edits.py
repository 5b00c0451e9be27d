"""Edit requests written from segmentations instead of by hand.

An edit for a world is a rule between classes ("spire -> tree"): we render image numbers of
the edit seed, segment them, and pick clean connected regions for the object, the paste
location and the context examples. The result is an ordinary official-format edit file with
one extra entry, `jaxrewrite`, recording the rule (layer, kind, source and target classes),
which `jaxrewrite eval` reads and the official code ignores.
"""

import json
from collections import deque

import numpy as np

from ..atomic import atomic_write
from ..rewrite.editfile import Edit, encode_mask, to_json
from . import metrics, towns


def components(mask):
    """4-connected components of a boolean [h, w] mask, largest first."""
    seen = np.zeros_like(mask, bool)
    out = []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        comp = np.zeros_like(mask, bool)
        todo = deque([(y, x)])
        seen[y, x] = True
        while todo:
            cy, cx = todo.popleft()
            comp[cy, cx] = True
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
        out.append(comp)
    return sorted(out, key=lambda c: -c.sum())


def _regions(labels, names, min_px, max_px, whole_class=False):
    """(size, image number, region) for every image's largest region of these classes (all
    their pixels if `whole_class`), largest first."""
    ids = metrics.classes(names)
    found = []
    for number, lab in enumerate(labels):
        mask = np.isin(lab, ids)
        comps = [mask] if whole_class and mask.any() else components(mask)
        if comps and min_px <= comps[0].sum() <= max_px:
            found.append((int(comps[0].sum()), number, comps[0]))
    return sorted(found, key=lambda t: -t[0])


def class_edit(labels, source, target=None, n_keys=8, min_px=20, max_px=400, grow=1, whole_class=False):
    """An Edit from segmented samples: paste over the largest clean `source` region, copy the
    largest clean `target` region (not for erase, `target=None`), context = the next `n_keys`
    images' source regions (so the key generalises beyond the paste image). Regions are
    connected components, or every source pixel of an image if `whole_class` (windows)."""
    src = _regions(labels, source, min_px, max_px, whole_class)
    if len(src) < 2:
        raise ValueError(f"too few samples show {source}: search more image numbers")
    grown = lambda m: metrics.dilate(m[None], grow)[0] if grow else m
    paste = (src[0][1], encode_mask(grown(src[0][2])))
    key = tuple((n, encode_mask(grown(m))) for _, n, m in src[:n_keys])
    obj = None
    if target is not None:
        tgt = [t for t in _regions(labels, target, min_px, max_px) if t[1] != paste[0]]
        if not tgt:
            raise ValueError(f"no sample shows a clean {target} region")
        obj = (tgt[0][1], encode_mask(grown(tgt[0][2])))
    return Edit(object=obj, paste=paste, key=key)


def write(edit, path, rule):
    """The edit in the official format, with the rule under `jaxrewrite`."""
    text = json.dumps({**to_json(edit), "jaxrewrite": rule}, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def rule(path):
    """The validated `jaxrewrite` entry of an edit file: layer, kind, source and target classes."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the edit file ({e})") from None
    entry = data.get("jaxrewrite") if isinstance(data, dict) else None
    if not isinstance(entry, dict) or not all(k in entry for k in ("layer", "source", "target")):
        raise ValueError(f"{path}: no 'jaxrewrite' entry with layer, source and target classes to evaluate")
    metrics.classes(entry["source"]), metrics.classes(entry["target"])
    if entry.get("kind", "edit") not in ("edit", "erase"):
        raise ValueError(f"{path}: 'jaxrewrite' kind must be 'edit' or 'erase'")
    return entry


def sample_labels(model, n, seed=1):
    gen = model.generator()
    return towns.segment(metrics.render(gen, model.params, n, seed))
