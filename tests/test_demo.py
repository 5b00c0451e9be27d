"""The main job on a fresh machine: the shipped towns64 model and its edits, offline."""

import hashlib
import json

import numpy as np
from PIL import Image

from jaxrewrite import cli, modelfile, zoo
from jaxrewrite.worlds import edits, towns

SHIPPED_EDITS = ("spire2tree", "dome2spire", "erase_windows")
MIN_EFFECT = 0.4  # well below what the shipped spire2tree edit reaches (65% of 500 samples, README)


def test_shipped_model_is_checked_and_documented():
    path = zoo.resolve("towns64")
    filename, sha256 = zoo.SHIPPED["towns64"]
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha256
    model = modelfile.load(path)
    training = model.config["training"]
    assert model.arch == "proggan" and training["world"] == "towns" and training["step"] > 0


def test_shipped_edits_name_their_rule():
    for name in SHIPPED_EDITS:
        rule = edits.rule(zoo.shipped_edit("towns64", name))
        assert rule["kind"] == ("erase" if name.startswith("erase") else "edit")
        with open(zoo.shipped_edit("towns64", name)) as f:
            assert set(json.load(f)) >= {"paste", "key"}


def test_sample_by_name(tmp_path):
    out = tmp_path / "s.npy"
    assert cli.main(["sample", "--model", "towns64", "--n", "64", "--out", str(out)]) == 0
    images = np.load(out)
    frac, off = towns.histogram(towns.segment(images))
    assert off < 0.1 and frac[towns.CLASS["spire"]] > 0 and frac[towns.CLASS["wall"]] > 0


def test_demo(tmp_path, capsys):
    out = tmp_path / "before_after.png"
    assert cli.main(["demo", "--n", "200", "--out", str(out), "--cache", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "spire pixels became tree" in printed
    effect = float(printed.split("samples (seed 2): ")[1].split("%")[0]) / 100
    assert effect > MIN_EFFECT, printed
    with Image.open(out) as im:
        assert im.size == (8 * 64, 2 * 64)
