"""Side-by-side studies: run several presets (e.g. the quick study on each world) into one folder and set their
answers side by side, so a finding can be checked on more than one world before it is called an answer."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from unifylab.errors import UserError
from unifylab.io import read_json, write_text_atomic
from unifylab.layout import StudyFolder
from unifylab.study.claims_report import claims_section
from unifylab.study.preset import Preset, load_preset
from unifylab.study.report import md_row, write_report
from unifylab.study.report_answer import answer, headline, points, verdict
from unifylab.study.runner import run_study
from unifylab.study.verdicts import judge_claims
from unifylab.world import DEFAULT


def run_side_by_side(
    preset: Preset,
    out: Path,
    *,
    seeds: list[int] | None,
    device: str,
    overrides: list[str],
    console: Console,
    force: bool,
    only: list[str] | None = None,
    **executing: Any,
) -> dict[str, Any]:
    """Run each of `preset.studies` (or the `only` ones: a tier; the others' results already in OUT count) into
    OUT/<name> (resumable like any study) with its own report, then write OUT/results.json, OUT/report.md and
    OUT/report.html with their answers side by side, led by the verdicts of the preset's claims; returns the
    results. `executing`: how runs execute (jobs, executor, ...), as `run_study` takes them."""
    studies = [load_preset(name) for name in preset.studies]
    names = [sub.name for sub in studies]
    if len(set(names)) != len(names):
        raise UserError(f"preset {preset.name}: its studies are named {names}; each runs in OUT/<name>: rename one")
    for world, cw in preset.claim_worlds.items():
        if missing := sorted(set(cw.studies.values()) - set(names)):
            raise UserError(
                f"preset {preset.name}: claim_worlds.{world} reads studies {missing}, but its studies are named "
                f"{names}; name one of those"
            )
    if unknown := [n for n in only or [] if n not in names]:
        raise UserError(f"--only: {unknown} are not studies of preset {preset.name}; choose from {', '.join(names)}")
    results: dict[str, Any] = {}
    for sub in studies:
        folder = out / sub.name
        if only and sub.name not in only:
            if StudyFolder(folder).results.is_file():  # an earlier tier's results still count
                results[sub.name] = read_json(StudyFolder(folder).results)
            continue
        if executing.get("report_only") and not StudyFolder(folder).finished_runs():
            console.print(f"study {sub.name}: no run trained, left out (--report-only)")
            continue
        console.print(f"study {sub.name}")
        with StudyFolder(folder).lock(force=force):
            r = run_study(
                sub, folder, seeds=seeds, device=device, overrides=overrides, console=console, force=force, **executing
            )
            write_report(folder, r)
        results[sub.name] = r
    judged = judge_claims(preset, out) if preset.claims else None
    combined = {
        "preset": preset.model_dump(mode="json"),
        "studies": {
            name: {"world": _world(r), "answer": answer(r), "wall_seconds": r["wall_seconds"]}
            for name, r in results.items()
        },
        "rows": _rows(results),
        "wall_seconds": sum(r["wall_seconds"] for r in results.values()),
        "claims": judged,
    }
    write_text_atomic(out / "results.json", json.dumps(combined, indent=1))
    write_side_by_side(out, combined)
    return combined


def _world(results: dict[str, Any]) -> str:
    world = results["preset"]["base"].get("world", {})
    name = world if isinstance(world, str) else world.get("name", DEFAULT)
    return f"{name} world"


def _rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per question any study asks (in first-seen order): its cell per study, or None where a study
    does not ask it."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for name, r in results.items():
        for question, what, res in headline(r):
            row = rows.setdefault((question, what), {"question": question, "comparison": what, "cells": {}})
            row["cells"][name] = f"{points(res)}: {verdict(res)}"
    return [{**row, "cells": {n: row["cells"].get(n) for n in results}} for row in rows.values()]


def side_by_side_lines(combined: dict[str, Any]) -> list[str]:
    """The answer in short lines: per question, each study's result."""
    return [
        f"{row['question']} ({row['comparison']}): "
        + "; ".join(f"{name}: {cell or 'not asked'}" for name, cell in row["cells"].items())
        for row in combined["rows"]
    ]


def write_side_by_side(out: Path, combined: dict[str, Any]) -> tuple[Path, Path]:
    """OUT/report.md and OUT/report.html: the questions by study, then each study's own answer and report link."""
    names = list(combined["studies"])
    head = ["question", *[f"{n} ({combined['studies'][n]['world']})" for n in names]]
    rows = [
        [f"{r['question']} ({r['comparison']})", *[r["cells"][n] or "not asked" for n in names]]
        for r in combined["rows"]
    ]
    title = f"unifylab study: {combined['preset']['name']}"
    note = (
        "Each cell: the unified model minus the specialist (or the other architecture) in points of pooled exact "
        "accuracy, 95 % interval over seeds then items, Holm-adjusted p within its own study. A finding holds "
        "across worlds only where every world's cell says so."
    )
    lead_md, lead_html = claims_section(out, combined["claims"]) if combined.get("claims") else ([], [])
    md = [f"# {title}", "", combined["preset"]["description"].strip(), "", *lead_md, "## Answer, world by world", ""]
    md += [md_row(head), "|" + "---|" * len(head), *[md_row(r) for r in rows]]
    md += ["", note, ""]
    for n in names:
        md += [f"## {n}", "", *[f"- {x}" for x in combined["studies"][n]["answer"]], "", f"Report: {n}/report.html", ""]
    md += [f"Wall time: {combined['wall_seconds']:.0f} s.", ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(combined['preset']['description'])}</p>", *lead_html]
    body += ["<h2>Answer, world by world</h2>", "<table>"]
    body += ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
    body += ["</table>", f"<p><small>{html.escape(note)}</small></p>"]
    for n in names:
        body += [f"<h2>{html.escape(n)}</h2>"]
        body += [f"<p>{html.escape(x)}</p>" for x in combined["studies"][n]["answer"]]
        body += [f"<p><a href='{html.escape(n)}/report.html'>{html.escape(n)}: full report</a></p>"]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>"
    )
    study = StudyFolder(out)
    write_text_atomic(study.report_md, "\n".join(md))
    write_text_atomic(study.report_html, doc)
    return study.report_md, study.report_html
