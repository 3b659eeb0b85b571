"""What a claim's test measures, read back from finished study folders: item scores (eval records), their splits
against each run's training data, and the analyses' per-item values; each part becomes an estimate with its
seeds-then-clusters interval, a p-value, the runs behind it and a small panel of per-seed values for its figure."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.eval.harness import split_of
from unifylab.eval.stats import bootstrap_statistic, seed_t_test
from unifylab.eval.task_registry import TaskSpec, load_task
from unifylab.io import read_json
from unifylab.layout import StudyFolder
from unifylab.study.claims import Part, Term
from unifylab.study.comparisons import pooled_tasks
from unifylab.study.transfer import item_labels
from unifylab.train.config import TrainConfig, load_config

Items = dict[str, tuple[float, str, str]]  # item key -> (score, split, cluster)


class StudyView:
    """A finished (or partly finished) study folder as the claims read it."""

    def __init__(self, folder: Path) -> None:
        self.folder = StudyFolder(Path(folder))
        results = read_json(self.folder.results)
        self.preset = results["preset"]
        self.runs: dict[tuple[str, int, str | None], str] = {
            (r["variant"], int(r["seed"]), r.get("sweep_label")): rid for rid, r in results["runs"].items()
        }
        self.evals = {rid: r["eval"] for rid, r in results["runs"].items()}
        self.roles = {rid: r["role"] for rid, r in results["runs"].items()}
        self.specs: dict[str, TaskSpec] = {t: load_task(t) for t in self.preset["tasks"]}
        self._items: dict[tuple[str, str], Items] = {}

    @cached_property
    def groups(self) -> list[tuple[str | None, Any]]:
        """(label, value) of every sweep value, or [(None, None)] without a sweep."""
        sweep = self.preset.get("sweep")
        if not sweep:
            return [(None, None)]
        labels = sweep["labels"] or [str(v) for v in sweep["values"]]
        return list(zip(labels, sweep["values"]))

    def without_seed(self, seed: int) -> StudyView:
        """The same folder read without one seed's runs (sharing the scored items already read): the leave-one-seed-
        out check of a called verdict."""
        view = copy.copy(self)
        view.runs = {key: rid for key, rid in self.runs.items() if key[1] != seed}
        return view

    def run_ids(self, variant: str, group: str | None = None) -> dict[int, str]:
        """Seed -> run id of a variant (in one sweep group)."""
        return {s: rid for (v, s, g), rid in self.runs.items() if v == variant and g == group}

    def role(self, run_id: str) -> str:
        """unified, und, gen, or control (trained outside the study's own comparisons)."""
        return self.roles[run_id]

    def config(self, run_id: str) -> TrainConfig:
        return load_config(self.folder.run(run_id).config, [])

    def items(self, run_id: str, task: str) -> Items:
        """A run's scored items of a task by item number: score, split against its training data, and cluster."""
        key = (run_id, task)
        if key not in self._items:
            recs = list(self.folder.eval(run_id).read_records(task).values())
            data = self.config(run_id).data
            split = {r["id"]: split_of(r, self.specs[task], data) for r in recs}
            labels = item_labels(recs, split)
            self._items[key] = {
                r["id"].removeprefix(f"{task}-"): (float(r["score"]), split[r["id"]], labels[r["id"]][1]) for r in recs
            }
        return self._items[key]

    def pooled(self, kind: str, variants: list[str]) -> list[str]:
        """Tasks of a kind every named variant was trained for, scored on its own outputs, not a transfer probe."""
        firsts = [min(ids.items())[1] for v in variants if (ids := self.run_ids(v, self.groups[0][0]))]
        return pooled_tasks(self.specs, kind, [self.config(rid) for rid in firsts])

    def analysis(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        path = self.folder.analysis(run_id)
        return read_json(path) if path.is_file() else {}

    def learned(self, run_id: str) -> float | None:
        """A run's own accuracy: its mean accuracy on new scenes over the tasks of each kind it was trained for, the
        lower kind's (a unified model that learned to read but not to draw has not learned)."""
        cfg, evals = self.config(run_id), self.evals.get(run_id, {})
        kinds = []
        for k in ("und", "gen"):
            tasks = [t for t in pooled_tasks(self.specs, k, [cfg]) if t in evals]
            vals = [((evals[t].get("splits") or {}).get("new_scenes") or evals[t]["accuracy"])["value"] for t in tasks]
            kinds += [float(np.mean(vals))] if vals else []
        return min(kinds) if kinds else None


def _in(split: str, wanted: str) -> bool:
    """Whether an item's split is among the wanted ones (new_or_heldout: new scenes or held-out pairs)."""
    return (
        wanted == "all" or split == wanted or (wanted == "new_or_heldout" and split in ("new_scenes", "heldout_pairs"))
    )


def _pairs(
    view: StudyView, a: str, b: str, tasks: list[str], split: str, seed: int, group: str | None = None
) -> list[tuple[float, float, str]]:
    """(score of a, score of b, cluster) for the items of `tasks` both runs scored at `seed`, in the split (read
    from a's training data: both runs of a comparison share it)."""
    ra, rb = view.run_ids(a, group).get(seed), view.run_ids(b, group).get(seed)
    if ra is None or rb is None:
        return []
    out = []
    for t in tasks:
        ia, ib = view.items(ra, t), view.items(rb, t)
        for k in sorted(set(ia) & set(ib)):
            if _in(ia[k][1], split):
                out.append((ia[k][0], ib[k][0], f"{t}/{ia[k][2]}"))
    return out


def _seeds(view: StudyView, *variants: str, group: str | None = None) -> list[int]:
    sets = [set(view.run_ids(v, group)) for v in variants]
    return sorted(set.intersection(*sets)) if sets else []


def _kinds(part: Part) -> list[str]:
    return ["und", "gen"] if part.kind == "both" else [part.kind]


def _estimate(
    data: dict[str, dict[str, list[float]]],
    columns: list[str],
    fn: Callable[[np.ndarray], np.ndarray],
    part: Part,
    paired: list[list[str]] = (),
) -> dict[str, Any] | None:
    """The statistic with its seeds-then-clusters interval, and a p against the part's null that needs two tests to
    agree: the bootstrap's (`p_bootstrap`) and a t test over the seeds (`seed_level`: on jackknife pseudo-values,
    each seed's own statistic when it is linear; a seed mean on the other side of the null counts as p = 1), so a
    handful of seeds cannot look tighter than they are. `p_value` is the larger of the two. A differ part also gets
    `p_equivalent`, the larger of the two tests' equivalence p (two one-sided tests against +-margin)."""
    data = {s: cols for s, cols in data.items() if all(cols.get(c) for c in columns)}
    if not data:
        return None
    est, p_boot = bootstrap_statistic(data, columns, fn, paired=paired, null=part.null)
    per_seed = _pseudo_values(np.array([[np.mean(cols[c]) for c in columns] for cols in data.values()]), fn)
    t_est, t_p = seed_t_test(per_seed, null=part.null)
    agrees = part.predict == "differ" or (t_est.value - part.null) * (est.value - part.null) > 0
    out = {**est.to_dict(), "p_value": max(p_boot, t_p if agrees else 1.0), "p_bootstrap": p_boot, "seeds": len(data)}
    out["seed_level"] = {**t_est.to_dict(), "p_value": t_p, "per_seed": per_seed}
    if part.predict == "differ":
        inside = -part.margin < est.value < part.margin
        sides = [
            bootstrap_statistic(data, columns, fn, paired=paired, null=x)[1] / 2 for x in (-part.margin, part.margin)
        ]
        t_inside = -part.margin < t_est.value < part.margin
        t_sides = [seed_t_test(per_seed, null=x)[1] / 2 for x in (-part.margin, part.margin)]
        out["p_equivalent_bootstrap"] = max(sides) if inside else 1.0
        out["seed_level"]["p_equivalent"] = max(t_sides) if t_inside else 1.0
        out["p_equivalent"] = max(out["p_equivalent_bootstrap"], out["seed_level"]["p_equivalent"])
    return out


def _pseudo_values(means: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    """Jackknife pseudo-values of `fn` over seeds (`means`: [seed, column]): k f(all) - (k - 1) f(all but seed i).
    For a linear statistic each is that seed's own value; for a non-linear one (a minimum) they stay unbiased where
    the statistic of one seed's means would not."""
    whole = float(fn(means.mean(0)[None, :])[0])
    k = len(means)
    if k == 1:
        return [whole]
    rest = [float(fn(np.delete(means, i, 0).mean(0)[None, :])[0]) for i in range(k)]
    return [k * whole - (k - 1) * r for r in rest]


def difference(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """b minus a over the items of the pooled tasks of the part's kind(s), paired by item."""
    a, b = name(part.a), name(part.b or "")
    group = view.groups[-1][0] if part.group == "last" else part.group
    tasks = [t for k in _kinds(part) for t in view.pooled(k, [a, b])]
    seeds = _seeds(view, a, b, group=group)
    data, lines = {}, {}
    for s in seeds:
        pairs = _pairs(view, a, b, tasks, part.items, s, group)
        if pairs:
            data[f"s{s}"] = {"d": [y - x for x, y, _ in pairs]}
            lines[s] = [float(np.mean([x for x, _, _ in pairs])), float(np.mean([y for _, y, _ in pairs]))]
    est = _estimate(data, ["d"], lambda m: m[..., 0], part)
    runs = [view.run_ids(v, group)[s] for v in (a, b) for s in seeds]
    return est and {**est, "runs": runs, "panel": {"x": [a, b], "lines": {"accuracy": lines}, "y": "accuracy"}}


def stepwise(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """The stepwise task minus its direct twin on one model, paired by fact or direction (the independent unit; the
    twins may ask each a different number of times)."""
    a = name(part.a)
    direct, step = (name(t) for t in part.tasks)
    data, lines = {}, {}
    for s, rid in sorted(view.run_ids(a).items()):
        per = []
        for task in (direct, step):
            by: dict[str, list[float]] = {}
            for score, split, cluster in view.items(rid, task).values():
                if _in(split, part.items):
                    by.setdefault(cluster, []).append(score)
            per.append({c: float(np.mean(v)) for c, v in by.items()})
        shared = sorted(set(per[0]) & set(per[1]))
        if shared:
            data[f"s{s}"] = {"d": [per[1][c] - per[0][c] for c in shared]}
            lines[s] = [float(np.mean([p[c] for c in shared])) for p in per]
    est = _estimate(data, ["d"], lambda m: m[..., 0], part)
    panel = {"x": [direct, step], "lines": {f"{a} accuracy": lines}, "y": "accuracy (mean over facts)"}
    return est and {**est, "runs": list(view.run_ids(a).values()), "panel": panel}


def _synergy(view: StudyView, part: Part, name: Callable[[str], str], model: str, seed: int, group: str | None):
    """Per kind, model minus that kind's specialist per item (pooled tasks), at one seed and sweep group."""
    out = {}
    for k in _kinds(part):
        spec = name(part.specialists[k])
        pairs = _pairs(view, spec, model, view.pooled(k, [spec, model]), part.items, seed, group)
        out[k] = [y - x for x, y, _ in pairs]
    return out


def _paired_sets(data: dict[str, dict[str, list[float]]], sets: list[list[str]]) -> list[list[str]]:
    """The column sets that hold the same clusters at every seed (equal sizes), to be resampled together."""
    return [c for c in sets if all(len({len(cols.get(x, ())) for x in c}) == 1 for cols in data.values())]


def slope(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """Least-squares slope, against log2 of the swept value, of synergy (model a minus each kind's specialist,
    the mean of the two kinds so each weighs the same) over the sweep groups; the same items at every group are
    resampled together."""
    a = name(part.a)
    groups = [(g, v) for g, v in view.groups if g is not None]
    if len(groups) < 2:
        return None
    x = np.log2(np.array([float(v) for _, v in groups]))
    xc = x - x.mean()
    kinds = _kinds(part)
    columns = [f"{g}/{k}" for g, _ in groups for k in kinds]
    data: dict[str, dict[str, list[float]]] = {}
    lines: dict[int, list[float]] = {}
    for s in sorted({s for g, _ in groups for s in view.run_ids(a, g)}):
        cols = {f"{g}/{k}": v for g, _ in groups for k, v in _synergy(view, part, name, a, s, g).items()}
        data[f"s{s}"] = cols
        lines[s] = [
            float(np.mean([np.mean(cols[f"{g}/{k}"]) for k in kinds if cols[f"{g}/{k}"]] or [math.nan]))
            for g, _ in groups
        ]

    def fn(m: np.ndarray) -> np.ndarray:
        per_group = m.reshape(*m.shape[:-1], len(groups), len(kinds)).mean(-1)
        return (per_group * xc).sum(-1) / (xc**2).sum()

    paired = _paired_sets(data, [[f"{g}/{k}" for g, _ in groups] for k in kinds])
    est = _estimate(data, columns, fn, part, paired)
    models = (a, *(name(v) for v in part.specialists.values()))
    runs = [rid for g, _ in groups for v in models for rid in view.run_ids(v, g).values()]
    largest = [rid for v in models for rid in view.run_ids(v, groups[-1][0]).values()]
    panel = {"x": [g for g, _ in groups], "lines": {"synergy": lines}, "y": "synergy (points / 100)"}
    # small training sets generalise less by design: whether the recipe learned is judged at the largest one
    return est and {**est, "runs": runs, "learned_runs": largest, "panel": panel}


def deficit(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """How far a trails its specialist on its worse kind (0 when it trails on neither) minus how far b does:
    positive when b lets neither objective fall behind as much as a does. A gain over a specialist counts as no
    deficit, not as imbalance. The two models' gaps on the same items are resampled together."""
    a, b = name(part.a), name(part.b or "")
    columns = [f"{m} {k}" for m in (a, b) for k in ("und", "gen")]
    data, lines = {}, {}
    for s in _seeds(view, a, b):
        cols = {f"{m} {k}": v for m in (a, b) for k, v in _synergy(view, part, name, m, s, None).items()}
        data[f"s{s}"] = cols
        lines[s] = [float(np.mean(cols[c])) if cols.get(c) else math.nan for c in columns]

    def fn(m: np.ndarray) -> np.ndarray:
        worst = np.minimum(m[..., 0:2].min(-1), 0.0), np.minimum(m[..., 2:4].min(-1), 0.0)
        return worst[1] - worst[0]

    paired = _paired_sets(data, [[f"{a} und", f"{b} und"], [f"{a} gen", f"{b} gen"]])
    est = _estimate(data, columns, fn, part, paired)
    runs = [rid for v in (a, b, *part.specialists.values()) for rid in view.run_ids(name(v)).values()]
    panel = {"x": columns, "lines": {"gap to the specialist": lines}, "y": "model minus specialist"}
    return est and {**est, "runs": runs, "panel": panel}


def _layer(term: Term, layers: int) -> int:
    """A term's layer index among the states 0 (embeddings) .. `layers` (after the last block); mid is the middle
    depth (`layers // 2`, where UniFork forks)."""
    if isinstance(term.layer, int):
        return term.layer
    return {"first": 0, "mid": layers // 2, "last": layers}[term.layer]


def _series(rows: list[dict[str, Any]], term: Term) -> dict[int, list[float | None]]:
    """Layer -> per-item values of one term's series."""
    key, want = ("input", term.input) if term.input is not None else ("response", term.response)
    return {int(r["layer"]): r["items"] for r in rows if r.get(key) == want and "items" in r}


def layers(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """A signed sum of per-item analysis values (e.g. the last layer's mutual kNN minus the middle one's), paired by
    item (the same scenes at every layer and for every series)."""
    a = name(part.a)
    data, lines = {}, {}
    xs: list[int] = []
    for s, rid in sorted(view.run_ids(a).items()):
        rows = view.analysis(rid).get(part.analysis or "", [])
        series = [_series(rows, t) for t in part.terms]
        if not all(series):
            continue
        xs = sorted(series[0])
        depth = view.config(rid).model.layers
        picked = [ser[_layer(t, depth)] for t, ser in zip(part.terms, series)]
        n = min(len(p) for p in picked)
        kept = [i for i in range(n) if all(p[i] is not None for p in picked)]
        data[f"s{s}"] = {"d": [sum(t.sign * p[i] for t, p in zip(part.terms, picked)) for i in kept]}
        for t, ser in zip(part.terms, series):
            label = t.input or f"{t.response} response"
            lines.setdefault(label, {})[s] = [float(np.mean([v for v in ser[j] if v is not None])) for j in xs]
    est = _estimate(data, ["d"], lambda m: m[..., 0], part)
    what = {"alignment": "mutual kNN", "entropy": "normalised entropy"}[part.analysis or "alignment"]
    if part.terms[0].response is not None:
        what = "response entropy (nats)"
    panel = {"x": [str(x) for x in xs], "lines": lines, "y": f"{what} by layer"}
    return est and {**est, "runs": list(view.run_ids(a).values()), "panel": panel}


def conflict(view: StudyView, part: Part, name: Callable[[str], str]) -> dict[str, Any] | None:
    """The cosine between a model's understanding- and generation-loss gradients in its shared deep blocks (from the
    middle depth, where UniFork forks, to the last), averaged over the blocks and every checkpoint: below 0 when
    the two objectives pull the deep layers apart. One value per seed (blocks and checkpoints are not independent)."""
    a = name(part.a)
    data, lines = {}, {}
    steps: list[int] = []
    for s, rid in sorted(view.run_ids(a).items()):
        depth = view.config(rid).model.layers
        rows = [
            r
            for r in view.analysis(rid).get("gradients", [])
            if depth // 2 <= r["depth"] < depth and r["cosine"] is not None
        ]
        if not rows:
            continue
        steps = sorted({r["step"] for r in rows})
        lines[s] = [float(np.mean([r["cosine"] for r in rows if r["step"] == t])) for t in steps]
        data[f"s{s}"] = {"d": [float(np.mean(lines[s]))]}
    est = _estimate(data, ["d"], lambda m: m[..., 0], part)
    panel = {"x": [str(t) for t in steps], "lines": {"deep blocks": lines}, "y": "gradient cosine by step"}
    return est and {**est, "runs": list(view.run_ids(a).values()), "panel": panel}


STATS = {
    "difference": difference,
    "stepwise": stepwise,
    "slope": slope,
    "deficit": deficit,
    "layers": layers,
    "conflict": conflict,
}


def measure(view: StudyView, part: Part, aliases: dict[str, str]) -> dict[str, Any] | None:
    """One part on one study, or None when its runs are not there yet."""
    return STATS[part.stat](view, part, lambda n: aliases.get(n, n))
