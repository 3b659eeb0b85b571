"""Headline statistics with 95 % bootstrap confidence intervals (plain, stratified by task, hierarchical over
seeds then items, and over seeds then clusters of items for unpaired sets), paired differences with permutation
p-values, bootstrap p-values resolved sequentially, a seed-level t test, and Holm's adjustment for many comparisons."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
MIN_TAIL = 100  # a sequential p rests on this many resamples beyond the null (Monte Carlo error about 10 %)
MAX_BOOT = 8 * N_BOOT  # or on this many in all: p resolved down to 2 / 16001, 0.000125


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval and the number of items behind it."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """As JSON: an interval that could not be estimated (NaN bounds) is None."""

        def bound(x: float) -> float | None:
            return None if np.isnan(x) else x

        return {"value": self.value, "lo": bound(self.lo), "hi": bound(self.hi), "n": self.n}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_mean(values: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """Mean of `values` with a percentile bootstrap interval (items resampled with replacement)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    lo, hi = _interval(_resampled_means(v, n_boot, np.random.default_rng(seed)), level)
    return Estimate(float(v.mean()), lo, hi, int(v.size))


def bootstrap_mean_of_groups(
    groups: Mapping[str, Sequence[float]], *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> Estimate:
    """Mean of the per-group means (e.g. GenEval overall = mean of task accuracies), resampling within each group."""
    arrays = [np.asarray(v, dtype=np.float64) for v in groups.values() if len(v)]
    if not arrays:
        raise ValueError("bootstrap_mean_of_groups needs at least one non-empty group")
    rng = np.random.default_rng(seed)
    boots = np.mean([_resampled_means(a, n_boot, rng) for a in arrays], axis=0)
    lo, hi = _interval(boots, level)
    return Estimate(float(np.mean([a.mean() for a in arrays])), lo, hi, int(sum(a.size for a in arrays)))


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    n_perm: int = 10000,
    seed: int = 0,
) -> tuple[Estimate, float]:
    """Mean of b - a over paired items with a bootstrap CI, and the two-sided sign-flip permutation p-value."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if d.size == 0:
        raise ValueError("paired_difference needs at least one pair")
    est = bootstrap_mean(d, level=level, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    p = (1 + int((null >= abs(d.mean()) - 1e-12).sum())) / (n_perm + 1)
    return est, float(p)


def hierarchical_paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    groups: Sequence[str],
    *,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[Estimate, float]:
    """Mean over groups (seeds) of the mean paired difference b - a within each, with a two-level bootstrap CI
    (resample the groups, then the items within each drawn group) so the interval carries seed-to-seed variance
    too, and the two-sided p-value of the same bootstrap (twice the share of resamples on the far side of 0), so
    an interval that excludes 0 and p < 0.05 say the same thing. With one group it is the item bootstrap."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if d.size == 0:
        raise ValueError("hierarchical_paired_difference needs at least one pair")
    labels = np.asarray(groups)
    parts = [d[labels == g] for g in sorted(set(labels.tolist()))]
    k = len(parts)
    rng = np.random.default_rng(seed)

    def draw(count: int) -> np.ndarray:
        # item resamples for every (draw position, group): means[j, g] is a length-count vector
        means = np.stack([np.stack([_resampled_means(p, count, rng) for p in parts]) for _ in range(k)])
        drawn = rng.integers(0, k, size=(count, k))
        return means[np.arange(k)[None, :], drawn, np.arange(count)[:, None]].mean(axis=1)

    boots, p = sequential_p(draw, n_boot=n_boot)
    lo, hi = _interval(boots, level)
    return Estimate(float(np.mean([p.mean() for p in parts])), lo, hi, int(d.size)), p


def clustered_difference(
    a: Sequence[tuple[str, str, float]],
    b: Sequence[tuple[str, str, float]],
    *,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[Estimate, float]:
    """Mean of set b minus mean of set a, two sets of different items scored on the same runs, each item a (seed,
    cluster, score): a cluster is what the items share (a fact asked at several cells) or the item alone. The
    estimate averages cluster means within each seed, then seeds; the bootstrap resamples seeds, then clusters
    within each drawn seed, so the interval carries seed-to-seed and between-cluster (e.g. between-fact) variance.
    Seeds without items in both sets are left out. p-value: twice the bootstrap share on the far side of 0. With
    one seed and one cluster in a set there is nothing to resample: the interval is NaN and p is 1."""
    return _clustered(a, b, level=level, n_boot=n_boot, seed=seed, units_of_a=True)


def _clustered(
    a: Sequence[tuple[str, str, float]],
    b: Sequence[tuple[str, str, float]],
    *,
    level: float,
    n_boot: int,
    seed: int,
    units_of_a: bool,
) -> tuple[Estimate, float]:
    """`clustered_difference`; `units_of_a=False` when set a is a constant, not data (`clustered_mean`: its p is
    not computed, 1)."""

    def cluster_means(items: Sequence[tuple[str, str, float]], s: str) -> np.ndarray:
        by: dict[str, list[float]] = {}
        for g, c, v in items:
            if g == s:
                by.setdefault(c, []).append(v)
        return np.array([np.mean(v) for _, v in sorted(by.items())], dtype=np.float64)

    seeds = sorted({g for g, _, _ in a} & {g for g, _, _ in b})
    if not seeds:
        raise ValueError("clustered_difference needs items of both sets on at least one seed")
    parts = [(cluster_means(a, s), cluster_means(b, s)) for s in seeds]
    k = len(parts)
    rng = np.random.default_rng(seed)

    def draw(count: int) -> np.ndarray:
        means = np.stack(
            [
                np.stack([_resampled_means(pb, count, rng) - _resampled_means(pa, count, rng) for pa, pb in parts])
                for _ in range(k)
            ]
        )
        drawn = rng.integers(0, k, size=(count, k))
        return means[np.arange(k)[None, :], drawn, np.arange(count)[:, None]].mean(axis=1)

    value = float(np.mean([pb.mean() - pa.mean() for pa, pb in parts]))
    n = int(sum(pa.size + pb.size for pa, pb in parts))
    if k == 1 and min(parts[0][1].size, parts[0][0].size if units_of_a else 2) < 2:  # nothing to resample
        return Estimate(value, float("nan"), float("nan"), n), 1.0
    # a mean (no set a) needs only its interval; a difference's p is resolved as the claims' are
    boots, p = sequential_p(draw, n_boot=n_boot) if units_of_a else (draw(n_boot), 1.0)
    lo, hi = _interval(boots, level)
    return Estimate(value, lo, hi, n), p


def clustered_mean(
    items: Sequence[tuple[str, str, float]], *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> Estimate:
    """Mean of (seed, cluster, score) items with the seeds-then-clusters bootstrap of `clustered_difference`."""
    none = [(g, "-", 0.0) for g in sorted({g for g, _, _ in items})]
    est, _ = _clustered(none, items, level=level, n_boot=n_boot, seed=seed, units_of_a=False)
    return Estimate(est.value, est.lo, est.hi, len(items))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: controls the family-wise error rate over all the comparisons given."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def t_tail(t: float, df: int) -> float:
    """P(|T| > |t|) for Student's t with `df` degrees of freedom: the density in theta = arctan(t / sqrt(df)) is
    proportional to cos(theta) ** (df - 1) on [0, pi / 2], integrated numerically (no scipy)."""
    if df < 1:
        raise ValueError(f"t_tail needs df >= 1, got {df}")
    theta = np.linspace(0.0, np.pi / 2, 20001)
    density = np.cos(theta) ** (df - 1)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    at = float(np.arctan(abs(t) / np.sqrt(df)))
    return float(1.0 - np.interp(at, theta, cumulative) / cumulative[-1])


def t_quantile(tail: float, df: int) -> float:
    """The t with P(|T| > t) = `tail` (e.g. 2.776 for 0.05 at df 4), by bisection on `t_tail`."""
    lo, hi = 0.0, 1.0
    while t_tail(hi, df) > tail:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_tail(mid, df) > tail else (lo, mid)
    return (lo + hi) / 2


def seed_t_test(values: Sequence[float], *, null: float = 0.0, level: float = 0.95) -> tuple[Estimate, float]:
    """A one-sample t test over per-seed values (each seed's statistic): the mean, its t interval and the two-sided
    p against `null`. Beside the seeds-then-items bootstrap it is the small-sample check on seed-to-seed variance,
    which a percentile bootstrap over a handful of seeds understates. Equal values: a zero-width interval, p 0
    (1 at the null); one seed, or a value not finite: NaN interval, p 1."""
    v = np.asarray(values, dtype=np.float64)
    k = v.size
    if k == 0:
        raise ValueError("seed_t_test needs at least one value")
    mean = float(v.mean())
    if k == 1 or not np.isfinite(v).all():
        return Estimate(mean, float("nan"), float("nan"), k), 1.0
    se = float(v.std(ddof=1) / np.sqrt(k))
    if se == 0.0:
        return Estimate(mean, mean, mean, k), float(mean == null)
    half = t_quantile(1.0 - level, k - 1) * se
    return Estimate(mean, mean - half, mean + half, k), t_tail((mean - null) / se, k - 1)


def bootstrap_statistic(
    data: Mapping[str, Mapping[str, Sequence[float]]],
    columns: Sequence[str],
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    paired: Sequence[Sequence[str]] = (),
    null: float = 0.0,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[Estimate, float]:
    """A statistic of several means with a seeds-then-clusters bootstrap. `data[seed][column]` holds one value per
    independent cluster (an item, or the mean of a fact's items); `fn` maps column means [..., C] to the statistic
    (e.g. the identity of one column, a slope over columns, a minimum). Columns named together in `paired` hold the
    same clusters in the same order (e.g. two models' gaps on the same items) and are resampled with the same draws,
    so their covariance is kept. The estimate applies `fn` to the column means averaged over seeds; the bootstrap
    resamples seeds, then clusters within a drawn seed, so the interval carries seed-to-seed variance. p: twice the
    bootstrap share on the far side of `null`. Seeds missing a column are left out; with one seed and one cluster
    per column there is nothing to resample (NaN interval, p = 1)."""
    seeds = sorted(s for s, cols in data.items() if all(len(cols.get(c, ())) for c in columns))
    if not seeds:
        raise ValueError(f"bootstrap_statistic needs every column {list(columns)} on at least one seed")
    sets = [list(p) for p in paired] + [[c] for c in columns if not any(c in p for p in paired)]
    values = [{c: np.asarray(data[s][c], dtype=np.float64) for c in columns} for s in seeds]
    for row in values:
        for group in sets:
            if len({row[c].size for c in group}) > 1:
                raise ValueError(
                    f"paired columns {group} need the same clusters, got sizes {[row[c].size for c in group]}"
                )
    point = float(np.asarray(fn(np.mean([[row[c].mean() for c in columns] for row in values], axis=0)[None, :]))[0])
    n = int(sum(v.size for row in values for v in row.values()))
    k = len(seeds)
    if k == 1 and all(v.size < 2 for v in values[0].values()):
        return Estimate(point, float("nan"), float("nan"), n), 1.0
    rng = np.random.default_rng(seed)
    at = {c: i for i, c in enumerate(columns)}

    def draw(count: int) -> np.ndarray:
        means = np.empty((k, k, len(columns), count))  # [draw position, seed, column, resample]
        for j in range(k):
            for s, row in enumerate(values):
                for group in sets:
                    size = row[group[0]].size
                    idx = rng.integers(0, size, size=(count, size))
                    for c in group:
                        means[j, s, at[c]] = row[c][idx].mean(axis=1)
        drawn = rng.integers(0, k, size=(count, k))
        picked = means[np.arange(k)[None, :], drawn, :, np.arange(count)[:, None]]  # [count, k, C]
        return np.asarray(fn(picked.mean(axis=1)), dtype=np.float64)

    boots, p = sequential_p(draw, n_boot=n_boot, null=null)
    lo, hi = _interval(boots, level)
    return Estimate(point, lo, hi, n), p


def sequential_p(
    draw: Callable[[int], np.ndarray], *, n_boot: int = N_BOOT, null: float = 0.0
) -> tuple[np.ndarray, float]:
    """Bootstrap statistics from `draw(count)` and the two-sided p against `null` (twice the share on its far side,
    +1 in both counts). While fewer than MIN_TAIL resamples lie on the far side, draws as many again, up to MAX_BOOT,
    so a small p is resolved instead of floored at 2 / (n_boot + 1) = 0.001, where a Holm family of 92 comparisons,
    or a three-part claim among 23, could call nothing. The first n_boot resamples are the plain bootstrap's."""
    boots = draw(n_boot)
    while True:
        tail = min(int((boots <= null).sum()), int((boots >= null).sum()))
        if tail >= MIN_TAIL or boots.size >= MAX_BOOT:
            return boots, min(1.0, 2 * (tail + 1) / (boots.size + 1))
        boots = np.concatenate([boots, draw(boots.size)])
