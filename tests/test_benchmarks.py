"""Every benchmark script runs at HEAD, at tiny sizes (a refactor once broke `run.py`'s edit
stage unnoticed): each as a user runs it, in a subprocess, writing into a temporary folder;
every result file says when, where and by which command it was made."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
HAS_TORCH = importlib.util.find_spec("torch") is not None

# script -> list of (arguments, result files they write), with OUT the temporary folder
SMOKE = {
    "run.py": [(["--skip-large", "--niter", "5", "--torch-niter", "2", "--vmaps", "2", "--stats-batch", "5",
                 "--stats-images", "10", "--sampling-seconds", "0.05", "--out", "OUT/run.json"], ["run.json"])],
    "bench_edit.py": [(["--cases", "proggan", "--niter", "3", "--torch-niter", "2", "--vmap", "2",
                        "--repeats", "1", "--out", "OUT/edit.json"], ["edit.json"])],
    "bench_devices.py": [(["--layouts", "1x1,1x2", "--images", "100", "--edits", "2", "--niter", "3",
                           "--out", "OUT/devices.json"], ["devices.json"])],
    "bench_ops.py": [(["--shapes", "1", "--rounds", "1", "--out", "OUT/ops.json"], ["ops.json"])],
    "bench_stats.py": [(["--n", "10", "--batch", "5", "--out", "OUT/stats.json"], ["stats.json"])],
    "bench_ui.py": [(["--niter", "5", "--edits", "1", "--out", "OUT/ui.json"], ["ui.json"])],
    "profile_stats.py": [(["--skip-large", "--batch", "2", "--batches", "2", "--out", "OUT/profile_stats.json"],
                          ["profile_stats.json"])],
    "profile_step.py": [(["--case", "proggan", "--niter", "3", "--out", "OUT/profile_step.json"],
                         ["profile_step.json"])],
    "towns.py": [(["quality", "--samples", "4", "--results", "OUT"], ["towns64_quality_4_seed2.json"]),
                 (["edits", "--search", "12", "--candidates", "1", "--validate", "4", "--layers", "layer8", "--niter", "3",
                   "--results", "OUT", "--assets", "OUT/edits"], ["towns64_edits.json"]),
                 (["eval", "--n", "4", "--niter", "3", "--finetune-niter", "2", "--results", "OUT"],
                  ["towns64_eval.json"])],
    "faces.py": [(["edits", "--assets", "OUT/assets", "--results", "OUT"], []),
                 (["measure", "--n", "4", "--edits", "glasses", "--niter", "3", "--finetune-niter", "2", "--assets", "OUT/assets",
                   "--results", "OUT"], ["faces_glasses.json"])],
    "suggest.py": [(["validate", "--rules", "spire2tree", "erase_windows", "--candidates", "1", "--search", "12",
                     "--n", "4", "--samples", "4", "--layers", "layer8", "--niter", "3", "--results", "OUT"],
                    ["suggest_towns64.json"]),
                   (["speed", "--samples", "4", "--niter", "3", "--stats-samples", "20", "--layers", "layer8",
                     "--results", "OUT"],
                    ["suggest_speed.json"]),
                   (["faces", "--samples", "4", "--niter", "3", "--layers", "layer3", "--results", "OUT"],
                    ["suggest_faces.json"])],
    "check_torch_official.py": [([], [])],
}
NEEDS_TORCH = {"check_torch_official.py"}


def test_every_script_has_a_smoke_run():
    scripts = {p.name for p in BENCH.glob("*.py")} - {"record.py", "torch_official.py", "torch_stats.py"}  # modules
    assert scripts == set(SMOKE)


def test_the_gpu_lease_script_parses():
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu_lease.sh")]).returncode == 0


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_tiny_sizes(script, tmp_path, request):
    if script in NEEDS_TORCH and not HAS_TORCH:
        pytest.skip("needs torch (pip install torch==2.13.0): it checks the torch port itself")
    if script in ("faces.py", "suggest.py"):
        from jaxrewrite import zoo

        zoo.fetch("dcgan-faces", str(request.getfixturevalue("faces_wheel")))
    before = _repository_outputs()
    for args, outputs in SMOKE[script]:
        argv = [a.replace("OUT", str(tmp_path)) for a in args]
        done = subprocess.run([sys.executable, str(BENCH / script), *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{script} {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        for name in outputs:
            data = json.loads((tmp_path / name).read_text())
            assert data["date"] and data["machine"] and data["command"].startswith("python "), name
    assert _repository_outputs() == before  # nothing written into the repository's own results or assets


def _repository_outputs():
    folders = [ROOT / "benchmarks" / "results", ROOT / "jaxrewrite" / "assets"]
    return {p: p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*")}
