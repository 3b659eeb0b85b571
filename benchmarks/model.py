"""Model speed: forward+backward tokens/s of each backbone against a plain GPT of the same width and depth
written here as the reference (same math: RMSNorm, RoPE, SDPA, SwiGLU), in the same run; and batch-1 image
decoding tokens/s with the KV cache against recomputing the whole prefix every step.

Prints one JSON line per figure. On CUDA it runs in bf16 autocast, optionally compiled (--compile), and reports MFU.
Run: python benchmarks/model.py [--dim 256 --layers 4 --heads 4 --batch 8 --seq 128] [--compile]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from unifylab.models import ModelConfig, Sampling, UnifiedTransformer, generate_images
from unifylab.tokenize.sequence import TEXT, Packed

N_TEXT, N_IMAGE = 448, 1000
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(dim, eps=1e-6), nn.RMSNorm(dim, eps=1e-6)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.w13, self.w2 = nn.Linear(dim, 2 * hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        g, u = self.w13(self.n2(x)).chunk(2, -1)
        return x + self.w2(F.silu(g) * u)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, -1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).type_as(x)


class RefGPT(nn.Module):
    """The plain reference: embeddings, blocks, norm, head, next-token loss."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(RefBlock(dim, heads, hidden) for _ in range(layers))
        self.norm, self.head = nn.RMSNorm(dim, eps=1e-6), nn.Linear(dim, vocab, bias=False)
        half = dim // heads // 2
        self.register_buffer("inv", 10000.0 ** (-torch.arange(half) / half), persistent=False)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        ang = torch.arange(ids.shape[1], device=ids.device)[:, None].float() * self.inv
        cos, sin = ang.cos(), ang.sin()
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.head(self.norm(x))[:, :-1]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def timed(step: Callable[[], None], device: torch.device, min_seconds: float = 3.0) -> float:
    """Seconds per call of `step`, after warm-up, averaged over at least `min_seconds`."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        el = time.perf_counter() - t0
        if el >= min_seconds and n >= 3:
            return el / n


def train_step(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], device: torch.device
) -> Callable[[], None]:
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda" or None)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    ids = torch.randint(0, N_TEXT + N_IMAGE, (args.batch, args.seq), device=device)
    ids[:, 0], ids[:, 1] = 1, 6  # <bos> <gen>: a task tag, so the fork backbone can route each sequence
    ids[::2, 1] = 5  # half the batch is understanding (<und>): fork pays for routing rows to both branches
    mod = (ids >= N_TEXT).long()
    batch = {"input_ids": ids, "labels": ids, "modality": mod}
    tokens = args.batch * args.seq
    base = dict(
        n_text=N_TEXT,
        n_image=N_IMAGE,
        image_grid=(8, 8),
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        max_len=max(args.seq, 128),
    )
    env = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{os.cpu_count()}",
        "dtype": "bf16-autocast" if device.type == "cuda" else "fp32",
        "compile": args.compile,
        "batch": args.batch,
        "seq": args.seq,
        "dim": args.dim,
        "layers": args.layers,
    }

    ref = RefGPT(N_TEXT + N_IMAGE, args.dim, args.layers, args.heads, ModelConfig(**base).hidden).to(device)
    ref_loss = torch.compile(ref.loss) if args.compile else ref.loss
    ref_s = timed(train_step(lambda: ref_loss(ids), list(ref.parameters()), device), device, args.seconds)
    n_params = sum(p.numel() for p in ref.parameters())
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in env["device"]), None)

    def mfu(seconds: float, params: int) -> float | None:
        if peak is None:
            return None
        attn = 12 * args.layers * args.dim * args.seq  # per token, fwd+bwd attention scores
        return round((6 * params + attn) * tokens / seconds / (peak * 1e12), 4)

    print(
        json.dumps(
            {
                "figure": "train_tokens_per_s",
                "model": "reference_gpt",
                "tokens_per_s": round(tokens / ref_s),
                "params": n_params,
                "mfu": mfu(ref_s, n_params),
                **env,
            }
        )
    )
    for name, extra in (
        ("shared", {}),
        ("fork", {"backbone": "fork", "fork_layer": args.layers // 2}),
        ("mot", {"backbone": "mot"}),
    ):
        torch.manual_seed(0)
        model = UnifiedTransformer(ModelConfig(**base, **extra)).to(device)
        loss_fn = torch.compile(model.loss) if args.compile else model.loss
        s = timed(train_step(lambda f=loss_fn: f(batch).loss, list(model.parameters()), device), device, args.seconds)
        params = model.parameter_counts()["total"]
        print(
            json.dumps(
                {
                    "figure": "train_tokens_per_s",
                    "model": name,
                    "tokens_per_s": round(tokens / s),
                    "ratio_vs_reference": round(ref_s / s, 3),
                    "params": params,
                    "mfu": mfu(s, params),
                    **env,
                }
            )
        )

    torch.manual_seed(0)
    model = UnifiedTransformer(ModelConfig(**base)).to(device).eval()
    prompt = torch.tensor([1, 6, *range(20, 36), 3])
    prefix = Packed(
        prompt,
        prompt,
        torch.full_like(prompt, TEXT),
        torch.full((len(prompt), 2), -1),
        torch.zeros(len(prompt), dtype=torch.bool),
        torch.zeros(0, 0),
    )
    rates = {}
    for cached in (True, False):
        s = timed(
            lambda cached=cached: generate_images(model, [prefix], sampling=Sampling(1.0, top_k=50), use_cache=cached),
            device,
            args.seconds,
        )
        rates[cached] = model.cfg.image_tokens / s
    print(
        json.dumps(
            {
                "figure": "image_decode_tokens_per_s",
                "batch": 1,
                "image_tokens": model.cfg.image_tokens,
                "with_cache": round(rates[True], 1),
                "without_cache": round(rates[False], 1),
                "speedup": round(rates[True] / rates[False], 2),
                **{k: env[k] for k in ("device", "dim", "layers")},
            }
        )
    )
    if not math.isfinite(ref_s):
        raise SystemExit("reference timing failed")


if __name__ == "__main__":
    main()
