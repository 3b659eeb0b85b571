"""Paired comparison of two evaluation folders: per task, the mean score difference on shared items, its 95 %
bootstrap CI and a sign-flip permutation p-value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from unifylab.config import build
from unifylab.errors import UserError
from unifylab.eval.stats import paired_difference
from unifylab.io import read_jsonl_tolerant


class Record(BaseModel):
    """What compare reads of an eval record (`unifylab eval` writes more): its item id and a finite score."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    id: str
    score: float


def _scores(folder: Path) -> dict[str, dict[str, float]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: evaluation folder not found; make one with `unifylab eval ... --out {folder}`")
    out = {}
    for f in sorted(folder.glob("*.jsonl")):
        recs = [
            build(Record, r if isinstance(r, dict) else {}, f"{f}: record {n} (of an `unifylab eval` folder)")
            for n, r in enumerate(read_jsonl_tolerant(f), 1)
        ]
        out[f.stem] = {r.id: r.score for r in recs}
    if not out:
        raise UserError(f"{folder}: no <task>.jsonl files; is this an `unifylab eval` output folder?")
    return out


def compare(a: Path, b: Path) -> dict[str, dict[str, Any]]:
    """Per shared task: {"a", "b", "diff": Estimate (b - a), "p_value", "n"} over the items both scored."""
    sa, sb = _scores(a), _scores(b)
    shared = sorted(set(sa) & set(sb))
    if not shared:
        raise UserError(f"{a} and {b} share no task; evaluate both on the same --tasks")
    out = {}
    for task in shared:
        ids = sorted(set(sa[task]) & set(sb[task]))
        if not ids:
            continue
        xa, xb = [sa[task][i] for i in ids], [sb[task][i] for i in ids]
        diff, p = paired_difference(xa, xb)
        out[task] = {
            "a": sum(xa) / len(xa),
            "b": sum(xb) / len(xb),
            "diff": diff.to_dict(),
            "p_value": p,
            "n": len(ids),
        }
    return out
