"""Seconds per edit: jaxrewrite's update methods (low-rank Λ, dense Λ, projected Adam) vs the
PyTorch eager port of the official loop (`torch_official.py`), side by side on the same
problems, same machine, with each step's FLOPs and floor and the compile time apart.

    python benchmarks/bench_edit.py [--niter 2001] [--torch-niter 200] [--vmap 8] [--out results/edit.json]
    python benchmarks/bench_edit.py --cases proggan --niter 5 --torch-niter 2 --vmap 2 --repeats 1 --out /tmp/e.json

torch is optional: without it only the JAX column is measured. The torch loop's time per
iteration is constant, so `--torch-niter` iterations are timed and scaled to `--niter`.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import record  # noqa: E402
import torch_official  # noqa: E402

from jaxrewrite import sharding, xla  # noqa: E402
from jaxrewrite.models import ops, stylegan2  # noqa: E402
from jaxrewrite.rewrite import update  # noqa: E402
from jaxrewrite.tree import replace  # noqa: E402


def jax_problem(case):
    """(target, w0 HWIO, key, goal_in bag, goal_out) built from the library's own layers."""
    nhwc = lambda x: jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))
    w = np.asarray(case["weight"])
    if case["arch"] == "proggan":
        return _fixed_input(lambda w, bag: ops.conv(bag["fmap"], w, 1)), jnp.asarray(w.transpose(2, 3, 1, 0)), \
            jnp.asarray(case["key"]), {"fmap": nhwc(case["goal_in"])}, nhwc(case["goal_out"])
    layers = [layer for layer in stylegan2.styled_conv("layer6", "sconv", 4, False, "official", 1)
              if layer.name.endswith(("dconv", "noise", "activate"))]
    params = {"layer6": {"sconv": {"mconv": {"dconv": {"kernel": None}},
                                   "noise": {"strength": jnp.asarray(case["noise_strength"])},
                                   "activate": {"bias": jnp.asarray(case["bias"])}}}}

    def target(w, bag):
        p = replace(params, "layer6.sconv.mconv.dconv.kernel", w)
        for layer in layers:
            bag = layer.apply(p, bag)
        return bag["fmap"]

    goal_in = {"fmap": nhwc(case["goal_in"]), "style": jnp.asarray(case["style"]), "noise_row": jnp.zeros(1, jnp.int32)}
    return _fixed_input(target), jnp.asarray(w[0].transpose(2, 3, 1, 0)), jnp.asarray(case["key"]), goal_in, \
        nhwc(case["goal_out"])


def _fixed_input(target):
    """As `Rewriter.target`: the goal input is fixed, so convolutions trace as patch GEMMs."""
    def run(w, bag):
        with ops.patch_gemm():
            return target(w, bag)
    return run


METHODS = ("lambda", "lambda-dense", "projected")  # low-rank Λ, dense Λ, projected Adam (the official loop)


def _program(case, method, niter, piter, lr):
    target, w0, d, gi, go = jax_problem(case)
    run = update.get(method).run
    return (lambda w0, d, gi, go, lr: run(target, w0, d, gi, go, lr, None, niter=niter, piter=piter, record=(),
                                          report=None)), (w0, d, gi, go, lr)


def time_jax(case, niter, method="projected", piter=10, lr=0.05, repeats=3):
    """Seconds per edit by a registered method, and its compile time (the first call less a run)."""
    fn, args = _program(case, method, niter, piter, lr)
    run = xla.jit(fn)
    t = time.perf_counter()
    jax.block_until_ready(run(*args))  # compiles
    first = time.perf_counter() - t
    seconds = _best(lambda: run(*args), repeats)
    return {"seconds": seconds, "compile_s": max(first - seconds, 0.0)}


def time_jax_vmap(case, niter, n, method="projected", piter=10, lr=0.05):
    """n edits (same layer, different learning rates) in one vmapped program vs one edit."""
    fn, (w0, d, gi, go, _) = _program(case, method, niter, piter, lr)
    stack = lambda x: jnp.broadcast_to(x, (n,) + x.shape)
    lrs = lr * (1 + 0.01 * jnp.arange(n))
    run = xla.jit(jax.vmap(lambda gi, go, d, lr: fn(w0, d, gi, go, lr)))
    args = (jax.tree_util.tree_map(stack, gi), stack(go), stack(d), lrs)
    if n % len(sharding.devices()) == 0:  # as `batch.insert_many`: the edits split over the devices
        args = jax.tree_util.tree_map(lambda x: sharding.split(x)[0], args)
    jax.block_until_ready(run(*args))
    return {"seconds": _best(lambda: run(*args), 2)}


def _dims(case):
    """(P output pixels, K = k*k*C_in, O = C_out) of a case's edit GEMMs."""
    out_c, in_c, kh, kw = np.shape(case["weight"])[-4:]
    return int(np.prod(np.shape(case["goal_out"])[-2:])), kh * kw * in_c, out_c


def gemm_flops(case):
    """FLOPs of one iteration's two GEMMs: the target's forward (P x K x O) and the weight
    gradient (K x P x O) (everything else in the step is elementwise and small)."""
    pixels, k, o = _dims(case)
    return 2 * 2 * pixels * k * o


def step_bytes(case):
    """Bytes one iteration must move at least: Adam reads the weight and both moments and
    writes them back, the gradient is written and read (8 weight-sized passes); the GEMMs
    read the patches twice (forward, gradient) and write/read the output and its gradient."""
    pixels, k, o = _dims(case)
    return 4 * (8 * k * o + 2 * pixels * k + 2 * pixels * o)


def xla_step_cost(case, method="projected", lr=0.05):
    """XLA's own count (compiled cost analysis) of one iteration of `method`, gradient + Adam:
    FLOPs and bytes accessed summed over its fused operations (cache-resident traffic
    included). The fixed terms of the low-rank form (conv(x, W0), the demodulation's
    coefficients) are counted here though the loop computes them once."""
    target, w0, d, gi, go = jax_problem(case)
    if method == "projected":
        loss_fn, x0 = update.l1(target, gi, go), w0
    else:
        kernel = (lambda lam: ops.LowRank(w0, lam, d)) if method == "lambda" else \
            (lambda lam: ops.LowRank(w0, lam, d).dense())
        loss_fn = update.l1(lambda lam, x: target(kernel(lam), x), gi, go)
        x0 = jnp.zeros(w0.shape[:-2] + (d.shape[0], w0.shape[-1]), w0.dtype)

    def step(w, m, v):
        _, g = jax.value_and_grad(loss_fn)(w)
        return update.adam(w, g, m, v, 1.0, lr)

    cost = xla.jit(step).lower(x0, x0, x0).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops": float(cost.get("flops", np.nan)), "bytes": float(cost.get("bytes accessed", np.nan))}


def lowrank_flops(case):
    """FLOPs of one low-rank Λ iteration's GEMMs: the Λ convolution (P x k*k*r x O) and its
    gradient; the r/C_in share of the dense step's `gemm_flops`."""
    pixels, k, o = _dims(case)
    r = np.shape(case["key"])[0]
    return 2 * 2 * pixels * (k // (np.shape(case["weight"])[-3])) * r * o


def copy_rate(nbytes=256 << 20, passes=20, repeats=3):
    """Bytes/s read + written by elementwise passes over a float32 array of `nbytes` (run as
    one compiled loop, so small arrays are timed in cache and not by dispatch)."""
    a = jnp.ones((max(nbytes // 4, 1),), jnp.float32)
    f = xla.jit(lambda a: jax.lax.fori_loop(0, passes, lambda i, x: x * 0.5 + 1.0, a))
    jax.block_until_ready(f(a))
    return 2 * a.nbytes * passes / _best(lambda: f(a), repeats)


def matmul_rate(n=None, repeats=5):
    """FLOP/s of XLA's float32 matmul (default precision, as the edit runs) on n x n matrices:
    the machine's GEMM floor. n = 2048 on a CPU, 8192 on an accelerator (big enough to fill it)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.ones((n, n), jnp.float32)
    f = xla.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    return 2 * n ** 3 / _best(lambda: f(a), repeats)


def _best(fn, repeats):
    """The fastest of `repeats` calls, however long they take (a 512-channel edit: ~26 s)."""
    return record.best_seconds(fn, repeats, budget=float("inf"))[0]


def torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def measure_case(name, rate, niter=2001, torch_niter=200, threads=None, repeats=3, vmaps=(), torch_device="cpu",
                 methods=METHODS, vmap_methods=("lambda", "projected")):
    """One row: seconds per edit (and compile seconds) for each update method, each step's
    FLOPs (its GEMMs', and XLA's count) with its GEMM floor at `rate` FLOP/s, the memory floor
    of the dense step, the torch loop (when torch is installed) on `torch_device`, and n
    vmapped edits for each n in `vmaps`."""
    case = torch_official.CASES[name]()
    row = {"case": name, "niter": niter, "methods": {}}
    if torch_version():
        t = torch_official.time_torch_insert(case, torch_niter, device=torch_device, threads=threads or os.cpu_count())
        row["torch_device"] = torch_device
        row["torch_s"] = t["seconds_per_iter"] * niter
    for method in methods:
        m = time_jax(case, niter, method, repeats=repeats)
        m["gemm_flops_per_iter"] = int(lowrank_flops(case) if method == "lambda" else gemm_flops(case))
        m["floor_s"] = m["gemm_flops_per_iter"] * niter / rate
        m["fraction_of_floor"] = m["floor_s"] / m["seconds"]
        cost = xla_step_cost(case, method)
        m["xla_flops_per_iter"], m["xla_bytes_per_iter"] = cost["flops"], cost["bytes"]
        if "torch_s" in row:
            m["speedup"] = row["torch_s"] / m["seconds"]
        for n in vmaps if method in vmap_methods else ():
            m[f"vmap{n}_s"] = time_jax_vmap(case, niter, n, method)["seconds"]
            m[f"vmap{n}_cost_vs_one"] = m[f"vmap{n}_s"] / m["seconds"]
        row["methods"][method] = m
        print(f"  {name} {method}: {m['seconds']:.3f} s/edit (compile {m['compile_s']:.2f} s)", flush=True)
    row["min_bytes_per_iter"] = int(step_bytes(case))  # the dense step's
    _, k, o = _dims(case)
    row["copy_bytes_per_s"] = copy_rate(4 * k * o * 4)
    row["memory_floor_s"] = row["min_bytes_per_iter"] * niter / row["copy_bytes_per_s"]
    return row


def table(rows, vmaps=()):
    """The markdown table of `measure_case` rows: one line per case and method."""
    out = ["| case | method | s/edit | compile s | GEMM FLOPs/step | GEMM floor s | of floor | XLA MB/step | "
           "PyTorch s/edit | speed-up | " + " | ".join(f"{n} vmapped / 1" for n in vmaps) + " |",
           "|---" * (10 + len(vmaps)) + "|"]
    nan = float("nan")
    for r in rows:
        for method, m in r["methods"].items():
            cells = [f"{m[f'vmap{n}_cost_vs_one']:.2f}" if f"vmap{n}_cost_vs_one" in m else "–" for n in vmaps]
            out.append(f"| {r['case']} | {method} | {m['seconds']:.3f} | {m['compile_s']:.2f} | "
                       f"{m['gemm_flops_per_iter'] / 1e6:.2f} M | {m['floor_s']:.3f} | {m['fraction_of_floor']:.0%} | "
                       f"{m['xla_bytes_per_iter'] / 1e6:.2f} | {r.get('torch_s', nan):.2f} | {m.get('speedup', nan):.1f}x | "
                       + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--niter", type=int, default=2001)
    ap.add_argument("--torch-niter", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vmap", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="stylegan2,proggan,towns64,stylegan2_512")
    ap.add_argument("--methods", default=",".join(METHODS), help="update methods to time")
    ap.add_argument("--torch-device", default=record.torch_device(), help="cpu or cuda (default: cuda when torch sees a GPU)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "edit.json"))
    args = ap.parse_args(argv)
    rows, rate, bandwidth = [], matmul_rate(), copy_rate()
    print(f"matmul floor: {rate / 1e9:.1f} GFLOP/s (float32, precision {jax.config.jax_default_matmul_precision or 'default'}); "
          f"copy {bandwidth / 1e9:.1f} GB/s", flush=True)
    vmaps = [args.vmap] if args.vmap > 1 else []
    for name in args.cases.split(","):
        rows.append(measure_case(name, rate, args.niter, args.torch_niter, args.threads, args.repeats, vmaps,
                                 args.torch_device, args.methods.split(",")))
        print(json.dumps(rows[-1]), flush=True)
    record.save(args.out, {"matmul_flops_per_s": rate, "copy_bytes_per_s": bandwidth, "rows": rows},
                torch=torch_version())
    print(table(rows, vmaps))


if __name__ == "__main__":
    main()
