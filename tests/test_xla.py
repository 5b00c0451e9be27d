"""The library's jit: its options reach the compiled program, and fall away where they cannot apply."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrewrite import xla


def _compiled_text(jit):
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jit(lambda x, w: conv(x, w) @ w[0, 0]).lower(x, w).compile().as_text().lower()


@pytest.fixture
def fresh_options(monkeypatch):
    xla.options.cache_clear()
    yield monkeypatch
    xla.options.cache_clear()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are XLA:CPU's")
def test_programs_compile_without_library_fusions():
    if not xla.options():
        pytest.skip("this jaxlib does not know the option (the library then compiles with jax's defaults)")
    if "ynn_fusion" not in _compiled_text(jax.jit):
        pytest.skip("jax's defaults compile no YNNPACK fusion on this jaxlib: nothing for the option to remove")
    assert "ynn_fusion" not in _compiled_text(xla.jit)


def test_user_flags_win(fresh_options):
    fresh_options.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert xla.options() == {}


def test_unknown_options_are_dropped(fresh_options):
    fresh_options.delenv("XLA_FLAGS", raising=False)
    fresh_options.setattr(xla, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
    assert xla.options() == {}
    assert float(xla.jit(lambda x: x * 2)(3.0)) == 6.0


def test_command_line_keeps_compiled_programs(tmp_path, small_model):
    model = small_model
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAX_LOG_COMPILES": "1",
           "PYTHONPATH": os.getcwd()}
    programs = tmp_path / "cache" / "jaxrewrite" / "xla"
    runs = []
    for i in range(3):
        if i == 2:  # corrupt entries are compiled again (jax warns), not an error
            for entry in programs.iterdir():
                entry.write_bytes(b"garbage")
        out = tmp_path / f"{i}.npy"
        runs.append(subprocess.run([sys.executable, "-m", "jaxrewrite", "sample", "--model", str(model), "--n", "2",
                                    "--out", str(out)], env=env, capture_output=True, text=True))
        assert runs[-1].returncode == 0, runs[-1].stderr[-2000:]
        if i == 0:
            assert list(programs.iterdir())
    hit = "persistent compilation cache hit"
    assert hit not in runs[0].stderr.lower() and hit in runs[1].stderr.lower()
    for i in (1, 2):
        np.testing.assert_array_equal(np.load(tmp_path / "0.npy"), np.load(tmp_path / f"{i}.npy"))


def test_a_compilation_cache_the_user_chose_is_kept(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        xla.cache_compiled(tmp_path / "ours")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
