"""Transfer: does what one side was taught reach the other (RealUnify's question, with the teaching controlled)?

A study's data config assigns each fact (`data.facts`) and some (shape, colour) pairs (`data.und_only_pairs`,
`data.gen_only_pairs`) to one side's training data. Per run and probe task, the items split into the ceiling
(taught on both sides: facts 'both', or the trained compositions), facts taught only on the probe's own side
('here'), transfer (taught only on the other side) and the floor (never taught: facts 'none', held-out pairs).
Understanding enhances generation (UEG) is a generation task's transfer; generation enhances understanding (GEU) an
understanding task's.
"""

from __future__ import annotations

from typing import Any

from unifylab.eval.harness import task_side
from unifylab.eval.stats import clustered_difference, clustered_mean, holm
from unifylab.eval.task_registry import TaskSpec

DIRECTION = {"gen": "UEG", "und": "GEU"}  # a probe's side -> the direction it measures
LEVELS = {"fact": ("both", "transfer", "none"), "scene": ("new_scenes", "transfer", "heldout_pairs")}
Labels = dict[str, dict[str, list[str]]]  # task -> item id -> [split, cluster]


def item_labels(records: list[dict[str, Any]], split: dict[str, str]) -> dict[str, list[str]]:
    """Each record's split (`split` by record id) and cluster: its fact or move direction when it asks about one
    (items of a fact or a direction are not independent), else the item itself."""
    return {r["id"]: [split[r["id"]], r["meta"].get("fact") or r["meta"].get("move") or r["id"]] for r in records}


def transfer(
    variants: dict[str, list[tuple[int, dict[str, dict[str, float]], Labels]]], specs: dict[str, TaskSpec]
) -> dict[str, Any]:
    """Per variant (its runs as (seed, scores, labels)) and probe task with transfer items: accuracy at the ceiling,
    on transfer items and at the floor (seeds-then-clusters intervals), and transfer minus floor with its p-value,
    Holm-adjusted over every such test of the study."""
    out: dict[str, Any] = {}
    tests = []
    for name, runs in variants.items():
        for task, spec in specs.items():
            side = task_side(spec)
            by: dict[str, list[tuple[str, str, float]]] = {}
            for seed, scores, labels in runs:
                for item, (split, cluster) in labels.get(task, {}).items():
                    if item in scores.get(task, {}):
                        by.setdefault(split, []).append((f"s{seed}", cluster, scores[task][item]))
            if side is None or "transfer" not in by:
                continue
            ceiling, moved, floor = LEVELS["fact" if "both" in by or "none" in by or "here" in by else "scene"]
            row: dict[str, Any] = {
                "direction": DIRECTION[side],
                "mode": spec.options.get("mode", "direct"),
                "probe": spec.probe,
            }
            for key, split in (("ceiling", ceiling), ("here", "here"), ("transfer", moved), ("floor", floor)):
                row[key] = clustered_mean(by[split]).to_dict() if split in by else None
            if floor in by:
                diff, p = clustered_difference(by[floor], by[moved])
                row["transfer_minus_floor"] = {"diff": diff.to_dict(), "p_value": p}
                tests.append(row["transfer_minus_floor"])
            out.setdefault(name, {})[task] = row
    for r, p in zip(tests, holm([t["p_value"] for t in tests])):
        r["p_adjusted"] = p
    return out
