"""The library's one `jit`: `jax.jit` plus the XLA options its programs compile with.

On a CPU this jaxlib hands convolutions and dots to YNNPACK library fusions by default; at
these generators' shapes XLA's own kernels are faster (a 50x16x16x64 -> 64 3x3 convolution
6.5 -> 4.0 ms; key statistics 13-30% and the small-layer edit loop ~10% less time, see the
change table in benchmarks/README.md). The options are per program rather than XLA_FLAGS,
so nothing else in the user's process changes; a ynn setting in XLA_FLAGS wins, and options
the installed jaxlib does not know are dropped. GPU compilers ignore `xla_cpu_*` options.
"""

import functools
import os

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def options():
    """The compiler options every program gets ({} where unknown or set by the user)."""
    if "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS)(0.0)
    except (TypeError, RuntimeError):  # an older jax without the argument, a jaxlib without the option
        return {}
    return CPU_OPTIONS


def jit(fun, **kwargs):
    """`jax.jit(fun, **kwargs)` compiled with `options()`."""
    return jax.jit(fun, compiler_options=options() or None, **kwargs)
