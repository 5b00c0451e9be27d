"""The JAX generators against the official implementation's outputs (../shared/golden).

Tolerance: max error <= 1e-4 of the reference's magnitude (float32; the official outputs
themselves move by ~1e-6 between thread counts, ours agree to ~1e-6).
"""

import numpy as np
import pytest
from conftest import nchw, rel_err

from jaxrewrite import modelfile
from jaxrewrite import xla
import numpy_reference

TOL = 1e-4
STYLEGAN2_CUT = ("layer6.sconv.mconv.dconv", "layer6.sconv.activate")


@pytest.fixture(scope="module")
def models(golden):
    return {
        "stylegan2": modelfile.load(str(golden / "stylegan2/weights_rosinality.pt")),
        "proggan": modelfile.load(str(golden / "proggan/weights.pt")),
    }


def _generator(model, noise_batch):
    return model.generator(noise_batch=noise_batch) if model.arch == "stylegan2" else model.generator()


@pytest.mark.parametrize("arch", ["stylegan2", "proggan"])
@pytest.mark.parametrize("kind,noise_batch", [("images_batch", 8), ("images_single", 1)])
def test_images(models, golden, arch, kind, noise_batch):
    s = np.load(golden / arch / "samples.npz")
    gen = _generator(models[arch], noise_batch)
    images = xla.jit(lambda p, z: gen(p, z))(models[arch].params, s["z"])
    assert images.shape == (8, 32, 32, 3)
    assert rel_err(nchw(images), s[kind]) < TOL


def test_batch_and_single_noise_differ(models, golden):
    """The official noise depends on the batch position; a test that could not tell would be void."""
    s = np.load(golden / "stylegan2/samples.npz")
    assert rel_err(s["images_batch"][1:], s["images_single"][1:]) > 1e-2


def test_stylegan2_cut_bags(models, golden):
    s = np.load(golden / "stylegan2/samples.npz")
    assert str(s["firstlayer"]) == STYLEGAN2_CUT[0] and str(s["lastlayer"]) == STYLEGAN2_CUT[1]
    model = models["stylegan2"]
    gen = _generator(model, 8)
    ctx = gen.upto(model.params, gen.inputs(s["z"]), STYLEGAN2_CUT[0])
    tgt = gen.between(model.params, ctx, *STYLEGAN2_CUT)
    for name, bag in (("ctx", ctx), ("tgt", tgt)):
        for field in ("fmap", "style", "latent", "output"):
            assert rel_err(nchw(bag[field]), s[f"{name}_batch_{field}"]) < TOL, (name, field)
    image = gen.image(gen.after(model.params, tgt, STYLEGAN2_CUT[1]))
    assert rel_err(nchw(image), s["images_batch"]) < TOL


def test_proggan_cut(models, golden):
    s = np.load(golden / "proggan/samples.npz")
    model = models["proggan"]
    gen = model.generator()
    layer = str(s["firstlayer"])
    assert layer == str(s["lastlayer"]) == "layer5.conv"
    ctx = gen.upto(model.params, gen.inputs(s["z"]), layer)
    tgt = gen.between(model.params, ctx, layer, layer)
    assert rel_err(nchw(ctx["fmap"]), s["ctx_batch"]) < TOL
    assert rel_err(nchw(tgt["fmap"]), s["tgt_batch"]) < TOL
    assert rel_err(nchw(gen.image(gen.after(model.params, tgt, layer))), s["images_batch"]) < TOL


@pytest.mark.parametrize("arch", ["stylegan2", "proggan"])
def test_single_image_activations(models, golden, arch):
    """Per-image activations (noise row 0), as the rewriter computes them, incl. image 42."""
    first, last = STYLEGAN2_CUT if arch == "stylegan2" else ("layer5.conv", "layer5.conv")
    model = models[arch]
    gen = _generator(model, 1)
    s = np.load(golden / arch / "samples.npz")
    single = np.load(golden / arch / "samples_single_acts.npz")
    edit = np.load(golden / arch / "edit_zca.npz")
    numbers = [int(n) for n in edit["referenced_images"]]
    zds = s["zds_z"].reshape(len(s["zds_z"]), -1)
    cases = [(s["z"], single["ctx_single_acts"], single["tgt_single_acts"], None)]
    cases.append((zds[numbers], np.concatenate([edit[f"ctx_img{n}_acts"] for n in numbers]),
                  np.concatenate([edit[f"tgt_img{n}_acts"] for n in numbers]),
                  np.concatenate([edit[f"ctx_img{n}_style"] for n in numbers]) if arch == "stylegan2" else None))
    for z, ctx_ref, tgt_ref, style_ref in cases:
        ctx = gen.upto(model.params, gen.inputs(z), first)
        tgt = gen.between(model.params, ctx, first, last)
        assert rel_err(nchw(ctx["fmap"]), ctx_ref) < TOL
        assert rel_err(nchw(tgt["fmap"]), tgt_ref) < TOL
        if style_ref is not None:
            assert rel_err(ctx["style"], style_ref) < TOL


def test_zdataset_matches_official(golden):
    from jaxrewrite import z_dataset, z_for

    for arch in ("stylegan2", "proggan"):
        s = np.load(golden / arch / "samples.npz")
        zds = s["zds_z"].reshape(100, -1)
        np.testing.assert_array_equal(z_dataset(100, 64, seed=1), zds)
        np.testing.assert_array_equal(z_for([42, 5], 64, seed=1), zds[[42, 5]])
        np.testing.assert_array_equal(s["z"], zds[:8])


def test_npz_copies_give_identical_trees(models, golden):
    import chex

    for path in ("stylegan2/weights_rosinality.npz", "stylegan2/weights_seq.npz"):
        other = modelfile.load(str(golden / path))
        chex.assert_trees_all_equal(other.params, models["stylegan2"].params)
    chex.assert_trees_all_equal(modelfile.load(str(golden / "proggan/weights.npz")).params, models["proggan"].params)


def test_numpy_reference_matches_golden(golden):
    """Validates the independent reference used for the non-golden sizes in test_models."""
    sd = dict(np.load(golden / "stylegan2/weights_rosinality.npz"))
    s = np.load(golden / "stylegan2/samples.npz")
    assert rel_err(numpy_reference.stylegan2(sd, s["z"], np.arange(8), 8), s["images_batch"]) < TOL
    assert rel_err(numpy_reference.stylegan2(sd, s["z"], np.zeros(8, int), 1), s["images_single"]) < TOL
    p = np.load(golden / "proggan/samples.npz")
    assert rel_err(numpy_reference.proggan(dict(np.load(golden / "proggan/weights.npz")), p["z"]), p["images_batch"]) < TOL
