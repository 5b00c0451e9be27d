"""Every official run in ../shared/golden reproduced from the weights and the request JSON.

Tolerances (float32, CPU):
* statistics: C to 2e-5 of its scale: the official sums 25,600 float32 outer products per
  batch in float32, we sum per batch in float32 and across batches in float64 (we measure
  ~5e-6); ZCA 5e-5.
* keys: 1e-5 from the official C (the algorithm), 2e-4 from our own C (C's rounding
  differences pass through C^(-1/2) twice).
* goals, boxes, erased units: exact boxes/units, goal maps 1e-5.
* the 60-iteration optimisation: with the official goals and key the ProGAN edit runs and
  the StyleGAN2 'svd' run agree to ~5e-6 (asserted 1e-4). The erase runs and the other
  StyleGAN2 runs are chaotic with respect to rounding: L1 + Adam take sign-like steps, and perturbing goal_in by a
  random 1e-6 in our own implementation moves weight_after by up to 2e-2 and the losses by
  6e-4 (test_l1_adam_is_rounding_sensitive below shows it; a faithful PyTorch port, run in
  float32 by another library build, drifts the same way on erase_zca). For those runs we
  assert that the snapshots before the divergence (steps 0 and 1) match to 1e-4 like the
  stable runs, the loss curve to 2e-3, and 90% of the weight elements to 1e-4 of the weight
  scale (we measure 96-100%). Even step 0 depends on the CPU: Adam's first step is
  g / (|g| + 1e-8), and 4% of this layer's gradient elements are below 1e-6, where the
  gradient's float32 rounding (which differs between CPUs' vector units) moves the step; we
  measure 1.05e-5 on an Intel Xeon and < 1e-5 on an AMD EPYC.
* end to end (our C, keys and goals, then 60 steps): every difference above feeds the same
  chaotic loop, so losses 5e-3 (measured <= 9e-4) and edited images 2e-2 of their scale
  (measured <= 4e-3), against an edit that changes the images by 0.2-1.1 of their scale.
"""

import json

import numpy as np
import pytest
from conftest import nchw, rel_err

from jaxrewrite import modelfile
from jaxrewrite.rewrite import keys as keymod
from jaxrewrite.rewrite.artifacts import torch_layout
from jaxrewrite.rewrite.editfile import parse_edit
from jaxrewrite.rewrite.pipeline import EditOptions, edit
from jaxrewrite.rewrite.rewriter import Goal, Rewriter
from jaxrewrite.tree import get

ARCHS = {"stylegan2": ("weights_rosinality.pt", "layer6"), "proggan": ("weights.pt", "layer5")}
RUNS = ["edit_zca", "edit_svd", "edit_mean", "erase_zca"]
RECORD = (0, 1, 9, 10, 30)


@pytest.fixture(scope="module")
def rewriters(golden):
    return {arch: Rewriter(modelfile.load(str(golden / arch / ckpt)), layer, stats_samples=100, seed=1)
            for arch, (ckpt, layer) in ARCHS.items()}


def _request(golden, arch, run):
    kind = run.split("_")[0]
    return parse_edit(json.loads((golden / arch / f"{kind}_request.json").read_text()), kind=kind)


def _fmap(g, name, arch):
    return g[f"{name}_fmap"] if arch == "stylegan2" else g[name]


def _goals(rw, request, run):
    if run.startswith("erase"):
        goal = rw.erase_goal(request, 16)
        return goal.goal_in, goal.goal_out, goal.units
    goal = rw.copy_paste_goal(request)
    return goal.goal_in, goal.goal_out, goal.box


@pytest.mark.parametrize("arch", ARCHS)
def test_cut_and_statistics(rewriters, golden, arch):
    rw = rewriters[arch]
    g = np.load(golden / arch / "edit_zca.npz")
    assert (rw.first, rw.last) == (str(g["firstlayer"]), str(g["lastlayer"]))
    assert rw.k_hw == tuple(g["k_shape"][2:]) and rw.v_hw == tuple(g["v_shape"][2:])
    assert rel_err(rw.c_matrix, g["c_matrix"]) < 2e-5
    assert rel_err(rw.zca_matrix, g["zca_matrix"]) < 5e-5
    np.testing.assert_array_equal(torch_layout(rw.model, rw.weight_path, get(rw.model.params, rw.weight_path)),
                                  g["weight_before"])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("run", RUNS)
def test_goals_and_keys(rewriters, golden, arch, run):
    rw = rewriters[arch]
    g = np.load(golden / arch / f"{run}.npz")
    edit = _request(golden, arch, run)
    goal_in, goal_out, extra = _goals(rw, edit, run)
    if run.startswith("erase"):
        np.testing.assert_array_equal(extra, g["erased_units"])
        assert rel_err(np.diag(rw.c_matrix), g["unit_mean_square"]) < 2e-5
    else:
        assert extra == tuple(g["paste_bounds_tlbr"])
    assert rel_err(nchw(goal_in["fmap"]), _fmap(g, "goal_in", arch)) < 1e-5
    assert rel_err(nchw(goal_out["fmap"]), _fmap(g, "goal_out", arch)) < 1e-5
    if arch == "stylegan2":
        for field in ("style", "latent", "output"):
            assert rel_err(nchw(goal_in[field]), g[f"goal_in_{field}"]) < 1e-5, field
        assert rel_err(nchw(goal_out["output"]), g["goal_out_output"]) < 1e-5
    method = run.split("_")[1]
    examples = rw.key_examples(edit.key)
    official_c = {"zca": g["zca_matrix"], "svd": g["c_matrix"], "mean": g["c_matrix"]}[method]
    assert rel_err(getattr(keymod, f"{method}_key")(examples, official_c, 1), g["key"]) < 1e-5
    assert rel_err(rw.key(edit.key, 1, method), g["key"]) < 2e-4


def _official_goals(g, arch):
    to = lambda x: np.asarray(x).transpose(0, 2, 3, 1)
    if arch == "proggan":
        return {"fmap": to(g["goal_in"])}, {"fmap": to(g["goal_out"])}
    goal_in = {"fmap": to(g["goal_in_fmap"]), "style": g["goal_in_style"], "latent": g["goal_in_latent"],
               "output": to(g["goal_in_output"]), "noise_row": np.zeros(1, np.int32)}
    return goal_in, {"fmap": to(g["goal_out_fmap"])}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("run", RUNS)
def test_insert_from_official_goals(rewriters, golden, arch, run):
    rw = rewriters[arch]
    g = np.load(golden / arch / f"{run}.npz")
    result = rw.insert(Goal(*_official_goals(g, arch)), g["key"], niter=60, piter=10, lr=0.05, record=RECORD)
    losses, snaps = result.losses, result.snapshots
    after = torch_layout(rw.model, rw.weight_path, result.weight)
    delta = after - g["weight_before"]
    # the update lies in span(key) along the input axis (axis -3 in PyTorch layout)
    inputs_last = np.moveaxis(delta, -3, -1)
    assert np.abs(inputs_last - inputs_last @ g["key"].T @ g["key"]).max() < 1e-6 * np.abs(g["weight_before"]).max()
    snapshots = [torch_layout(rw.model, rw.weight_path, s) for s in np.asarray(snaps)]
    if run == "edit_svd" or (arch == "proggan" and run.startswith("edit")):
        assert rel_err(losses, g["loss"]) < 1e-4
        assert rel_err(after, g["weight_after"]) < 1e-4
        for it, snap in zip(RECORD, snapshots):
            assert rel_err(snap, g[f"weight_callback_it{it}"]) < 1e-4, it
    else:
        assert rel_err(losses, g["loss"]) < 2e-3
        assert rel_err(snapshots[0], g["weight_callback_it0"]) < 1e-4
        assert rel_err(snapshots[1], g["weight_callback_it1"]) < 1e-4
        close = np.abs(after - g["weight_after"]) <= 1e-4 * np.abs(g["weight_after"]).max()
        assert close.mean() > 0.9


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("run", RUNS)
def test_end_to_end_edit(rewriters, golden, arch, run):
    """From weights + request JSON to edited images through `jaxrewrite.edit`, as the command runs it."""
    rw = rewriters[arch]
    g = np.load(golden / arch / f"{run}.npz")
    kind, key_method = run.split("_")
    options = EditOptions(kind=kind, key_method=key_method, niter=60, drank=16, stats_samples=100)
    result = edit(rw.model, ARCHS[arch][1], _request(golden, arch, run), options, rewriter=rw)
    params, losses = result.model.params, result.losses
    from jaxrewrite.rewrite.artifacts import render

    images = nchw(render(rw, params, list(range(8))))
    assert rel_err(losses, g["loss"]) < 5e-3
    assert rel_err(images, g["edited_images_single"]) < 2e-2
    # the edit did something the golden edit also did
    before = nchw(render(rw, rw.model.params, list(range(8))))
    assert rel_err(images, before) > 10 * rel_err(images, g["edited_images_single"])


def test_l1_adam_is_rounding_sensitive(rewriters, golden):
    """Why the StyleGAN2 zca/mean/erase tolerances are looser: our own run moves by far more
    than a 1e-6 random perturbation of its input."""
    rw = rewriters["stylegan2"]
    g = np.load(golden / "stylegan2" / "erase_zca.npz")
    goal_in, goal_out = _official_goals(g, "stylegan2")
    spread = []
    for seed in range(3):
        noise = 1 + 1e-6 * np.random.default_rng(seed).standard_normal(goal_in["fmap"].shape)
        goal = Goal({**goal_in, "fmap": (goal_in["fmap"] * noise).astype(np.float32)}, goal_out)
        spread.append(rw.insert(goal, g["key"], niter=60, piter=10, lr=0.05).weight)
    assert max(rel_err(s, spread[0]) for s in spread[1:]) > 1e-4
