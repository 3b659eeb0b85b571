"""Batched, KV-cached sampling from a UnifiedTransformer: text answers, image tokens, and (flow output) images
integrated from noise, both image kinds with classifier-free guidance.

Prefixes are packed sequences without their target (`Packer.pack(example, with_target=False)`); they are
left-padded into one batch so every row continues at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unifylab.errors import UserError
from unifylab.models.blocks import KVCache
from unifylab.models.flow import SOLVERS
from unifylab.models.flow import velocity as velocity_of
from unifylab.models.unified import GEN, UND, UnifiedTransformer
from unifylab.tokenize.sequence import IMAGE, TEXT, Packed
from unifylab.tokenize.text import SPECIAL_TOKENS

EOS = SPECIAL_TOKENS.index("<eos>")
PAD, BOI = SPECIAL_TOKENS.index("<pad>"), SPECIAL_TOKENS.index("<boi>")


@dataclass(frozen=True)
class Sampling:
    """temperature 0 = greedy; top_k 0 and top_p 1 disable those filters."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid sampling settings {self}: need temperature >= 0, top_k >= 0, 0 < top_p <= 1")


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply, 'lowbias32') applied elementwise to int64 values below 2**32."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def row_uniforms(seeds: torch.Tensor, step: int, width: int) -> torch.Tensor:
    """Uniforms in (0, 1) [B, width], a pure function of (row seed, step, column): each row's draws depend on its
    own seed only, never on which other rows share its batch (so an item's sample survives resume and --limit)."""
    cols = torch.arange(width, device=seeds.device, dtype=torch.int64)
    key = _mix32(_mix32((seeds.to(torch.int64) & _MASK32)[:, None] ^ (step * 0x9E3779B9 & _MASK32)) ^ cols)
    return (_mix32(key).to(torch.float64) + 0.5) / 2.0**32


def sample(logits: torch.Tensor, s: Sampling, seeds: torch.Tensor, step: int) -> torch.Tensor:
    """One token per row of logits [B, V] (entries set to -inf are never drawn): Gumbel-max over the filtered,
    tempered logits with row `i`'s noise from (seeds[i], step), an exact draw from their softmax."""
    if s.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / s.temperature
    if s.top_k:
        kth = logits.topk(min(s.top_k, logits.shape[-1]), -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > s.top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    gumbel = -torch.log(-torch.log(row_uniforms(seeds.to(logits.device), step, logits.shape[-1])))
    return (logits.double() + gumbel).argmax(-1)


def _row_seeds(seeds: Sequence[int] | None, n: int) -> torch.Tensor:
    if seeds is None:
        return torch.arange(n)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} prefixes; give one seed per prefix")
    return torch.tensor(list(seeds), dtype=torch.int64)


class _Decoder:
    """Holds a left-padded batch and its cache; `step` appends one token per row and returns next-token logits."""

    def __init__(
        self, model: UnifiedTransformer, prefixes: Sequence[Packed], new_tokens: int, use_cache: bool, branch: int
    ) -> None:
        self.model, self.use_cache = model, use_cache
        dev = next(model.parameters()).device
        b, lp = len(prefixes), max(len(p) for p in prefixes)
        total = lp + new_tokens
        if total > model.cfg.max_len:
            raise UserError(
                f"a prompt of {lp} tokens and {new_tokens} new tokens exceed the model's max_len {model.cfg.max_len}; "
                "evaluate a model trained with a larger model.max_len (or a task asking for shorter replies)"
            )
        self.ids = torch.zeros(b, total, dtype=torch.long, device=dev)
        self.mod = torch.full((b, total), TEXT, dtype=torch.long, device=dev)
        self.pos2d = torch.full((b, total, 2), -1, dtype=torch.long, device=dev)
        self.cont = torch.zeros(b, lp, dtype=torch.bool, device=dev)
        self.attn = torch.ones(b, total, dtype=torch.bool, device=dev)
        for i, p in enumerate(prefixes):
            k = len(p)
            self.ids[i, lp - k : lp], self.mod[i, lp - k : lp] = p.input_ids, p.modality
            self.pos2d[i, lp - k : lp], self.cont[i, lp - k :] = p.pos2d, p.cont
            self.attn[i, : lp - k] = False
        self.features = torch.cat([p.features for p in prefixes]).to(dev) if self.cont.any() else None
        self.pos = torch.zeros(b, total, 3, dtype=torch.long, device=dev)
        self.pos[:, :lp] = model.positions(self.mod[:, :lp], self.pos2d[:, :lp], self.attn[:, :lp])
        self.branch = torch.full((b,), branch, dtype=torch.long, device=dev)
        self.n = lp
        self.cache: list[KVCache] | None = model.new_cache(b, total) if use_cache else None
        self.fresh = lp  # tokens not yet seen by the model

    def logits(self) -> torch.Tensor:
        """Next-token logits [B, V] after feeding the tokens the model has not seen."""
        n, m = self.n, self.model
        if self.use_cache:
            a = n - self.fresh
            h = m(
                self.ids[:, a:n],
                modality=self.mod[:, a:n],
                pos2d=self.pos2d[:, a:n],
                cont=self.cont[:, a:n] if a == 0 else None,
                features=self.features if a == 0 else None,
                attention_mask=self.attn[:, :n],
                branch=self.branch,
                positions=self.pos[:, a:n],
                cache=self.cache,
                start=a,
            )
        else:
            lp = self.cont.shape[1]
            cont = torch.cat([self.cont, self.cont.new_zeros(self.cont.shape[0], n - lp)], 1)
            h = m(
                self.ids[:, :n],
                modality=self.mod[:, :n],
                pos2d=self.pos2d[:, :n],
                cont=cont,
                features=self.features,
                attention_mask=self.attn[:, :n],
                branch=self.branch,
                positions=self.pos[:, :n],
            )
        self.fresh = 0
        return m.logits(h[:, -1])

    def append(
        self, token: torch.Tensor, modality: int, pos: torch.Tensor, cell: tuple[int, int] | None = None
    ) -> None:
        """Feed one token per row at rotary position `pos` [B, 3]; an image token also gets its (row, col) `cell`."""
        self.ids[:, self.n], self.mod[:, self.n], self.pos[:, self.n] = token, modality, pos
        if cell is not None:
            self.pos2d[:, self.n] = torch.tensor(cell, device=self.pos2d.device)
        self.n += 1
        self.fresh = 1

    def next_text_pos(self) -> torch.Tensor:
        return (self.pos[:, self.n - 1, 0] + 1)[:, None].expand(-1, 3)


@torch.no_grad()
def generate_text(
    model: UnifiedTransformer,
    prefixes: Sequence[Packed],
    *,
    max_new_tokens: int = 16,
    sampling: Sampling = Sampling(temperature=0.0),
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Continue each prefix with text ids until <eos> (not returned) or `max_new_tokens`; row i samples with its
    own `seeds[i]` (default: its index)."""
    if not prefixes:
        return []
    dec = _Decoder(model, prefixes, max_new_tokens, use_cache, UND)
    row_seeds = _row_seeds(seeds, len(prefixes))
    n_text = model.cfg.n_text
    done = torch.zeros(len(prefixes), dtype=torch.bool, device=dec.ids.device)
    out: list[list[int]] = [[] for _ in prefixes]
    for k in range(max_new_tokens):
        logits = dec.logits()
        logits[:, n_text:] = float("-inf")
        tok = sample(logits, sampling, row_seeds, k)
        for i in (~done).nonzero()[:, 0].tolist():
            if int(tok[i]) != EOS:
                out[i].append(int(tok[i]))
        done |= tok == EOS
        if bool(done.all()):
            break
        dec.append(tok, TEXT, dec.next_text_pos())
    return out


@torch.no_grad()
def generate_images(
    model: UnifiedTransformer,
    prefixes: Sequence[Packed],
    *,
    uncond: Packed | None = None,
    guidance: float = 1.0,
    sampling: Sampling = Sampling(),
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Image codes [B, T] (0-based in the image vocabulary) continuing prefixes that end with <boi>; row i samples
    with its own `seeds[i]` (default: its index), so its image does not depend on the rest of the batch.

    With `guidance` != 1 and an unconditional prefix (e.g. the packed empty prompt), logits are
    uncond + guidance * (cond - uncond), computed in one doubled batch.
    """
    if model.cfg.image_output != "tokens":
        raise ValueError("this model draws images by flow matching; sample with generate_flow")
    if not prefixes:
        return torch.zeros(0, model.cfg.image_tokens, dtype=torch.long)
    cfg_on = _check_image_prefixes(prefixes, uncond, guidance)
    b = len(prefixes)
    batch = list(prefixes) + ([uncond] * b if cfg_on else [])
    t, (_, w) = model.cfg.image_tokens, model.cfg.image_grid
    dec = _Decoder(model, batch, t, use_cache, GEN)
    row_seeds = _row_seeds(seeds, b)
    n_text = model.cfg.n_text
    i0 = dec.pos[:, dec.n - 1, 0] + 1  # the image's first position
    codes = torch.zeros(b, t, dtype=torch.long, device=dec.ids.device)
    for k in range(t):
        logits = dec.logits().float()
        if cfg_on:
            cond, unc = logits[:b], logits[b:]
            logits = unc + guidance * (cond - unc)
        logits[:, :n_text] = float("-inf")
        tok = sample(logits, sampling, row_seeds, k)
        codes[:, k] = tok - n_text
        if k + 1 < t:
            full = tok.repeat(2) if cfg_on else tok
            if model.cfg.rope == "2d":
                pos = torch.stack([i0, i0 + k // w, i0 + k % w], -1)
            else:
                pos = (i0 + k)[:, None].expand(-1, 3)
            dec.append(full, IMAGE, pos, (k // w, k % w))
    return codes.cpu()


def _check_image_prefixes(prefixes: Sequence[Packed], uncond: Packed | None, guidance: float) -> bool:
    """Whether guidance is on, after checking that every prefix ends with <boi> and guidance has its prefix."""
    if any(int(p.input_ids[-1]) != BOI for p in prefixes):
        raise ValueError("image prefixes must end with <boi> (pack a gen example with with_target=False)")
    if guidance != 1.0 and uncond is None:
        raise ValueError("classifier-free guidance needs the unconditional prefix")
    return guidance != 1.0


def row_normals(seeds: torch.Tensor, width: int) -> torch.Tensor:
    """Standard normals [B, width], a pure function of each row's seed (Box-Muller on `row_uniforms`), so an item's
    starting noise does not depend on its batch."""
    u1, u2 = row_uniforms(seeds, 0, width), row_uniforms(seeds, 1, width)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).float()


@torch.no_grad()
def generate_flow(
    model: UnifiedTransformer,
    prefixes: Sequence[Packed],
    *,
    uncond: Packed | None = None,
    guidance: float = 1.0,
    steps: int | None = None,
    solver: str | None = None,
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continuous image patches [B, T, D] in [-1, 1] continuing prefixes that end with <boi>: dx/dt = v integrated
    from row i's own seeded noise (`seeds[i]`, default its index) at t = 0 to t = 1 in `steps` steps of `solver`
    (default: the model's). With `guidance` != 1 and the unconditional prefix, v = uncond + guidance * (cond -
    uncond), in one doubled batch; the prefix's keys and values are computed once (`use_cache`)."""
    cfg = model.cfg
    if cfg.image_output != "flow":
        raise ValueError("this model draws image tokens; sample with generate_images")
    default_steps, default_solver = cfg.flow_sampler
    steps = default_steps if steps is None else steps
    solver = solver or default_solver
    if steps < 1 or solver not in SOLVERS:
        raise ValueError(f"flow sampling needs steps >= 1 and a solver in {SOLVERS}, got {steps}, {solver!r}")
    t_len, d = cfg.image_tokens, int(cfg.flow_dim or 0)
    if not prefixes:
        return torch.zeros(0, t_len, d)
    cfg_on = _check_image_prefixes(prefixes, uncond, guidance)
    b = len(prefixes)
    dec = _Decoder(model, list(prefixes) + ([uncond] * b if cfg_on else []), t_len, use_cache, GEN)
    rows, lp, dev = dec.ids.shape[0], dec.n, dec.ids.device
    k, w = torch.arange(t_len, device=dev), cfg.image_grid[1]
    i0 = dec.pos[:, lp - 1, 0][:, None] + 1  # the image's first position
    if cfg.rope == "2d":
        pos = torch.stack([i0.expand(-1, t_len), i0 + k // w, i0 + k % w], -1)
    else:
        pos = (i0 + k)[..., None].expand(-1, -1, 3)
    cells = torch.stack([k // w, k % w], -1).expand(rows, -1, -1)
    slots = torch.ones(rows, t_len, dtype=torch.bool, device=dev)
    ids = torch.full((rows, t_len), PAD, dtype=torch.long, device=dev)  # unused ids: the slots read features
    image = torch.full_like(ids, IMAGE)
    attention = torch.cat([dec.attn[:, :lp], slots], 1)
    if use_cache:
        dec.logits()  # prefill

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        xs = (x.repeat(2, 1, 1) if cfg_on else x).reshape(-1, d)
        times = torch.full((rows * t_len,), t, device=dev)
        if use_cache:
            h = model(
                ids,
                modality=image,
                pos2d=cells,
                cont=slots,
                features=xs,
                flow=slots,
                flow_t=times,
                attention_mask=attention,
                branch=dec.branch,
                positions=pos,
                cache=dec.cache,
                start=lp,
            )
        else:
            h = model(
                torch.cat([dec.ids[:, :lp], ids], 1),
                modality=torch.cat([dec.mod[:, :lp], image], 1),
                pos2d=torch.cat([dec.pos2d[:, :lp], cells], 1),
                cont=torch.cat([dec.cont, slots], 1),
                features=_prefix_then_image(dec.features, xs, dec.cont, t_len),
                flow=torch.cat([torch.zeros_like(dec.cont), slots], 1),
                flow_t=times,
                attention_mask=attention,
                branch=dec.branch,
                positions=torch.cat([dec.pos[:, :lp], pos], 1),
            )[:, lp:]
        v = velocity_of(model.flow_out(h).float(), xs.reshape(rows, t_len, d).float(), torch.tensor(t), cfg.predicts)
        return v[b:] + guidance * (v[:b] - v[b:]) if cfg_on else v

    x = row_normals(_row_seeds(seeds, b).to(dev), t_len * d).reshape(b, t_len, d)
    dt = 1.0 / steps
    for i in range(steps):
        v = velocity(x, i * dt)
        if solver == "heun":  # the trapezoid rule: the slope at the Euler end point averaged in
            v = 0.5 * (v + velocity(x + dt * v, (i + 1) * dt))
        x = x + dt * v
    return x.clamp(-1, 1).cpu()


def _prefix_then_image(
    prefix: torch.Tensor | None, image: torch.Tensor, cont: torch.Tensor, t_len: int
) -> torch.Tensor:
    """Feature rows in the row-major order of a [prefix | image] batch: each row's prefix features, then its slots."""
    counts = cont.sum(1).tolist()
    parts = prefix.split(counts) if prefix is not None else [image[:0]] * len(counts)
    return torch.cat([x for r, p in enumerate(parts) for x in (p, image[r * t_len : (r + 1) * t_len])])
