"""The DCGAN faces: the glasses detector reproduces its fit on the hand labels, and the
shipped glasses edit puts glasses on unseen faces while changing the rest far less, and the
headwear edit removes caps from held-out capped faces."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxrewrite import faces, zoo
from jaxrewrite.rewrite.editfile import read_edit
from jaxrewrite.rewrite.pipeline import EditOptions, edit
from jaxrewrite.worlds import metrics

LABELS = Path(__file__).resolve().parents[1] / "benchmarks" / "faces_labels.json"


@pytest.mark.parametrize("attribute", ["glasses", "headwear"])
def test_detector_is_its_fit_on_the_hand_labels(faces_model, attribute):
    spec = json.loads(LABELS.read_text())[attribute]
    images = metrics.render(faces_model.generator(), faces_model.params, 300, 1)
    keep = np.array([i not in spec["unsure"] for i in range(300)])
    images, labels = images[keep], np.array([i in spec["yes"] for i in range(300)])[keep]
    shipped = faces.detectors()[attribute]
    feats = faces.FEATURES[attribute](images)
    refit = faces.fit(feats, labels)
    for k in ("mean", "std", "w"):
        np.testing.assert_allclose(refit[k], shipped[k], rtol=1e-3, atol=1e-5)
    assert faces.auc(faces.score(feats, shipped), labels) >= shipped["cv_auc"] > 0.85  # in sample >= out of fold
    assert abs(np.mean(faces.detect(images[~labels], attribute)) - 0.10) < 0.01


@pytest.mark.parametrize("attribute", ["glasses", "headwear"])
def test_prevalence_inverts_the_detector_rates(attribute):
    tpr, fpr = faces.detectors()[attribute]["tpr"], faces.detectors()[attribute]["fpr"]
    for p in (0.0, 0.3, 1.0):
        assert abs(faces.prevalence(tpr * p + fpr * (1 - p), attribute) - p) < 1e-9


def test_glasses_edit_on_unseen_faces(faces_model, tmp_path):
    path = zoo.shipped_edit("dcgan-faces", "glasses")
    rule = json.loads(Path(path).read_text())["jaxrewrite"]
    edited = edit(faces_model, rule["layer"], read_edit(path), EditOptions(method="closed"), cache_dir=str(tmp_path)).model
    gen = faces_model.generator()
    before = metrics.render(gen, faces_model.params, 200, 2)
    after = metrics.render(gen, edited.params, 200, 2)
    gain = faces.prevalence(faces.detect(after, "glasses").mean(), "glasses") - \
        faces.prevalence(faces.detect(before, "glasses").mean(), "glasses")
    assert gain > 0.4
    change = np.abs(after - before).mean(-1)
    band = faces.region(faces.EDIT_REGION)
    assert change[:, band].mean() > 2 * change[:, ~band].mean()


def test_faces_demo(faces_wheel, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from jaxrewrite import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    zoo.fetch("dcgan-faces", str(faces_wheel))
    out = tmp_path / "faces.png"
    assert cli.main(["demo", "faces", "--n", "100", "--out", str(out), "--cache", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    share = printed.split("estimated true share ")[1].split(")")[0]
    before, after = (int(p.strip(" %")) for p in share.split("->"))
    assert after > before + 30, printed
    with Image.open(out) as im:
        assert im.size == (8 * 64, 2 * 64)


def test_no_glasses_edit_lowers_the_detected_rate(faces_model, tmp_path):
    path = zoo.shipped_edit("dcgan-faces", "no_glasses")
    rule = json.loads(Path(path).read_text())["jaxrewrite"]
    assert rule["effect"] == "remove"
    edited = edit(faces_model, rule["layer"], read_edit(path), EditOptions(method="closed"), cache_dir=str(tmp_path)).model
    gen = faces_model.generator()
    before = faces.detect(metrics.render(gen, faces_model.params, 200, 2), "glasses").mean()
    after = faces.detect(metrics.render(gen, edited.params, 200, 2), "glasses").mean()
    assert after < 0.6 * before


def test_no_headwear_edit_on_held_out_caps(faces_model, tmp_path):
    """The hand-labelled caps the edit does not use (its context is the first 20): fewer are
    detected after the edit, and their tops change more than bare faces change elsewhere."""
    path = zoo.shipped_edit("dcgan-faces", "no_headwear")
    rule = json.loads(Path(path).read_text())["jaxrewrite"]
    request = read_edit(path)
    caps, bare = faces.split_labels(json.loads(LABELS.read_text())["headwear"])
    held, bare = caps[20:], bare[100:120]
    assert not set(held) & ({n for n, _ in request.key} | {request.paste[0], request.object[0]})
    edited = edit(faces_model, rule["layer"], request, EditOptions(lr=rule["lr"]), cache_dir=str(tmp_path)).model
    gen = faces_model.generator()
    before = metrics.render(gen, faces_model.params, 300, 1)
    after = metrics.render(gen, edited.params, 300, 1)
    assert faces.detect(after[held], "headwear").mean() < 0.8 * faces.detect(before[held], "headwear").mean()
    change = np.abs(after - before).mean(-1)
    top = faces.region(rule["region"])
    assert change[held][:, top].mean() > 2 * change[bare][:, ~top].mean()
