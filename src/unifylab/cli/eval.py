"""`unifylab eval` and `unifylab compare`: evaluate a model on tasks and compare two evaluations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from unifylab.cli.common import _out, _progress, err
from unifylab.cli.generate import _draw_geneval
from unifylab.config import SEED_MAX
from unifylab.errors import UserError
from unifylab.layout import EvalFolder
from unifylab.world import describe_canvas


def eval_cmd(
    model: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_MODEL", help="Run folder, 'oracle', 'random', or hf-janus:DIR / hf-emu3:DIR / hf:DIR."
        ),
    ],
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma-separated task names or task YAML files, 'all' (every task built on the model's world), or "
            "geneval-official (draw GenEval's prompts into its layout; needs --geneval-metadata)."
        ),
    ] = "all",
    out: Annotated[Path, _out("Folder for <task>.jsonl, generated images and results.json.")] = ...,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N items of each task.")] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Classifier-free guidance scale for image generation (1 = off). Default: off for lab token models "
            "(they do best at 1-1.5), a flow model's model.flow_guidance, the model's own recommended scale for "
            "hf-janus/hf-emu3."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Image sampling temperature. Default: 1 for lab models, the model's own for hf-*."),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            help="Image sampling top-k (0: all codes). Default: all for lab models, the model's own for hf-*."
        ),
    ] = None,
    geneval_metadata: Annotated[
        Path | None, typer.Option(help="geneval-official: GenEval's evaluation_metadata.jsonl.")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="geneval-official: images per prompt.")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Sampling seed.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Re-score tasks in --out whose model or settings changed (default: refuse).")
    ] = False,
) -> None:
    """Evaluate a model on tasks; re-running with the same --out and settings skips items already scored. The
    sampling recipe (guidance, temperature, top-k, seed) is recorded in results.json."""
    from unifylab.eval.harness import evaluate
    from unifylab.eval.models import load_model, model_identity
    from unifylab.eval.task_registry import TaskSpec, resolve_tasks

    if tasks == "geneval-official":
        if geneval_metadata is None:
            raise UserError(
                "--tasks geneval-official needs --geneval-metadata FILE: GenEval's prompts, "
                "prompts/evaluation_metadata.jsonl of github.com/djghosh13/geneval"
            )
        m = load_model(model, device=device, guidance=guidance, seed=seed, temperature=temperature, top_k=top_k)
        _draw_geneval(m, geneval_metadata, out, samples=samples, force=force)
        return
    resolve_tasks(tasks)  # a bad task name is refused before any model loads
    m = load_model(model, device=device, guidance=guidance, seed=seed, temperature=temperature, top_k=top_k)
    name = getattr(m, "name", model)
    world = getattr(m, "world", None)
    specs, skipped = resolve_tasks(tasks, world=world)
    if skipped:
        err.print(f"skipping {', '.join(skipped)}: built on another world than {name}'s {describe_canvas(world)}")
    folder = EvalFolder(out)
    with folder.lock(model_identity(model, m), force=force), _progress() as bar:

        def follow(spec: TaskSpec, n: int) -> Callable[[int], None]:
            task = bar.add_task(spec.name, total=n)
            return lambda k: bar.advance(task, k)

        results = evaluate(folder, m, specs, name=name, limit=limit, force=force, progress=follow)
    table = Table(title=f"{name} on {len(specs)} task(s)")
    for col in ("task", "accuracy", "95% CI", "chance", "items"):
        table.add_column(col)
    for spec in specs:
        r = results[spec.name]
        a = r["accuracy"]
        chance = "-" if r["chance"] is None else f"{r['chance']:.3f}"
        table.add_row(spec.name, f"{a['value']:.3f}", f"[{a['lo']:.3f}, {a['hi']:.3f}]", chance, str(r["n"]))
    Console().print(table)


def compare_cmd(
    a: Annotated[Path, typer.Argument(metavar="A", help="An `unifylab eval` output folder (the baseline).")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Another one, evaluated on the same tasks.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Paired per-task differences B - A with 95 % bootstrap CIs and permutation p-values."""
    from unifylab.eval.compare import compare

    res = compare(a, b)
    if as_json:
        typer.echo(json.dumps(res))
        return
    table = Table(title=f"{b} - {a} (paired by item)")
    for col in ("task", "A", "B", "B - A", "95% CI", "p", "items"):
        table.add_column(col)
    for task, r in res.items():
        d = r["diff"]
        table.add_row(
            task,
            f"{r['a']:.3f}",
            f"{r['b']:.3f}",
            f"{d['value']:+.3f}",
            f"[{d['lo']:+.3f}, {d['hi']:+.3f}]",
            f"{r['p_value']:.4f}",
            str(r["n"]),
        )
    Console().print(table)
