"""Key methods and unit choices on small seeded examples: what they pick, and clear errors
where a rank or a unit count cannot be had."""

import numpy as np
import pytest

from jaxrewrite.rewrite import goals, keys


def _examples(seed, pixels=(5, 3), channels=6):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((p, channels)).astype(np.float32), rng.uniform(0.1, 1, p).astype(np.float32))
            for p in pixels]


def test_top_units_ranks_by_weighted_mean_score():
    examples = [(np.array([[1.0, 3.0, 0.0], [1.0, 0.0, 2.0]]), np.array([1.0, 1.0])),
                (np.array([[5.0, 0.0, 0.0]]), np.array([0.0]))]  # weight 0: ignored
    np.testing.assert_array_equal(keys.top_units(examples, np.abs, 3), [1, 0, 2])  # 1.5, 1.0, 1.0 (tie: unit order)
    np.testing.assert_array_equal(goals.erase_units(examples, np.array([1.0, 9.0, 1.0]), 2), [2, 0])  # 2, 1, 0.5


@pytest.mark.parametrize("method", ["zca", "svd"])
def test_key_rows_are_orthonormal_up_to_the_examples_span(method):
    examples = _examples(0)
    c = np.cov(np.concatenate([k for k, _ in examples]).T) + np.eye(6)
    matrix = np.linalg.inv(np.linalg.cholesky(c)).astype(np.float32) if method == "zca" else c
    d = getattr(keys, f"{method}_key")(examples, matrix, rank=3)
    np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-5)
    one_pixel = [(examples[0][0][:1], examples[0][1][:1])]  # spans one direction
    with pytest.raises(ValueError, match="rank 2 exceeds the 1 key examples' span"):
        getattr(keys, f"{method}_key")(one_pixel, matrix, rank=2)


def test_unit_counts_beyond_the_key_fail_clearly():
    examples = _examples(1)
    with pytest.raises(ValueError, match="7 units asked for, the key has 6"):
        goals.erase_units(examples, np.ones(6), 7)
    quantiles = np.sort(np.random.default_rng(2).standard_normal((11, 6)), axis=0)
    assert keys.gandissect_key(examples, quantiles, 6).sum(0).tolist() == [1] * 6  # every unit once
    with pytest.raises(ValueError, match="7 units asked for"):
        keys.gandissect_key(examples, quantiles, 7)
