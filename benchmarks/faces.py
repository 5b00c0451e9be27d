"""The DCGAN faces (`jaxrewrite zoo fetch dcgan-faces`): glasses detector, edits, measurements.

    python benchmarks/faces.py detector   # fit + cross-validate on benchmarks/faces_labels.json
    python benchmarks/faces.py headwear   # choose the headwear edit's pair on held-out caps
    python benchmarks/faces.py edits      # write jaxrewrite/assets/edits/dcgan-faces/*.json
    python benchmarks/faces.py measure    # every method on every edit, 500 unseen samples

The glasses edits live in the eye band (rows 20-36, columns 12-52 of the 64x64 image), where
the mean face has its eyes; the headwear edit in the top band (rows 0-20), at `layer2`. `layer3` (8x8x256 keys -> 16x16x128 values) was chosen by
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
    atomic_write(args.assets / "faces_detectors.json", lambda f: f.write(text), mode="w")
    record.save(args.results / "faces_detector.json", report)


BAND = faces.region(faces.EDIT_REGION)
LR = 0.001


def edit_specs():
    """name -> (Request, rule): glasses on (copy thick frames onto bare eyes, context: bare eyes),
    glasses off (copy bare eyes onto frames, context: faces with glasses) and headwear off
    (copy the top of a bare head onto a cap, context: the tops of 20 capped heads; the pair
    chosen by `python benchmarks/faces.py headwear`, see HEADWEAR_PAIR)."""
    from jaxrewrite.rewrite.editfile import Request

    spectacled, plain = faces.split_labels(json.loads(LABELS.read_text())["glasses"])
    plain = plain[:20]
    band = BAND
    rule = {"layer": "layer3", "kind": "edit", "lr": LR, "attribute": "glasses"}
    return {
        "glasses": (Request.from_arrays(object=(68, band), paste=(plain[0], band), key=[(n, band) for n in plain]),
                    {**rule, "effect": "add"}),
        "no_glasses": (Request.from_arrays(object=(9, band), paste=(69, band),
                                           key=[(n, band) for n in spectacled[:20]]),
                       {**rule, "effect": "remove"}),
        "no_headwear": (headwear_edit(*HEADWEAR_PAIR), {
            "layer": "layer2", "kind": "edit", "lr": LR, "attribute": "headwear", "effect": "remove",
            "region": list(faces.HEAD_REGION)}),
    }


HEADWEAR_PAIR = (0, 0)  # (bare donor, capped target) indices, chosen on held-out caps (README)


def headwear_labels():
    """(capped, bare-headed) image numbers of seed 1 by the hand labels (unsure ones in neither)."""
    return faces.split_labels(json.loads(LABELS.read_text())["headwear"])


def headwear_edit(donor, target):
    """Copy the top of bare head number `donor` onto capped head number `target` (indices
    into the hand-labelled bare and capped lists of seed 1); context: the first 20 caps."""
    from jaxrewrite.rewrite.editfile import Request

    caps, bare = headwear_labels()
    top = faces.region(faces.HEAD_REGION)
    return Request.from_arrays(object=(bare[donor], top), paste=(caps[target], top), key=[(n, top) for n in caps[:20]])


def choose_headwear(args, model):
    """Try (donor, target) pairs at `layer2`, rank 1; measure each on the hand-labelled caps
    the edits do not use (caps 20.., seed 1): the share still detected as headwear, and the
    change of 20 bare-headed faces outside the top band (collateral)."""
    from jaxrewrite import images
    from jaxrewrite.rewrite.pipeline import EditOptions, edit
    from jaxrewrite.rewrite.rewriter import Rewriter

    caps, bare = headwear_labels()
    held, plain = caps[20:], bare[100:120]
    gen = model.generator()
    before = metrics.render(gen, model.params, 300, 1)
    top = faces.region(faces.HEAD_REGION)
    rw = Rewriter(model, "layer2", cache_dir=args.cache)
    rows, shown = [], {}
    for donor in range(args.donors):
        for target in range(args.targets):
            params = edit(model, "layer2", headwear_edit(donor, target), EditOptions(lr=LR), rewriter=rw).model.params
            after = metrics.render(gen, params, 300, 1)
            change = np.abs(after - before).mean(-1) / 2
            rows.append({"donor": donor, "target": target, "image_donor": bare[donor], "image_target": caps[target],
                         "held_out_caps_detected": float(faces.detect(after[held], "headwear").mean()),
                         "held_out_caps_top_change": float(change[held][:, top].mean()),
                         "plain_change_outside": float(change[plain][:, ~top].mean())})
            shown[donor, target] = after[held[:12]]
            print(json.dumps(rows[-1]), flush=True)
    best = min(rows, key=lambda r: (r["held_out_caps_detected"], r["plain_change_outside"]))
    images.save(str(args.results / "faces_headwear_heldout.png"),
                np.concatenate([before[held[:12]], shown[best["donor"], best["target"]]]), cols=12)
    record.save(args.results / "faces_headwear_candidates.json", {"held_out_caps": held, "rows": rows, "best": best})
    print(f"\nbest: {best}\n\n| donor \\ target | " + " | ".join(str(t) for t in range(args.targets)) + " |")
    print("|---" * (args.targets + 1) + "|")
    for donor in range(args.donors):
        print(f"| {donor} | " + " | ".join(f"{r['held_out_caps_detected']:.0%}" for r in rows if r["donor"] == donor) + " |")


def write_edits(args, model):
    from jaxrewrite.rewrite.editfile import write_edit

    (args.assets / "edits" / "dcgan-faces").mkdir(parents=True, exist_ok=True)
    for name, (edit, rule) in edit_specs().items():
        write_edit(edit, args.assets / "edits" / "dcgan-faces" / f"{name}.json", {"jaxrewrite": rule})
        print(f"{name}: object {edit.object[0]}, paste {edit.paste[0]}, context {[k[0] for k in edit.key]}")


def measure(args, model):
    for name in args.edits:
        measure_one(args, model, name)


def measure_one(args, model, name):
    import time

    from jaxrewrite import images
    from jaxrewrite.rewrite.editfile import read_edit
    from jaxrewrite.rewrite.finetune import finetune, rgb_goal
    from jaxrewrite.rewrite.pipeline import EditOptions, edit
    from jaxrewrite.rewrite.rewriter import Rewriter

    path = args.assets / "edits" / "dcgan-faces" / f"{name}.json"
    rule = json.loads(path.read_text())["jaxrewrite"]
    attribute = rule["attribute"]
    request = read_edit(path)
    gen = model.generator()
    before = metrics.render(gen, model.params, args.n, args.seed)
    detected = faces.detect(before, attribute)
    shown = np.arange(min(12, args.n)) if rule["effect"] == "add" else np.nonzero(detected)[0][:12]
    inside = faces.region(rule.get("region", faces.EDIT_REGION))
    rw = Rewriter(model, rule["layer"], cache_dir=args.cache)
    rows, grids = {}, [before[shown]]
    base = detected.mean()
    for method in ("projected", "lambda", "lambda-dense", "closed", "finetune"):
        start = time.time()
        if method == "finetune":
            z, target, box = rgb_goal(gen, model.params, request)
            params, losses = finetune(gen, model.params, z, target, box, args.finetune_niter, args.finetune_lr)
        else:
            result = edit(model, rule["layer"], request, EditOptions(method=method, lr=rule["lr"], niter=args.niter), rewriter=rw)
            params, losses = result.model.params, result.losses
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
    images.save(str(args.results / f"faces_{name}.png"), np.concatenate(grids), cols=len(shown))
    data = {"edit": name, "n": args.n, "seed": args.seed, "detected_before": float(base),
            "prevalence_before": faces.prevalence(base, attribute), "finetune_niter": args.finetune_niter,
            "finetune_lr": args.finetune_lr, "rows": rows}
    record.save(args.results / f"faces_{name}.json", data)
    print(f"\n{name}\n\n| method | {attribute} detected | estimated share | mean change in the edited region | outside | s |")
    print("|---|---|---|---|---|---|")
    print(f"| before | {base:.1%} | {faces.prevalence(base, attribute):.0%} | – | – | – |")
    for method, r in rows.items():
        print(f"| {method} | {r['detected']:.1%} | {r['prevalence']:.0%} | {r['change_inside']:.4f} | "
              f"{r['change_outside']:.4f} | {r['seconds']:.1f} |")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["detector", "headwear", "edits", "measure"])
    ap.add_argument("--donors", type=int, default=4, help="headwear: bare heads tried as donors")
    ap.add_argument("--targets", type=int, default=4, help="headwear: caps tried as paste targets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--edits", nargs="+", default=["glasses", "no_glasses", "no_headwear"])
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--finetune-niter", type=int, default=2001)
    ap.add_argument("--niter", type=int, default=2001, help="measure: steps of the rewrites")
    ap.add_argument("--finetune-lr", type=float, default=2e-4, help="0.01 x the weight scale ratio (0.02)")
    ap.add_argument("--cache", default=zoo.cache_dir())
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    ap.add_argument("--assets", type=Path, default=ROOT / "jaxrewrite" / "assets",
                    help="detector and edits: the package's assets folder they are written to")
    args = ap.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    model = modelfile.load(zoo.resolve("dcgan-faces"))
    {"detector": detector, "headwear": choose_headwear, "edits": write_edits, "measure": measure}[args.what](args, model)


if __name__ == "__main__":
    main()
