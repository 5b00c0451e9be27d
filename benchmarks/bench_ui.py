"""The browser UI's waits, measured on the Session the server runs (HTTP adds ~1 ms): a page of
samples, the paste view, a search, and each edit with the before/after grid of 32 further
samples that follows it (the goal: the grid within 2 s on 2 CPU cores, statistics cached).

    python benchmarks/bench_ui.py                      # towns64, spire2tree, 3 edits in a row
    python benchmarks/bench_ui.py --niter 21 --edits 1 --out /tmp/ui.json   # a smoke run
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
import record  # noqa: E402
from jaxrewrite import modelfile, zoo
from jaxrewrite.rewrite import editfile
from jaxrewrite.ui.session import Session


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="towns64")
    ap.add_argument("--edit", default="spire2tree", help="a shipped edit of the model")
    ap.add_argument("--niter", type=int, default=2001)
    ap.add_argument("--edits", type=int, default=3, help="edits applied one after another (they compose)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ui_towns64.json"))
    args = ap.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")

    obj = editfile.read_json(zoo.shipped_edit(args.model, args.edit))
    layer = obj["jaxrewrite"]["layer"]
    request = {k: obj[k] for k in ("object", "paste", "key") if k in obj}
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        # statistics cached, as for a user's second session: a first session computes them
        warm = Session(modelfile.load(args.model), name=args.model, workdir=tmp, cache_dir=cache)
        warm.rewriter(layer).c_matrix
        s = Session(modelfile.load(args.model), name=args.model, workdir=tmp, cache_dir=cache)
        rows = {}
        rows["first_page_12_images_s"], _ = timed(lambda: s.images(list(range(12))))
        rows["next_page_12_images_s"], _ = timed(lambda: s.images(list(range(12, 24))))
        rows["paste_view_first_s"], _ = timed(lambda: s.paste_view(layer, request))
        rows["paste_view_again_s"], _ = timed(lambda: s.paste_view(layer, request))
        rows["search_1000_images_s"], found = timed(lambda: s.search(layer, {"key": request["key"]}))
        edits = []
        for i in range(args.edits):
            prepared = s.prepare("edit", layer, request, {"niter": args.niter})
            total, summary = timed(lambda: s.execute(*prepared))
            edits.append({"edit": i + 1, "edit_s": summary["seconds"], "grid_s": summary["grid_seconds"],
                          "total_s": round(total, 3), "loss": summary["loss"]})
            print(f"edit {i + 1}: edit {summary['seconds']:.2f} s (statistics cached), grid of 32 before/after "
                  f"{summary['grid_seconds']:.2f} s, everything {total:.2f} s")
    for k, v in rows.items():
        print(f"{k:28s} {v:.3f}")
    record.save(args.out, {"model": args.model, "edit": args.edit, "layer": layer, "niter": args.niter,
                           "views": {k: round(v, 3) for k, v in rows.items()}, "edits": edits,
                           "grid_goal_s": 2.0, "grid_max_s": max(e["grid_s"] for e in edits)})


if __name__ == "__main__":
    main()
