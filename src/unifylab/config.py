"""Config plumbing: pydantic models built from user input, with validation errors turned into one clear line."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from unifylab.errors import UserError

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(e: ValidationError, source: str) -> str:
    """One line naming every bad field of `source` (a file or '--options') and what was expected."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if err["loc"] else msg)
    return f"{source}: " + "; ".join(parts)


def build(model: type[M], values: dict[str, Any], source: str) -> M:
    """Validate `values` into `model`, raising UserError with the source and the bad fields."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, source)) from None


def first_diff(a: Any, b: Any, prefix: str = "") -> str:
    """The first field where two config trees differ, as 'dotted.key: <a> there, <b> now'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                return first_diff(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): identifies model weights in fingerprints."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def packaged_yaml(package: str, folder: str) -> dict[str, Path]:
    """YAML files shipped in `package/folder`, by stem (the task registry, the study presets)."""
    root = resources.files(package) / folder
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def load_named(model: type[M], name_or_path: str, files: dict[str, Path], what: str, option: str) -> M:
    """A packaged YAML by name, or a YAML file by path, validated into `model`."""
    path = files.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise UserError(
            f"{option}: unknown {what} {name_or_path!r}; built-in {what}s: {', '.join(sorted(files))} "
            f"(or give a {what} YAML file)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: malformed YAML: {e}") from None
    return build(model, raw if isinstance(raw, dict) else {}, str(path))
