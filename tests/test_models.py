"""Generators of sizes and widths the golden data does not cover, against the numpy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import nchw, rel_err

from jaxrewrite import modelfile
from jaxrewrite import xla
import factories
import numpy_reference

TOL = 1e-4


@pytest.mark.parametrize("size,style_dim,n_mlp,channels", [
    (8, 16, 1, {4: 16, 8: 8}),
    pytest.param(64, 32, 3, {4: 32, 8: 24, 16: 16, 32: 16, 64: 8}, marks=pytest.mark.slow),
])
def test_stylegan2_other_sizes(size, style_dim, n_mlp, channels):
    rng = np.random.default_rng(size)
    sd = factories.stylegan2(rng, size, style_dim, n_mlp, channels)
    model = modelfile.convert(sd)
    z = rng.standard_normal((3, style_dim)).astype(np.float32)
    gen = model.generator(noise_batch=3)
    images = xla.jit(lambda p, z: gen(p, z))(model.params, z)
    chex.assert_shape(images, (3, size, size, 3))
    assert rel_err(nchw(images), numpy_reference.stylegan2(sd, z, np.arange(3), 3)) < TOL
    single = model.generator(noise_batch=1)(model.params, z)
    assert rel_err(nchw(single), numpy_reference.stylegan2(sd, z, np.zeros(3, int), 1)) < TOL


@pytest.mark.parametrize("sizes", [(16, 32, 16), (32, 48, 32, 16, 16, 8)])
def test_proggan_other_sizes(sizes):
    rng = np.random.default_rng(len(sizes))
    sd = factories.proggan(rng, sizes)
    model = modelfile.convert(sd)
    z = rng.standard_normal((2, sizes[0])).astype(np.float32)
    images = model.generator()(model.params, z)
    res = 4 * 2 ** (len(sizes) - 2)
    chex.assert_shape(images, (2, res, res, 3))
    assert rel_err(nchw(images), numpy_reference.proggan(sd, z)) < TOL


def test_dcgan_matches_numpy_reference():
    rng = np.random.default_rng(0)
    sd = factories.dcgan(rng, nz=16, ngf=8, n_up=4)
    model = modelfile.convert({"netG_state_dict": sd, "epoch": 3})
    assert model.config["strides"] == [1, 2, 2, 2, 2]
    z = rng.standard_normal((3, 16)).astype(np.float32)
    images = xla.jit(lambda p, z: model.generator()(p, z))(model.params, z)
    chex.assert_shape(images, (3, 64, 64, 3))
    assert rel_err(nchw(images), numpy_reference.dcgan(sd, z, [1, 2, 2, 2, 2], [0, 1, 1, 1, 1])) < TOL
    # eval-mode BatchNorm matters: without running statistics the output differs
    sd_plain = {**sd, "main.1.running_var": np.ones_like(sd["main.1.running_var"])}
    assert rel_err(nchw(images), numpy_reference.dcgan(sd_plain, z, [1, 2, 2, 2, 2], [0, 1, 1, 1, 1])) > 1e-3


def _stylegan2():
    sd = factories.stylegan2(np.random.default_rng(7), 16, 16, 2, {4: 16, 8: 16, 16: 8})
    return modelfile.convert(sd)


def test_cut_points_compose():
    model = _stylegan2()
    gen = model.generator()
    z = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    full = gen(model.params, z)
    for first, last in [("layer4", "layer4"), ("layer3.sconv.mconv.dconv", "layer3.sconv.activate"),
                        ("input", "to_rgb1"), ("style.0", "style.2")]:
        bag = gen.upto(model.params, gen.inputs(z), first)
        bag = gen.between(model.params, bag, first, last)
        np.testing.assert_allclose(gen.image(gen.after(model.params, bag, last)), full, rtol=1e-6, atol=1e-6)
    assert gen.span("layer4") == (gen.names.index("layer4.lat2"), gen.names.index("layer4.sconv.activate") + 1)


def test_unknown_layer_names_a_close_match():
    gen = _stylegan2().generator()
    with pytest.raises(ValueError, match="unknown layer 'layer4.sconv.dconv'.*layer4.sconv"):
        gen.span("layer4.sconv.dconv")
    with pytest.raises(ValueError, match="comes after"):
        gen.between({}, {}, "layer4", "layer3")


def test_noise_modes():
    model = _stylegan2()
    z = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    zero = model.generator(noise="zero")(model.params, z)
    fixed = model.generator(noise="fixed")(model.params, z)
    official = model.generator(noise="official")(model.params, z)
    assert rel_err(fixed, zero) > 1e-3 and rel_err(official, zero) > 1e-3
    # fixed noise = the checkpoint buffers: zeroing the buffers gives the noise-free image
    params = jax.tree_util.tree_map(lambda x: x, model.params)
    params["noises"] = {k: jnp.zeros_like(v) for k, v in params["noises"].items()}
    np.testing.assert_allclose(model.generator(noise="fixed")(params, z), zero, atol=1e-6)
    # random noise: explicit key, per-image (independent of batch composition)
    gen = model.generator(noise="random")
    key = jax.random.PRNGKey(0)
    both = gen(model.params, z, noise_key=key)
    second = gen(model.params, z[1:], noise_key=key, image_numbers=[1])
    np.testing.assert_allclose(both[1:], second, atol=1e-5)
    with pytest.raises(ValueError, match="noise_key"):
        gen.inputs(z)


def test_truncation_uses_latent_avg():
    """w -> avg + t (w - avg): with latent_avg set to z[0]'s w, t = 0 renders z[0]'s image for
    every z, and t = 0.5 the image of the w halfway between (noise_batch 1: same noise rows)."""
    model = _stylegan2()
    z = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    gen = model.generator()
    bag = gen.upto(model.params, gen.inputs(z), "latents")
    avg = np.asarray(bag["latent"][0])
    model.params["latents"]["latent_avg"] = avg
    np.testing.assert_allclose(model.generator(truncation=0.0)(model.params, z),
                               np.repeat(gen(model.params, z[:1]), 2, axis=0), atol=1e-5)
    halfway = gen.run(model.params, {**bag, "latent": avg + 0.5 * (bag["latent"] - avg)}, gen.span("latents")[0])
    np.testing.assert_allclose(model.generator(truncation=0.5)(model.params, z), gen.image(halfway), atol=1e-5)
    assert not np.allclose(gen.image(halfway)[1], gen(model.params, z)[1], atol=1e-3)
    del model.params["latents"]
    gen0 = model.generator(truncation=0.0)
    with pytest.raises(ValueError, match="latent_avg"):
        gen0(model.params, z)


@pytest.mark.parametrize("k,pads", [(4, 3), (4, 2), (3, 1), (1, 0), (4, ((3, 1), (2, 3))), (4, ((1, 3), (2, 1)))])
def test_single_pixel_input_conv_is_the_xla_conv(k, pads):
    """A 1x1 input (ProGAN's z map, DCGAN's first transposed conv) runs as a matmul; same values
    and kernel gradient as XLA's convolution, for any padding that keeps taps in range."""
    from jaxrewrite.models import ops

    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.standard_normal((5, 1, 1, 7)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 7, 3)), jnp.float32)
    full = [(pads, pads)] * 2 if isinstance(pads, int) else list(pads)
    ref = lambda w: ops._lax_conv(full, x, w)
    got = lambda w: ops.conv(x, w, pads)
    chex.assert_trees_all_close(got(w), ref(w), atol=1e-5)
    grad = lambda f: jax.grad(lambda w: jnp.sum(f(w) ** 2))(w)
    chex.assert_trees_all_close(grad(got), grad(ref), atol=1e-4)


@pytest.mark.parametrize("hw,k,stride,pad", [((8, 8), 3, 2, 0), ((4, 5), 4, 2, 1), ((5, 4), 5, 3, 2), ((3, 3), 1, 2, 0),
                                             ((2, 2), 2, 2, 0), ((6, 6), 3, 1, 1), ((1, 1), 4, 2, 0)])
def test_conv_transpose_phases_match_the_scatter_reference(hw, k, stride, pad):
    """The transposed convolution as stride² phase correlations: torch's conv_transpose2d
    values (the numpy scatter-add reference) for any stride, padding and kernel size (one
    smaller than the stride leaves phases empty), and its kernel gradient equals the one
    through the zero-dilated form's."""
    from jax import lax

    from jaxrewrite.models import ops

    rng = np.random.default_rng(k * 10 + stride)
    x = rng.standard_normal((2, *hw, 3)).astype(np.float32)
    w = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
    ref = numpy_reference.conv_transpose2d(nchw(x).astype(np.float64), w.transpose(2, 3, 0, 1).astype(np.float64),
                                           stride, pad)
    got = ops.conv_transpose(jnp.asarray(x), jnp.asarray(w), stride, pad)
    assert rel_err(nchw(np.asarray(got)), ref) < 1e-6

    def dilated(w):
        p = k - 1 - pad
        return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(p, p)] * 2, lhs_dilation=(stride, stride),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    grad = lambda f: jax.grad(lambda w: jnp.sum(jnp.sin(f(w))))(jnp.asarray(w))
    chex.assert_trees_all_close(grad(lambda w: ops.conv_transpose(x, w, stride, pad)), grad(dilated), atol=1e-4)


@pytest.mark.parametrize("hw,k,factor", [((4, 4), 3, 2), ((3, 5), 3, 2), ((4, 3), 5, 2), ((2, 3), 3, 3), ((3, 3), 1, 2)])
def test_upsample_conv_is_the_conv_of_the_nearest_upsample(hw, k, factor):
    """A convolution of a nearest upsample computed at the low resolution: the same values and
    kernel gradient; a padding that changes the size is refused."""
    from jaxrewrite.models import ops

    rng = np.random.default_rng(k * 10 + factor)
    x = jnp.asarray(rng.standard_normal((2, *hw, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
    ref = lambda w: ops.conv(ops.nearest_upsample(x, factor), w, k // 2)
    got = lambda w: ops.upsample_conv(x, w, k // 2, factor)
    chex.assert_trees_all_close(got(w), ref(w), atol=1e-5)
    grad = lambda f: jax.grad(lambda w: jnp.sum(jnp.sin(f(w))))(w)
    chex.assert_trees_all_close(grad(got), grad(ref), atol=1e-4)
    with pytest.raises(ValueError, match="keeps the size"):
        ops.upsample_conv(x, w, k // 2 + 1, factor)


def test_proggan_runs_upsample_and_conv_in_one_step_only_when_both_run():
    """Run whole, each up-block's nearest upsample and convolution are one low-resolution step
    (`Layer.with_previous`); cut between them (the rewriter's `upto("layerN.conv")`), the
    upsampled map itself comes out. Both equal the layers applied one by one."""
    rng = np.random.default_rng(5)
    model = modelfile.convert(factories.proggan(rng, (16, 32, 16, 16)))
    gen = model.generator()
    z = rng.standard_normal((2, 16)).astype(np.float32)
    bag = gen.inputs(z)
    one_by_one = {}
    for layer in gen.layers:
        one_by_one[layer.name] = bag
        bag = layer.apply(model.params, bag)
    assert any(layer.with_previous for layer in gen.layers)
    np.testing.assert_allclose(gen(model.params, z), bag["fmap"], rtol=1e-5, atol=1e-6)
    cut = gen.upto(model.params, gen.inputs(z), "layer5.conv")["fmap"]
    np.testing.assert_allclose(cut, one_by_one["layer5.conv"]["fmap"], rtol=1e-5, atol=1e-6)
    from jaxrewrite.models import ops
    np.testing.assert_array_equal(cut, ops.nearest_upsample(gen.upto(model.params, gen.inputs(z), "layer5.up")["fmap"]))
