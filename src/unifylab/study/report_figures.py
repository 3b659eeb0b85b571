"""The study report's figures, PNG bytes each with its caption: accuracy per task, synergy, training losses,
direct vs stepwise, transfer probes, synergy against a sweep, generated samples, and the analyses inside the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from unifylab.analysis import KINDS  # noqa: E402
from unifylab.analysis.plots import figure_png, png_bytes  # noqa: E402
from unifylab.layout import StudyFolder  # noqa: E402

CAPTIONS = {
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


def figures(out: Path, results: dict[str, Any]) -> dict[str, bytes]:
    """Every figure the study has data for, by name (a key of CAPTIONS), in the report's order."""
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
    return {k: v for k, v in figs.items() if v}


def fig_losses(out: Path, results: dict[str, Any]) -> bytes | None:
    """Training loss per task and run; none when no run's step log is there (a study copied without them)."""
    tasks = ("caption", "vqa", "t2i")
    logs = {rid: StudyFolder(out).run(rid).read_metrics() for rid in results["runs"]}
    if not any(logs.values()):
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), sharey=True)
    for rid, rows in logs.items():
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
