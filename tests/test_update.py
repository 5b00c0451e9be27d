"""Algebraic properties of the constrained update, on seeded random problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrewrite import xla
from jaxrewrite.models import ops
from jaxrewrite.rewrite import update


def _problem(seed, cin=12, cout=6, rank=2, hw=(5, 6)):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    d = np.linalg.qr(rng.standard_normal((cin, rank)))[0].T.astype(np.float32)
    goal_in = {"fmap": rng.standard_normal((1,) + hw + (cin,)).astype(np.float32)}
    goal_out = rng.standard_normal((1,) + hw + (cout,)).astype(np.float32)
    return w0, d, goal_in, goal_out


def linear(w, bag):
    return ops.conv(bag["fmap"], w, 1)


def nonlinear(w, bag):
    return ops.leaky_relu(ops.conv(bag["fmap"], w, 1) * jax.lax.rsqrt(jnp.sum(w ** 2, axis=(0, 1, 2)) + 1e-8))


def _outside_span(delta, d):
    """Component of the input-channel rows of delta outside span(D)."""
    return float(jnp.abs(delta - update.project(delta, d)).max())


@pytest.mark.parametrize("seed", range(3))
def test_projection_is_idempotent_and_orthogonal(seed):
    w0, d, _, _ = _problem(seed)
    p = update.project(w0, d)
    np.testing.assert_allclose(update.project(p, d), p, atol=1e-5)
    np.testing.assert_allclose(update.project(w0 - p, d), 0, atol=1e-5)
    # P(W) rows are combinations of D's rows
    rows = np.asarray(p).reshape(-1, w0.shape[2], w0.shape[3]).transpose(0, 2, 1).reshape(-1, w0.shape[2])
    np.testing.assert_allclose(rows @ d.T @ d, rows, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("target", [linear, nonlinear])
def test_updates_stay_in_span(seed, target):
    w0, d, goal_in, goal_out = _problem(seed)
    result = xla.jit(lambda w0, d, gi, go: update.projected_adam(target, w0, d, gi, go, 0.05, niter=50))(
        w0, d, goal_in, goal_out)
    w1, losses = result.weight, result.losses
    assert _outside_span(w1 - w0, d) < 1e-5
    assert losses[-1] < losses[0]
    result = update.lambda_adam(target, w0, d, goal_in, goal_out, 0.05, niter=50)
    w2, losses2 = result.weight, result.losses
    assert _outside_span(w2 - w0, d) < 1e-5
    assert losses2[-1] < losses2[0]


def test_projection_schedule_matches_official():
    """Without projecting every step, an intermediate weight leaves the span; the final one is back."""
    w0, d, goal_in, goal_out = _problem(0)
    snaps = update.projected_adam(nonlinear, w0, d, goal_in, goal_out, 0.05, niter=12, record=(0, 5, 11)).snapshots
    assert _outside_span(snaps[1] - w0, d) > 1e-3  # step 5: not projected yet
    w1 = update.projected_adam(nonlinear, w0, d, goal_in, goal_out, 0.05, niter=12).weight
    assert _outside_span(w1 - w0, d) < 1e-5


@pytest.mark.parametrize("seed", range(3))
def test_closed_form_is_the_least_squares_optimum(seed):
    w0, d, goal_in, goal_out = _problem(seed)
    result = update.closed_form(linear, w0, d, goal_in, goal_out)
    w1, losses = result.weight, result.losses
    assert _outside_span(w1 - w0, d) < 1e-4
    assert losses[1] < losses[0]
    # stationarity: the L2 gradient w.r.t. Λ vanishes at the solution
    lam = jnp.einsum("...io,ri->...ro", w1 - w0, d)
    l2 = lambda lam: jnp.sum((goal_out - linear(w0 + jnp.einsum("...ro,ri->...io", lam, d), goal_in)) ** 2)
    grad = jax.grad(l2)(lam)
    assert float(jnp.abs(grad).max()) < 1e-3 * float(jnp.abs(jax.grad(l2)(jnp.zeros_like(lam))).max())
    # a target reachable inside the span is hit exactly
    reachable = linear(w0 + jnp.einsum("...ro,ri->...io", np.ones_like(lam), d), goal_in)
    w_exact = update.closed_form(linear, w0, d, goal_in, reachable).weight
    np.testing.assert_allclose(linear(w_exact, goal_in), reachable, atol=1e-3)


def test_adam_matches_optax_on_a_quadratic():
    """Our PyTorch-order Adam is Adam: the same trajectory as optax.adam (float64)."""
    import optax

    with jax.enable_x64(True):
        _compare_with_optax(optax)


def _compare_with_optax(optax):
    w = jnp.array([1.0, -2.0, 3.0], jnp.float64)
    grad = jax.grad(lambda w: jnp.sum((w - 0.5) ** 2))
    opt = optax.adam(0.05)
    state = opt.init(w)
    ours, m, v = w, jnp.zeros(3, jnp.float64), jnp.zeros(3, jnp.float64)
    theirs = w
    for t in range(1, 30):
        ours, m, v = update.adam(ours, grad(ours), m, v, t, 0.05)
        upd, state = opt.update(grad(theirs), state)
        theirs = optax.apply_updates(theirs, upd)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


@pytest.mark.parametrize("fn", [m.run for m in update.METHODS.values()])
def test_a_key_that_does_not_fit_the_kernel_is_named(fn):
    w0, d, goal_in, goal_out = _problem(0)
    for bad in (d[:, :-1], d[0]):  # 11 input channels for a kernel of 12; a vector, not [r, C_in]
        with pytest.raises(AssertionError, match="Chex"):
            fn(linear, w0, bad, goal_in, goal_out)
