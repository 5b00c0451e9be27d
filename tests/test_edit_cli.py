"""`jaxrewrite edit` / `erase` from weights + request JSON; clean failures on bad input."""

import json

import numpy as np
import pytest
from conftest import nchw, rel_err, run

import checkpoints_convert as cc
from jaxrewrite import modelfile, xla
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
    exported = cc.export(edited)
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
    before = cc.export(modelfile.load(small_model))
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
    ("layer", "unknown layer 'layer9'"),
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
        modelfile.save(cc.convert(factories.stylegan2(np.random.default_rng(0), 16, 16, 1, {4: 16, 8: 16, 16: 8})), sg)
        argv[2], argv[4], message = sg, "layer4", "closed form needs a linear target"
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
