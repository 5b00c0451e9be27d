"""Import PyTorch GAN checkpoints as Flax parameter trees, and export them back, without torch.

`convert` maps a state dict (rosinality / official sequential StyleGAN2, official or old
ProGAN, tutorial DCGAN) to a `jaxrewrite.modelfile.Model`; `export` rebuilds the original
state dict (same keys, order, wrapper, dtypes and bytes) from a possibly edited Model.
"""

import os
import zipfile

import numpy as np

from jaxrewrite.modelfile import Model
from jaxrewrite.tree import flatten, unflatten

from . import dcgan, proggan, stylegan2, torch_format
from .rules import RANKS, forward, inverse
from .torch_format import CheckpointError

ARCHS = {"stylegan2": stylegan2, "proggan": proggan, "dcgan": dcgan}
WRAPPERS = ("g_ema", "netG_state_dict", "state_dict")


def read(path):
    """A checkpoint's contents: torch zip/legacy files through the restricted unpickler, or `.npz`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_npz = bool(z.namelist()) and all(n.endswith(".npy") for n in z.namelist())
        if is_npz:
            try:
                with np.load(path, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            except Exception as e:
                raise CheckpointError(f"{path}: corrupt .npz ({e})") from None
    return torch_format.load(path)


def unwrap(obj):
    """(state dict, wrapper key, key prefix) of a generator checkpoint."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a dict of tensors, found {type(obj).__name__}")
    wrapper = next((w for w in WRAPPERS if isinstance(obj.get(w), dict)), None)
    sd = dict(obj[wrapper]) if wrapper else dict(obj)
    if wrapper == "g_ema" and "latent_avg" in obj:
        sd["latent_avg"] = obj["latent_avg"]
    prefix = "module." if sd and all(k.startswith("module.") for k in sd) else ""
    for k, v in sd.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"entry {k!r} is a {type(v).__name__}, not a tensor")
    return sd, wrapper, prefix


def convert(obj, *, arch="auto", config=None):
    """A Model from a loaded checkpoint object (see `read`)."""
    sd, wrapper, prefix = unwrap(obj)
    keys = list(sd)
    stripped = [k[len(prefix):] for k in keys]
    found = {name: mod.detect(stripped) for name, mod in ARCHS.items()}
    found = {name: layout for name, layout in found.items() if layout}
    if arch != "auto":
        if arch not in ARCHS:
            raise CheckpointError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        if arch not in found:
            raise CheckpointError(f"this is not a {arch} state dict (keys begin {', '.join(stripped[:3])})")
        found = {arch: found[arch]}
    if len(found) != 1:
        raise CheckpointError(f"cannot tell the architecture (keys begin {', '.join(stripped[:3])})")
    (arch, layout), = found.items()
    mod = ARCHS[arch]
    rename = mod.renamer(stripped)
    canonical = {}
    for key, short in zip(keys, stripped):
        name = rename(short)
        if name in canonical:
            raise CheckpointError(f"key {key!r} duplicates another entry")
        canonical[name] = (key, sd[key])
    for name, (key, array) in canonical.items():
        rank = RANKS.get((mod.RULES.to_tree(name) or (None, "same"))[1])
        if rank is not None and array.ndim != rank:
            raise CheckpointError(f"key {key!r} has shape {tuple(array.shape)}, expected {rank} dimensions")
    arrays = {name: a for name, (_, a) in canonical.items()}
    expected = mod.spec(arrays)
    for name, (key, array) in canonical.items():
        if name not in expected:
            raise CheckpointError(f"unknown key {key!r} for a {arch} generator")
        if tuple(array.shape) != tuple(expected[name]):
            raise CheckpointError(f"key {key!r} has shape {tuple(array.shape)}, expected {tuple(expected[name])}")
    for name in expected:
        if name not in canonical:
            raise CheckpointError(f"missing key {name!r} for a {arch} generator")
    flat, extra = {}, {}
    for name, (key, array) in canonical.items():
        path, transform = mod.RULES.to_tree(name)
        if path is None:
            extra[key] = array
        else:
            flat[path] = forward(transform, array)
    source = {"layout": layout, "wrapper": wrapper or "", "keys": keys, "extra": extra}
    return Model(arch, unflatten(flat), {**mod.default_config(arrays), **(config or {})}, source)


def export(model):
    """The checkpoint object `model` came from, with `model`'s (possibly edited) weights."""
    mod = ARCHS[model.arch]
    flat = flatten(model.params)
    extra = model.source.get("extra", {})
    keys = list(model.source.get("keys") or [])
    if not keys:  # built here, never imported: canonical names
        keys = [mod.RULES.to_key(path)[0] for path in flat]
    prefix = "module." if keys and all(k.startswith("module.") for k in keys) else ""
    rename = mod.renamer([k[len(prefix):] for k in keys])
    sd, used = {}, set()
    for key in keys:
        if key in extra:
            sd[key] = np.asarray(extra[key])
            continue
        path, transform = mod.RULES.to_tree(rename(key[len(prefix):]))
        if path not in flat:
            raise CheckpointError(f"model has no parameter {path!r} for key {key!r}")
        sd[key] = inverse(transform, flat[path])
        used.add(path)
    if set(flat) - used:
        raise CheckpointError(f"parameters with no state-dict key: {sorted(set(flat) - used)[:3]}")
    wrapper = model.source.get("wrapper") or None
    if wrapper == "g_ema":
        out = {"g_ema": sd}
        if "latent_avg" in sd:
            out["latent_avg"] = sd.pop("latent_avg")
        return out
    return {wrapper: sd} if wrapper else sd


def write(obj, path):
    """Write an exported checkpoint: `.npz` (flat state dict) or a torch zip file, atomically."""
    if path.endswith(".npz"):
        from jaxrewrite.atomic import atomic_write

        flat = obj if not any(isinstance(v, dict) for v in obj.values()) else _flat_checkpoint(obj)
        atomic_write(path, lambda f: np.savez(f, **flat))
    else:
        torch_format.save(obj, path)


def _flat_checkpoint(obj):
    """rosinality npz convention: the generator's keys at top level, plus top-level tensors."""
    out = {}
    for k, v in obj.items():
        out.update(v if isinstance(v, dict) else {k: v})
    return out


def load_model(path, **convert_options):
    """A Model from a jaxrewrite model file or any checkpoint `convert` understands."""
    from jaxrewrite import modelfile

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if modelfile.is_model_file(path):
        return modelfile.load(path)
    return convert(read(path), **convert_options)
