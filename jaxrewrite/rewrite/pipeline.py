"""The edit pipeline: request -> goal -> context key -> constrained update -> edited model.

`edit` is the one way the library rewrites a layer; the command line (`edit`, `erase`,
`zero`), the evaluation protocol and the benchmarks call it, as any front end should. `EditOptions` holds the
official defaults once; `EditResult` is what an edit leaves.
"""

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ..modelfile import Model
from ..tree import get
from . import keys, update
from .editfile import KINDS, Request
from .rewriter import Goal, Rewriter, target_span


def _count(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class EditOptions:
    """How to edit; the defaults are the official code's (rank-1 projected Adam, 2001 steps,
    projection every 10, lr 0.05, ZCA key, statistics over 1000 images of seed 1)."""

    kind: str = "edit"  # 'edit' (copy-paste), 'erase' (remove what the context shows), 'zero' (drop the key)
    rank: int | str = 1  # directions of the key; 'full': every input channel (the unconstrained ablation)
    method: str = "projected"  # an update method registered in update.METHODS
    key_method: str = "zca"  # a key method registered in keys.KEY_METHODS
    niter: int = 2001
    piter: int = 10
    lr: float = 0.05
    drank: int = 30  # erase: key units zeroed in the goal
    amount: float = 0.0  # zero: W <- W - P(W) + amount * P(1)
    stats_samples: int = 1000  # images of the key statistics
    seed: int = 1  # z data set of the image numbers and the statistics
    label: int | None = None  # conditional models: the class of every image (edit examples and statistics)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        update.get(self.method), keys.get(self.key_method)
        if self.rank != "full" and not _count(self.rank):
            raise ValueError(f"rank must be an integer >= 1 or 'full', got {self.rank!r}")
        for name in ("niter", "piter", "drank", "stats_samples"):
            if not _count(getattr(self, name)):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not math.isfinite(self.amount):
            raise ValueError(f"amount must be finite, got {self.amount!r}")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class EditResult:
    model: Model  # the edited model
    weight_path: str  # the rewritten kernel (`layer6.sconv.mconv.dconv.kernel`)
    losses: np.ndarray  # L1 before each step (closed form: before, after; zero: empty)
    context: np.ndarray  # the context directions D [r, C_in]
    goal: Goal | None  # what the target was fitted to (None for a zero)
    seconds: float  # the edit itself: goal, key and update (statistics excluded)
    options: EditOptions
    rewriter: Rewriter  # the layer set-up: statistics, cut, compiled programs (reusable)

    @property
    def weight(self):
        return get(self.model.params, self.weight_path)


def edit(model, layer, request, options=EditOptions(), *, c_matrix=None, rewriter=None, cache_dir=None,
         show_progress=False):
    """Rewrite `layer` of `model` by `request` (a Request) with `options`; an EditResult.

    `c_matrix`: precomputed key statistics of the layer; otherwise they are computed (and kept
    in `cache_dir`, when given). `rewriter`: a Rewriter of this model and layer from an earlier
    edit, to reuse its statistics and compiled programs. Raises before any work on a request
    that lacks what `options.kind` needs, NotApplicable for a method the target cannot take,
    FloatingPointError if the optimisation diverges."""
    if not isinstance(request, Request):
        raise TypeError(f"request must be a Request (editfile.Request.from_arrays / read_edit), got {type(request).__name__}")
    request.check(options.kind)
    if rewriter is not None and c_matrix is not None:
        raise ValueError("give c_matrix or a rewriter (which has its statistics), not both")
    if rewriter is None:
        rewriter = Rewriter(model, layer, stats_samples=options.stats_samples, seed=options.seed,
                            cache_dir=cache_dir, show_progress=show_progress, precomputed_c=c_matrix,
                            options={} if options.label is None else {"label": options.label})
    elif rewriter.model is not model:
        raise ValueError("the rewriter is set up for another model")
    elif target_span(rewriter.gen, layer, model.params) != (rewriter.first, rewriter.last):
        raise ValueError(f"the rewriter is set up for {rewriter.layer!r}, not {layer!r}")
    elif (rewriter.stats_samples, rewriter.seed, rewriter.options.get("label")) != (
            options.stats_samples, options.seed, options.label):
        raise ValueError("the rewriter's statistics were computed with other stats_samples / seed / label")
    if options.kind != "zero":  # before any work
        rewriter.check_method(options.method)
    rewriter.check(request, options.kind, options.rank, options.drank, options.key_method)
    rank, kind = options.rank, options.kind
    rewriter.statistics(options.key_method if rank != "full" else None, kind)  # not part of the edit's time
    start = time.time()
    if rank == "full":
        d = np.eye(rewriter.channels, dtype=np.float32)
    else:
        d = rewriter.key(request.key, rank, options.key_method)
    if kind == "zero":
        w0 = get(model.params, rewriter.weight_path)
        weight, losses, goal = np.asarray(update.zero(w0, d, options.amount)), np.zeros(0, np.float32), None
    else:
        goal = rewriter.erase_goal(request, options.drank) if kind == "erase" else rewriter.copy_paste_goal(request)
        result = rewriter.insert(goal, d, options.method, options.niter, options.piter, options.lr,
                                 show_progress=show_progress and not update.get(options.method).linear_only)
        weight, losses = result.weight, result.losses
    return EditResult(rewriter.edited(weight), rewriter.weight_path, losses, d, goal, time.time() - start, options,
                      rewriter)


def compose(model, steps, *, cache_dir=None, show_progress=False):
    """Edits applied one after another; each step is (layer, request, EditOptions). Statistics
    are recomputed (or found in the cache) for each step's model. (final Model, [EditResult])."""
    results = []
    for layer, request, options in steps:
        result = edit(model, layer, request, options, cache_dir=cache_dir, show_progress=show_progress)
        model = result.model
        results.append(result)
    return model, results
