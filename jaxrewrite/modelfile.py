"""Models: architecture, config, parameter tree and import provenance, and the files they live in.

The model file is msgpack through `flax.serialization`: it comes with flax (no extra
dependency), keeps nested trees, dtypes and small metadata (strings, lists) in one file, and
restoring it never executes code. safetensors would add a dependency and only holds flat
tensor maps with string metadata. PyTorch checkpoints are read and written through
`checkpoints_convert`, with the layouts `jaxrewrite.archs` names.
"""

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
from flax import serialization

import checkpoints_convert

from . import archs, zoo
from .atomic import atomic_write
from .tree import flatten, unflatten

FORMAT = "jaxrewrite-model"
VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".npz")  # `save` writes these in the original PyTorch layout
PICKLE_SUFFIX = ".pkl"  # models converted from an NVIDIA network pickle: the pickle, edited


class ModelFileError(ValueError):
    pass


@dataclass
class Model:
    arch: str
    params: dict  # nested dict of arrays (tree layout: NHWC / HWIO)
    config: dict = field(default_factory=dict)  # what a state dict cannot tell (lr_mlp, strides, ...)
    source: dict = field(default_factory=dict)  # state-dict layout, wrapper, key order, set-aside tensors

    @property
    def spec(self):
        return archs.get(self.arch)

    def generator(self, **options):
        return self.spec.build(self.params, self.config, **options)

    def official_options(self, batch=1):
        """Generator options that reproduce the official code running `batch` images per call
        (StyleGAN2's noise rows; the other architectures draw no noise)."""
        return self.spec.official(batch)

    def digest(self):
        """sha256 over the parameter tree (names, dtypes, shapes, bytes): identifies the weights."""
        h = hashlib.sha256(self.arch.encode())
        for path, leaf in sorted(flatten(self.params).items()):
            a = np.ascontiguousarray(leaf)
            h.update(f"{path}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def check_config(arch, config):
    """`config` (what a state dict cannot hold) against the entries `arch` knows, by name and type."""
    known = archs.get(arch).config
    if not isinstance(config, dict):
        raise ValueError(f"config must be a JSON object, got {type(config).__name__}")
    for key, value in config.items():
        if key not in known:
            raise ValueError(f"unknown config entry {key!r} for {arch}; known: {', '.join(known) or 'none'}")
        number = lambda v, kinds=(int, float): isinstance(v, kinds) and not isinstance(v, bool)
        want = known[key]
        ok = (isinstance(value, list) and all(number(v, int) and v >= 0 for v in value)) if want is list else number(value)
        if not ok:
            what = "list of integers >= 0" if want is list else "number"
            raise ValueError(f"config entry {key!r} must be a {what}, got {value!r}")


def convert(obj, *, arch="auto", config=None, network="G_ema"):
    """A Model from a loaded checkpoint object (`checkpoints_convert.read`); from an NVIDIA
    network pickle, its `network` ('G_ema' or 'G')."""
    converted = checkpoints_convert.convert(obj, archs.LAYOUTS, arch=arch, network=network)
    check_config(converted.arch, config or {})
    return Model(converted.arch, unflatten(converted.params), {**converted.config, **(config or {})},
                 converted.source)


def to_checkpoint(model):
    """The checkpoint object `model` came from (same keys, order, wrapper, dtypes, set-aside
    tensors), with `model`'s possibly edited weights."""
    return checkpoints_convert.export(model.spec.layout, flatten(model.params), model.source)


def write_checkpoint(obj, path, *, legacy=False):
    """An exported checkpoint to `path`, atomically: `.npz` (flat state dict) or a torch file."""
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path))[0] or "archive"
    npz = path.lower().endswith(".npz")
    try:
        atomic_write(path, lambda f: checkpoints_convert.dump(obj, f, npz=npz, name=stem, legacy=legacy))
    except checkpoints_convert.CheckpointError as e:
        raise checkpoints_convert.CheckpointError(f"{path}: {e}") from None


def export(model, path):
    """`model` in its original PyTorch layout at `path`: `.npz` or a torch file; `.pkl` for a
    model converted from an NVIDIA network pickle: that pickle with the edited tensors' values
    in place (everything else as it was, so NVIDIA's tools load it; of its generators, the
    one that was converted carries the edit)."""
    if not os.fspath(path).lower().endswith(PICKLE_SUFFIX):
        return write_checkpoint(to_checkpoint(model), path)
    origin = model.source.get("pickle")
    if not origin:
        raise ValueError(f"{path}: only a model converted from an NVIDIA network pickle exports to .pkl")
    try:
        with open(origin["path"], "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"{path}: the export rewrites the original pickle {origin['path']}, which cannot be read "
                      f"({e.strerror or e})") from None
    if hashlib.sha256(data).hexdigest() != origin["sha256"]:
        raise ValueError(f"{path}: {origin['path']} is not the pickle this model came from (sha256 differs)")
    before, offsets = checkpoints_convert.nvidia.located(data, origin["network"])
    out = checkpoints_convert.nvidia.patched(data, before, to_checkpoint(model), offsets)
    atomic_write(path, lambda f: f.write(out))


def save(model, path, now=False):
    """`model` at `path`: in its original PyTorch layout where the name ends in .pt, .pth or
    .npz (the official code loads it), else as a model file. Atomic (`now`: moved into place
    at once, even inside `atomic.together()`, for caches)."""
    if os.fspath(path).lower().endswith(CHECKPOINT_SUFFIXES + (PICKLE_SUFFIX,)):
        return export(model, path)
    state = {"format": FORMAT, "version": VERSION, "arch": model.arch, "config": model.config,
             "params": _to_numpy(model.params), "source": model.source}
    data = serialization.msgpack_serialize(state)
    atomic_write(path, lambda f: f.write(data), now=now)


def load(model, *, arch="auto", config=None, network="G_ema"):
    """A Model from a zoo name (`towns64`), a model file or any checkpoint the converter reads
    (NVIDIA network pickles included); `arch`, `config` and `network` apply to checkpoints."""
    path = zoo.resolve(os.fspath(model))
    if not os.path.isfile(path):
        raise checkpoints_convert.CheckpointError(f"{path}: no such file")
    if not is_model_file(path):
        model = convert(checkpoints_convert.read(path), arch=arch, config=config, network=network)
        if checkpoints_convert.nvidia.is_network_pickle(path):  # what a .pkl export rewrites
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            model.source["pickle"] = {"path": os.path.abspath(path), "sha256": digest, "network": network}
        return model
    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable jaxrewrite model file ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a jaxrewrite model file")
    if state.get("version") != VERSION or state.get("arch") not in archs.ARCHS:
        raise ModelFileError(f"{path}: unsupported model file version/arch {state.get('version')}/{state.get('arch')}")
    return Model(state["arch"], state["params"], state.get("config") or {}, state.get("source") or {})


def is_model_file(path):
    """A msgpack map header: torch files start with a zip header or pickle's 0x80."""
    with open(path, "rb") as f:
        head = f.read(1)
    return bool(head) and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))


def _to_numpy(tree):
    return {k: _to_numpy(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}
