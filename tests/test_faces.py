"""The DCGAN faces: the glasses detector reproduces its fit on the hand labels, and the
shipped glasses edit puts glasses on unseen faces while changing the rest far less."""

import json
from pathlib import Path

import numpy as np

from jaxrewrite import faces, zoo
from jaxrewrite.rewrite.editfile import read_edit
from jaxrewrite.rewrite.rewriter import apply_edit
from jaxrewrite.worlds import metrics

LABELS = Path(__file__).resolve().parents[1] / "benchmarks" / "faces_labels.json"


def _labelled(model):
    spec = json.loads(LABELS.read_text())["glasses"]
    images = metrics.render(model.generator(), model.params, 300, 1)
    keep = np.array([i not in spec["unsure"] for i in range(300)])
    return images[keep], np.array([i in spec["yes"] for i in range(300)])[keep]


def test_detector_is_its_fit_on_the_hand_labels(faces_model):
    images, labels = _labelled(faces_model)
    feats = faces.features(images)
    refit = faces.fit(feats, labels)
    for k in ("mean", "std", "w"):
        np.testing.assert_allclose(refit[k], faces.GLASSES[k], rtol=1e-3, atol=1e-5)
    scores = faces.score(feats, faces.GLASSES)
    assert faces.auc(scores, labels) > 0.876  # in sample (0.893) at least the out-of-fold AUC
    assert abs(np.mean(faces.wears_glasses(images[~labels])) - 0.10) < 0.01


def test_prevalence_inverts_the_detector_rates():
    tpr, fpr = faces.GLASSES["tpr"], faces.GLASSES["fpr"]
    for p in (0.0, 0.3, 1.0):
        assert abs(faces.prevalence(tpr * p + fpr * (1 - p)) - p) < 1e-9


def test_glasses_edit_on_unseen_faces(faces_model, tmp_path):
    path = zoo.shipped_edit("dcgan-faces", "glasses")
    rule = json.loads(Path(path).read_text())["jaxrewrite"]
    edited, info = apply_edit(faces_model, rule["layer"], read_edit(path), method="closed", stats_samples=1000,
                              cache_dir=str(tmp_path))
    gen = faces_model.generator()
    before = metrics.render(gen, faces_model.params, 200, 2)
    after = metrics.render(gen, edited.params, 200, 2)
    gain = faces.prevalence(faces.wears_glasses(after).mean()) - faces.prevalence(faces.wears_glasses(before).mean())
    assert gain > 0.4
    change = np.abs(after - before).mean(-1)
    band = np.zeros((64, 64), bool)
    band[20:36, 12:52] = True
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
