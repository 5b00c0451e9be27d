"""The towns world, its segmenter, the section 5.1 metrics and edits written from segmentations."""

import json

import numpy as np
import pytest

from jaxrewrite.rewrite.editfile import read_edit
from jaxrewrite.worlds import edits, metrics, towns


@pytest.fixture(scope="module")
def world():
    return towns.scenes(0, 256)


def test_scenes_are_deterministic_images_in_range(world):
    images, labels = world
    assert images.shape == (256, 64, 64, 3) and images.dtype == np.float32
    assert labels.shape == (256, 64, 64)
    assert images.min() >= -1 and images.max() <= 1
    again, _ = towns.scenes(0, 256)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, towns.scenes(1, 256)[0])


def test_segmenter_labels_real_scenes(world):
    images, labels = world
    assert np.mean(towns.segment(images) == labels) >= 0.999


def test_every_class_appears_and_the_palette_is_separable(world):
    frac, off = towns.histogram(world[1])
    assert off == 0 and np.all(frac > 0.001), dict(zip(towns.CLASSES, frac))
    gaps = np.linalg.norm(towns.PALETTE[:, None] - towns.PALETTE[None], axis=-1) + 9 * np.eye(len(towns.CLASSES))
    assert gaps.min() > 2 * np.sqrt(3) * towns.JITTER  # jittered colours never cross half-way


def test_off_palette_pixels_are_unlabelled():
    image = np.full((1, 2, 2, 3), -1.0, np.float32)
    image[0, 0, 0] = (1.0, -1.0, 1.0)  # magenta
    image[0, 1, 1] = towns.PALETTE[towns.CLASS["dome"]] * 2 - 1
    seg = towns.segment(image)
    assert seg[0, 0, 0] == -1 and seg[0, 1, 1] == towns.CLASS["dome"]


def _aspect(labels, cls):
    ratios = []
    for lab in labels[:128]:
        for comp in edits.components(lab == towns.CLASS[cls]):
            ys, xs = np.nonzero(comp)
            if comp.sum() >= 20:
                ratios.append((np.ptp(ys) + 1) / (np.ptp(xs) + 1))
    return np.median(ratios)


def test_spires_and_domes_differ_by_shape(world):
    spire, dome = _aspect(world[1], "spire"), _aspect(world[1], "dome")
    assert spire > 0.9 and dome < 0.6, (spire, dome)


def test_components_and_dilation():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[0, 1] = mask[4, 4] = True
    comps = edits.components(mask)
    assert [c.sum() for c in comps] == [2, 1] and comps[1][4, 4]
    grown = metrics.dilate(mask[None], 1)[0]
    assert grown.sum() == 6 + 9 and grown[5, 5] and not grown[3, 2]


def test_metrics_of_a_perfect_and_a_sloppy_edit(world):
    images, labels = world
    before = images[:32]
    after = before.copy()
    spire = labels[:32] == towns.CLASS["spire"]
    after[spire] = towns.PALETTE[towns.CLASS["crown"]] * 2 - 1
    perfect = metrics.compare(before, after, ["spire"], ["crown", "trunk"])
    assert perfect["effect"] == 1.0 and perfect["images_changed"] == 1.0 and perfect["collateral"] == 0
    assert perfect["histogram_after"]["spire"] == 0 and perfect["histogram_tv"] > 0
    sloppy = after.copy()
    sloppy[:, :5] = 1.0  # paints the top 5 rows white: ~7% of the pixels outside the spires
    worse = metrics.compare(before, sloppy, ["spire"], ["crown", "trunk"])
    assert worse["collateral"] > 0.01 and 0.05 < worse["collateral_changed_px"] < 0.09
    assert worse["off_palette"][1] > 0
    none = metrics.compare(before, before, ["spire"], ["crown"])
    assert none["effect"] == 0 and none["collateral"] == 0 and none["histogram_tv"] == 0
    with pytest.raises(ValueError, match="unknown class"):
        metrics.compare(before, before, ["steeple"], ["crown"])


def test_class_edits_pick_clean_regions_and_round_trips(world, tmp_path):
    _, labels = world
    exact = edits.class_edits(labels, "spire", ["crown", "trunk"], n=4, grow=0)
    boxes = [[edits.box(m > 0) for _, m in (e.paste, e.object)] for e in exact]
    mismatch = [abs(p[0] - o[0]) + abs(p[1] - o[1]) for p, o in boxes]
    assert len(exact) == 4 and mismatch == sorted(mismatch)  # best-matching boxes first
    edit = edits.class_edits(labels, "spire", ["crown", "trunk"], n=4, n_keys=5)[0]
    number, mask = edit.paste
    painted = mask > 0
    assert np.mean(labels[number][painted] == towns.CLASS["spire"]) > 0.4  # the spire plus a 1px rim
    assert len(edit.key) == 5 and edit.key[0].image == edit.paste.image and np.array_equal(edit.key[0].mask, edit.paste.mask)
    o_number, o_mask = edit.object
    assert np.isin(labels[o_number][o_mask > 0], [towns.CLASS["crown"], towns.CLASS["trunk"]]).mean() > 0.4
    path = tmp_path / "spire2tree.json"
    rule = {"layer": "layer5", "kind": "edit", "source": ["spire"], "target": ["crown", "trunk"]}
    edits.write(edit, path, rule)
    back = read_edit(path)
    assert [(e.image, e.mask.tolist()) for e in (back.object, back.paste, *back.key)] == \
        [(e.image, e.mask.tolist()) for e in (edit.object, edit.paste, *edit.key)] and edits.rule(path) == rule
    erase = edits.class_edits(labels, "window", None, n_keys=3, whole_class=True)[0]
    assert erase.object is None and len(erase.key) == 3
    number, mask = erase.paste
    windows = labels[number] == towns.CLASS["window"]
    assert len(edits.components(windows)) > 1 and (mask > 0)[windows].all()


def test_rule_errors(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"paste": [0, "x"]}))
    with pytest.raises(ValueError, match="no 'jaxrewrite' entry"):
        edits.rule(path)
    path.write_text(json.dumps({"jaxrewrite": {"layer": "layer5", "source": ["spire"], "target": ["palm"]}}))
    with pytest.raises(ValueError, match="unknown class"):
        edits.rule(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        edits.rule(path)
