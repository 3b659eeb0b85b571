"""Learning efficiency: each backbone of the lab and a plain reference GPT trained on identical batches (the
project's own Trainer stream: same examples, same order, same learning-rate schedule), scored by greedy-exact
accuracy on scenes never seen in training: `val` (reserved scenes of trained compositions) and `heldout`
(held-out (shape, colour) pairs).

Captions and rewrites (a named prompt rewritten to an explicit one) are greedy-decoded and scored by the objects
they state against the scene (their wording is sampled from templates, so no model can match it token for token).
Greedy-exact for the rest: an item is right when every target token is the argmax given the gold prefix, which is
exactly what greedy decoding reproduces (answer + <eos> for understanding, image tokens + <eoi> for t2i; each argmax
over its own modality's ids, as the samplers restrict them). The `flow` model (the shared backbone drawing pixel
patches by flow matching, reading images as the others do) has no greedy choice for an image: its t2i items are
drawn (its own sampler and steps, seeded per item, unguided) and right when the world's exact check passes on what
the parser reads back. Prints one JSON line per model and run; writes accuracy-vs-step curves (PNG) and the
per-evaluation records (jsonl) to --out.

Run: python benchmarks/learning.py [--preset claims-shapes --steps 1800 --seeds 0
     --models reference,shared,fork,mot,patch,flow]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unifylab.data.forms import TASKS
from unifylab.eval.generators import Item
from unifylab.eval.scorers import score_caption
from unifylab.models.generate import EOS, generate_flow, generate_text
from unifylab.models.unified import greedy_hits
from unifylab.study.preset import load_preset, merge
from unifylab.tokenize.sequence import IGNORE, Example, Packed, Packer
from unifylab.train.config import TrainConfig, load_tree
from unifylab.train.data import Batches
from unifylab.train.loop import Trainer, eval_splits
from unifylab.train.optimizer import lr_lambda
from unifylab.world.shapes.scene import Scene

CAPTION_TOKENS = 64  # longest caption a model may write (three objects take about 30)
QA_KINDS = (
    ("exist", r"^is there "),
    ("count", r"^how many "),
    ("color_of", r"^what colou?r "),
    ("shape_of", r"^what shape "),
    ("where", r"^where "),
    ("relation", r"^is the "),
)


class RefBlock(nn.Module):
    """A textbook GPT-2 block: LayerNorm with bias, causal SDPA attention, GELU MLP 4x."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    """The plain reference: token + learned absolute position embeddings, blocks, LayerNorm, head; PyTorch's
    default initialisation everywhere. With `patch_dim`, continuous image inputs (pixel patches) enter through one
    linear projection in place of their tokens, the textbook way (ViT, LLaVA)."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, max_len: int, patch_dim: int = 0) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.patch = nn.Linear(patch_dim, dim) if patch_dim else None
        self.blocks = nn.ModuleList(RefBlock(dim, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(
        self, ids: torch.Tensor, cont: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.tok(ids)
        if self.patch is not None and cont is not None and features is not None and features.numel():
            x = x.masked_scatter(cont[..., None], self.patch(features.to(x.dtype)))
        x = x + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


# Learning rate of the forked and mixture-of-transformers backbones relative to the shared one: their branches and
# experts each see a fraction of the tokens, and at the shared model's rate they settle lower (docs/architecture.md,
# "Model defaults and why"; the presets' unifork variants use it too).
SPLIT_LR = 0.5


def variants(layers: int, lr: float, *, reads: str, same_lr: bool = False) -> dict[str, dict[str, Any]]:
    """Config overrides per benchmarked model (the reference trains on the shared model's unpacked batches); fork
    and mot train at SPLIT_LR x `lr` unless `same_lr`; flow reads images with `reads` (the preset's understanding
    tokenizer) and draws pixel patches."""
    split = {"optim": {"lr": lr if same_lr else lr * SPLIT_LR}}
    return {
        "shared": {"model": {"backbone": "shared"}},
        "flow": {
            "model": {"backbone": "shared", "image_output": "flow"},
            "tokenizers": {"image": "patch", "und_image": reads},
        },
        "fork": {"model": {"backbone": "fork", "fork_layer": layers // 2}, **split},
        "mot": {"model": {"backbone": "mot"}, **split},
        "patch": {"model": {"backbone": "shared"}, "tokenizers": {"und_image": "patch"}},
        "reference": {"model": {"backbone": "shared"}, "data": {"pack": False}},
    }


def qa_kind(question: str) -> str:
    return next((k for k, pat in QA_KINDS if re.match(pat, question)), "other")


class Scorer:
    """Fixed eval sets per split and task (the Trainer's eval sets, `n` items each) and a model's accuracy on them:
    greedy-exact for vqa and t2i (overall and per question kind), and for captions and rewrites, whose wording is
    sampled from templates, the objects the greedy-decoded text states against the scene (the harness's caption
    scorer)."""

    def __init__(self, trainer: Trainer, n: int) -> None:
        batches = Batches(trainer.cfg, Packer(trainer.text, trainer.und, trainer.gen), trainer.batches.source)
        self.text, self.world = trainer.text, trainer.batches.source.world
        self.sets: dict[str, dict[str, torch.Tensor]] = {}
        self.kinds: dict[str, list[str]] = {}
        self.captions: dict[str, tuple[list[Packed], list[Scene]]] = {}
        self.drawings: dict[str, tuple[list[Packed], list[Scene]]] = {}  # flow output: drawn, then parsed
        for split, task in eval_splits(trainer.cfg):  # the items of the Trainer's `eval_sets`, built once
            name = f"{split}/{task}"
            items = batches.samples(split, np.arange(n), np.full(n, TASKS.index(task)))
            if task == "t2i" and batches.packer.flow:
                prefixes = [batches.packer.pack(Example("gen", it.text), with_target=False) for it in items]
                self.drawings[name] = (prefixes, [it.scene for it in items])
                continue
            if task == "caption":
                codes = Batches.image_tokens(trainer.und, items)
                prefixes = [
                    batches.packer.pack(Example("und", it.text, image=c), with_target=False)
                    for it, c in zip(items, codes)
                ]
                self.captions[name] = (prefixes, [it.scene for it in items])
                continue
            if task == "rewrite":
                prefixes = [batches.packer.pack(Example("rewrite", it.text), with_target=False) for it in items]
                self.captions[name] = (prefixes, [it.scene for it in items])
                continue
            self.sets[name] = batches.collate(items)
            if task == "vqa":
                self.kinds[name] = [qa_kind(it.text) for it in items]

    @torch.no_grad()
    def score(
        self,
        exact_of: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        caption_of: Callable[[list[Packed]], list[list[int]]],
        draw_of: Callable[[list[Packed]], np.ndarray] | None = None,
    ) -> dict[str, float]:
        """`exact_of(batch)`: 1/0 per row (every target the greedy choice); `caption_of(prefixes)`: greedy text ids;
        `draw_of(prefixes)`: uint8 images (flow output)."""
        out: dict[str, float] = {}
        for name, (prefixes, scenes) in self.drawings.items():
            assert draw_of is not None, "a flow model's drawings need draw_of"
            parsed = self.world.parse(draw_of(prefixes))
            out[name] = float(np.mean([self.world.check(got, want).ok for got, want in zip(parsed, scenes)]))
        for name, (prefixes, scenes) in self.captions.items():
            texts = [self.text.decode(ids) for ids in caption_of(prefixes)]
            right = [score_caption(Item(name, target=sc.to_dict()), [t], [])[0] for t, sc in zip(texts, scenes)]
            out[name] = float(np.mean(right))
        for name, batch in self.sets.items():
            right = exact_of(batch).float()
            if bool(right.isnan().all()):  # a flow model's other drawings (draw_named, move_draw): no greedy choice
                continue
            out[name] = float(right.mean())
            kinds = self.kinds.get(name, [])
            for kind in sorted(set(kinds)):
                out[f"{name}/{kind}"] = float(right[torch.tensor([k == kind for k in kinds])].float().mean())
        return out


def greedy_text(
    logits_of: Callable[..., torch.Tensor],
    prefixes: list[Packed],
    n_text: int,
    max_new: int = CAPTION_TOKENS,
) -> list[list[int]]:
    """Greedy text continuation for a model without a cache (the reference): prefixes of one length decode as a
    batch, each step recomputes the whole sequence (continuous image inputs stay in their slots); ids up to
    <eos>."""
    out: list[list[int]] = [[] for _ in prefixes]
    for length in sorted({len(p) for p in prefixes}):
        rows = [i for i, p in enumerate(prefixes) if len(p) == length]
        ids = torch.stack([prefixes[i].input_ids for i in rows])
        cont = torch.stack([prefixes[i].cont for i in rows])
        features = torch.cat([prefixes[i].features for i in rows])
        for _ in range(max_new):
            slots = torch.cat([cont, cont.new_zeros(cont.shape[0], ids.shape[1] - cont.shape[1])], 1)
            logits = logits_of(ids, slots, features)[:, -1]
            ids = torch.cat([ids, logits[:, :n_text].argmax(-1, keepdim=True)], 1)
            if bool((ids[:, length:] == EOS).any(1).all()):
                break
        for r, seq in zip(rows, ids[:, length:].tolist()):
            out[r] = seq[: seq.index(EOS)] if EOS in seq else seq
    return out


def curve(
    train_step: Callable[[int], int],
    scorer: Scorer,
    exact_of: Callable,
    caption_of: Callable,
    steps: int,
    every: int,
    draw_of: Callable | None = None,
) -> tuple[list[dict], float, int]:
    """Train `steps` steps (`train_step(step)` returns its real tokens), scoring every `every` steps; returns the
    accuracy curve, the training wall time (scoring excluded) and the real tokens trained on."""
    points, wall, tokens = [], 0.0, 0
    for step in range(steps):
        t = time.perf_counter()
        tokens += train_step(step)
        wall += time.perf_counter() - t
        if (step + 1) % every == 0 or step + 1 == steps:
            points.append({"step": step + 1, "wall_s": wall, **scorer.score(exact_of, caption_of, draw_of)})
    return points, wall, tokens


def evaluating(model: nn.Module, fn: Callable) -> Callable:
    """`fn` run with the model in eval mode (and back to training after)."""

    def wrapped(*args: Any) -> Any:
        model.eval()
        try:
            return fn(*args)
        finally:
            model.train()

    return wrapped


def run_lab(trainer: Trainer, scorer: Scorer, steps: int, every: int) -> tuple[list[dict], float, int]:
    model = trainer.model
    exact_of = evaluating(model, lambda b: model.loss(b).seq_exact)
    caption_of = evaluating(model, lambda prefixes: generate_text(model, prefixes, max_new_tokens=CAPTION_TOKENS))
    draw_of = evaluating(model, lambda prefixes: trainer.gen.decode(generate_flow(model, prefixes)))
    flow = model.cfg.image_output == "flow"
    return curve(
        lambda step: trainer._step(step)["tokens"],
        scorer,
        exact_of,
        caption_of,
        steps,
        every,
        draw_of if flow else None,
    )


REFERENCE_LR = 3e-3  # AdamW's rate on the shapes presets (docs/results/2026-12-06-learning.md)


def reference_lr(cfg: TrainConfig, given: float | None) -> float:
    """The reference's AdamW rate: `given`, else the config's own when it trains with AdamW, else REFERENCE_LR (the
    yardstick keeps its textbook recipe when the lab's models train with Muon at Muon's rate)."""
    if given is not None:
        return given
    return cfg.optim.lr if cfg.optim.name == "adamw" else REFERENCE_LR


def run_reference(
    trainer: Trainer, scorer: Scorer, steps: int, every: int, *, lr: float
) -> tuple[list[dict], float, int]:
    cfg, n_text = trainer.cfg, trainer.model.cfg.n_text
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        mc = trainer.model.cfg
        ref = RefGPT(
            mc.vocab_size, cfg.model.dim, cfg.model.layers, cfg.model.heads, cfg.model.max_len, mc.patch_dim or 0
        )
    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=0.0)
    cosine = cfg.optim.model_copy(update={"schedule": "cosine", "decay_fraction": None})  # its recipe, whatever --set
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.model_copy(update={"optim": cosine}), steps))

    def logits(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return ref(b["input_ids"], b.get("cont"), b.get("features"))

    def exact(b: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = b["labels"][:, 1:]
        hits = greedy_hits(logits(b)[:, :-1], targets.clamp(min=0), n_text)
        return (hits | (targets == IGNORE)).all(1)

    def train_step(step: int) -> int:
        micro = trainer._micro_batches(step)
        count = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        for b in micro:  # summed token losses over the step's global target count, as the Trainer does
            flat = logits(b)[:, :-1].flatten(0, 1)
            (
                F.cross_entropy(flat, b["labels"][:, 1:].flatten(), ignore_index=IGNORE, reduction="sum") / count
            ).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.optim.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        return sum(int(b["attention_mask"].sum()) for b in micro)

    caption_of = evaluating(ref, lambda prefixes: greedy_text(ref, prefixes, n_text))
    return curve(train_step, scorer, evaluating(ref, exact), caption_of, steps, every)


def tracked(point: dict[str, Any]) -> dict[str, float]:
    """The held-out accuracies a target covers: every `split/task` (not the per-question-kind breakdown)."""
    return {k: v for k, v in point.items() if k.count("/") == 1}


def load_targets(path: Path) -> dict[tuple[str, int | None], dict[str, float]]:
    """Per (model, seed) the final accuracies of a previous run's records.jsonl, and per (model, None) their mean
    over that run's seeds."""
    finals: dict[str, dict[int, dict[str, float]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            finals.setdefault(r["model"], {})[int(r["seed"])] = tracked(r["curve"][-1])
    out: dict[tuple[str, int | None], dict[str, float]] = {}
    for model, by_seed in finals.items():
        out.update({(model, seed): acc for seed, acc in by_seed.items()})
        keys = set.intersection(*(set(a) for a in by_seed.values()))
        out[(model, None)] = {k: float(np.mean([a[k] for a in by_seed.values()])) for k in sorted(keys)}
    return out


def steps_to_target(curve: list[dict], target: dict[str, float]) -> tuple[int | None, float | None]:
    """The first evaluated step (and its training wall seconds) at which every target accuracy is reached."""
    for p in curve:
        if all(p.get(k, -1.0) >= v for k, v in target.items()):
            return p["step"], round(p["wall_s"], 1)
    return None, None


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({k.split("/")[1] for r in records for k in r["curve"][0] if k.count("/") == 1})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    colours = {}
    for r in records:
        c = colours.setdefault(r["model"], f"C{len(colours)}")
        steps = [p["step"] for p in r["curve"]]
        for ax, task in zip(axes[0], tasks):
            for split, style in (("val", "-"), ("heldout", ":")):
                key = f"{split}/{task}"
                if key in r["curve"][0]:
                    label = f"{r['model']} {split}" if r["seed"] == records[0]["seed"] else None
                    ax.plot(steps, [p[key] for p in r["curve"]], style, color=c, label=label, alpha=0.85)
    for ax, task in zip(axes[0], tasks):
        ax.set_title(f"{task}: greedy-exact")
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--preset",
        default="claims-shapes",
        help="study preset whose base config is trained (default: the AdamW recipe the claims study and the documented "
        "tables use; quick: the main job's Muon recipe)",
    )
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every model")
    ap.add_argument("--models", default="reference,shared,fork,mot,patch")
    ap.add_argument(
        "--same-lr", action="store_true", help="fork and mot at the shared rate too (--set optim.lr sets every model's)"
    )
    ap.add_argument(
        "--reference-lr",
        type=float,
        default=None,
        help="the reference's AdamW rate (default: the preset's optim.lr when it trains with AdamW, "
        f"else {REFERENCE_LR})",
    )
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (model init and data stream)")
    ap.add_argument("--eval-n", type=int, default=256, help="items per split and task")
    ap.add_argument("--evals", type=int, default=6, help="evaluations along the run (the curve's points)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the study trains one thread per run)")
    ap.add_argument("--out", type=Path, default=Path("learning-out"), help="folder for curves.png and records")
    ap.add_argument(
        "--target",
        type=Path,
        default=None,
        help="records.jsonl of a baseline run: report, per model and seed, the first evaluated step at which every "
        "val and heldout accuracy reaches that run's final value (same seed, else its mean over seeds); use --evals "
        "for resolution",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_preset(args.preset).base
    steps = args.steps or int(base["optim"]["steps"])
    base_cfg = load_tree(base, args.overrides)
    reads = base_cfg.tokenizers.und_image or base_cfg.tokenizers.image
    table = variants(int(base_cfg.model.layers), float(base_cfg.optim.lr), reads=reads, same_lr=args.same_lr)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in table]
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from {', '.join(table)}")
    targets = load_targets(args.target) if args.target else {}
    args.out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        speeds: dict[str, float] = {}
        for name in names:
            tree = merge(merge(base, table[name]), {"seed": seed, "optim": {"steps": steps}, "data": {"seed": seed}})
            cfg = load_tree(tree, args.overrides, f"preset {args.preset}")
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(cfg, Path(tmp) / name, progress=False)
                scorer = Scorer(trainer, args.eval_n)
                run_steps = trainer.steps  # --set optim.steps=N may shorten the run
                every = max(1, math.ceil(run_steps / args.evals))
                lr = reference_lr(cfg, args.reference_lr) if name == "reference" else cfg.optim.lr
                if name == "reference":
                    curve, wall, tokens = run_reference(trainer, scorer, run_steps, every, lr=lr)
                    params = None
                else:
                    curve, wall, tokens = run_lab(trainer, scorer, run_steps, every)
                    params = trainer.model.parameter_counts()["total"]
            speeds[name] = tokens / wall
            final = {k: round(v, 4) for k, v in curve[-1].items() if k not in ("step", "wall_s")}
            rec = {
                "figure": "learning",
                "model": name,
                "seed": seed,
                "steps": run_steps,
                "batch": cfg.optim.batch,
                "optim": "adamw" if name == "reference" else cfg.optim.name,
                "schedule": "cosine" if name == "reference" else cfg.optim.schedule,
                "lr": lr,
                "steps_per_s": round(run_steps / wall, 2),
                "threads": torch.get_num_threads(),
                "wall_s": round(wall, 1),
                "real_tokens_per_s": round(speeds[name]),
                "parameters": params,
                **final,
            }
            if "reference" in speeds and name != "reference":
                rec["tokens_per_s_vs_reference"] = round(speeds[name] / speeds["reference"], 3)
            if args.target:
                target = targets.get((name, seed)) or targets.get((name, None))
                reached, reached_s = steps_to_target(curve, target) if target else (None, None)
                rec.update(
                    steps_to_target=reached,
                    wall_s_to_target=reached_s,
                    target_seed=(seed if (name, seed) in targets else "mean") if target else None,
                )
            print(json.dumps(rec), flush=True)
            if args.target:
                keys = ("model", "seed", "optim", "schedule", "lr", "steps", "steps_to_target", "wall_s_to_target")
                print(json.dumps({"figure": "steps_to_target", **{k: rec[k] for k in keys}}), flush=True)
            records.append({**rec, "curve": curve})
            with open(args.out / "records.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({**rec, "curve": curve}) + "\n")
            plot(records, args.out / "curves.png")


if __name__ == "__main__":
    main()
