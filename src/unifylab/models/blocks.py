"""Transformer building blocks: RMSNorm, rotary positions (1-D, or 3-section M-RoPE for 2-D image grids),
SDPA attention with an incremental KV cache, SwiGLU MLP, and modality routing for mixture-of-transformers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6  # every RMS norm's epsilon (the blocks' norms and QK-norm)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Rotary(nn.Module):
    """Rotary embeddings from position ids [B, L, 3] = (sequence, row, column) components.

    `mode="1d"` rotates every frequency by the sequence component. `mode="2d"` assigns the frequencies to the three
    components in turn (interleaved M-RoPE): text tokens carry (i, i, i), which is plain 1-D RoPE, and image tokens
    carry (i0, i0 + row, i0 + col) with i0 the image's first position.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, mode: str = "1d") -> None:
        super().__init__()
        if head_dim % 8:
            raise ValueError(f"head_dim must be a multiple of 8 for rotary embeddings, got {head_dim}")
        half = head_dim // 2
        self.register_buffer("inv_freq", theta ** (-torch.arange(half, dtype=torch.float32) / half), persistent=False)
        # 2d: frequencies interleaved sequence, row, column, sequence, ... so each component spans high to low
        # frequencies (contiguous sections would leave rows and columns only the slowest ones, which rotate a
        # few cells' offset by almost nothing)
        section = torch.arange(half) % 3 if mode == "2d" else torch.zeros(half, dtype=torch.long)
        self.register_buffer("section", section, persistent=False)

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, 1, L, head_dim // 2] for position ids [B, L, 3]."""
        p = pos.float().gather(-1, self.section.expand(*pos.shape[:-1], -1))  # [B, L, half]
        angles = p * self.inv_freq
        return angles.cos()[:, None], angles.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :h], x[..., h:]) of a [..., B, H, L, D] tensor by cos, sin [B, 1, L, D // 2]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class KVCache:
    """Preallocated keys/values for one attention module: [B, H, max_len, D]; `rows` selects a sub-batch."""

    def __init__(
        self, batch: int, heads: int, max_len: int, head_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.k = torch.zeros(batch, heads, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)

    def update(
        self, k: torch.Tensor, v: torch.Tensor, start: int, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.shape[2]
        if rows is None:
            self.k[:, :, start:end] = k
            self.v[:, :, start:end] = v
            return self.k[:, :, :end], self.v[:, :, :end]
        self.k[rows, :, start:end] = k
        self.v[rows, :, start:end] = v
        return self.k[rows, :, :end], self.v[rows, :, :end]


class Routed(nn.Module):
    """One module per modality (mixture-of-transformers); with one expert it is the module itself, no routing."""

    def __init__(self, make: Callable[[], nn.Module], experts: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(make() for _ in range(experts))

    def forward(self, x: torch.Tensor, modality: torch.Tensor | None) -> torch.Tensor:
        if len(self.experts) == 1:
            return self.experts[0](x)
        if modality is None:
            raise ValueError("a modality-routed block needs modality ids")
        flat, mod = x.reshape(-1, x.shape[-1]), modality.reshape(-1)
        outs = [e(flat[mod == i]) for i, e in enumerate(self.experts)]
        out = flat.new_empty(flat.shape[0], outs[0].shape[-1])
        for i, o in enumerate(outs):
            out[mod == i] = o
        return out.reshape(*x.shape[:-1], out.shape[-1])


class Attention(nn.Module):
    """Causal self-attention via SDPA; QKV and output projections may be modality experts."""

    def __init__(self, dim: int, heads: int, experts: int = 1, *, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = Routed(lambda: nn.Linear(dim, 3 * dim, bias=False), experts)
        self.out = Routed(lambda: nn.Linear(dim, dim, bias=False), experts)
        # QK-norm's learned gains, queries' then keys' (1-D: AdamW without weight decay, never Muon's matrices)
        self.qk_gain = nn.Parameter(torch.ones(2 * self.head_dim)) if qk_norm else None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        modality: torch.Tensor | None,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        start: int = 0,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x, modality).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        qk = qkv[:2]
        if self.qk_gain is not None:  # one norm over queries and keys together (half the ops of two RMSNorms)
            qk = F.rms_norm(qk, (self.head_dim,), eps=EPS) * self.qk_gain.view(2, 1, 1, 1, self.head_dim)
        (q, k), v = apply_rotary(qk, *rope), qkv[2]  # queries and keys rotated in one pass
        if cache is not None:
            k, v = cache.update(k, v, start, rows)
        if mask is None:  # the caller passes a mask unless plain causal (prefill from 0) or one query suffices
            y = F.scaled_dot_product_attention(q, k, v, is_causal=n > 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim), modality)


class Block(nn.Module):
    """Pre-norm transformer block; `experts=2` gives modality-specific norms, projections and MLP (MoT)."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, experts: int = 1, *, qk_norm: bool = False) -> None:
        super().__init__()
        self.norm1 = Routed(lambda: RMSNorm(dim), experts)
        self.attn = Attention(dim, heads, experts, qk_norm=qk_norm)
        self.norm2 = Routed(lambda: RMSNorm(dim), experts)
        self.mlp = Routed(lambda: SwiGLU(dim, mlp_hidden), experts)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        modality: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, modality), rope, modality, mask, cache, start, rows)
        return x + self.mlp(self.norm2(x, modality), modality)
