"""NVIDIA `stylegan2-ada-pytorch` network pickles, read as plain data without running their code.

A snapshot (`network-snapshot-*.pkl`) is a plain pickle of a dict whose networks (`G`, `D`,
`G_ema`) are `torch_utils.persistence` objects: every module is pickled as
`_reconstruct_persistent_obj(meta)`, `meta` holding its class name, the source text of the
module that defined it (which NVIDIA's loader `exec`s) and its state (`_parameters`,
`_buffers`, `_modules`, `_init_kwargs` and plain attributes). Here each becomes a `Persistent`
record and nothing is imported or run: tensors come through `torch.storage._load_from_bytes`
(a legacy `torch.save` of one storage, read by `torch_format`) and the usual rebuild
functions; `dnnlib.util.EasyDict`, `builtins.set`, `numpy.dtype` and
`numpy.core.multiarray.scalar` (also numpy 2's `numpy._core`) are data. Any other global is
refused, as in every checkpoint this package reads.
"""

import io
import pickle
import pickletools
import re
from dataclasses import dataclass

import numpy as np

from . import torch_format
from .torch_format import CheckpointError, _Frozen, _one_line, _Unpickler

MARKERS = ("torch_utils.persistence", "dnnlib.util")  # modules only network pickles name


@dataclass(eq=False)
class Persistent:
    """One persistent object: its class name and the whole `meta` it was pickled with (kept
    as it is, so that an export can write it back)."""

    meta: dict

    @property
    def class_name(self):
        return self.meta.get("class_name")

    @property
    def state(self):
        return self.meta.get("state") or {}

    @property
    def init_kwargs(self):
        return dict(self.state.get("_init_kwargs") or {})

    def modules(self):
        return dict(self.state.get("_modules") or {})

    def state_dict(self, prefix=""):
        """{dotted name: array} of parameters and buffers, as torch's `state_dict()` names them
        (buffers that are None are left out, as torch leaves them out)."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, module in self.modules().items():
            if isinstance(module, Persistent):
                out.update(module.state_dict(f"{prefix}{name}."))
            elif module is not None:
                raise CheckpointError(f"submodule {prefix}{name} is a {type(module).__name__}, not a persistent object")
        return out


class EasyDict(dict):
    """`dnnlib.util.EasyDict` as plain data."""

    def __setstate__(self, state):
        self.update(state)


def _persistent(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise CheckpointError("malformed persistent object (not a class record)")
    return Persistent(meta)


def _load_from_bytes(data):
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("malformed storage (not bytes)")
    return torch_format._load_legacy(io.BytesIO(bytes(data)))


class _DType:
    """`numpy.dtype` as pickles spell a plain number type: `dtype(code, False, True)` then a
    BUILD with its byte order. Only simple codes; numpy's own `__setstate__` would accept
    any fields, offsets and flags a file chose (object fields read from raw bytes)."""

    __slots__ = ("code", "order")

    def __init__(self, code, align=False, copy=True):
        if not (isinstance(code, str) and re.fullmatch(r"[biuf]\d{1,2}|\?", code)):
            raise CheckpointError(f"unsupported numpy dtype {code!r:.20} (plain numbers only)")
        self.code, self.order = code, "="

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 8 and state[1] in ("<", ">", "|", "=")
                and state[2:5] == (None, None, None)):
            raise CheckpointError("malformed numpy dtype state")
        self.order = state[1]

    def numpy(self):
        return np.dtype(self.code).newbyteorder(self.order if self.order != "|" else "=")


def _scalar(dtype, data):
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise CheckpointError("malformed numpy scalar")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise CheckpointError("malformed numpy scalar (size)")
    return np.frombuffer(data, dtype=dt, count=1)[0]


_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj": _Frozen(_persistent),
    "dnnlib.util.EasyDict": EasyDict,
    "builtins.set": set,
    "torch.storage._load_from_bytes": _Frozen(_load_from_bytes),
    "numpy.core.multiarray.scalar": _Frozen(_scalar),
    "numpy._core.multiarray.scalar": _Frozen(_scalar),
    "numpy.dtype": _DType,
}


class _NetworkUnpickler(_Unpickler):
    """With `blobs` (the file offsets of the pickle's storage blobs, in order), it also notes
    where in the file each tensor's bytes are (`located`: id(array) -> offset, for arrays stored
    contiguously at the start of their storage's data)."""

    def __init__(self, file, blobs=None):
        super().__init__(file, None)
        self.blobs, self.located, self._storages = blobs, {}, {}

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if self.blobs is not None and full == "torch.storage._load_from_bytes":
            return _Frozen(self._load_tracked)
        if self.blobs is not None and full == "torch._utils._rebuild_tensor_v2":
            return _Frozen(self._rebuild_tracked)
        return _GLOBALS.get(full) or super().find_class(module, name)

    def _load_tracked(self, data):
        storage = _load_from_bytes(data)
        k = len(self._storages)
        if k < len(self.blobs) and storage.raw is not None:
            start, length = self.blobs[k]
            self._storages[id(storage)] = (storage, start + length - len(storage.raw))
        return storage

    def _rebuild_tracked(self, storage, offset, size, stride, *rest):
        array = torch_format._rebuild_tensor_v2(storage, offset, size, stride, *rest)
        found = self._storages.get(id(storage))
        contiguous = tuple(map(int, stride)) == tuple(np.cumprod((1,) + tuple(map(int, size))[::-1])[:-1][::-1].tolist())
        if found and contiguous:
            self.located[id(array)] = found[1] + int(offset) * array.dtype.itemsize
        return array

    def persistent_load(self, pid):
        raise CheckpointError(f"unexpected persistent id {pid!r:.80} in a network pickle")


def is_network_pickle(path):
    """Whether the first global a pickle names is one only network pickles name (read from the
    opcodes, nothing is loaded)."""
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":
                return False
            f.seek(0)
            strings = []  # protocol 4 names a global by the two strings pushed before STACK_GLOBAL
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    return str(arg).split(" ")[0] in MARKERS
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                if op.name == "STACK_GLOBAL":
                    return len(strings) >= 2 and strings[-2] in MARKERS
                if op.name == "STOP":
                    return False
    except Exception:  # not a pickle at all: the other readers say what it is
        return False
    return False


def load(path):
    """The snapshot dict of a network pickle, networks as `Persistent` records."""
    try:
        with open(path, "rb") as f:
            obj = _NetworkUnpickler(f).load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: malformed network pickle (nested too deeply)") from None
    except Exception as e:  # any other failure of the unpickler on untrusted bytes
        raise CheckpointError(f"{path}: corrupt network pickle ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: a network pickle holds a dict, this one a {type(obj).__name__}")
    return obj



def generator(snapshot, which="G_ema"):
    """(state dict with NVIDIA's names, settings a state dict cannot hold) of a snapshot's
    generator; architectures other than StyleGAN2-ADA's 'skip' generator are refused by name."""
    if which not in ("G_ema", "G"):
        raise CheckpointError(f"the generator is 'G_ema' or 'G', not {which!r}")
    try:
        return _generator(snapshot, which)
    except (AttributeError, TypeError, KeyError, ValueError, RecursionError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"malformed {which} network ({type(e).__name__}: {_one_line(e)})") from None


def _generator(snapshot, which):
    g = snapshot.get(which)
    if not isinstance(g, Persistent):
        raise CheckpointError(f"the network pickle has no {which} network")
    if g.class_name != "Generator":
        raise CheckpointError(f"{which} is a {g.class_name}, not a StyleGAN2-ADA Generator")
    kwargs = g.init_kwargs
    synthesis, mapping = dict(kwargs.get("synthesis_kwargs") or {}), dict(kwargs.get("mapping_kwargs") or {})
    modules = g.modules()
    if "synthesis" not in modules or "mapping" not in modules:
        raise CheckpointError(f"{which} has no mapping and synthesis networks (not a StyleGAN2-ADA generator)")
    if any(name.startswith("L") for name in modules["synthesis"].modules()):
        raise CheckpointError(f"{which} is a StyleGAN3 generator (synthesis.L* layers); only StyleGAN2-ADA's is supported")
    architecture = synthesis.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"{which} is a StyleGAN2-ADA '{architecture}' generator; only 'skip' (the default) is "
                              f"supported")
    if kwargs.get("img_channels", 3) != 3:
        raise CheckpointError(f"{which} makes {kwargs.get('img_channels')}-channel images; only RGB is supported")
    config = {"lr_mlp": float(mapping.get("lr_multiplier", 0.01)), "conv_clamp": synthesis.get("conv_clamp"),
              "network": which}
    return g.state_dict(), config


_LEGACY_HEAD = pickle.dumps(torch_format._MAGIC, protocol=2)[:-1]  # a legacy torch.save starts with it


def located(data, which="G_ema"):
    """(state dict, {key: file offset of its bytes}) of a network pickle's generator, read
    from its bytes in one pass."""
    blobs = [(pos + (5 if op.name == "BINBYTES" else 9 if op.name == "BINBYTES8" else 2), len(arg))
             for op, arg, pos in pickletools.genops(data)
             if op.name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8") and arg.startswith(_LEGACY_HEAD)]
    unpickler = _NetworkUnpickler(io.BytesIO(data), blobs)
    snapshot = unpickler.load()
    sd, _ = generator(snapshot, which)
    return sd, {k: unpickler.located[id(v)] for k, v in sd.items() if id(v) in unpickler.located}


def patched(data, network_before, network_after, at=None):
    """The bytes of a network pickle with some tensors' values replaced, all else as it was
    (structure, persistent-object metadata and module source, the other networks): each
    changed tensor's stored bytes are overwritten in place (its storage keeps its length), at
    the offset `at` gives for it (`located`), checked to hold its old bytes, or else where its
    old bytes occur, exactly once. `network_before` / `network_after`: {key: array}."""
    at = at or {}
    out = bytearray(data)
    for key, after in network_after.items():
        before = np.asarray(network_before[key])
        after = np.asarray(after, before.dtype)
        if after.shape != before.shape:
            raise CheckpointError(f"{key}: shape {after.shape} does not fit the pickle's {before.shape}")
        if np.array_equal(before, after):
            continue
        old, new = np.ascontiguousarray(before, before.dtype.newbyteorder("<")).tobytes(), \
            np.ascontiguousarray(after, before.dtype.newbyteorder("<")).tobytes()
        where = at.get(key)
        if where is None or data[where:where + len(old)] != old:
            where = data.find(old)
            if where < 0 or data.find(old, where + 1) >= 0:
                raise CheckpointError(f"{key}: cannot tell which stored tensor it is (its bytes occur "
                                      f"{'never' if where < 0 else 'more than once'} in the pickle)")
        out[where:where + len(old)] = new
    return bytes(out)
