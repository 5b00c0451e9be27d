"""`jaxrewrite edit` / `erase` from weights + request JSON; clean failures on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import nchw, rel_err, run
from PIL import Image

import checkpoints_convert as cc
from jaxrewrite import modelfile, xla
from jaxrewrite.rewrite import editfile
from jaxrewrite.rewrite.editfile import encode_mask


@pytest.mark.parametrize("arch,ckpt,layer,kind", [
    ("stylegan2", "weights_rosinality.pt", "layer6", "edit"),
    ("proggan", "weights.pt", "layer5", "erase"),
])
def test_cli_reproduces_golden_run(golden, tmp_path, arch, ckpt, layer, kind):
    out, art, grid = tmp_path / "edited.msgpack", tmp_path / "a.npz", tmp_path / "grid.png"
    extra = ["--drank", 16] if kind == "erase" else []
    assert run(kind, "--model", golden / arch / ckpt, "--layer", layer, "--edit", golden / arch / f"{kind}_request.json",
               "--stats-samples", 100, "--niter", 60, "--out", out, "--artifacts", art, "--grid", grid,
               "--cache", tmp_path / "cache", *extra) == 0
    g = np.load(golden / arch / f"{kind}_zca.npz")
    a = np.load(art)
    assert rel_err(a["c_matrix"], g["c_matrix"]) < 2e-5
    np.testing.assert_array_equal(a["weight_before"], g["weight_before"])
    assert a["weight_after"].shape == g["weight_after"].shape and a["losses"].shape == (60,)
    assert rel_err(a["losses"], g["loss"]) < 5e-3
    assert rel_err(a["images_after"], g["edited_images_single"]) < 2e-2
    assert rel_err(a["context"], g["key"]) < 2e-4
    # the edited model loads everywhere a model loads and exports to the original layout
    edited = modelfile.load(out)
    gen = edited.generator(**({"noise_batch": 1} if arch == "stylegan2" else {}))
    images = xla.jit(gen)(edited.params, np.load(golden / arch / "samples.npz")["z"])  # compiled as the artifacts
    np.testing.assert_allclose(nchw(images), a["images_after"], atol=1e-5)
    exported = modelfile.to_checkpoint(edited)
    sd = exported["g_ema"] if arch == "stylegan2" else exported
    key = "convs.3.conv.weight" if arch == "stylegan2" else "layer5.conv.weight"
    np.testing.assert_array_equal(sd[key], a["weight_after"])
    assert list(sd) == list((cc.read(str(golden / arch / ckpt))["g_ema"] if arch == "stylegan2"
                             else cc.read(str(golden / arch / ckpt))))
    assert grid.exists() and list((tmp_path / "cache").iterdir())


def _edit_file(tmp_path, **entries):
    mask = np.zeros((16, 16))
    mask[4:9, 5:10] = 1
    url = encode_mask(mask)
    request = {"object": [1, url], "paste": [2, url], "key": [[2, url]]}
    request.update(entries)
    path = tmp_path / "edit.json"
    path.write_text(json.dumps(request))
    return path


def test_cli_edit_small_model_all_methods(tmp_path, small_model):
    """Each method changes layer5 alone, by a rank-1 update along the input channels, and no
    two methods give the same weight; the export keeps every other tensor's bytes."""
    before = modelfile.to_checkpoint(modelfile.load(small_model))
    deltas = {}
    for method in ("projected", "lambda", "closed"):
        out = tmp_path / f"{method}.pt"
        assert run("edit", "--model", small_model, "--layer", "layer5", "--edit", _edit_file(tmp_path),
                   "--stats-samples", 20, "--niter", 30, "--method", method, "--out", out) == 0
        after = cc.read(str(out))
        assert list(after) == list(before)
        assert [k for k in before if not np.array_equal(after[k], before[k])] == ["layer5.conv.weight"]
        delta = (after["layer5.conv.weight"] - before["layer5.conv.weight"]).astype(np.float64)  # OIHW
        s = np.linalg.svd(delta.transpose(1, 0, 2, 3).reshape(delta.shape[1], -1), compute_uv=False)
        assert s[1] < 1e-4 * s[0], method
        deltas[method] = delta
    assert not np.allclose(deltas["projected"], deltas["lambda"]) and not np.allclose(deltas["lambda"], deltas["closed"])


@pytest.mark.parametrize("problem,message", [
    ("layer", "'layer9' is not a rewritable layer; rewritable: layer1 (keys 1x1, values 4x4)"),
    ("json", "malformed JSON"),
    ("empty", "mask is empty"),
    ("number", "image number must be >= 0"),
    ("closed_nonlinear", None),
])
def test_cli_bad_input_fails_cleanly(tmp_path, small_model, capsys, problem, message):
    edit = _edit_file(tmp_path)
    layer = "layer5"
    if problem == "layer":
        layer = "layer9"
    elif problem == "json":
        edit.write_text('{"object": [1, "data:image/png;base64,AAAA"')
    elif problem == "empty":
        edit = _edit_file(tmp_path, paste=[2, encode_mask(np.zeros((16, 16)))])
    elif problem == "number":
        edit = _edit_file(tmp_path, object=[-1, json.loads(edit.read_text())["object"][1]])
    argv = ["edit", "--model", small_model, "--layer", layer, "--edit", edit, "--stats-samples", 10,
            "--niter", 5, "--out", tmp_path / "out.msgpack", "--artifacts", tmp_path / "a.npz"]
    if problem == "closed_nonlinear":
        import factories

        sg = tmp_path / "sg.msgpack"
        modelfile.save(modelfile.convert(factories.stylegan2(np.random.default_rng(0), 16, 16, 1, {4: 16, 8: 16, 16: 8})), sg)
        argv[2], argv[4], message = sg, "layer4", "closed method needs a linear target"
        argv += ["--method", "closed"]
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxrewrite: error:") and message in err[-1]
    assert not (tmp_path / "out.msgpack").exists() and not (tmp_path / "a.npz").exists()


def test_statistics_are_cached_in_the_user_cache_by_default(tmp_path, small_model, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert run("edit", "--model", small_model, "--layer", "layer5", "--edit", _edit_file(tmp_path),
               "--stats-samples", 10, "--niter", 3, "--out", tmp_path / "out.msgpack") == 0
    assert [p.name.split("-")[:2] for p in (tmp_path / "xdg" / "jaxrewrite").glob("c_matrix-*")] == [["c_matrix", "layer5.conv"]]


def test_finetune_baseline_and_gandissect_key(tmp_path, small_model):
    edit = _edit_file(tmp_path)
    out = tmp_path / "ft.msgpack"
    assert run("finetune", "--model", small_model, "--edit", edit, "--niter", 20, "--out", out) == 0
    before, after = modelfile.load(small_model), modelfile.load(out)
    changed = [k for k in ("layer1", "layer5", "output_16x16")
               if not np.array_equal(before.params[k]["conv"]["kernel"], after.params[k]["conv"]["kernel"])]
    assert changed == ["layer1", "layer5", "output_16x16"]  # every weight moves, not one layer
    art = tmp_path / "g.npz"
    assert run("edit", "--model", small_model, "--layer", "layer5", "--edit", edit, "--key-method", "gandissect",
               "--rank", 2, "--stats-samples", 10, "--niter", 5, "--out", tmp_path / "g.msgpack", "--artifacts", art) == 0
    context = np.load(art)["context"]
    assert sorted(np.unique(context)) == [0, 1] and (context.sum(1) == 1).all()


def _pngs_of(request_path, folder):
    """The edit file's masks as PNG files (the data URLs' own bytes): (number, path) per entry."""
    import base64

    obj = json.loads(request_path.read_text())

    def png(name, entry):
        path = folder / f"{name}.png"
        path.write_bytes(base64.b64decode(entry[1].split(",", 1)[1]))
        return f"{entry[0]}:{path}"

    return png("object", obj["object"]), png("paste", obj["paste"]), [png(f"key{i}", k) for i, k in enumerate(obj["key"])]


def test_png_masks_give_the_json_edit_bit_for_bit(tmp_path, capsys):
    """towns64 spire2tree at the official defaults, once from its JSON and once from PNG files of
    the same masks; --save-edit writes the request back in the official format."""
    from jaxrewrite import zoo

    path = Path(zoo.shipped_edit("towns64", "spire2tree"))
    cache = ["--cache", tmp_path / "cache"]
    assert run("edit", "--model", "towns64", "--edit", path, "--out", tmp_path / "json.msgpack", *cache) == 0
    assert "using layer layer8 (edit file), rank 1 (default), lr 0.05 (default)" in capsys.readouterr().out
    obj, paste, key = _pngs_of(path, tmp_path)
    argv = ["edit", "--model", "towns64", "--layer", "layer8", "--object", obj, "--paste", paste]
    argv += [a for k in key for a in ("--context", k)]
    assert run(*argv, "--out", tmp_path / "png.msgpack", "--save-edit", tmp_path / "saved.json", *cache) == 0
    assert "using layer layer8 (flag), rank 1 (default), lr 0.05 (default)" in capsys.readouterr().out
    a, b = (modelfile.load(tmp_path / f"{n}.msgpack").params["layer8"]["conv"]["kernel"] for n in ("json", "png"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, modelfile.load("towns64").params["layer8"]["conv"]["kernel"])
    original, saved = (editfile.read_edit(p) for p in (path, tmp_path / "saved.json"))
    for x, y in zip((original.object, original.paste, *original.key), (saved.object, saved.paste, *saved.key)):
        assert x.image == y.image and np.array_equal(x.mask, y.mask)
    assert json.loads((tmp_path / "saved.json").read_text())["jaxrewrite"] == {"layer": "layer8", "rank": 1, "lr": 0.05}


def test_masks_replace_the_files_entries_and_flags_win(tmp_path, small_model, capsys):
    edit = _edit_file(tmp_path, jaxrewrite={"layer": "layer3", "rank": 2, "lr": 0.01})
    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((3, 3), 255, np.uint8), ((2, 11), (5, 8)))).save(mask)
    out = tmp_path / "o.msgpack"
    assert run("edit", "--model", small_model, "--edit", edit, "--paste", f"7:{mask}", "--lr", 0.02,
               "--stats-samples", 10, "--niter", 3, "--out", out, "--save-edit", tmp_path / "s.json") == 0
    printed = capsys.readouterr().out
    assert "using layer layer3 (edit file), rank 2 (edit file), lr 0.02 (flag)" in printed
    assert "rewriting layer3.conv.kernel" in printed
    saved = editfile.read_edit(tmp_path / "s.json")
    assert saved.paste.image == 7 and saved.object.image == 1 and [k.image for k in saved.key] == [2]


def test_authoring_errors_and_warnings(tmp_path, small_model, capsys):
    full = tmp_path / "full.png"
    Image.fromarray(np.full((20, 30, 3), 255, np.uint8)).save(full)
    part = tmp_path / "part.png"
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 6)).save(part)
    common = ["--model", small_model, "--stats-samples", 10, "--niter", 3]
    assert run("edit", *common, "--layer", "layer5", "--object", f"1:{full}", "--paste", f"2:{part}",
               "--out", tmp_path / "o.msgpack") == 0
    assert "jaxrewrite: warning: the object mask selects 100% of its image" in capsys.readouterr().err
    cases = [
        (["--layer", "layer5", "--paste", f"2:{part}"], "missing 'object'"),
        (["--object", f"1:{part}", "--paste", f"2:{part}"], "give --layer"),
        (["--layer", "layer5"], "give the request as --edit FILE.json or as masks"),
        (["--layer", "layer5", "--object", f"1:{tmp_path / 'nope.png'}", "--paste", f"2:{part}"], "nope.png: cannot read"),
        (["--layer", "layer5", "--object", f"x:{part}", "--paste", f"2:{part}"], "expected N:mask.png"),
        (["--layer", "layer5", "--object", f"1:{part}", "--paste", f"2:{part}", "--grid", tmp_path / "g.gif"],
         "--grid"),
        (["--layer", "layer5", "--object", f"1:{part}", "--paste", f"2:{part}", "--save-edit", tmp_path / "no" / "e.json"],
         "does not exist"),
    ]
    for extra, message in cases:
        assert run("edit", *common, *extra, "--out", tmp_path / "bad.msgpack") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(("jaxrewrite: error:", "jaxrewrite edit: error:")) and message in err[-1], err
    assert not (tmp_path / "bad.msgpack").exists()


def test_sample_chosen_numbers_with_labels(tmp_path, small_model):
    assert run("sample", "--model", small_model, "--n", 10, "--out", tmp_path / "all.npy") == 0
    assert run("sample", "--model", small_model, "--numbers", "3-5,9", "--batch-size", 3, "--out", tmp_path / "some.npy") == 0
    # the same images, up to the rounding of another batch composition
    np.testing.assert_allclose(np.load(tmp_path / "some.npy"), np.load(tmp_path / "all.npy")[[3, 4, 5, 9]], atol=1e-5)
    assert run("sample", "--model", small_model, "--numbers", "3-5,9", "--out", tmp_path / "plain.png") == 0
    assert run("sample", "--model", small_model, "--numbers", "3-5,9", "--label", "--out", tmp_path / "l.png") == 0
    plain, labelled = (np.asarray(Image.open(tmp_path / n)) for n in ("plain.png", "l.png"))
    assert plain.shape == labelled.shape == (32, 32, 3)  # 2 x 2 tiles of 16 px
    assert not np.array_equal(plain[:8], labelled[:8]) and np.array_equal(plain[10:16, 10:16], labelled[10:16, 10:16])
    assert run("sample", "--model", small_model, "--numbers", "5-3", "--out", tmp_path / "x.png") == 2
