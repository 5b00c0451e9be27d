"""The DCGAN faces (`jaxrewrite zoo fetch dcgan-faces`): glasses detector, edits, measurements.

    python benchmarks/faces.py detector   # fit + cross-validate on benchmarks/faces_labels.json
    python benchmarks/faces.py edits      # write jaxrewrite/assets/edits/dcgan-faces/*.json
    python benchmarks/faces.py measure    # every method on every edit, 500 unseen samples

The edits live in the eye band (rows 20-36, columns 12-52 of the 64x64 image), where the
mean face has its eyes; `layer3` (8x8x256 keys -> 16x16x128 values) was chosen by
measurement (layer2 and layer4: prevalence 0.13 and 0.11 after the rank-1 edit, layer3
0.88). DCGAN weights have a scale of ~0.02, not StyleGAN2's ~1, so Adam's step (about lr
per element) is scaled down with them: lr 0.001 instead of the official 0.05 (with 0.05 the
loss rises).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import record  # noqa: E402
from jaxrewrite import faces, modelfile, zoo  # noqa: E402
from jaxrewrite.worlds import metrics  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LABELS = ROOT / "benchmarks" / "faces_labels.json"


def labelled(model, attribute):
    """(images, labels) of the hand-labelled samples (unsure ones left out)."""
    spec = json.loads(LABELS.read_text())[attribute]
    n = 1 + max(spec["yes"] + spec["unsure"])
    n = max(n, 300)
    images = metrics.render(model.generator(), model.params, n, 1)
    keep = np.array([i not in spec["unsure"] for i in range(n)])
    labels = np.array([i in spec["yes"] for i in range(n)])
    return images[keep], labels[keep]


def detector(args, model):
    """Fit every attribute's detector, cross-validate it, write the shipped fits."""
    from jaxrewrite.atomic import atomic_write

    fits, report = {}, {}
    for attribute, feature_fn in faces.FEATURES.items():
        images, labels = labelled(model, attribute)
        feats = feature_fn(images)
        rng = np.random.default_rng(0)
        aucs, oof = [], np.zeros((args.repeats, len(labels)))
        for r in range(args.repeats):
            folds = rng.permutation(len(labels)) % 5
            for f in range(5):
                train = folds != f
                oof[r, ~train] = faces.score(feats[~train], faces.fit(feats[train], labels[train]))
            aucs.append(faces.auc(oof[r], labels))
        cut = np.quantile(oof[:, ~labels], 0.9)  # 10% false positives out of fold
        fit = faces.fit(feats, labels)
        fit["threshold"] = float(np.quantile(faces.score(feats, fit)[~labels], 0.9))
        fit.update(tpr=float(np.mean(oof[:, labels] > cut)), fpr=0.1, cv_auc=float(np.mean(aucs)))
        fits[attribute] = fit
        report[attribute] = {"n": int(len(labels)), "positives": int(labels.sum()), "cv_auc": aucs, "tpr": fit["tpr"]}
        print(f"{attribute}: {len(labels)} labelled samples ({labels.sum()} positive), 5-fold AUC {np.mean(aucs):.3f} "
              f"(+- {np.std(aucs):.3f} over {args.repeats} splits); at 10% false positives {fit['tpr']:.0%} found")
    text = json.dumps(fits, indent=1) + "\n"
    atomic_write(ROOT / "jaxrewrite" / "assets" / "faces_detectors.json", lambda f: f.write(text), mode="w")
    record.save(RESULTS / "faces_detector.json", report)


EDITS = ROOT / "jaxrewrite" / "assets" / "edits" / "dcgan-faces"
BAND = faces.region(faces.EDIT_REGION)
LR = 0.001


def edit_specs():
    """name -> (Edit, rule): glasses on (copy thick frames onto bare eyes, context: bare eyes)
    and off (copy bare eyes onto frames, context: faces with glasses)."""
    from jaxrewrite.rewrite.editfile import Edit, encode_mask

    spec = json.loads(LABELS.read_text())["glasses"]
    plain = [i for i in range(300) if i not in spec["yes"] + spec["unsure"]][:20]
    band = encode_mask(BAND)
    rule = {"layer": "layer3", "kind": "edit", "lr": LR, "attribute": "glasses"}
    return {
        "glasses": (Edit(object=(68, band), paste=(plain[0], band), key=tuple((n, band) for n in plain)),
                    {**rule, "effect": "add"}),
        "no_glasses": (Edit(object=(9, band), paste=(69, band), key=tuple((n, band) for n in spec["yes"][:20])),
                       {**rule, "effect": "remove"}),
    }


def write_edits(args, model):
    from jaxrewrite.atomic import atomic_write
    from jaxrewrite.rewrite.editfile import to_json

    EDITS.mkdir(parents=True, exist_ok=True)
    for name, (edit, rule) in edit_specs().items():
        text = json.dumps({**to_json(edit), "jaxrewrite": rule}, indent=1) + "\n"
        atomic_write(EDITS / f"{name}.json", lambda f: f.write(text), mode="w")
        print(f"{name}: object {edit.object[0]}, paste {edit.paste[0]}, context {[k[0] for k in edit.key]}")


def measure(args, model):
    for name in args.edits:
        measure_one(args, model, name)


def measure_one(args, model, name):
    import time

    from jaxrewrite import images
    from jaxrewrite.rewrite.editfile import read_edit
    from jaxrewrite.rewrite.finetune import finetune, rgb_goal
    from jaxrewrite.rewrite.rewriter import Rewriter

    path = EDITS / f"{name}.json"
    rule = json.loads(path.read_text())["jaxrewrite"]
    attribute = rule["attribute"]
    edit = read_edit(path)
    gen = model.generator()
    before = metrics.render(gen, model.params, args.n, args.seed)
    detected = faces.detect(before, attribute)
    shown = np.arange(12) if rule["effect"] == "add" else np.nonzero(detected)[0][:12]
    inside = BAND
    rw = Rewriter(model, rule["layer"], cache_dir=args.cache)
    goal_in, goal_out, _, _ = rw.copy_paste_goal(edit)
    rows, grids = {}, [before[shown]]
    base = detected.mean()
    for method in ("projected", "lambda", "closed", "finetune"):
        start = time.time()
        if method == "finetune":
            z, target, box = rgb_goal(gen, model.params, edit)
            params, losses = finetune(gen, model.params, z, target, box, args.finetune_niter, args.finetune_lr)
        else:
            d = rw.key(edit.key, 1)
            params, losses, _ = rw.insert(goal_in, goal_out, d, method, 2001, 10, rule["lr"])
        seconds = time.time() - start
        after = metrics.render(gen, params, args.n, args.seed)
        change = np.abs(after - before).mean(-1) / 2
        rate = faces.detect(after, attribute).mean()
        rows[method] = {"seconds": round(seconds, 1), "loss": float(losses[-1]), "detected": float(rate),
                        "prevalence": faces.prevalence(rate, attribute),
                        "change_inside": float(change[:, inside].mean()),
                        "change_outside": float(change[:, ~inside].mean())}
        grids.append(after[shown])
        print(name, method, rows[method], flush=True)
    images.save(str(RESULTS / f"faces_{name}.png"), np.concatenate(grids), cols=len(shown))
    data = {"edit": name, "n": args.n, "seed": args.seed, "detected_before": float(base),
            "prevalence_before": faces.prevalence(base, attribute), "finetune_niter": args.finetune_niter,
            "finetune_lr": args.finetune_lr, "rows": rows}
    record.save(RESULTS / f"faces_{name}.json", data)
    print(f"\n{name}\n\n| method | {attribute} detected | estimated share | mean change in the eye band | outside | s |")
    print("|---|---|---|---|---|---|")
    print(f"| before | {base:.1%} | {faces.prevalence(base, attribute):.0%} | – | – | – |")
    for method, r in rows.items():
        print(f"| {method} | {r['detected']:.1%} | {r['prevalence']:.0%} | {r['change_inside']:.4f} | "
              f"{r['change_outside']:.4f} | {r['seconds']:.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["detector", "edits", "measure"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--edits", nargs="+", default=["glasses", "no_glasses"])
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--finetune-niter", type=int, default=2001)
    ap.add_argument("--finetune-lr", type=float, default=2e-4, help="0.01 x the weight scale ratio (0.02)")
    ap.add_argument("--cache", default=zoo.cache_dir())
    args = ap.parse_args()
    model = modelfile.load(zoo.resolve("dcgan-faces"))
    {"detector": detector, "edits": write_edits, "measure": measure}[args.what](args, model)


if __name__ == "__main__":
    main()
