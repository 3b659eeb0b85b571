"""Loading a transformers unified model by path or hub id into the adapter of its family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from unifylab.errors import UserError
from unifylab.eval.hf.base import FAMILIES, INSTALL, ORIGINAL_FORMATS
from unifylab.eval.hf.emu3 import HFEmu3
from unifylab.eval.hf.janus import HFJanus
from unifylab.io import read_json

T = TypeVar("T")


def _local(path_or_id: str) -> bool:
    """True for an existing folder, False for a hub id (owner/name); a missing path is a UserError."""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return True
    if p.exists():
        raise UserError(f"{path_or_id}: is a file; give the model's folder (with config.json) or a hub id")
    if path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") != 1 or "\\" in path_or_id:
        raise UserError(
            f"{path_or_id}: model folder not found; download one first, e.g. "
            "`hf download deepseek-community/Janus-Pro-1B --local-dir ./Janus-Pro-1B`"
        )
    return False


def load_pretrained(source: str, what: str, load: Callable[[str, bool], T]) -> T:
    """`load(source, local)` for a transformers component in a folder (read offline) or on the hub, with every
    failure (transformers missing, folder absent, hub unreachable, files missing) one UserError naming `what`."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs the `transformers` package: {INSTALL}") from None
    local = _local(source)
    try:
        return load(str(Path(source).expanduser()) if local else source, local)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{source}: could not load {what}: {reason}") from None


def _model_type(path_or_id: str, local: bool) -> str:
    """config.json's model_type, read from the folder or fetched from the hub."""
    if local:
        config = Path(path_or_id).expanduser() / "config.json"
        if not config.is_file():
            raise UserError(
                f"{path_or_id}: no config.json, so it is not a transformers model folder; download the "
                "whole model repository into it (hf download OWNER/NAME --local-dir DIR)"
            )
    else:
        from huggingface_hub import hf_hub_download

        try:
            config = Path(hf_hub_download(path_or_id, "config.json"))
        except Exception as e:  # offline, unknown repository, gated model: all mean "download it yourself"
            raise UserError(
                f"{path_or_id}: could not fetch config.json from the Hugging Face hub "
                f"({type(e).__name__}); download the model where the hub is reachable "
                f"(hf download {path_or_id} --local-dir DIR) and pass the folder"
            ) from None
    data = read_json(config)
    if not isinstance(data, dict):
        raise UserError(f"{config}: not a valid JSON config file (expected an object)")
    return str(data.get("model_type", ""))


def _check_processor_files(folder: Path) -> None:
    """A local model folder needs its tokenizer and image-processor files, not just the weights."""
    needed = {
        "the tokenizer": ("tokenizer.json", "tokenizer_config.json"),
        "the image processor": ("preprocessor_config.json", "processor_config.json"),
    }
    for what, any_of in needed.items():
        if not any((folder / f).is_file() for f in any_of):
            raise UserError(
                f"{folder}: missing {' or '.join(any_of)} ({what} of the model's processor); download the "
                "whole repository, not only the weights"
            )


def load_hf(
    kind: str,
    path_or_id: str,
    device: str = "cpu",
    guidance: float | None = None,
    seed: int = 0,
    batch: int = 8,
    image_area: int | None = None,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
) -> HFJanus | HFEmu3:
    """A transformers unified model behind the protocol. kind: 'hf-janus', 'hf-emu3', or 'hf' (chosen from
    config.json's model_type). Folders load offline; hub ids are passed through to transformers. Weights load in
    bfloat16 on CUDA and float32 on the CPU; remote code is never trusted. guidance None: the model's own scale;
    image_area: Emu3's image resolution in px (see HFEmu3); temperature / top_k None: the model's generation config,
    else the family's default."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{kind}:{path_or_id} needs the `transformers` package: {INSTALL}") from None
    local = _local(path_or_id)
    found = _model_type(path_or_id, local)
    families = {v: k for k, v in FAMILIES.items()}
    if kind == "hf":
        if found not in families:
            hint = ORIGINAL_FORMATS.get(
                found,
                "unifylab's HF adapters need a unified model that also draws images: "
                "janus (hf-janus) or emu3 (hf-emu3)",
            )
            raise UserError(f"{path_or_id}: config.json has model_type {found!r}; {hint}")
        kind = families[found]
    if kind not in FAMILIES:
        raise UserError(f"unknown HF adapter {kind!r}; expected hf-janus, hf-emu3 or hf")
    expected = FAMILIES[kind]
    if found != expected:
        hint = (
            f"; use {families[found]}:{path_or_id}"
            if found in families
            else f"; {ORIGINAL_FORMATS[found]}"
            if found in ORIGINAL_FORMATS
            else ""
        )
        raise UserError(f"{path_or_id}: {kind} expects config.json model_type {expected!r}, found {found!r}{hint}")
    if local:
        folder = Path(path_or_id).expanduser()
        _check_processor_files(folder)
        if not any(folder.glob("*.safetensors")):
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            only = f" (only pickle files: {', '.join(pickles)})" if pickles else ""
            raise UserError(
                f"{folder}: no *.safetensors weights{only}; "
                "unifylab loads safetensors only (pickle files can run code): convert the weights, e.g. "
                "save_pretrained(..., safe_serialization=True) in a trusted environment"
            )
    cls = HFJanus if expected == "janus" else HFEmu3
    model_class = (
        transformers.JanusForConditionalGeneration if expected == "janus" else transformers.Emu3ForConditionalGeneration
    )
    processor_class = transformers.JanusProcessor if expected == "janus" else transformers.Emu3Processor
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        processor = processor_class.from_pretrained(path_or_id, local_files_only=local)
        model = model_class.from_pretrained(path_or_id, dtype=dtype, local_files_only=local, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path_or_id}: could not load the {expected} model: {reason}") from None
    name = Path(path_or_id.rstrip("/")).name or path_or_id
    options = {"image_area": image_area} if expected == "emu3" else {}
    sampling = {"temperature": temperature, "top_k": top_k}
    return cls(model.to(device), processor, name, guidance=guidance, seed=seed, batch=batch, **options, **sampling)
