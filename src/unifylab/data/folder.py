"""A world sample folder (`unifylab world sample`): scenes.jsonl, images/000000.png ... and world.json, the
dataset a training config reads with `data.source: folder`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unifylab.io import save_png, write_jsonl
from unifylab.world.shapes import Nuisance, ShapesConfig
from unifylab.world.watch import WatchConfig
from unifylab.world.worlds import world_of


def image_seed(seed: int, i: int) -> int:
    """The nuisance seed of image i of a sample drawn with `seed`: independent per image, the same every run."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def write_world_sample(
    out: Path,
    cfg: ShapesConfig | WatchConfig,
    *,
    n: int,
    seed: int,
    nuisance: Callable[[int], Nuisance | None] = lambda seed: None,
    meta: dict[str, object] | None = None,
    on_image: Callable[[], None] = lambda: None,
) -> None:
    """Sample n scenes of `cfg` with `seed` and write them into `out`; `nuisance(image_seed)` gives each image's
    render nuisance (None: clean), `meta` joins world.json (e.g. the nuisance settings), `on_image` runs after each
    image is written."""
    world, rng = world_of(cfg), np.random.default_rng(seed)
    scenes = [world.sample(rng) for _ in range(n)]
    for i, scene in enumerate(scenes):
        save_png(out / "images" / f"{i:06d}.png", world.render(scene, nuisance(image_seed(seed, i))))
        on_image()
    write_jsonl(out / "scenes.jsonl", (s.to_dict() for s in scenes))
    info = {"world": cfg.name, "n": n, "seed": seed, "config": cfg.model_dump(mode="json"), **(meta or {})}
    (out / "world.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
