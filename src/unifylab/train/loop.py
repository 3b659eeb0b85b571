"""The training loop: build tokenizers and model from a TrainConfig, train on the task mixture, log, checkpoint,
resume exactly, and save the final model HF-style into the run folder."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from unifylab.config import first_diff
from unifylab.data.forms import MODE_TASKS, TASKS, TRANSFER_TASKS
from unifylab.errors import UserError
from unifylab.layout import RunFolder
from unifylab.models.hub import from_pretrained, load_tokenizers, save_pretrained
from unifylab.models.unified import UnifiedTransformer
from unifylab.progress import progress
from unifylab.runtime import cpp_compiler, host, resolve_device, single_thread_blas
from unifylab.tokenize.sequence import IGNORE, Packer
from unifylab.train import checkpoint as C
from unifylab.train import distributed as D
from unifylab.train.build import build_model, build_tokenizers, freeze_groups, param_group
from unifylab.train.config import TrainConfig, dump_config, resolve_paths
from unifylab.train.data import Batches, SceneSource
from unifylab.train.optimizer import build_optimizer, lr_lambda
from unifylab.train.resume import check_run_dir


class LossModule(nn.Module):
    """Wraps the model so DDP/FSDP2 see the whole loss computation (heads included) as one forward."""

    def __init__(self, model: UnifiedTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def eval_splits(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(split, task) of a run's periodic evaluation: every task of its mode on the `val` and `heldout` splits (fact
    and move tasks only when trained, and only from `val`: their examples hold no held-out pair)."""
    tasks = [t for t in MODE_TASKS[cfg.data.mode] if t not in TRANSFER_TASKS or cfg.data.mixture.get(t, 0) > 0]
    return [
        (split, task) for split in ("val", "heldout") for task in tasks if split == "val" or task not in TRANSFER_TASKS
    ]


def eval_sets(cfg: TrainConfig, batches: Batches, n: int) -> dict[str, dict[str, torch.Tensor]]:
    """`n` fixed examples per `eval_splits` entry, as unpacked batches."""
    return {
        f"{split}/{task}": batches.collate(batches.samples(split, np.arange(n), np.full(n, TASKS.index(task))))
        for split, task in eval_splits(cfg)
    }


def compile_blocks(model: UnifiedTransformer, device: torch.device) -> None:
    """torch.compile each transformer block on its own, for any sequence length (regional compilation: the whole
    loss would graph-break on its boolean selections); on the CPU inductor writes C++, so a compiler must exist."""
    cxx = cpp_compiler()
    if device.type == "cpu" and shutil.which(cxx) is None:
        raise UserError(
            f"compile: true on the CPU needs a C++ compiler for torch.compile's kernels, and {cxx!r} was not found; "
            "install one (or point $CXX at it), or set compile=false"
        )
    for block in model.attention_layers():
        block.compile(dynamic=True)


def parameter_table(counts: dict[str, int], title: str) -> Table:
    table = Table(title=title)
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for k, v in counts.items():
        table.add_row(k, f"{v:,}")
    return table


class Trainer:
    """One run: `fit()` trains from scratch or resumes, and returns a summary."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: Path,
        console: Console | None = None,
        progress: bool = True,
        on_step: Callable[[int, int], None] | None = None,
        root: Path | None = None,
    ) -> None:
        single_thread_blas()
        # the config as given (saved in the run folder: its fingerprint), and with its relative folder paths read
        # against `root` (a study folder) for loading
        self.given, self.cfg, self.run = cfg, resolve_paths(cfg, root), Path(run)
        cfg = self.cfg
        self.folder = RunFolder(self.run)
        self.on_step = on_step  # called with (steps done, steps planned), e.g. by the study's overall progress
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.device = resolve_device(cfg.device, 0)
        self.dist = D.init(cfg.distributed, str(self.device))
        if self.dist.enabled:
            self.device = resolve_device(cfg.device, self.dist.local_rank)
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
        if self.dist.main:
            check_run_dir(self.folder, self.given)
        D.barrier(self.dist)
        if cfg.init_from is not None:
            self.text, self.und, self.gen = load_tokenizers(cfg.init_from)
            if self.gen.discrete == (cfg.model.image_output == "flow"):
                drawn = "image tokens" if self.gen.discrete else "images by flow matching"
                raise UserError(
                    f"init_from {cfg.init_from}: that model draws {drawn}, but model.image_output is "
                    f"{cfg.model.image_output!r}; start from a checkpoint of the same output kind"
                )
        else:
            self.text, self.und, self.gen = build_tokenizers(cfg)
        self.packer = Packer(self.text, self.und, self.gen, loss_on=cfg.data.loss_on)
        self.model = build_model(cfg, self.text, self.und, self.gen)
        if cfg.init_from is not None:
            init = from_pretrained(cfg.init_from)
            if init.cfg != self.model.cfg:
                diff = first_diff(init.cfg.model_dump(), self.model.cfg.model_dump())
                raise UserError(f"init_from {cfg.init_from}: its architecture differs from this config ({diff})")
            own = self.model.state_dict()
            taken = {k: v for k, v in init.state_dict().items() if param_group(k) in cfg.init_parts}
            self.model.load_state_dict({**own, **taken})
        freeze_groups(self.model, cfg.freeze)
        self.model.to(self.device)
        self.batches = Batches(cfg, self.packer, SceneSource(cfg))
        lengths = self.batches.lengths if cfg.data.budget == "equal-compute" and cfg.data.mode != "unified" else None
        self.stream, self.steps = self.batches.plan.stream(lengths)
        self._check_max_len()
        if cfg.compile:
            compile_blocks(self.model, self.device)
        self.parallel = D.wrap(LossModule(self.model), cfg.distributed, self.dist, self.device)
        self.opt = build_optimizer(self.model, cfg, self.device)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg, self.steps))
        self.eval_sets = self._eval_sets()
        self.tb = self._tensorboard()

    # ------------------------------------------------------------------------------------------ setup helpers

    def _check_max_len(self, n: int = 512) -> None:
        """Refuse, before anything is written, a model.max_len shorter than the data's sequences (measured on the
        stream's first `n` examples), instead of failing deep inside the first step."""
        idx = self.stream[self.stream >= 0][:n]
        if not idx.size:  # nothing to train on (optim.steps 0): the first examples the plan would give
            idx = np.arange(n)
        longest = max(len(p) for p in self.batches.pack(self.batches.samples("train", idx, self.batches.task_of(idx))))
        if longest > self.model.cfg.max_len:
            raise UserError(
                f"model.max_len {self.model.cfg.max_len} is shorter than this data's sequences (up to "
                f"{longest} tokens in the first {len(idx)} examples); set model.max_len >= "
                f"{longest + longest // 4}"
            )

    def _eval_sets(self) -> dict[str, dict[str, torch.Tensor]]:
        """Fixed per-task batches of the `val` (reserved scenes of trained compositions) and `heldout` (unseen
        pairs) splits, each trained only on its task's own target (the answer, or the image), whatever `loss_on`
        trains, so eval losses and exact scores compare across recipes."""
        return eval_sets(
            self.cfg,
            Batches(self.cfg, Packer(self.text, self.und, self.gen), self.batches.source),
            self.cfg.eval.examples,
        )

    def _tensorboard(self) -> Any:
        if not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run / "tensorboard"))

    def _warn(self, msg: str) -> None:
        if self.dist.main:
            self.console.print(f"[yellow]warning:[/] {msg}")

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # ------------------------------------------------------------------------------------------ state

    def _meta(self, step: int, tokens: int) -> dict[str, Any]:
        return {
            "tokens_seen": tokens,
            "steps": self.steps,
            "mode": self.cfg.data.mode,
            "budget": self.cfg.data.budget,
            "world_size": self.dist.world,
        }

    def _diverged(self, what: str, step: int) -> None:
        ckpts = C.list_checkpoints(self.run)
        lower = f"--set optim.lr={self.cfg.optim.lr / 10:g}"
        how = (
            (
                f"the last good checkpoint {ckpts[-1]} is intact: re-run the same command with {lower} to resume from "
                "it at a lower learning rate (optim.lr is the one setting a resume may change)"
            )
            if ckpts
            else f"no checkpoint had been written yet: train again into a new --out with {lower}"
        )
        raise UserError(f"{what} at step {step}; training stopped; {how}, or check the data")

    def _save(self, step: int, tokens: int) -> None:
        weights = {k.removeprefix("model."): v for k, v in D.model_state(self.parallel, self.dist).items()}
        if not all(bool(torch.isfinite(v).all()) for v in weights.values()):
            self._diverged("loss became non-finite in the weights", step)
        opt_state = D.optimizer_state(self.parallel, self.opt, self.dist)
        if self.dist.main:
            state = {"optimizer": opt_state, "scheduler": self.sched.state_dict(), "rng": C.rng_state()}
            C.save_checkpoint(self.run, step, weights, state, self._meta(step, tokens), self.cfg.checkpoint.keep)
        D.barrier(self.dist)

    def _resume(self) -> tuple[int, int]:
        found = C.latest_checkpoint(self.run, self._warn)
        if found is None:
            return 0, 0
        path, (weights, state, meta) = found
        prefixed = {f"model.{k}": v for k, v in weights.items()}
        D.load_states(self.parallel, self.opt, prefixed, state["optimizer"], self.dist)
        self.sched.load_state_dict(state["scheduler"])
        if self.sched.base_lrs[0] != self.cfg.optim.lr:  # resumed with a new optim.lr (see resume._lr_only)
            self.sched.base_lrs = [self.cfg.optim.lr] * len(self.sched.base_lrs)
            for group, fn in zip(self.opt.param_groups, self.sched.lr_lambdas):
                group["initial_lr"] = self.cfg.optim.lr
                group["lr"] = self.cfg.optim.lr * fn(self.sched.last_epoch)
            self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]
        C.set_rng_state(state["rng"])
        step = int(meta["step"])
        if self.dist.main:
            self.console.print(f"resuming from {path} (step {step} of {self.steps})")
            self.folder.start_metrics(step)
        return step, int(meta["tokens_seen"])

    # ------------------------------------------------------------------------------------------ loop

    def _micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        b, accum = self.cfg.optim.batch, self.cfg.optim.accum
        idx = self.stream[step * b : (step + 1) * b]
        at = np.arange(step * b, step * b + len(idx))[idx >= 0]  # each example's place in the stream
        idx = idx[idx >= 0]  # equal-steps: the unified step's examples of other tasks are skipped
        mb = math.ceil(len(idx) / accum)
        out = []
        for m in range(accum):
            part = idx[m * mb : (m + 1) * mb][self.dist.rank :: self.dist.world]
            if len(part) == 0:
                continue
            items = self.batches.samples("train", part, self.batches.task_of(part))
            batch = self.batches.collate(items, pack=self.cfg.data.pack)
            # a flow image's time and noise are drawn from its place in the stream: the same on any number of ranks
            batch["noise_seed"] = torch.as_tensor(at[m * mb : (m + 1) * mb][self.dist.rank :: self.dist.world])
            out.append(batch)
        return out

    def _step(self, step: int) -> dict[str, Any]:
        micro = [self._to_device(b) for b in self._micro_batches(step)]
        count = torch.tensor(float(sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)), device=self.device)
        n_tokens = torch.tensor(float(sum(int(b["attention_mask"].sum()) for b in micro)), device=self.device)
        D.all_reduce_sum(count, self.dist)
        D.all_reduce_sum(n_tokens, self.dist)
        if float(count) == 0:  # equal-steps: the unified step held no example of this run's tasks
            lr = self.sched.get_last_lr()[0]
            self.sched.step()
            return {"loss": None, "lr": lr, "grad_norm": 0.0, "tokens": 0, "skipped": True}
        task_sum = torch.zeros(len(TASKS), device=self.device)
        task_cnt = torch.zeros(len(TASKS), device=self.device)
        total = torch.zeros((), device=self.device)
        cuda = self.device.type == "cuda"
        for k, batch in enumerate(micro):
            sync = k == len(micro) - 1 or not hasattr(self.parallel, "no_sync")
            ctx = self.parallel.no_sync() if not sync else nullcontext()
            with ctx:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    out = self.parallel(batch)
                loss = out.sum * self.dist.world / count
                loss.backward()
            total += out.sum.detach()
            task_sum.index_add_(0, batch["task"], out.seq_sum)
            task_cnt.index_add_(0, batch["task"], out.seq_count)
        if not micro:  # a rank with no examples this step still joins the gradient all-reduce
            (sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0).backward()
        for t in (total, task_sum, task_cnt):
            D.all_reduce_sum(t, self.dist)
        value = float(total / count)
        if not math.isfinite(value):
            self._diverged(f"loss became {value}", step + 1)
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.cfg.optim.clip)
        )
        if not math.isfinite(grad_norm):
            self._diverged(f"loss became {grad_norm} in its gradient", step + 1)
        lr = self.sched.get_last_lr()[0]
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        per_task = {f"loss/{TASKS[i]}": float(task_sum[i] / task_cnt[i]) for i in range(len(TASKS)) if task_cnt[i] > 0}
        return {"loss": value, **per_task, "lr": lr, "grad_norm": grad_norm, "tokens": int(n_tokens)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Per split/task on the fixed eval batches: mean token loss (`val/t2i`) and greedy-exact accuracy
        (`exact/val/t2i`: every target token is the greedy choice given the gold prefix). A flow image's loss is
        taken at the same times and noise at every evaluation (seeded by the example's index)."""
        self.parallel.eval()
        out = {}
        cuda = self.device.type == "cuda"
        for name, batch in self.eval_sets.items():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                r = self.parallel(self._to_device(batch))
            out[name] = float(r.sum / r.count)
            if not bool(r.seq_exact.isnan().all()):  # a flow image has no greedy choice: sample it with eval
                out[f"exact/{name}"] = float(r.seq_exact.nanmean())
        self.parallel.train()
        return out

    def fit(self) -> dict[str, Any]:
        """Train to the planned number of steps (resuming if the run has checkpoints); returns the summary. The run
        folder is locked meanwhile: a second trainer into it is refused."""
        with self.folder.lock() if self.dist.main else nullcontext():
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        start, tokens = self._resume()
        if self.dist.main:
            self.run.mkdir(parents=True, exist_ok=True)
            self.folder.write_config(dump_config(self.given))
            if start == 0:
                self.folder.start_metrics(0)
                self.console.print(
                    parameter_table(
                        self.model.parameter_counts(), f"{self.cfg.model.backbone} model, {self.cfg.data.mode} run"
                    )
                )
        self.parallel.train()
        t_start, tok_start = time.perf_counter(), tokens
        last = start
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with progress(self.console, columns=columns, enabled=self.dist.main and self.show_progress) as bar:
            task = bar.add_task("training", total=self.steps, completed=start, loss="", rate="")
            for step in range(start, self.steps):
                rec = self._step(step)
                tokens += rec["tokens"]
                elapsed = time.perf_counter() - t_start
                rec.update(step=step + 1, tokens_seen=tokens, tokens_per_s=round((tokens - tok_start) / elapsed, 1))
                if (step + 1) % self.cfg.eval.every == 0 or step + 1 == self.steps:
                    rec["eval"] = self.evaluate()
                self._log(rec)
                last = step + 1
                if last % self.cfg.checkpoint.every == 0 or last == self.steps:
                    self._save(last, tokens)
                if self.on_step is not None:
                    self.on_step(last, self.steps)
                loss = "skipped" if rec["loss"] is None else f"loss {rec['loss']:.3f}"
                bar.update(task, completed=last, rate=f"{rec['tokens_per_s']:,.0f} tok/s", loss=loss)
        summary = {
            "steps": self.steps,
            "tokens_seen": tokens,
            "mode": self.cfg.data.mode,
            "budget": self.cfg.data.budget,
            "final": self.evaluate(),
            "parameters": self.model.parameter_counts(),
            "world_size": self.dist.world,
            "host": host(),
        }
        weights = {k.removeprefix("model."): v for k, v in D.model_state(self.parallel, self.dist).items()}
        if self.dist.main:
            save_pretrained(self.model, self.run, self.text, self.gen, self.und, state=weights)
            self.folder.write_summary(summary)
        if self.tb is not None:
            self.tb.close()
        D.barrier(self.dist)
        return summary

    def _log(self, rec: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        line = {
            "step": rec["step"],
            **{k: v for k, v in rec.items() if k != "step"},
            "mode": self.cfg.data.mode,
            "budget": self.cfg.data.budget,
        }
        self.folder.append_metrics(line)
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, rec["step"])
            for k, v in rec.get("eval", {}).items():
                self.tb.add_scalar(f"eval/{k}", v, rec["step"])
