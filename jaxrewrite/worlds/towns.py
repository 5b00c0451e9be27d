"""64x64 "town" scenes: sky, ground, buildings with spires / domes / windows, and trees.

Every pixel's class is known, and each class is painted in its own flat colour (jittered a
little per scene), so a nearest-palette segmenter labels real scenes exactly and labels
generated ones well enough to measure an edit's effect (the paper's section 5.1 protocol
needs a segmenter it can trust). Spires are tall triangles and domes half disks of the
same width, so the two differ by shape, not only by colour.

Scenes are drawn in numpy, vectorised over the batch: each object slot paints a label map
with its depth (base row); the nearest object wins each pixel (a z-buffer).
"""

import numpy as np

SIZE = 64
CLASSES = ("sky_day", "sky_dusk", "grass", "sand", "wall", "window", "spire", "dome", "crown", "trunk")
PALETTE = np.array([
    (0.55, 0.75, 0.95),  # sky_day
    (0.92, 0.55, 0.40),  # sky_dusk
    (0.30, 0.62, 0.22),  # grass
    (0.88, 0.80, 0.50),  # sand
    (0.72, 0.66, 0.60),  # wall
    (0.12, 0.14, 0.32),  # window
    (0.62, 0.12, 0.14),  # spire
    (0.22, 0.55, 0.72),  # dome
    (0.04, 0.32, 0.10),  # crown
    (0.42, 0.26, 0.10),  # trunk
], np.float32)
CLASS = {name: i for i, name in enumerate(CLASSES)}
JITTER = 0.03      # per-scene, per-class colour offset, each channel uniform in [-JITTER, JITTER]
OFF_PALETTE = 0.15  # a pixel further than this (RGB distance in [0, 1] units) from every colour is unlabelled

N_BUILDINGS, N_TREES = 3, 3
ROOFS = ("spire", "dome", "flat")
ROOF_P = (0.45, 0.35, 0.20)


def _grid():
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return y[None], x[None]


def _col(a):
    return np.asarray(a)[:, None, None]


def _building(rng, n, horizon, y, x, present):
    """Label map (-1 = not covered) and depth of one building slot for n scenes."""
    cx = rng.uniform(6, SIZE - 6, n)
    half = rng.integers(4, 10, n)                     # wall width 8..18
    base = horizon + rng.integers(0, 9, n)
    top = base - rng.integers(10, 21, n)              # wall height 10..20
    roof = rng.choice(len(ROOFS), n, p=ROOF_P)
    windows = rng.random(n) < 0.85
    cx, half, base, top = _col(np.floor(cx) + 0.5), _col(half), _col(base), _col(top)
    dx = np.abs(x + 0.5 - cx)

    label = np.full((n, SIZE, SIZE), -1, np.int8)
    wall = (dx < half) & (y >= top) & (y < base)
    label[wall] = CLASS["wall"]
    col, row = x - (cx - half) - 2, y - top - 2       # windows: 2x3 cells every 4x5, margin 2
    win = wall & (dx < half - 2) & (y < base - 3) & (row >= 0) & (col % 4 < 2) & (row % 5 < 3)
    label[win & _col(windows)] = CLASS["window"]
    height = half * rng.uniform(2.0, 3.2, n)[:, None, None]  # spire: a triangle 1..1.6 x its base tall
    spire = (y < top) & (y >= top - height) & (dx < half * (y - (top - height)) / height)
    label[spire & _col(roof == 0)] = CLASS["spire"]
    dome = (y < top) & ((x + 0.5 - cx) ** 2 + (y + 0.5 - top) ** 2 < half ** 2)
    label[dome & _col(roof == 1)] = CLASS["dome"]
    label[~present] = -1
    return label, base[:, 0, 0]


def _tree(rng, n, horizon, y, x, present):
    cx = np.floor(rng.uniform(4, SIZE - 4, n)) + 0.5
    base = np.minimum(horizon + rng.integers(1, 14, n), SIZE - 1)
    trunk_top = base - rng.integers(4, 9, n)
    radius = rng.uniform(3.5, 6.5, n)
    cx, base, trunk_top, radius = map(_col, (cx, base, trunk_top, radius))
    label = np.full((n, SIZE, SIZE), -1, np.int8)
    label[(np.abs(x + 0.5 - cx) < 1.5) & (y >= trunk_top) & (y < base)] = CLASS["trunk"]
    cy = trunk_top - radius + 2
    label[(x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 < radius ** 2] = CLASS["crown"]
    label[~present] = -1
    return label, base[:, 0, 0]


def labels(rng, n):
    """Class maps [n, 64, 64] (int8) of n random scenes."""
    y, x = _grid()
    horizon = rng.integers(38, 49, n)
    label = np.where(y < _col(horizon), _col(rng.integers(0, 2, n)), _col(2 + rng.integers(0, 2, n))).astype(np.int8)
    depth = np.full((n, SIZE, SIZE), -np.inf, np.float32)
    slots = [(_building, np.ones(n, bool) if i == 0 else rng.random(n) < 0.6) for i in range(N_BUILDINGS)]
    slots += [(_tree, rng.random(n) < 0.5) for _ in range(N_TREES)]
    for draw, present in slots:
        obj, d = draw(rng, n, horizon, y, x, present)
        cover = (obj >= 0) & (_col(d) > depth)
        label = np.where(cover, obj, label)
        depth = np.where(cover, _col(d), depth)
    return label


def render(rng, label):
    """RGB in [-1, 1], NHWC float32: each class's palette colour, jittered per scene."""
    colours = PALETTE[None] + rng.uniform(-JITTER, JITTER, (label.shape[0],) + PALETTE.shape).astype(np.float32)
    return colours[np.arange(label.shape[0])[:, None, None], label] * 2 - 1


def scenes(seed, n):
    """n scenes from a seed: (images [n, 64, 64, 3] in [-1, 1], labels [n, 64, 64])."""
    rng = np.random.default_rng(seed)
    label = labels(rng, n)
    return render(rng, label), label


def segment(images):
    """Nearest-palette class per pixel of NHWC images in [-1, 1]; -1 where off the palette."""
    rgb = (np.asarray(images, np.float32) + 1) / 2
    dist = np.linalg.norm(rgb[..., None, :] - PALETTE, axis=-1)
    label = dist.argmin(-1).astype(np.int8)
    return np.where(dist.min(-1) > OFF_PALETTE, np.int8(-1), label)


def histogram(label):
    """Fraction of pixels per class (len(CLASSES)) and off-palette fraction."""
    label = np.asarray(label).ravel()
    counts = np.bincount(label[label >= 0], minlength=len(CLASSES))
    return counts / label.size, float(np.mean(label < 0))
