"""Edit files: the official mask decoding bit for bit (../shared/golden), validation messages,
and atomic round trips."""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from jaxrewrite.rewrite import editfile
from jaxrewrite.rewrite.editfile import (EditFileError, Request, decode_mask, encode_mask, parse_edit,
                                         read_edit, to_json, write_edit)

REQUESTS = [(arch, kind) for arch in ("stylegan2", "proggan") for kind in ("edit", "erase")]


def _disk(r=6, size=32, center=(16, 16)):
    y, x = np.mgrid[:size, :size]
    d = np.hypot(y - center[0], x - center[1])
    return np.clip(r + 0.5 - d, 0, 1)  # anti-aliased edge, like the UI's brush


DISK = encode_mask(_disk())
BLACK = encode_mask(np.zeros((32, 32)))


def _request(**changes):
    obj = {"object": [2, DISK], "paste": [5, DISK], "key": [[5, DISK], [0, DISK]]}
    return {k: v for k, v in {**obj, **changes}.items() if v is not None}


def _same(example, pair):
    """An Example equals (image number, mask data URL): same number, same decoded levels."""
    number, url = pair
    return example.image == number and np.array_equal(example.weights(), decode_mask(url))


def _same_request(a, b):
    fields = [(getattr(a, f), getattr(b, f)) for f in ("object", "paste", "query")] + list(zip(a.key, b.key))
    return len(a.key) == len(b.key) and all(
        (x is None and y is None) or (x is not None and y is not None and x.image == y.image
                                      and np.array_equal(x.mask, y.mask)) for x, y in fields)


def _raises(message, obj, kind="edit"):
    with pytest.raises(EditFileError, match=f"^{re.escape(message)}$"):
        parse_edit(obj, kind=kind)


def _golden_masks(golden, arch, kind):
    """(stored field, mask URL, stored arrays) for every mask in a golden request."""
    request = json.loads((golden / arch / f"{kind}_request.json").read_text())
    z = np.load(golden / arch / f"{kind}_zca.npz")
    fields = [k[len("mask_"):-len("_rgba")] for k in z.files if k.startswith("mask_") and k.endswith("_rgba")]
    for field in fields:
        entry = request["key"][int(field[3:])] if field.startswith("key") else request[field]
        yield field, entry[1], {s: z[f"mask_{field}_{s}"] for s in ("rgba", "area_at_k", "area_at_v")}


@pytest.mark.parametrize("arch,kind", REQUESTS)
def test_golden_masks_bit_exact(golden, arch, kind):
    fields = []
    for field, url, stored in _golden_masks(golden, arch, kind):
        fields.append(field)
        np.testing.assert_array_equal(decode_mask(url), stored["rgba"][..., 0].astype(np.float32) / 255)
        for s in ("area_at_k", "area_at_v"):
            decoded = decode_mask(url, stored[s].shape)
            assert decoded.dtype == np.float32
            np.testing.assert_array_equal(decoded, stored[s], err_msg=f"{arch} {kind} {field} {s}")
    expected = {"edit": 5 if arch == "proggan" else 6, "erase": 3}[kind]
    assert len(fields) == expected


@pytest.mark.parametrize("arch,kind", REQUESTS)
def test_golden_requests_parse(golden, arch, kind):
    edit = read_edit(golden / arch / f"{kind}_request.json", kind=kind)
    numbers = {("stylegan2", "edit"): (2, 5, [5, 0, 42]), ("stylegan2", "erase"): (None, 3, [3, 6]),
               ("proggan", "edit"): (1, 6, [6, 3, 77]), ("proggan", "erase"): (None, 4, [4, 7])}
    obj, paste, key = numbers[arch, kind]
    assert (edit.object and edit.object[0]) == obj
    assert edit.paste[0] == paste and [n for n, _ in edit.key] == key
    assert (edit.query is not None) == ((arch, kind) == ("stylegan2", "edit"))


def test_key_defaults_to_paste_and_erase_ignores_object():
    edit = parse_edit(_request(key=None))
    assert edit.key == (edit.paste,) and _same(edit.paste, (5, DISK))
    assert _same(edit.object, (2, DISK))
    erase = parse_edit(_request(object=[-1, "junk"]), kind="erase")
    assert erase.object is None and [n for n, _ in erase.key] == [5, 0] and erase.paste[0] == 5
    assert _same(parse_edit(_request(query=[7, BLACK])).query, (7, BLACK))  # UI-only: may be empty


@pytest.mark.parametrize("obj,message", [
    ([1, 2], "edit: expected a JSON object with 'object' and 'paste' entries, got a 2-element list"),
    (_request(paste=None), "edit: missing 'paste'"),
    (_request(object=None), "edit: missing 'object'"),
    (_request(paste=[5]), "edit: 'paste': expected [image_number, mask], got a 1-element list"),
    (_request(object="x"), "edit: 'object': expected [image_number, mask], got str"),
    (_request(key=[[5, DISK], [-1, DISK]]), "edit: 'key'[1]: image number must be >= 0, got -1"),
    (_request(paste=[5.0, DISK]), "edit: 'paste': image number must be an integer, got 5.0"),
    (_request(paste=[True, DISK]), "edit: 'paste': image number must be an integer, got True"),
    (_request(key=[[5, DISK], [0, "data:text/plain;base64,AAAA"]]),
     "edit: 'key'[1]: mask is not a PNG data URL ('data:image/png;base64,...')"),
    (_request(paste=[5, None]), "edit: 'paste': mask is not a PNG data URL ('data:image/png;base64,...')"),
    (_request(paste=[5, "data:image/png;base64,abc"]),
     "edit: 'paste': mask has invalid base64 (Incorrect padding)"),
    (_request(paste=[5, "data:image/png;base64,a$bc"]),
     "edit: 'paste': mask has invalid base64 (Only base64 data is allowed)"),
    (_request(paste=[5, "data:image/png;base64," + base64.b64encode(b"not a png").decode()]),
     "edit: 'paste': mask data is not a readable image"),
    (_request(object=[2, BLACK]), "edit: 'object': mask is empty (nothing painted)"),
    (_request(key=[]), "edit: 'key' must be a non-empty list of [image_number, mask] pairs"),
    (_request(key=[5, DISK]), "edit: 'key'[0]: expected [image_number, mask], got int"),
])
def test_errors(obj, message):
    _raises(message, obj)


def test_erase_errors():
    _raises("edit: expected a JSON object with 'paste' entries, got str", "x", kind="erase")
    _raises("edit: missing 'paste'", {"object": [1, DISK]}, kind="erase")
    with pytest.raises(ValueError, match="kind must be one of edit, erase, zero"):
        parse_edit(_request(), kind="copy")


def test_truncated_png_is_not_an_image():
    png = base64.b64decode(DISK.split(",", 1)[1])
    url = "data:image/png;base64," + base64.b64encode(png[:60]).decode()
    _raises("edit: 'paste': mask data is not a readable image", _request(paste=[5, url]))


def test_other_image_types_accepted():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(buf, format="BMP")
    url = "data:image/bmp;base64," + base64.b64encode(buf.getvalue()).decode()
    assert _same(parse_edit(_request(paste=[5, url])).paste, (5, url))
    np.testing.assert_array_equal(decode_mask(url), np.ones((8, 8), np.float32))


def test_read_errors(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(EditFileError, match=f"^{re.escape(str(missing))}: no such file$"):
        read_edit(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"paste": [1,\n}')
    with pytest.raises(EditFileError, match=f"^{re.escape(str(bad))}: malformed JSON at line 2, column 1: "):
        read_edit(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(EditFileError, match=f"^{re.escape(str(latin))}: not UTF-8 text \\(invalid byte at offset 7\\)$"):
        read_edit(latin)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_request(key=[[5, DISK], [3, BLACK]])))
    with pytest.raises(EditFileError, match=f"^{re.escape(str(wrong))}: 'key'\\[1\\]: mask is empty"):
        read_edit(wrong)


def test_encode_mask():
    """Grey levels in RGB and alpha: the official decoder reads back the same 8-bit levels."""
    m = _disk(r=4, size=16, center=(6, 9))
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(encode_mask(m).split(",", 1)[1]))))
    assert rgba.shape == (16, 16, 4) and rgba.dtype == np.uint8
    levels = np.round(m * 255)
    for channel in range(4):
        np.testing.assert_array_equal(rgba[..., channel], levels)
    np.testing.assert_array_equal(decode_mask(encode_mask(m)), (levels / 255).astype(np.float32))
    b = np.zeros((5, 7), bool)
    b[1:3, 2:6] = True
    np.testing.assert_array_equal(decode_mask(encode_mask(b)), b.astype(np.float32))
    assert decode_mask(encode_mask(b), (3, 2)).shape == (3, 2)  # size is (h, w)
    for bad, message in ((np.ones(4), "must be a non-empty"), (np.zeros((0, 3)), "must be a non-empty"),
                         (np.full((2, 2), 1.5), "must lie in"), (np.full((2, 2), np.nan), "must lie in")):
        with pytest.raises(ValueError, match=message):
            encode_mask(bad)


def test_write_read_round_trip(tmp_path):
    edit = parse_edit(_request(query=[5, DISK]))
    path = write_edit(edit, tmp_path / "e.json")
    assert _same_request(read_edit(path), edit)
    assert json.loads(path.read_text()) == {"object": [2, DISK], "paste": [5, DISK], "query": [5, DISK],
                                            "key": [[5, DISK], [0, DISK]]}
    erase = parse_edit(_request(key=None), kind="erase")
    assert _same_request(read_edit(write_edit(erase, path), kind="erase"), erase)
    assert to_json(erase) == {"paste": [5, DISK]}  # the key is the paste's default: left out, as the official code defaults it
    assert list(tmp_path.iterdir()) == [path]
    assert isinstance(edit, Request)


@pytest.mark.parametrize("stage", ["dumps", "replace"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, stage):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    edit = parse_edit(_request())
    new = tmp_path / "new.json"
    old = write_edit(edit, tmp_path / "old.json")
    before = old.read_bytes()
    from jaxrewrite import atomic

    monkeypatch.setattr(*((editfile.json, "dumps", boom) if stage == "dumps" else (atomic.os, "replace", boom)))
    for path in (new, old):
        with pytest.raises(OSError, match="disk full"):
            write_edit(parse_edit(_request(key=None)), path)
    assert sorted(tmp_path.iterdir()) == [old]
    assert old.read_bytes() == before
