import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from unifylab.data.forms import GEN_TASKS, TASKS, UND_TASKS
from unifylab.data.splits import EVAL_SCENE_SHARE, is_eval_scene
from unifylab.errors import UserError
from unifylab.models import from_pretrained
from unifylab.runtime import cpp_compiler
from unifylab.train import Trainer, load_config
from unifylab.train.data import Plan, SceneSource
from unifylab.world.shapes.canvas import sample_scenes

Cli = Callable[..., tuple[int, str, str]]
TINY = {
    "model": {"dim": 32, "layers": 2, "heads": 2, "max_len": 128},
    "optim": {"steps": 40, "batch": 8, "warmup": 5, "lr": 0.003},
    "eval": {"every": 20, "examples": 8},
    "checkpoint": {"every": 10, "keep": 2},
}


def _cfg(tmp: Path, **over: dict) -> Path:
    tree = json.loads(json.dumps(TINY))
    for k, v in over.items():
        tree.setdefault(k, {}).update(v)
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _losses(run: Path, key: str = "loss") -> list[float]:
    return [json.loads(ln).get(key) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "unifylab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def _torchrun(cfg: Path, out: Path, strategy: str) -> subprocess.CompletedProcess:
    """Train with two gloo processes under torchrun."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "unifylab",
            "train",
            str(cfg),
            "--out",
            str(out),
            "--quiet",
            "--set",
            f"distributed={strategy}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_config_errors_are_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    code, _, err = cli("train", cfg, "--out", tmp_path / "r", "--set", "optim.lrr=1")
    assert code == 2 and "unknown key 'optim.lrr'" in err and "valid keys here: lr," in err
    (tmp_path / "bad.yaml").write_text("optim: [1,\n")
    code, _, err = cli("train", tmp_path / "bad.yaml", "--out", tmp_path / "r")
    assert code == 2 and "malformed YAML" in err and "bad.yaml" in err
    code, _, err = cli("train", cfg, "--out", tmp_path / "r", "--set", "data.mixture={dance: 1}")
    assert code == 2 and "unknown task" in err
    code, _, err = cli("train", cfg, "--out", tmp_path / "r", "--set", "model.backbone=fork")
    assert code == 2 and "fork_layer" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = cli("train", cfg, "--out", tmp_path / "mine")
    assert code == 2 and "not a unifylab run" in err and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_budgets_give_specialists_the_unified_examples_or_tokens(tmp_path: Path) -> None:
    base = load_config(_cfg(tmp_path), [])
    uni, steps = Plan(base).stream()
    und, und_steps = Plan(load_config(_cfg(tmp_path), ["data.mode=und-only"])).stream()
    gen, gen_steps = Plan(load_config(_cfg(tmp_path), ["data.mode=gen-only"])).stream()
    tasks = Plan(base).tasks(len(uni))
    assert steps == 40 and len(uni) == 320
    assert sorted(np.concatenate([und, gen]).tolist()) == uni.tolist()
    assert set(tasks[und]) <= {TASKS.index(t) for t in UND_TASKS} and set(tasks[gen]) == {TASKS.index("t2i")}
    assert und_steps == -(-len(und) // 8) and gen_steps == -(-len(gen) // 8)
    lengths = lambda idx: 10 + (idx % 7)  # noqa: E731  (a stand-in token count per example)
    eq = Plan(load_config(_cfg(tmp_path), ["data.mode=und-only", "data.budget=equal-compute"]))
    idx, n = eq.stream(lengths)
    budget = lengths(uni).sum()
    assert lengths(idx).sum() >= budget and lengths(idx[:-8]).sum() < budget and n == -(-len(idx) // 8)


def test_equal_steps_keeps_each_example_at_its_unified_step(tmp_path: Path) -> None:
    over = ["data.mixture={caption: 10, vqa: 10, t2i: 1}"]
    base = Plan(load_config(_cfg(tmp_path), over))
    uni, steps = base.stream()
    tasks = base.tasks(len(uni))
    cfg = load_config(_cfg(tmp_path), [*over, "data.mode=gen-only", "data.budget=equal-steps"])
    gen, gen_steps = Plan(cfg).stream()
    assert gen_steps == steps and len(gen) == len(uni)
    assert np.array_equal(gen >= 0, tasks == TASKS.index("t2i")) and np.array_equal(gen[gen >= 0], uni[gen >= 0])
    summary = Trainer(cfg, tmp_path / "run", progress=False).fit()  # most steps hold no t2i example: skipped
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == steps == len(rows) and any(r.get("skipped") and r["loss"] is None for r in rows)
    assert any("loss/t2i" in r for r in rows)


def test_held_out_pairs_never_reach_training(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path), [])
    src = SceneSource(cfg)
    pairs = {tuple(p) for p in cfg.data.holdout_pairs}
    for i in range(300):
        assert not any((o.shape, o.color) in pairs for o in src.get("train", i)[0].objects)
        assert any((o.shape, o.color) in pairs for o in src.get("heldout", i)[0].objects)
    a, b = src.get("train", 5), src.get("train", 5)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_val_scenes_are_reserved_and_never_trained(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path), ["world.min_objects=1", "world.max_objects=1", "data.n_scenes=50"])
    src = SceneSource(cfg)
    train = {src.get("train", i)[0] for i in range(2000)} | {src.get("pool", i)[0] for i in range(400)}
    val = {src.get("val", i)[0] for i in range(300)}
    assert not any(is_eval_scene(s) for s in train) and all(is_eval_scene(s) for s in val)
    assert not train & val and len(val) > 20  # one-object scenes: a few hundred exist, so overlap would show
    assert abs(np.mean([is_eval_scene(s) for s in sample_scenes(cfg.world, 4000, 1)]) - EVAL_SCENE_SHARE) < 0.03


@pytest.mark.parametrize("mode", ["unified", "und-only", "gen-only"])
def test_each_mode_trains_with_falling_per_task_losses(tmp_path: Path, mode: str) -> None:
    cfg = load_config(_cfg(tmp_path), [f"data.mode={mode}", "optim.steps=60", "checkpoint.every=100"])
    summary = Trainer(cfg, tmp_path / "run", progress=False).fit()
    tasks = [
        t
        for t in {"unified": TASKS, "und-only": UND_TASKS, "gen-only": GEN_TASKS}[mode]
        if cfg.data.mixture.get(t, 0) > 0
    ]
    assert tasks and set(tasks) <= {"caption", "vqa", "t2i"}
    for t in tasks:
        series = [x for x in _losses(tmp_path / "run", f"loss/{t}") if x is not None]
        assert np.mean(series[-5:]) < 0.8 * np.mean(series[:5]), (t, series[:5], series[-5:])
    names = {f"{s}/{t}" for s in ("val", "heldout") for t in tasks}
    assert set(summary["final"]) == names | {f"exact/{n}" for n in names}
    assert all(0 <= summary["final"][f"exact/{n}"] <= 1 for n in names)
    assert summary["mode"] == mode and summary["budget"] == "equal-task-data"
    model = from_pretrained(tmp_path / "run")
    assert model.parameter_counts()["total"] == summary["parameters"]["total"]
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mode", "budget"} <= set(line)


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, model={"dim": 64}, optim={"batch": 16})
    straight = _run(["train", str(cfg), "--out", str(tmp_path / "a"), "--quiet"])
    assert straight.wait(timeout=600) == 0, straight.stderr.read()
    victim = _run(["train", str(cfg), "--out", str(tmp_path / "b"), "--quiet"])
    deadline = time.time() + 300
    while not (tmp_path / "b" / "checkpoints" / "step-20").exists():
        assert victim.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = _run(["train", str(cfg), "--out", str(tmp_path / "b"), "--quiet"])
    _, err = resumed.communicate(timeout=600)
    err = err.replace("\n", "")  # rich wraps long lines
    assert resumed.returncode == 0 and "resuming from" in err and "step-20" in err
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_damaged_latest_checkpoint_falls_back_with_a_warning(cli: Cli, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, optim={"steps": 20})
    assert cli("train", cfg, "--out", tmp_path / "r", "--quiet")[0] == 0
    before = _losses(tmp_path / "r")
    weights = tmp_path / "r" / "checkpoints" / "step-20" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = cli("train", cfg, "--out", tmp_path / "r", "--quiet")
    err = err.replace("\n", "")
    assert code == 0 and "warning" in err and "step-20" in err and "resuming from" in err and "step-10" in err
    assert _losses(tmp_path / "r") == before


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(cli: Cli, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, optim={"steps": 200, "lr": 1e6, "clip": 1e12, "warmup": 0}, checkpoint={"every": 1, "keep": 3})
    code, _, err = cli("train", cfg, "--out", tmp_path / "nan", "--quiet")
    err = err.replace("\n", " ").lower()
    assert code == 2 and ("loss became nan" in err or "loss became inf" in err) and "at a lower learning rate" in err
    from unifylab.train.checkpoint import latest_checkpoint, list_checkpoints

    steps = [int(p.name[5:]) for p in list_checkpoints(tmp_path / "nan")]
    failed_at = int(err.split(" at step ")[1].split(";")[0])
    assert steps and max(steps) == failed_at - 1
    _, (weights, _, _) = latest_checkpoint(tmp_path / "nan", warn=pytest.fail)
    assert all(torch.isfinite(v).all() for v in weights.values())
    advice = err.split("re-run the same command with ")[1].split()[:2]  # ['--set', 'optim.lr=100000']
    assert advice == ["--set", "optim.lr=100000"]


def test_an_unfinished_run_resumes_with_a_lower_lr_and_nothing_else(cli: Cli, tmp_path: Path) -> None:
    """What the divergence message advises: the same command with --set optim.lr=... resumes from the checkpoint."""
    from unifylab.train.checkpoint import list_checkpoints

    cfg = _cfg(tmp_path, optim={"steps": 12, "warmup": 0}, checkpoint={"every": 6, "keep": 3})
    run = tmp_path / "r"
    assert cli("train", cfg, "--out", run, "--quiet")[0] == 0
    (run / "summary.json").unlink()  # as if it had stopped after step 6 (a divergence, a crash)
    for p in list_checkpoints(run)[1:]:
        shutil.rmtree(p)
    code, _, err = cli("train", cfg, "--out", run, "--quiet", "--set", "optim.batch=4")
    assert code == 2 and "optim.batch" in err  # only optim.lr may change on resume
    code, _, err = cli("train", cfg, "--out", run, "--quiet", "--set", "optim.lr=0.0001")
    assert code == 0 and "resuming from" in err and "step 6 of 12" in err.replace("\n", ""), err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert (
        [r["lr"] for r in rows if r["step"] > 6 and "lr" in r]
        and all(r["lr"] <= 0.0001 for r in rows if r["step"] > 6 and "lr" in r)
        and rows[-1]["step"] == 12
    )
    assert "lr: 0.0001" in (run / "config.yaml").read_text()


def test_changed_config_does_not_resume_silently(cli: Cli, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, optim={"steps": 10})
    assert cli("train", cfg, "--out", tmp_path / "r", "--quiet")[0] == 0
    code, _, err = cli("train", cfg, "--out", tmp_path / "r", "--quiet", "--set", "optim.lr=0.01")
    assert code == 2 and "optim.lr" in err and "different config" in err


LAYOUTS = [{}, {"backbone": "fork", "fork_layer": 1}, {"backbone": "mot"}, {"output_heads": "split"}]
LAYOUT_IDS = ["shared", "fork", "mot", "split"]


@pytest.mark.parametrize("model", LAYOUTS, ids=LAYOUT_IDS)
def test_two_gloo_processes_match_one_process(tmp_path: Path, model: dict) -> None:
    # batch 4 with accum 2: each rank's micro-batch holds one example, so a rank often lacks a task form entirely
    cfg = _cfg(
        tmp_path,
        optim={"steps": 8, "batch": 4, "accum": 2},
        eval={"every": 8, "examples": 4},
        **({"model": model} if model else {}),
    )
    one = _run(["train", str(cfg), "--out", str(tmp_path / "one"), "--quiet"])
    assert one.wait(timeout=600) == 0, one.stderr.read()
    two = _torchrun(cfg, tmp_path / "two", "ddp")
    assert two.returncode == 0, two.stderr[-8000:]
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    la, lb = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert np.allclose(la, lb, atol=1e-5)


@pytest.mark.parametrize("model", LAYOUTS, ids=LAYOUT_IDS)
def test_fsdp2_matches_one_process(tmp_path: Path, model: dict) -> None:
    cfg = _cfg(
        tmp_path,
        optim={"steps": 6, "batch": 4, "accum": 2},
        eval={"every": 6, "examples": 4},
        **({"model": model} if model else {}),
    )
    assert _run(["train", str(cfg), "--out", str(tmp_path / "one"), "--quiet"]).wait(timeout=600) == 0
    two = _torchrun(cfg, tmp_path / "two", "fsdp2")
    assert two.returncode == 0, two.stderr[-8000:]
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_flow_output_on_two_gloo_processes_matches_one_process(tmp_path: Path, strategy: str) -> None:
    # a flow image's time and noise come from its place in the stream, so two ranks draw what one process draws
    cfg = _cfg(
        tmp_path,
        optim={"steps": 6, "batch": 4, "accum": 2},
        eval={"every": 6, "examples": 4},
        model={"image_output": "flow", "backbone": "mot"},
        tokenizers={"image": "patch", "und_image": "grid"},
    )
    assert _run(["train", str(cfg), "--out", str(tmp_path / "one"), "--quiet"]).wait(timeout=600) == 0
    two = _torchrun(cfg, tmp_path / "two", strategy)
    assert two.returncode == 0, two.stderr[-8000:]
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert "flow_out.weight" in a and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_user_error_for_distributed_without_torchrun(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="torchrun"):
        Trainer(load_config(_cfg(tmp_path), ["distributed=ddp"]), tmp_path / "r")


def test_training_from_a_dataset_folder(cli: Cli, tmp_path: Path) -> None:
    assert cli("world", "sample", "--n", "60", "--seed", "1", "--out", tmp_path / "data", "--noise", "4")[0] == 0
    cfg = _cfg(tmp_path, optim={"steps": 6}, eval={"every": 6, "examples": 4})
    code, _, err = cli(
        "train",
        cfg,
        "--out",
        tmp_path / "r",
        "--quiet",
        "--set",
        "data.source=folder",
        "--set",
        f"data.folder={tmp_path / 'data'}",
    )
    assert code == 0, err
    assert len(_losses(tmp_path / "r")) == 6
    code, _, err = cli(
        "train",
        cfg,
        "--out",
        tmp_path / "r2",
        "--quiet",
        "--set",
        "data.source=folder",
        "--set",
        f"data.folder={tmp_path / 'data'}",
        "--set",
        "world.grid=4",
    )
    assert code == 2 and "grid 3" in err and "world.grid" in err


def test_loss_on_trains_the_named_segments(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path), ["data.loss_on={gen: [prompt, image]}"])
    trainer = Trainer(cfg, tmp_path / "r", progress=False)
    idx = np.arange(40)
    items = trainer.batches.samples("train", idx, trainer.batches.task_of(idx))
    gen = next(p for it, p in zip(items, trainer.batches.pack(items)) if it.task == "t2i" and it.text)
    trained = {n for n, a, b in gen.segments if (gen.labels[a:b] != -100).any()}
    assert {"prompt", "image"} <= trained
    with pytest.raises(UserError, match="unknown segment"):
        Trainer(load_config(_cfg(tmp_path), ["data.loss_on={gen: [answer]}"]), tmp_path / "r2", progress=False)


def test_init_parts_take_only_the_named_groups_from_init_from(tmp_path: Path) -> None:
    from unifylab.models.hub import from_pretrained
    from unifylab.train.build import param_group
    from unifylab.train.config import TrainConfig

    first = Trainer(load_config(_cfg(tmp_path, optim={"steps": 12})), tmp_path / "first", progress=False)
    first.fit()
    tree = {**TINY, "optim": {**TINY["optim"], "steps": 1}, "init_from": str(tmp_path / "first")}
    cfg = TrainConfig.model_validate({**tree, "init_parts": ["backbone"], "freeze": ["backbone"]})
    fresh = Trainer(TrainConfig.model_validate(TINY | {"optim": tree["optim"]}), tmp_path / "own", progress=False)
    second = Trainer(cfg, tmp_path / "second", progress=False)
    pre, own = from_pretrained(tmp_path / "first").state_dict(), fresh.model.state_dict()
    for name, value in second.model.state_dict().items():
        want = pre[name] if param_group(name) == "backbone" else own[name]
        assert torch.equal(value, want), name
    with pytest.raises(ValueError, match="set init_from or drop init_parts"):
        TrainConfig.model_validate({**TINY, "init_parts": ["backbone"]})


def test_zero_steps_saves_the_initial_model_untrained(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, optim={"steps": 0}))
    trainer = Trainer(cfg, tmp_path / "init", progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert summary["steps"] == 0 and summary["tokens_seen"] == 0 and "final" in summary
    saved = from_pretrained(tmp_path / "init").state_dict()
    assert initial.keys() == saved.keys() and all(torch.equal(initial[k], saved[k]) for k in initial)
    for mode in ("und-only", "gen-only"):
        for budget in ("equal-task-data", "equal-steps", "equal-compute"):
            specialist = load_config(_cfg(tmp_path, optim={"steps": 0}), [f"data.mode={mode}", f"data.budget={budget}"])
            trainer = Trainer(specialist, tmp_path / f"{mode}-{budget}", progress=False)
            assert trainer.steps == 0 and trainer.fit()["steps"] == 0, (mode, budget)


@pytest.mark.skipif(shutil.which(cpp_compiler()) is None, reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("model", [{}, {"backbone": "fork", "fork_layer": 1}], ids=["shared", "fork"])
def test_compile_trains_each_block_compiled_to_the_eager_losses(tmp_path: Path, model: dict) -> None:
    cfg = _cfg(tmp_path, optim={"steps": 6}, eval={"every": 6, "examples": 4}, model=model)
    eager = Trainer(load_config(cfg), tmp_path / "eager", progress=False)
    compiled = Trainer(load_config(cfg, ["compile=true"]), tmp_path / "compiled", progress=False)
    assert all(blk._compiled_call_impl is not None for blk in compiled.model.attention_layers())
    eager.fit()
    compiled.fit()
    assert np.allclose(_losses(tmp_path / "eager"), _losses(tmp_path / "compiled"), atol=1e-4)
    a, b = eager.model.state_dict(), compiled.model.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_compile_without_a_cpu_compiler_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler.*no-such-compiler.*compile=false"):
        Trainer(load_config(_cfg(tmp_path), ["compile=true"]), tmp_path / "r", progress=False)
