"""The study report: the answer in plain words with its intervals, then the evidence (curves, bars, synergy,
direct vs stepwise, generated samples with the parser's verdict, configuration, environment).

report.md links PNGs in DIR/figures/; report.html embeds the same PNGs inline, so it is one self-contained file.
The answer, tables and figures come from report_answer, report_tables and report_figures; this module lays them
out as the two documents.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from unifylab.analysis import KINDS
from unifylab.io import write_bytes_atomic, write_text_atomic
from unifylab.layout import StudyFolder
from unifylab.study.report_answer import answer
from unifylab.study.report_figures import CAPTIONS, figures
from unifylab.study.report_tables import tables


def md_row(cells: list[str]) -> str:
    """One markdown table row; a '|' or a line break inside a cell (e.g. in a run or task name) is escaped, so it
    never splits the row."""
    return "| " + " | ".join(" <br> ".join(str(c).replace("|", "\\|").splitlines()) for c in cells) + " |"


def write_report(out: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write DIR/report.md (+ figures/) and the self-contained DIR/report.html."""
    figs = figures(out, results)
    inside = next((k for k in figs if k in KINDS), None)  # opens the "Inside the models" section
    study = StudyFolder(out)
    for k in CAPTIONS:  # a figure this report no longer draws (e.g. losses without step logs) leaves with it
        if k in figs:
            write_bytes_atomic(study.figures / f"{k}.png", figs[k])
        else:
            (study.figures / f"{k}.png").unlink(missing_ok=True)
    lines = answer(results)
    env = results["environment"]
    env_line = ", ".join(f"{k} {v}" for k, v in env.items() if v is not None)
    wall = f"{results['wall_seconds']:.0f} s"
    md = [f"# unifylab study: {results['preset']['name']}", "", "## Answer", "", *[f"- {x}" for x in lines], ""]
    body = [
        f"<h1>unifylab study: {html.escape(results['preset']['name'])}</h1>",
        "<h2>Answer</h2>",
        *[f"<p class='answer'>{html.escape(x)}</p>" for x in lines],
    ]
    for title, head, rows, note in tables(results):
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
        md += [f"![{k}](figures/{k}.png)", "", CAPTIONS[k], ""]
        b64 = base64.b64encode(v).decode()
        body += [
            f"<figure><img alt='{k}' src='data:image/png;base64,{b64}'>",
            f"<figcaption>{html.escape(CAPTIONS[k])}</figcaption></figure>",
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
