"""StyleGAN2's upsampling convolution (3x3, stride 2) at the shapes of the benchmarked
generators: `ops.conv_transpose` (stride² phase correlations of the input) against one
correlation of the zero-dilated input (`lhs_dilation`, the form it replaced), milliseconds
per call. (An edit's loop runs the layer as patch GEMMs instead, `ops.patch_gemm`.)

    python benchmarks/bench_ops.py [--out results/ops_cpu.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax import lax

sys.path.insert(0, str(Path(__file__).parent))
import record  # noqa: E402

from jaxrewrite import xla  # noqa: E402
from jaxrewrite.models import ops  # noqa: E402

# (batch, input side, channels in, channels out, where it occurs)
SHAPES = [
    (50, 4, 64, 64, "StyleGAN2 golden layer3, statistics batch"),
    (50, 8, 64, 64, "StyleGAN2 golden layer5, statistics batch"),
    (50, 4, 512, 512, "512-channel layer3, statistics batch"),
    (50, 8, 512, 512, "512-channel layer5, statistics batch"),
    (50, 16, 512, 512, "512-channel layer7, statistics batch"),
    (32, 32, 512, 256, "256 px model, sampling batch"),
    (32, 64, 256, 128, "256 px model, sampling batch"),
    (32, 128, 128, 64, "256 px model, sampling batch"),
]


def dilated(x, kernel, stride, padding):
    pad = kernel.shape[0] - 1 - padding
    return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), [(pad, pad)] * 2, lhs_dilation=(stride, stride),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _best_ms(fns, *args, rounds=30):
    """Best time of each fn, called in turns (this host's speed drifts within seconds)."""
    for fn in fns:
        jax.block_until_ready(fn(*args))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts.append(time.perf_counter() - t)
    return [min(ts) * 1e3 for ts in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ops_cpu.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n, side, cin, cout, where in SHAPES:
        x = jax.device_put(rng.standard_normal((n, side, side, cin), np.float32))
        k = jax.device_put(rng.standard_normal((3, 3, cin, cout), np.float32) / np.sqrt(9 * cin))
        row = {"batch": n, "side": side, "in": cin, "out": cout, "where": where,
               "gflop": 2 * n * side * side * 9 * cin * cout / 1e9}  # the products that are not zero
        fns = [xla.jit(lambda x, k, conv=conv: conv(x, k, 2, 0)) for conv in (ops.conv_transpose, dilated)]
        row["phases_ms"], row["dilated_ms"] = _best_ms(fns, x, k)
        row["max_abs_diff"] = float(np.abs(np.asarray(fns[0](x, k)) - np.asarray(fns[1](x, k))).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| batch x side x in -> out | GFLOP | phases ms | dilated ms | dilated / phases |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']}x{r['side']}x{r['in']} -> {r['out']} | {r['gflop']:.2f} | {r['phases_ms']:.2f} | "
              f"{r['dilated_ms']:.2f} | {r['dilated_ms'] / r['phases_ms']:.2f} |")
    record.save(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
