"""A world sample folder (`unifylab world sample`): scenes.jsonl, images/000000.png ... and world.json, the
dataset a training config reads with `data.source: folder`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from unifylab.io import save_png, write_jsonl
from unifylab.layout import SampleFolder
from unifylab.world import Nuisance, WorldConfig, world_of


def image_seed(seed: int, i: int) -> int:
    """The nuisance seed of image i of a sample drawn with `seed`: independent per image, the same every run."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def write_world_sample(
    out: Path,
    cfg: WorldConfig,
    *,
    n: int,
    seed: int,
    nuisance: Callable[[int], Nuisance | None] = lambda seed: None,
    meta: dict[str, object] | None = None,
    on_image: Callable[[], None] = lambda: None,
    force: bool = False,
) -> None:
    """Sample n scenes of `cfg` with `seed` into the sample folder `out` (locked; images a killed run of the same
    options left are reused, another sample there is refused unless `force`); `nuisance(image_seed)` gives each
    image's render nuisance (None: clean), `meta` joins world.json (e.g. the nuisance settings), `on_image` runs
    after each image."""
    folder = SampleFolder(Path(out))
    info = {"world": cfg.name, "n": n, "seed": seed, "config": cfg.model_dump(mode="json"), **(meta or {})}
    world, rng = world_of(cfg), np.random.default_rng(seed)
    scenes = [world.sample(rng) for _ in range(n)]
    with folder.lock(force=force):
        folder.reusable(info, force=force)
        for i, scene in enumerate(scenes):
            if not folder.image(i).is_file():
                save_png(folder.image(i), world.render(scene, nuisance(image_seed(seed, i))))
            on_image()
        write_jsonl(folder.scenes, (s.to_dict() for s in scenes))
