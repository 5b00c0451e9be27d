"""Read and write PyTorch checkpoint files without importing torch.

Both layouts written by ``torch.save`` are supported: the zip archive (torch >= 1.6,
the default) and the legacy stream of consecutive pickles
(``_use_new_zipfile_serialization=False``). Tensors become C-contiguous numpy arrays.
Pickles are untrusted input, so unpickling only resolves an allowlist of globals,
all of them implemented here in plain numpy.
"""
import os
import pickle
import struct
import zipfile
from collections import OrderedDict, namedtuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["CheckpointError", "dump", "load"]

_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy file
_LEGACY_PROTOCOL = 1001
# torch dtype name -> numpy type code ('bf16' has no numpy type and loads as float32).
_DTYPES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "bf16",
    "complex128": "c16", "complex64": "c8", "int64": "i8", "int32": "i4", "int16": "i2",
    "int8": "i1", "uint8": "u1", "bool": "b1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
}
# torch.<Name>Storage -> torch dtype name. torch 2.x pickles torch.storage.UntypedStorage (raw
# bytes) with _rebuild_tensor_v3 and an explicit dtype for dtypes lacking a legacy storage class.
_STORAGES = {
    "Double": "float64", "Float": "float32", "Half": "float16", "BFloat16": "bfloat16",
    "ComplexDouble": "complex128", "ComplexFloat": "complex64", "Long": "int64",
    "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8", "Bool": "bool",
    "Untyped": "uint8",
}
# numpy type code -> storage class used when saving.
_SAVE_STORAGES = {_DTYPES[t]: f"{s}Storage" for s, t in _STORAGES.items() if s != "Untyped"}

# Immutable records, so a crafted BUILD opcode cannot alter them.
_StorageType = namedtuple("_StorageType", "code")
_Storage = namedtuple("_Storage", "raw code order")  # raw is None during a legacy dry run


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, unsafe, or cannot be written."""


def _itemtype(code: str, order: str) -> np.dtype:
    return np.dtype("u2" if code == "bf16" else code).newbyteorder(order)


def _rebuild_tensor(storage, offset, size, stride, dtype=None):
    """torch._utils._rebuild_tensor: a strided view of a storage, copied to C order."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("tensor does not refer to a storage record")
    if storage.raw is None:  # legacy dry run: storage bytes are not known yet
        return None
    if dtype is not None and not isinstance(dtype, np.dtype):
        raise CheckpointError("tensor dtype is not a torch dtype")
    code = storage.code if dtype is None else dtype.str[1:]
    item = _itemtype(code, storage.order)
    flat = np.frombuffer(storage.raw, item, count=len(storage.raw) // item.itemsize)
    size, stride, offset = tuple(map(int, size)), tuple(map(int, stride)), int(offset)
    if len(size) != len(stride) or min(size + stride + (offset,)) < 0:
        raise CheckpointError(f"invalid tensor geometry: size {size}, stride {stride}, offset {offset}")
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    if end > flat.size:
        raise CheckpointError(f"storage of {flat.size} elements is too short for a tensor "
                              f"of size {size}, stride {stride}, offset {offset}")
    if 0 in stride and int(np.prod(size)) > max(flat.size, 1):  # a broadcast: refuse what would allocate more
        raise CheckpointError(f"a broadcast tensor of size {size} is larger than its storage of {flat.size} elements")
    view = (as_strided(flat[offset:], size, [s * item.itemsize for s in stride], writeable=False)
            if end else np.empty(size, item))
    out = np.array(view, dtype=item.newbyteorder("="), order="C")
    return (out.astype(np.uint32) << 16).view(np.float32) if code == "bf16" else out


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _apply_bits(_rebuild_tensor(storage, offset, size, stride), metadata)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    return _apply_bits(_rebuild_tensor(storage, offset, size, stride, dtype), metadata)


def _apply_bits(out, metadata):
    """Resolve torch's lazy conjugate/negative bits, which numpy has no notion of."""
    if out is not None and metadata:
        out = np.conj(out) if metadata.get("conj") else out
        out = -out if metadata.get("neg") else out
    return out


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    return data  # an nn.Parameter is just its tensor here


def _encode(text, encoding="latin1"):
    """_codecs.encode as used by protocol-2 pickles for bytes; only latin1 is needed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError("malformed bytes object")
    return text.encode("latin1")


def _empty_bytes():
    """Protocol-2 pickles spell b'' as a call to bytes() without arguments."""
    return b""


class _Namespace(dict):
    """argparse.Namespace stand-in: its attributes become dict items, nothing is imported."""

    def __setstate__(self, state):
        self.update(state)


class _Frozen:
    """A callable whose attributes a crafted BUILD opcode cannot set (a plain function's
    `__defaults__` could be rewritten that way)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name, value):
        raise CheckpointError("malformed pickle: sets an attribute of a rebuild function")

    def __call__(self, *args):
        return self._fn(*args)


_GLOBALS = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor": _Frozen(_rebuild_tensor),
    "torch._utils._rebuild_tensor_v2": _Frozen(_rebuild_tensor_v2),
    "torch._utils._rebuild_tensor_v3": _Frozen(_rebuild_tensor_v3),
    "torch._utils._rebuild_parameter": _Frozen(_rebuild_parameter),
    "torch._utils._rebuild_parameter_with_state": _Frozen(_rebuild_parameter),
    "torch.Size": tuple,
    "argparse.Namespace": _Namespace,
    "_codecs.encode": _Frozen(_encode),
    "builtins.bytes": _Frozen(_empty_bytes),
    "__builtin__.bytes": _Frozen(_empty_bytes),
}


class _Unpickler(pickle.Unpickler):
    """Resolves only allowlisted globals, so REDUCE/NEWOBJ can call nothing else."""

    def __init__(self, file, storage):
        super().__init__(file, encoding="utf-8")  # as torch.load, for Python 2 era str records
        self._storage = storage

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full == "torch.storage.UntypedStorage" or (
                module == "torch" and name.endswith("Storage") and name[:-7] in _STORAGES):
            return _StorageType(_DTYPES[_STORAGES[name[:-7]]])
        if module == "torch" and name in _DTYPES:
            return np.dtype("f4" if name == "bfloat16" else _DTYPES[name])
        if full in _GLOBALS:
            return _GLOBALS[full]
        if module == "torch" and (name.endswith("Storage") or name.startswith(
                ("float", "int", "uint", "qint", "quint", "bits", "complex"))):
            raise CheckpointError(f"unsupported tensor dtype '{full}'")
        raise CheckpointError(f"refusing to unpickle global '{full}' "
                              "(only tensors, dicts and plain values are allowed)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        return self._storage(pid[1].code, str(pid[2]), int(pid[4]), pid[5] if len(pid) == 6 else None)


def _load_zip(f):
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        folder = names[0].split("/", 1)[0] if names else ""  # torch takes the first record's folder
        if f"{folder}/data.pkl" not in names:
            raise CheckpointError(f"zip archive has no '{folder}/data.pkl' record (not a torch checkpoint)")
        byteorder = zf.read(f"{folder}/byteorder") if f"{folder}/byteorder" in names else b"little"
        if byteorder not in (b"little", b"big"):
            raise CheckpointError(f"unknown byteorder record {byteorder[:20]!r}")
        order, cache = "<" if byteorder == b"little" else ">", {}

        def storage(code, key, numel, view):
            if key not in cache:
                record = f"{folder}/data/{key}"
                if record not in names:
                    raise CheckpointError(f"missing storage record '{record}'")
                cache[key] = zf.read(record)
            raw, need = cache[key], numel * _itemtype(code, order).itemsize
            if len(raw) < need:
                raise CheckpointError(f"storage record '{key}' holds {len(raw)} bytes, expected {need}")
            return _Storage(memoryview(raw)[:need], code, order)

        return _Unpickler(zf.open(f"{folder}/data.pkl"), storage).load()


def _read_exact(f, n: int) -> bytes:
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    if n < 0 or n > end - here:
        raise CheckpointError("file is truncated (storage data ends early)")
    return f.read(n)


def _load_legacy(f):
    def unpickle(storage=None):
        return _Unpickler(f, storage).load()

    try:
        magic = unpickle()
    except CheckpointError:
        raise
    except Exception:
        magic = None
    if magic != _MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a legacy torch file)")
    if unpickle() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy protocol version")
    unpickle()  # sys_info: irrelevant, torch always writes legacy storages little-endian
    # Storage bytes follow the main pickle, so a dry run first learns each key's dtype.
    start, seen = f.tell(), {}

    def note(code, key, numel, view):
        seen.setdefault(key, (code, numel))
        return _Storage(None, code, "<")

    unpickle(note)
    raws = {}
    for key in unpickle():
        if str(key) not in seen:
            raise CheckpointError(f"storage '{key}' is listed but no tensor uses it")
        code, numel = seen[str(key)]
        (count,) = struct.unpack("<q", _read_exact(f, 8))
        if count != numel:
            raise CheckpointError(f"storage '{key}' holds {count} elements, expected {numel}")
        raws[str(key)] = _read_exact(f, count * _itemtype(code, "<").itemsize)

    def storage(code, key, numel, view):
        if key not in raws:
            raise CheckpointError(f"missing storage record '{key}'")
        raw, size = memoryview(raws[key]), _itemtype(code, "<").itemsize
        if view:  # (view_key, offset, numel) of pre-1.0 storage views, in elements
            raw = raw[int(view[1]) * size:(int(view[1]) + int(view[2])) * size]
        return _Storage(raw, code, "<")

    f.seek(start)
    return unpickle(storage)


_CAUSES = ((zipfile.BadZipFile, "corrupt or truncated zip archive"),
           ((pickle.UnpicklingError, EOFError), "corrupt or truncated pickle"),
           (OSError, "cannot read file"))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def load(path):
    """Load a torch checkpoint (zip or legacy) as plain containers of numpy arrays."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if not head:
                raise CheckpointError("file is empty")
            f.seek(0)
            return _load_zip(f) if head.startswith(b"PK") else _load_legacy(f)
    except CheckpointError as e:
        raise CheckpointError(f"{os.fspath(path)}: {e}") from None
    except Exception as e:  # any other failure of the parsers on untrusted bytes
        what = next((m for t, m in _CAUSES if isinstance(e, t)), "corrupt checkpoint")
        raise CheckpointError(f"{os.fspath(path)}: {what} ({type(e).__name__}: {_one_line(e)})") from e


def _pickle(obj, arrays: list, legacy: bool) -> bytes:
    """Protocol-2 pickle using only opcodes and globals torch's weights_only loader accepts."""
    out = bytearray(b"\x80\x02")

    def glob(module, name):
        out.extend(f"c{module}\n{name}\n".encode())

    def emit(o):
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            if -(2**31) <= o < 2**31:
                out.extend(b"J" + struct.pack("<i", o))
            else:
                data = o.to_bytes(o.bit_length() // 8 + 1, "little", signed=True)
                out.extend(b"\x8a" + bytes([len(data)]) + data)
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, str):
            data = o.encode("utf-8", "surrogatepass")
            out.extend(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(o, bytes):
            glob("_codecs", "encode")
            emit((o.decode("latin1"), "latin1"))
            out.extend(b"R")
        elif isinstance(o, np.ndarray):
            storage = _SAVE_STORAGES.get(o.dtype.str[1:])
            if storage is None:
                raise CheckpointError(f"cannot save arrays of dtype {o.dtype}")
            arrays.append(o)
            glob("torch._utils", "_rebuild_tensor_v2")
            out.extend(b"((")
            emit("storage")
            glob("torch", storage)
            for v in (str(len(arrays) - 1), "cpu", o.size):
                emit(v)
            out.extend(b"NtQ" if legacy else b"tQ")  # legacy ids carry view metadata (None)
            strides = tuple(int(np.prod(o.shape[i + 1:])) for i in range(o.ndim))
            for v in (0, o.shape, strides, False, OrderedDict()):
                emit(v)
            out.extend(b"tR")
        elif isinstance(o, dict):
            if isinstance(o, OrderedDict):
                glob("collections", "OrderedDict")
                out.extend(b")R")
            else:
                out.extend(b"}")
            if o:
                out.extend(b"(")
                for item in o.items():
                    emit(item[0])
                    emit(item[1])
                out.extend(b"u")
        elif isinstance(o, (list, tuple)):
            out.extend(b"](" if isinstance(o, list) else b"(")
            for v in o:
                emit(v)
            out.extend(b"e" if isinstance(o, list) else b"t")
        else:
            raise CheckpointError(f"cannot save object of type {type(o).__name__}")

    emit(obj)
    return bytes(out + b".")


def _raw(a: np.ndarray) -> np.ndarray:
    """Little-endian C-order bytes of an array, as a flat uint8 view (no extra copy if possible)."""
    return np.ascontiguousarray(a, a.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)


def dump(obj, f, *, name="archive", legacy: bool = False) -> None:
    """Write ``obj`` (containers of numpy arrays and plain values) as a torch checkpoint to the
    binary file ``f``; ``name`` is the zip archive's top folder (torch uses the file's stem).
    Callers that write files make them atomic (``jaxrewrite.modelfile.write_checkpoint``)."""
    arrays = []
    try:
        pickled = _pickle(obj, arrays, legacy)
    except (CheckpointError, RecursionError, ValueError) as e:
        raise CheckpointError(_one_line(e)) from None
    if legacy:
        for part in (_MAGIC, _LEGACY_PROTOCOL, {"protocol_version": _LEGACY_PROTOCOL,
                     "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            f.write(_pickle(part, [], True))
        f.write(pickled + _pickle([str(k) for k in range(len(arrays))], [], True))
        for a in arrays:
            f.write(struct.pack("<q", a.size))
            f.write(_raw(a))
    else:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{name}/data.pkl", pickled)
            zf.writestr(f"{name}/byteorder", "little")
            for key, a in enumerate(arrays):
                zf.writestr(f"{name}/data/{key}", _raw(a))
            zf.writestr(f"{name}/version", "3\n")
