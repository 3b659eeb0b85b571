"""Run a study: train every (sweep value x seed x variant), evaluate each on every task, measure synergy
(unified minus specialist, paired by item) and the architecture effect (each other unified variant minus the
first), and write results.json for the report. Finished runs and scored items are skipped on re-runs."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unifylab import __version__
from unifylab.eval.harness import run_task, summarise
from unifylab.eval.stats import paired_difference
from unifylab.eval.tasks import load_task
from unifylab.study.preset import GEN_TASKS, UND_TASKS, Preset, Variant, dotted, merge
from unifylab.train.config import TrainConfig, load_tree
from unifylab.train.data import Plan

RESULTS = "results.json"


@dataclass
class Run:
    id: str
    variant: Variant
    seed: int
    sweep: Any
    cfg: TrainConfig

    @property
    def group(self) -> str:
        """Runs compared with each other share a group (one per sweep value)."""
        return "all" if self.sweep is None else str(self.sweep)


def _run_id(preset: Preset, name: str, value: Any, seed: int) -> str:
    return name + ("" if value is None else f"-{preset.sweep.key.split('.')[-1]}{value}") + f"-s{seed}"


def plan_runs(preset: Preset, out: Path, seeds: list[int] | None, device: str, overrides: list[str],
              vq_folder: Path | None) -> list[Run]:
    """Runs in training order (a variant that starts from another comes after it)."""
    runs = []
    for value in (preset.sweep.values if preset.sweep else [None]):
        for seed in seeds or preset.seeds:
            for v in preset.variants:
                tree = merge(preset.base, v.set)
                if value is not None:
                    tree = merge(tree, dotted(preset.sweep.key, value))
                tree = merge(tree, {"seed": seed, "data": {"seed": seed}, "device": device})
                if v.tokenizer != "grid":
                    tree = merge(tree, {"tokenizers": {"image": str(vq_folder)}})
                if v.tokenizer == "patch+vq":
                    tree = merge(tree, {"tokenizers": {"und_image": "patch"}})
                if v.init_from is not None:
                    tree = merge(tree, {"init_from": str(out / "runs" / _run_id(preset, v.init_from, value, seed))})
                rid = _run_id(preset, v.name, value, seed)
                runs.append(Run(rid, v, seed, value, load_tree(tree, overrides, f"preset {preset.name} ({rid})")))
    return runs


def _paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diff, p = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    return {"diff": diff.to_dict(), "p_value": p}


def _scores(evals: dict[str, dict[str, dict[str, float]]], runs: list[Run], tasks: tuple[str, ...] | list[str]
            ) -> dict[str, float]:
    """Item scores of several runs (seeds) and tasks, keyed seed/task/item so pairs line up across variants."""
    out = {}
    for r in runs:
        for t in tasks:
            for item, s in evals.get(r.id, {}).get(t, {}).items():
                out[f"s{r.seed}/{item}"] = s
    return out


def comparisons(preset: Preset, runs: list[Run], evals: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Per group: synergy of each unified variant against each specialist, and each other unified variant against
    the first (e.g. UniFork vs shared), pooled over tasks of a kind and per task."""
    tasks = preset.tasks
    out: dict[str, Any] = {}
    for group in sorted({r.group for r in runs}):
        g = [r for r in runs if r.group == group]
        by_variant = {v.name: [r for r in g if r.variant.name == v.name] for v in preset.variants}
        unified = [v for v in preset.variants if v.role == "unified"]
        res: dict[str, Any] = {"synergy": {}, "architecture": {}}
        for u in unified:
            syn: dict[str, Any] = {}
            for spec_v in [v for v in preset.variants if v.role != "unified"]:
                kind_tasks = [t for t in tasks if t in (UND_TASKS if spec_v.role == "und" else GEN_TASKS)]
                key = "understanding" if spec_v.role == "und" else "generation"
                pooled = _paired(_scores(evals, by_variant[spec_v.name], kind_tasks),
                                 _scores(evals, by_variant[u.name], kind_tasks))
                per_task = {t: _paired(_scores(evals, by_variant[spec_v.name], [t]), _scores(evals, by_variant[u.name], [t]))
                            for t in kind_tasks}
                syn[key] = {"vs": spec_v.name, "pooled": pooled, "tasks": per_task}
            res["synergy"][u.name] = syn
        for u in unified[1:]:
            first = unified[0]
            res["architecture"][f"{u.name} - {first.name}"] = {
                kind: _paired(_scores(evals, by_variant[first.name], kt), _scores(evals, by_variant[u.name], kt))
                for kind, kt in (("understanding", [t for t in tasks if t in UND_TASKS]),
                                 ("generation", [t for t in tasks if t in GEN_TASKS]))
            }
        out[group] = res
    return out


def environment(device: str) -> dict[str, Any]:
    return {
        "unifylab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": device,
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
    }


def _train_steps(run: Run) -> int:
    return Plan(run.cfg).stream()[1] if run.cfg.data.budget == "equal-task-data" or run.cfg.data.mode == "unified" \
        else run.cfg.optim.steps


def run_study(preset: Preset, out: Path, seeds: list[int] | None = None, device: str = "cpu",
              overrides: list[str] = (), console: Console | None = None) -> dict[str, Any]:
    """Train, evaluate and compare; returns (and writes) results.json's content."""
    from unifylab.eval.native import NativeModel
    from unifylab.train.loop import Trainer

    console = console or Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vq_folder = out / "tokenizers" / "vq" if any(v.tokenizer != "grid" for v in preset.variants) else None
    if vq_folder is not None and not (vq_folder / "model.safetensors").is_file():
        from unifylab.config import build
        from unifylab.tokenize.train_vq import VQTrainConfig, save_trained, train_vq

        console.print("training the vq image tokenizer")
        vcfg = build(VQTrainConfig, preset.vq, f"preset {preset.name}: vq")
        tok, metrics = train_vq(vcfg, device)
        save_trained(tok, vcfg, metrics, vq_folder)
    runs = plan_runs(preset, out, seeds, device, list(overrides), vq_folder)
    specs = [load_task(t) for t in preset.tasks]
    n_items = sum(min(s.n, preset.limit or s.n) for s in specs)
    total = sum(_train_steps(r) for r in runs) + n_items * len(runs)
    evals: dict[str, dict[str, dict[str, float]]] = {}
    summaries: dict[str, Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"study {preset.name}", total=total)
        done = 0
        for r in runs:
            run_dir = out / "runs" / r.id
            steps = _train_steps(r)
            if not (run_dir / "summary.json").is_file():
                bar.update(task, description=f"training {r.id}")
                base = done
                Trainer(r.cfg, run_dir, console, progress=False,
                        on_step=lambda k, n, b=base: bar.update(task, completed=b + k)).fit()
            done += steps
            bar.update(task, completed=done, description=f"evaluating {r.id}")
            model = NativeModel(run_dir, device)
            evals[r.id], summaries[r.id] = {}, {}
            for spec in specs:
                recs = run_task(model, spec, out / "eval" / r.id, preset.limit,
                                progress=lambda k: bar.advance(task, k))
                evals[r.id][spec.name] = {rec["id"]: rec["score"] for rec in recs}
                summaries[r.id][spec.name] = summarise(spec, recs)
            done += n_items
            bar.update(task, completed=done)
    results = {
        "preset": preset.model_dump(mode="json"),
        "runs": {r.id: {"variant": r.variant.name, "role": r.variant.role, "seed": r.seed, "sweep": r.sweep,
                        "train": json.loads((out / "runs" / r.id / "summary.json").read_text()),
                        "eval": summaries[r.id]} for r in runs},
        "comparisons": comparisons(preset, runs, evals),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "environment": environment(device),
        "overrides": list(overrides),
    }
    (out / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    return results
