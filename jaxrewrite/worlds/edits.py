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

from ..rewrite.editfile import Request, write_edit
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


def box(region):
    """(height, width) of a region's bounding box."""
    ys, xs = np.nonzero(region)
    return np.ptp(ys) + 1, np.ptp(xs) + 1


def class_edits(labels, source, target=None, n=6, n_keys=8, pool=40, min_px=20, max_px=400, grow=1,
                whole_class=False):
    """Up to `n` candidate Requests from segmented samples, best guess first. A copy-paste edit
    pastes a clean `target` region over a clean `source` region of another image; pairs whose
    bounding boxes match best come first (a tree as tall and wide as the spire it replaces
    covers it). An erase (`target=None`) takes the images with the most source pixels in turn.
    Context: the paste region and the `n_keys - 1` largest other source regions, so the key
    generalises beyond the paste image. Regions are connected components, or every source
    pixel of an image if `whole_class` (windows). Which candidate works is then measured."""
    src = _regions(labels, source, min_px, max_px, whole_class)
    if len(src) < 2:
        raise ValueError(f"too few samples show {source}: search more image numbers")
    grown = lambda m: metrics.dilate(m[None], grow)[0] if grow else m
    if target is None:
        pairs = [(p, None) for p in src[:n]]
    else:
        tgt = _regions(labels, target, min_px, max_px)
        boxes = {id(r): np.array(box(r[2])) for r in src[:pool] + tgt}
        mismatch = lambda p, o: int(np.abs(boxes[id(p)] - boxes[id(o)]).sum())
        pairs = sorted(((p, o) for p in src[:pool] for o in tgt if o[1] != p[1]), key=lambda po: mismatch(*po))[:n]
        if not pairs:
            raise ValueError(f"no sample shows a clean {target} region")
    out = []
    for p, o in pairs:
        context = [p] + [s for s in src if s[1] != p[1]][:n_keys - 1]
        out.append(Request.from_arrays(object=o and (o[1], grown(o[2])), paste=(p[1], grown(p[2])),
                                       key=[(number, grown(m)) for _, number, m in context]))
    return out


def write(request, path, rule):
    """The request in the official format, with the rule under `jaxrewrite`."""
    write_edit(request, path, {"jaxrewrite": rule})


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
