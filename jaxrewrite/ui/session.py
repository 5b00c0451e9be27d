"""What the browser UI works on: one model being rewritten, its history of applied edits, and
the views the page asks for (samples, the pasted goal, key searches, before/after grids).

Every edit runs through `jaxrewrite.edit`, as the command line's; HTTP lives in `server.py`.
Views read the current model without a lock (models are immutable values); everything that
changes the state is called by the server under its one lock.
"""

import base64
import io
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from .. import modelfile, progress, xla, zoo
from ..images import grid, to_uint8
from ..modelfile import Model
from ..rewrite import editfile, keys, pipeline, update
from ..rewrite.editfile import Request
from ..rewrite.pipeline import EditOptions
from ..rewrite.rewriter import Rewriter, resolutions, rewritable
from ..zdataset import MAX_IMAGE_NUMBER, parse_ranges, z_for

CHUNK = 16  # images per compiled call: one program serves every page, search and grid
GRID = 32  # further samples shown before/after each edit
GRID_FIRST = 10_000  # their pool starts here, beyond the statistics' images (0..stats_samples-1)
GRID_POOL = 256  # ... and the grid shows the GRID of them where the context fires most
SEARCH_POOL = 1000  # images a search ranks (the official UI's default data set size)
LEVEL = 0.999  # the highlight shows where the key fires above this quantile over the search pool
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # files in the work folder: no separators, no '..'
MAX_NUMBERS = 64  # images one request may render


def data_url(image):
    """A uint8 [H, W, 3] image as a PNG data URL."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def parse_numbers(value):
    """Image numbers from a list or a '200-212,300' string, each in 0..MAX_IMAGE_NUMBER."""
    if isinstance(value, str):
        out = parse_ranges(value, MAX_NUMBERS)
    elif isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        out = list(value)
    else:
        raise ValueError("numbers must be a list of integers or a string such as '200-212,300'")
    if not out or len(out) > MAX_NUMBERS:
        raise ValueError(f"give 1 to {MAX_NUMBERS} image numbers, got {len(out)}")
    if any(not 0 <= n <= MAX_IMAGE_NUMBER for n in out):
        raise ValueError(f"image numbers run from 0 to {MAX_IMAGE_NUMBER:,}")
    return out


@dataclass(frozen=True)
class Applied:
    """One applied edit: the model it left and what the page shows of it."""

    model: Model
    summary: dict


@dataclass
class Query:
    """The key the page searched with: a direction over a layer's input channels and the level
    above which it 'fires' (for the highlight)."""

    layer: str
    direction: np.ndarray
    level: float


@dataclass
class Session:
    model: Model  # the model as loaded (Revert returns to it)
    name: str = "model"
    workdir: Path = Path(".")
    cache_dir: str | None = None
    label: int | None = None  # conditional models: the class of every image
    seed: int = 1
    stats_samples: int = 1000
    history: list = field(default_factory=list)
    query: Query | None = None

    def __post_init__(self):
        self.workdir = Path(self.workdir).resolve()
        self.options = {} if self.label is None else {"label": self.label}
        self.gen = self.model.generator(**self.model.official_options(1), **self.options)
        self.targets = rewritable(self.gen)
        self.shapes = resolutions(self.gen, self.model.params, self.targets)
        gen = self.gen
        self._render = xla.jit(lambda p, z: gen(p, z))
        self._heat = {}  # layer -> jit (params, z, d) -> heat maps [n, kh, kw]
        self._after = {}  # layer -> jit (params, value bag) -> image
        self._rewriters = {}  # (id of model, layer) -> Rewriter, for the current model
        self.job_lock = threading.Lock()  # held by the one edit that may run at a time

    # -- state ---------------------------------------------------------------------------------

    @property
    def current(self):
        return self.history[-1].model if self.history else self.model

    def rewriter(self, layer, model=None):
        """A Rewriter of the current model (or `model`) and a rewritable `layer`, reused while
        the model does not change: its statistics and compiled programs are computed once."""
        model = model or self.current
        if layer not in self.targets:
            raise ValueError(f"{layer!r} is not a rewritable layer; rewritable: {', '.join(self.targets)}")
        key = (id(model), layer)
        if key not in self._rewriters:
            live = {id(a.model) for a in self.history} | {id(self.model)}
            self._rewriters = {k: v for k, v in self._rewriters.items() if k[0] in live}
            self._rewriters[key] = Rewriter(model, layer, stats_samples=self.stats_samples, seed=self.seed,
                                            cache_dir=self.cache_dir, show_progress=True, options=self.options)
        return self._rewriters[key]

    def info(self):
        d = EditOptions()
        return {
            "name": self.name, "arch": self.model.arch, "size": int(self._render_shape()[0]),
            "layers": [{"name": b, "keys": list(k), "values": list(v), "channels": int(c)}
                       for b, (k, v, c) in self.shapes.items()],
            "methods": [{"name": n, "linear_only": m.linear_only} for n, m in update.METHODS.items()],
            "key_methods": list(keys.KEY_METHODS),
            "defaults": {"rank": d.rank, "niter": d.niter, "piter": d.piter, "lr": d.lr, "drank": d.drank,
                         "method": d.method, "key_method": d.key_method},
            "max_image": MAX_IMAGE_NUMBER, "shipped": self.info_shipped(), "saved": self.saved(),
            "history": self.summaries(), "checkpoint": self.checkpoint_name(),
        }

    def summaries(self):
        return [a.summary for a in self.history]

    def undo(self):
        if not self.history:
            raise ValueError("nothing to undo")
        self.history.pop()
        return self.summaries()

    def revert(self):
        self.history.clear()
        return self.summaries()

    # -- views ---------------------------------------------------------------------------------

    def _render_shape(self):
        return jax.eval_shape(self._render, self.model.params, jnp.zeros((1, self.gen.z_dim))).shape[1:]

    def render(self, params, numbers):
        """uint8 images [n, H, W, 3] of image numbers, CHUNK per compiled call."""
        z = z_for(numbers, self.gen.z_dim, self.seed)
        return np.concatenate([to_uint8(np.asarray(self._render(params, pad(z[i:i + CHUNK]))))[:len(z[i:i + CHUNK])]
                               for i in range(0, len(z), CHUNK)])

    def heat(self, params, layer, numbers, direction):
        """How strongly `direction` fires at each key pixel of these images: [n, kh, kw]."""
        if layer not in self._heat:
            gen, first = self.gen, self.targets[layer][0]
            self._heat[layer] = xla.jit(lambda p, z, d: gen.upto(p, gen.inputs(z), first)["fmap"] @ d)
        z = z_for(numbers, self.gen.z_dim, self.seed)
        d = jnp.asarray(direction, jnp.float32)
        return np.concatenate([np.asarray(self._heat[layer](params, pad(z[i:i + CHUNK]), d))[:len(z[i:i + CHUNK])]
                               for i in range(0, len(z), CHUNK)])

    def images(self, numbers, original=False, highlight=False):
        """The page's canvases: PNG data URLs of image numbers, of the original or the current
        model, with the searched key's firing region lit where `highlight`."""
        numbers = parse_numbers(numbers)
        model = self.model if original else self.current
        out = self.render(model.params, numbers)
        q = self.query if highlight else None
        if q is not None:
            heat = self.heat(model.params, q.layer, numbers, q.direction)
            out = np.stack([lit(img, h > q.level) for img, h in zip(out, heat)])
        return {"numbers": numbers, "images": [data_url(img) for img in out], "highlight": q is not None}

    def request(self, obj, kind):
        """A Request from the page's official-format JSON (every problem one line)."""
        entries = editfile.parse_entries(obj, name="request", kind=kind)
        return Request(**entries).check(kind)

    def paste_view(self, layer, obj):
        """The goal the edit would fit: the object's features pasted into the paste image at
        `layer`, rendered by the rest of the generator; and the paste box in image pixels."""
        request = self.request(obj, "edit")
        rw = self.rewriter(layer)
        rw.check(request, "edit")
        bag, (t, l, b, r) = rw.pasted(request)
        if layer not in self._after:
            gen, last = self.gen, self.targets[layer][1]
            self._after[layer] = xla.jit(lambda p, bag: gen.image(gen.after(p, bag, last)))
        image = to_uint8(np.asarray(self._after[layer](rw.device_params, bag)))[0]
        sy, sx = image.shape[0] / rw.v_hw[0], image.shape[1] / rw.v_hw[1]
        box = [int(t * sy), int(l * sx), int(b * sy), int(r * sx)]
        return {"image": data_url(outline(image, box)), "box": box}

    def search(self, layer, obj, source="context", count=12, key_method="zca"):
        """Rank the first SEARCH_POOL images by how strongly a key fires anywhere in them: the
        context's first direction (`source` 'context', from the request's key), or the
        covariance-adjusted mean key of the selection ('selection', the request's `query`),
        as the official UI's Search and Match Sel. Sets the key the highlight shows."""
        if source not in ("context", "selection"):
            raise ValueError("source must be 'context' or 'selection'")
        if not isinstance(count, int) or not 1 <= count <= MAX_NUMBERS:
            raise ValueError(f"count must be an integer from 1 to {MAX_NUMBERS}")
        rw = self.rewriter(layer)
        if source == "context":
            request = self.request(obj, "zero")  # needs a key, nothing else
            rw.check(request, "zero", 1, None, key_method)
            rw.statistics(key_method, "zero")
            direction = rw.key(request.key, 1, key_method)[0]
        else:
            if obj.get("query") is None:
                raise ValueError("request: give the selection to match as 'query'")
            (selected,) = editfile.parse_entries({"key": [obj["query"]]}, name="request 'query'", kind="zero")["key"]
            ((k, w),) = rw.key_examples([selected])
            mean = (k * w[:, None]).sum(0) / (1e-10 + w.sum())
            direction = np.linalg.lstsq(np.asarray(rw.c_matrix, np.float64), mean.astype(np.float64), rcond=None)[0]
            direction = (direction / (1e-10 + np.linalg.norm(direction))).astype(np.float32)
        pool = list(range(SEARCH_POOL))
        heat = self.heat(rw.device_params, layer, pool, direction)
        self.query = Query(layer, direction, float(np.quantile(heat, LEVEL)))
        best = np.argsort(-heat.reshape(len(pool), -1).max(1), kind="stable")[:count]
        top = np.argsort(-np.abs(direction), kind="stable")[:10]
        return {"numbers": [int(pool[i]) for i in best], "units": [int(u) for u in top], "level": self.query.level}

    # -- edits ---------------------------------------------------------------------------------

    def edit_options(self, kind, settings):
        """EditOptions from the page's settings (every value checked by EditOptions)."""
        allowed = {"rank", "niter", "piter", "lr", "method", "key_method", "drank", "amount"}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        return EditOptions(kind=kind, stats_samples=self.stats_samples, seed=self.seed, label=self.label,
                           **settings)

    def prepare(self, kind, layer, obj, settings):
        """Everything an edit needs, checked before any work (raises on bad input)."""
        if kind not in editfile.KINDS:
            raise ValueError(f"kind must be one of {', '.join(editfile.KINDS)}")
        options = self.edit_options(kind, settings)
        request = self.request(obj, kind)
        rw = self.rewriter(layer)
        if kind != "zero":
            rw.check_method(options.method)
        rw.check(request, kind, options.rank, options.drank, options.key_method)
        return layer, request, options

    def execute(self, layer, request, options, report=None):
        """Apply a prepared edit to the current model (the caller holds `job_lock`); the new
        summary, with a before/after grid of further samples. `report(desc, done, total)`
        hears the statistics' and the optimisation's progress."""
        before = self.current
        rw = self.rewriter(layer, before)
        with progress.listen(report or (lambda *a: None)):
            result = pipeline.edit(before, layer, request, options, rewriter=rw, show_progress=True)
        start = time.time()
        view = self.grid(before, result.model, layer, result.context[0])
        summary = {
            "kind": options.kind, "layer": layer, "rank": options.rank, "method": options.method,
            "key_method": options.key_method, "niter": options.niter, "lr": options.lr,
            "loss": [float(result.losses[0]), float(result.losses[-1])] if len(result.losses) else None,
            "seconds": round(result.seconds, 2), "weight": result.weight_path,
            "units": None if result.goal is None or result.goal.units is None else result.goal.units.tolist(),
            "request": editfile.to_json(request), "grid_seconds": None, **view,
        }
        summary["grid_seconds"] = round(time.time() - start, 3)
        self.history.append(Applied(result.model, summary))
        return summary

    def grid(self, before, after, layer, direction):
        """GRID further samples (numbers from GRID_FIRST, never the statistics' images) where the
        context fires most among GRID_POOL, before and after: what the rule did, not one image."""
        pool = list(range(GRID_FIRST, GRID_FIRST + GRID_POOL))
        heat = self.heat(before.params, layer, pool, direction)
        chosen = sorted(int(pool[i]) for i in np.argsort(-heat.reshape(len(pool), -1).max(1), kind="stable")[:GRID])
        tiles = lambda m: data_url(grid(self.render(m.params, chosen), cols=8))
        return {"grid": {"numbers": chosen, "before": tiles(before), "after": tiles(after)}}

    # -- files ---------------------------------------------------------------------------------

    def path(self, name, suffix=".json"):
        """A file of the work folder by bare name: no folders, no '..', nothing outside."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError("a file name is letters, digits, '_', '-' and '.', starting with a letter or digit")
        name = name if name.endswith(suffix) else name + suffix
        path = (self.workdir / name).resolve()
        if path.parent != self.workdir:
            raise ValueError(f"{name!r} is outside the work folder")
        return path

    def saved(self):
        return sorted(p.stem for p in self.workdir.glob("*.json") if NAME.fullmatch(p.name))

    def save(self, name, obj, kind, settings):
        """Write the request in the official JSON format (with the page's layer, rank and lr as
        the `jaxrewrite` settings the command line reads) into the work folder."""
        request = self.request(obj, kind)
        extra = {}
        if settings:
            unknown = set(settings) - set(editfile.SETTINGS)
            if unknown:
                raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
            extra = {"jaxrewrite": editfile.settings({"jaxrewrite": settings}, "settings")}
        path = self.path(name)
        editfile.write_edit(request, path, extra)
        return {"saved": path.stem, "files": self.saved()}

    def load(self, name=None, content=None):
        """An edit request from the work folder (`name`), a shipped edit (`shipped:NAME`) or a
        file the user picked (`content`, its JSON): the official JSON form and its settings."""
        if (name is None) == (content is None):
            raise ValueError("give a file name or its content")
        if content is not None:
            obj, where = content, "uploaded file"
        elif isinstance(name, str) and name.startswith("shipped:"):
            stem = name[len("shipped:"):]
            if stem not in self.info_shipped():
                raise ValueError(f"no shipped edit {stem!r} for {self.name}")
            obj, where = editfile.read_json(zoo.shipped_edit(self.name, stem)), stem
        else:
            path = self.path(name)
            if not path.is_file():
                raise ValueError(f"no edit file {path.name!r} in the work folder")
            obj, where = editfile.read_json(path), path.name
        request = Request(**editfile.parse_entries(obj, name=where))
        return {"request": editfile.to_json(request), "settings": editfile.settings(obj, where)}

    def info_shipped(self):
        folder = zoo.asset("edits") / self.name
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")) if folder.is_dir() else []

    def checkpoint_name(self):
        return self.name + (modelfile.PICKLE_SUFFIX if self.model.source.get("pickle") else ".pt")

    def download(self, what):
        """(file name, bytes) of the current model: a jaxrewrite model file, or the checkpoint's
        original PyTorch layout (the NVIDIA pickle it came from, edited)."""
        if what == "model":
            filename = self.name + "_edited.msgpack"
        elif what == "checkpoint":
            filename = self.name + "_edited" + Path(self.checkpoint_name()).suffix
        else:
            raise ValueError("download 'model' (a jaxrewrite model file) or 'checkpoint' (its PyTorch layout)")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            modelfile.save(self.current, path, now=True)
            return filename, path.read_bytes()


def pad(z):
    """z rows padded to CHUNK (one compiled program for any count)."""
    return np.concatenate([z, np.zeros((CHUNK - len(z), z.shape[1]), z.dtype)]) if len(z) < CHUNK else z


def lit(image, fires):
    """The image dimmed where the key does not fire (`fires` [kh, kw] bool, upsampled)."""
    h, w = image.shape[:2]
    m = np.asarray(Image.fromarray(fires.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 127
    out = image.astype(np.float32) * np.where(m, 1.0, 0.3)[..., None]
    out[m] = 0.7 * out[m] + 0.3 * np.array([255, 230, 60])
    return out.astype(np.uint8)


def outline(image, box, color=(255, 220, 0)):
    """The image with a 1-pixel frame around `box` (top, left, bottom, right)."""
    out = image.copy()
    t, l, b, r = box
    b, r = max(b - 1, t), max(r - 1, l)
    out[t, l:r + 1] = out[b, l:r + 1] = color
    out[t:b + 1, l] = out[t:b + 1, r] = color
    return out
