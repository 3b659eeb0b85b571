"""A run's optimiser and learning-rate schedule: AdamW, or Muon for the blocks' matrices combined with AdamW for the
rest into one optimiser, under linear warmup then cosine or warmup-stable-decay."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from unifylab.errors import UserError
from unifylab.models.blocks import Block
from unifylab.train.config import TrainConfig
from unifylab.train.muon import Muon

WSD_DECAY = 0.2  # optim.decay_fraction's default: the share of a wsd run's steps spent decaying


def lr_lambda(cfg: TrainConfig, steps: int) -> Callable[[int], float]:
    """Linear warmup, then (schedule cosine) cosine from 1 to `min_lr_ratio` over the run's steps, or (wsd) 1 until
    the last `decay_fraction` of the steps, then linear down to `min_lr_ratio`."""
    warm, floor = min(cfg.optim.warmup, max(steps - 1, 0)), cfg.optim.min_lr_ratio
    wsd = cfg.optim.schedule == "wsd"
    decay = round((cfg.optim.decay_fraction or WSD_DECAY) * steps)
    start = max(warm, steps - max(1, decay))  # the first decaying step (warmup first when they overlap)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if wsd:
            return 1.0 if step < start else floor + (1 - floor) * (1 - min(1.0, (step - start) / max(1, steps - start)))
        t = (step - warm) / max(1, steps - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


class Combined(torch.optim.Optimizer):
    """Optimisers over disjoint parameters acting as one: `param_groups` is the union of theirs (the very dicts, so
    a scheduler sets every group's lr) and `state` is one dict shared by all, so torch's own `state_dict` and
    `load_state_dict` (and the distributed state-dict helpers, and LambdaLR) see one ordinary optimiser; `step`
    steps each part."""

    def __init__(self, *parts: torch.optim.Optimizer) -> None:
        self.parts = list(parts)
        super().__init__([g for o in self.parts for g in o.param_groups], {})
        self._bind()

    def _bind(self) -> None:
        """Point every part at its slice of the union's groups and at the shared state (a part's __setstate__ also
        fills defaults and converts state as its own load_state_dict would)."""
        i = 0
        for o in self.parts:
            n = len(o.param_groups)
            o.__setstate__({"state": self.state, "param_groups": self.param_groups[i : i + n]})
            i += n

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.parts:
            o.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # new group dicts and state: re-point the parts at them
        self._bind()


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """optim.name adamw: AdamW, weight decay on matrices and embeddings only; muon: Muon (torch.optim.Muon's update,
    batched per shape; nesterov, momentum 0.95, lr scaled to AdamW's update RMS) for the 2-D weights of the
    transformer blocks and that AdamW for the rest, combined into one optimiser."""
    o = cfg.optim
    trainable = [p for p in model.parameters() if p.requires_grad]
    matrices: set[int] = set()
    if o.name == "muon":
        if cfg.distributed == "fsdp2":
            raise UserError(
                "optim.name muon orthogonalises whole weight matrices, which distributed fsdp2 shards across ranks; "
                "use muon with distributed ddp (or none), or fsdp2 with optim.name=adamw"
            )
        blocks = [m for m in model.modules() if isinstance(m, Block)]
        matrices = {id(p) for m in blocks for p in m.parameters() if p.requires_grad and p.ndim == 2}
    rest = [p for p in trainable if id(p) not in matrices]
    decay = [p for p in rest if p.ndim >= 2]
    no_decay = [p for p in rest if p.ndim < 2]
    adamw = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr,
        betas=o.betas,
        fused=device.type == "cuda" or None,
    )
    if not matrices:
        return adamw
    muon = Muon(
        [p for p in trainable if id(p) in matrices],
        lr=o.lr,
        weight_decay=o.weight_decay,
        momentum=0.95,
        nesterov=True,
        adjust_lr_fn="match_rms_adamw",
    )
    return Combined(muon, adamw)
