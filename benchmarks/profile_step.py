"""Where an edit iteration's time goes: the official loop's step timed whole and with stages
left out, each as its own compiled `lax.scan` (no profiler needed, so it runs the same on a
CPU and on a lent GPU).

    python benchmarks/profile_step.py [--case stylegan2_512] [--niter 200]

Stages: the target's forward + L1 loss, its gradient, Adam, the projection onto the key
rows (every step here, selected by `jnp.where`; `update.projected_adam` computes it only on
the steps that apply it). Differences between rows attribute the time.
"""

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import bench_edit  # noqa: E402
import record  # noqa: E402
import torch_official  # noqa: E402

from jaxrewrite import xla  # noqa: E402
from jaxrewrite.rewrite import update  # noqa: E402


def variants(target, w0, d, gi, go, lr=0.05):
    loss_fn = update.l1(target, gi, go)
    ortho = w0 - update.project(w0, d)
    g0 = jax.grad(loss_fn)(w0)

    def forward(s, it):
        w, m, v = s
        return (w * 1.0000001, m, v), loss_fn(w)

    def gradient(s, it):
        w, m, v = s
        loss, g = jax.value_and_grad(loss_fn)(w)
        return (w - 1e-9 * g, m, v), loss

    def adam_only(s, it):
        w, m, v = s
        w, m, v = update.adam(w, g0, m, v, (it + 1).astype(w.dtype), lr)
        return (w, m, v), jnp.zeros(())

    def step_no_projection(s, it):
        w, m, v = s
        loss, g = jax.value_and_grad(loss_fn)(w)
        return update.adam(w, g, m, v, (it + 1).astype(w.dtype), lr), loss

    def full_step(s, it):
        (w, m, v), loss = step_no_projection(s, it)
        return (jnp.where(it % 10 == 0, ortho + update.project(w, d), w), m, v), loss

    return {"forward + loss": forward, "forward + gradient": gradient, "Adam alone": adam_only,
            "gradient + Adam": step_no_projection, "full step (projection selected every 10)": full_step}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="stylegan2_512", choices=sorted(torch_official.CASES))
    ap.add_argument("--niter", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()
    target, w0, d, gi, go = bench_edit.jax_problem(torch_official.CASES[args.case]())
    z = jnp.zeros_like(w0)
    rows = {}
    for name, body in variants(target, w0, d, gi, go).items():
        run = xla.jit(lambda w0, body=body: jax.lax.scan(body, (w0, z, z), jnp.arange(args.niter)))
        jax.block_until_ready(run(w0))
        best = bench_edit._best(lambda: run(w0), 3)
        rows[name] = 1e6 * best / args.niter
        print(f"{name:45s} {rows[name]:9.1f} us/iteration", flush=True)
    print(f"device {jax.devices()[0].device_kind}, case {args.case}, {args.niter} iterations")
    if args.out:
        record.save(args.out, {"case": args.case, "niter": args.niter, "us_per_iteration": rows})


if __name__ == "__main__":
    main()
