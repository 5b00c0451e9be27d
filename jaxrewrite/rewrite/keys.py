"""Context keys: the r x C_in directions D along which the rewrite may change the weight.

Each method takes the key examples as (keys [pixels, C_in], mask weights [pixels]) pairs at
key resolution, as the official `multi_key_from_selection` gathers them, and returns D with
orthonormal rows (one-hot rows for 'gandissect').
"""

import numpy as np

from .stats import solve


def _selected(examples):
    """Rows with positive mask weight, and their weights."""
    keys = np.concatenate([k[w > 0] for k, w in examples]).astype(np.float64)
    weights = np.concatenate([w[w > 0] for _, w in examples]).astype(np.float64)
    return keys, weights


def zca_key(examples, zca_matrix, rank=1):
    """Top right singular vectors of the whitened, weighted keys, mapped back by C^(-1/2) (so
    they live in C⁻¹k space), orthonormalised; each signed to agree with the whitened sum."""
    keys, weights = _selected(examples)
    z = np.asarray(zca_matrix, np.float64)
    white = weights[:, None] * (keys @ z.T)
    _, _, vt = np.linalg.svd(white, full_matrices=False)
    if vt.shape[0] < rank:
        raise ValueError(f"rank {rank} exceeds the {vt.shape[0]} key examples' span")
    q, _ = np.linalg.qr(z @ vt[:rank].T)
    signs = np.sign(white.sum(0) @ q)
    return (q * np.where(signs == 0, 1, signs)).T.astype(np.float32)


def _adjusted(examples, c_matrix):
    keys = np.concatenate([k * w[:, None] for k, w in examples]).astype(np.float64)
    keys = keys[np.linalg.norm(keys, axis=1) > 0]
    return solve(c_matrix, keys)


def svd_key(examples, c_matrix, rank=1):
    """Left singular vectors of C⁻¹(w·k); the first agrees in sign with their mean."""
    adjusted = _adjusted(examples, c_matrix)
    u, _, _ = np.linalg.svd(adjusted.T, full_matrices=False)
    if adjusted.mean(0) @ u[:, 0] < 0:
        u[:, 0] = -u[:, 0]
    if u.shape[1] < rank:
        raise ValueError(f"rank {rank} exceeds the {u.shape[1]} key examples' span")
    return u.T[:rank].astype(np.float32)


def mean_key(examples, c_matrix, rank=1):
    """The normalised mean of C⁻¹(w·k): one direction."""
    check_rank("mean", rank)
    mean = _adjusted(examples, c_matrix).mean(0)
    return (mean / np.linalg.norm(mean))[None].astype(np.float32)


def check_rank(method, rank):
    if rank != "full" and rank > MOST_DIRECTIONS.get(method, rank):
        raise ValueError(f"key method {method!r} gives {MOST_DIRECTIONS[method]} direction(s): use rank "
                         f"{MOST_DIRECTIONS[method]}")


def top_units(examples, unit_score, n):
    """The `n` key units with the highest mask-weighted mean of `unit_score(keys)` [pixels,
    C_in], highest first (ties in unit order)."""
    keys = np.concatenate([k for k, _ in examples]).astype(np.float64)
    weights = np.concatenate([w for _, w in examples]).astype(np.float64)
    if n > keys.shape[1]:
        raise ValueError(f"{n} units asked for, the key has {keys.shape[1]}")
    score = (unit_score(keys) * weights[:, None]).sum(0) / weights.sum()
    return np.argsort(-score, kind="stable")[:n]


def gandissect_key(examples, unit_quantiles, rank=1):
    """One-hot rows for the `rank` units whose masked values are most unusual: highest mean
    -log(1 - q), q = the value's quantile among that unit's values over the data set.

    unit_quantiles: [levels, C_in] sorted values of each unit at evenly spaced quantiles."""
    levels = np.linspace(0, 1, unit_quantiles.shape[0])

    def unusual(keys):
        q = np.stack([np.interp(keys[:, c], unit_quantiles[:, c], levels) for c in range(keys.shape[1])], 1)
        return -np.log1p(-np.minimum(q, 1 - 1e-6))

    top = top_units(examples, unusual, rank)
    out = np.zeros((rank, unit_quantiles.shape[1]), np.float32)
    out[np.arange(rank), top] = 1
    return out


# name -> (examples, statistics, rank) -> D; `statistics` has the layer's c_matrix, zca_matrix
# and (computed on first use) quantiles, as a Rewriter has
KEY_METHODS = {
    "zca": lambda examples, s, rank: zca_key(examples, s.zca_matrix, rank),
    "svd": lambda examples, s, rank: svd_key(examples, s.c_matrix, rank),
    "mean": lambda examples, s, rank: mean_key(examples, s.c_matrix, rank),
    "gandissect": lambda examples, s, rank: gandissect_key(examples, s.quantiles, rank),
}


MOST_DIRECTIONS = {"mean": 1}  # methods that give at most this many directions, whatever the examples
UNITS = {"gandissect"}  # methods that pick key units (one-hot rows): as many as the key has, whatever the masks


def get(name):
    if name not in KEY_METHODS:
        raise ValueError(f"unknown key method {name!r}; choose from {', '.join(KEY_METHODS)}")
    return KEY_METHODS[name]
