"""Key statistics and batched edits over several processes and devices, each layout against
one device in the same run: milliseconds per statistics batch, seconds per batch of edits,
and how far the results are from one device's.

    python benchmarks/bench_devices.py [--layouts 1x1,1x2,1x4,2x1,2x2] [--out results/devices_cpu.json]
    python benchmarks/bench_devices.py --layouts 1x2 --edits 64 --groups 0,2,4  # insert_many's group

A layout PxD is P local processes of D CPU devices each (`--xla_force_host_platform_device_count`),
joined by `jax.distributed.initialize` with gloo collectives: the multi-host path, on one
machine. Every process draws the same z's and feeds its own devices their slices; process 0
writes the results. On one machine the layouts share its cores, so this measures what the
communication and the split cost, not a cluster's speed-up.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import record

ROOT = Path(__file__).resolve().parents[1]


def _model(name):
    """(model, layer, image size) of a benchmarked model."""
    if name == "towns64":
        from jaxrewrite import modelfile, zoo

        return modelfile.load(zoo.resolve("towns64")), "layer5", 64
    from jaxrewrite import modelfile

    return modelfile.load(str(ROOT.parent / "shared" / "golden" / "stylegan2" / "weights_rosinality.pt")), "layer6", 32


def _edits(rw, count, size):
    """`count` copy-paste edits (quarter-size boxes, shifted by up to 7 pixels)."""
    from jaxrewrite.rewrite.editfile import encode_mask, parse_edit

    def url(top, left, side):
        m = np.zeros((size, size))
        m[top:top + side, left:left + side] = 1
        return encode_mask(m)

    side, mid = size // 4, size // 2
    edits = [parse_edit({"object": [1, url(2 + i % 8, 2, side)], "paste": [2, url(mid, 2 + i % 8, side)],
                         "key": [[2, url(mid, 2 + i % 8, side)]]}) for i in range(count)]
    return [rw.copy_paste_goal(e) for e in edits], [rw.key(e.key, 1) for e in edits]


def worker(address, processes, index, args, out):
    import jax

    if processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(address, num_processes=processes, process_id=index)
    from jaxrewrite.rewrite import batch, stats
    from jaxrewrite.rewrite.rewriter import Rewriter

    model, layer, size = _model(args.model)
    options = model.official_options(10)
    gen = model.generator(**options)
    rw = Rewriter(model, layer, stats_samples=args.images)
    goals, keys = _edits(rw, args.edits, size)
    lrs = [0.05] * args.edits
    first = layer + (".sconv.mconv.dconv" if model.arch == "stylegan2" else ".conv")

    def timed(fn, repeats):
        fn()  # compiles
        return record.best_seconds(fn, repeats)

    c_time, c = timed(lambda: stats.second_moment(gen, model.params, first, args.images, batch_size=50), 3)
    edits = [timed(lambda: batch.insert_many(rw, goals, keys, lrs, niter=args.niter, group=g or None), 2)
             for g in map(int, args.groups.split(","))]
    one, _ = timed(lambda: rw.insert(goals[0], keys[0], niter=args.niter, piter=10, lr=0.05), 3)
    if index == 0:
        w, losses = edits[0][1].weight, edits[0][1].losses
        np.savez(out, c=c, w=w, losses=losses, stats_ms=c_time * 1e3 / (args.images / 50),
                 edits_s=[t for t, _ in edits], one_edit_s=one, devices=jax.device_count())


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_layout(processes, devices, args, tmp):
    out = Path(tmp) / f"{processes}x{devices}.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    address = f"localhost:{_free_port()}"
    command = [sys.executable, __file__, "--model", args.model, "--images", str(args.images), "--edits",
               str(args.edits), "--groups", args.groups, "--niter", str(args.niter), "--worker", address, str(processes)]
    procs = [subprocess.Popen(command + [str(i), str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(processes)]
    errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        if p.returncode:
            raise SystemExit(f"layout {processes}x{devices} failed: {err.strip().splitlines()[-1]}")
    return dict(np.load(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", default="1x1,1x2,1x4,2x1,2x2", help="processes x devices per process, the first the reference")
    ap.add_argument("--images", type=int, default=1600, help="statistics images (batches of 50)")
    ap.add_argument("--model", default="towns64", choices=["towns64", "stylegan2-golden"])
    ap.add_argument("--edits", type=int, default=8)
    ap.add_argument("--groups", default="0", help="insert_many's group (edits per device per call) for each "
                                                  "timing of the edits, 0: all in one call")
    ap.add_argument("--niter", type=int, default=2001)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "devices_cpu.json"))
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        address, processes, index, out = args.worker
        return worker(address, int(processes), int(index), args, out)

    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for layout in args.layouts.split(","):
            processes, devices = map(int, layout.split("x"))
            r = run_layout(processes, devices, args, tmp)
            reference = reference or r
            rel = lambda k: float(np.abs(r[k] - reference[k]).max() / np.abs(reference[k]).max())
            rows.append({"layout": layout, "processes": processes, "devices": int(r["devices"]),
                         "stats_ms_per_batch": float(r["stats_ms"]), "one_edit_seconds": float(r["one_edit_s"]),
                         "edits_seconds": {g: float(t) for g, t in zip(args.groups.split(","), r["edits_s"])},
                         "c_rel_diff": rel("c"), "weights_rel_diff": rel("w"), "losses_rel_diff": rel("losses")})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.model}: statistics of {args.images} images in batches of 50; {args.edits} vmapped edits, "
          f"{args.niter} steps, in groups of {args.groups} per device per call (0: all at once)\n")
    print("| processes x devices | statistics, ms per batch | one edit, s | edits, s (by group) | C vs first "
          "| weights vs first | losses vs first |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        edits = " / ".join(f"{t:.2f}" for t in r["edits_seconds"].values())
        print(f"| {r['layout']} | {r['stats_ms_per_batch']:.2f} | {r['one_edit_seconds']:.3f} | {edits} "
              f"| {r['c_rel_diff']:.1e} | {r['weights_rel_diff']:.1e} | {r['losses_rel_diff']:.1e} |")
    record.save(args.out, {"model": args.model, "images": args.images, "edits": args.edits, "groups": args.groups,
                           "niter": args.niter, "rows": rows})


if __name__ == "__main__":
    main()
