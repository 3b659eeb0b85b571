"""The benchmark scripts run end to end on tiny settings and print one JSON object per line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, args",
    [
        ("parser.py", ["--n", "64"]),
        (
            "model.py",
            ["--dim", "32", "--layers", "2", "--heads", "2", "--batch", "2", "--seq", "16", "--seconds", "0.05"],
        ),
        ("train.py", ["--steps", "2", "--batch", "4", "--dim", "32"]),
    ],
)
def test_benchmark_prints_json_lines(script: str, args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert rows and all("figure" in r for r in rows)


def test_learning_benchmark_scores_every_model_and_draws_curves(tmp_path: Path) -> None:
    args = [
        "--steps",
        "2",
        "--models",
        "reference,shared,patch",
        "--eval-n",
        "4",
        "--evals",
        "1",
        "--set",
        "model.dim=32",
        "--set",
        "model.heads=2",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learning.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [r["model"] for r in rows] == ["reference", "shared", "patch"]
    for r in rows:
        for key in ("val/t2i", "heldout/t2i", "val/vqa", "heldout/caption"):
            assert 0 <= r[key] <= 1
    assert rows[1]["tokens_per_s_vs_reference"] > 0 and (tmp_path / "curves.png").stat().st_size > 1000
