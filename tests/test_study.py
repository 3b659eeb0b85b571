import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from unifylab.study.preset import load_preset, preset_files
from unifylab.study.report_answer import answer
from unifylab.study.report_tables import tables

Cli = Callable[..., tuple[int, str, str]]
TINY = {
    "model": {"dim": 32, "layers": 2, "heads": 2},
    "optim": {"steps": 6, "batch": 8, "warmup": 2},
    "checkpoint": {"every": 100},
    "eval": {"every": 100, "examples": 4},
}


def _tiny(preset: str, tmp: Path, **extra: object) -> Path:
    raw = yaml.safe_load(preset_files()[preset].read_text())
    raw["base"] = {**raw["base"], **TINY}
    raw["limit"] = 6
    raw["analysis_n"] = 12
    raw.update(extra)
    for v in raw["variants"]:
        if v["set"].get("model", {}).get("fork_layer"):
            v["set"]["model"]["fork_layer"] = 1
    path = tmp / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_preset_loads() -> None:
    assert {"quick", "standard", "scaling", "alignment"} <= set(preset_files())
    for name in preset_files():
        p = load_preset(name)
        assert p.variants or all(load_preset(s).variants for s in p.studies)


def _quick_with_contrasts(tmp: Path) -> Path:
    """The quick study plus the equal-compute contrasts of the `budgets` preset (quick leaves them to it), at tiny
    size: every table of the report in one study."""
    quick, budgets = (yaml.safe_load(preset_files()[n].read_text())["variants"] for n in ("quick", "budgets"))
    return _tiny("quick", tmp, variants=[*quick, *(v for v in budgets if v["name"].endswith("-ec"))])


def test_quick_study_end_to_end_at_tiny_size(cli: Cli, tmp_path: Path) -> None:
    out, preset = tmp_path / "study", _quick_with_contrasts(tmp_path)
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {
        "shared-s0",
        "unifork-s0",
        "und-only-s0",
        "gen-only-s0",
        "und-only-ec-s0",
        "gen-only-ec-s0",
    }
    assert set(results["runs"]["gen-only-ec-s0"]["eval"]) <= {
        "t2i",
        "t2i_cells",
        "geneval",
        "geneval_strict",
        "facts_draw",
        "facts_draw_stepwise",
    }  # its kind only
    comp = results["comparisons"]["all"]
    syn = comp["synergy"]["shared"]
    assert syn["understanding"]["vs"] == "und-only" and syn["generation"]["vs"] == "gen-only"
    assert "unifork - shared" in comp["architecture"]
    budgets = comp["budgets"]["shared"]["generation"]
    assert set(budgets) == {"equal-steps", "equal-compute"}
    assert (
        budgets["equal-steps"]["pooled"] is syn["generation"]["pooled"]
        or budgets["equal-steps"]["pooled"] == syn["generation"]["pooled"]
    )
    assert "p_adjusted" in budgets["equal-compute"]["pooled"]
    vqa = results["runs"]["shared-s0"]["eval"]["vqa"]
    assert set(vqa["splits"]) == {"new_scenes", "heldout_pairs", "transfer", "all"}
    n_split = sum(vqa["splits"][k]["n"] for k in ("new_scenes", "heldout_pairs", "transfer") if vqa["splits"][k])
    assert n_split == vqa["n"] == 6
    blind = results["baselines"]["all"]
    assert set(blind) == set(results["preset"]["tasks"]) and blind["t2i"]["accuracy"]["value"] <= 0.5
    lines = answer(results)
    assert lines[0].startswith("Understanding (shared vs und-only): ") and lines[1].startswith("Generation (")
    assert any(x.startswith("unifork vs shared (understanding): ") for x in lines)
    assert all(
        "adjusted p = " in x and ("no evidence" in x or "a gain" in x or "a loss" in x or "above the floor" in x)
        for x in lines
    )
    assert results["transfer"]["all"]["shared"]["facts_draw"]["direction"] == "UEG"  # (6 items: no floor yet)
    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 5 and all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    md = (out / "report.md").read_text()
    assert "With one seed the intervals resample items only" in md  # a call at one seed is about these models
    two_seeds = {**results, "runs": {**results["runs"], "shared-s1": {**results["runs"]["shared-s0"], "seed": 1}}}
    assert "With one seed" not in tables(two_seeds)[0][3]
    assert md.count("](figures/") == len(images) and all(
        (out / "figures" / f"{k}.png").is_file()
        for k in ("accuracy", "synergy", "losses", "transfer", "samples", "alignment", "entropy", "gradients")
    )
    _check_synergy_independently(out, results)
    inside = results["runs"]["unifork-s0"]["analysis"]
    assert {r["input"] for r in inside["alignment"]} == {"und", "gen", "separate"}
    assert inside["entropy"] and inside["gradients"]
    mtime = (out / "runs" / "shared-s0" / "model.safetensors").stat().st_mtime
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu")
    assert code == 0 and (out / "runs" / "shared-s0" / "model.safetensors").stat().st_mtime == mtime
    changed = (
        "study",
        "--preset",
        preset,
        "--out",
        out,
        "--device",
        "cpu",
        "--set",
        "optim.lr=0.002",
    )
    code, _, err = cli(*changed)  # other settings into the same folder: refused, nothing reused or lost
    assert code == 2 and "optim.lr: 0.003 there, 0.002 now" in err and "--force" in err
    assert (out / "runs" / "shared-s0" / "model.safetensors").stat().st_mtime == mtime
    code, _, err = cli(*changed, "--force")
    assert code == 0, err
    assert json.loads((out / "runs" / "shared-s0" / "config.yaml").read_text().split("lr: ")[1].split()[0]) == 0.002


def _check_synergy_independently(out: Path, results: dict) -> None:
    """Recompute the report's pooled differences from the per-item jsonl, in plain Python: only the tasks both
    models were trained for, exact scores only, mean over seeds of the mean paired difference; and check the
    Holm adjustment by its definition within each family (headline claims, per-task breakdown)."""

    def items(run: str, tasks: list[str]) -> dict[str, float]:
        scores = {}
        for t in tasks:
            for line in (out / "eval" / run / f"{t}.jsonl").read_text().splitlines():
                rec = json.loads(line)
                scores[rec["id"]] = float(rec["score"])
        return scores

    comp = results["comparisons"]["all"]
    pairs = [
        (comp["synergy"]["shared"]["understanding"], "und-only-s0", "shared-s0", ["caption", "vqa"]),
        (comp["synergy"]["shared"]["generation"], "gen-only-s0", "shared-s0", ["t2i"]),
        (comp["architecture"]["unifork - shared"]["generation"], "shared-s0", "unifork-s0", ["t2i"]),
    ]
    for rec, base, other, tasks in pairs:
        rec = rec.get("pooled", rec)
        a, b = items(base, tasks), items(other, tasks)
        want = sum(b[i] - a[i] for i in a) / len(a)
        assert abs(rec["diff"]["value"] - want) < 1e-9 and rec["diff"]["lo"] <= want <= rec["diff"]["hi"]
    headline = [s["pooled"] for syn in comp["synergy"].values() for s in syn.values()]
    headline += [r for arch in comp["architecture"].values() for r in arch.values()]
    per_task = [r for syn in comp["synergy"].values() for s in syn.values() for r in s["tasks"].values()]
    for family in (headline, per_task):
        ps = sorted((r["p_value"], r["p_adjusted"]) for r in family if r)
        running = 0.0
        for k, (p, adj) in enumerate(ps):
            running = max(running, min(1.0, (len(ps) - k) * p))
            assert abs(adj - running) < 1e-12


def test_scaling_preset_sweeps_and_plots(cli: Cli, tmp_path: Path) -> None:
    path = _tiny("scaling", tmp_path, sweep={"key": "data.n_scenes", "values": [20, 80]}, tasks=["vqa", "t2i"])
    code, _, err = cli("study", "--preset", path, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0, err
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert set(results["comparisons"]) == {"20", "80"} and (tmp_path / "s" / "figures" / "sweep.png").is_file()


@pytest.mark.slow
def test_alignment_preset_runs_with_learned_tokenizers(cli: Cli, tmp_path: Path) -> None:
    path = _tiny(
        "alignment",
        tmp_path,
        vq={"steps": 20, "n_train": 256, "n_val": 32, "model": {"hidden": 16, "levels": [4, 4, 4]}},
        tasks=["vqa", "t2i"],
    )
    code, _, err = cli("study", "--preset", path, "--out", tmp_path / "a", "--device", "cpu")
    assert code == 0, err


def test_study_errors(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("study", "--preset", "nope", "--out", tmp_path / "x")
    assert code == 2 and "unknown preset 'nope'" in err
    code, _, err = cli("study", "--preset", _tiny("quick", tmp_path), "--out", tmp_path / "x", "--set", "optim.lrr=1")
    assert code == 2 and "optim.lrr" in err
    code, _, err = cli("study", "--preset", _tiny("quick", tmp_path, tasks=["vqa", "geu"]), "--out", tmp_path / "y")
    assert (
        code == 2 and "task geu is built on the 32 px 4x4 shapes world but run shared-s0 trains on the 32 px 3x3" in err
    )
    assert not (tmp_path / "y" / "runs").exists()
    # a bad model setting of one variant fails before any run trains, naming the run and the field
    code, _, err = cli(
        "study", "--preset", _tiny("quick", tmp_path), "--out", tmp_path / "z", "--set", "model.fork_layer=9"
    )
    assert code == 2 and "fork_layer" in err and "preset quick" in err
    assert not (tmp_path / "z" / "runs").exists()


def test_task_kind_comes_from_the_task_yaml(tmp_path: Path) -> None:
    from unifylab.eval.task_registry import load_task, task_files, tasks_of_kind
    from unifylab.study.preset import Variant

    kinds = {name: load_task(name).kind for name in task_files()}
    assert kinds["vqa"] == "und" and kinds["geneval"] == "gen" and kinds["self_consistency"] is None
    assert set(tasks_of_kind("und")) | set(tasks_of_kind("gen")) == {n for n, k in kinds.items() if k}
    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\ngenerator: vqa\nscorer: exact\nkind: und\n")
    specs = [load_task("t2i"), load_task(str(custom)), load_task("self_consistency")]
    contrast = Variant(name="und-ec", role="und", contrast=True)
    assert [s.name for s in contrast.scored_on(specs)] == ["mine"]
    assert len(Variant(name="und", role="und").scored_on(specs)) == 3


@pytest.mark.slow
def test_report_renders_in_headless_chromium(cli: Cli, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    out = tmp_path / "study"
    assert cli("study", "--preset", _tiny("quick", tmp_path), "--out", out, "--device", "cpu")[0] == 0
    page = (out / "report.html").resolve().as_uri()
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "unifylab study" in dom and "On shapes/quick" in dom and dom.count("<img") >= 5
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            page,
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with rendered figures, not a blank one


def test_locus_preset_fine_tunes_from_generation_with_frozen_groups(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli(
        "study",
        "--preset",
        _tiny("locus", tmp_path, tasks=["vqa"]),
        "--out",
        tmp_path / "l",
        "--device",
        "cpu",
        "--jobs",
        "1",
    )  # the in-process path (the other studies run 2 workers)
    assert code == 0, err
    import torch
    from safetensors.torch import load_file

    pre = load_file(str(tmp_path / "l" / "runs" / "gen-pretrain-s0" / "model.safetensors"))
    frozen = load_file(str(tmp_path / "l" / "runs" / "freeze-backbone-s0" / "model.safetensors"))
    heads_frozen = load_file(str(tmp_path / "l" / "runs" / "freeze-embeddings-heads-s0" / "model.safetensors"))
    assert torch.equal(pre["trunk.0.mlp.experts.0.down.weight"], frozen["trunk.0.mlp.experts.0.down.weight"])
    assert not torch.equal(pre["head.weight"], frozen["head.weight"])
    assert torch.equal(pre["head.weight"], heads_frozen["head.weight"])
    assert not torch.equal(pre["trunk.0.mlp.experts.0.down.weight"], heads_frozen["trunk.0.mlp.experts.0.down.weight"])
    results = json.loads((tmp_path / "l" / "results.json").read_text())
    assert "freeze-backbone - finetune-all" in results["comparisons"]["all"]["architecture"]


def _start_long_study(tmp_path: Path) -> tuple[subprocess.Popen, Path, dict[str, int]]:
    """A parallel study (two workers) in its own process group, once both workers train: its folder and the
    worker pids (from the run folders' lock files, which each trainer holds)."""
    import signal
    import sys
    import time

    path = _tiny("quick", tmp_path, tasks=["vqa"])
    raw = yaml.safe_load(path.read_text())
    raw["base"]["optim"]["steps"] = 5000  # long enough to be stopped mid-training
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "unifylab", "study", "--preset", str(path), "--out", str(out), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
        # as from a terminal: a test run started in the background of a non-interactive shell inherits SIGINT
        # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600  # a bound on start-up under any load, not a timing assumption
    workers: dict[str, int] = {}
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        for lock in out.glob("runs/*/.unifylab.lock"):
            pid = lock.read_text().strip()
            if pid and (lock.parent / "metrics.jsonl").is_file():
                workers[lock.parent.name] = int(pid)
    assert len(workers) == 2, f"the study did not start two trainings: {proc.poll()}"
    return proc, out, workers


def _gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _lock_is_free(folder: Path) -> bool:
    import fcntl

    fd = os.open(folder / ".unifylab.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_ctrl_c_stops_a_parallel_study_and_its_workers_before_it_exits_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): the study stops its workers itself and
    exits 130 with one line; when it has exited, no worker is alive and no run folder is locked."""
    import signal

    proc, out, workers = _start_long_study(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # the study kills what is left after a fixed grace: bounded by design
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted", err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert all(_gone(pid) for pid in workers.values())
    assert all(_lock_is_free(out / "runs" / run) for run in workers)


def test_kill_9_of_a_study_leaves_no_worker_training(tmp_path: Path) -> None:
    """A study killed with SIGKILL cannot stop its workers: they notice their parent is gone and exit, so the same
    command can resume at once (no 'in use by process N')."""
    import signal
    import time

    proc, out, workers = _start_long_study(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 120
    while not all(_gone(pid) for pid in workers.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_gone(pid) for pid in workers.values())
    assert all(_lock_is_free(out / "runs" / run) for run in workers)


def test_recipe_preset_sweeps_labelled_values(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli(
        "study",
        "--preset",
        _tiny("recipe", tmp_path, tasks=["vqa", "t2i_cells"]),
        "--out",
        tmp_path / "r",
        "--device",
        "cpu",
    )
    assert code == 0, err
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(results["comparisons"]) == {"targets-only", "with-prompt"}
    assert "shared-loss_ontargets-only-s0" in results["runs"] and (tmp_path / "r" / "figures" / "sweep.png").is_file()
    prompt_cfg = yaml.safe_load((tmp_path / "r" / "runs" / "shared-loss_onwith-prompt-s0" / "config.yaml").read_text())
    assert prompt_cfg["data"]["loss_on"] == {"gen": ["prompt", "image"]}
    bad = yaml.safe_load(preset_files()["recipe"].read_text())
    del bad["sweep"]["labels"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = cli("study", "--preset", tmp_path / "bad.yaml", "--out", tmp_path / "b")
    assert code == 2 and "give `labels`" in err


def _same_results(a: dict, b: dict) -> None:
    """Two studies' results.json agree in everything but wall times and how they executed."""
    for r in (a, b):
        r.pop("wall_seconds"), r.pop("environment")
    assert a == b


def test_two_workers_take_runs_in_turn_and_match_one_process(cli: Cli, tmp_path: Path) -> None:
    """--jobs 2 trains every run in one of two worker processes that each take the next run when they finish one
    (not a process per run), a fine-tune waiting for the run it starts from; results.json equals the in-process
    study's (--jobs 1)."""
    import torch

    preset = _tiny("locus", tmp_path, tasks=["vqa"], seeds=[0, 1])
    threads = torch.get_num_threads()
    try:
        for jobs in ("2", "1"):
            torch.set_num_threads(1)  # in process, as each worker trains: one thread (the analyses' sums follow it)
            code, _, err = cli("study", "--preset", preset, "--out", tmp_path / jobs, "--device", "cpu", "--jobs", jobs)
            assert code == 0, err
    finally:
        torch.set_num_threads(threads)
    runs = list((tmp_path / "2" / "runs").iterdir())
    trained_by = {(run / ".unifylab.lock").read_text().strip() for run in runs}  # each trainer's pid
    assert len(runs) == 10 and len(trained_by) == 2 and str(os.getpid()) not in trained_by
    _same_results(*(json.loads((tmp_path / d / "results.json").read_text()) for d in ("2", "1")))


def test_a_run_failing_in_a_worker_ends_the_study_with_its_one_error_line(cli: Cli, tmp_path: Path) -> None:
    """A run that fails inside a worker (an image tokenizer folder that does not exist, found when the run starts:
    the fourth of four, so after two others have trained) ends a parallel study with that run's one error line and
    exit 2: no worker is left behind, and the runs that finished are kept."""
    import multiprocessing as mp

    variants = yaml.safe_load(preset_files()["quick"].read_text())["variants"]
    next(v for v in variants if v["name"] == "gen-only")["set"]["tokenizers"] = {"image": "no-such-vq"}
    out = tmp_path / "s"
    preset = _tiny("quick", tmp_path, tasks=["vqa"], variants=variants)
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu", "--jobs", "2")
    assert code == 2 and err.strip().splitlines()[-1] == f"error: {out / 'no-such-vq'}: tokenizer folder not found"
    assert "Traceback" not in err and not mp.active_children()
    finished = [r.name for r in (out / "runs").iterdir() if (r / "model.safetensors").is_file()]
    assert len(finished) >= 2  # it started when a worker came free the second time


def test_a_study_on_a_local_ray_gives_the_local_pool_results(cli: Cli, tmp_path: Path) -> None:
    """--executor ray (a local Ray of two CPUs): every run a Ray task, runs that start from another wait for it,
    results collected from the study folder: results.json equals the local pool's. Run configs name their folders
    relative to the study folder, and each run records the host that trained it."""
    pytest.importorskip("ray")
    import ray

    preset = _tiny("locus", tmp_path, tasks=["vqa", "t2i"], seeds=[0, 1])
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "pool", "--device", "cpu", "--jobs", "2")
    assert code == 0, err
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, _, err = cli(
            "study", "--preset", preset, "--out", tmp_path / "ray", "--device", "cpu", "--executor", "ray"
        )
    finally:
        ray.shutdown()
    assert code == 0, err
    pool, on_ray = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("pool", "ray"))
    assert all(r["train"]["host"]["host"] for r in on_ray["runs"].values())
    _same_results(pool, on_ray)
    configs = [yaml.safe_load(p.read_text()) for p in (tmp_path / "ray" / "runs").glob("*/config.yaml")]
    assert any(c.get("init_from") for c in configs)
    assert all(not Path(c["init_from"]).is_absolute() for c in configs if c.get("init_from"))


def test_budget_contrasts_train_at_the_first_seed_only(tmp_path: Path) -> None:
    from unifylab.study.plan import plan_runs

    p = load_preset(_tiny("budgets", tmp_path, seeds=[0, 1, 2]))
    ids = {r.id for r in plan_runs(p, tmp_path / "s", None, "cpu", [], None)}
    assert {"und-only-ec-s0", "gen-only-ec-s0", "gen-only-etd-s0"} <= ids
    assert not any("-ec-s1" in i or "-ec-s2" in i or "-etd-s1" in i for i in ids) and "gen-only-s2" in ids
    every = load_preset(_tiny("budgets", tmp_path, seeds=[0, 1], contrast_seeds="all"))
    assert "gen-only-ec-s1" in {r.id for r in plan_runs(every, tmp_path / "s", None, "cpu", [], None)}


def test_a_pool_starts_runs_seed_by_seed_and_longest_first_within_a_seed(tmp_path: Path) -> None:
    from unifylab.study.executors import queue
    from unifylab.study.plan import plan_runs

    runs = plan_runs(load_preset(_tiny("quick", tmp_path, seeds=[0, 1])), tmp_path / "s", None, "cpu", [], None)
    cost = {"shared": 5, "unifork": 6, "und-only": 3, "gen-only": 4}
    order = [r.id for r in queue(runs, cost=lambda r: cost[r.variant.name])]
    assert order == [
        "unifork-s0", "shared-s0", "gen-only-s0", "und-only-s0",
        "unifork-s1", "shared-s1", "gen-only-s1", "und-only-s1",
    ]  # fmt: skip


def test_a_study_copied_without_its_weights_reports_from_its_records(cli: Cli, tmp_path: Path) -> None:
    """A study folder moved to another machine without each run's weights, checkpoints and step log (its results
    only) gives the same results.json from its records; a task not yet scored there is one error naming the missing
    weights, never a silent retraining."""
    variants = [
        {"name": "shared", "role": "unified", "set": {"model": {"backbone": "shared"}}},
        {"name": "gen-only", "role": "gen", "set": {"data": {"mode": "gen-only"}}},
    ]
    preset = _tiny("quick", tmp_path, tasks=["vqa", "t2i"], variants=variants)
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "full", "--device", "cpu")
    assert code == 0, err
    left_out = shutil.ignore_patterns("model.safetensors", "checkpoints", "metrics.jsonl")
    shutil.copytree(tmp_path / "full", tmp_path / "moved", ignore=left_out)
    assert not list((tmp_path / "moved").glob("runs/*/model.safetensors"))
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "moved", "--device", "cpu")
    assert code == 0, err
    assert "2 finished runs without their weights answer from their records" in err
    assert not list((tmp_path / "moved").glob("runs/*/model.safetensors"))  # nothing trained again
    full, moved = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "moved"))
    _same_results(full, moved)
    (tmp_path / "moved" / "eval" / "shared-s0" / "t2i.jsonl").unlink()
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "moved", "--device", "cpu")
    assert code == 2 and "shared-s0/model.safetensors: missing" in err and "images still to draw" in err
    assert "Traceback" not in err
    assert not (tmp_path / "moved" / "figures" / "losses.png").is_file()  # no step logs: no loss figure


def test_report_only_reports_the_trained_runs_and_trains_nothing(cli: Cli, tmp_path: Path) -> None:
    """--report-only on a study part-trained (another seed and another variant declared, neither trained) gives the
    results of the runs it has, names what it left out, and starts no run; with nothing trained it is one error."""
    variants = [
        {"name": "shared", "role": "unified", "set": {"model": {"backbone": "shared"}}},
        {"name": "gen-only", "role": "gen", "set": {"data": {"mode": "gen-only"}}},
    ]
    preset = _tiny("quick", tmp_path, tasks=["vqa", "t2i"], variants=variants)
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0, err
    before = json.loads((tmp_path / "s" / "results.json").read_text())
    more = {"name": "und-only", "role": "und", "set": {"data": {"mode": "und-only"}}}
    (tmp_path / "wider").mkdir()
    wider = _tiny("quick", tmp_path / "wider", tasks=["vqa", "t2i"], variants=[*variants, more])
    args = ("study", "--preset", wider, "--out", tmp_path / "s", "--device", "cpu", "--seeds", "0,1")
    code, _, err = cli(*args, "--report-only")
    assert code == 0, err
    assert "--report-only: 4 of 6 runs are not trained and left out" in err
    assert sorted(p.name for p in (tmp_path / "s" / "runs").iterdir()) == ["gen-only-s0", "shared-s0"]
    after = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [v["name"] for v in after["preset"]["variants"]] == ["shared", "gen-only"]
    _same_results(before, after)
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "empty", "--device", "cpu", "--report-only")
    assert code == 2 and "--report-only: no run of study quick has finished" in err and "Traceback" not in err
    assert not (tmp_path / "empty" / "runs").exists()
