"""`unifylab data`: build task files from a world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unifylab.cli.common import Force, MinuteStep, _out, _world_options, err
from unifylab.config import SEED_MAX, build
from unifylab.world import DEFAULT

data_app = typer.Typer(no_args_is_help=True, help="Build task files from a world.")


@data_app.command("geneval")
def data_geneval(
    out: Annotated[Path, _out("Folder for metadata.jsonl (and images/ with --render).")],
    n_per_task: Annotated[int, typer.Option(help="Prompts per GenEval task.")] = 20,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed.")] = 0,
    world: Annotated[str, typer.Option(help="World: shapes (GenEval's six tasks) or watch (its six).")] = DEFAULT,
    size: Annotated[int, typer.Option(help="Canvas side in px.")] = 32,
    grid: Annotated[int, typer.Option(help="shapes: cells per side.")] = 3,
    minute_step: MinuteStep = 5,
    render_images: Annotated[
        bool, typer.Option("--render", help="Also render each line's ground-truth scene.")
    ] = False,
    force: Force = False,
) -> None:
    """Write GenEval-schema metadata for GenEval's six tasks on the shapes world, or the watch world's six (no
    two_object: every face holds one weather icon and one battery; `time` instead)."""
    from unifylab.data.geneval import generate, write_geneval
    from unifylab.io import claim_output
    from unifylab.world import WorldChoice, world_of

    values = _world_options(
        world, size=size, grid=grid, min_objects=1, max_objects=1, sizes="large", minute_step=minute_step
    )
    items = generate(world_of(build(WorldChoice, {"world": values}, "data geneval options").world), n_per_task, seed)
    claim_output(out, ["metadata.jsonl", "images"], force=force)
    write_geneval(out, items, render_images=render_images)
    err.print(
        f"wrote {len(items)} prompts to {out / 'metadata.jsonl'}"
        + (f" and images to {out / 'images'}" if render_images else "")
    )
