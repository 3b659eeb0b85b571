"""save_pretrained / from_pretrained for unified models, HF-style: config.json + model.safetensors (+ tokenizers).

Folder: `config.json` (architecture + ModelConfig), `model.safetensors`, and optionally `tokenizer/tokenizer.json`,
`image_tokenizer/` (generation side) and `und_image_tokenizer/` (when understanding uses a different one).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from unifylab import __version__
from unifylab.config import build
from unifylab.errors import UserError
from unifylab.io import read_folder_config, save_tensors, write_text_atomic
from unifylab.models.config import ModelConfig
from unifylab.models.unified import UnifiedTransformer
from unifylab.tokenize.image import ImageTokenizer, load_image_tokenizer
from unifylab.tokenize.sequence import Tokenizers
from unifylab.tokenize.text import TextTokenizer

ARCHITECTURE = "UnifiedTransformer"
CONFIG, WEIGHTS = "config.json", "model.safetensors"
TEXT_DIR, IMAGE_DIR, UND_IMAGE_DIR = "tokenizer", "image_tokenizer", "und_image_tokenizer"


def save_pretrained(
    model: UnifiedTransformer,
    folder: Path,
    text: TextTokenizer | None = None,
    gen_image: ImageTokenizer | None = None,
    und_image: ImageTokenizer | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the model (and the tokenizers it was trained with) so `from_pretrained` rebuilds it exactly.

    `state` overrides `model.state_dict()`, e.g. with the gathered full weights of a sharded (FSDP2) model."""
    folder = Path(folder)
    meta = {"architecture": ARCHITECTURE, "unifylab_version": __version__, **model.cfg.model_dump(mode="json")}
    write_text_atomic(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state or model.state_dict()).items()}
    save_tensors(tensors, folder / WEIGHTS, metadata={"format": "pt"})
    if text is not None:
        text.save_pretrained(folder / TEXT_DIR)
    if gen_image is not None:
        gen_image.save_pretrained(folder / IMAGE_DIR)
    if und_image is not None and und_image is not gen_image:
        und_image.save_pretrained(folder / UND_IMAGE_DIR)


def read_model_config(folder: Path) -> ModelConfig:
    file = Path(folder) / CONFIG
    raw = read_folder_config(folder, "model", "a model folder needs config.json and model.safetensors")
    if not isinstance(raw, dict) or raw.pop("architecture", None) != ARCHITECTURE:
        raise UserError(f"{file}: 'architecture' must be {ARCHITECTURE!r}; is this a unifylab model folder?")
    raw.pop("unifylab_version", None)
    return build(ModelConfig, raw, str(file))


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly; a missing, unexpected or wrongly shaped tensor is a UserError naming it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = ([f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}"] if missing else []) + (
            [f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else []
        )
        raise UserError(f"{source}: weights do not match config.json ({'; '.join(parts)}); was config.json edited?")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserError(
                f"{source}: tensor {k} has shape {list(state[k].shape)} but config.json implies "
                f"{list(v.shape)}; restore the matching config.json"
            )
    model.load_state_dict(state)


def from_pretrained(folder: Path, device: str | torch.device = "cpu") -> UnifiedTransformer:
    """Rebuild a model saved with `save_pretrained` (safetensors only; no pickle)."""
    cfg = read_model_config(folder)
    file = Path(folder) / WEIGHTS
    if not file.is_file():
        raise UserError(f"{file}: missing; the model's weights are not in {folder}")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{file}: not a readable safetensors file ({e})") from None
    model = UnifiedTransformer(cfg)
    load_state_checked(model, state, str(file))
    return model.to(device).eval()


def load_tokenizers(folder: Path) -> Tokenizers:
    """(text, und, gen) saved beside a model; und is gen unless saved separately."""
    folder = Path(folder)
    text = TextTokenizer.from_pretrained(folder / TEXT_DIR)
    gen = load_image_tokenizer(folder / IMAGE_DIR)
    und = load_image_tokenizer(folder / UND_IMAGE_DIR) if (folder / UND_IMAGE_DIR).is_dir() else gen
    return Tokenizers(text, und, gen)
