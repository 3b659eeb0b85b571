"""Train the FSQ image tokenizer on world renders and measure it on held-out renders (PSNR, usage, parse-exact)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.errors import UserError
from unifylab.io import write_text_atomic
from unifylab.tokenize.image import ImageTokenizer
from unifylab.tokenize.vq import VQConfig, VQTokenizer, psnr, reconstruct, reconstruction_loss, to_unit
from unifylab.world import CLASSES, DEFAULT, WorldConfig, world_of

METRICS = "metrics.json"


class VQTrainConfig(BaseModel):
    """How the tokenizer is trained: the world it sees, data sizes, optimisation. Defaults are the quick settings."""

    model_config = ConfigDict(extra="forbid")

    model: VQConfig = VQConfig()
    world: WorldConfig = Field(default_factory=lambda: CLASSES[DEFAULT].varied_config())
    n_train: int = Field(20000, ge=1, description="training renders")
    n_val: int = Field(1000, ge=1, description="held-out renders for metrics.json")
    steps: int = Field(1600, ge=1)
    batch: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _sizes_match(self) -> VQTrainConfig:
        if self.world.size != self.model.size:
            raise ValueError(f"world.size {self.world.size} differs from model.size {self.model.size}; set both alike")
        return self


def render_set(world: WorldConfig, n: int, seed: int) -> tuple[list, np.ndarray]:
    """`n` scenes of a world from `seed` and their clean renders uint8 [n, H, W, 3]."""
    w, rng = world_of(world), np.random.default_rng(seed)
    scenes = [w.sample(rng) for _ in range(n)]
    return scenes, np.stack([w.render(s) for s in scenes])


def evaluate(tok: VQTokenizer, scenes: list, images: np.ndarray, world: WorldConfig) -> dict[str, Any]:
    """Held-out quality: PSNR, codebook usage and the share of reconstructions parsed as the identical scene."""
    recon, codes = reconstruct(tok, images)
    parsed = world_of(world).parse(recon)
    used = int(torch.unique(codes).numel())
    return {
        "psnr_db": round(psnr(recon, images), 3),
        "codebook_size": tok.vocab_size,
        "codes_used": used,
        "codebook_usage": round(used / tok.vocab_size, 4),
        "parse_exact": round(float(np.mean([p == s for p, s in zip(parsed, scenes)])), 4),
        "n_val": len(scenes),
    }


def train_vq(
    cfg: VQTrainConfig,
    device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> tuple[VQTokenizer, dict[str, Any]]:
    """Train on renders of `cfg.world` (seed `cfg.seed`), evaluate on a disjoint seed; returns tokenizer + metrics."""
    if cfg.n_train < cfg.batch:
        raise UserError(
            f"n_train ({cfg.n_train}) must be at least one batch ({cfg.batch}); the training set is too small"
        )
    t0 = time.perf_counter()
    _, train_images = render_set(cfg.world, cfg.n_train, cfg.seed)
    val_scenes, val_images = render_set(cfg.world, cfg.n_val, cfg.seed + 1_000_003)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        tok = VQTokenizer(cfg.model).to(device)
    model = tok.model.train()
    cuda = torch.device(device).type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=cuda or None)
    warm = max(1, cfg.steps // 20)  # 5 % linear warmup, then cosine to zero

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(train_images)
    loss_value = math.nan
    for step in range(cfg.steps):
        idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
        x = to_unit(data[idx].numpy(), device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            y, _ = model(x)
        loss = reconstruction_loss(y.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise UserError(f"training diverged at step {step} (loss {loss_value}); lower lr (now {cfg.lr})")
        if progress is not None:
            progress(step + 1, loss_value)
    model.eval()
    train_s = time.perf_counter() - t0
    metrics = evaluate(tok, val_scenes, val_images, cfg.world)
    metrics.update(
        {
            "final_loss": round(loss_value, 5),
            "steps": cfg.steps,
            "train_seconds": round(train_s, 1),
            "device": device,
            "torch_threads": torch.get_num_threads(),
        }
    )
    return tok, metrics


def save_trained(tok: VQTokenizer, cfg: VQTrainConfig, metrics: dict[str, Any], folder: Path) -> None:
    """Write train.json (how), metrics.json (how well), then config.json + model.safetensors (the tokenizer), each
    atomically: the weights, written last, mark a whole folder."""
    write_text_atomic(Path(folder) / "train.json", json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    write_text_atomic(Path(folder) / METRICS, json.dumps(metrics, indent=2) + "\n")
    tok.save_pretrained(folder)


def oracle_metrics(tok: ImageTokenizer, world: WorldConfig, n_val: int, seed: int) -> dict[str, Any]:
    """Round-trip quality of an untrained tokenizer (grid, attributes, patch) on held-out renders, for its
    metrics.json."""
    scenes, images = render_set(world, n_val, seed + 1_000_003)
    recon = tok.decode(tok.encode(images))
    value = psnr(recon, images)
    parsed = world_of(world).parse(recon)
    return {
        "psnr_db": None if math.isinf(value) else round(value, 3),
        "identical_images": float(np.mean(np.all(recon == images, axis=(1, 2, 3)))),
        "parse_exact": round(float(np.mean([p == s for p, s in zip(parsed, scenes)])), 4),
        "n_val": n_val,
    }
