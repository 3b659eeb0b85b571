"""Flow-matching image output inside the unified model (Transfusion-style rectified flow): the parts the model owns.

An output image is a block of continuous patch slots in the sequence. Training puts the noised patches
x_t = t * x1 + (1 - t) * x0 (x1 the image's patches in [-1, 1], x0 Gaussian noise, one t per image drawn
logit-normal as in SD3) into the slots with an embedding of t, and regresses the velocity x1 - x0 from each slot's
final hidden state (by default through a prediction of the clean patches, see `velocity`); the slots of one image
attend to each other in both directions (the image is one denoising state, not a left-to-right sequence) and
causally to what precedes them; each slot also carries its fixed 2-D place in the image. Sampling
(`generate.generate_flow`) integrates dx/dt = v from noise at t = 0 to the image at t = 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

STEPS, SOLVER, WEIGHT = 20, "heun", 1.0  # model.flow_steps / flow_solver / flow_weight when a config names none
PREDICT = "image"  # model.flow_predict when a config names none
SOLVERS = ("euler", "heun")
MIN_GAP = 0.05  # image prediction: 1 - t is clipped here when turned into a velocity (JiT's clip)


class TimeEmbedding(nn.Module):
    """t in [0, 1] -> [N, dim]: sinusoidal features of 1000 t through a SiLU MLP (DiT's timestep embedder)."""

    def __init__(self, dim: int, freqs: int = 64) -> None:
        super().__init__()
        self.register_buffer("freq", torch.exp(-math.log(10000.0) * torch.arange(freqs) / freqs), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 1000.0 * t.float()[:, None] * self.freq
        return self.mlp(torch.cat([angles.cos(), angles.sin()], -1).to(self.mlp[0].weight.dtype))


def grid_sincos(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings [rows * cols, dim] (DiT's): half the width encodes the row, half the
    column. A flow slot needs its absolute place from the first step, when its input is pure noise and rotary
    offsets alone would leave it to find the image's start through attention."""
    quarter = dim // 4
    freq = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    r, c = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij"
    )
    parts = [f(x.reshape(-1, 1) * freq) for x in (r, c) for f in (torch.sin, torch.cos)]
    out = torch.cat(parts, 1)
    return torch.cat([out, out.new_zeros(out.shape[0], dim - out.shape[1])], 1)


def velocity(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, predict: str) -> torch.Tensor:
    """The velocity a flow head's output `out` stands for at state `x_t` and time `t` (broadcast to it): the output
    itself (`velocity`), or for `image` prediction (x-prediction, as in JiT) (out - x_t) / (1 - t). Predicting the
    clean image is easier when a patch is wide against the model (pixel patches lie near a low-dimensional set,
    noise does not); the loss stays on the velocity either way."""
    if predict == "velocity":
        return out
    return (out - x_t) / (1 - t).clamp(min=MIN_GAP)


def training_draws(seeds: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (one seed each): its time in (0, 1), logit-normal(0, 1) as in SD3 (most draws in the middle, where
    the velocity is hardest to predict), and its starting noise [N, width]; a pure function of the seed, so a run
    draws the same on one process or many."""
    from unifylab.models.generate import row_normals

    z = row_normals(seeds * 2 + 1, width + 1)
    return torch.sigmoid(z[:, 0]), z[:, 1:]


def flow_mask(base: torch.Tensor | None, flow: torch.Tensor, start: int, segments: torch.Tensor | None) -> torch.Tensor:
    """The attention mask [B, 1, n, start + n] with every flow slot also seeing the later slots of its own image
    (one image per sequence: within a packed row, per segment); `base` None means plain causal."""
    b, n = flow.shape
    total = start + n
    if base is None:
        base = torch.ones(n, total, dtype=torch.bool, device=flow.device).tril(start)[None, None]
    keys = torch.cat([flow.new_zeros(b, start), flow], 1)
    both = flow[:, :, None] & keys[:, None, :]
    if segments is not None:
        both &= segments[:, :, None] == segments[:, None, :]
    return base | both[:, None]
