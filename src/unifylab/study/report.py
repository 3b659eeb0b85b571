"""The study report: the answer in plain words with its intervals, then the evidence (curves, bars, synergy,
direct vs stepwise, generated samples with the parser's verdict, configuration, environment).

report.md links PNGs in DIR/figures/; report.html embeds the same PNGs inline, so it is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from unifylab.analysis import KINDS  # noqa: E402
from unifylab.analysis.plots import figure_png, png_bytes  # noqa: E402
from unifylab.io import write_bytes_atomic, write_text_atomic  # noqa: E402
from unifylab.layout import StudyFolder  # noqa: E402


def _interval(r: dict[str, Any]) -> str:
    """A paired difference in points with its 95 % interval: '+7.5 [+3.0, +12.5]'."""
    e = r["diff"]
    if e["lo"] is None:
        return f"{100 * e['value']:+.1f} [no interval: one cluster at one seed]"
    return f"{100 * e['value']:+.1f} [{100 * e['lo']:+.1f}, {100 * e['hi']:+.1f}]"


def points(r: dict[str, Any]) -> str:
    value, interval = _interval(r).split(" ", 1)
    return f"{value} points {interval}, adjusted p = {r['p_adjusted']:.3g}"


def verdict(r: dict[str, Any]) -> str:
    """A gain or a loss only when the Holm-adjusted p-value is below 0.05."""
    if r["p_adjusted"] >= 0.05:
        return "no evidence of a change"
    return "a gain" if r["diff"]["value"] > 0 else "a loss"


def md_row(cells: list[str]) -> str:
    """One markdown table row; a '|' or a line break inside a cell (e.g. in a run or task name) is escaped, so it
    never splits the row."""
    return "| " + " | ".join(" <br> ".join(str(c).replace("|", "\\|").splitlines()) for c in cells) + " |"


def _where(results: dict[str, Any], group: str) -> str:
    return "" if group == "all" else f"At {results['preset']['sweep']['key']} = {group}: "


def headline(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The report's questions in order, as (question, comparison, paired result): understanding and generation
    synergy of the first unified variant, then each other unified variant against it, per comparison group."""
    rows = []
    for group, comp in results["comparisons"].items():
        where = _where(results, group)
        first, syn = next(iter(comp["synergy"].items()))
        for kind in ("understanding", "generation"):
            s = syn.get(kind)
            if s and s["pooled"]:
                rows.append((f"{where}{kind.capitalize()}", f"{first} vs {s['vs']}", s["pooled"]))
        for label, arch in comp["architecture"].items():
            for kind, r in arch.items():
                if r:
                    rows.append((f"{where}{label.split(' - ')[0]} vs {first}", kind, r))
    return rows


def _transfer_rows(results: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(group prefix, variant, task, row) of every transfer row in the results."""
    return [
        (_where(results, g), v, t, row)
        for g, per in results.get("transfer", {}).items()
        for v, tasks in per.items()
        for t, row in tasks.items()
    ]


_TRANSFER_WHAT = {
    "UEG": "drawing what only the understanding side was taught",
    "GEU": "answering about what only the generation side was taught",
}


def transfer_answer(results: dict[str, Any]) -> list[str]:
    """One sentence per comparison group, direction and probe (direct and stepwise together) for the first unified
    variant: transfer minus floor, 'above the floor' only when the Holm-adjusted p is below 0.05 (the rest is in
    the transfer table). Scene tasks speak only where a study has no probe."""
    first = next((v["name"] for v in results["preset"]["variants"] if v["role"] == "unified"), None)
    rows = [x for x in _transfer_rows(results) if x[1] == first and x[3].get("transfer_minus_floor")]
    probes = [x for x in rows if x[3].get("probe")]
    picked: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
    for where, _, t, row in probes or rows:
        family = t.removesuffix("_stepwise") if probes else ""
        picked.setdefault((where, row["direction"], family), {}).setdefault(row["mode"], (t, row))
    out = []
    several = len({k[2] for k in picked}) > 1  # name the probe when the study has more than one
    for (where, direction, family), modes in picked.items():
        parts = []
        for mode, (t, row) in sorted(modes.items()):
            r = row["transfer_minus_floor"]
            above = "above the floor" if r["p_adjusted"] < 0.05 and r["diff"]["value"] > 0 else "no evidence"
            parts.append(
                f"{mode} ({t}) {100 * row['transfer']['value']:.0f} % right, "
                f"{points(r).replace(' points', ' points over the floor')}: {above}"
            )
        probe = f" by {family}" if several else ""
        out.append(f"{where}Transfer {direction}{probe} ({first}, {_TRANSFER_WHAT[direction]}): {'; '.join(parts)}.")
    return out


def answer(results: dict[str, Any]) -> list[str]:
    """One short sentence per question, with its 95 % interval and Holm-adjusted p; a change is a gain or a loss
    only when the adjusted p is below 0.05, else 'no evidence'; then one per transfer probe."""
    return [
        f"{question} ({what}): {points(r)}: {verdict(r)}." for question, what, r in headline(results)
    ] + transfer_answer(results)


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
    for where, v, t, row in _transfer_rows(results):
        r = row.get("transfer_minus_floor")
        diff = "-" if r is None else f"{_interval(r)}, p = {r['p_adjusted']:.3g}"
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


# ---------------------------------------------------------------------------------------------- figures


def fig_losses(out: Path, results: dict[str, Any]) -> bytes:
    tasks = ("caption", "vqa", "t2i")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), sharey=True)
    for rid in results["runs"]:
        rows = StudyFolder(out).run(rid).read_metrics()
        for ax, t in zip(axes, tasks):
            pts = [(r["step"], r[f"loss/{t}"]) for r in rows if f"loss/{t}" in r]
            if pts:
                s, v = zip(*pts)
                k = max(1, len(v) // 50)
                smooth = np.convolve(v, np.ones(k) / k, mode="valid")
                ax.plot(s[k - 1 :], smooth, label=rid)
    for ax, t in zip(axes, tasks):
        ax.set_title(f"training loss: {t}")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    return figure_png(fig)


def _bars(ax: plt.Axes, results: dict[str, Any], tasks: list[str]) -> None:
    runs = list(results["runs"])
    width = 0.8 / max(1, len(runs))
    for k, rid in enumerate(runs):
        ev = results["runs"][rid]["eval"]
        xs, vals, errs = [], [], []
        for i, t in enumerate(tasks):
            if t in ev:
                a = ev[t]["accuracy"]
                xs.append(i + k * width)
                vals.append(a["value"])
                errs.append([a["value"] - a["lo"], a["hi"] - a["value"]])
        if xs:
            ax.bar(xs, vals, width, yerr=np.array(errs).T, capsize=2, label=rid)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95% CI)")


def fig_accuracy(results: dict[str, Any]) -> bytes:
    tasks = results["preset"]["tasks"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks)), 3.5))
    _bars(ax, results, tasks)
    chance = [next((r["eval"][t]["chance"] for r in results["runs"].values() if t in r["eval"]), None) for t in tasks]
    for i, c in enumerate(chance):
        if c:
            ax.hlines(c, i - 0.1, i + 0.8, colors="k", linestyles=":", linewidth=1)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("accuracy per task (dotted: chance)")
    return figure_png(fig)


def fig_synergy(results: dict[str, Any]) -> bytes:
    rows = []
    for group, comp in results["comparisons"].items():
        for u, syn in comp["synergy"].items():
            for s in syn.values():
                for t, r in s["tasks"].items():
                    if r:
                        rows.append((f"{t} ({u}-{s['vs']}{'' if group == 'all' else ', ' + group})", r["diff"]))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for i, (_, e) in enumerate(rows):
        ax.errorbar(e["value"], i, xerr=[[e["value"] - e["lo"]], [e["hi"] - e["value"]]], fmt="o", capsize=3)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("unified minus specialist accuracy (95% CI, paired by item)")
    ax.set_title("synergy per task")
    return figure_png(fig)


def fig_modes(results: dict[str, Any]) -> bytes | None:
    tasks = [t for t in ("ueg", "ueg_stepwise", "geu", "geu_stepwise") if t in results["preset"]["tasks"]]
    if not tasks:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _bars(ax, results, tasks)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.set_title("UEG / GEU: direct vs stepwise")
    return figure_png(fig)


def fig_transfer(results: dict[str, Any]) -> bytes | None:
    """Per variant (first comparison group), ceiling / transfer / floor accuracy on each fact probe."""
    per = next(iter(results.get("transfer", {}).values()), {})
    rows = {v: {t: r for t, r in tasks.items() if r.get("probe")} for v, tasks in per.items()}
    rows = {v: r for v, r in rows.items() if r}
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.3), sharey=True, squeeze=False)
    for ax, (variant, tasks) in zip(axes[0], rows.items()):
        names = list(tasks)
        for k, (level, color) in enumerate((("ceiling", "#4a8"), ("transfer", "#47a"), ("floor", "#bbb"))):
            xs, vals, errs = [], [], []
            for i, t in enumerate(names):
                e = tasks[t][level]
                if e is not None:
                    xs.append(i + (k - 1) * 0.27)
                    vals.append(e["value"])
                    errs.append([0.0, 0.0] if e["lo"] is None else [e["value"] - e["lo"], e["hi"] - e["value"]])
            if xs:
                ax.bar(xs, vals, 0.27, yerr=np.array(errs).T, capsize=2, color=color, label=level)
        ax.set_xticks(range(len(names)), [n.replace("facts_", "") for n in names], rotation=20, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(variant)
    axes[0][0].set_ylabel("accuracy (95% CI)")
    axes[0][0].legend(fontsize=7)
    return figure_png(fig)


def fig_sweep(results: dict[str, Any]) -> bytes | None:
    """Pooled synergy against the swept setting: a log axis for numbers (e.g. data size), categories otherwise."""
    sweep = results["preset"].get("sweep")
    if not sweep:
        return None
    names = sweep["labels"] or [str(v) for v in sweep["values"]]
    numeric = sweep["labels"] is None and all(isinstance(v, (int, float)) and v > 0 for v in sweep["values"])
    where = {n: (float(v) if numeric else k) for k, (n, v) in enumerate(zip(names, sweep["values"]))}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for group, comp in results["comparisons"].items():
        for u, syn in comp["synergy"].items():
            for kind, s in syn.items():
                if s["pooled"]:
                    series.setdefault(f"{kind} ({u})", []).append((where[group], s["pooled"]["diff"]))
    for label, pts in series.items():
        pts.sort(key=lambda p: p[0])
        x = [p[0] for p in pts]
        ax.plot(x, [p[1]["value"] for p in pts], marker="o", label=label)
        ax.fill_between(x, [p[1]["lo"] for p in pts], [p[1]["hi"] for p in pts], alpha=0.2)
    ax.axhline(0, color="k", linewidth=0.8)
    if numeric:
        ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(names)), names)
    ax.set_xlabel(sweep["key"])
    ax.set_ylabel("synergy (95% CI)")
    ax.legend(fontsize=7)
    ax.set_title(f"synergy against {sweep['key']}")
    return figure_png(fig)


def fig_samples(out: Path, results: dict[str, Any], n: int = 6) -> bytes | None:
    """Generated t2i images per run, titled with the parser's verdict."""
    gen_runs = [rid for rid, r in results["runs"].items() if "t2i" in r["eval"]]
    if not gen_runs:
        return None
    fig, axes = plt.subplots(len(gen_runs), n, figsize=(1.6 * n, 1.8 * len(gen_runs)), squeeze=False)
    for row, rid in enumerate(gen_runs):
        folder = StudyFolder(out).eval(rid)
        recs = list(folder.read_records("t2i").values())[:n]
        for col, rec in enumerate(recs):
            ax = axes[row][col]
            ax.imshow(Image.open(folder.path / rec["output"]["images"][0]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("correct" if rec["score"] else "wrong", fontsize=7, color="green" if rec["score"] else "red")
            if col == 0:
                ax.set_ylabel(rid, fontsize=7)
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- documents


POOLED_NOTE = (
    "Understanding / generation accuracy = the mean item score over the tasks of that kind that both "
    "compared models were trained for (exact scores only: caption_cells and t2i_cells re-score the "
    "same outputs with partial credit and are shown per task, never pooled). Differences are paired "
    "by item; 95 % intervals resample seeds, then items within each seed; p-values (from the same "
    "bootstrap) are Holm-adjusted over the headline comparisons above (the per-task breakdown is "
    "adjusted as a family of its own), and a change is called a gain or a loss only when the "
    "adjusted p is below 0.05."
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


def fig_analysis(results: dict[str, Any], kind: str) -> bytes | None:
    """Curves over depth of one analysis for the first seed's runs (of the first sweep value), side by side."""
    runs = results["runs"]
    first = next(iter(runs.values()), None)
    if first is None:
        return None
    rows = {
        r["variant"]: r["analysis"][kind]
        for r in runs.values()
        if kind in r.get("analysis", {}) and r["seed"] == first["seed"] and r["sweep"] == first["sweep"]
    }
    return png_bytes(kind, rows) if rows else None


def _summary_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per headline question: the difference, its interval, adjusted p and verdict."""
    head = ["question", "comparison", "difference (points) [95% CI]", "adjusted p", "verdict"]
    rows = [[q, what, _interval(r), f"{r['p_adjusted']:.3g}", verdict(r)] for q, what, r in headline(results)]
    return head, rows


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
    "equal-compute trains as many steps as the unified run on its own kind only (more examples of "
    "it). The gap between columns is how much of an effect the budget makes. The contrasts are "
    "Holm-adjusted as a family of their own."
)


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
                cells = [f"{_where(results, group)}{u}", kind]
                for b in budgets:
                    r = (per.get(b) or {}).get("pooled")
                    cells.append("-" if r is None else f"{_interval(r)}, p = {r['p_adjusted']:.3g}")
                rows.append(cells)
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


def write_report(out: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write DIR/report.md (+ figures/) and the self-contained DIR/report.html."""
    figs = {
        "accuracy": fig_accuracy(results),
        "synergy": fig_synergy(results),
        "losses": fig_losses(out, results),
        "modes": fig_modes(results),
        "transfer": fig_transfer(results),
        "sweep": fig_sweep(results),
        "samples": fig_samples(out, results),
        **{k: fig_analysis(results, k) for k in KINDS},
    }
    figs = {k: v for k, v in figs.items() if v}
    inside = next((k for k in figs if k in KINDS), None)  # opens the "Inside the models" section
    study = StudyFolder(out)
    for k, v in figs.items():
        write_bytes_atomic(study.figures / f"{k}.png", v)
    captions = {
        "accuracy": "Accuracy per task and run, with 95 % bootstrap intervals.",
        "synergy": "Synergy: unified minus specialist, per task, paired by item.",
        "losses": "Training loss per task (log scale, smoothed).",
        "modes": "Reasoning tasks, direct vs stepwise.",
        "transfer": "Transfer probes: accuracy on facts (or move directions) taught on both sides (ceiling), only "
        "on the other side (transfer) and nowhere (floor), direct and stepwise; specialists cannot "
        "transfer.",
        "sweep": "Synergy against the swept setting.",
        "samples": "Generated t2i samples with the exact parser's verdict.",
        "alignment": "Inside the models: mutual-kNN and linear CKA between mean-pooled image and text states per "
        "layer, for understanding inputs (image, then caption), generation inputs (prompt, then image) "
        "and separate ones (the image alone, its caption alone: no attention between them).",
        "entropy": "Inside the models: Renyi entropy (alpha 1.01) of text-only, image-only and mixed inputs per layer "
        "(normalised by log tokens), and response entropy H(prompt+response) - H(prompt), text vs image.",
        "gradients": "Inside the models: cosine between understanding and generation loss gradients per layer at the "
        "last checkpoint (forked layers share no weights: gaps), and its mean over the shared "
        "transformer layers at every checkpoint.",
    }
    lines = answer(results)
    tables = [("Summary", *_summary_table(results), POOLED_NOTE), ("Accuracy by task", *_table(results), TABLE_NOTE)]
    if any(comp.get("budgets") for comp in results["comparisons"].values()):
        tables.append(("Budgets", *_budget_table(results), BUDGET_NOTE))
    if _transfer_rows(results):
        tables.append(("Transfer", *_transfer_table(results), TRANSFER_NOTE))
    env = results["environment"]
    env_line = ", ".join(f"{k} {v}" for k, v in env.items() if v is not None)
    wall = f"{results['wall_seconds']:.0f} s"
    md = [f"# unifylab study: {results['preset']['name']}", "", "## Answer", "", *[f"- {x}" for x in lines], ""]
    body = [
        f"<h1>unifylab study: {html.escape(results['preset']['name'])}</h1>",
        "<h2>Answer</h2>",
        *[f"<p class='answer'>{html.escape(x)}</p>" for x in lines],
    ]
    for title, head, rows, note in tables:
        md += [
            f"## {title}",
            "",
            md_row(head),
            "|" + "---|" * len(head),
            *[md_row(r) for r in rows],
            "",
            note,
            "",
        ]
        body += [
            f"<h2>{html.escape(title)}</h2>",
            "<table>",
            "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>",
            *["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows],
            "</table>",
            f"<p><small>{html.escape(note)}</small></p>",
        ]
    for k, v in figs.items():
        if k == inside:
            md += ["## Inside the models", ""]
            body.append("<h2>Inside the models</h2>")
        md += [f"![{k}](figures/{k}.png)", "", captions[k], ""]
        b64 = base64.b64encode(v).decode()
        body += [
            f"<figure><img alt='{k}' src='data:image/png;base64,{b64}'>",
            f"<figcaption>{html.escape(captions[k])}</figcaption></figure>",
        ]
    md += [
        "## Environment",
        "",
        env_line,
        "",
        f"Wall time of this invocation: {wall}.",
        "",
        "## Configuration",
        "",
        f"Overrides: {results['overrides'] or 'none'}",
        "",
        "```json",
        json.dumps(results["preset"], indent=1),
        "```",
        "",
    ]
    write_text_atomic(study.report_md, "\n".join(md))
    body += [
        "<h2>Environment</h2>",
        f"<p>{html.escape(env_line)}</p>",
        f"<p>Wall time of this invocation: {wall}.</p>",
        "<h2>Configuration</h2>",
        f"<p>Overrides: {html.escape(str(results['overrides'] or 'none'))}</p>",
        f"<pre>{html.escape(json.dumps(results['preset'], indent=1))}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}.answer{font-size:1.1em;background:#f4f7fb;padding:.6em;border-left:4px solid #47a}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>unifylab study</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>"
    )
    write_text_atomic(study.report_html, doc)
    return study.report_md, study.report_html
