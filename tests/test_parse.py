import numpy as np
import pytest

from unifylab.errors import UserError
from unifylab.world import Nuisance
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scenes
from unifylab.world.shapes.parse import parse, parse_batch

CONFIGS = [
    ShapesConfig(size=32, grid=3),
    ShapesConfig(size=32, grid=4, max_objects=6),
    ShapesConfig(size=48, grid=6, max_objects=10),
    ShapesConfig(size=64, grid=5, max_objects=8, sizes=("large", "small")),
    ShapesConfig(size=96, grid=3, min_objects=0, max_objects=9, sizes=("large", "small")),
    ShapesConfig(size=128, grid=6, max_objects=12, sizes=("large", "small")),
]


def test_parser_is_exact_on_2000_clean_scenes_across_canvases_and_grids() -> None:
    total = 0
    for k, cfg in enumerate(CONFIGS):
        scenes = sample_scenes(cfg, 350, seed=100 + k)
        parsed = parse_batch(np.stack([render(s) for s in scenes]), cfg.grid)
        wrong = [(s, p) for s, p in zip(scenes, parsed) if p != s]
        assert not wrong, f"{cfg}: {len(wrong)} wrong, e.g. {wrong[0][0].to_json()} -> {wrong[0][1].to_json()}"
        assert all(o.confidence == pytest.approx(1.0) for p in parsed for o in p.objects)
        total += len(scenes)
    assert total >= 2000


def test_grid_is_inferred_on_clean_renders() -> None:
    for cfg in (
        ShapesConfig(size=32, grid=3),
        ShapesConfig(size=32, grid=4, max_objects=5),
        ShapesConfig(size=96, grid=6, min_objects=3, max_objects=8),
    ):
        scenes = sample_scenes(cfg, 200, seed=1)
        parsed = parse_batch(np.stack([render(s) for s in scenes]))
        assert sum(p == s for p, s in zip(parsed, scenes)) == len(scenes)


def _object_accuracy(truth: list, parsed: list) -> tuple[float, int]:
    hits = sum(p.at(o.row, o.col) == o for s, p in zip(truth, parsed) for o in s.objects)
    n = sum(len(s.objects) for s in truth)
    false_pos = sum(s.at(o.row, o.col) is None for s, p in zip(truth, parsed) for o in p.objects)
    return hits / n, false_pos


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[3]], ids=["32g3", "32g4", "64g5small"])
def test_parser_survives_noise_jitter_and_tint(cfg: ShapesConfig) -> None:
    scenes = sample_scenes(cfg, 400, seed=9)
    images = np.stack([render(s, Nuisance(noise=8.0, jitter=1, tint=30, seed=i)) for i, s in enumerate(scenes)])
    acc, false_pos = _object_accuracy(scenes, parse_batch(images, cfg.grid))
    assert acc >= 0.99 and false_pos <= 0.01 * sum(len(s.objects) for s in scenes)


def _photo_like(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour fields with a few soft blobs: a stand-in for a natural photo."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        a, b, p = rng.uniform(1, 4, 3)
        img[..., c] = 127 + 100 * np.sin(a * 3 * x + p) * np.cos(b * 3 * y)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 3)
        img += rng.uniform(-80, 80, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 + 0.05 * r))[..., None]
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_garbage_gives_few_low_confidence_objects(size: int) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (30, size, size, 3), dtype=np.uint8)
    blank = np.full((30, size, size, 3), 0, np.uint8)
    grey = np.full((30, size, size, 3), 128, np.uint8)
    for images in (noise, blank, grey):
        assert sum(len(s.objects) for s in parse_batch(images)) == 0
    photos = np.stack([_photo_like(rng, size) for _ in range(30)])
    parsed = parse_batch(photos)
    objs = [o for s in parsed for o in s.objects]
    assert len(objs) <= 3 * len(parsed)
    assert not objs or np.mean([o.confidence for o in objs]) < 0.8


def test_batch_equals_single_and_bad_inputs_raise_user_errors() -> None:
    scenes = sample_scenes(ShapesConfig(size=48, grid=4, max_objects=5), 20, 2)
    images = np.stack([render(s) for s in scenes])
    assert parse_batch(images) == [parse(im) for im in images]
    with pytest.raises(UserError, match="uint8"):
        parse_batch(images.astype(np.float32))
    with pytest.raises(UserError, match="square"):
        parse_batch(images[:, :, :40])
    with pytest.raises(UserError, match="resize"):
        parse_batch(np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(UserError, match="grid 7"):
        parse_batch(images, grid=7)
