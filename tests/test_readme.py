"""The README's Python snippets run as written, each in a fresh interpreter as a user would run
them (towns64 ships in the package, so they need nothing else); the multi-host one as two
processes on this machine."""

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jaxrewrite as jr

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets():
    """Every ```python block, dedented (some sit inside list items)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(encoding="utf-8"), re.S | re.M)
    return [textwrap.dedent(code) for _, code in blocks]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(code, cwd, count=1):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "COORDINATOR": f"localhost:{_free_port()}",
           "NUM_PROCESSES": str(count)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env={**env, "PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    return results[0][0]


def test_the_readme_has_its_snippets():
    blocks = snippets()
    assert len(blocks) == 4
    assert sum("jr.edit(" in b and "jr.suggest(" not in b for b in blocks) == 1
    assert sum("jr.suggest(" in b for b in blocks) == 1 and sum("jax.distributed.initialize" in b for b in blocks) == 1


def test_python_api_example(tmp_path):
    (code,) = [b for b in snippets() if "jr.edit(" in b and "jr.suggest(" not in b]
    printed = _run(code, tmp_path)
    start, end = (float(x) for x in re.search(r"L1 ([\d.]+) -> ([\d.]+)", printed).groups())
    assert end < 0.7 * start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before_after.png", "edited.msgpack", "edited.pt",
                                                          "pick.png", "spire2tree_mine.json", "towns64.pt"]
    edited, exported = jr.load(tmp_path / "edited.msgpack"), jr.load(tmp_path / "edited.pt")
    original = jr.load("towns64")
    for name in original.params:
        same = np.array_equal(edited.params[name]["conv"]["kernel"], original.params[name]["conv"]["kernel"])
        assert same == (name != "layer8"), name
        np.testing.assert_array_equal(exported.params[name]["conv"]["kernel"], edited.params[name]["conv"]["kernel"])
    request = jr.read_edit(tmp_path / "spire2tree_mine.json")
    assert request.object.image == 246 and [k.image for k in request.key] == [293, 163, 16, 77]


def test_suggest_snippet(tmp_path):
    """The suggestion picks layer8 over layer5 for the shipped spire2tree, then edits there."""
    (code,) = [b for b in snippets() if "jr.suggest(" in b]
    printed = _run(code, tmp_path)
    rows = [line for line in printed.splitlines() if line.startswith("| 1 |")]
    assert rows and "layer8" in rows[0] and "edited layer8 at rank" in printed


def test_library_snippet(tmp_path):
    (code,) = [b for b in snippets() if "gen.upto(" in b and "jr.edit(" not in b]
    _run(code, tmp_path)


@pytest.mark.parametrize("processes", [2])
def test_multi_host_snippet(tmp_path, processes):
    (code,) = [b for b in snippets() if "jax.distributed.initialize" in b]
    _run(code, tmp_path, count=processes)
    weights = np.load(tmp_path / "weights.npy")
    assert weights.shape == (4, 3, 3, 32, 32) and np.isfinite(weights).all()
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npy"]
