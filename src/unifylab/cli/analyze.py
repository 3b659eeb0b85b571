"""`unifylab analyze`: alignment, entropy and gradient-conflict analyses of models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from unifylab.cli.common import _out, _progress, err
from unifylab.config import SEED_MAX
from unifylab.errors import UserError

analyze_app = typer.Typer(no_args_is_help=True, help="Look inside models: alignment, entropy, gradient conflict.")


def _analyze(kind: str, models: list[str], out: Path, **options: Any) -> None:
    """Run one analysis over the models with a progress bar (options: `analysis.run.run_analysis`'s)."""
    from unifylab.analysis.run import run_analysis

    with _progress() as bar:
        task = bar.add_task(kind, total=len(models))

        def on_model(done: int, name: str) -> None:
            bar.update(task, description=f"{kind}: {name}", completed=done)

        jsonl, png, n_rows = run_analysis(kind, models, out, on_model=on_model, **options)
        bar.update(task, completed=len(models))
    err.print(f"{kind}: {n_rows} rows -> {jsonl}, plot {png}")


_MODELS = Annotated[
    list[str],
    typer.Argument(metavar="RUN_OR_MODEL...", help="Run folders or hf-janus:/hf-emu3: models (one curve each)."),
]
_OUT = Annotated[Path, _out("Folder for <analysis>.jsonl and <analysis>.png.")]
_SEED = Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the scenes analysed.")]
_DEVICE = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
_FORCE = Annotated[bool, typer.Option(help="Overwrite this analysis' files in --out.")]


@analyze_app.command("alignment")
def analyze_alignment(
    models: _MODELS,
    out: _OUT = ...,
    n: Annotated[int, typer.Option(min=3, help="Scenes.")] = 200,
    k: Annotated[int, typer.Option(min=1, help="Neighbours for mutual kNN.")] = 10,
    seed: _SEED = 0,
    device: _DEVICE = "auto",
    force: _FORCE = False,
    save_states: Annotated[
        bool,
        typer.Option(
            help="Also stream every sequence's per-layer states and masks to "
            "OUT/states/<model>/<und|gen>/states-*.safetensors."
        ),
    ] = False,
) -> None:
    """Per layer: mutual-kNN and linear CKA between mean-pooled image and text states (und and gen inputs)."""
    _analyze("alignment", models, out, n=n, k=k, seed=seed, device=device, force=force, save_states=save_states)


@analyze_app.command("entropy")
def analyze_entropy(
    models: _MODELS,
    out: _OUT = ...,
    n: Annotated[int, typer.Option(min=2, help="Sequences.")] = 64,
    alpha: Annotated[float, typer.Option(help="Renyi order (not 1).")] = 1.01,
    seed: _SEED = 0,
    device: _DEVICE = "auto",
    force: _FORCE = False,
) -> None:
    """Per layer: Renyi entropy of text-only, image-only and mixed inputs, and response entropy (text vs image)."""
    if alpha <= 0 or alpha == 1:
        raise UserError(f"--alpha {alpha}: must be positive and not 1 (1.01 approximates Shannon entropy)")
    _analyze("entropy", models, out, n=n, alpha=alpha, seed=seed, device=device, force=force)


@analyze_app.command("gradients")
def analyze_gradients(
    models: _MODELS,
    out: _OUT = ...,
    examples: Annotated[int, typer.Option(min=2, help="Examples per task batch.")] = 64,
    seed: _SEED = 0,
    device: _DEVICE = "auto",
    force: _FORCE = False,
) -> None:
    """Per layer and checkpoint: cosine between the understanding and generation loss gradients."""
    _analyze("gradients", models, out, examples=examples, seed=seed, device=device, force=force)
