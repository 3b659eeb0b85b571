"""What the machine gives a training step: the Trainer's default (eager, fp32, AdamW with foreach kernels on the
CPU) against fused AdamW, torch.compile (each transformer block) and bf16 autocast on the CPU (AMX where the chip
has it), or against a recipe's overrides (a variant `optim.name=muon+model.qk_norm=true`), same model, same
batches, same process, interleaved in rounds so a noisy machine slows every variant alike. Prints one JSON line
per variant: steps/s and the ratio to the first.

Run: python benchmarks/step.py [--preset claims-shapes --steps 40 --rounds 3 --threads 1
     --variants default,fused,compile,bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch

from unifylab.study.preset import load_preset, merge
from unifylab.train.config import load_tree
from unifylab.train.loop import Trainer


def trainer(variant: str, run: Path, *, preset: str = "claims-shapes") -> Trainer:
    """A preset's base model (the AdamW recipe's shared model by default) with one machine option changed, or
    with a recipe's config overrides (a variant `key=value[+key=value...]`, e.g. `optim.name=muon`)."""
    tree = merge(load_preset(preset).base, {"compile": variant == "compile", "device": "cpu"})
    overrides = variant.split("+") if "=" in variant else []
    t = Trainer(load_tree(tree, overrides, "benchmark"), run, progress=False)
    if variant == "fused":  # the same groups and schedule, AdamW's fused CPU kernel
        groups = [{k: v for k, v in g.items() if k not in ("initial_lr",)} for g in t.opt.param_groups]
        t.opt = torch.optim.AdamW(groups, fused=True)
        t.sched = torch.optim.lr_scheduler.LambdaLR(t.opt, t.sched.lr_lambdas[0])
    return t


def precision(variant: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU for the `bf16` variant (the Trainer autocasts on CUDA only); fp32 otherwise."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="claims-shapes", help="study preset whose base model is timed")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a study trains one thread per run)")
    ap.add_argument("--variants", default="default,fused,compile,bf16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {v: trainer(v, Path(tmp) / f"run{i}", preset=args.preset) for i, v in enumerate(names)}
        warm = {}
        for v, t in trainers.items():  # warm-up: compilation (cached afterwards) and first-step allocations
            start = time.perf_counter()
            with precision(v):
                for s in range(3):
                    t._step(s)
            warm[v] = time.perf_counter() - start
        seconds = dict.fromkeys(names, 0.0)
        step = 3
        for _ in range(args.rounds):
            for v, t in trainers.items():
                start = time.perf_counter()
                with precision(v):
                    for s in range(step, step + args.steps):
                        t._step(s)
                seconds[v] += time.perf_counter() - start
            step += args.steps
    n = args.steps * args.rounds
    for v in names:
        rate = n / seconds[v]
        base = n / seconds[names[0]]
        line = {"figure": "train_steps_per_s", "preset": args.preset, "variant": v, "steps_per_s": round(rate, 2)}
        line |= {"vs_" + names[0]: round(rate / base, 3), "warmup_s": round(warm[v], 1), "threads": args.threads}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
