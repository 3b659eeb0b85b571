"""Muon (orthogonalised momentum) with torch.optim.Muon's update, group options and state, computed for all matrices
of one shape at once: fewer, larger products in the optimiser's step (a study on 2 CPU cores runs no faster; see
docs/results/2026-12-06-recipe.md), and no need for torch >= 2.9."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Keller Jordan's Muon, as torch.optim.Muon uses
NS_STEPS = 5
EPS = 1e-7
ADJUST_LR = ("original", "match_rms_adamw")


def orthogonalise(
    g: torch.Tensor,
    *,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = NS_STEPS,
    eps: float = EPS,
) -> torch.Tensor:
    """Newton-Schulz approximate orthogonalisation of a stack of matrices (n, A, B) in bf16, each as
    torch.optim.Muon treats one matrix (the same products, so the same numbers)."""
    a, b, c = coefficients
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: float, how: str | None, shape: torch.Size) -> float:
    """The rate for a matrix of `shape`: original sqrt(max(1, A/B)), or match_rms_adamw 0.2 sqrt(max(A, B))."""
    rows, cols = shape[:2]
    if how in (None, "original"):
        return lr * math.sqrt(max(1, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalised by Newton-Schulz, decoupled weight decay: torch.optim.Muon's algorithm and
    state layout (`momentum_buffer`), so checkpoints interchange, with one batched orthogonalisation per shape."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"Muon needs lr, momentum and weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ADJUST_LR:
            raise ValueError(f"Muon adjust_lr_fn must be one of {ADJUST_LR} or None, got {adjust_lr_fn!r}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got one of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
            mu, lr, wd = group["momentum"], float(group["lr"]), group["weight_decay"]
            torch._foreach_lerp_(bufs, grads, 1 - mu)
            updates = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs
            torch._foreach_mul_(params, 1 - lr * wd)
            by_shape: dict[torch.Size, list[int]] = {}
            for i, p in enumerate(params):
                by_shape.setdefault(p.shape, []).append(i)
            for shape, idx in by_shape.items():
                ortho = orthogonalise(
                    torch.stack([updates[i] for i in idx]),
                    coefficients=group["ns_coefficients"],
                    steps=group["ns_steps"],
                    eps=group["eps"],
                )
                torch._foreach_add_(
                    [params[i] for i in idx],
                    list(ortho.unbind(0)),
                    alpha=-adjusted_lr(lr, group["adjust_lr_fn"], shape),
                )
        return loss
