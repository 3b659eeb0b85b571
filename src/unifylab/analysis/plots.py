"""Curves over depth for the analyses: one line per model and input, PNG files and PNG bytes for the report."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PANELS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    # analysis: (rows' series key, y value, y label, panel title) per panel
    "alignment": (("input", "mutual_knn", "mutual kNN (image vs text)", "alignment: mutual kNN"),
                  ("input", "cka", "linear CKA (image vs text)", "alignment: linear CKA")),
    "entropy": (("input", "normalised", "Renyi entropy / log(tokens)", "encoding entropy over depth"),
                ("response", "delta", "H(prompt+response) - H(prompt)", "response entropy")),
    "gradients": (("step", "cosine", "cos(grad und, grad gen)", "gradient conflict per layer"),),
}


def depth_figure(kind: str, rows_by_model: dict[str, list[dict[str, Any]]]) -> plt.Figure:
    """One panel per measure; x = layer (0 = embeddings), one line per (model, input) or, for gradients, per
    (model, checkpoint step)."""
    panels = PANELS[kind]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (series, y, ylabel, title) in zip(axes[0], panels):
        for m, (model, rows) in enumerate(rows_by_model.items()):
            keys = sorted({r[series] for r in rows if series in r and r.get(y) is not None}, key=str)
            if kind == "gradients" and keys:
                keys = [keys[-1]]  # the final checkpoint; the jsonl has every step
            for key in keys:
                pts = sorted((r["depth"] if kind == "gradients" else r["layer"], r[y]) for r in rows
                             if r.get(series) == key and r.get(y) is not None)
                if pts:
                    label = f"{model}: {key}" if kind != "gradients" else f"{model} (step {key})"
                    ax.plot(*zip(*pts), styles[m % len(styles)], marker="o", ms=3, label=label)
        chance = [r["chance"] for rows in rows_by_model.values() for r in rows if y == "mutual_knn" and "chance" in r]
        if chance:
            ax.axhline(chance[0], color="grey", lw=0.8, ls=":", label="unrelated features")
        if kind == "gradients":
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("layer (0 = embeddings)" if kind != "gradients" else "depth (-1 = embeddings, last = head)")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def save_depth_figure(kind: str, rows_by_model: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    fig = depth_figure(kind, rows_by_model)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def png_bytes(kind: str, rows_by_model: dict[str, list[dict[str, Any]]]) -> bytes:
    fig = depth_figure(kind, rows_by_model)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
