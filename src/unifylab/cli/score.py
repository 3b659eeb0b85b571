"""`unifylab score`: score generated images (GenEval) and a model on RealUnify items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from unifylab.cli.common import Force, _device, _out, _progress, err
from unifylab.errors import UserError
from unifylab.eval.geneval_rules import CLIP, DETECTOR
from unifylab.layout import EvalFolder

score_app = typer.Typer(no_args_is_help=True, help="Score generated images with the exact parser.")


@score_app.command("geneval")
def score_geneval(
    metadata: Annotated[
        Path, typer.Option(help="GenEval-schema metadata jsonl (the shapes or watch world's, or GenEval's own).")
    ],
    images: Annotated[Path, typer.Option(help="Folder of <index>.png or <index>/samples/*.png.")],
    out: Annotated[Path | None, _out("Per-image jsonl with the judge's reading and failure reasons.")] = None,
    judge: Annotated[
        str,
        typer.Option(
            help="auto (the parser for shapes- or watch-world metadata, else the detector), parser (exact, the lab's "
            "worlds) or detector (GenEval's Mask2Former + CLIP rules)."
        ),
    ] = "auto",
    grid: Annotated[
        int | None, typer.Option(help="parser: grid for lines without a scene; inferred if omitted.")
    ] = None,
    detector: Annotated[
        str, typer.Option(help="detector: a Mask2Former instance-segmentation folder or hub id.")
    ] = DETECTOR,
    clip: Annotated[str, typer.Option(help="detector: a CLIP folder or hub id for colours.")] = CLIP,
    device: Annotated[str, typer.Option(help="detector: auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
    force: Force = False,
) -> None:
    """Score generated images: per-task accuracy and overall (mean of tasks), with 95 % bootstrap CIs that resample
    prompts."""
    from unifylab.data.geneval import check_classes, metadata_world, read_metadata, read_official
    from unifylab.eval.geneval import find_images, score, score_official
    from unifylab.io import guard_output, write_jsonl

    if judge not in ("auto", "parser", "detector"):
        raise UserError(f"--judge: unknown judge {judge!r}; expected auto, parser or detector")
    world = metadata_world(metadata)
    if judge == "auto":
        judge = "parser" if world != "coco" else "detector"
    elif judge == "parser" and world == "coco":
        raise UserError(
            f"{metadata}: names classes of neither lab world (GenEval's own COCO metadata); the parser reads only "
            "shapes- and watch-world images: use --judge detector (or auto)"
        )
    if out is not None:
        guard_output(out, force)
    if judge == "parser":
        pairs, extra = find_images(images, read_metadata(metadata))
    else:
        from unifylab.eval.hf.geneval import ClipColours, Mask2FormerDetector

        official = read_official(metadata)  # a bad line or a missing image is refused before the judges load
        pairs, extra = find_images(images, official)
        detect = Mask2FormerDetector(detector, device=_device(device))
        check_classes(official, detect.classes)
        colours = ClipColours(clip, device=_device(device))
    if extra:
        err.print(f"[yellow]warning:[/] {len(extra)} image(s) in {images} match no metadata line and were skipped")
    with _progress() as bar:
        task = bar.add_task(f"scoring ({judge})", total=len(pairs))
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        if judge == "parser":
            result = score(pairs, grid, progress=advance)
        else:
            result = score_official(pairs, detector=detect, colours=colours, progress=advance)
    if out is not None:
        write_jsonl(out, result.records)
    if as_json:
        typer.echo(json.dumps({"judge": judge, **result.summary()}))
        return
    table = Table(title=f"GenEval on {images} ({len(pairs)} images, judge: {judge})")
    for col in ("task", "accuracy", "95% CI", "images"):
        table.add_column(col)
    for tag, est in result.tasks.items():
        table.add_row(tag, f"{est.value:.3f}", f"[{est.lo:.3f}, {est.hi:.3f}]", str(est.n))
    o = result.overall
    table.add_row("[bold]overall[/]", f"[bold]{o.value:.3f}[/]", f"[{o.lo:.3f}, {o.hi:.3f}]", str(o.n))
    for label, e in (("correct images", result.images), ("prompts with a correct image", result.prompts)):
        table.add_row(label, f"{e.value:.3f}", f"[{e.lo:.3f}, {e.hi:.3f}]", str(e.n))
    Console().print(table)


@score_app.command("realunify")
def score_realunify(
    data: Annotated[Path, typer.Option(help="RealUnify JSON or JSONL file (image paths relative to it).")],
    model: Annotated[str, typer.Option(help="The model under test: a run folder, 'oracle' or 'random'.")],
    out: Annotated[Path, _out("Folder for realunify.jsonl, drawn images and results.json.")],
    judge: Annotated[
        str,
        typer.Option(
            help="Yes/no judge for UEG: 'parser' (exact, shapes world), 'hf-vlm:DIR' (a transformers "
            "image-text-to-text model such as Qwen2.5-VL) or a model."
        ),
    ] = "parser",
    mode: Annotated[
        str, typer.Option(help="direct, or stepwise (rewrite before drawing / draw before answering).")
    ] = "direct",
    size: Annotated[int, typer.Option(help="Canvas of the images the model draws.")] = 32,
    grid: Annotated[
        int, typer.Option(help="Grid of the canvas the model draws on and the parser judge reads drawings with.")
    ] = 3,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    compat: Annotated[
        bool,
        typer.Option(
            "--compat", help="Headline with the released scorer's answer parsing (the strict one is reported too)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-score into an existing --out (judge replies there are reused).")
    ] = False,
) -> None:
    """Run a model on official RealUnify items: per-task-type, per-direction and overall accuracy with CIs."""
    from unifylab.config import build
    from unifylab.eval.models import load_judge, load_model, model_identity
    from unifylab.eval.realunify import load_realunify, run_realunify, summarise_realunify
    from unifylab.world import DEFAULT, WorldChoice, world_of_canvas

    items = load_realunify(data)[:limit]
    canvas = world_of_canvas((DEFAULT, size, grid)).config  # RealUnify-format files are built on the default world
    world = build(WorldChoice, {"world": canvas.model_dump()}, "--size/--grid").world
    m = load_model(model, device=device)
    j = load_judge(judge, world=world, device=device)
    folder = EvalFolder(out)
    with folder.lock(model_identity(model, m), force=force):
        if folder.results.is_file() and not force:
            raise UserError(
                f"{folder.results}: already scored; re-run with --force to score again, or choose another --out"
            )
        stamp = {
            "model": getattr(m, "fingerprint", {"name": getattr(m, "name", model)}),
            "judge": judge,
            "data": str(data.resolve()),
            "items": len(items),
            "mode": mode,
            "size": size,
            "grid": grid,
        }
        folder.reusable("realunify", stamp, force=force)  # records of other settings are refused, or forgotten
        with _progress() as bar:
            task = bar.add_task("realunify", total=len(items))
            records = run_realunify(
                m,
                j,
                items,
                out,
                mode=mode,
                world=world,
                progress=lambda done, stage: bar.update(task, completed=done, description=f"realunify: {stage}"),
            )
        summary = summarise_realunify(records, released=compat)
        folder.write_results({"model": getattr(m, "name", model), "judge": judge, "mode": mode, **summary})
    table = Table(title=f"RealUnify ({mode}, {summary['parsing']} parsing) on {data}")
    for col in ("group", "accuracy", "95% CI", "items"):
        table.add_column(col)
    other = "strict" if compat else "released"
    rows = [
        *summary["task_types"].items(),
        *summary["directions"].items(),
        ("overall", summary["overall"]),
        (f"overall, {other} parsing", summary[f"overall_{other}_parsing"]),
        ("released - strict", summary["released_minus_strict"]),
    ]
    for name, e in rows:
        table.add_row(
            name,
            f"{e['value']:+.3f}" if " - " in name else f"{e['value']:.3f}",
            f"[{e['lo']:.3f}, {e['hi']:.3f}]",
            str(e["n"]),
        )
    Console().print(table)
    err.print(f"{summary['items_parsed_differently']} of {len(records)} items scored differently by the two parsings")
