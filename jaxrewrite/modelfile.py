"""The package's model file: architecture, config, parameter tree and import provenance.

Stored as msgpack through `flax.serialization`: it comes with flax (no extra dependency),
keeps nested trees, dtypes and small metadata (strings, lists) in one file, and restoring
it never executes code. safetensors would add a dependency and only holds flat tensor maps
with string metadata.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
from flax import serialization

from .atomic import atomic_write
from .models import dcgan, proggan, stylegan2
from .tree import flatten

FORMAT = "jaxrewrite-model"
VERSION = 1
BUILDERS = {"stylegan2": stylegan2.build, "proggan": proggan.build, "dcgan": dcgan.build}


class ModelFileError(ValueError):
    pass


@dataclass
class Model:
    arch: str
    params: dict  # nested dict of arrays (tree layout: NHWC / HWIO)
    config: dict = field(default_factory=dict)  # what a state dict cannot tell (lr_mlp, strides, ...)
    source: dict = field(default_factory=dict)  # state-dict layout, wrapper, key order, set-aside tensors

    def generator(self, **options):
        return BUILDERS[self.arch](self.params, self.config, **options)

    def official_options(self, batch=1):
        """Generator options that reproduce the official code running `batch` images per call
        (StyleGAN2's noise rows; the other architectures draw no noise)."""
        return {"noise": "official", "noise_batch": batch} if self.arch == "stylegan2" else {}

    def digest(self):
        """sha256 over the parameter tree (names, dtypes, shapes, bytes): identifies the weights."""
        h = hashlib.sha256(self.arch.encode())
        for path, leaf in sorted(flatten(self.params).items()):
            a = np.ascontiguousarray(leaf)
            h.update(f"{path}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def save(model, path):
    state = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "config": model.config,
        "params": _to_numpy(model.params),
        "source": model.source,
    }
    data = serialization.msgpack_serialize(state)
    atomic_write(path, lambda f: f.write(data))


def load(path):
    """A Model from a jaxrewrite model file."""
    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable jaxrewrite model file ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a jaxrewrite model file")
    if state.get("version") != VERSION or state.get("arch") not in BUILDERS:
        raise ModelFileError(f"{path}: unsupported model file version/arch {state.get('version')}/{state.get('arch')}")
    return Model(state["arch"], state["params"], state.get("config") or {}, state.get("source") or {})


def is_model_file(path):
    """A msgpack map header: torch files start with a zip header or pickle's 0x80."""
    with open(path, "rb") as f:
        head = f.read(1)
    return bool(head) and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))


def _to_numpy(tree):
    return {k: _to_numpy(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}
