import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

# The parity tolerances are float32's. On a GPU, XLA's default precision runs float32 matmuls
# and convolutions in TF32 (10-bit mantissa), measured at 2e-4..9e-4 of scale on the golden
# statistics and goals; full precision makes the same tests hold there (CPUs are unaffected).
jax.config.update("jax_default_matmul_precision", "highest")

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


def rel_err(actual, expected):
    """Max abs error relative to the reference's largest magnitude (elementwise relative error
    is meaningless for values near zero)."""
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)) / np.max(np.abs(expected)))


def nchw(x):
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def run(*argv):
    """The command line, in process: its exit status."""
    from jaxrewrite.cli import main

    return main([str(a) for a in argv])


@pytest.fixture
def small_model(tmp_path):
    """A model file of a small random ProGAN (16 px, official layout)."""
    from jaxrewrite import modelfile
    import factories

    path = tmp_path / "p.msgpack"
    modelfile.save(modelfile.convert(factories.proggan(np.random.default_rng(0), (16, 32, 16, 16))), path)
    return path


@pytest.fixture(scope="session")
def golden():
    """../shared/golden, the official implementation's outputs; absent only in a user's clone."""
    if not GOLDEN.is_dir():
        pytest.skip("../shared/golden not available (a user's clone)")
    return GOLDEN


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_tmp(tmp_path_factory):
    """Nothing the tests run writes into the user's cache (statistics, compiled programs)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _cpu_single_thread_env(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))


@pytest.fixture(scope="session")
def faces_wheel(tmp_path_factory):
    """The gan-face-generate wheel from the package registry (skips without registry access, fails
    on any other pip error)."""
    import subprocess

    from jaxrewrite import zoo

    tmp = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "-d", str(tmp), zoo.FETCHED["dcgan-faces"]["pip"]], capture_output=True, text=True)
    wheels = list(tmp.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        offline = any(s in done.stderr for s in ("NewConnectionError", "Max retries exceeded", "Network is unreachable",
                                                 "name resolution", "from versions: none"))
        (pytest.skip if offline else pytest.fail)(f"pip download {zoo.FETCHED['dcgan-faces']['pip']}: {last}")
    return wheels[0]


@pytest.fixture(scope="session")
def faces_model(faces_wheel, tmp_path_factory):
    """The converted dcgan-faces model (fetched into a temporary cache)."""
    from jaxrewrite import modelfile, zoo

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        return modelfile.load(zoo.fetch("dcgan-faces", str(faces_wheel)))
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
