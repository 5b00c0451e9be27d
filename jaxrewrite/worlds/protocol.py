"""Apply one shipped-style edit by a named variant, and evaluate it: the rows of the
section 5.1 table (ours, its Λ and closed-form variants, two ablations, fine-tuning)."""

import dataclasses
import sys
import time

from ..rewrite.editfile import read_edit
from ..rewrite.finetune import finetune, rgb_goal
from ..rewrite.pipeline import EditOptions, edit
from ..rewrite.rewriter import NotApplicable, Rewriter
from . import edits, metrics

# The rows of the section 5.1 table: name -> (EditOptions changes, single context key), or
# None for fine-tuning all weights (the baseline, not a rewrite).
VARIANTS = {
    "ours": ({}, False),
    "lambda": ({"method": "lambda"}, False),  # at low-rank cost
    "lambda-dense": ({"method": "lambda-dense"}, False),  # the same update, W0 + ΛD expanded each step
    "closed": ({"method": "closed"}, False),
    "full-rank": ({"rank": "full"}, False),
    "single-key": ({}, True),
    "finetune": None,
}


def apply(model, edit_path, variant="ours", **options):
    """(edited Model, seconds, final loss) for one variant of the edit in `edit_path`; options
    as `apply_rule`'s."""
    return apply_rule(model, *read(edit_path), variant, **options)


def read(edit_path):
    """(rule, Request) of an edit file with a `jaxrewrite` entry; a malformed file stops here."""
    rule = edits.rule(edit_path)
    return rule, read_edit(edit_path, kind=rule.get("kind", "edit"))


def apply_rule(model, rule, request, variant="ours", layer=None, niter=2001, lr=0.05, finetune_niter=2001,
               finetune_lr=0.01, cache_dir=None, show_progress=False, rewriter=None):
    """`apply` for a rule and request already read; the rewrites run through `jaxrewrite.edit`."""
    kind = rule.get("kind", "edit")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if VARIANTS[variant] is None:
        if kind != "edit":
            raise NotApplicable("fine-tuning needs a copy-paste edit (object + paste)")
        start = time.time()
        gen = model.generator()
        z, target, box = rgb_goal(gen, model.params, request)
        params, losses = finetune(gen, model.params, z, target, box, finetune_niter, finetune_lr, show_progress)
        return dataclasses.replace(model, params=params), time.time() - start, float(losses[-1])
    changes, single = VARIANTS[variant]
    options = EditOptions(kind=kind, niter=niter, lr=lr, drank=rule.get("drank", 30), **changes)
    if single:
        request = dataclasses.replace(request, key=request.key[:1])
    result = edit(model, layer or rule["layer"], request, options, rewriter=rewriter, cache_dir=cache_dir,
                  show_progress=show_progress)
    return result.model, result.seconds, float(result.losses[-1])


def evaluate(model, edit_path, variants=tuple(VARIANTS), n=1000, seed=2, layer=None, cache_dir=None,
             show_progress=False, before=None, **options):
    """One row per variant: the metrics of `metrics.compare` plus time and loss. `before`:
    the unedited images (`metrics.render` of n, seed), when the caller already has them."""
    world = (model.config.get("training") or {}).get("world")
    if world != "towns":
        raise ValueError(f"eval measures edits on the towns world, and this model was not trained on it (its file "
                         f"records {'world ' + repr(world) if world else 'no world'}); use towns64 or a model "
                         f"python -m jaxrewrite.worlds.train_gan exported")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    rule, request = read(edit_path)
    gen = model.generator()
    rw = Rewriter(model, layer or rule["layer"], cache_dir=cache_dir, show_progress=show_progress)
    before = metrics.render(gen, model.params, n, seed) if before is None else before
    rows = {}
    for i, variant in enumerate(variants, start=1):
        if show_progress:
            print(f"variant {i}/{len(variants)}: {variant}", file=sys.stderr, flush=True)
        try:
            edited, seconds, loss = apply_rule(model, rule, request, variant, layer=layer, rewriter=rw,
                                               show_progress=show_progress, **options)
        except NotApplicable as e:  # closed form on a nonlinear target, fine-tuning an erase
            rows[variant] = {"skipped": str(e)}
            continue
        after = metrics.render(gen, edited.params, n, seed)
        rows[variant] = {"seconds": round(seconds, 2), "loss": loss,
                         **metrics.compare(before, after, rule["source"], rule["target"])}
    return rows


def table(rows):
    """A markdown table of `evaluate`'s rows."""
    lines = ["| variant | effect | images changed | collateral | changed px outside | hist. TV | s | final loss |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "skipped" in r:
            lines.append(f"| {name} | – | – | – | – | – | – | {r['skipped']} |")
            continue
        lines.append(f"| {name} | {r['effect']:.1%} | {r['images_changed']:.1%} | {r['collateral']:.4f} | "
                     f"{r['collateral_changed_px']:.2%} | {r['histogram_tv']:.3f} | {r['seconds']:.1f} | {r['loss']:.4f} |")
    return "\n".join(lines)
