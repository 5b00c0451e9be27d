"""Checks that benchmarks/torch_official.py reproduces the official golden insert runs.

Run with a Python that has torch: `python benchmarks/check_torch_official.py [--threads 2]`.
Golden runs used niter=60, piter=10, lr=0.05 on 2 CPU threads.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_official as tof  # noqa: E402

RUNS = [(arch, run) for arch in ("stylegan2", "proggan") for run in ("edit_zca", "erase_zca")]


def check(arch, run, device):
    """Max errors of the port against one golden run, plus the linear_insert variant's final loss."""
    case = tof.golden_case(arch, run)
    gold = np.load(tof.GOLDEN / arch / f"{run}.npz")
    args = tof.to_torch(case, device)
    weight, loss = tof.insert(*args, niter=60, piter=10, lr=0.05)
    weight = weight.cpu().numpy()
    w0, w1 = case["weight"], gold["weight_after"]
    key = case["key"].astype(np.float64)
    delta = (weight - w0).astype(np.float64)
    off_span = delta - np.einsum("...oiyx,di,dj->...ojyx", delta, key, key)
    _, lin_loss = tof.linear_insert(*args, niter=60, lr=0.05)
    return dict(
        loss=np.max(np.abs(loss - gold["loss"]) / np.abs(gold["loss"])),
        weight=np.max(np.abs(weight - w1)) / np.max(np.abs(w1)),
        delta=np.linalg.norm(weight - w1) / np.linalg.norm(w1 - w0),
        off_span=np.linalg.norm(off_span) / np.linalg.norm(delta),
        final=(gold["loss"][-1], loss[-1], lin_loss[-1]))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, device {a.device}")
    print(f"{'run':<20} {'loss rel':>9} {'W rel':>9} {'dW rel':>9} {'off-span':>9}   final loss golden/port/linear")
    for arch, run in RUNS:
        r = check(arch, run, a.device)
        print(f"{arch + '/' + run:<20} {r['loss']:9.2e} {r['weight']:9.2e} {r['delta']:9.2e} {r['off_span']:9.2e}"
              "   " + " / ".join(f"{v:.5f}" for v in r["final"]))
    print("loss rel: max_it |loss - golden| / |golden|; W rel: max |W - W_golden| / max |W_golden|;\n"
          "dW rel: ||W - W_golden|| / ||W_golden - W0||; off-span: part of W - W0 outside span(key)")


if __name__ == "__main__":
    main()
