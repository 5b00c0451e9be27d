"""Where a key-statistics batch's time goes: the library's loop against the same sums with
less around them (no profiler needed, so it runs the same on a CPU and on a lent GPU).

    python benchmarks/profile_stats.py [--batch 50] [--batches 40] [--out FILE]

Variants, milliseconds per batch, for the three models of `run.py`:
  chunked       `stats.second_moment` as the rewriter calls it: `stats.CHUNK` batches per call
  per batch     the same with one batch per call (a dispatch, a transfer, a read-back each)
  per batch, numpy params   and with the parameters passed as host arrays (the loop before
                `sharding.replicate`: a GPU copied them on every call)
  one program   all batches in one call on device-resident inputs: compute alone
The gaps between rows are the host's share: transfers, dispatch, read-back.
"""

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_stats  # noqa: E402
import record  # noqa: E402

from jaxrewrite import modelfile, sharding, zoo  # noqa: E402
from jaxrewrite.rewrite import stats  # noqa: E402
from jaxrewrite.zdataset import z_dataset  # noqa: E402


def _best(fn):
    fn()  # compiled / warm
    return record.best_seconds(fn)[0]


def _chunked(gen, params, layer, n, batch, chunk):
    saved, stats.CHUNK = stats.CHUNK, chunk
    try:
        return stats.second_moment(gen, params, layer, n, batch_size=batch)
    finally:
        stats.CHUNK = saved


def variants(gen, params, layer, batch, batches):
    n = batch * batches
    zs = z_dataset(n, gen.z_dim, 1).reshape(batches, batch, -1)
    host = (zs, np.arange(n, dtype=np.int32).reshape(batches, batch), np.ones((batches, batch), np.float32))
    fn, device_params = stats.key_sums_fn(gen, layer), sharding.replicate(params)
    stacked = jax.device_put(host)
    return {
        "chunked": _best(lambda: stats.second_moment(gen, params, layer, n, batch_size=batch)),
        "per batch": _best(lambda: _chunked(gen, params, layer, n, batch, 1)),
        "per batch, numpy params": _best(lambda: _per_batch_numpy(fn, jax.device_get(params), *host)),
        "one program": _best(lambda: fn(device_params, *stacked)),
    }


def _per_batch_numpy(fn, params, zs, numbers, weights):
    """The loop before: host parameters into every call, each batch read back after the next."""
    total, pending = 0.0, []
    for i in range(len(zs)):
        pending.append(fn(params, zs[i:i + 1], numbers[i:i + 1], weights[i:i + 1]))
        if len(pending) == 2:
            total = total + np.asarray(pending.pop(0)[0], np.float64)
    return total + np.asarray(pending.pop()[0], np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--out")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 256 px 512-channel model")
    args = ap.parse_args()
    models = list(bench_stats.models(large=not args.skip_large)) + [("towns64-progan-64px", modelfile.load(zoo.resolve("towns64")), "layer5.conv")]
    rows = {}
    for name, model, layer in models:
        gen = model.generator(**model.official_options(10))
        times = variants(gen, model.params, layer, args.batch, args.batches)
        rows[name] = {k: 1e3 * v / args.batches for k, v in times.items()}
        print(name, " ".join(f"{k}: {v:.3f} ms" for k, v in rows[name].items()), flush=True)
    print(f"device {jax.devices()[0].device_kind}, batch {args.batch}, {args.batches} batches, ms per batch")
    if args.out:
        record.save(args.out, {"batch": args.batch, "batches": args.batches, "ms_per_batch": rows})


if __name__ == "__main__":
    main()
