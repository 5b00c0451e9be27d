"""The generators' upsampling convolutions at the benchmarked shapes, milliseconds per call,
each against the form it replaced:
  StyleGAN2 (3x3 transposed, stride 2): `ops.conv_transpose` (stride² phase correlations of
    the input) against one correlation of the zero-dilated input (`lhs_dilation`);
  ProGAN (nearest x2, then 3x3): `ops.upsample_conv` (the same phases, taps summed, at the
    low resolution) against the convolution of the upsampled map.
(An edit's loop runs its layer as patch GEMMs instead, `ops.patch_gemm`.)

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
TRANSPOSED = [
    (50, 4, 64, 64, "StyleGAN2 golden layer3, statistics batch"),
    (50, 8, 64, 64, "StyleGAN2 golden layer5, statistics batch"),
    (50, 4, 512, 512, "512-channel layer3, statistics batch"),
    (50, 8, 512, 512, "512-channel layer5, statistics batch"),
    (50, 16, 512, 512, "512-channel layer7, statistics batch"),
    (32, 32, 512, 256, "256 px model, sampling batch"),
    (32, 64, 256, 128, "256 px model, sampling batch"),
    (32, 128, 128, 64, "256 px model, sampling batch"),
]
UPSAMPLED = [
    (50, 4, 64, 64, "towns64 layer3, statistics batch"),
    (32, 8, 64, 64, "towns64 layer5, sampling batch"),
    (32, 16, 64, 32, "towns64 layer7, sampling batch"),
    (32, 32, 32, 16, "towns64 layer9, sampling batch"),
    (50, 8, 512, 512, "a 512-channel ProGAN block, statistics batch"),
]


def dilated(x, kernel):
    return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), [(2, 2)] * 2, lhs_dilation=(2, 2),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


PAIRS = {  # op: (new, replaced), both (x, kernel) -> y
    "conv_transpose": (lambda x, k: ops.conv_transpose(x, k, 2, 0), dilated),
    "upsample_conv": (lambda x, k: ops.upsample_conv(x, k, 1), lambda x, k: ops.conv(ops.nearest_upsample(x), k, 1)),
}


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
    ap.add_argument("--shapes", type=int, help="only the first N shapes of each op (a smoke run)")
    ap.add_argument("--rounds", type=int, default=30, help="timed calls of each form")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for op, shapes in (("conv_transpose", TRANSPOSED), ("upsample_conv", UPSAMPLED)):
        for n, side, cin, cout, where in shapes[:args.shapes]:
            x = jax.device_put(rng.standard_normal((n, side, side, cin), np.float32))
            k = jax.device_put(rng.standard_normal((3, 3, cin, cout), np.float32) / np.sqrt(9 * cin))
            row = {"op": op, "batch": n, "side": side, "in": cin, "out": cout, "where": where,
                   "gflop": 2 * n * side * side * 9 * cin * cout / 1e9 * (4 if op == "upsample_conv" else 1)}
            fns = [xla.jit(f) for f in PAIRS[op]]
            row["new_ms"], row["replaced_ms"] = _best_ms(fns, x, k, rounds=args.rounds)
            row["max_abs_diff"] = float(np.abs(np.asarray(fns[0](x, k)) - np.asarray(fns[1](x, k))).max())
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| op | batch x side x in -> out | GFLOP (replaced form's nonzero products) | new ms | replaced ms | replaced / new |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['op']} | {r['batch']}x{r['side']}x{r['in']} -> {r['out']} | {r['gflop']:.2f} | {r['new_ms']:.2f} | "
              f"{r['replaced_ms']:.2f} | {r['replaced_ms'] / r['new_ms']:.2f} |")
    record.save(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
