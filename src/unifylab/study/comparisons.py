"""A study's paired comparisons: synergy (each unified variant minus each specialist), the architecture effect
(each other unified variant minus the first) and the budget contrasts, pooled over the trained tasks of a kind
and per task, paired by seed and item, with Holm adjustment within each family."""

from __future__ import annotations

from typing import Any

from unifylab.data.forms import MODE_TASKS
from unifylab.eval.stats import hierarchical_paired_difference, holm
from unifylab.eval.task_registry import TaskSpec
from unifylab.study.execute import Run
from unifylab.study.preset import Preset
from unifylab.train.config import TrainConfig


def _paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    """b - a over the items both scored (keys 's<seed>/<item>'), with a seeds-then-items bootstrap CI."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diff, p = hierarchical_paired_difference([a[i] for i in ids], [b[i] for i in ids], [i.split("/")[0] for i in ids])
    return {"diff": diff.to_dict(), "p_value": p}


def _scores(
    evals: dict[str, dict[str, dict[str, float]]], runs: list[Run], tasks: tuple[str, ...] | list[str]
) -> dict[str, float]:
    """Item scores of several runs (seeds) and tasks, keyed seed/task/item so pairs line up across variants."""
    out = {}
    for r in runs:
        for t in tasks:
            for item, s in evals.get(r.id, {}).get(t, {}).items():
                out[f"s{r.seed}/{item}"] = s
    return out


def trained_tasks(cfg: TrainConfig) -> set[str]:
    """The training tasks a run's examples include (its mode's tasks with mixture weight > 0)."""
    return {t for t in MODE_TASKS[cfg.data.mode] if cfg.data.mixture.get(t, 0) > 0}


def pooled_tasks(specs: dict[str, TaskSpec], kind: str, configs: list[TrainConfig]) -> list[str]:
    """Tasks of a kind that enter a pooled headline: taught by training data that every compared run (its config)
    saw, scored on their own outputs (a partial-credit re-scoring of a sibling's outputs is reported, never pooled),
    and not a transfer probe (reported in its own section). No configs: none."""
    taught = set.intersection(*(trained_tasks(c) for c in configs)) if configs else set()
    return [
        t
        for t, s in specs.items()
        if s.kind == kind and s.trained_by in taught and s.outputs_of is None and not s.probe
    ]


def _compare(
    evals: dict[str, dict[str, dict[str, float]]], base: list[Run], other: list[Run], tasks: list[str]
) -> dict[str, Any] | None:
    """`other` minus `base` over the items of `tasks`, paired by seed and item."""
    return _paired(_scores(evals, base, tasks), _scores(evals, other, tasks))


def comparisons(
    preset: Preset, runs: list[Run], evals: dict[str, dict[str, dict[str, float]]], specs: dict[str, TaskSpec]
) -> dict[str, Any]:
    """Per group: synergy of each unified variant against each specialist, and each other unified variant against
    the first (e.g. UniFork vs shared), pooled over the trained tasks of a kind and per task; p-values are then
    Holm-adjusted (`p_adjusted`) within each family of `comparison_families`."""
    out: dict[str, Any] = {}
    for group in sorted({r.group for r in runs}):
        g = [r for r in runs if r.group == group]
        by_variant = {v.name: [r for r in g if r.variant.name == v.name] for v in preset.variants}
        unified = [v for v in preset.variants if v.role == "unified"]
        res: dict[str, Any] = {"synergy": {}, "architecture": {}, "budgets": {}}
        for u in unified:
            syn: dict[str, Any] = {}
            budgets: dict[str, dict[str, Any]] = {}
            for spec_v in [v for v in preset.variants if v.role in ("und", "gen")]:
                kind = spec_v.role
                key = "understanding" if kind == "und" else "generation"
                base, other = by_variant[spec_v.name], by_variant[u.name]
                pool = pooled_tasks(specs, kind, [r.cfg for r in base + other])
                pooled = _compare(evals, base, other, pool)
                budget = base[0].cfg.data.budget if base else None
                budgets.setdefault(key, {})[budget] = {"vs": spec_v.name, "pooled": pooled, "contrast": spec_v.contrast}
                if not spec_v.contrast:
                    syn[key] = {
                        "vs": spec_v.name,
                        "pooled": pooled,
                        "pooled_tasks": pool,
                        "tasks": {t: _compare(evals, base, other, [t]) for t, s in specs.items() if s.kind == kind},
                    }
            res["synergy"][u.name] = syn
            if any(b["contrast"] for per in budgets.values() for b in per.values()):
                res["budgets"][u.name] = budgets
        first = unified[0]  # a preset always has one (validated)
        for u in unified[1:]:
            base, other = by_variant[first.name], by_variant[u.name]
            arch = {}
            for key, kind in (("understanding", "und"), ("generation", "gen")):
                pool = pooled_tasks(specs, kind, [r.cfg for r in base + other])
                arch[key] = _compare(evals, base, other, pool)
                if arch[key] is not None:
                    arch[key]["pooled_tasks"] = pool
            res["architecture"][f"{u.name} - {first.name}"] = arch
        out[group] = res
    for family in comparison_families(out):
        tests = [r for r in family if r is not None]
        for r, p in zip(tests, holm([r["p_value"] for r in tests])):
            r["p_adjusted"] = p
    return out


def comparison_families(comps: dict[str, Any]) -> tuple[list[dict[str, Any] | None], ...]:
    """The three families of paired comparisons, each Holm-adjusted on its own: the headline claims (pooled synergy
    and architecture per kind, every sweep group), the per-task breakdown shown beside them, and the synergy
    against specialists at other budgets (the budget table)."""
    headline: list[dict[str, Any] | None] = []
    per_task: list[dict[str, Any] | None] = []
    budgets = [
        b["pooled"]
        for res in comps.values()
        for per_u in res.get("budgets", {}).values()
        for per in per_u.values()
        for b in per.values()
        if b["contrast"]
    ]
    for res in comps.values():
        for syn in res["synergy"].values():
            for s in syn.values():
                headline.append(s["pooled"])
                per_task += list(s["tasks"].values())
        for arch in res["architecture"].values():
            headline += list(arch.values())
    return headline, per_task, budgets
