"""checkpoints_convert.torch_format: torch checkpoints read/written without torch.

Checkpoints that real torch would write are crafted here opcode by opcode, so the
tests need no torch; the real-torch cross-check lives outside the suite.
"""
import argparse
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from checkpoints_convert.torch_format import CheckpointError, load
from jaxrewrite.modelfile import write_checkpoint as save  # torch_format.dump, atomically

MAGIC = 0x1950A86A20F9469CFC6C


# --- a tiny protocol-2 pickle assembler, for files only torch (or an attacker) would write


def g(module, name):
    return f"c{module}\n{name}\n".encode()


def s(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def i(n):
    return b"J" + struct.pack("<i", n)


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor(stype, key, numel, offset, size, stride, rebuild="_rebuild_tensor_v2", legacy=False):
    pid = tup(s("storage"), g("torch", stype), s(key), s("cuda:0"), i(numel), *([b"N"] if legacy else [])) + b"Q"
    geometry = [i(offset), tup(*map(i, size)), tup(*map(i, stride))]
    if rebuild == "_rebuild_tensor_v2":
        geometry += [b"\x89", g("collections", "OrderedDict") + b")R"]
    return g("torch._utils", rebuild) + tup(pid, *geometry) + b"R"


def dict_(**items):
    return b"}(" + b"".join(s(k) + v for k, v in items.items()) + b"u"


def pkl(body):
    return b"\x80\x02" + body + b"."


def write_zip(path, data_pkl, storages, byteorder=b"little", folder="archive"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", data_pkl)
        zf.writestr(f"{folder}/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"{folder}/data/{key}", raw)
        zf.writestr(f"{folder}/version", "3\n")
    return path


def write_legacy(path, main, storages):
    """storages: key -> (element count, raw bytes), written in this order."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, 1001, {"little_endian": True}))
    data = b"".join(struct.pack("<q", n) + raw for n, raw in storages.values())
    path.write_bytes(head + main + pickle.dumps(list(storages), protocol=2) + data)
    return path


def assert_equal(got, want):
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.flags.c_contiguous and got.flags.writeable
        assert got.dtype == want.dtype.newbyteorder("=") and got.shape == want.shape
        assert got.tobytes() == want.astype(got.dtype).tobytes()
    elif isinstance(want, dict):
        assert type(got) is type(want) and list(got) == list(want)
        for k in want:
            assert_equal(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for a, b in zip(got, want):
            assert_equal(a, b)
    else:
        assert type(got) is type(want) and got == want


def assert_refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


# --- round trips


SAMPLE = {
    "f32": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
    "f16": np.linspace(-2, 2, 7, dtype=np.float16),
    "i64": np.arange(-6, 6, dtype=np.int64).reshape(3, 4),
    "bool": np.array([[True, False], [False, True]]),
    "u8": np.arange(256, dtype=np.uint8).reshape(16, 16),
    "others": [np.array([-1, 7], np.int8), np.array([300, -3], np.int16), np.array([2**31 - 1], np.int32),
               np.array([1.5, 2.5]), np.array([1 + 2j], np.complex64)],
    "view": np.arange(24.0, dtype=np.float32).reshape(4, 6)[1:, ::2],
    "big_endian": np.arange(5, dtype=">f4"),
    "scalar": np.array(2.5, np.float32),
    "empty": np.zeros((0, 3), np.float32),
    "state": OrderedDict([("layer.weight", np.ones((2, 2), np.float32)), ("layer.bias", np.zeros(2, np.float32))]),
    "nested": {"a": {"b": [np.arange(3), (1, "x")]}, "none": None, "flag": True, "n": 2**70, "neg": -(2**40),
               "x": 0.125, "text": "ü", "blob": b"\x00\xff", "empty_blob": b""},
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_round_trip(tmp_path, legacy):
    path = tmp_path / "model.pt"
    save(SAMPLE, path, legacy=legacy)
    assert_equal(load(path), SAMPLE)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind


def test_zip_layout_follows_torch(tmp_path):
    save({"w": np.ones(2, np.float32)}, tmp_path / "net.pth")
    with zipfile.ZipFile(tmp_path / "net.pth") as zf:
        assert zf.namelist() == ["net/data.pkl", "net/byteorder", "net/data/0", "net/version"]
        assert zf.read("net/byteorder") == b"little" and zf.read("net/data/0") == np.ones(2, "<f4").tobytes()


def test_strided_views_sharing_one_storage(tmp_path):
    base = np.arange(40, dtype=np.float32)
    body = dict_(
        a=tensor("FloatStorage", "0", 40, 5, (2, 5), (5, 1)),
        b=tensor("FloatStorage", "0", 40, 3, (4, 3), (1, 8)),  # column-major-ish view
        c=tensor("FloatStorage", "0", 40, 2, (3, 4), (0, 9)),  # broadcast (stride 0)
        d=tensor("FloatStorage", "0", 40, 39, (), (), rebuild="_rebuild_tensor"),
        e=tensor("FloatStorage", "0", 40, 40, (0, 4), (4, 1)),
    )
    want = {
        "a": base[5:15].reshape(2, 5),
        "b": np.lib.stride_tricks.as_strided(base[3:], (4, 3), (4, 32)).copy(),
        "c": np.broadcast_to(base[2::9][:4], (3, 4)).copy(),
        "d": np.array(39.0, np.float32),
        "e": np.zeros((0, 4), np.float32),
    }
    assert_equal(load(write_zip(tmp_path / "v.pt", pkl(body), {"0": base.tobytes()})), want)
    legacy_body = dict_(a=tensor("FloatStorage", "7", 40, 5, (2, 5), (5, 1), legacy=True),
                        b=tensor("LongStorage", "3", 4, 1, (3,), (1,), legacy=True),
                        c=tensor("FloatStorage", "7", 40, 0, (4,), (10,), legacy=True))
    got = load(write_legacy(tmp_path / "l.pt", pkl(legacy_body),
                            {"3": (4, np.arange(4).tobytes()), "7": (40, base.tobytes())}))
    assert_equal(got, {"a": want["a"], "b": np.arange(1, 4), "c": base[::10].copy()})


def test_bfloat16_big_endian_and_untyped_storage(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    u16 = tensor("UntypedStorage", "2", 4, 1, (1,), (1,), rebuild="_rebuild_tensor_v3")
    u16 = u16.replace(b"torch\nUntypedStorage", b"torch.storage\nUntypedStorage")
    u16 = u16[:-2] + b"\x89" + g("collections", "OrderedDict") + b")R" + g("torch", "uint16") + b"tR"
    body = dict_(bf=tensor("BFloat16Storage", "0", 4, 0, (2, 2), (1, 2)),
                 big=tensor("FloatStorage", "1", 3, 0, (3,), (1,)), u16=u16)
    raws = {"0": bf16, "1": np.array([1, 2, 3], "<f4").tobytes(), "2": np.array([7, 65535], "<u2").tobytes()}
    assert_equal(load(write_zip(tmp_path / "bf.pt", pkl(body), raws)),
                 {"bf": values.reshape(2, 2).T.copy(), "big": np.array([1, 2, 3], np.float32),
                  "u16": np.array([65535], np.uint16)})
    swapped = {k: np.frombuffer(v, f"u{w}").byteswap().tobytes() for (k, v), w in zip(raws.items(), (2, 4, 2))}
    assert_equal(load(write_zip(tmp_path / "be.pt", pkl(body), swapped, byteorder=b"big")),
                 load(tmp_path / "bf.pt"))


def test_plain_python_values_from_real_pickler(tmp_path):
    """argparse.Namespace (rosinality's `args`), OrderedDict._metadata and bytes as Python pickles them."""
    state = OrderedDict(a=1)
    state._metadata = OrderedDict({"": {"version": 1}})
    obj = {"args": argparse.Namespace(size=256, name="ffhq"), "state": state, "b": b"ab", "e": b"", "t": (1.5,)}
    got = load(write_zip(tmp_path / "args.pt", pickle.dumps(obj, protocol=2), {}))
    assert got["args"] == {"size": 256, "name": "ffhq"} and isinstance(got["args"], dict)
    assert got["state"] == state and got["state"]._metadata == state._metadata
    assert (got["b"], got["e"], got["t"]) == (b"ab", b"", (1.5,))


# --- hostile and broken files


class Evil:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {self.canary}",)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "stack_global", "legacy_main", "legacy_first"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    canary = tmp_path / "pwned"
    evil = {
        "os.system": pkl(g("os", "system") + tup(s(f"touch {canary}")) + b"R"),
        "builtins.eval": pkl(g("builtins", "eval") + tup(s(f"open({str(canary)!r}, 'w')")) + b"R"),
        "stack_global": pickle.dumps({"x": Evil(canary)}, protocol=4),
    }
    if kind.startswith("legacy"):
        payload = pickle.dumps(Evil(canary), protocol=2)
        path = tmp_path / "model.pt"
        if kind == "legacy_first":
            path.write_bytes(payload)
        else:
            write_legacy(path, payload, {})
        fragment = "refusing to unpickle global"
    else:
        path = write_zip(tmp_path / "model.pt", evil[kind], {})
        fragment = f"refusing to unpickle global '{kind if '.' in kind else 'posix.system'}'"
    assert_refused(path, fragment, "only tensors, dicts and plain values are allowed")
    assert not canary.exists()


@pytest.mark.parametrize("name", ["numpy.core.multiarray._reconstruct", "torch.load", "builtins.getattr",
                                  "torch._utils._rebuild_device_tensor_from_numpy", "copyreg._reconstructor"])
def test_other_globals_are_refused(tmp_path, name):
    module, attr = name.rsplit(".", 1)
    assert_refused(write_zip(tmp_path / "g.pt", pkl(g(module, attr)), {}), f"'{name}'")


def test_allowlisted_callables_reject_misuse(tmp_path):
    bad = {"enc": g("_codecs", "encode") + tup(s("x"), s("rot13")) + b"R",
           "ns": g("torch._utils", "_rebuild_tensor_v2") + tup(s("not a storage"), i(0), tup(), tup()) + b"R"}
    assert_refused(write_zip(tmp_path / "a.pt", pkl(bad["enc"]), {}), "malformed bytes")
    assert_refused(write_zip(tmp_path / "b.pt", pkl(bad["ns"]), {}), "does not refer to a storage")


def test_broken_files(tmp_path):
    good = tmp_path / "good.pt"
    save({"w": np.arange(1000, dtype=np.float32)}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    assert_refused(tmp_path / "trunc.pt", "corrupt or truncated zip archive")
    save({"w": np.arange(1000, dtype=np.float32)}, tmp_path / "old.pt", legacy=True)
    legacy = (tmp_path / "old.pt").read_bytes()
    (tmp_path / "trunc_old.pt").write_bytes(legacy[:-10])
    assert_refused(tmp_path / "trunc_old.pt", "truncated")
    (tmp_path / "trunc_pickle.pt").write_bytes(legacy[:60])
    assert_refused(tmp_path / "trunc_pickle.pt", "truncated pickle")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    assert_refused(tmp_path / "random.pt", "not a PyTorch checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert_refused(tmp_path / "empty.pt", "file is empty")
    assert_refused(tmp_path / "missing.pt", "cannot read file")
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tmp_path / "nodata.pt", "w") as dst:
        for name in src.namelist():
            if name != "good/data/0":
                dst.writestr(name, src.read(name))
    assert_refused(tmp_path / "nodata.pt", "missing storage record 'good/data/0'")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert_refused(tmp_path / "plain.zip", "has no 'readme.txt/data.pkl' record")
    short = dict_(w=tensor("FloatStorage", "0", 10, 4, (2, 4), (4, 1)))
    assert_refused(write_zip(tmp_path / "short.pt", pkl(short), {"0": bytes(40)}), "too short")
    assert_refused(write_zip(tmp_path / "shortrec.pt", pkl(short), {"0": bytes(8)}), "holds 8 bytes, expected 40")
    qint = dict_(w=tensor("QInt8Storage", "0", 4, 0, (4,), (1,)))
    assert_refused(write_zip(tmp_path / "q.pt", pkl(qint), {"0": bytes(4)}),
                   "unsupported tensor dtype 'torch.QInt8Storage'")
    assert_refused(write_zip(tmp_path / "junk.pt", b"\x80\x02junk", {}), "corrupt")
    assert_refused(write_zip(tmp_path / "bo.pt", pkl(b"N"), {}, byteorder=b"middle"), "unknown byteorder")


def test_save_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "out.pt"
    target.write_bytes(b"previous")
    with pytest.raises(CheckpointError, match="cannot save object of type set"):
        save({"w": {1, 2}}, target)
    with pytest.raises(CheckpointError, match="cannot save arrays of dtype object"):
        save([np.array([None])], target)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OSError, match="disk full"):
        save({"w": np.ones(3)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"] and target.read_bytes() == b"previous"


# --- real checkpoints


def flatten_rosinality(ckpt):
    return {**ckpt["g_ema"], "latent_avg": ckpt["latent_avg"]}


@pytest.mark.parametrize("pt, npz, flatten", [
    ("proggan/weights.pt", "proggan/weights.npz", dict),
    ("stylegan2/weights_rosinality.pt", "stylegan2/weights_rosinality.npz", flatten_rosinality),
])
def test_golden_torch_files_match_npz(golden, pt, npz, flatten):
    got, want = flatten(load(golden / pt)), np.load(golden / npz)
    assert sorted(got) == sorted(want.files)
    for key in want.files:
        assert_equal(got[key], want[key])


def test_build_cannot_alter_rebuild_functions(tmp_path):
    """BUILD with slot state on an allowlisted function could rewrite its __defaults__."""
    attack = g("torch._utils", "_rebuild_tensor_v2") + b"N}" + s("__defaults__") + b")s\x86b"
    assert_refused(write_zip(tmp_path / "b.pt", pkl(attack), {}), "malformed pickle")
    good = tmp_path / "good.pt"
    save({"w": np.arange(3, dtype=np.float32)}, good)
    np.testing.assert_array_equal(load(good)["w"], np.arange(3, dtype=np.float32))
