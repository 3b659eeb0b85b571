"""`unifylab world`: sample, render and parse scenes of a controlled world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from unifylab.cli.common import Force, Jitter, MinuteStep, Noise, Tint, _out, _progress, _world_options, err
from unifylab.config import SEED_MAX, build
from unifylab.errors import UserError
from unifylab.world import DEFAULT, Nuisance, check_world

world_app = typer.Typer(no_args_is_help=True, help="Sample, render and parse scenes of a controlled world.")


def _nuisance(noise: float, jitter: int, tint: int, seed: int) -> Nuisance | None:
    if not (noise or jitter or tint):
        return None
    try:
        return Nuisance(noise, jitter, tint, seed)
    except ValueError as e:
        raise UserError(f"--noise/--jitter/--tint: {e}") from None


@world_app.command("sample")
def world_sample(
    out: Annotated[Path, _out("Folder for scenes.jsonl, images/ and world.json.")],
    world: Annotated[str, typer.Option(help="World to sample from.")] = DEFAULT,
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
    from unifylab.world import WorldChoice

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
    from unifylab.world import SceneError, class_of_dict, render_scene

    data = read_json(scene_file)
    try:
        if not isinstance(data, dict):
            raise SceneError(f"expected a JSON object for a scene, got {type(data).__name__}")
        scene = class_of_dict(data).scene_from_json(data, settings={"minute_step": minute_step})
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
    from unifylab.world import CLASSES, recognise

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
    given = {k: v for k, v in {"grid": grid, "minute_step": minute_step}.items() if v is not None}
    scene = CLASSES[name].parse_image(pixels, settings={**config, **given}, confidence=confidence)
    typer.echo(scene.to_json())


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
