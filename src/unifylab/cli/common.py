"""What the command groups share: the stderr console, option types, --out, progress bars and option parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from unifylab.errors import UserError
from unifylab.progress import LineProgress, progress
from unifylab.world import check_world

err = Console(stderr=True)

Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Noise = Annotated[float, typer.Option(help="Gaussian pixel-noise std in 0..255 units.")]
MinuteStep = Annotated[int, typer.Option(min=1, max=30, help="watch world: hands show minutes in steps of this many.")]
Jitter = Annotated[int, typer.Option(help="Per-object position jitter in px (0 or 1).")]
Tint = Annotated[int, typer.Option(help="Largest random background tint per channel (0..64).")]


def _out_path(value: str) -> Path:
    """An --out value; an empty one (it would mean the working folder) is refused."""
    if not value.strip():
        raise UserError(
            f"--out {value!r}: an empty path would mean the working folder; give the file or folder to write"
        )
    return Path(value)


def _out(help: str) -> Any:
    """An --out option: every command's goes through `_out_path`."""
    return typer.Option(help=help, parser=_out_path, metavar="PATH")


def _progress() -> Progress | LineProgress:
    """A bar on stderr when it is a terminal, else plain progress lines (see `unifylab.progress`)."""
    return progress(err)


def _world_options(
    world: str, *, size: int, grid: int, min_objects: int, max_objects: int, sizes: str, minute_step: int
) -> dict[str, Any]:
    """The world options as the named world's config fields (`sizes` is comma-separated)."""
    from unifylab.world import CLASSES

    check_world(world)
    return CLASSES[world].config_fields(
        {
            "size": size,
            "grid": grid,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "sizes": tuple(s.strip() for s in sizes.split(",") if s.strip()),
            "minute_step": minute_step,
        }
    )


def _device(name: str) -> str:
    """'auto' -> the local GPU if there is one, else cpu; a CUDA device without CUDA is a UserError."""
    from unifylab.runtime import resolve_device

    return str(resolve_device(name))


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers like 8,5,5,5, got {text!r}") from None
