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
        ("step.py", ["--steps", "2", "--rounds", "1", "--variants", "default,bf16,optim.name=muon+model.qk_norm=true"]),
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


def _learning(out: Path, *args: str) -> list[dict]:
    """benchmarks/learning.py at a tiny size (2 steps, 4 items, width 32): its JSON rows."""
    tiny = ["--steps", "2", "--eval-n", "4", "--evals", "1", "--set", "model.dim=32", "--set", "model.heads=2"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learning.py"), *tiny, "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_learning_benchmark_scores_every_model_and_draws_curves(tmp_path: Path) -> None:
    rows = _learning(tmp_path, "--models", "reference,shared,patch")
    assert [r["model"] for r in rows] == ["reference", "shared", "patch"]
    for r in rows:
        for key in ("val/t2i", "heldout/t2i", "val/vqa", "heldout/caption"):
            assert 0 <= r[key] <= 1
    assert rows[1]["tokens_per_s_vs_reference"] > 0 and (tmp_path / "curves.png").stat().st_size > 1000
    muon = _learning(
        tmp_path / "muon", "--models", "reference,shared", "--set", "optim.name=muon", "--set", "optim.lr=0.006"
    )
    assert [(r["optim"], r["lr"]) for r in muon] == [
        ("adamw", 0.003),
        ("muon", 0.006),
    ]  # the yardstick keeps its recipe


def test_the_reference_reads_pixel_patches_where_the_lab_model_does(tmp_path: Path) -> None:
    """claims-watch reads faces as pixel patches: the plain reference projects them in, so it is a yardstick there
    too (its captions depend on the pixels, not only on the question)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("learning", ROOT / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    torch.manual_seed(0)
    ref = learning.RefGPT(50, 16, 1, 2, 32, patch_dim=12)
    ids, cont = torch.zeros(1, 6, dtype=torch.long), torch.tensor([[False, True, True, False, False, False]])
    a = ref(ids, cont, torch.randn(2, 12))
    b = ref(ids, cont, torch.randn(2, 12))
    assert not torch.allclose(a[:, 1:], b[:, 1:]) and torch.allclose(a[:, :1], b[:, :1])
    rows = _learning(tmp_path, "--preset", "claims-watch", "--models", "reference,shared")
    assert [r["model"] for r in rows] == ["reference", "shared"] and all(0 <= r["val/caption"] <= 1 for r in rows)
