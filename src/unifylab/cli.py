"""The `unifylab` command line (typer). User errors print one `error: ...` line on stderr and exit 2."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from unifylab.config import SEED_MAX, build
from unifylab.errors import UserError
from unifylab.eval.geneval_rules import CLIP, DETECTOR
from unifylab.layout import EvalFolder, StudyFolder
from unifylab.progress import LineProgress, progress
from unifylab.runtime import resolve_device, single_thread_blas
from unifylab.world import check_world
from unifylab.world.shapes import Nuisance
from unifylab.world.worlds import describe_canvas

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A lab for unified multimodal models.")
world_app = typer.Typer(no_args_is_help=True, help="Sample, render and parse scenes of a controlled world.")
data_app = typer.Typer(no_args_is_help=True, help="Build task files from a world.")
score_app = typer.Typer(no_args_is_help=True, help="Score generated images with the exact parser.")
app.add_typer(world_app, name="world")
app.add_typer(data_app, name="data")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train and save text and image tokenizers.")
app.add_typer(score_app, name="score")
app.add_typer(tokenizer_app, name="tokenizer")
analyze_app = typer.Typer(no_args_is_help=True, help="Look inside models: alignment, entropy, gradient conflict.")
app.add_typer(analyze_app, name="analyze")
generate_app = typer.Typer(no_args_is_help=True, help="Draw a benchmark's prompts into its own folder layout.")
app.add_typer(generate_app, name="generate")

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


def _nuisance(noise: float, jitter: int, tint: int, seed: int) -> Nuisance | None:
    if not (noise or jitter or tint):
        return None
    try:
        return Nuisance(noise, jitter, tint, seed)
    except ValueError as e:
        raise UserError(f"--noise/--jitter/--tint: {e}") from None


def _world_options(
    world: str, *, size: int, grid: int, min_objects: int, max_objects: int, sizes: str, minute_step: int
) -> dict[str, Any]:
    """The world options as the named world's config fields (`sizes` is comma-separated)."""
    check_world(world)
    if world == "watch":
        return {"name": world, "size": size, "minute_step": minute_step}
    return {
        "name": world,
        "size": size,
        "grid": grid,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "sizes": tuple(s.strip() for s in sizes.split(",") if s.strip()),
    }


# ---------------------------------------------------------------------------------------------- world


@world_app.command("sample")
def world_sample(
    out: Annotated[Path, _out("Folder for scenes.jsonl, images/ and world.json.")],
    world: Annotated[str, typer.Option(help="World to sample from.")] = "shapes",
    n: Annotated[int, typer.Option(min=1, help="Number of scenes.")] = 16,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed; the same seed gives the same bytes.")] = 0,
    size: Annotated[int, typer.Option(help="Canvas side in px (32..128).")] = 32,
    grid: Annotated[int, typer.Option(help="Cells per side (3..6).")] = 3,
    min_objects: Annotated[int, typer.Option(help="Fewest objects per scene.")] = 1,
    max_objects: Annotated[int, typer.Option(help="Most objects per scene.")] = 3,
    sizes: Annotated[str, typer.Option(help="Comma-separated object sizes to sample: large,small.")] = "large",
    minute_step: MinuteStep = 5,
    noise: Noise = 0.0,
    jitter: Jitter = 0,
    tint: Tint = 0,
    force: Force = False,
) -> None:
    """Sample N random scenes and render them: DIR/scenes.jsonl and DIR/images/000000.png ..."""
    from unifylab.data.folder import write_world_sample
    from unifylab.world.worlds import WorldChoice

    values = _world_options(
        world,
        size=size,
        grid=grid,
        min_objects=min_objects,
        max_objects=max_objects,
        sizes=sizes,
        minute_step=minute_step,
    )
    cfg = build(WorldChoice, {"world": values}, "world sample options").world
    _nuisance(noise, jitter, tint, seed)
    with _progress() as bar:
        task = bar.add_task("rendering", total=n)
        write_world_sample(
            out,
            cfg,
            n=n,
            seed=seed,
            nuisance=lambda s: _nuisance(noise, jitter, tint, s),
            meta={"nuisance": {"noise": noise, "jitter": jitter, "tint": tint}},
            on_image=lambda: bar.advance(task),
            force=force,
        )
    err.print(f"wrote {n} scenes to {out / 'scenes.jsonl'} and images to {out / 'images'}")


@world_app.command("render")
def world_render(
    scene_file: Annotated[Path, typer.Argument(metavar="SCENE.json", help="A scene JSON file.")],
    out: Annotated[Path, _out("PNG file to write.")],
    noise: Noise = 0.0,
    jitter: Jitter = 0,
    tint: Tint = 0,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the nuisances.")] = 0,
    minute_step: MinuteStep = 5,
    force: Force = False,
) -> None:
    """Render one scene JSON file (of any world, by its "world" field) to a PNG."""
    from unifylab.io import guard_output, read_json, save_png
    from unifylab.world.scene import Scene, SceneError
    from unifylab.world.watch import WatchScene
    from unifylab.world.worlds import render_scene, scene_world

    data = read_json(scene_file)
    try:
        if not isinstance(data, dict):
            raise SceneError(f"expected a JSON object for a scene, got {type(data).__name__}")
        scene = WatchScene.from_dict(data, minute_step) if scene_world(data) == "watch" else Scene.from_dict(data)
    except SceneError as e:
        raise UserError(f"{scene_file}: {e}") from None
    nuisance = _nuisance(noise, jitter, tint, seed)
    guard_output(out, force)
    save_png(out, render_scene(scene, nuisance))


@world_app.command("parse")
def world_parse(
    image: Annotated[Path, typer.Argument(metavar="IMG.png", help="An RGB PNG of the world.")],
    grid: Annotated[int | None, typer.Option(help="shapes: grid of the image; inferred when omitted.")] = None,
    confidence: Annotated[bool, typer.Option("--confidence", help="Add the parser's confidence per object.")] = False,
    world: Annotated[
        str | None,
        typer.Option(help="World of the image; default: the world.json beside it (world sample's), else recognised."),
    ] = None,
    minute_step: Annotated[
        int | None, typer.Option(help="watch: the dial's minute step; default: world.json's, else 5.")
    ] = None,
) -> None:
    """Read the scene back out of an image and print it as one JSON line (the scenes.jsonl form). An image that is
    plainly another world's than the one given or recorded is refused, never parsed as an empty scene."""
    from unifylab.io import load_rgb
    from unifylab.world.parse import parse
    from unifylab.world.watch import parse_faces
    from unifylab.world.worlds import recognise

    pixels = load_rgb(image)
    recorded = _world_json_of(image)
    name = check_world(world) if world is not None else (recorded or {}).get("world")
    seen, errors = recognise(pixels)
    how = ", ".join(f"{w} {e:.1f}" for w, e in errors.items())
    if name is None and seen is None:
        raise UserError(
            f"{image}: cannot tell which world this image is of (re-render error per world: {how}); pass --world"
        )
    if name is not None and seen is not None and seen != name:
        source = "--world" if world is not None else f"{recorded['path']}"
        raise UserError(
            f"{image}: is a {seen}-world image (re-render error per world: {how}), but {source} says {name}; "
            f"pass --world {seen}, or check the file"
        )
    name = name or seen
    config = (recorded or {}).get("config", {}) if (recorded or {}).get("world") == name else {}
    if name == "watch":
        step = minute_step or config.get("minute_step", 5)
        typer.echo(parse_faces(pixels[None], minute_step=step)[0].to_json())
        return
    scene = parse(pixels, grid or config.get("grid"))
    typer.echo((scene if confidence else scene.without_confidence()).to_json())


def _world_json_of(image: Path) -> dict[str, Any] | None:
    """The world.json that `world sample` wrote for an image (beside it, or one folder up from images/), with its
    path; None when there is none."""
    from unifylab.io import read_json

    for folder in (image.parent, image.parent.parent):
        if (folder / "world.json").is_file():
            info = read_json(folder / "world.json")
            if not (isinstance(info, dict) and isinstance(info.get("world"), str)):
                raise UserError(f"{folder / 'world.json'}: not a world sample's world.json (no 'world' name)")
            check_world(info["world"], str(folder / "world.json"))
            return {**info, "path": folder / "world.json"}
    return None


# ---------------------------------------------------------------------------------------------- data


@data_app.command("geneval")
def data_geneval(
    out: Annotated[Path, _out("Folder for metadata.jsonl (and images/ with --render).")],
    n_per_task: Annotated[int, typer.Option(help="Prompts per GenEval task.")] = 20,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed.")] = 0,
    world: Annotated[str, typer.Option(help="World: shapes (GenEval's six tasks) or watch (its six).")] = "shapes",
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
    from unifylab.data.geneval import generate, generate_watch, write_geneval
    from unifylab.io import claim_output
    from unifylab.world.worlds import WorldChoice

    if check_world(world) == "watch":
        values = {"name": world, "size": size, "minute_step": minute_step}
        items = generate_watch(n_per_task, seed, build(WorldChoice, {"world": values}, "data geneval options").world)
    else:
        items = generate(n_per_task, seed, size, grid)
    claim_output(out, ["metadata.jsonl", "images"], force=force)
    write_geneval(out, items, render_images=render_images)
    err.print(
        f"wrote {len(items)} prompts to {out / 'metadata.jsonl'}"
        + (f" and images to {out / 'images'}" if render_images else "")
    )


# ---------------------------------------------------------------------------------------------- score


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


# ---------------------------------------------------------------------------------------------- tokenizer


def _device(name: str) -> str:
    """'auto' -> the local GPU if there is one, else cpu; a CUDA device without CUDA is a UserError."""
    return str(resolve_device(name))


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers like 8,5,5,5, got {text!r}") from None


def _seeds(text: str) -> list[int]:
    """--seeds: distinct seeds in 0..SEED_MAX (each names run folders)."""
    seeds = list(_ints(text, "--seeds"))
    if bad := [s for s in seeds if not 0 <= s <= SEED_MAX]:
        raise UserError(f"--seeds: seed {bad[0]} is out of range; use seeds 0..{SEED_MAX}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: {text!r} repeats a seed; give each seed once")
    return seeds


@tokenizer_app.command("train-text")
def tokenizer_train_text(
    out: Annotated[Path, _out("Folder for tokenizer.json.")],
    world: Annotated[str, typer.Option(help="World whose language to learn.")] = "shapes",
    vocab_size: Annotated[int, typer.Option(help="Largest vocabulary (BPE stops earlier when merges run out).")] = 512,
    n_scenes: Annotated[int, typer.Option(help="Scenes to describe for the training corpus.")] = 2000,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the corpus.")] = 0,
    force: Force = False,
) -> None:
    """Train the byte-level BPE text tokenizer on the world's captions, questions and prompts."""
    from unifylab.io import atomic_folder
    from unifylab.tokenize.text import TextTokenizer, world_corpus

    check_world(world)
    with atomic_folder(out, force) as tmp:
        tok = TextTokenizer.train(world_corpus(n_scenes, seed, world=world), vocab_size)
        tok.save_pretrained(tmp)
    err.print(f"wrote {out / 'tokenizer.json'} ({tok.vocab_size} tokens)")


@tokenizer_app.command("train-image")
def tokenizer_train_image(
    out: Annotated[Path, _out("Folder for config.json, model.safetensors and metrics.json.")],
    world: Annotated[str, typer.Option(help="World to render training images from.")] = "shapes",
    kind: Annotated[
        str,
        typer.Option(
            help="vq (learned FSQ autoencoder), grid (the shapes world's exact oracle), attributes (the watch "
            "world's) or patch (continuous)."
        ),
    ] = "vq",
    size: Annotated[int, typer.Option(help="Canvas side in px.")] = 32,
    grid: Annotated[int, typer.Option(help="Grid of the training world.")] = 3,
    max_objects: Annotated[int, typer.Option(help="Most objects per training scene.")] = 9,
    sizes: Annotated[str, typer.Option(help="Object sizes in the training world: large or large,small.")] = "large",
    minute_step: MinuteStep = 5,
    downsample: Annotated[int, typer.Option(help="vq: pixels per token side (4 or 8).")] = 4,
    levels: Annotated[str, typer.Option(help="vq: FSQ levels; codebook size = their product.")] = "8,5,5,5",
    hidden: Annotated[int, typer.Option(help="vq: channels at full resolution.")] = 32,
    steps: Annotated[int, typer.Option(help="vq: optimisation steps.")] = 1600,
    batch: Annotated[int, typer.Option(help="vq: images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="vq: peak learning rate (one-cycle).")] = 3e-3,
    n_train: Annotated[int, typer.Option(help="vq: training renders.")] = 20000,
    n_val: Annotated[int, typer.Option(help="Held-out renders for metrics.json.")] = 1000,
    patch: Annotated[int, typer.Option(help="patch: pixels per patch side.")] = 4,
    source: Annotated[str, typer.Option(help="patch: pixels, or vq features (needs --vq).")] = "pixels",
    vq: Annotated[Path | None, typer.Option(help="patch with --source vq: a trained vq tokenizer folder.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of data and initialisation.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Force = False,
) -> None:
    """Build an image tokenizer for a world; vq is trained (with a progress bar) and measured on held-out renders."""
    from unifylab.tokenize.build import build_image_tokenizer

    world_values = _world_options(
        world, size=size, grid=grid, min_objects=0, max_objects=max_objects, sizes=sizes, minute_step=minute_step
    )
    vq_values = {
        "model": {"size": size, "downsample": downsample, "levels": _ints(levels, "--levels"), "hidden": hidden},
        "n_train": n_train,
        "steps": steps,
        "batch": batch,
        "lr": lr,
    }
    with _progress() as bar:
        task = bar.add_task(f"building {kind}", total=steps if kind == "vq" else None)
        metrics = build_image_tokenizer(
            out,
            kind=kind,
            world=world_values,
            n_val=n_val,
            seed=seed,
            vq=vq_values,
            patch=patch,
            source=source,
            vq_folder=vq,
            device=_device(device) if kind == "vq" else "cpu",
            force=force,
            progress=lambda step, loss: bar.update(task, completed=step, description=f"training vq  loss {loss:.4f}"),
        )
    shown = ("psnr_db", "codebook_usage", "parse_exact", "train_seconds") if kind == "vq" else tuple(metrics)
    err.print(f"wrote {out}: " + ", ".join(f"{k} {metrics[k]}" for k in shown))


# ---------------------------------------------------------------------------------------------- train


@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG.yaml", help="Training config (YAML).")] = None,
    out: Annotated[Path, _out("Run folder; re-running with it resumes from its last checkpoint.")] = ...,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key, e.g. --set optim.lr=1e-3.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a unified or specialist model (resumes when RUN holds a checkpoint); torchrun for several processes."""
    from unifylab.train import Trainer, load_config
    from unifylab.train.distributed import shutdown

    cfg = load_config(config, set_ or [])
    trainer = Trainer(cfg, out, err, progress=not quiet)
    try:
        summary = trainer.fit()
    finally:
        shutdown(trainer.dist)
    if trainer.dist.main:
        loss = ", ".join(f"{k} {v:.3f}" for k, v in summary["final"].items() if not k.startswith("exact/"))
        exact = ", ".join(
            f"{k.removeprefix('exact/')} {v:.3f}" for k, v in summary["final"].items() if k.startswith("exact/")
        )
        err.print(
            f"trained {summary['steps']} steps ({summary['tokens_seen']:,} tokens) -> {out}; held-out loss: "
            f"{loss}; greedy-exact: {exact}"
        )


# ---------------------------------------------------------------------------------------------- eval


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


@app.command("eval")
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
    from unifylab.eval.tasks import TaskSpec, resolve_tasks

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


@app.command("compare")
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
    grid: Annotated[int, typer.Option(help="Grid the parser judge reads drawings with.")] = 3,
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
    from unifylab.eval.models import load_judge, load_model, model_identity
    from unifylab.eval.realunify import load_realunify, run_realunify, summarise_realunify

    items = load_realunify(data)[:limit]
    m = load_model(model, device=device)
    j = load_judge(judge, grid=grid, device=device)
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
                size=size,
                grid=grid,
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


# ---------------------------------------------------------------------------------------------- study


@app.command("study")
def study_cmd(
    preset: Annotated[str, typer.Option(help="quick, standard, scaling, alignment, or a preset YAML file.")] = "quick",
    out: Annotated[Path | None, _out("Study folder (default: study-<preset>); re-running resumes.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the preset's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training key for every run.")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Trainings run at once (default: one per physical CPU core; 1 on a GPU)."),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (this machine) or ray (a Ray cluster; pip install -e '.[ray]').")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="ray: the cluster ('auto', ray://host:10001); default RAY_ADDRESS, else local.")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(min=0, help="ray: GPUs per run, fractions share one (default: 1 on cuda, else 0).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Redo runs, scores and analyses in --out whose settings changed (default: refuse)."
        ),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(help="A side-by-side preset (claims, worlds): run only these of its studies (comma-separated)."),
    ] = None,
) -> None:
    """Does unification help? Train unified and specialist models, evaluate all tasks, write the report."""
    from unifylab.study.preset import load_preset
    from unifylab.study.report import write_report
    from unifylab.study.report_answer import answer
    from unifylab.study.runner import run_study

    if executor not in ("local", "ray"):
        raise UserError(f"--executor: unknown executor {executor!r}; expected local or ray")
    if executor != "ray" and (ray_address is not None or gpus_per_run is not None):
        raise UserError("--ray-address and --gpus-per-run need --executor ray")
    p = load_preset(preset)
    folder = out or Path(f"study-{p.name}")
    how = {
        "seeds": _seeds(seeds) if seeds else None,
        "device": _device(device),
        "overrides": set_ or [],
        "console": err,
        "jobs": jobs,
        "executor": executor,
        "ray_address": ray_address,
        "gpus_per_run": gpus_per_run,
        "force": force,
    }
    if only is not None and not p.studies:
        raise UserError(f"--only: preset {p.name} runs no studies of its own; drop --only")
    if p.studies:
        from unifylab.study.claims_report import verdict_lines
        from unifylab.study.side_by_side import run_side_by_side, side_by_side_lines

        with StudyFolder(folder).lock(force=force):
            combined = run_side_by_side(p, folder, only=[x.strip() for x in only.split(",")] if only else None, **how)
        lines = verdict_lines(combined["claims"]) if combined.get("claims") else side_by_side_lines(combined)
        for line in lines:
            err.print(line)
        err.print(f"report: {StudyFolder(folder).report_html} ({combined['wall_seconds']:.0f} s)")
        return
    with StudyFolder(folder).lock(force=force):
        results = run_study(p, folder, **how)
        md, html_path = write_report(folder, results)
    for line in answer(results):
        err.print(line)
    err.print(f"report: {html_path} and {md} ({results['wall_seconds']:.0f} s)")


# ---------------------------------------------------------------------------------------------- entry points


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user and usage errors become one `error:` line and exit code 2."""
    single_thread_blas()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="unifylab", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into an exit code when not in standalone mode
            print("error: interrupted", file=sys.stderr)
        if isinstance(code, int):
            return code
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or missing folder, a file where a folder should be, ...
        print(f"error: {os_error(e)}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        # a click usage error (typer may vendor its own click, so match by interface, not class)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = e.format_message() or "missing command or argument"
        print(f"error: {message}{hint}", file=sys.stderr)
        return 2
    return 0


def os_error(e: OSError) -> str:
    """One line for a filesystem error: what failed, on which path, and that finished work is kept."""
    name = errno.errorcode.get(e.errno or 0, "")
    where = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{where}a file stands where a folder is needed ({name}); choose another --out"
    return (
        f"{where}{e.strerror or e} ({name}); every file written before was written whole (atomic writes), and "
        "finished runs, checkpoints and scored items are kept: fix the cause and re-run to resume"
    )


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
