"""The 78 edit requests the paper's authors painted with the official UI
(`../shared/golden/official_masks`): every complete one drives `edit`/`erase` through the API,
the key-only ones drive `zero`, the incomplete and the foreign file get one clear line each."""

import numpy as np
import pytest
from conftest import run

import factories
import jaxrewrite as jr
from jaxrewrite.rewrite import editfile
from jaxrewrite.rewrite.editfile import EditFileError
from jaxrewrite.rewrite.rewriter import Rewriter

INCOMPLETE = "proggan/church/multikey_waternobot.json"  # key + object, no paste
FOREIGN = "reflections/progan-kitchen/posneg.json"  # another experiment's data, not a request
ERASE_ONLY = "stylegan/church/multikey_watermark_with_paste.json"  # paste + key, no object


@pytest.fixture(scope="module")
def folder(golden):
    return golden / "official_masks"


def _files(folder):
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*.json"))}


def test_every_file_gets_its_operation_or_one_line(folder):
    model = jr.convert(factories.proggan(np.random.default_rng(0), (16, 32, 16, 16, 16)))  # 32 px
    rw = Rewriter(model, "layer5", stats_samples=20)  # keys and values at 16 x 16
    files = _files(folder)
    assert len(files) == 78
    works, errors = {k: [] for k in editfile.KINDS}, {}
    for i, (name, path) in enumerate(files.items()):
        obj = editfile.read_json(path)
        for kind in editfile.KINDS:
            try:
                request = editfile.parse_edit(obj, name=name, kind=kind)
            except EditFileError as e:
                assert "\n" not in str(e) and str(e).startswith(name + ": ")
                errors[name, kind] = str(e)
                continue
            works[kind].append(name)
            if i % 3 and (kind != "zero" or request.paste is not None):  # every file is read; goals and keys
                continue  # at the layer for a third of them, and the zero of every key-only one
            if kind == "edit":
                goal = rw.copy_paste_goal(request)
                assert goal.goal_out["fmap"].shape[1:3] == goal.goal_in["fmap"].shape[1:3]
            elif kind == "erase":
                assert len(rw.erase_goal(request, 8).units) == 8
            else:
                result = jr.edit(model, "layer5", request, jr.EditOptions(kind="zero", stats_samples=20), rewriter=rw)
                assert result.context.shape == (1, 16) and not np.array_equal(result.weight, rw.model.params[
                    "layer5"]["conv"]["kernel"])
    assert len(works["edit"]) == 68 and set(works["erase"]) == set(works["edit"]) | {ERASE_ONLY}
    assert len(works["zero"]) == 77 and FOREIGN not in works["zero"]  # every request has a key (or a paste)
    key_only = set(works["zero"]) - set(works["erase"]) - {INCOMPLETE}
    assert len(key_only) == 7 and all("multikey" in n or "remove_earrings" in n for n in key_only)
    for kind in ("edit", "erase"):
        assert errors[INCOMPLETE, kind] == f"{INCOMPLETE}: missing 'paste'"
    for kind in editfile.KINDS:
        assert errors[FOREIGN, kind] == f"{FOREIGN}: not an edit request (no 'object', 'paste' or 'key' entry)"


def test_the_command_line_on_official_files(folder, tmp_path, capsys):
    """One of each on towns64 (masks painted at 256 px, resized to its 32 px layer)."""
    files = _files(folder)
    common = ["--model", "towns64", "--layer", "layer8", "--stats-samples", 50, "--cache", tmp_path]
    assert run("edit", "--edit", files["proggan/church/spire2tree.json"], "--niter", 5, "--out", tmp_path / "e.msgpack",
               *common) == 0
    assert run("erase", "--edit", files[ERASE_ONLY], "--niter", 5, "--out", tmp_path / "r.msgpack", *common) == 0
    assert run("zero", "--edit", files["stylegan/church/multikey_watermark.json"], "--rank", 2, "--amount", 0.1,
               "--out", tmp_path / "z.msgpack", *common) == 0
    assert "zeroed 2 context direction(s) (zca), amount 0.1" in capsys.readouterr().out
    for name, kind in ((INCOMPLETE, "edit"), (INCOMPLETE, "erase"), (FOREIGN, "zero")):
        assert run(kind, "--edit", files[name], "--out", tmp_path / "bad.msgpack", *common) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jaxrewrite: error: ") and str(files[name]) in err[0]
    assert not (tmp_path / "bad.msgpack").exists()
