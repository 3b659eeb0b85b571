"""The study report's tables, each with the note that says how to read it: the summary of the headline questions,
accuracy by task (beside chance and the blind baseline), synergy under each training budget, and transfer."""

from __future__ import annotations

from typing import Any

import numpy as np

from unifylab.study.report_answer import difference, group_prefix, headline, transfer_rows, verdict

POOLED_NOTE = (
    "Understanding / generation accuracy = the mean item score over the tasks of that kind that both "
    "compared models were trained for (exact scores only: caption_cells and t2i_cells re-score the "
    "same outputs with partial credit and are shown per task, never pooled). Differences are paired "
    "by item; 95 % intervals resample seeds, then items within each seed; p-values (from the same "
    "bootstrap) are Holm-adjusted over the headline comparisons above (the per-task breakdown is "
    "adjusted as a family of its own), and a change is called a gain or a loss only when the "
    "adjusted p is below 0.05."
)
ONE_SEED_NOTE = (
    " With one seed the intervals resample items only, so they leave out how another training draw of the same "
    "recipe would differ: a call here is about these trained models, not their recipe; --seeds 0,1,2,3,4 puts that "
    "variance in."
)
TABLE_NOTE = (
    "Each cell: accuracy on all items (on new scenes of trained compositions / on scenes holding a "
    "held-out composition: a (shape, colour) pair, on the watch world a (weather, face colour) pair), the mean "
    "over the variant's seeds; every eval scene is one no run "
    "trained on (fact probes: all items; their split by where each fact was taught is in the transfer "
    "table). chance: a uniform guess over the answer space. blind: the best answer from the question "
    "alone (the most common training answer to that question), and for generation the most common "
    "training image whatever the prompt. * a specialist on a task of the other kind, which it was never "
    "trained for (GenEval-style scoring ignores extra objects, so random clutter can score there). geneval and "
    "watch_geneval draw from GenEval's prompt templates, which no training form uses: they measure how a model "
    "copes with an unfamiliar prompt form (prompt brittleness), not drawing skill, and never enter a pooled answer. "
    "Images are drawn greedily (each model's most likely image) unless the preset sets image_temperature."
)
BUDGETS = ("equal-steps", "equal-task-data", "equal-compute")
TRANSFER_NOTE = (
    "Per probe, items split by where the study's training data taught what they need (data.facts, "
    "data.moves, data.und_only_pairs, data.gen_only_pairs): on both sides (the ceiling; for scene "
    "tasks, the trained compositions), only on the other side (transfer: UEG for a generation probe, "
    "GEU for an understanding one) or nowhere (the floor: untaught facts and directions, held-out "
    "pairs). Intervals resample seeds, then facts or directions (or items); transfer - floor is "
    "Holm-adjusted over the study's transfer tests. "
    "A specialist cannot transfer by construction: its row shows what no sharing gives."
)
BUDGET_NOTE = (
    "Synergy (unified minus specialist, pooled as in the answer) against specialists trained under each "
    "budget: equal-steps sees exactly the unified run's examples of its kind in the same number of "
    "steps; equal-task-data sees the same examples in fewer steps (its share of the batch); "
    "equal-compute trains on as many tokens as the unified run (about its steps), all of its own kind "
    "(more examples of it). The gap between columns is how much of an effect the budget makes. The contrasts are "
    "Holm-adjusted as a family of their own."
)


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, head, rows, note) of each table the study has: summary and accuracy always, budgets and transfer
    when it trained them."""
    one_seed = len({run["seed"] for run in results["runs"].values()}) == 1
    pooled = POOLED_NOTE + (ONE_SEED_NOTE if one_seed else "")
    out = [("Summary", *_summary_table(results), pooled), ("Accuracy by task", *_table(results), TABLE_NOTE)]
    if any(comp.get("budgets") for comp in results["comparisons"].values()):
        out.append(("Budgets", *_budget_table(results), BUDGET_NOTE))
    if transfer_rows(results):
        out.append(("Transfer", *_transfer_table(results), TRANSFER_NOTE))
    return out


def _summary_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per headline question: the difference, its interval, adjusted p and verdict."""
    head = ["question", "comparison", "difference (points) [95% CI]", "adjusted p", "verdict"]
    rows = [[q, what, difference(r), f"{r['p_adjusted']:.3g}", verdict(r)] for q, what, r in headline(results)]
    return head, rows


def _mean(summaries: list[dict[str, Any]], split: str | None) -> float | None:
    """Mean over seeds of a task's accuracy (`split` None) or of one split's; None when no seed has it."""
    vals = [
        (x["accuracy"] if split is None else (x.get("splits") or {}).get(split) or {}).get("value") for x in summaries
    ]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _cell(summaries: list[dict[str, Any]], off: bool = False) -> str:
    """'all (new scenes / held-out pairs)' accuracies, averaged over seeds; '*' marks a task the model was never
    trained for."""
    if not summaries:
        return "-"
    part = [f"{v:.2f}" if (v := _mean(summaries, k)) is not None else "-" for k in ("new_scenes", "heldout_pairs")]
    split = "" if part == ["-", "-"] else f" ({' / '.join(part)})"  # fact probes split by fact: the transfer table
    return f"{_mean(summaries, None):.2f}{split}{'*' if off else ''}"


def _table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = tasks; columns = chance, the blind baseline (first group), then every variant (and sweep value),
    each cell the mean over its seeds."""
    tasks = results["preset"]["tasks"]
    kinds = results.get("task_kinds", {})
    blind = next(iter(results.get("baselines", {}).values()), {})
    columns: dict[str, list[dict[str, Any]]] = {}
    for r in results["runs"].values():
        label = r["variant"] + ("" if r.get("sweep_label") is None else f" ({r['sweep_label']})")
        columns.setdefault(label, []).append(r)
    head = ["task", "chance", "blind", *columns]
    rows = []
    for t in tasks:
        chance = next((r["eval"][t]["chance"] for r in results["runs"].values() if t in r["eval"]), None)
        cells = [t, "-" if chance is None else f"{chance:.2f}", _cell([blind[t]] if t in blind else [])]
        for runs in columns.values():
            role = runs[0]["role"]
            off = role in ("und", "gen") and kinds.get(t) not in (None, role)
            cells.append(_cell([r["eval"][t] for r in runs if t in r["eval"]], off))
        rows.append(cells)
    return head, rows


def _budget_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = (group, unified variant, kind); columns = the budgets the study trained: difference [CI], adjusted p."""
    present = {
        b
        for comp in results["comparisons"].values()
        for per_kind in comp.get("budgets", {}).values()
        for per in per_kind.values()
        for b in per
    }
    budgets = [b for b in BUDGETS if b in present]
    head = ["unified", "kind", *budgets]
    rows = []
    for group, comp in results["comparisons"].items():
        for u, per_kind in comp.get("budgets", {}).items():
            for kind, per in per_kind.items():
                cells = [f"{group_prefix(results, group)}{u}", kind]
                for b in budgets:
                    r = (per.get(b) or {}).get("pooled")
                    cells.append("-" if r is None else f"{difference(r)}, p = {r['p_adjusted']:.3g}")
                rows.append(cells)
    return head, rows


def _transfer_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = (variant, probe task): direction, mode, ceiling, this side only, transfer, floor, transfer - floor."""

    def acc(e: dict[str, Any] | None) -> str:
        if e is None:
            return "-"
        if e["lo"] is None:
            return f"{e['value']:.2f} (n={e['n']}; one cluster: no interval)"
        return f"{e['value']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}] (n={e['n']})"

    head = [
        "model",
        "probe",
        "direction",
        "ceiling (taught both sides)",
        "this side only",
        "transfer (other side only)",
        "floor (never taught)",
        "transfer - floor",
    ]
    rows = []
    for where, v, t, row in transfer_rows(results):
        r = row.get("transfer_minus_floor")
        diff = "-" if r is None else f"{difference(r)}, p = {r['p_adjusted']:.3g}"
        rows.append(
            [
                f"{where}{v}",
                f"{t} ({row['mode']})",
                row["direction"],
                acc(row["ceiling"]),
                acc(row.get("here")),
                acc(row["transfer"]),
                acc(row["floor"]),
                diff,
            ]
        )
    return head, rows
