"""Model loading for evaluation and analysis: one spec string -> a model that speaks the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unifylab.errors import UserError
from unifylab.eval.hf.base import FAMILIES
from unifylab.eval.protocol import OracleModel, ParserJudge, RandomModel, UnifiedModel
from unifylab.runtime import resolve_device
from unifylab.world import WorldConfig

HF_KINDS = ("hf", *FAMILIES)  # hf: the adapter is chosen from config.json's model_type


def load_model(
    spec: str,
    *,
    device: str = "auto",
    guidance: float | None = None,
    seed: int = 0,
    temperature: float | None = None,
    top_k: int | None = None,
) -> UnifiedModel:
    """'oracle', 'random', a run/model folder (native adapter), or a transformers model: 'hf-janus:<path-or-id>',
    'hf-emu3:<path-or-id>' or 'hf:<path-or-id>'. The image-sampling recipe: `guidance` None is off for lab models
    and the model's own scale for transformers models; `temperature` / `top_k` None are 1 and the full distribution
    for lab models, the model's generation config (else its authors' default) for transformers models."""
    dev = str(resolve_device(device))  # a bad device is an error even for models that ignore it
    if spec == "oracle":
        return OracleModel()
    if spec == "random":
        return RandomModel(seed)
    kind, sep, target = spec.partition(":")
    if sep and kind in HF_KINDS:
        if not target:
            raise UserError(f"{spec}: give the model after the colon, e.g. {kind}:./Janus-Pro-1B")
        from unifylab.eval.hf import load_hf

        return load_hf(kind, target, dev, guidance=guidance, seed=seed, temperature=temperature, top_k=top_k)
    folder = Path(spec)
    if not folder.is_dir():
        raise UserError(
            f"{spec}: model folder not found; give a run folder from `unifylab train`, 'oracle', 'random' "
            "or a transformers model as hf-janus:DIR or hf-emu3:DIR"
        )
    from unifylab.eval.native import NativeModel

    return NativeModel(
        folder,
        dev,
        guidance=guidance,
        temperature=1.0 if temperature is None else temperature,
        top_k=top_k or 0,
        seed=seed,
    )


def model_identity(spec: str, model: UnifiedModel) -> dict[str, Any]:
    """Which model an eval folder belongs to: where the model lives, resolved in full (two runs may share a folder
    name), and its weights' digest when it has one."""
    kind, sep, target = spec.partition(":")
    if sep and kind in HF_KINDS:
        where = f"{kind}:{Path(target).resolve() if Path(target).exists() else target}"
    else:
        where = spec if spec in ("oracle", "random") else str(Path(spec).resolve())
    weights = getattr(model, "fingerprint", {}).get("weights")
    return {"model": where, **({"weights": weights} if weights else {})}


def load_judge(spec: str, *, world: WorldConfig, device: str = "auto") -> ParserJudge | UnifiedModel:
    """The yes/no judge of generated images: 'parser' (the exact parser of `world`, the drawings' world),
    'hf-vlm:<path-or-id>' (any transformers image-text-to-text model, e.g. Qwen2.5-VL) or any model `load_model`
    takes."""
    if spec == "parser":
        return ParserJudge(world)
    kind, _, target = spec.partition(":")
    if kind == "hf-vlm":
        if not target:
            raise UserError(f"{spec}: give the judge after the colon, e.g. hf-vlm:./Qwen2.5-VL-7B-Instruct")
        from unifylab.eval.hf.judge import HFJudge

        return HFJudge(target, device=str(resolve_device(device)))
    return load_model(spec, device=device)
