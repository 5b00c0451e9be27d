"""The library's one `jit`: `jax.jit` plus the XLA options its programs compile with.

On a CPU this jaxlib hands convolutions and dots to YNNPACK library fusions by default; at
these generators' shapes XLA's own kernels are faster (a 50x16x16x64 -> 64 3x3 convolution
6.5 -> 4.0 ms; key statistics 13-30% and the small-layer edit loop ~10% less time, see the
change table in benchmarks/README.md). The options are per program rather than XLA_FLAGS,
so nothing else in the user's process changes; a ynn setting in XLA_FLAGS wins, and options
the installed jaxlib does not know are dropped. GPU compilers ignore `xla_cpu_*` options.

`cache_compiled` keeps compiled programs on disk (jax's persistent compilation cache): the
command line turns it on, so a second run loads its programs instead of compiling them.
"""

import functools
import glob
import os
import re
import sys
import warnings
import zlib

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


def cache_compiled(directory):
    """Keep every compiled program in `directory`, so a later call or process that builds the
    same program loads it (a sweep of 8 golden ProGAN edits: 2.5 -> 1.0 s on 2 CPU cores; the
    towns demo 7.1 -> 5.4 s). A cache directory the user chose for jax (JAX_COMPILATION_CACHE_DIR)
    is kept."""
    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # the edit programs compile in < 1 s
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _replace_unreadable_entries(str(directory))


_UNREADABLE = re.compile(r"Error reading persistent compilation cache entry for '([^']+)'")


def _readable(path):
    """Whether a cache entry decompresses (jax stores them zstd- or zlib-compressed)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        zlib.decompress(data)
        return True
    except zlib.error:
        pass
    try:
        import zstandard

        zstandard.ZstdDecompressor().decompress(data)
        return True
    except Exception:  # no zstandard, or not zstd data either
        return False


def _replace_unreadable_entries(directory):
    """jax warns on every run about a cache entry it cannot read (a torn or corrupted file) and
    never writes it again. Here such a warning removes the entries of that program name that do
    not decompress, so the next run compiles and stores them anew, and says so in one line
    instead of jax's warning."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        match = _UNREADABLE.search(str(message))
        if not match:
            return shown(message, category, filename, lineno, file, line)
        entries = glob.glob(os.path.join(directory, glob.escape(match[1]) + "-*-cache"))
        removed = [p for p in entries if os.path.isfile(p) and not _readable(p)]
        for path in removed:
            os.unlink(path)
        print(f"jaxrewrite: warning: removed {len(removed)} unreadable compiled program(s) '{match[1]}' from "
              f"{directory}; they are stored again on the next run", file=sys.stderr)

    warnings.showwarning = show
