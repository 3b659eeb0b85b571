import numpy as np

from unifylab.eval.stats import (
    bootstrap_mean,
    bootstrap_mean_of_groups,
    clustered_difference,
    hierarchical_paired_difference,
    holm,
    paired_difference,
)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.random(50) < 0.7)
    large = bootstrap_mean(rng.random(2000) < 0.7)
    assert small.lo <= small.value <= small.hi and large.lo <= 0.7 <= large.hi
    assert (large.hi - large.lo) < (small.hi - small.lo) / 3
    assert bootstrap_mean([1.0] * 10).to_dict() == {"value": 1.0, "lo": 1.0, "hi": 1.0, "n": 10}


def test_mean_of_groups_weights_groups_equally() -> None:
    est = bootstrap_mean_of_groups({"a": [1.0] * 100, "b": [0.0] * 10})
    assert est.value == 0.5 and est.n == 110 and est.lo == est.hi == 0.5
    same = bootstrap_mean_of_groups({"a": [1, 0, 1, 0]}, seed=3)
    assert same == bootstrap_mean_of_groups({"a": [1, 0, 1, 0]}, seed=3)


def test_hierarchical_interval_carries_seed_variance() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(600) < 0.5).astype(float)
    shift = np.repeat([0.0, 0.4, -0.1], 200)  # three seeds that disagree about the effect
    b = np.clip(a + (rng.random(600) < 0.5 + shift) * 1.0 - (rng.random(600) < 0.5) * 1.0, 0, 1)
    seeds = np.repeat(["s0", "s1", "s2"], 200)
    flat, _ = paired_difference(a, b)
    nested, p = hierarchical_paired_difference(a, b, seeds)
    assert abs(nested.value - flat.value) < 1e-9  # equal seeds: the mean of seed means is the grand mean
    assert nested.hi - nested.lo > 1.5 * (flat.hi - flat.lo) and 0 < p <= 1
    one, _ = hierarchical_paired_difference(a, b, ["s0"] * 600)
    assert abs(one.hi - one.lo - (flat.hi - flat.lo)) < 0.02  # one seed: the item bootstrap


def test_comparison_p_values_resolve_below_the_first_two_thousand_resamples() -> None:
    rng = np.random.default_rng(1)
    a = (rng.random(300) < 0.3).astype(float)
    b = (rng.random(300) < 0.8).astype(float)
    seeds = np.repeat(["s0", "s1", "s2"], 100)
    _, p = hierarchical_paired_difference(a, b, seeds)
    assert p < 2 / 2001 and p * 92 < 0.05  # one of 92 in a Holm family can be called
    items = [(s, str(i), x) for i, (s, x) in enumerate(zip(seeds, a))]
    _, p_sets = clustered_difference(items, [(s, c, y) for (s, c, _), y in zip(items, b)])
    assert p_sets < 2 / 2001
    _, p_none = hierarchical_paired_difference(a, a[::-1], seeds)
    assert p_none > 0.05


def test_holm_adjustment() -> None:
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == [1.0, 1.0] and holm([]) == []
