"""Edit requests: what to copy, where to paste it, which context the rule applies to.

A `Request` has `object` and `paste` entries, each an `Example` (an image, given by its image
number or as an explicit z vector, and a mask), the `key` context examples (`[paste]` when
absent) and a `query` (used only by a UI). A copy-paste edit needs object and paste, an erase
paste, a zero the key. Requests come from numpy masks (`Request.from_arrays`), from PNG files
(`read_png_mask`) or from the official UI's JSON (`parse_edit`, `read_edit`; other top-level
entries are ignored, since the UI may add some), and go back to that JSON (`to_json`,
`write_edit`).

A mask is kept as 8-bit levels at its own resolution (0 unselected .. 255 fully selected), the
red channel the official decoder reads from its PNG data URLs, and is resized to whatever
feature-map size a layer needs exactly as that decoder does it (PIL bilinear of the 8-bit
image, then / 255): the red channel resized alone equals the RGB image resized (checked on
all the official files), so a JSON request decodes bit for bit as the official code decodes it.
"""

import base64
import binascii
import io
import json
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..atomic import atomic_write
from ..zdataset import MAX_IMAGE_NUMBER

_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,")
_PAIR = "[image_number, mask]"
KINDS = ("edit", "erase", "zero")
REQUIRED = {"edit": ("object", "paste"), "erase": ("paste",), "zero": ("key",)}
MOSTLY_SELECTED = 0.9  # a mask selecting more of its image than this is worth a warning


class EditFileError(ValueError):
    """A malformed edit request; the message is one line naming the file and the entry."""


def _image(data, what):
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise EditFileError(f"{what} is not a readable image") from None


def _url_levels(url):
    """The red channel of a mask data URL: the official decoder converts to RGB (dropping alpha)."""
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise EditFileError("mask is not a PNG data URL ('data:image/png;base64,...')")
    try:
        data = base64.b64decode(url[match.end():], validate=True)
    except binascii.Error as e:
        raise EditFileError(f"mask has invalid base64 ({e})") from None
    return np.asarray(_image(data, "mask data").convert("RGB"))[..., 0].copy()


def png_levels(data):
    """Mask levels of PNG (or any image) bytes painted by a user: the red channel, as the official
    decoder reads it, over a black background where the image has transparency, so that
    transparent pixels are unselected whatever their colour (a white brush on a transparent
    layer selects only where it painted)."""
    im = _image(data, "mask file")
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        return ((rgba[..., 0] * rgba[..., 3] + 127) // 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"))[..., 0].copy()


def read_png_mask(path):
    """`png_levels` of a file; a missing or unreadable file is an EditFileError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EditFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return png_levels(data)
    except EditFileError as e:
        raise EditFileError(f"{path}: {e}") from None


def mask_levels(mask):
    """A mask array as 8-bit levels: bool (True = selected), float in [0, 1] (the weight of each
    pixel, rounded to 1/255) or uint8 levels; [H, W]."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise EditFileError(f"mask must be a non-empty [H, W] array, got shape {m.shape}")
    if m.dtype == np.uint8:
        return m.copy()
    if m.dtype == bool:
        return np.where(m, 255, 0).astype(np.uint8)
    m = m.astype(np.float64)
    if not (np.isfinite(m).all() and (m >= 0).all() and (m <= 1).all()):
        raise EditFileError("mask values must lie in [0, 1] (or be bool / uint8 levels)")
    return np.round(m * 255).astype(np.uint8)


def resize_levels(levels, size=None):
    """float32 [h, w] weights in [0, 1] (> 0 selected) of 8-bit mask levels at `size` = (h, w),
    resized as the official decoder does; native resolution when `size` is None."""
    im = Image.fromarray(np.asarray(levels, np.uint8), "L")
    if size is not None:
        im = im.resize((size[1], size[0]), resample=Image.Resampling.BILINEAR)  # PIL wants (w, h)
    return np.asarray(im).astype(np.float32) / np.float32(255)


def decode_mask(url, size=None):
    """A mask data URL as float32 [h, w] weights, bit for bit as the official decoder."""
    return resize_levels(_url_levels(url), size)


def encode_mask(mask):
    """A mask (bool, float in [0, 1] or uint8 levels) as an RGBA PNG data URL that the official
    decoder reads back to the same levels: grey levels in RGB, the same levels as alpha (so the
    UI shows it as painted on a transparent layer)."""
    levels = mask_levels(mask)
    rgba = np.repeat(levels[..., None], 4, axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Example(NamedTuple):
    """One painted image: `image` is an image number (row of the z data set) or a z vector
    [z_dim]; `mask` its 8-bit levels [H, W] at any resolution."""

    image: int | np.ndarray
    mask: np.ndarray

    def weights(self, size=None):
        return resize_levels(self.mask, size)

    @property
    def number(self):
        """The image number, or None for an explicit z vector."""
        return None if isinstance(self.image, np.ndarray) else self.image


def example(image, mask, *, allow_empty=False):
    """An Example from an image number or z vector and a mask array; an empty mask is an error."""
    if isinstance(image, (list, tuple, np.ndarray)):
        image = np.asarray(image, np.float32)
        if image.ndim != 1 or not np.isfinite(image).all():
            raise EditFileError(f"a z vector must be a finite 1-D array, got shape {image.shape}")
    elif isinstance(image, bool) or not isinstance(image, numbers.Integral):
        raise EditFileError(f"image number must be an integer, got {image!r}")
    elif image < 0:
        raise EditFileError(f"image number must be >= 0, got {image}")
    elif image > MAX_IMAGE_NUMBER:
        raise EditFileError(f"image number must be <= {MAX_IMAGE_NUMBER:,}, got {image:,}")
    else:
        image = int(image)
    levels = mask_levels(mask)
    if not allow_empty and not levels.any():
        raise EditFileError("mask is empty (nothing painted)")
    return Example(image, levels)


@dataclass(frozen=True, eq=False)
class Request:
    """A validated request; `key` defaults to `(paste,)`."""

    object: Example | None = None
    paste: Example | None = None
    key: tuple = ()
    query: Example | None = None

    def __post_init__(self):
        if not self.key and self.paste is not None:
            object.__setattr__(self, "key", (self.paste,))
        object.__setattr__(self, "key", tuple(self.key))

    @classmethod
    def from_arrays(cls, object=None, paste=None, key=None, query=None):
        """From `(image, mask)` pairs: image an image number or a z vector, mask a bool or float
        [H, W] array at any resolution; `key` a list of such pairs."""
        def entry(where, pair, allow_empty=False):
            if pair is None:
                return None
            try:
                return example(*pair, allow_empty=allow_empty)
            except (EditFileError, TypeError) as e:
                raise EditFileError(f"{where}: {e}") from None

        keys = tuple(entry(f"key[{i}]", p) for i, p in enumerate(key or ()))
        return cls(entry("object", object), entry("paste", paste), keys, entry("query", query, True))

    def check(self, kind):
        """The request itself if it has what `kind` ('edit', 'erase', 'zero') needs."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        for name in REQUIRED[kind]:
            if not getattr(self, name):
                raise EditFileError(f"missing {name!r}")
        return self

    def examples(self):
        """(name, Example) of every entry, the query included."""
        named = [("object", self.object), ("paste", self.paste)]
        named += [(f"key[{i}]", k) for i, k in enumerate(self.key) if k is not self.paste]
        return [(n, e) for n, e in named + [("query", self.query)] if e is not None]

    def warnings(self):
        """One line per mask that selects most of its image (rarely what a user means)."""
        return [f"the {name} mask selects {share:.0%} of its image" for name, e in self.examples()
                if name != "query" and (share := float((e.mask > 0).mean())) > MOSTLY_SELECTED]


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"a {len(value)}-element list"
    return type(value).__name__


def _entry(value, allow_empty=False):
    """One validated JSON (image_number, mask URL) pair; raises EditFileError without location."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise EditFileError(f"expected {_PAIR}, got {_describe(value)}")
    number, url = value
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        raise EditFileError(f"image number must be an integer, got {number!r}")
    return example(number, _url_levels(url), allow_empty=allow_empty)


def parse_entries(obj, *, name="edit", kind="edit"):
    """The validated entries of a loaded JSON request, as `Request` keywords; `key` only where
    the file gives one. `object` is read for copy-paste edits only (an erase or zero ignores
    it); `key` and `query` may be absent or null; the query, which only the UI uses, may be an
    empty mask. Whether the entries suffice for `kind` is `Request.check`'s to say."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(obj, dict):
        entries = " and ".join(map(repr, REQUIRED[kind]))
        raise EditFileError(f"{name}: expected a JSON object with {entries} entries, got {_describe(obj)}")
    if not any(obj.get(k) is not None for k in ("object", "paste", "key")):
        raise EditFileError(f"{name}: not an edit request (no 'object', 'paste' or 'key' entry)")

    def entry(where, value, allow_empty=False):
        try:
            return None if value is None else _entry(value, allow_empty)
        except EditFileError as e:
            raise EditFileError(f"{name}: {where}: {e}") from None

    keys = obj.get("key")
    if keys is not None and not (isinstance(keys, (list, tuple)) and keys):
        raise EditFileError(f"{name}: 'key' must be a non-empty list of {_PAIR} pairs")
    return {"object": entry("'object'", obj.get("object")) if kind == "edit" else None,
            "paste": entry("'paste'", obj.get("paste")),
            "key": tuple(entry(f"'key'[{i}]", k) for i, k in enumerate(keys or ())),
            "query": entry("'query'", obj.get("query"), allow_empty=True)}


def parse_edit(obj, *, name="edit", kind="edit"):
    """A Request from a loaded JSON request, with what `kind` needs ('edit': object + paste;
    'erase': paste; 'zero': key, or paste as its default)."""
    request = Request(**parse_entries(obj, name=name, kind=kind))
    try:
        return request.check(kind)
    except EditFileError as e:
        raise EditFileError(f"{name}: {e}") from None


def read_json(path):
    """The JSON object of a file; every problem is an EditFileError naming `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EditFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise EditFileError(f"{path}: not UTF-8 text (invalid byte at offset {e.start})") from None
    except OSError as e:
        raise EditFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise EditFileError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def read_edit(path, *, kind="edit"):
    """Read and validate an edit file; every problem is an EditFileError naming `path`."""
    return parse_edit(read_json(path), name=str(path), kind=kind)


def to_json(request):
    """The official JSON form: `[image_number, data URL]` entries, absent object/paste/query left
    out, and `key` too where it is the paste's default (as the official code defaults it).
    Requests with explicit z vectors have no official form."""
    def pair(where, e):
        if e.number is None:
            raise EditFileError(f"{where}: an explicit z vector has no place in the official JSON (image numbers only)")
        return [e.number, encode_mask(e.mask)]

    out = {f: pair(f, e) for f in ("object", "paste", "query") if (e := getattr(request, f)) is not None}
    if not (len(request.key) == 1 and request.key[0] is request.paste):  # a key given, not the default
        out["key"] = [pair(f"key[{i}]", k) for i, k in enumerate(request.key)]
    return out


def write_edit(request, path, extra=None):
    """Write `request` in the official format (plus top-level `extra` entries, such as the
    `jaxrewrite` settings), atomically. Returns the path."""
    text = json.dumps({**to_json(request), **(extra or {})}, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")
    return Path(path)


# The `jaxrewrite` entry an edit file may carry (the official code ignores it): settings the
# command line uses where its flags are not given, and a world's rule (source/target classes).
SETTINGS = {"layer": str, "rank": int, "lr": float}


def settings(obj, name="edit"):
    """The `jaxrewrite` settings of a loaded edit file ({} where it has none), type-checked."""
    entry = obj.get("jaxrewrite") if isinstance(obj, dict) else None
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise EditFileError(f"{name}: 'jaxrewrite' must be an object of settings")
    out = {}
    for key, kind in SETTINGS.items():
        if key in entry:
            value = entry[key]
            ok = isinstance(value, str) if kind is str else (
                isinstance(value, numbers.Real) and not isinstance(value, bool)
                and (kind is float or float(value).is_integer()))
            if not ok:
                raise EditFileError(f"{name}: 'jaxrewrite' {key!r} must be a {kind.__name__}, got {value!r}")
            out[key] = kind(value)
    return out
