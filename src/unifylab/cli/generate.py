"""`unifylab generate`: draw a benchmark's prompts into its own folder layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from unifylab.cli.common import _out, _progress, err
from unifylab.config import SEED_MAX

generate_app = typer.Typer(no_args_is_help=True, help="Draw a benchmark's prompts into its own folder layout.")


@generate_app.command("geneval")
def generate_geneval_cmd(
    model: Annotated[str, typer.Option(help="Run folder, 'oracle', 'random', or hf-janus:DIR / hf-emu3:DIR / hf:DIR.")],
    metadata: Annotated[Path, typer.Option(help="GenEval metadata jsonl (GenEval's evaluation_metadata.jsonl).")],
    out: Annotated[Path, _out("Folder for <index>/metadata.jsonl, <index>/samples/*.png, recipe.json.")],
    samples: Annotated[int, typer.Option(min=1, help="Images per prompt (GenEval: 4).")] = 4,
    size: Annotated[int, typer.Option(min=8, help="Side in px the images are saved at.")] = 512,
    grid: Annotated[int, typer.Option(help="Lab models: the grid of their world.")] = 3,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance (default: the model's own).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default: the model's own).")] = None,
    top_k: Annotated[int | None, typer.Option(help="Sampling top-k, 0 for all (default: the model's own).")] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="Sampling seed (with each sample's index, so a run is repeatable).")
    ] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Images per generation call.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Draw into --out though its recipe.json differs.")] = False,
) -> None:
    """Draw every GenEval prompt N times in GenEval's layout, the sampling recipe in recipe.json; re-running draws
    only the missing samples. Score with `unifylab score geneval --metadata M --images OUT`."""
    from unifylab.eval.models import load_model

    m = load_model(model, device=device, guidance=guidance, seed=seed, temperature=temperature, top_k=top_k)
    _draw_geneval(m, metadata, out, samples=samples, size=size, grid=grid, batch=batch, force=force)


def _draw_geneval(m: Any, metadata: Path, out: Path, **options: Any) -> None:
    """Draw GenEval's prompts with a progress bar (options: `eval.generate.generate_geneval`'s) and say how to score."""
    from unifylab.eval.generate import generate_geneval

    with _progress() as bar:
        task = bar.add_task("drawing", total=None)
        recipe = generate_geneval(
            m, metadata, out, progress=lambda done, total: bar.update(task, completed=done, total=total), **options
        )
    err.print(f"drew into {out} with {json.dumps(recipe['sampling'])}")
    err.print(f"score it: unifylab score geneval --metadata {metadata} --images {out}")
