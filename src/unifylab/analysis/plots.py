"""Curves over depth for the analyses: a panel per measure and model, one line per input; PNG files and PNG bytes
for the report."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from unifylab.io import write_bytes_atomic  # noqa: E402

PANELS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    # analysis: (rows' series key, y value, y label, panel title) per panel
    "alignment": (
        ("input", "mutual_knn", "mutual kNN (image vs text)", "alignment: mutual kNN"),
        ("input", "cka", "linear CKA (image vs text)", "alignment: linear CKA"),
    ),
    "entropy": (
        ("input", "normalised", "Renyi entropy / log(tokens)", "encoding entropy over depth"),
        ("response", "delta", "H(prompt+response) - H(prompt)", "response entropy"),
    ),
}
STYLES = ["-", "--", ":", "-."]


def depth_figure(kind: str, rows_by_model: dict[str, list[dict[str, Any]]]) -> plt.Figure:
    """Small multiples: a row per measure, a column per model (shared y within a row); x = layer (0 = embeddings),
    one line per input. Gradients get their own two panels (`gradient_figure`)."""
    if kind == "gradients":
        return gradient_figure(rows_by_model)
    panels = PANELS[kind]
    models = list(rows_by_model) or [""]
    fig, axes = plt.subplots(
        len(panels), len(models), figsize=(3.2 * len(models), 2.8 * len(panels)), squeeze=False, sharey="row"
    )
    for row, (series, y, ylabel, title) in enumerate(panels):
        for col, model in enumerate(models):
            ax, rows = axes[row][col], rows_by_model.get(model, [])
            for k, key in enumerate(sorted({r[series] for r in rows if series in r}, key=str)):
                pts = sorted((r["layer"], r[y]) for r in rows if r.get(series) == key)
                ax.plot(*zip(*pts), STYLES[k % len(STYLES)], marker="o", ms=3, label=str(key))
            chance = [r["chance"] for r in rows if y == "mutual_knn" and "chance" in r]
            if chance:
                ax.axhline(chance[0], color="grey", lw=0.8, ls=":", label="unrelated features")
            _finish(ax, "layer (0 = embeddings)", ylabel if col == 0 else "", f"{model}: {title}", integer_x=True)
    fig.tight_layout()
    return fig


def gradient_figure(rows_by_model: dict[str, list[dict[str, Any]]]) -> plt.Figure:
    """Left: cosine per depth at each model's last checkpoint. Right: over training, the mean cosine of the
    transformer layers that both tasks share (forked layers have none), one line per model."""
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 3.6))
    for m, (model, rows) in enumerate(rows_by_model.items()):
        if not rows:
            continue
        last = max(r["step"] for r in rows)
        pts = sorted((r["depth"], math.nan if r["cosine"] is None else r["cosine"]) for r in rows if r["step"] == last)
        axes[0].plot(
            *zip(*pts), STYLES[m % len(STYLES)], marker="o", ms=3, label=f"{model} (step {last})"
        )  # gaps: forked
        layers = [r for r in rows if r["layer"].startswith("layer") and r["cosine"] is not None]
        steps = sorted({r["step"] for r in layers})
        means = [
            sum(r["cosine"] for r in layers if r["step"] == s) / sum(r["step"] == s for r in layers) for s in steps
        ]
        if steps:
            axes[1].plot(steps, means, STYLES[m % len(STYLES)], marker="o", ms=3, label=model)
    for ax in axes:
        ax.axhline(0, color="grey", lw=0.8)
    _finish(
        axes[0],
        "depth (-1 = embeddings, last = head)",
        "cos(grad und, grad gen)",
        "gradient conflict per layer",
        integer_x=True,
    )
    _finish(axes[1], "training step (checkpoint)", "mean cos over shared layers", "gradient conflict over training")
    fig.tight_layout()
    return fig


def _finish(ax: plt.Axes, xlabel: str, ylabel: str, title: str, integer_x: bool = False) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6)


def figure_png(fig: plt.Figure) -> bytes:
    """PNG bytes of a figure (tight bounding box), closing it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_bytes(kind: str, rows_by_model: dict[str, list[dict[str, Any]]]) -> bytes:
    return figure_png(depth_figure(kind, rows_by_model))


def save_depth_figure(kind: str, rows_by_model: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    write_bytes_atomic(path, png_bytes(kind, rows_by_model))
    return path
