"""Measuring edits of the DCGAN faces (`jaxrewrite zoo fetch dcgan-faces`): does a face wear glasses?

The samples are roughly aligned: the mean of 2000 samples has sharp eyes at rows 24-31,
columns 20-28 and 36-44. Frames show as thin lines around and between the eyes, so the
detector reads six statistics of the eye band (rows 20-36, columns 14-50) of the image
itself, never the generator's features (an edit changes those directly):

1. density of thin dark horizontal lines (darker by 5% than the pixels above and below),
2. the same on the nose bridge, best of vertical shifts of +-4 rows (faces tilt),
3. density of thin dark vertical lines at the temples, best shift,
4. vertical-gradient energy of the band, 5. of the bridge (best shift),
6. vertical-gradient energy of the cheeks: the face's own texture, for reference,

combined by a logistic regression fitted on hand-labelled samples
(`benchmarks/faces_labels.json`: 300 samples, 39 with glasses; refit and cross-validate with
`python benchmarks/faces.py detector`). The coefficients below are that fit.
"""

import numpy as np

BAND = (20, 36, 14, 50)
SHIFTS = range(-4, 5)
# Standardisation, logistic weights and threshold (10% false positives on the labelled
# samples) from `python benchmarks/faces.py detector`: 5-fold cross-validated AUC 0.876;
# out of fold, 56% of the faces with glasses score above the threshold (TPR) and 10% of
# those without (FPR).
GLASSES = {"mean": [0.06213, 0.065257, 0.119868, 0.03463, 0.034796, 0.033059],
           "std": [0.019558, 0.058921, 0.088303, 0.013014, 0.022868, 0.013663],
           "w": [0.90832, 0.327899, 0.247504, 0.471181, 0.622715, -0.445661], "b": -2.54598,
           "threshold": -0.91005, "tpr": 0.56, "fpr": 0.10}


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


def features(images):
    """[n, 6] detector statistics of NHWC images in [-1, 1] (64x64)."""
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


def wears_glasses(images, model=GLASSES):
    """Boolean per image, at the fitted threshold."""
    return score(features(images), model) > model["threshold"]


def prevalence(detected_rate, model=GLASSES):
    """The fraction of faces that truly wear glasses, from the detector's rate (Rogan-Gladen:
    rate = tpr * p + fpr * (1 - p)), clipped to [0, 1]."""
    return float(np.clip((detected_rate - model["fpr"]) / (model["tpr"] - model["fpr"]), 0, 1))
