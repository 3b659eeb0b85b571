"""Optimiser recipes: Muon for the block matrices (AdamW for the rest) and the warmup-stable-decay schedule."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unifylab.errors import UserError
from unifylab.models.blocks import Block
from unifylab.train import Trainer, load_config
from unifylab.train.muon import Muon
from unifylab.train.optimizer import Combined, build_optimizer, lr_lambda

TINY = [
    "model.dim=32",
    "model.layers=2",
    "model.heads=2",
    "model.max_len=128",
    "optim.steps=40",
    "optim.batch=8",
    "optim.warmup=5",
    "optim.lr=0.003",
    "eval.every=20",
    "eval.examples=8",
    "checkpoint.every=10",
    "checkpoint.keep=2",
]


def _losses(run: Path) -> list[float]:
    return [json.loads(ln).get("loss") for ln in (run / "metrics.jsonl").read_text().splitlines()]


class Stop(Exception):
    pass


def _stop_after(n: int):
    def on_step(done: int, planned: int) -> None:
        if done == n:
            raise Stop

    return on_step


def test_muon_takes_the_block_matrices_and_trains(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "optim.name=muon", "optim.steps=60", "checkpoint.every=100"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    opt = trainer.opt
    assert isinstance(opt, Combined)
    muon, adamw = opt.parts
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    blocks = {id(p) for m in trainer.model.modules() if isinstance(m, Block) for p in m.parameters() if p.ndim == 2}
    got = {id(p) for g in muon.param_groups for p in g["params"]}
    assert got == blocks and len(got) == 2 * 4  # qkv, out, gate_up, down per block
    rest = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert not rest & got and rest | got == {id(p) for p in trainer.model.parameters()}
    assert {id(g) for g in opt.param_groups} == {id(g) for o in opt.parts for g in o.param_groups}
    trainer.fit()
    losses = [x for x in _losses(tmp_path / "run") if x is not None]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    # the scheduler drives both optimisers' groups
    lrs = {g["lr"] for g in opt.param_groups}
    assert len(lrs) == 1 and abs(lrs.pop() - 0.003 * lr_lambda(cfg, 60)(60)) < 1e-12


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
def test_batched_muon_steps_exactly_as_torch_muon_and_keeps_its_state_layout(nesterov: bool, adjust: str) -> None:
    """One batched orthogonalisation per shape gives torch.optim.Muon's weights bit for bit (tall, wide, square and
    repeated shapes, a parameter without a gradient), and the two load each other's state."""
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 16), (16, 40), (48, 16), (16, 16), (5, 3)]
    ours = [torch.nn.Parameter(torch.randn(*s) * 0.1) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    kw = {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.9, "nesterov": nesterov, "adjust_lr_fn": adjust}
    a, b = Muon(ours, **kw), torch.optim.Muon(theirs, **kw)
    for step in range(4):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            g = None if (i == 4 and step == 1) else torch.randn_like(p)
            p.grad, q.grad = g, None if g is None else g.clone()
        a.step()
        b.step()
        assert all(torch.equal(p, q) for p, q in zip(ours, theirs)), step
    assert a.state_dict()["param_groups"] == b.state_dict()["param_groups"]
    twin = Muon([torch.nn.Parameter(p.detach().clone()) for p in theirs], **kw)
    twin.load_state_dict(copy.deepcopy(b.state_dict()))  # torch's checkpoint into ours: the same next step
    for p, q in zip(twin.param_groups[0]["params"], theirs):
        p.grad = q.grad = torch.ones_like(q)
    twin.step()
    b.step()
    assert all(torch.equal(p, q) for p, q in zip(twin.param_groups[0]["params"], theirs))


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_muon_resume_matches_an_uninterrupted_run(tmp_path: Path, schedule: str) -> None:
    cfg = load_config(None, [*TINY, "optim.name=muon", f"optim.schedule={schedule}"])
    Trainer(cfg, tmp_path / "a", progress=False).fit()
    with pytest.raises(Stop):  # dies after step 15: the step-10 checkpoint is the latest
        Trainer(cfg, tmp_path / "b", progress=False, on_step=_stop_after(15)).fit()
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = Trainer(cfg, tmp_path / "b", progress=False)
    assert isinstance(resumed.opt, Combined)
    resumed.fit()
    la, lb = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert la == lb
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_combined_state_dict_round_trips(tmp_path: Path) -> None:
    """torch's format over the union: a fresh optimiser loaded from it carries on exactly like the original."""
    cfg = load_config(None, [*TINY, "optim.name=muon"])
    trainer = Trainer(cfg, tmp_path / "r", progress=False)
    for step in range(3):
        trainer._step(step)
    saved = copy.deepcopy(trainer.opt.state_dict())  # as a checkpoint holds it: no tensor shared with `trainer`
    assert sorted(saved["state"]) == list(range(len(saved["state"])))
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    twin = Trainer(cfg, tmp_path / "t", progress=False)
    twin.model.load_state_dict(weights)
    twin.opt.load_state_dict(saved)
    twin.sched.load_state_dict(trainer.sched.state_dict())
    for o in twin.opt.parts:  # the parts follow the loaded groups and state
        assert all(any(g is h for h in twin.opt.param_groups) for g in o.param_groups) and o.state is twin.opt.state
    for step in range(3, 5):
        trainer._step(step)
        twin._step(step)
    a, b = trainer.model.state_dict(), twin.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wsd_warms_up_holds_then_decays_linearly() -> None:
    cfg = load_config(None, ["optim.schedule=wsd", "optim.warmup=10", "optim.min_lr_ratio=0.1"])
    f = lr_lambda(cfg, 100)
    curve = [f(s) for s in range(100)]
    assert curve[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert curve[9:80] == [1.0] * 71  # stable: 1 until the last 20% (default decay_fraction 0.2)
    decay = np.diff(curve[80:])
    assert np.allclose(decay, decay[0]) and decay[0] < 0  # linear
    assert curve[80] == 1.0 and curve[-1] == pytest.approx(0.1 + 0.9 / 20) and f(100) == pytest.approx(0.1)
    g = lr_lambda(load_config(None, ["optim.schedule=wsd", "optim.decay_fraction=0.5", "optim.warmup=0"]), 100)
    assert g(49) == 1.0 and g(50) == 1.0 and g(51) < 1.0 and g(100) == pytest.approx(0.1)
    cosine = lr_lambda(load_config(None, ["optim.warmup=10"]), 100)
    assert cosine(50) < 1.0  # the default schedule is unchanged: cosine right after warmup


def test_bad_combinations_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="decay_fraction.*wsd only"):
        load_config(None, ["optim.decay_fraction=0.3"])  # cosine has no decay phase to size
    cfg = load_config(None, [*TINY, "optim.name=muon", "distributed=fsdp2"])
    with pytest.raises(UserError, match="fsdp2"):
        build_optimizer(torch.nn.Linear(2, 2), cfg, torch.device("cpu"))


def test_learning_benchmark_reports_steps_to_a_baseline_target(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    tiny = ["--steps", "4", "--models", "shared", "--eval-n", "4", "--evals", "2", "--set", "model.dim=32"]
    tiny += ["--set", "model.heads=2"]

    def run(*extra: str) -> list[dict]:
        out = subprocess.run(
            [sys.executable, str(root / "benchmarks" / "learning.py"), *tiny, *extra],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    run("--out", str(tmp_path / "base"))
    same = run("--out", str(tmp_path / "same"), "--target", str(tmp_path / "base" / "records.jsonl"))
    figure = [r for r in same if r["figure"] == "steps_to_target"]
    assert len(figure) == 1 and figure[0]["model"] == "shared" and figure[0]["optim"] == "adamw"
    # the same recipe and seed reach the baseline's final accuracies by the final step at the latest
    assert figure[0]["steps_to_target"] in (2, 4) and figure[0]["wall_s_to_target"] >= 0
    muon = run(
        "--out",
        str(tmp_path / "muon"),
        "--target",
        str(tmp_path / "base" / "records.jsonl"),
        "--set",
        "optim.name=muon",
        "--set",
        "optim.steps=2",
    )
    row = next(r for r in muon if r["figure"] == "learning")
    assert row["optim"] == "muon" and row["steps"] == 2 and "steps_to_target" in row
