"""Config plumbing: pydantic models built from user input, with validation errors turned into one clear line."""

from __future__ import annotations

from typing import Any, TypeVar

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
