"""Every benchmark result file says when, where and by which command it was made; the one way
the benchmarks time a call; where the torch baselines run."""

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path


def save(path, data, **extra):
    """Write `data` as JSON with the date, machine, versions and the command line."""
    import jax

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    meta = {"date": date.today().isoformat(), "machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(),
            "device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__, **extra,
            "command": "python " + " ".join(sys.argv)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, **data}, indent=1) + "\n")


def best_seconds(fn, repeats=3, budget=2.0):
    """(fastest of up to `repeats` timed calls of `fn`, the last call's result), each waited
    for (`jax.block_until_ready`); calls after the first only while the total is under
    `budget` seconds. The host's speed drifts within seconds: one short call (a small
    model's statistics take ~0.05 s) can land in a slow spell, a long one averages it out."""
    import jax

    best, total = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        result = jax.block_until_ready(fn())
        seconds = time.perf_counter() - t
        best, total = min(best, seconds), total + seconds
        if total >= budget:
            break
    return best, result


def torch_device():
    """Where the torch baselines run unless told: 'cuda' when torch sees a GPU, else 'cpu'."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync(device):
    """A call that waits for torch's queued work on `device` (nothing to wait for on a CPU)."""
    import torch

    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
