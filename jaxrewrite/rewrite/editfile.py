"""Edit files: the official rewriting UI's JSON requests, with their masks as PNG data URLs.

An edit file is a dict with `object` and `paste` entries, each `[image_number, mask]`, an
optional `key` (a non-empty list of such pairs, the context examples; `[paste]` when absent)
and an optional `query` (used only by the UI). An erase request needs only `paste` (and
optionally `key`). Other top-level entries are ignored, since the UI may add some.

Masks are kept as data URLs and decoded at whatever feature-map size a layer needs, exactly as
the official code does it (see `decode_mask`), so decoded masks match it bit for bit.
"""

import base64
import binascii
import io
import json
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write

_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,")
_PAIR = "[image_number, mask]"


class EditFileError(ValueError):
    """A malformed edit request; the message is one line naming the file and the entry."""


def _rgb(url):
    """The mask image as RGB: the official decoder drops alpha, so only RGB carries the mask."""
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise EditFileError("mask is not a PNG data URL ('data:image/png;base64,...')")
    try:
        data = base64.b64decode(url[match.end():], validate=True)
    except binascii.Error as e:
        raise EditFileError(f"mask has invalid base64 ({e})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise EditFileError("mask data is not a readable image") from None


def decode_mask(url, size=None):
    """A mask data URL as float32 [h, w] weights in [0, 1] (> 0 means selected).

    Reproduces the official decoder bit for bit: RGB conversion, PIL bilinear resize of the
    8-bit image (area-aware when shrinking) to `size` = (h, w), red channel / 255; at native
    resolution when `size` is None. The official code passes (h, w) where PIL expects (w, h),
    which is the same for its square maps; we pass (w, h).
    """
    im = _rgb(url)
    if size is not None:
        h, w = size
        im = im.resize((w, h), resample=Image.Resampling.BILINEAR)
    return np.asarray(im)[..., 0].astype(np.float32) / np.float32(255)


def encode_mask(mask):
    """A [H, W] mask in [0, 1] (or bool) as an RGBA PNG data URL like the UI's.

    RGB is white wherever mask > 0 and black elsewhere; alpha is round(mask * 255), the UI's
    anti-aliased coverage. The decoder reads RGB only, so `decode_mask(encode_mask(m))` is
    exactly 1.0 where m > 0 and 0.0 elsewhere: partial weights come only from resizing.
    """
    m = np.asarray(mask, np.float64)
    if m.ndim != 2 or m.size == 0 or not ((m >= 0) & (m <= 1)).all():
        raise ValueError(f"mask must be a non-empty [H, W] array with values in [0, 1], got shape {m.shape}")
    rgba = np.empty(m.shape + (4,), np.uint8)
    rgba[..., :3] = np.where(m > 0, 255, 0)[..., None]
    rgba[..., 3] = np.round(m * 255)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Edit:
    """A validated request: (image_number, mask data URL) entries; `key` is already defaulted."""

    object: tuple[int, str] | None
    paste: tuple[int, str]
    key: tuple[tuple[int, str], ...]
    query: tuple[int, str] | None = None


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"a {len(value)}-element list"
    return type(value).__name__


def _entry(value, allow_empty=False):
    """One validated (image_number, mask) pair; raises EditFileError without location."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise EditFileError(f"expected {_PAIR}, got {_describe(value)}")
    number, url = value
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        raise EditFileError(f"image number must be an integer, got {number!r}")
    if number < 0:
        raise EditFileError(f"image number must be >= 0, got {number}")
    if not decode_mask(url).any() and not allow_empty:
        raise EditFileError("mask is empty (nothing painted)")
    return int(number), url


def parse_edit(obj, *, name="edit", kind="edit"):
    """Validate a loaded JSON edit request ('edit': object + paste; 'erase': paste, any object
    ignored) into an Edit. `key` and `query` may be absent or null. The query, which only
    the UI uses, may be an empty mask."""
    if kind not in ("edit", "erase"):
        raise ValueError(f"kind must be 'edit' or 'erase', got {kind!r}")
    required = ("object", "paste") if kind == "edit" else ("paste",)
    if not isinstance(obj, dict):
        entries = " and ".join(map(repr, required))
        raise EditFileError(f"{name}: expected a JSON object with {entries} entries, got {_describe(obj)}")
    for field in required:
        if field not in obj:
            raise EditFileError(f"{name}: missing {field!r}")

    def entry(where, value, allow_empty=False):
        try:
            return _entry(value, allow_empty)
        except EditFileError as e:
            raise EditFileError(f"{name}: {where}: {e}") from None

    obj_entry = entry("'object'", obj["object"]) if kind == "edit" else None
    paste = entry("'paste'", obj["paste"])
    keys = obj.get("key")
    if keys is None:
        key = (paste,)
    elif isinstance(keys, (list, tuple)) and keys:
        key = tuple(entry(f"'key'[{i}]", k) for i, k in enumerate(keys))
    else:
        raise EditFileError(f"{name}: 'key' must be a non-empty list of {_PAIR} pairs")
    query = obj.get("query")
    query = None if query is None else entry("'query'", query, allow_empty=True)
    return Edit(object=obj_entry, paste=paste, key=key, query=query)


def read_edit(path, *, kind="edit"):
    """Read and validate an edit file; every problem is an EditFileError naming `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EditFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise EditFileError(f"{path}: not UTF-8 text (invalid byte at offset {e.start})") from None
    except OSError as e:
        raise EditFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise EditFileError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    return parse_edit(obj, name=str(path), kind=kind)


def to_json(edit):
    """The official JSON form: entries as lists, absent object/query left out."""
    entries = {"object": edit.object, "paste": edit.paste, "query": edit.query}
    out = {field: list(value) for field, value in entries.items() if value is not None}
    out["key"] = [list(k) for k in edit.key]
    return out


def write_edit(edit, path):
    """Write `edit` in the official format, atomically (a same-directory temporary file
    replaces `path`), so a failed write never leaves a partial file or clobbers the old one.
    Returns the path."""
    path = Path(path)
    atomic_write(path, lambda f: f.write(json.dumps(to_json(edit), indent=1) + "\n"), mode="w")
    return path
