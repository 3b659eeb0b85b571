"""The claims study's verdict table (claim, source, what the lab measured, effect with its interval, adjusted p,
verdict) and one small-multiples figure per claim and world: a panel per part and per breakdown, one thin line
per seed and their mean in bold (PNGs in OUT/figures/, and embedded in report.html so it stays one file)."""

from __future__ import annotations

import base64
import html
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from unifylab.analysis.plots import figure_png  # noqa: E402
from unifylab.io import write_bytes_atomic  # noqa: E402
from unifylab.study.report import md_row  # noqa: E402

POINTS = ("accuracy", "synergy", "model minus specialist", "accuracy (mean over facts)")


def effect(part: dict[str, Any] | None) -> str:
    """'+7.5 points [+3.0, +12.5]' for accuracies, '+0.081 [+0.020, +0.140]' for analysis values."""
    if part is None:
        return "not run yet"
    scale, unit = (100, " points") if part["panel"]["y"].startswith(POINTS) else (1, "")
    fmt = "{:+.1f}" if scale == 100 else "{:+.3f}"
    value = fmt.format(scale * part["value"])
    if part["lo"] is None:
        return f"{value}{unit} [no interval: one seed, one cluster]"
    return f"{value}{unit} [{fmt.format(scale * part['lo'])}, {fmt.format(scale * part['hi'])}]"


def figure(row: dict[str, Any]) -> bytes | None:
    """A panel per measured part, then one per measured breakdown (titled as such): per-seed values (thin) and
    their mean (bold) over the panel's x positions, up to four panels a row."""
    panels = [(p, "") for p in row["parts"] if p is not None]
    if not panels:
        return None
    panels += [(b, "breakdown: ") for b in row["breakdowns"] if b is not None]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (p, kind) in zip(axes.flat, panels):
        x = np.arange(len(p["panel"]["x"]))
        for k, (series, by_seed) in enumerate(p["panel"]["lines"].items()):
            color = f"C{k}"
            ys = np.array([by_seed[s] for s in sorted(by_seed)], dtype=float)
            for y in ys:
                ax.plot(x, y, color=color, alpha=0.35, linewidth=0.8)
            ax.plot(x, np.nanmean(ys, 0), color=color, linewidth=2.2, marker="o", label=series)
        ax.set_xticks(x, p["panel"]["x"], rotation=20, fontsize=7)
        ax.set_ylabel(p["panel"]["y"], fontsize=8)
        ax.set_title(f"{textwrap.fill(kind + p['label'], 46)}\n{effect(p)}", fontsize=8)
        if len(p["panel"]["lines"]) > 1:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{row['id']} on {row['world']}: {row['verdict']}", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def _cells(row: dict[str, Any]) -> list[str]:
    """The verdict table's cells of one claim and world (without the figure link)."""
    what = [row["id"], row["claim"], row["source"], row["world"]]
    if not row["testable"]:
        return [*what, "-", "-", "-", f"not testable here: {row['reason']}"]
    effects = "; ".join(f"{p['label']}: {effect(p)}" if p else "not run yet" for p in row["parts"])
    p_adj = "-" if row["test"] is None else f"{row['test']['p_adjusted']:.3g}"
    verdict = row["verdict"] + stability(row)
    if row["not_learned"]:
        verdict += f" (below the learned floor: {', '.join(row['not_learned'])})"
    if row.get("controls_not_learned"):
        verdict += f" (controls below the learned floor, as may be: {', '.join(row['controls_not_learned'])})"
    return [*what, row["measured"], effects, p_adj, verdict]


def stability(row: dict[str, Any]) -> str:
    """What the leave-one-seed-out check says of a called verdict, or that the bootstrap alone would have called
    another ('' otherwise)."""
    if "bootstrap_alone" in row:
        alone = row["bootstrap_alone"]
        return (
            f" (the seeds-then-items bootstrap alone would call it {alone['verdict']}, adjusted p "
            f"{alone['p_adjusted']:.3g}; the t test over the seeds does not agree)"
        )
    if "rests_on" not in row:
        return ""
    seeds = ", ".join(str(s) for s in row["rests_on"])
    return f" (rests on seed {seeds}: without it, not called)" if seeds else " (holds with any one seed left out)"


HEAD = ["claim", "what it says", "source", "world", "what the lab measured", "effect [95% CI]", "adjusted p", "verdict"]


def claims_section(out: Path, judged: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Markdown lines and HTML parts of the verdict table (figures written to OUT/figures/) and the breakdowns."""
    md = ["## Verdicts", "", md_row([*HEAD, "figure"]), "|" + "---|" * (len(HEAD) + 1)]
    body = ["<h2>Verdicts</h2>", "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in [*HEAD, "figure"]) + "</tr>"]
    embedded = []
    for row in judged["claims"]:
        png = figure(row)
        name = f"claim-{row['id']}-{row['world']}"
        if png is not None:
            write_bytes_atomic(out / "figures" / f"{name}.png", png)
            embedded.append(
                f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                f"<figcaption>{html.escape(row['id'])} on {html.escape(row['world'])}</figcaption></figure>"
            )
        cells = _cells(row)
        md.append(md_row([*cells, f"[figure](figures/{name}.png)" if png else "-"]))
        tds = [html.escape(c) for c in cells]
        tds.append(f"<a href='#{name}'>figure</a>" if png else "-")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in tds) + "</tr>")
    tested = sum(1 for r in judged["claims"] if r["testable"])
    note = (
        "Each claim's test was declared in the preset before any run. Effects: the statistic in points of exact "
        "accuracy (or in the analysis' own units), 95 % interval resampling seeds, then items (facts, directions or "
        "scenes: the independent unit). Each part's p is the larger of that bootstrap's and a t test's over the "
        "seeds' own values (a percentile bootstrap over a handful of seeds understates their spread; the t test "
        "holds the items fixed): both must agree. A claim with several parts is supported only when every part "
        "goes its way (p: the largest); it is contradicted when a part goes the other way significantly. The "
        f"{tested} primary tests (claims x worlds) form one Holm family; a verdict is called only at "
        f"{judged['min_seeds']} seeds or more, and each called one is tested again with every seed left out in turn "
        "(its p put back into the family): it holds, or the seeds it rests on are named. A compared model whose own "
        "accuracy on new scenes (the mean over its tasks of one kind; the lower of the kinds it was trained for) is "
        f"below {judged['learned_floor']:.2f} stops its verdict (not called; in a data sweep, judged at the largest "
        "training set, since small sets generalise less by design); a control below it (e.g. one learning over a "
        "frozen random backbone) is named beside the verdict."
    )
    b_head = ["claim", "world", "breakdown", "effect [95% CI]", "t test over the seeds [95% CI], p", "adjusted p"]
    md += ["", note, "", "### Breakdowns", "", md_row(b_head), "|" + "---|" * len(b_head)]
    body += ["</table>", f"<p><small>{html.escape(note)}</small></p>", "<h3>Breakdowns</h3>", "<table>"]
    for row in judged["claims"]:
        for b in row["breakdowns"]:
            if b is None:
                continue
            seed_test = f"{effect({**b, **b['seed_level']})}, p {b['seed_level']['p_value']:.3g}"
            cells = [row["id"], row["world"], b["label"], effect(b), seed_test, f"{b['p_adjusted']:.3g}"]
            md.append(md_row(cells))
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    md += ["", "Breakdowns are Holm-adjusted as a family of their own.", ""]
    body += ["</table>", "<p><small>Breakdowns are Holm-adjusted as a family of their own.</small></p>"]
    learned_md, learned_html = learned_section(judged)
    md += learned_md
    body += learned_html
    body += ["<h3>Evidence, claim by claim</h3>", *embedded]
    return md, body


def learned_section(judged: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Markdown lines and HTML of every run's own accuracy by study, model and seed, those below the floor marked."""
    floor = judged["learned_floor"]
    studies = judged.get("learned", {})
    seeds = sorted({s for models in studies.values() for row in models.values() for s in row}, key=int)
    head = ["study", "model", *(f"seed {s}" for s in seeds)]
    md = ["### Did the models learn?", "", md_row(head), "|" + "---|" * len(head)]
    body = ["<h3>Did the models learn?</h3>", "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for study, models in studies.items():
        for model, row in models.items():
            vals = [row.get(s) for s in seeds]
            cells = [study, model, *("-" if v is None else f"{v:.2f}" + (" *" if v < floor else "") for v in vals)]
            md.append(md_row(cells))
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    note = (
        f"A run's own accuracy: its mean exact accuracy on new scenes over the tasks of each kind it was trained for, "
        f"the lower kind's. * below the learned floor ({floor:.2f}): a compared model there stops its claim's "
        "verdict (in a data sweep, at the largest set only)."
    )
    md += ["", note, ""]
    body += ["</table>", f"<p><small>{html.escape(note)}</small></p>"]
    return md, body


def verdict_lines(judged: dict[str, Any]) -> list[str]:
    """One line per claim and world for the terminal."""
    return [f"{r['id']} ({r['world']}): {r['verdict']}{stability(r)}" for r in judged["claims"]]
