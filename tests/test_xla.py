"""The library's jit: its options reach the compiled program, and fall away where they cannot apply."""

import jax
import jax.numpy as jnp
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
    assert "ynn_fusion" in _compiled_text(jax.jit)  # what the option removes, or this test checks nothing
    assert "ynn_fusion" not in _compiled_text(xla.jit)


def test_user_flags_win(fresh_options):
    fresh_options.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert xla.options() == {}


def test_unknown_options_are_dropped(fresh_options):
    fresh_options.delenv("XLA_FLAGS", raising=False)
    fresh_options.setattr(xla, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
    assert xla.options() == {}
    assert float(xla.jit(lambda x: x * 2)(3.0)) == 6.0
