"""`unifylab tokenizer`: train and save text and image tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unifylab.cli.common import Force, MinuteStep, _device, _ints, _out, _progress, _world_options, err
from unifylab.config import SEED_MAX
from unifylab.world import DEFAULT, check_world

tokenizer_app = typer.Typer(no_args_is_help=True, help="Train and save text and image tokenizers.")


@tokenizer_app.command("train-text")
def tokenizer_train_text(
    out: Annotated[Path, _out("Folder for tokenizer.json.")],
    world: Annotated[str, typer.Option(help="World whose language to learn.")] = DEFAULT,
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
    world: Annotated[str, typer.Option(help="World to render training images from.")] = DEFAULT,
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
    from unifylab.train.image_tokenizer import build_image_tokenizer

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
