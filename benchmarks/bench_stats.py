"""Key-statistics throughput (images/s and key vectors/s) of `jaxrewrite.rewrite.stats`.

    python benchmarks/bench_stats.py [--n 200] [--batch 50] [--out results/stats.json]

Models: the golden StyleGAN2 (32 px) at layer6 when ../shared is present, and random
StyleGAN2s built from the test factories (256 px, 512-channel 8..32 px layers) at a 32x32 layer.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import factories  # noqa: E402
import record  # noqa: E402

from jaxrewrite import modelfile  # noqa: E402
from jaxrewrite.rewrite import stats  # noqa: E402


def models(large=True):
    """(name, model, layer) of the benchmarked models; `large`: with the 256 px 512-channel one."""
    golden = ROOT.parent / "shared" / "golden" / "stylegan2" / "weights_rosinality.pt"
    if golden.exists():
        yield "stylegan2-golden-32px", modelfile.load(str(golden)), "layer6.sconv.mconv.dconv"
    if not large:
        return
    channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    sd = factories.stylegan2(np.random.default_rng(0), 256, 512, 8, channels)
    yield "stylegan2-256px-512ch", modelfile.convert(sd), "layer8.sconv.mconv.dconv"


def measure(name, model, layer, n, batch):
    """Throughput of `stats.second_moment` at `layer` (compiled first, then the best of up to
    3 runs, `record.best_seconds`); StyleGAN2 with the official noise emulation (noise rows of
    batches of 10) as the rewriter uses it."""
    gen = model.generator(**model.official_options(10))
    t = time.perf_counter()
    stats.second_moment(gen, model.params, layer, n, batch_size=batch)  # compiles (for this n's chunk size)
    first_run = time.perf_counter() - t
    seconds, c = record.best_seconds(lambda: stats.second_moment(gen, model.params, layer, n, batch_size=batch))
    bag = jax.eval_shape(lambda p, z: gen.upto(p, gen.inputs(z), layer), model.params,
                         np.zeros((1, gen.z_dim), np.float32))
    h, w = bag["fmap"].shape[1:3]
    return {"model": name, "layer": layer, "channels": int(c.shape[0]), "n": n, "batch": batch,
            "seconds": seconds, "images_per_s": n / seconds, "keys_per_s": n * h * w / seconds,
            "first_run_seconds": first_run}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "stats.json"))
    args = ap.parse_args()
    rows = []
    for name, model, layer in models():
        rows.append(measure(name, model, layer, args.n, args.batch))
        print(json.dumps(rows[-1]), flush=True)
    record.save(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
