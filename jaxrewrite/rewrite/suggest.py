"""Which layer, which rank: try an edit at every candidate (layer, rank) and rank them by a
label-free score, so a user with their own model and rule does not have to pick by hand.

Each layer's ranks run as one vmapped batch of low-rank Λ edits (`batch.insert_many`). Each
trial is then rendered on unseen samples (seed `SEED`, which neither the examples nor the key
statistics use) and scored from the request alone, with no segmenter or detector:

* the request says what the rule replaces and by what: the *source* colours are the pixels
  under its context masks, the *goal* colours those under its object mask, each less the
  colours of the ring around its mask (the sky beside a painted spire); colours that both
  sets hold tell nothing and are dropped from both;
* on the unseen samples before the edit, a pixel shows the source when its colour is within
  `TOLERANCE` of a source colour and nearer to the source set than to the goal set;
* predicted effect: the share of those pixels that show the goal after the edit (within
  `TOLERANCE` of a goal colour, nearer to it than to the source), the label-free twin of the
  section 5.1 effect. For an erase the goal is local: the pixel must come to look like the
  non-source pixels near it in its own image (a window erased into the wall it sits in, not
  into the sky);
* spill: the share of pixels far from any source pixel (more than `RADIUS` of the image's
  size) that the edit changed visibly; score = effect x (1 - spill);
* where colour cannot tell (`References`): a source that looks like its surroundings is told
  by place (where the context masks lie), an object that looks like its surroundings makes
  the goal local.

`likely_to_work` is whether the best trial's predicted effect reaches `WORKS`. The score sees
colours, so it is blind to rules whose source and goal look alike (README: "Choosing the
layer").
"""

import time
from dataclasses import dataclass, field

import jax
import numpy as np

from ..images import dilate
from ..progress import progress
from ..tree import replace
from ..zdataset import z_for
from . import batch, keys
from .editfile import Request
from .pipeline import EditOptions, _count
from .rewriter import NotApplicable, Rewriter, resolutions

SAMPLES = 100  # unseen samples each trial is rendered on
SEED = 3  # their z data set (examples and statistics: seed 1, evaluation: seed 2)
SCALE = 64  # images are scored at most this many pixels high and wide (area-averaged)
TOLERANCE = 0.2  # colour distance (RGB in [-1, 1]) within which a pixel matches a set
CHANGED = 0.2  # a pixel moved by more than this (mean over RGB, in [-1, 1] units) changed visibly
RADIUS = 1 / 16  # spill is measured this far (of the image's size) from any source pixel
WORKS = 0.05  # predicted effect from which an edit is expected to change the rule
MAX_COLOURS = 1024  # colours kept per reference set
RANKS = (1, 2, 4)


@dataclass(frozen=True)
class Trial:
    """One (layer, rank) tried: its score and what it is made of."""

    layer: str
    rank: int
    score: float  # effect x (1 - spill)
    effect: float  # predicted effect: source pixels of unseen samples that show the goal after the edit
    spill: float  # pixels far from the source that changed visibly
    fit: float  # 1 - final loss / initial loss on the goal
    loss_start: float
    loss_end: float
    weight: np.ndarray | None = field(default=None, repr=False)  # the edited kernel, when kept

    def to_json(self):
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "weight"}


@dataclass(frozen=True)
class Suggestion:
    ranking: tuple  # Trials, best first
    likely_to_work: bool
    skipped: dict  # layer or 'layer rank r' -> why it was not tried
    samples: int
    seed: int
    seconds: float  # everything: statistics, edits, renders, scores

    @property
    def best(self):
        return self.ranking[0]

    def to_json(self):
        return {"ranking": [t.to_json() for t in self.ranking], "likely_to_work": self.likely_to_work,
                "skipped": self.skipped, "samples": self.samples, "seed": self.seed,
                "seconds": round(self.seconds, 2)}

    def table(self):
        lines = ["| # | layer | rank | score | predicted effect | spill | fit |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {i} | {t.layer} | {t.rank} | {t.score:.3f} | {t.effect:.1%} | {t.spill:.2%} | {t.fit:.2f} |"
                  for i, t in enumerate(self.ranking, start=1)]
        return "\n".join(lines)


def default_layers(model, fraction=1 / 8):
    """The rewritable blocks whose value maps are at least `fraction` of the image's size:
    coarser ones hold too few pixels for a regional rule."""
    gen = model.generator(**model.official_options(1))
    size = min(jax.eval_shape(gen, model.params, np.zeros((1, gen.z_dim), np.float32)).shape[1:3])
    return [b for b, (_, v, _) in resolutions(gen, model.params).items() if min(v) >= fraction * size]


def downscale(images, scale=SCALE):
    """Area-average NHWC images down to at most `scale` pixels a side (integer factor)."""
    f = max(1, -(-max(images.shape[1:3]) // scale))
    n, h, w, c = images.shape
    h, w = h // f * f, w // f * f
    return images[:, :h, :w].reshape(n, h // f, f, w // f, f, c).mean((2, 4))


def _mask(example, shape):
    return example.weights(shape) > 0.5


def _ring(mask, width):
    """The pixels within `width` of a boolean [h, w] mask, outside it."""
    return dilate(mask[None], width)[0] & ~mask


def _colours(pixels, rng):
    pixels = np.asarray(pixels, np.float32).reshape(-1, 3)
    return pixels if len(pixels) <= MAX_COLOURS else pixels[rng.choice(len(pixels), MAX_COLOURS, replace=False)]


def _nearest(pixels, colours, chunk=16384):
    """Distance from each pixel [..., 3] to its nearest colour [m, 3] (numpy: the pixel counts
    differ from call to call, and a jitted form would compile for each)."""
    flat = np.asarray(pixels, np.float32).reshape(-1, 3)
    colours = np.asarray(colours, np.float32)
    out = np.empty(len(flat), np.float32)
    norms = (colours ** 2).sum(1)[None]
    for start in range(0, len(flat), chunk):
        part = flat[start:start + chunk]
        d2 = (part ** 2).sum(1)[:, None] - 2 * part @ colours.T + norms
        out[start:start + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return out.reshape(np.shape(pixels)[:-1])


def _distinct(pixels, others):
    """The pixels farther than TOLERANCE from every one of `others`."""
    if len(pixels) == 0 or len(others) == 0:
        return pixels
    return pixels[_nearest(pixels, others) > TOLERANCE]


@dataclass(frozen=True)
class References:
    """What a request says the rule replaces and by what: colours [m, 3] of the source and
    of the goal. `local`: the goal is to look like the pixels around the source in each image
    (an erase, or an object that looks like its own surroundings: bare skin pasted over
    glasses); `goal` then only tells source pixels apart. `where` [h, w]: where the source is
    in every image, for a source whose colours are those of its surroundings (bare eyes, to
    which glasses are added: the context's masks say where, for aligned images)."""

    source: np.ndarray
    goal: np.ndarray
    local: bool = False
    where: np.ndarray | None = None


DISTINCT = 0.1  # a mask whose colours differ from its ring's for less than this share is told by place


def references(render, request, kind):
    """The References of a request; `render(numbers_or_z) -> images` (scored size). A mask's
    colours are those under it that differ from the ring of pixels around it (the sky beside
    a painted spire is not the spire); colours the two sets share are dropped from both,
    unless that would empty one."""
    rng = np.random.default_rng(0)

    def regions(examples):  # (inside, ring) pixels of each example, and its mask
        out = []
        for e in examples:
            img = render([e.image])[0]
            mask = _mask(e, img.shape[:2])
            out.append((img[mask], img[_ring(mask, max(1, round(RADIUS * max(img.shape[:2]) / 2)))], mask))
        return out

    context = regions(request.key)
    ring = _colours(np.concatenate([r for _, r, _ in context]), rng)
    inside = _colours(np.concatenate([i for i, _, _ in context]), rng)
    source = _distinct(inside, ring)
    where = None
    if len(source) < DISTINCT * len(inside):
        source, where = inside, np.mean([m for _, _, m in context], 0) >= 0.5
    local = kind == "erase"
    if kind == "edit":
        obj, around, _ = regions([request.object])[0]
        obj = _colours(obj, rng)
        goal = _distinct(obj, _colours(around, rng))
        if len(goal) < DISTINCT * len(obj):
            goal, local = obj, True
    else:  # erase: what surrounds the context is what erasing should leave
        goal = ring
    if len(goal) == 0 or len(source) == 0:
        raise ValueError("the request's masks select no pixels at the image's resolution")
    source2, goal2 = _distinct(source, goal), _distinct(goal, source)
    source, goal = source2 if len(source2) else source, goal2 if len(goal2) else goal
    return References(source, goal, local, where)


def source_pixels(images, refs):
    """Boolean [n, h, w]: the pixels that show the source: within TOLERANCE of a source colour
    and nearer to the source than to the goal; with `where`, the pixels there that do not
    show the goal already."""
    ds, dg = _nearest(images, refs.source), _nearest(images, refs.goal)
    if refs.where is not None:
        return refs.where[None] & ~((dg < TOLERANCE) & (dg < ds))
    return (ds < TOLERANCE) & (ds < dg)


def _to_surroundings(before, after, src, radius):
    """Distance from each source pixel's colour after the edit to the nearest colour, before
    it, of the non-source pixels within `radius` of it in its image ([number of source
    pixels], in `after[src]` order); where there is none (deep inside a large region), of
    the nearest non-source pixels of its image's ring around the source."""
    n, h, w = np.nonzero(src)
    values = np.asarray(after)[n, h, w].astype(np.float32)
    best = np.full(n.shape, np.inf, np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = h + dy, w + dx
            inside = (y >= 0) & (y < src.shape[1]) & (x >= 0) & (x < src.shape[2])
            y, x = np.clip(y, 0, src.shape[1] - 1), np.clip(x, 0, src.shape[2] - 1)
            d = np.linalg.norm(values - before[n, y, x], axis=-1)
            best = np.where(inside & ~src[n, y, x], np.minimum(best, d), best)
    ring = dilate(src, 2 * radius) & ~src
    for i in np.unique(n[np.isinf(best)]):
        deep, around = np.isinf(best) & (n == i), before[i][ring[i]].astype(np.float32)
        if len(around):
            best[deep] = _nearest(values[deep], around)
    return best


def score(before, after, refs, before_source=None):
    """{effect, spill, score} of one edit from its unseen samples before/after (scored size)."""
    src = source_pixels(before, refs) if before_source is None else before_source
    radius = max(1, round(RADIUS * max(before.shape[1:3])))
    far = ~dilate(src, radius)
    changed = np.abs(np.asarray(after) - np.asarray(before)).mean(-1) > CHANGED
    now = np.asarray(after)[src]  # only where the source was
    ds = _nearest(now, refs.source)
    dg = _to_surroundings(before, after, src, radius) if refs.local else _nearest(now, refs.goal)
    hit = (dg < TOLERANCE) & (dg < ds)
    if refs.where is not None:  # a source told by place may look like the goal already: a hit is a change too
        hit &= changed[src]
    effect = float(hit.sum() / max(src.sum(), 1))
    spill = float(changed[far].mean()) if far.any() else 0.0
    return {"effect": effect, "spill": spill, "score": effect * (1 - spill)}


def renderer(rw, z):
    """fn(weights [R, ...] | None) -> images [R, n, ...] of `z` with each kernel (None: [n, ...]
    with the original weights), NHWC at the model's size: the layers before the rewritten one
    run once. The programs are kept by the Rewriter, so later requests at this layer do not
    compile again."""
    gen, start, path = rw.gen, rw.gen.span(rw.first)[0], rw.weight_path
    bag = rw._context(rw.device_params, z)
    run = rw.program(("render",), lambda: lambda params, bag: gen.image(gen.run(params, bag, start)))
    many = rw.program(("render_many",), lambda: jax.vmap(
        lambda params, w, bag: gen.image(gen.run(replace(params, path, w), bag, start)), in_axes=(None, 0, None)))
    return lambda weights=None: np.asarray(run(rw.device_params, bag) if weights is None else
                                           many(rw.device_params, weights, bag))


def rendered(rewriters, trials, z):
    """(trial, images of z with its kept kernel) for each Trial, a batch per layer."""
    for layer in dict.fromkeys(t.layer for t in trials):
        group = [t for t in trials if t.layer == layer]
        yield from zip(group, renderer(rewriters[layer], z)(np.stack([t.weight for t in group])))


def trials(rw, request, ranks, options):
    """(ranks tried, weights [R, ...], losses [R, niter], skipped {what: why}) of one layer: its
    ranks as one vmapped batch of `options.method` edits."""
    kind, skipped, ok = options.kind, {}, []
    for r in ranks:
        try:
            rw.check(request, kind, r, options.drank, options.key_method)
            ok.append(r)
        except ValueError as e:
            skipped[f"{rw.layer} rank {r}"] = str(e)
    if not ok:
        return ok, None, None, skipped
    rw.statistics(options.key_method, kind)
    goal = rw.erase_goal(request, options.drank) if kind == "erase" else rw.copy_paste_goal(request)
    examples, method = rw.key_examples(request.key), keys.get(options.key_method)
    d = [method(examples, rw, r) for r in ok]
    result = batch.insert_many(rw, [goal] * len(ok), d, [options.lr] * len(ok), options.niter, options.piter,
                               options.method)
    return ok, result.weight, result.losses, skipped


def suggest(model, request, layers=None, ranks=RANKS, options=EditOptions(method="lambda"), *, samples=SAMPLES,
            seed=SEED, cache_dir=None, show_progress=False, rewriters=None, keep_weights=False):
    """A Suggestion: every (layer, rank) of `layers` (default: `default_layers`) x `ranks`
    tried by `options` (a copy-paste edit or an erase; default: the low-rank Λ update) and
    ranked by the label-free score on `samples` unseen samples of `seed`.

    `rewriters`: a dict {layer: Rewriter} of this model, filled and reused, so that many
    requests share statistics and compiled programs; `keep_weights`: each Trial keeps its
    edited kernel (an evaluation can measure the very edits that were scored)."""
    start = time.time()
    if not isinstance(request, Request):
        raise TypeError(f"request must be a Request, got {type(request).__name__}")
    if options.kind not in ("edit", "erase"):
        raise ValueError(f"suggest tries copy-paste edits and erases, not a {options.kind!r}")
    request.check(options.kind)
    ranks = list(ranks)
    if not ranks or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in ranks):
        raise ValueError(f"ranks must be integers >= 1, got {ranks}")
    ranks = sorted(set(ranks))
    if not _count(samples):
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    layers = default_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError("no candidate layer")
    rewriters = {} if rewriters is None else rewriters
    label = {} if options.label is None else {"label": options.label}
    for layer in layers:  # wrong names stop here, before any work
        rw = rewriters.get(layer)
        if rw is None or rw.model is not model or (rw.stats_samples, rw.seed, rw.options) != (
                options.stats_samples, options.seed, label):
            rewriters[layer] = Rewriter(model, layer, stats_samples=options.stats_samples, seed=options.seed,
                                        cache_dir=cache_dir, options=label)
        rewriters[layer].check_method(options.method)
    chosen = [rewriters[layer] for layer in layers]
    z = z_for(range(samples), chosen[0].gen.z_dim, seed)
    refs = before = src = None
    ranking, skipped = [], {}
    shown_layers = progress(chosen, len(chosen), f"suggest: {len(layers)} layers x {len(ranks)} ranks") \
        if show_progress else chosen
    for rw in shown_layers:
        tried, weights, losses, why = trials(rw, request, ranks, options)
        skipped.update(why)
        if not tried:
            continue
        render = renderer(rw, z)
        if refs is None:  # the same references and unseen samples for every layer
            image = rw.program(("image",), lambda: rw.gen)
            refs = references(lambda images: downscale(np.asarray(image(rw.device_params, rw.z(images)))),
                              request, options.kind)
            before = downscale(render())
            src = source_pixels(before, refs)
        for r, w, after, loss in zip(tried, weights, render(weights), losses):
            s = score(before, downscale(after), refs, src)
            ranking.append(Trial(rw.layer, int(r), s["score"], s["effect"], s["spill"],
                                 float(1 - loss[-1] / max(loss[0], 1e-12)), float(loss[0]), float(loss[-1]),
                                 np.asarray(w) if keep_weights else None))
    if not ranking:
        raise NotApplicable("no (layer, rank) could be tried: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    ranking.sort(key=lambda t: (-t.score, -t.fit))
    return Suggestion(tuple(ranking), ranking[0].effect >= WORKS, skipped, samples, seed, time.time() - start)
