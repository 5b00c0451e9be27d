"""The whole performance table in one command: sampling and key statistics against torch
ports of the same generators, seconds per edit against the PyTorch port of the official
loop and against the GEMM floor, vmapped edits and the sweep helper. Prints markdown tables
and writes `results/run.json` (machine, date, versions, command).

    python benchmarks/run.py                  # everything (about 10 min on 2 CPU cores with torch)
    python benchmarks/run.py --skip-large     # without the 512-channel layer (about 2 min)
    python benchmarks/run.py --cpu-devices 2  # one jax device per core of a 2-core CPU
    python benchmarks/run.py --skip-large --niter 5 --torch-niter 2 --vmaps 2 --stats-batch 5 \
        --stats-images 10 --sampling-seconds 0.1 --out /tmp/run.json   # a smoke run

torch (optional, `pip install torch==2.13.0`) adds the PyTorch column; the torch loop's time
per iteration is constant, so `--torch-niter` iterations are timed and scaled to 2001. The
same script runs unchanged on a GPU: JAX picks the device, and torch runs on the GPU too
when it sees one (`--torch-device`), so the ratio compares like with like.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_edit  # noqa: E402
import bench_stats  # noqa: E402
import record  # noqa: E402
import torch_official  # noqa: E402
import torch_stats  # noqa: E402

from jaxrewrite import modelfile, xla, zoo  # noqa: E402
from jaxrewrite.rewrite import artifacts  # noqa: E402
from jaxrewrite.rewrite.batch import sweep  # noqa: E402
from jaxrewrite.rewrite.editfile import read_edit  # noqa: E402
from jaxrewrite.rewrite.rewriter import Rewriter  # noqa: E402
from jaxrewrite.tree import get  # noqa: E402
from jaxrewrite.zdataset import z_for  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden"


def sampling(name, model, batch=32, seconds=5.0):
    """Images per second of the jitted generator (compiled first), over batches for `seconds`."""
    gen = model.generator()
    run = xla.jit(lambda p, z: gen(p, z))
    params, z = jax.device_put((model.params, z_for(range(batch), gen.z_dim, 0)))  # on the device once
    jax.block_until_ready(run(params, z))
    t, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - t < seconds:
        jax.block_until_ready(run(params, z))
        done += batch
    return {"model": name, "batch": batch, "images_per_s": done / (time.perf_counter() - t)}


SWEEP = dict(layers=["layer4", "layer5"], ranks=[1, 2], lrs=[0.05, 0.01])


def time_sweep(niter, cache, torch_device=None):
    """The sweep helper on the golden ProGAN edit (2 layers x 2 ranks x 2 learning rates) and,
    with `torch_device`, the same 8 edits as the official loop runs them: one after another."""
    from jaxrewrite import modelfile

    model = modelfile.load(str(GOLDEN / "proggan" / "weights.pt"))
    edit = read_edit(str(GOLDEN / "proggan" / "edit_request.json"))
    sweep(model, edit, **SWEEP, niter=niter, cache_dir=cache)  # statistics cached
    t = time.perf_counter()
    rows = sweep(model, edit, **SWEEP, niter=niter, cache_dir=cache)  # compiles its programs again
    seconds = time.perf_counter() - t
    result = {"edits": len(rows), "seconds": seconds, "seconds_per_edit": seconds / len(rows)}
    if torch_device:
        theirs = torch_sweep(model, edit, niter, cache, torch_device)
        ours = np.array([r["loss_end"] for r in rows])
        result.update(torch_seconds=theirs["seconds"], speedup=theirs["seconds"] / seconds,
                      torch_loss_end_max_rel_diff=float(np.max(np.abs(ours - theirs["loss_end"]) / theirs["loss_end"])))
    # last: jax keeps writing programs to this directory for the rest of the process
    with tempfile.TemporaryDirectory() as programs:  # as the command line runs: compiled programs kept
        xla.cache_compiled(programs)
        sweep(model, edit, **SWEEP, niter=niter, cache_dir=cache)
        t = time.perf_counter()
        sweep(model, edit, **SWEEP, niter=niter, cache_dir=cache)
        result["seconds_programs_cached"] = time.perf_counter() - t
    if "torch_seconds" in result:
        result["speedup_programs_cached"] = result["torch_seconds"] / result["seconds_programs_cached"]
    return result


def torch_sweep(model, edit, niter, cache, device):
    """Seconds of the official loop (`torch_official.insert`) over the sweep's edits, and their
    final losses. Goals and keys come from jaxrewrite, untimed (the sweep's own time includes
    them); ProGAN's target is the bare convolution."""
    seconds, losses = 0.0, []
    for layer in SWEEP["layers"]:
        rw = Rewriter(model, layer, cache_dir=cache)
        goal = rw.copy_paste_goal(edit)
        goal_in, goal_out = goal.goal_in, goal.goal_out
        weight = artifacts.torch_layout(model, rw.weight_path, get(model.params, rw.weight_path))
        case = dict(arch="proggan", weight=weight, goal_in=artifacts.nchw(goal_in["fmap"]),
                    goal_out=artifacts.nchw(goal_out["fmap"]))
        for rank in SWEEP["ranks"]:
            args = torch_official.to_torch(dict(case, key=rw.key(edit.key, rank)), device)
            for lr in SWEEP["lrs"]:
                t = time.perf_counter()
                losses.append(torch_official.insert(*args, niter=niter, lr=lr)[1][-1])  # .item() every step syncs
                seconds += time.perf_counter() - t
    return {"seconds": seconds, "loss_end": np.array(losses)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--niter", type=int, default=2001)
    ap.add_argument("--torch-niter", type=int, default=100)
    ap.add_argument("--vmaps", default="1,8,64",
                    help="vmapped edit counts (the 512-channel layer only on an accelerator: 64 of its edits "
                         "take ~25 min on 2 CPU cores)")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 512-channel StyleGAN2 layer and the 256 px 512-channel model")
    ap.add_argument("--cache", default=zoo.cache_dir())
    ap.add_argument("--stages", default="edits,stats,sampling,sweep", help="which of the four to run")
    ap.add_argument("--stats-batch", type=int, default=50, help="images per statistics batch (both loops)")
    ap.add_argument("--stats-images", type=int, help="images per statistics run (default: 200-1000 by model)")
    ap.add_argument("--sampling-seconds", type=float, default=5.0, help="how long each model's sampling is timed")
    ap.add_argument("--torch-device", help="cpu or cuda (default: cuda when torch sees a GPU)")
    ap.add_argument("--cpu-devices", type=int, help="jax devices on a CPU (jax's default: 1). One per core splits "
                                                    "the vmapped edits and the sweep over the cores")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "run.json"))
    args = ap.parse_args(argv)
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    torch_device = args.torch_device or record.torch_device()
    vmaps = [int(n) for n in args.vmaps.split(",") if n]
    stages = set(args.stages.split(","))

    rate, bandwidth = bench_edit.matmul_rate(), bench_edit.copy_rate()
    print(f"device {jax.devices()[0]} (of {jax.device_count()}); matmul floor {rate / 1e9:.1f} GFLOP/s (float32, precision "
          f"{jax.config.jax_default_matmul_precision or 'default'}); "
          f"copy {bandwidth / 1e9:.1f} GB/s read + written (256 MiB)", flush=True)
    result = {"devices": jax.device_count(), "matmul_flops_per_s": rate, "copy_bytes_per_s": bandwidth,
              "matmul_precision": str(jax.config.jax_default_matmul_precision),
              "edits": [], "stats": [], "sampling": [], "sweep": None}
    save = lambda: record.save(args.out, result, torch=bench_edit.torch_version(), torch_device=torch_device)

    # Most telling first, and saved after each stage, so a run cut short still leaves a table.
    cases = ["stylegan2", "proggan", "towns64"] + ([] if args.skip_large else ["stylegan2_512"])
    on_cpu = jax.default_backend() == "cpu"
    for name in cases if "edits" in stages else []:
        large = name == "stylegan2_512" and on_cpu  # 64 vmapped dense edits of it: ~25 min on 2 cores
        result["edits"].append(bench_edit.measure_case(name, rate, args.niter, args.torch_niter, repeats=2,
                                                       vmaps=vmaps, torch_device=torch_device,
                                                       vmap_methods=("lambda",) if large else ("lambda", "projected")))
        print(json.dumps(result["edits"][-1]), flush=True)
        save()
    scale = 1 if on_cpu else 10  # an accelerator needs more images to time
    models = list(bench_stats.models(large=not args.skip_large))
    towns = modelfile.load(zoo.resolve("towns64"))
    if "stats" in stages:
        runs = [(name, m, layer, 200 * scale) for name, m, layer in models]
        runs.append(("towns64-progan-64px", towns, "layer5.conv", 1000 * scale))
        runs = [(name, m, layer, args.stats_images or max(n, 10 * args.stats_batch)) for name, m, layer, n in runs]
        for name, m, layer, n in runs:
            result["stats"].append(bench_stats.measure(name, m, layer, n, args.stats_batch))
            if bench_edit.torch_version():
                theirs = torch_stats.measure(name, m, layer, n, args.stats_batch, torch_device)
                result["stats"][-1].update(torch_c_rel_diff=torch_stats.check(m, layer, n=50),
                                           torch_images_per_s=theirs["images_per_s"],
                                           speedup=result["stats"][-1]["images_per_s"] / theirs["images_per_s"])
            print(json.dumps(result["stats"][-1]), flush=True)
            save()
    if "sampling" in stages:
        for name, m in [(name, m) for name, m, _ in models] + [("towns64-progan-64px", towns)]:
            result["sampling"].append(sampling(name, m, seconds=args.sampling_seconds))
            if bench_edit.torch_version():
                theirs = torch_stats.sampling(m, 32, device=torch_device)
                result["sampling"][-1].update(torch_image_rel_diff=torch_stats.image_check(m), torch_images_per_s=theirs,
                                              speedup=result["sampling"][-1]["images_per_s"] / theirs)
            print(json.dumps(result["sampling"][-1]), flush=True)
            save()
    if "sweep" in stages and (GOLDEN / "proggan").exists():
        result["sweep"] = time_sweep(args.niter, args.cache, torch_device if bench_edit.torch_version() else None)
        save()
    sample_rows, stats_rows, edit_rows, sweep_row = (result[k] for k in ("sampling", "stats", "edits", "sweep"))
    print("\n| model | images/s (sampling, batch 32) | PyTorch images/s | speed-up |\n|---|---|---|---|")
    for r in sample_rows:
        print(f"| {r['model']} | {r['images_per_s']:.1f} | {r.get('torch_images_per_s', float('nan')):.1f} | "
              f"{r.get('speedup', float('nan')):.1f}x |")
    print("\n| model, layer | images/s | key vectors/s | PyTorch images/s | speed-up |\n|---|---|---|---|---|")
    for r in stats_rows:
        print(f"| {r['model']} `{r['layer']}` | {r['images_per_s']:.1f} | {r['keys_per_s']:,.0f} | "
              f"{r.get('torch_images_per_s', float('nan')):.1f} | {r.get('speedup', float('nan')):.1f}x |")
    print("\n" + bench_edit.table(edit_rows, vmaps))
    if sweep_row:
        print(f"\nsweep (golden ProGAN, layers 4-5 x ranks 1-2 x 2 lr): {sweep_row['edits']} edits in "
              f"{sweep_row['seconds']:.1f}s, {sweep_row['seconds_per_edit']:.2f} s/edit; PyTorch loop "
              f"{sweep_row.get('torch_seconds', float('nan')):.1f}s, speed-up {sweep_row.get('speedup', float('nan')):.1f}x; "
              f"compiled programs kept: {sweep_row['seconds_programs_cached']:.1f}s, "
              f"{sweep_row.get('speedup_programs_cached', float('nan')):.1f}x")


if __name__ == "__main__":
    main()
