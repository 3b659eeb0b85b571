"""The unified transformer: one decoder over text and image tokens, with the backbone as a config switch.

- `shared`: one stack for every task (Chameleon / Emu3 style).
- `fork`: layers below `fork_layer` shared, the rest (and the final norm) duplicated into an understanding branch
  (und, rewrite) and a generation branch (gen, edit), chosen per sequence by its task tag (UniFork's Y shape).
  `fork_layer = layers` is the shared model; `fork_layer = 0` gives two specialists that share only embeddings
  and heads.
- `mot`: every layer has text and image experts (norms, QKV/output projections, MLP) chosen per token by its
  modality id, with one global self-attention over both (mixture-of-transformers).

Image inputs are discrete ids in the shared vocabulary (`image_input="tokens"`) or continuous features projected
in place (`"patch"`, Janus-style decoupled understanding encoder). Output: one head over the whole vocabulary, or
separate text and image heads whose softmax covers only their own ids (`output_heads="split"`); images are drawn as
those ids (`image_output="tokens"`) or as continuous patches by flow matching inside the sequence (`"flow"`,
Transfusion-style: see `models.flow`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from unifylab.models.blocks import Block, KVCache, RMSNorm, Rotary
from unifylab.models.config import ModelConfig
from unifylab.models.flow import (
    WEIGHT,
    TimeEmbedding,
    flow_mask,
    grid_sincos,
    training_draws,
    velocity,
)
from unifylab.models.masks import block_causal, causal_mask, segment_index
from unifylab.tokenize.sequence import FLOW, IGNORE, IMAGE
from unifylab.tokenize.text import SPECIAL_TOKENS

UND, GEN = 0, 1  # branches
TASK_BRANCH = {"<und>": UND, "<rewrite>": UND, "<gen>": GEN, "<edit>": GEN}
RESIDUAL_OUT = tuple(f"{m}.experts.{e}{leaf}" for m, leaf in (("attn.out", ""), ("mlp", ".down")) for e in (0, 1))


class LossResult(NamedTuple):
    """What `UnifiedTransformer.loss` measures on a batch (a named tuple, so torch.compile passes it through)."""

    loss: torch.Tensor  # mean next-token cross-entropy over labelled positions
    sum: torch.Tensor  # its sum and count: exact averages across micro-batches and ranks
    count: torch.Tensor
    seq_sum: torch.Tensor  # per sequence (by `example` index when packed), detached
    seq_count: torch.Tensor
    seq_exact: torch.Tensor  # 1 when every target of the sequence is the greedy choice given the gold prefix
    text_loss: torch.Tensor  # mean over text targets (NaN without any)
    image_loss: torch.Tensor  # mean over image targets (NaN without any)


class UnifiedTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        experts = 2 if cfg.backbone == "mot" else 1
        n_trunk = cfg.trunk_layers

        def block() -> Block:
            return Block(cfg.dim, cfg.heads, cfg.hidden, experts, qk_norm=cfg.qk_norm)

        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.patch_proj = nn.Linear(cfg.patch_dim, cfg.dim) if cfg.image_input == "patch" else None
        self.row_embed = nn.Embedding(cfg.pos_cells, cfg.dim) if cfg.image_pos else None
        self.col_embed = nn.Embedding(cfg.pos_cells, cfg.dim) if cfg.image_pos else None
        self.trunk = nn.ModuleList(block() for _ in range(n_trunk))
        n_branch = cfg.layers - n_trunk
        self.branches = (
            nn.ModuleList(nn.ModuleList(block() for _ in range(n_branch)) for _ in (UND, GEN))
            if cfg.backbone == "fork"
            else None
        )
        self.norms = nn.ModuleList(RMSNorm(cfg.dim) for _ in range(2 if cfg.backbone == "fork" else 1))
        if cfg.output_heads == "shared":
            self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        else:
            self.text_head = nn.Linear(cfg.dim, cfg.n_text, bias=False)
            self.image_head = nn.Linear(cfg.dim, cfg.n_image, bias=False)
        flow = cfg.image_output == "flow"  # noised patches in, a velocity out, and the time they are at
        self.flow_in = nn.Linear(int(cfg.flow_dim or 0), cfg.dim) if flow else None
        self.time_embed = TimeEmbedding(cfg.dim) if flow else None
        self.flow_out = nn.Linear(cfg.dim, int(cfg.flow_dim or 0)) if flow else None
        if flow:
            self.register_buffer("flow_pos", grid_sincos(*cfg.image_grid, cfg.dim), persistent=False)
        self.rotary = Rotary(cfg.dim // cfg.heads, cfg.rope_theta, cfg.rope)
        tags = torch.full((cfg.n_text,), -1, dtype=torch.long)
        for tok, branch in TASK_BRANCH.items():
            tags[SPECIAL_TOKENS.index(tok)] = branch
        self.register_buffer("tag_branch", tags, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise for this width: embeddings N(0, 1) and every Linear N(0, 1/fan_in) (or `init_std` for all),
        zero biases; the projections that write into the residual stream are scaled by 1/sqrt(2 * layers) so the
        stream's variance does not grow with depth. Image position embeddings start at zero: they add only what
        training finds useful, instead of noise as large as the token identity; so does the velocity head (a first
        prediction of zero motion, as DiT's final layer)."""
        std = self.cfg.init_std
        for name, m in self.named_modules():
            if name in ("row_embed", "col_embed", "flow_out"):
                nn.init.zeros_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std or 1.0)
            elif isinstance(m, nn.Linear):
                scale = 1 / math.sqrt(2 * self.cfg.layers) if name.endswith(RESIDUAL_OUT) else 1.0
                nn.init.normal_(m.weight, std=scale * (std or m.in_features**-0.5))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------ bookkeeping

    def save_pretrained(self, folder: Path, **tokenizers: object) -> None:
        """config.json + model.safetensors (+ tokenizers: text=, gen_image=, und_image=); see `models.hub`."""
        from unifylab.models.hub import save_pretrained

        save_pretrained(self, folder, **tokenizers)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, folder: Path, device: str | torch.device = "cpu") -> UnifiedTransformer:
        from unifylab.models.hub import from_pretrained

        return from_pretrained(folder, device)

    def attention_layers(self) -> list[nn.Module]:
        """Every block, trunk first then the branches (the order caches are allocated in)."""
        blocks = list(self.trunk)
        if self.branches is not None:
            blocks += [b for branch in self.branches for b in branch]
        return blocks

    def new_cache(self, batch: int, max_len: int | None = None) -> list[KVCache]:
        """An empty KV cache for `batch` sequences of up to `max_len` tokens (one per block)."""
        p = next(self.parameters())
        n = max_len or self.cfg.max_len
        hd = self.cfg.dim // self.cfg.heads
        return [KVCache(batch, self.cfg.heads, n, hd, p.device, p.dtype) for _ in self.attention_layers()]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component: embeddings (token, patch and image position), trunk, branches, modality
        experts, heads, total."""

        def count(mods: list[nn.Module] | nn.Module | None) -> int:
            if mods is None:
                return 0
            mods = mods if isinstance(mods, list) else [mods]
            return sum(p.numel() for m in mods for p in m.parameters())

        heads = [self.head] if self.cfg.output_heads == "shared" else [self.text_head, self.image_head]
        heads += [self.flow_out] if self.flow_out is not None else []
        inputs = (self.embed, self.patch_proj, self.row_embed, self.col_embed, self.flow_in, self.time_embed)
        out = {
            "embeddings": count([m for m in inputs if m is not None]),
            "norms": count(list(self.norms)),
            "heads": count(heads),
        }
        if self.cfg.backbone == "mot":
            for i, name in enumerate(("text_experts", "image_experts")):
                out[name] = sum(
                    count(r.experts[i])
                    for blk in self.trunk
                    for r in (blk.norm1, blk.attn.qkv, blk.attn.out, blk.norm2, blk.mlp)
                )
        else:
            out["shared_layers"] = count(list(self.trunk))
        if self.branches is not None:
            out["und_branch"] = count(list(self.branches[UND]))
            out["gen_branch"] = count(list(self.branches[GEN]))
        out["total"] = sum(p.numel() for p in self.parameters())
        return out

    # ------------------------------------------------------------------------------------------ forward

    def positions(
        self,
        modality: torch.Tensor,
        pos2d: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        start: int = 0,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rotary position ids [B, L, 3]: text (i, i, i); with 2-D rope image tokens (i0, i0 + row, i0 + col).

        `i` counts real tokens (left padding does not advance it; packed `segments` restart it); `i0` is the image's
        first position.
        """
        b, n = modality.shape
        if segments is not None:
            idx = segment_index(segments)
        elif attention_mask is None:
            idx = torch.arange(start, start + n, device=modality.device).expand(b, n)
        else:
            idx = attention_mask.long().cumsum(1) - 1
            idx = idx[:, -n:] if idx.shape[1] != n else idx
        pos = idx[..., None].expand(b, n, 3).clone()
        if self.cfg.rope == "2d" and pos2d is not None:
            img = modality == IMAGE
            prev = torch.cat([torch.zeros_like(img[:, :1]), img[:, :-1]], 1)
            col = torch.arange(n, device=modality.device).expand(b, n)
            first = torch.where(img & ~prev, col, torch.zeros_like(col)).cummax(1).values  # column of the run's start
            run_start = idx - (col - first)
            pos[..., 1] = torch.where(img, run_start + pos2d[..., 0], idx)
            pos[..., 2] = torch.where(img, run_start + pos2d[..., 1], idx)
            pos[..., 0] = torch.where(img, run_start, idx)
        return pos

    def branch_of(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """UND or GEN per sequence, from the task tag right after the first real token (<bos>)."""
        first = (
            torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
            if attention_mask is None
            else attention_mask.long().argmax(1)
        )
        tag = input_ids.gather(1, (first + 1)[:, None])[:, 0]
        branch = self.tag_branch[tag.clamp(0, self.cfg.n_text - 1)]
        if bool((branch < 0).any()):
            raise ValueError("fork backbone: every sequence must start with <bos> and a task tag (<und>, <gen>, ...)")
        return branch

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        cont: torch.Tensor | None,
        features: torch.Tensor | None,
        pos2d: torch.Tensor | None = None,
        flow: torch.Tensor | None = None,
        flow_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings, continuous features projected in place (a flow slot's through the flow input with its
        time's embedding, `flow_t` one per flow slot, default 1 = a clean image), plus each image token's (row, col)
        embedding (`pos2d` [B, L, 2], -1 on text)."""
        x = self.embed(input_ids)
        if cont is not None and features is not None and features.numel():
            if int(cont.sum()) != features.shape[0]:
                raise ValueError(
                    f"{int(cont.sum())} continuous slots in the inputs but {features.shape[0]} feature rows"
                )
            is_flow = flow[cont] if flow is not None else torch.zeros(features.shape[0], dtype=torch.bool)
            is_flow = is_flow.to(features.device)
            x = x.clone()
            if bool((~is_flow).any()):
                if self.patch_proj is None:
                    raise ValueError("continuous input features given, but the model reads image tokens")
                x[cont & ~flow if flow is not None else cont] = self.patch_proj(features[~is_flow].to(x.dtype))
            if bool(is_flow.any()):
                if self.flow_in is None or self.time_embed is None or flow is None:
                    raise ValueError("flow slots given, but the model draws image tokens (image_output 'tokens')")
                if pos2d is None:
                    raise ValueError("flow slots need their (row, col) cells in pos2d")
                n = int(is_flow.sum())
                t = flow_t if flow_t is not None else torch.ones(n, device=x.device)
                cell = pos2d[flow]
                place = self.flow_pos[cell[:, 0] * self.cfg.image_grid[1] + cell[:, 1]]
                x[flow] = self.flow_in(features[is_flow].to(x.dtype)) + (self.time_embed(t) + place).to(x.dtype)
        if self.row_embed is not None and pos2d is not None:
            if int(pos2d.max()) >= self.cfg.pos_cells:
                raise ValueError(
                    f"image position {int(pos2d.max())} outside the model's {self.cfg.pos_cells}-cell "
                    "grid (model.image_grid / input_grid)"
                )
            cell = pos2d.clamp(min=0)
            x = x + (self.row_embed(cell[..., 0]) + self.col_embed(cell[..., 1])) * (pos2d[..., :1] >= 0)
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        modality: torch.Tensor | None = None,
        pos2d: torch.Tensor | None = None,
        cont: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        flow: torch.Tensor | None = None,
        flow_t: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        branch: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: list[KVCache] | None = None,
        start: int = 0,
        segments: torch.Tensor | None = None,
        layers: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Final hidden states [B, L, dim] (after the final norm). With `cache`, the inputs continue a sequence at
        `start`; `attention_mask` then covers all start + L positions (False = left padding). `segments` [B, L]
        (training on packed rows) marks which sequence each token belongs to: attention stays within it. `flow`
        [B, L] marks the slots of a flow-output image (their values among `features`, their times in `flow_t`):
        they attend to one another both ways. A `layers` list receives the residual stream [B, L, dim] after the
        embedding and after every block (for a forked backbone, each row's own branch), for looking inside."""
        b, n = input_ids.shape
        if start + n > self.cfg.max_len:
            raise ValueError(f"sequence of {start + n} tokens exceeds max_len {self.cfg.max_len}")
        if segments is not None and (cache is not None or attention_mask is not None):
            raise ValueError("packed `segments` are for training passes, without a cache or attention_mask")
        if modality is None:
            modality = (input_ids >= self.cfg.n_text).long()
        if positions is None:
            positions = self.positions(modality, pos2d, attention_mask, start, segments)
        rope = self.rotary(positions)
        mask = causal_mask(attention_mask, n, start, input_ids.device) if segments is None else block_causal(segments)
        if flow is not None and bool(flow.any()):
            mask = flow_mask(mask, flow, start, segments)
        route = modality if self.cfg.backbone == "mot" else None
        x = self.embed_inputs(input_ids, cont, features, pos2d, flow, flow_t)
        if layers is not None:
            layers.append(x)
        caches = iter(cache) if cache is not None else None
        for blk in self.trunk:
            x = blk(x, rope, route, mask, next(caches) if caches else None, start)
            if layers is not None:
                layers.append(x)
        if self.branches is None:
            return self.norms[0](x)
        if branch is None:
            branch = self.branch_of(input_ids, attention_mask) if start == 0 else None
            if branch is None:
                raise ValueError("fork backbone: pass `branch` when continuing from a cache")
        out = torch.empty_like(x)
        deep = [torch.empty_like(x) for _ in self.branches[0]] if layers is not None else []
        for bi, blocks in enumerate(self.branches):
            rows = (branch == bi).nonzero()[:, 0]
            layer_caches = [next(caches) for _ in blocks] if caches else [None] * len(blocks)
            if rows.numel() == 0 and caches:  # decoding; in training every rank runs every branch (FSDP2 gathers
                continue  # a branch's weights collectively, even for a rank with no rows)
            full = rows.numel() == b
            sel = None if full else rows
            h = x if full else x[rows]
            r = rope if full else (rope[0][rows], rope[1][rows])
            m = mask if (full or mask is None) else mask[rows]
            for j, (blk, c) in enumerate(zip(blocks, layer_caches)):
                h = blk(h, r, None, m, c, start, sel)
                if layers is not None:
                    deep[j][rows] = h
            out[rows] = self.norms[bi](h)
        if layers is not None:
            layers.extend(deep)
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary (text ids, then image ids)."""
        if self.cfg.output_heads == "shared":
            return self.head(hidden)
        return torch.cat([self.text_head(hidden), self.image_head(hidden)], -1)

    def loss(self, batch: dict[str, torch.Tensor]) -> LossResult:
        """Next-token cross-entropy on labelled positions (plus, for flow output, the weighted velocity error of
        every trained image slot, each counting as one target), with per-sequence sums and greedy-exact hits (see
        `greedy_hits`; NaN for a sequence with a flow image, which has no greedy choice) and the text / image parts
        (`LossResult`)."""
        labels, features, flow = batch["labels"], batch.get("features"), batch.get("flow")
        example = batch.get("example")
        if example is None:  # one sequence per row
            example = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)
        flow_on = flow is not None and bool(flow.any())
        trained = labels == FLOW
        flow_t = target_v = None
        if flow_on and bool(trained.any()):
            seeds = batch.get("noise_seed")
            if seeds is None:  # each example's index: the same draws at every call on the same batch
                seeds = torch.arange(int(example.max()) + 1, device=labels.device)
            features, flow_t, target_v = self._noised(features, batch["cont"], flow, trained, example, seeds)
        hidden = self(  # no attention mask: rows are right-padded, and causal attention never lets a token see a pad
            batch["input_ids"],
            modality=batch.get("modality"),
            pos2d=batch.get("pos2d"),
            cont=batch.get("cont"),
            features=features,
            flow=flow if flow_on else None,
            flow_t=flow_t,
            segments=batch.get("segments"),
        )
        targets = labels[:, 1:]
        keep = (targets != IGNORE) & (targets != FLOW)
        h, t = hidden[:, :-1][keep], targets[keep]
        is_img = t >= self.cfg.n_text
        if self.cfg.output_heads == "shared":
            logits = self.head(h).float()
            per_tok = F.cross_entropy(logits, t, reduction="none")
            hits = greedy_hits(logits, t, self.cfg.n_text)
        else:
            per_tok = torch.empty(t.shape, device=h.device, dtype=torch.float32)
            hits = torch.empty(t.shape, device=h.device, dtype=torch.bool)
            for sel, head, offset in ((~is_img, self.text_head, 0), (is_img, self.image_head, self.cfg.n_text)):
                logits = head(h[sel]).float()  # also when empty: both heads join every step's gradient
                per_tok[sel] = F.cross_entropy(logits, t[sel] - offset, reduction="none")
                hits[sel] = logits.argmax(-1) + offset == t[sel]
        rows = example[:, 1:][keep]
        b = int(example.max()) + 1
        nan = torch.tensor(float("nan"), device=h.device)
        seq_sum = torch.zeros(b, device=h.device, dtype=torch.float32).index_add(0, rows, per_tok)
        seq_count = torch.zeros(b, device=h.device, dtype=torch.float32).index_add(0, rows, torch.ones_like(per_tok))
        misses = torch.zeros(b, device=h.device, dtype=torch.float32).index_add(0, rows, (~hits).float())
        seq_exact = ((misses == 0) & (seq_count > 0)).float()
        total, count = per_tok.sum(), keep.sum().float()  # a tensor: a Python float would specialise compile
        image_loss = per_tok[is_img].mean() if bool(is_img.any()) else nan
        if target_v is not None:
            x_t, t_slot = features[trained[batch["cont"]]].float(), flow_t[trained[flow]][:, None]
            v = velocity(self.flow_out(hidden[trained]).float(), x_t, t_slot, self.cfg.predicts)
            per_slot = (v - target_v).pow(2).mean(-1)
            per_slot = per_slot * (self.cfg.flow_weight or WEIGHT)
            slot_rows = example[trained]
            seq_sum = seq_sum.index_add(0, slot_rows, per_slot)
            seq_count = seq_count.index_add(0, slot_rows, torch.ones_like(per_slot))
            seq_exact[slot_rows] = float("nan")
            total, count, image_loss = total + per_slot.sum(), count + per_slot.numel(), per_slot.mean()
        elif self.flow_out is not None:  # no image this batch: the flow layers still join the gradient (DDP)
            layers = (self.flow_in, self.time_embed, self.flow_out)
            total = total + 0.0 * sum(p.sum() for m in layers if m is not None for p in m.parameters())
        return LossResult(
            loss=total / count if target_v is not None else per_tok.mean(),
            sum=total,
            count=count,
            seq_sum=seq_sum.detach(),
            seq_count=seq_count,
            seq_exact=seq_exact,
            text_loss=per_tok[~is_img].mean() if bool((~is_img).any()) else nan,
            image_loss=image_loss,
        )

    def _noised(
        self,
        features: torch.Tensor,
        cont: torch.Tensor,
        flow: torch.Tensor,
        trained: torch.Tensor,
        example: torch.Tensor,
        seeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The features with each trained image's patches moved to x_t = t x1 + (1 - t) x0 (one t per image, x0
        Gaussian; both drawn from the example's `seeds` entry), every flow slot's time (1 for an untrained, clean
        one) and the velocity targets x1 - x0."""
        rows = trained[cont]  # feature rows (row-major over the continuous slots) of trained flow slots
        owner = example[trained]  # each trained slot's example; an image's slots are consecutive
        images = torch.unique_consecutive(owner)
        t_len, d = self.cfg.image_tokens, features.shape[1]
        if images.numel() * t_len != owner.numel():
            raise ValueError(f"every flow image must have {t_len} trained slots")
        t_image, x0 = training_draws(seeds[images].to(features.device), t_len * d)
        t = t_image.repeat_interleave(t_len)[:, None]
        x0 = x0.reshape(-1, d)
        x1 = features[rows].float()
        features = features.clone()
        features[rows] = (t * x1 + (1 - t) * x0).to(features.dtype)
        flow_t = torch.ones(int(flow.sum()), device=features.device)
        flow_t[trained[flow]] = t[:, 0]
        return features, flow_t, x1 - x0


def greedy_hits(logits: torch.Tensor, targets: torch.Tensor, n_text: int) -> torch.Tensor:
    """Whether each target id is the argmax of its logits over its own modality's ids (text targets over text ids,
    image targets over image ids), which is the choice the greedy samplers make given the same prefix."""
    text = logits[..., :n_text].argmax(-1)
    if logits.shape[-1] == n_text:  # no image codes (flow output, understanding from patches)
        return text == targets
    pred = torch.where(targets >= n_text, logits[..., n_text:].argmax(-1) + n_text, text)
    return pred == targets
