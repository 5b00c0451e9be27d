"""The Λ update at low-rank cost (`--method lambda`) against the dense Λ computation
(`lambda-dense`, W0 + Λ D expanded every step) on every architecture: the factored target
and its gradient, whole edits for ranks 1-8, and the demodulation's quadratic form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import factories
import jaxrewrite as jr
from conftest import rel_err
from jaxrewrite.models import ops, stylegan2
from jaxrewrite.rewrite.rewriter import Rewriter
from jaxrewrite.tree import get


def _models():
    rng = np.random.default_rng(3)
    return {
        # (model, layer): a plain conv, an upsampling conv (nearest x2 then 3x3), StyleGAN2's
        # dconv..activate without and with the transposed (upsampling) conv, DCGAN's transposed
        # conv with BatchNorm after it
        "proggan": (jr.convert(factories.proggan(rng, (16, 32, 16, 16))), "layer4"),
        "proggan-up": (jr.convert(factories.proggan(rng, (16, 32, 16, 16))), "layer5"),
        "stylegan2": (jr.convert(factories.stylegan2(rng, 16, 16, 1, {4: 16, 8: 16, 16: 16})), "layer4"),
        "stylegan2-up": (jr.convert(factories.stylegan2(rng, 16, 16, 1, {4: 16, 8: 16, 16: 16})), "layer5"),
        "dcgan": (jr.convert(factories.dcgan(rng, ngf=4)), "layer2"),
    }


MODELS = _models()


@pytest.fixture(scope="module")
def rewriters(golden):
    out = {name: Rewriter(model, layer, stats_samples=20) for name, (model, layer) in MODELS.items()}
    out["nvidia"] = Rewriter(jr.load(golden / "nvidia" / "ada_auto32.pkl"), "layer5", stats_samples=20)
    return out


def box(size, t, l, b, r):
    m = np.zeros((size, size), bool)
    m[t * size // 16:b * size // 16, l * size // 16:r * size // 16] = True
    return m


def request(size):
    return jr.Request.from_arrays(object=(1, box(size, 2, 2, 10, 10)), paste=(2, box(size, 4, 5, 12, 13)),
                                  key=[(2, box(size, 4, 5, 12, 13)), (3, box(size, 0, 0, 16, 16)),
                                       (4, box(size, 1, 3, 9, 15))])


def size_of(rw):
    return rw.gen(rw.model.params, np.zeros((1, rw.gen.z_dim), np.float32)).shape[1]


@pytest.mark.parametrize("which", [*MODELS, "nvidia"])
@pytest.mark.parametrize("rank", [3])
def test_factored_target_and_gradient_equal_the_dense_kernel(rewriters, which, rank):
    rw = rewriters[which]
    goal = rw.copy_paste_goal(request(size_of(rw)))
    w0 = jnp.asarray(get(rw.model.params, rw.weight_path))
    d = jnp.asarray(rw.key(request(size_of(rw)).key, rank))
    lam = 0.3 * jax.random.normal(jax.random.PRNGKey(rank), w0.shape[:-2] + (rank, w0.shape[-1])) * jnp.std(w0)
    gi = {k: jnp.asarray(v) for k, v in goal.goal_in.items()}
    go = jnp.asarray(goal.goal_out["fmap"])
    params = rw.device_params
    factored = lambda lam: rw.target(params, ops.LowRank(w0, lam, d), gi)
    dense = lambda lam: rw.target(params, ops.LowRank(w0, lam, d).dense(), gi)
    assert rel_err(jax.jit(factored)(lam), jax.jit(dense)(lam)) < 2e-6
    loss = lambda target: lambda lam: jnp.mean(jnp.abs(go - target(lam)))
    g_factored, g_dense = jax.jit(jax.grad(loss(factored)))(lam), jax.jit(jax.grad(loss(dense)))(lam)
    assert rel_err(g_factored, g_dense) < 1e-4


@pytest.mark.parametrize("which", [*MODELS, "nvidia"])
@pytest.mark.parametrize("rank", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow), 8])
def test_low_rank_edits_equal_dense_lambda(rewriters, which, rank):
    """Whole edits through the pipeline: the same losses and weights up to float noise. L1 with
    Adam amplifies rounding (a gradient entry near zero takes Adam's full step in a sign the
    rounding decides), so short runs are compared tightly and a long one by its outcome."""
    rw = rewriters[which]
    options = jr.EditOptions(rank=rank, niter=20, stats_samples=20)
    fast = jr.edit(rw.model, rw.layer, request(size_of(rw)), options.replace(method="lambda"), rewriter=rw)
    ref = jr.edit(rw.model, rw.layer, request(size_of(rw)), options.replace(method="lambda-dense"), rewriter=rw)
    w0 = get(rw.model.params, rw.weight_path)
    assert fast.losses[-1] < fast.losses[0]
    np.testing.assert_allclose(fast.losses, ref.losses, rtol=1e-4)
    assert rel_err(fast.weight - w0, ref.weight - w0) < 1e-3
    delta = np.asarray(fast.weight - w0, np.float64).reshape(-1, *w0.shape[-2:])  # [taps, in, out]
    rows = np.einsum("tio,ri->tro", delta, np.asarray(fast.context, np.float64))
    np.testing.assert_allclose(np.einsum("tro,ri->tio", rows, fast.context), delta, atol=1e-5 * np.abs(delta).max())
    if rank == 8 and which in ("stylegan2-up", "dcgan"):
        long = options.replace(niter=400)
        fast, ref = (jr.edit(rw.model, rw.layer, request(size_of(rw)), long.replace(method=m), rewriter=rw)
                     for m in ("lambda", "lambda-dense"))
        np.testing.assert_allclose(fast.losses[-1], ref.losses[-1], rtol=1e-2)


def test_demodulation_quadratic_form_and_its_gradient():
    """`ops.squared_norms` of W0 + Λ D equals the dense sum, and its gradient in Λ equals
    central finite differences (float64)."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        w0 = jnp.asarray(rng.standard_normal((3, 3, 12, 7)))
        d = jnp.asarray(np.linalg.qr(rng.standard_normal((12, 3)))[0].T)  # [3, 12] orthonormal rows
        lam = jnp.asarray(rng.standard_normal((3, 3, 3, 7)))
        weights = jnp.asarray(rng.random((2, 12)) + 0.1)
        dense = lambda lam: weights @ ops.tap_squares(ops.LowRank(w0, lam, d).dense())
        factored = lambda lam: ops.squared_norms(ops.LowRank(w0, lam, d), weights)
        np.testing.assert_allclose(factored(lam), dense(lam), rtol=1e-12)
        probe = jnp.asarray(rng.standard_normal((2, 7)))
        f = lambda lam: jnp.sum(probe * factored(lam))
        g = np.asarray(jax.grad(f)(lam))
        h, fd = 1e-6, np.zeros(lam.shape)
        for idx in np.ndindex(lam.shape):
            e = np.zeros(lam.shape)
            e[idx] = h
            fd[idx] = (f(lam + e) - f(lam - e)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
        # and StyleGAN2's demodulation sees the same kernel either way
        style = jnp.asarray(rng.standard_normal((2, 12)))
        np.testing.assert_allclose(stylegan2.demodulation(ops.LowRank(w0, lam, d), style),
                                   stylegan2.demodulation(ops.LowRank(w0, lam, d).dense(), style), rtol=1e-12)


def test_factored_kernel_acts_like_its_dense_kernel_in_every_op():
    rng = np.random.default_rng(1)
    w0 = jnp.asarray(rng.standard_normal((3, 3, 6, 5)), jnp.float32)
    d = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)
    lam = jnp.asarray(rng.standard_normal((3, 3, 2, 5)), jnp.float32)
    k = ops.LowRank(w0, lam, d)
    x = jnp.asarray(rng.standard_normal((2, 5, 4, 6)), jnp.float32)
    z = jnp.asarray(rng.standard_normal((2, 1, 1, 6)), jnp.float32)
    for op in (lambda k: ops.conv(x, k, 1), lambda k: ops.conv_transpose(x, k, 2, 0),
               lambda k: ops.upsample_conv(x, k, 1), lambda k: ops.conv(z, k, 2), lambda k: ops.conv(x, k / 3.0, 1)):
        assert rel_err(op(k), op(k.dense())) < 1e-5
    assert k.shape == w0.shape and k[0:2].shape == (2, 3, 6, 5)


def test_pixel_sums_and_channel_scaling_match_plain_sums_under_vmap_and_grad():
    """The GEMV forms the loop sums with (`ops.pixel_sums`, `ops.total`, `ops.scale_channels`)
    give the plain reductions' values and gradients, alone and under one or two `vmap`s (where
    the GEMV's batching rule folds the vmapped axes into the samples)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 2, 2, 4, 5, 6)), jnp.float32)  # [e, e2, n, h, w, c]
    s = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)
    summed = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
    plain = lambda x: jnp.sum(x, (1, 2))
    scaled = lambda x, s: jnp.sum(jnp.sin(ops.scale_channels(x, s)))
    reference = lambda x, s: jnp.sum(jnp.sin(x * s[:, None, None, :]))
    for depth, batched in ((0, lambda g: g), (1, jax.vmap), (2, lambda g: jax.vmap(jax.vmap(g)))):
        xs = x[(0,) * (2 - depth)]
        ss = jnp.broadcast_to(s, xs.shape[:depth] + s.shape)
        pairs = [(batched(ops.pixel_sums)(xs), batched(plain)(xs)),
                 (batched(ops.total)(xs), batched(jnp.sum)(xs)),
                 (batched(jax.grad(summed(ops.pixel_sums)))(xs), batched(jax.grad(summed(plain)))(xs)),
                 *zip(batched(jax.grad(scaled, (0, 1)))(xs, ss), batched(jax.grad(reference, (0, 1)))(xs, ss))]
        for got, want in pairs:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
