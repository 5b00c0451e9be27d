"""Measuring edits of the DCGAN faces (`jaxrewrite zoo fetch dcgan-faces`): glasses, headwear.

Detectors read the image itself, never the generator's features (an edit changes those
directly). The samples are roughly aligned: the mean of 2000 samples has sharp eyes at rows
24-31, columns 20-28 and 36-44.

* glasses: frames show as thin lines around and between the eyes, so six statistics of the
  eye band (rows 20-36, columns 14-50): (1) density of thin dark horizontal lines (darker
  by 5% than the pixels above and below), (2) the same on the nose bridge, best of vertical
  shifts of +-4 rows (faces tilt), (3) thin dark vertical lines at the temples, best shift,
  (4) vertical-gradient energy of the band and (5) of the bridge (best shift), (6) the
  cheeks' vertical-gradient energy: the face's own texture, for reference.
* headwear: a hat changes the colour and the edges of the top of the image, so the means of
  colour and vertical-gradient energy over 8x8 blocks of the top half (32 blocks x 4).

Each is a logistic regression fitted on hand-labelled samples (`benchmarks/faces_labels.json`)
by `python benchmarks/faces.py detector`, which cross-validates it and writes the fit to
`jaxrewrite/assets/faces_detectors.json` with its threshold (10% false positives) and its
out-of-fold true- and false-positive rates.
"""

import functools
import json
from importlib import resources

import numpy as np

BAND = (20, 36, 14, 50)  # rows, columns the glasses statistics read
EDIT_REGION = (20, 36, 12, 52)  # the eye band the shipped glasses edits copy and paste
HEAD_REGION = (0, 20, 8, 56)  # the top of the head the shipped headwear edit copies and pastes
SHIFTS = range(-4, 5)


def region(box, size=64):
    """Boolean [size, size] mask of a (top, bottom, left, right) box."""
    mask = np.zeros((size, size), bool)
    mask[box[0]:box[1], box[2]:box[3]] = True
    return mask


def _luminance(images):
    return ((np.asarray(images, np.float32) + 1) / 2).mean(-1)


def _thin_dark_lines(lum, axis):
    """Pixels darker by 5% (of their brightness) than both neighbours along `axis`."""
    before, after = np.roll(lum, 1, axis), np.roll(lum, -1, axis)
    return (np.minimum(before, after) - lum) / (lum + 0.05) > 0.05


def _mean(a, rows, cols, shift=0):
    return a[:, rows[0] + shift:rows[1] + shift, cols[0]:cols[1]].mean((1, 2))


def _best_shift(fn):
    return np.max(np.stack([fn(s) for s in SHIFTS]), 0)


def glasses_features(images):
    """[n, 6] statistics of the eye band of NHWC images in [-1, 1] (64x64)."""
    lum = _luminance(images)
    horiz, vert = _thin_dark_lines(lum, 1), _thin_dark_lines(lum, 2)
    grad = np.abs(np.diff(lum, axis=1))
    r0, r1, c0, c1 = BAND
    return np.stack([
        _mean(horiz, (r0, r1), (c0, c1)),
        _best_shift(lambda s: _mean(horiz, (24, 30), (29, 35), s)),
        _best_shift(lambda s: _mean(vert, (24, 32), (12, 18), s) + _mean(vert, (24, 32), (46, 52), s)),
        _mean(grad, (r0, r1 - 2), (c0, c1)),
        _best_shift(lambda s: _mean(grad, (23, 29), (29, 35), s)),
        _mean(grad, (40, 48), (20, 44)),
    ], 1)


def headwear_features(images):
    """[n, 128] colour and vertical-gradient means over 8x8 blocks of the top half."""
    rgb = (np.asarray(images, np.float32)[:, :32] + 1) / 2
    grad = np.abs(np.diff(rgb.mean(-1), axis=1, append=rgb[:, -1:].mean(-1)))[..., None]
    x = np.concatenate([rgb, grad], -1)
    n, h, w, c = x.shape
    return x.reshape(n, h // 8, 8, w // 8, 8, c).mean((2, 4)).reshape(n, -1)


FEATURES = {"glasses": glasses_features, "headwear": headwear_features}


def fit(feats, labels, l2=0.01, steps=2000, lr=0.1):
    """Logistic regression on standardised features: {'mean', 'std', 'w', 'b'}."""
    mean, std = feats.mean(0), feats.std(0) + 1e-12
    x, y = (feats - mean) / std, np.asarray(labels, np.float64)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        g = 1 / (1 + np.exp(-(x @ w + b))) - y
        w -= lr * (x.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return {"mean": mean.tolist(), "std": std.tolist(), "w": w.tolist(), "b": float(b)}


def score(feats, model):
    return (feats - np.asarray(model["mean"])) / np.asarray(model["std"]) @ np.asarray(model["w"]) + model["b"]


def auc(scores, labels):
    """Probability that a positive outscores a negative (ties count half)."""
    labels = np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    return float(np.mean(pos[:, None] > neg[None]) + 0.5 * np.mean(pos[:, None] == neg[None]))


def split_labels(spec, n=300):
    """(with, without) image numbers from a hand-label entry {"yes": [...], "unsure": [...]}
    over image numbers 0..n-1: unsure ones are in neither."""
    return list(spec["yes"]), [i for i in range(n) if i not in spec["yes"] + spec["unsure"]]


@functools.lru_cache(maxsize=None)
def detectors():
    """The shipped fits: {attribute: {mean, std, w, b, threshold, tpr, fpr, cv_auc}}."""
    return json.loads((resources.files("jaxrewrite") / "assets" / "faces_detectors.json").read_text())


def detect(images, attribute):
    """Boolean per image: does it show `attribute` ('glasses', 'headwear')?"""
    model = detectors()[attribute]
    return score(FEATURES[attribute](images), model) > model["threshold"]


def prevalence(detected_rate, attribute):
    """The share of faces that truly show `attribute`, from the detector's rate (Rogan-Gladen:
    rate = tpr * p + fpr * (1 - p)), clipped to [0, 1]."""
    model = detectors()[attribute]
    return float(np.clip((detected_rate - model["fpr"]) / (model["tpr"] - model["fpr"]), 0, 1))
