"""Import PyTorch GAN checkpoints as Flax parameter trees, and export them back, without torch.

This package knows checkpoint files and state-dict layouts, nothing of jaxrewrite: `read` gives
a file's contents, `convert` maps a state dict onto flat tree paths with whichever of the
layouts it is given fits (a layout is a module with `RULES`, `detect`, `renamer`,
`checkpoint_names`, `spec` and `default_config`: `stylegan2`, `proggan`, `dcgan` here), `export` rebuilds the original state
dict (same keys, order, wrapper, dtypes and bytes) from possibly edited leaves, and `dump`
writes it to a file object. Which layout belongs to which architecture is said once, in
`jaxrewrite.archs`.
"""

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from . import nvidia, torch_format
from .rules import RANKS, MissingKey, forward, inverse
from .torch_format import CheckpointError

WRAPPERS = ("g_ema", "netG_state_dict", "state_dict")


@dataclass(frozen=True)
class Converted:
    """A converted state dict: flat parameter tree (dotted path -> array), the settings a state
    dict cannot hold, and what `export` needs to rebuild the original (layout, wrapper, key
    order, tensors no forward pass reads)."""

    arch: str
    params: dict
    config: dict
    source: dict


def read(path):
    """A checkpoint's contents: torch zip/legacy files through the restricted unpickler, NVIDIA
    network pickles through theirs (networks as `nvidia.Persistent` records), or `.npz`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if nvidia.is_network_pickle(path):
        return nvidia.load(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                is_npz = bool(z.namelist()) and all(n.endswith(".npy") for n in z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise CheckpointError(f"{path}: corrupt or truncated zip archive ({e})") from None
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


def convert(obj, layouts, *, arch="auto", config=None, network="G_ema"):
    """A `Converted` from a loaded checkpoint object (see `read`); `layouts`: architecture
    name -> layout module, the candidates for detection. From a network pickle, its
    `network` ('G_ema' or 'G')."""
    found_config = {}
    if isinstance(obj, dict) and any(isinstance(v, nvidia.Persistent) for v in obj.values()):
        obj, found_config = nvidia.generator(obj, network)
    sd, wrapper, prefix = unwrap(obj)
    keys = list(sd)
    stripped = [k[len(prefix):] for k in keys]
    found = {name: mod.detect(stripped) for name, mod in layouts.items()}
    found = {name: layout for name, layout in found.items() if layout}
    if arch != "auto":
        if arch not in layouts:
            raise CheckpointError(f"unknown architecture {arch!r}; choose from {', '.join(layouts)}")
        if arch not in found:
            raise CheckpointError(f"this is not a {arch} state dict (keys begin {', '.join(stripped[:3])})")
        found = {arch: found[arch]}
    if len(found) != 1:
        raise CheckpointError(f"cannot tell the architecture (keys begin {', '.join(stripped[:3])})")
    (arch, layout), = found.items()
    mod = layouts[arch]
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
    own = mod.checkpoint_names(stripped)  # errors name keys as this checkpoint names them
    try:
        expected = mod.spec(arrays)
    except MissingKey as e:
        raise CheckpointError(f"missing key {prefix + own(e.name)!r}{e.why} for a {arch} generator") from None
    for name, (key, array) in canonical.items():
        if name not in expected:
            raise CheckpointError(f"unknown key {key!r} for a {arch} generator")
        if tuple(array.shape) != tuple(expected[name]):
            raise CheckpointError(f"key {key!r} has shape {tuple(array.shape)}, expected {tuple(expected[name])}")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise CheckpointError(f"key {key!r} has non-finite values (NaN or inf)")
    for name in expected:
        if name not in canonical:
            raise CheckpointError(f"missing key {prefix + own(name)!r} for a {arch} generator")
    flat, extra = {}, {}
    for name, (key, array) in canonical.items():
        path, transform = mod.RULES.to_tree(name)
        if path is None:
            extra[key] = array
        else:
            flat[path] = forward(transform, array)
    source = {"layout": layout, "wrapper": wrapper or "", "keys": keys, "extra": extra}
    return Converted(arch, flat, {**mod.default_config(arrays), **found_config, **(config or {})}, source)


def export(layout, flat, source):
    """The checkpoint object a `Converted` came from, with the (possibly edited) flat leaves;
    `layout` is its architecture's layout module. A tree built without import gets the
    layout's canonical names."""
    extra = source.get("extra", {})
    keys = list(source.get("keys") or [])
    if not keys:  # built here, never imported: canonical names
        keys = [layout.RULES.to_key(path)[0] for path in flat]
    prefix = "module." if keys and all(k.startswith("module.") for k in keys) else ""
    rename = layout.renamer([k[len(prefix):] for k in keys])
    sd, used = {}, set()
    for key in keys:
        if key in extra:
            sd[key] = np.asarray(extra[key])
            continue
        path, transform = layout.RULES.to_tree(rename(key[len(prefix):]))
        if path not in flat:
            raise CheckpointError(f"model has no parameter {path!r} for key {key!r}")
        sd[key] = inverse(transform, flat[path])
        used.add(path)
    if set(flat) - used:
        raise CheckpointError(f"parameters with no state-dict key: {sorted(set(flat) - used)[:3]}")
    wrapper = source.get("wrapper") or None
    if wrapper == "g_ema":
        out = {"g_ema": sd}
        if "latent_avg" in sd:
            out["latent_avg"] = sd.pop("latent_avg")
        return out
    return {wrapper: sd} if wrapper else sd


def dump(obj, f, *, npz=False, name="archive", legacy=False):
    """Write an exported checkpoint to the binary file `f`: a flat `.npz` state dict (rosinality's
    convention: the generator's keys at top level, plus top-level tensors) or a torch file."""
    if npz:
        flat = {}
        for k, v in obj.items():
            flat.update(v if isinstance(v, dict) else {k: v})
        np.savez(f, **flat)
    else:
        torch_format.dump(obj, f, name=name, legacy=legacy)
