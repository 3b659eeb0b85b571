"""Attention masks (and in-segment offsets) for the row layouts a forward pass meets: left-padded rows, a
continuation from a KV cache at `start`, and packed rows holding several sequences (`segments`)."""

from __future__ import annotations

import torch


def causal_mask(attention_mask: torch.Tensor | None, n: int, start: int, device: torch.device) -> torch.Tensor | None:
    """Boolean [B, 1, n, start + n] mask, or None when plain causal attention (or a single query) suffices."""
    if attention_mask is None and (start == 0 or n == 1):
        return None
    total = start + n
    causal = torch.ones(n, total, dtype=torch.bool, device=device).tril(start)
    if attention_mask is None:
        return causal[None, None]
    keys = attention_mask[:, :total].bool()
    mask = causal[None] & keys[:, None, :]
    q = torch.arange(n, device=device)
    mask[:, q, start + q] = True  # a padding query attends to itself, so no row is empty (NaN-free)
    return mask[:, None]


def block_causal(segments: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, L, L]: causal attention that never crosses a segment boundary."""
    n = segments.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=segments.device).tril()
    return (causal & (segments[:, :, None] == segments[:, None, :]))[:, None]


def segment_index(segments: torch.Tensor) -> torch.Tensor:
    """Each token's offset within its segment (a run of equal ids along the row)."""
    n = segments.shape[1]
    ar = torch.arange(n, device=segments.device).expand_as(segments)
    new = torch.ones_like(segments, dtype=torch.bool)
    new[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return ar - torch.where(new, ar, torch.zeros_like(ar)).cummax(1).values
