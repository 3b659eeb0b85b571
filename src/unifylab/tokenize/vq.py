"""Learned discrete image tokenizer: a convolutional autoencoder with an FSQ bottleneck.

Why FSQ (finite scalar quantisation, Mentzer et al. 2023) rather than VQ-VAE: each latent channel is bounded and
rounded to a few levels, so the implicit codebook (the product of the levels) has no embedding table to collapse,
needs no commitment loss, EMA updates or dead-code restarts, and reaches high codebook usage on its own; on a
2-core CPU that is one moving part fewer to tune.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from safetensors.torch import load_file

from unifylab.config import build
from unifylab.errors import UserError
from unifylab.io import save_tensors
from unifylab.tokenize.image import ImageTokenizer

WEIGHTS = "model.safetensors"


class VQConfig(BaseModel):
    """Architecture of the FSQ autoencoder (saved as config.json)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(32, description="canvas side in px")
    downsample: int = Field(4, description="pixels per token side: 4 or 8")
    hidden: int = Field(32, ge=8, description="channels at full resolution (doubled at the deepest stage)")
    levels: tuple[int, ...] = Field((8, 5, 5, 5), description="FSQ levels per latent channel; codebook = product")

    @field_validator("downsample")
    @classmethod
    def _down(cls, v: int) -> int:
        if v not in (4, 8):
            raise ValueError(f"downsample must be 4 or 8, got {v}")
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(x < 2 for x in v):
            raise ValueError(f"levels must be integers >= 2, got {list(v)}")
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"hidden must be a multiple of 8 (group norm uses 8 groups), got {v}")
        return v

    @model_validator(mode="after")
    def _divisible(self) -> VQConfig:
        if self.size % self.downsample:
            raise ValueError(f"size {self.size} must be a multiple of downsample {self.downsample}")
        return self


class FSQ(nn.Module):
    """Bound each channel with tanh, round to its levels (straight-through), and index the product codebook."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor((1, *levels[:-1])), 0), persistent=False)
        self.register_buffer("half_width", torch.div(lv, 2, rounding_mode="floor"), persistent=False)
        self.codebook_size = math.prod(levels)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        half = (self.levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        return torch.tanh(z + torch.atanh(offset / half)) * half - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [..., d] -> (quantised values in [-1, 1] [..., d], code indices [...])."""
        b = self._bound(z)
        r = torch.round(b)
        q = b + (r - b).detach()
        idx = ((r + self.half_width) * self.basis).sum(-1).long()
        return q / self.half_width, idx

    def codes_to_values(self, idx: torch.Tensor) -> torch.Tensor:
        digits = torch.div(idx[..., None], self.basis, rounding_mode="floor") % self.levels.long()
        return (digits - self.half_width) / self.half_width


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(8, c),
            nn.SiLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(8, c),
            nn.SiLU(),
            nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FSQAutoencoder(nn.Module):
    """Conv encoder (stride-2 stages) -> FSQ -> mirrored conv decoder; images in [-1, 1]."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        h, d = cfg.hidden, len(cfg.levels)
        stages = int(math.log2(cfg.downsample))
        chans = [h] * stages + [2 * h]  # channels after each stage; the deepest doubles
        enc: list[nn.Module] = [nn.Conv2d(3, h, 3, padding=1), _Res(h)]
        for i in range(stages):
            enc += [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), _Res(chans[i + 1])]
        enc += [nn.GroupNorm(8, chans[-1]), nn.SiLU(), nn.Conv2d(chans[-1], d, 1)]
        dec: list[nn.Module] = [nn.Conv2d(d, chans[-1], 3, padding=1), _Res(chans[-1])]
        for i in reversed(range(stages)):
            dec += [nn.ConvTranspose2d(chans[i + 1], chans[i], 4, 2, 1), _Res(chans[i])]
        dec += [nn.GroupNorm(8, h), nn.SiLU(), nn.Conv2d(h, 3, 3, padding=1)]
        self.encoder, self.decoder, self.fsq = nn.Sequential(*enc), nn.Sequential(*dec), FSQ(cfg.levels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents [N, h, w, d]."""
        return self.encoder(x).permute(0, 2, 3, 1)

    def decode_values(self, q: torch.Tensor) -> torch.Tensor:
        return self.decoder(q.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction [N, 3, H, W] and codes [N, h, w]."""
        q, idx = self.fsq(self.features(x))
        return self.decode_values(q), idx


def to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class VQTokenizer(ImageTokenizer):
    kind = "vq"
    discrete = True

    def __init__(self, cfg: VQConfig, model: FSQAutoencoder | None = None) -> None:
        self.cfg, self.size = cfg, cfg.size
        self.model = (model or FSQAutoencoder(cfg)).eval()

    @property
    def token_grid(self) -> tuple[int, int]:
        n = self.cfg.size // self.cfg.downsample
        return n, n

    @property
    def vocab_size(self) -> int:
        return self.model.fsq.codebook_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> VQTokenizer:
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        _, idx = self.model.fsq(self.model.features(to_unit(self.check_images(images), self.device)))
        return idx.reshape(idx.shape[0], -1).cpu()

    @torch.no_grad()
    def features(self, images: np.ndarray) -> torch.Tensor:
        """Continuous pre-quantisation features [N, T, d] (the `patch` tokenizer's `vq` source)."""
        z = self.model.features(to_unit(self.check_images(images), self.device))
        return z.reshape(z.shape[0], -1, z.shape[-1]).cpu()

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        tokens = torch.as_tensor(tokens, device=self.device).long()
        h, w = self.token_grid
        if tokens.shape[-1] != h * w:
            raise UserError(f"vq tokenizer decodes {h * w} tokens per image, got {tokens.shape[-1]}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"vq codes must lie in 0..{self.vocab_size - 1}")
        values = self.model.fsq.codes_to_values(tokens.reshape(-1, h, w))
        return to_uint8(self.model.decode_values(values))

    def config(self) -> dict[str, Any]:
        return self.cfg.model_dump(mode="json")

    def save_pretrained(self, folder: Path) -> None:
        super().save_pretrained(folder)
        save_tensors(
            {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, Path(folder) / WEIGHTS
        )

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> VQTokenizer:
        cfg = build(VQConfig, config, f"{folder}/config.json")
        file = Path(folder) / WEIGHTS
        if not file.is_file():
            raise UserError(f"{file}: missing; the vq tokenizer's weights are not in {folder}")
        model = FSQAutoencoder(cfg)
        try:
            state = load_file(str(file))
            model.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise UserError(
                f"{file}: weights do not match {folder}/config.json ({first}); retrain or restore the "
                "matching config.json"
            ) from None
        except Exception as e:  # safetensors raises its own error type on a corrupt header
            raise UserError(f"{file}: not a readable safetensors file ({e})") from None
        return cls(cfg, model)


def reconstruct(tok: VQTokenizer, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, torch.Tensor]:
    """Reconstructions uint8 [N, H, W, 3] and codes [N, T] of `images`, in batches."""
    recon, codes = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = to_unit(tok.check_images(images[i : i + batch]), tok.device)
            y, idx = tok.model(x)
            recon.append(to_uint8(y))
            codes.append(idx.reshape(idx.shape[0], -1).cpu())
    return np.concatenate(recon), torch.cat(codes)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 image batches (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 + MSE: L1 keeps edges sharp (what the parser needs), MSE punishes the rare large colour error."""
    return F.l1_loss(y, x) + F.mse_loss(y, x)
