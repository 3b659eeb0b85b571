import numpy as np

from unifylab.eval.stats import bootstrap_mean, bootstrap_mean_of_groups


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
