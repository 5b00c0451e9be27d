"""`jaxrewrite suggest` and `edit --layer auto`: the label-free score, the trials, every
architecture the CLI loads, bad input."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import run

import jaxrewrite as jr
from jaxrewrite import zoo
from jaxrewrite.rewrite import suggest
from jaxrewrite.rewrite.pipeline import EditOptions
from jaxrewrite.tree import get

SPIRE2TREE = zoo.shipped_edit("towns64", "spire2tree")
ERASE = zoo.shipped_edit("towns64", "erase_windows")
RED, GREEN, BLUE = (np.array(c, np.float32) for c in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1]))


def _images(n=4, size=16):
    """Blue images with a red square (the source) in the middle."""
    x = np.broadcast_to(BLUE, (n, size, size, 3)).copy()
    x[:, 6:10, 6:10] = RED
    return x


def test_score_counts_source_pixels_that_come_to_show_the_goal():
    before, refs = _images(), suggest.References(RED[None], GREEN[None])
    after = before.copy()
    after[:, 6:10, 6:10] = GREEN
    assert suggest.score(before, after, refs) == {"effect": 1.0, "spill": 0.0, "score": 1.0}
    assert suggest.score(before, before, refs)["score"] == 0.0
    half = before.copy()
    half[:, 6:8, 6:10] = GREEN
    assert suggest.score(before, half, refs)["effect"] == 0.5
    everything = np.broadcast_to(GREEN, before.shape)  # the rule, and everything else too
    s = suggest.score(before, everything, refs)
    assert s["effect"] == 1.0 and s["spill"] == 1.0 and s["score"] == 0.0
    muddy = before.copy()
    muddy[:, 6:10, 6:10] = (RED + GREEN) / 2  # changed, but into neither
    assert suggest.score(before, muddy, refs)["effect"] == 0.0


def test_an_erase_must_fill_in_what_surrounds_the_source():
    """Erasing the red square: filled with the blue around it, it worked; with green (a colour
    of the masks' surroundings elsewhere, not here), it did not."""
    before, refs = _images(), suggest.References(RED[None], np.stack([BLUE, GREEN]), local=True)
    filled, wrong = before.copy(), before.copy()
    filled[:, 6:10, 6:10] = BLUE
    wrong[:, 6:10, 6:10] = GREEN
    assert suggest.score(before, filled, refs)["effect"] == 1.0
    assert suggest.score(before, wrong, refs)["effect"] == 0.0
    assert suggest.score(before, wrong, dataclasses.replace(refs, local=False))["effect"] == 1.0


def test_references_keep_what_tells_the_masks_apart():
    img = _images(1)[0]
    img[:, :3] = GREEN  # the object: a green band

    def render(numbers):
        return np.stack([img for _ in numbers])

    square = np.zeros((16, 16), bool)
    square[5:11, 5:11] = True  # the red square and a ring of blue around it
    band = np.zeros((16, 16), bool)
    band[:, :4] = True  # the green band and a column of blue
    request = jr.Request.from_arrays(object=(0, band), paste=(1, square), key=[(1, square)])
    refs = suggest.references(render, request, "edit")
    np.testing.assert_array_equal(np.unique(refs.source, axis=0), RED[None])  # the blue the masks share is gone
    np.testing.assert_array_equal(np.unique(refs.goal, axis=0), GREEN[None])
    assert not refs.local
    erase = suggest.references(render, request, "erase")  # an erase aims at the surroundings
    assert erase.local and np.allclose(erase.goal, BLUE) and erase.where is None


def test_references_fall_back_to_place_and_surroundings():
    """Context masks on plain blue (glasses to be added to bare eyes): the source is told by
    place. An object that looks like its own surroundings (bare skin pasted over glasses):
    the goal is local, as an erase's."""
    img = _images(1)[0]

    def render(numbers):
        return np.stack([img for _ in numbers])

    plain = np.zeros((16, 16), bool)
    plain[1:4, 1:5] = True  # blue, in blue
    square = np.zeros((16, 16), bool)
    square[6:10, 6:10] = True
    refs = suggest.references(render, jr.Request.from_arrays(object=(0, square), paste=(1, plain), key=[(1, plain)]),
                              "edit")
    np.testing.assert_array_equal(refs.where, plain)
    before = _images(2)
    after = before.copy()
    after[:, 1:4, 1:5] = RED  # the red object added where the context is
    assert suggest.score(before, after, refs)["effect"] == 1.0
    assert suggest.score(before, before, refs)["effect"] == 0.0  # there, only a change can count
    refs = suggest.references(render, jr.Request.from_arrays(object=(0, plain), paste=(1, square), key=[(1, square)]),
                              "edit")
    assert refs.local and refs.where is None


def test_downscale_area_averages():
    x = np.arange(2 * 128 * 128 * 3, dtype=np.float32).reshape(2, 128, 128, 3)
    small = suggest.downscale(x)
    assert small.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(small[0, 0, 0], x[0, :2, :2].mean((0, 1)))
    assert suggest.downscale(x[:, :64, :64]).shape == (2, 64, 64, 3)


@pytest.fixture(scope="module")
def towns():
    return jr.load("towns64")


def test_default_layers_are_those_at_least_an_eighth_of_the_image(towns):
    assert suggest.default_layers(towns) == [f"layer{i}" for i in range(3, 11)]


def test_suggest_ranks_trials_that_are_the_single_edits(towns, tmp_path):
    """Each trial's kernel is what `jaxrewrite.edit` gives at that layer and rank (the vmapped
    batch is the single edit), the ranking is sorted, and the JSON has the issue's shape."""
    request = jr.read_edit(SPIRE2TREE)
    options = EditOptions(method="lambda", niter=25)  # short: L1 Adam amplifies float noise over steps
    s = suggest.suggest(towns, request, ["layer6", "layer8"], [1, 2], options, samples=24,
                        cache_dir=str(tmp_path), keep_weights=True)
    assert [(t.layer, t.rank) for t in s.ranking] != [] and len(s.ranking) == 4
    assert [t.score for t in s.ranking] == sorted((t.score for t in s.ranking), reverse=True)
    assert all(0 <= t.effect <= 1 and 0 <= t.spill <= 1 and t.loss_end < t.loss_start for t in s.ranking)
    for t in s.ranking:
        single = jr.edit(towns, t.layer, request, options.replace(rank=t.rank), cache_dir=str(tmp_path))
        np.testing.assert_allclose(t.weight, single.weight, atol=2e-4 * np.abs(single.weight).max())
        np.testing.assert_allclose(t.loss_end, single.losses[-1], rtol=2e-4)
    data = json.loads(json.dumps(s.to_json()))
    assert set(data["ranking"][0]) >= {"layer", "rank", "score"} and isinstance(data["likely_to_work"], bool)
    assert "weight" not in data["ranking"][0]


def test_the_score_prefers_the_layer_that_changes_the_rule(towns, tmp_path):
    """spire2tree: the shipped layer8 turns 61% of spires into trees on validation samples,
    layer3 about 1% (README); the suggestion, never told, must rank layer8 above layer3 and
    expect the edit to work, by a margin."""
    s = suggest.suggest(towns, jr.read_edit(SPIRE2TREE), ["layer3", "layer8"], [1], cache_dir=str(tmp_path))
    scores = {t.layer: t for t in s.ranking}
    assert s.best.layer == "layer8" and s.likely_to_work
    assert scores["layer8"].effect > 0.3 and scores["layer3"].effect < 0.1


def test_an_edit_that_changes_nothing_is_not_likely_to_work(towns, tmp_path):
    """The shipped request at a learning rate that leaves the weights where they were."""
    s = suggest.suggest(towns, jr.read_edit(SPIRE2TREE), ["layer8"], [1], EditOptions(method="lambda", lr=1e-7),
                        samples=24, cache_dir=str(tmp_path))
    assert not s.likely_to_work and s.best.effect < suggest.WORKS


def _models(golden):
    import factories

    rng = np.random.default_rng(0)
    yield "stylegan2", jr.convert(factories.stylegan2(rng, 16, 16, 1, {4: 16, 8: 16, 16: 8})), ["layer4", "layer5"]
    yield "dcgan", jr.convert(factories.dcgan(rng)), None  # every default layer, and --layer auto
    yield "nvidia", jr.load(golden / "nvidia" / "ada_auto32.pkl"), ["layer4"]


@pytest.mark.parametrize("which", ["stylegan2", "dcgan", "nvidia"])
def test_suggest_on_every_architecture(golden, tmp_path, which, capsys):
    """The command on a StyleGAN2 (an upsampling layer), a DCGAN (with `edit --layer auto`,
    which edits the suggested layer) and an NVIDIA pickle."""
    _, model, layers = next(m for m in _models(golden) if m[0] == which)
    path = tmp_path / "m.msgpack"
    jr.save(model, path)
    size = model.generator()(model.params, np.zeros((1, model.generator().z_dim), np.float32)).shape[1]
    box = np.zeros((size, size), bool)
    box[size // 4:size // 2, size // 4:size // 2] = True
    edit = tmp_path / "e.json"
    jr.write_edit(jr.Request.from_arrays(object=(1, box), paste=(2, box), key=[(2, box), (3, box)]), edit)
    common = ["--model", path, "--edit", edit, "--niter", "5", "--stats-samples", "20", "--cache", tmp_path]
    assert run("suggest", *common, *(["--layers", *layers] if layers else []), "--ranks", "1", "2",
               "--samples", "4", "--json", tmp_path / "r.json") == 0
    data = json.loads((tmp_path / "r.json").read_text())
    expected = layers or suggest.default_layers(model)
    assert {r["layer"] for r in data["ranking"]} == set(expected) and len(data["ranking"]) == 2 * len(expected)
    if layers:
        return
    capsys.readouterr()
    assert run("edit", *common, "--layer", "auto", "--rank", "1", "--out", tmp_path / "out.msgpack") == 0
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if line.startswith("suggested layer"))
    layer = best.split()[2]
    assert "rank 1" in best and f"layer {layer} (suggested)" in out
    edited, original = jr.load(tmp_path / "out.msgpack"), jr.load(path)
    kernel = f"{jr.Rewriter(original, layer).first}.kernel"
    for name in [f"{jr.Rewriter(original, b).first}.kernel" for b in expected]:
        assert np.array_equal(get(edited.params, name), get(original.params, name)) == (name != kernel), name


def test_suggest_command_reads_an_erase_and_prints_the_ranking(tmp_path, capsys):
    assert run("suggest", "--model", "towns64", "--edit", ERASE, "--layers", "layer6", "--ranks", "1",
               "--niter", "50", "--samples", "8", "--cache", tmp_path) == 0
    out = capsys.readouterr().out
    assert "| 1 | layer6 | 1 |" in out and "suggested: --layer layer6 --rank 1" in out


@pytest.mark.parametrize("argv, message", [
    (["--layers", "layer99"], "'layer99' is not a rewritable layer"),
    (["--json", "out.txt"], "--json out.txt: must end in .json"),
    (["--samples", "0"], "argument --samples: must be an integer >= 1"),
    (["--ranks", "0"], "argument --ranks: must be an integer >= 1"),
])
def test_suggest_bad_input_fails_before_any_work(tmp_path, capsys, argv, message):
    argv = [a.replace("out.txt", str(tmp_path / "out.txt")) for a in argv]
    message = message.replace("out.txt", str(tmp_path / "out.txt"))
    assert run("suggest", "--model", "towns64", "--edit", SPIRE2TREE, "--cache", tmp_path, *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists() and not list(tmp_path.glob("c_matrix*"))


def test_layer_auto_is_refused_for_a_zero(tmp_path, capsys):
    assert run("zero", "--model", "towns64", "--edit", SPIRE2TREE, "--layer", "auto", "--out",
               tmp_path / "z.msgpack") == 2
    assert "--layer auto tries copy-paste edits and erases" in capsys.readouterr().err
    assert not (tmp_path / "z.msgpack").exists()


def test_suggest_api_rejects_what_it_cannot_try(towns):
    request = jr.read_edit(SPIRE2TREE)
    with pytest.raises(ValueError, match="not a 'zero'"):
        suggest.suggest(towns, request, options=EditOptions(kind="zero"))
    with pytest.raises(ValueError, match="ranks must be integers"):
        suggest.suggest(towns, request, ranks=[])
    with pytest.raises(ValueError):
        suggest.suggest(towns, jr.Request.from_arrays(paste=(0, np.ones((8, 8), bool))))
