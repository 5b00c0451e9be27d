"""Statistics of keys: the uncentred second moment C = E[k kᵀ] at a layer, and its ZCA matrix.

Keys are the feature vectors (channels) entering the rewritten weight, one per pixel of every
sample of the z data set. Batches run under `jit`, `CHUNK` of them per call as one
`lax.scan`; with several devices (of every process) each sums its share of every batch and
the devices' sums meet once per call. The calls' partial sums are accumulated in float64 on
the host. Results are cached on disk, keyed by everything that changes them.
"""

import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from .. import sharding, xla
from ..atomic import atomic_write
from ..progress import progress
from ..zdataset import z_dataset

CACHE_VERSION = 1
# Batches per call: one dispatch, one transfer of z and one read-back per chunk instead of
# per batch (the host's share of a batch on a GPU), float32 sums over at most CHUNK batches.
CHUNK = 8


@functools.lru_cache(maxsize=32)
def key_sums_fn(gen, first):
    """jit: (params, z [K, B, z_dim], image_numbers [K, B], weights [K, B]) ->
    (Σ w·k kᵀ, Σ w·pixels) over K batches of B.

    Keys are taken before any nearest upsampling that feeds `first` (same C from 4x fewer key
    vectors). Cached per (generator object, layer): repeated statistics with one generator
    compile once per process (a newly built generator compiles again)."""
    cut = gen.stats_cut(first)

    def batch_sums(params, z, numbers, weights):
        bag = gen.upto(params, gen.inputs(z, image_numbers=numbers), cut)
        k = bag["fmap"]
        n, h, w, c = k.shape
        flat = (k * jnp.sqrt(weights)[:, None, None, None]).reshape(-1, c)
        return flat.T @ flat, jnp.sum(weights) * h * w

    def sums(params, zs, numbers, weights):
        def add(total, batch):
            return jax.tree.map(jnp.add, total, batch_sums(params, *batch)), None

        shapes = jax.eval_shape(batch_sums, params, zs[0], numbers[0], weights[0])
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.scan(add, zero, (zs, numbers, weights))[0]

    return xla.jit(sharding.summed(sums, axis=1))


def second_moment(gen, params, first, n, seed=1, batch_size=10, show_progress=False):
    """C [c, c] float64 over image numbers 0..n-1 of `seed` (official default: n=1000)."""
    batch_size = sharding.round_up(batch_size)
    fn, params = key_sums_fn(gen, first), sharding.replicate(params)
    zs = z_dataset(n, gen.z_dim, seed)
    total, count, pending = 0.0, 0.0, []
    batches = -(-n // batch_size)
    chunk = -(-batches // -(-batches // CHUNK))  # batches per call, as even as can be (the last is padded)

    def read_back(result):  # float64 on the host
        return total + sharding.to_host(result[0]).astype(np.float64), count + float(sharding.to_host(result[1]))

    starts = range(0, n, chunk * batch_size)
    for start in progress(starts, len(starts), f"key statistics ({n} images)") if show_progress else starts:
        numbers = np.arange(start, start + chunk * batch_size).reshape(chunk, batch_size)
        valid = numbers < n
        z = np.where(valid[..., None], zs[np.minimum(numbers, n - 1)], 0).astype(np.float32)
        pending.append(fn(params, *sharding.split(z, numbers.astype(np.int32), valid.astype(np.float32), axis=1)))
        if len(pending) == 2:  # the previous chunk is read back while this one runs
            total, count = read_back(pending.pop(0))
    total, count = read_back(pending.pop())
    return total / count


def zca(c_matrix):
    """C^(-1/2) from the symmetric eigendecomposition in float64 (eigenvalue roots clamped at 1e-20)."""
    vals, vecs = np.linalg.eigh(np.asarray(c_matrix, np.float64))
    return ((vecs / np.maximum(np.sqrt(np.maximum(vals, 0)), 1e-20)) @ vecs.T).astype(np.float32)


def solve(c_matrix, k):
    """C⁻¹k for rows of k, by solving rather than inverting C."""
    c = np.asarray(c_matrix, np.float64)
    return np.linalg.lstsq(c, np.asarray(k, np.float64).T, rcond=None)[0].T


def cached_second_moment(model, gen_options, first, n, seed, batch_size, cache_dir, show_progress=False):
    """`second_moment`, loaded from / saved to `cache_dir` (None: no cache). A corrupt or
    mismatching cache file is recomputed and replaced."""
    gen = model.generator(**gen_options)
    if cache_dir is None:
        return second_moment(gen, model.params, first, n, seed, batch_size, show_progress)
    meta = {"version": CACHE_VERSION, "weights": model.digest(), "layer": first, "n": n, "seed": seed,
            "generator": {k: gen_options[k] for k in sorted(gen_options)}}
    tag = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    path = os.path.join(cache_dir, f"c_matrix-{first}-{tag}.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            c = f["c_matrix"]
            if json.loads(str(f["meta"])) == meta and np.all(np.isfinite(c)) and c.shape[0] == c.shape[1]:
                return c
    except Exception:  # missing, torn or foreign: recompute below
        pass
    c = second_moment(gen, model.params, first, n, seed, batch_size, show_progress)
    os.makedirs(cache_dir, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, c_matrix=c, meta=json.dumps(meta, sort_keys=True)), now=True)
    return c


def unit_quantiles(gen, params, first, n, seed=1, batch_size=10, levels=1001, max_pixels=200_000):
    """[levels, C] quantiles of each key unit over the data set (a fixed random subsample of at
    most `max_pixels` key vectors), for the 'gandissect' key method."""
    fn = xla.jit(lambda p, z, numbers: gen.upto(p, gen.inputs(z, image_numbers=numbers), first)["fmap"])
    zs, params, chunks = z_dataset(n, gen.z_dim, seed), jax.device_put(params), []  # unsharded: one device
    for start in range(0, n, batch_size):
        numbers = np.arange(start, min(start + batch_size, n))
        k = np.asarray(fn(params, zs[numbers], numbers))
        chunks.append(k.reshape(-1, k.shape[-1]))
    keys = np.concatenate(chunks)
    if len(keys) > max_pixels:
        keys = keys[np.sort(np.random.default_rng(0).choice(len(keys), max_pixels, replace=False))]
    return np.quantile(keys, np.linspace(0, 1, levels), axis=0).astype(np.float32)
