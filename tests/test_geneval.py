import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unifylab.data.geneval import generate, read_metadata
from unifylab.errors import UserError
from unifylab.eval.geneval import find_images, score
from unifylab.io import save_png
from unifylab.world import World, world_of
from unifylab.world.shapes.canvas import ShapesConfig, render
from unifylab.world.shapes.geneval import TAGS


def _shapes(size: int = 32, grid: int = 3) -> World:
    return world_of(ShapesConfig(size=size, grid=grid))


def _write(tmp: Path, items: list) -> Path:
    meta = tmp / "metadata.jsonl"
    meta.write_text("".join(json.dumps(it.to_dict()) + "\n" for it in items))
    return meta


def test_generated_metadata_is_geneval_schema_and_round_trips(tmp_path: Path) -> None:
    items = generate(_shapes(48, 4), 10, 0)
    assert [it.tag for it in items] == [t for t in TAGS for _ in range(10)]
    back = read_metadata(_write(tmp_path, items))
    assert [b.to_dict() for b in back] == [it.to_dict() for it in items]
    line = items[40].to_dict()
    assert line["tag"] == "position" and line["include"][1]["position"][1] == 0
    assert items[20].to_dict()["exclude"][0]["count"] == items[20].to_dict()["include"][0]["count"] + 1


@pytest.mark.parametrize("layout", ["flat", "samples"])
def test_ground_truth_renders_score_one_and_shuffled_score_low(tmp_path: Path, layout: str) -> None:
    items = generate(_shapes(), 25, 3)
    meta = _write(tmp_path, items)
    images = tmp_path / "images"
    for it in items:
        path = images / f"{it.index}.png" if layout == "flat" else images / f"{it.index:05d}" / "samples" / "0000.png"
        save_png(path, render(it.scene))
    pairs, extra = find_images(images, read_metadata(meta))
    result = score(pairs)
    assert result.overall.value == 1.0 and not extra
    assert set(result.tasks) == set(TAGS)
    order = np.random.default_rng(0).permutation(len(items))
    shuffled = [(it, pairs[int(j)][1]) for it, j in zip(items, order)]
    low = score(shuffled)
    assert low.overall.value < 0.35 and low.overall.hi < 0.5
    failed = [r for r in low.records if not r["correct"]]
    assert failed and all(r["reasons"] for r in failed)


def test_metadata_without_scene_uses_given_or_inferred_grid(tmp_path: Path) -> None:
    items = generate(_shapes(32, 4), 5, 1)
    lines = [{k: v for k, v in it.to_dict().items() if k != "scene"} for it in items]
    meta = tmp_path / "m.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    for it in items:
        save_png(tmp_path / "img" / f"{it.index:03d}.png", render(it.scene))
    pairs, _ = find_images(tmp_path / "img", read_metadata(meta))
    assert score(pairs, grid=4).overall.value == 1.0


@pytest.mark.parametrize(
    "line, message",
    [
        ({"tag": "x", "prompt": "p", "include": [{"class": "dog", "count": 1}]}, r"include\[0\].class.*'dog'"),
        ({"tag": "x", "prompt": "p", "include": [{"class": "ring", "count": 0}]}, r"include\[0\].count"),
        ({"tag": "x", "prompt": "p", "include": [{"class": "ring", "color": "teal"}]}, r"include\[0\].color"),
        ({"tag": "x", "prompt": "p", "include": [{"class": "ring", "colour": "red"}]}, "unknown field"),
        ({"tag": "x", "prompt": "p", "include": [{"class": "ring", "position": ["left of", 0]}]}, "earlier include"),
        ({"tag": "x", "include": []}, "missing field 'prompt'"),
    ],
)
def test_bad_metadata_lines_name_file_line_and_field(tmp_path: Path, line: dict, message: str) -> None:
    meta = tmp_path / "m.jsonl"
    meta.write_text(
        json.dumps({"tag": "ok", "prompt": "a ring", "include": [{"class": "ring", "count": 1}]})
        + "\n"
        + json.dumps(line)
        + "\n"
    )
    with pytest.raises(UserError, match=f"m.jsonl:2.*{message}"):
        read_metadata(meta)


def test_missing_duplicate_and_empty_image_folders(tmp_path: Path) -> None:
    items = generate(_shapes(), 2, 0, tasks=("colors",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        find_images(tmp_path / "empty", items)
    save_png(tmp_path / "some" / "0.png", render(items[0].scene))
    with pytest.raises(UserError, match=r"no image for 1 metadata line.*indices 1"):
        find_images(tmp_path / "some", items)
    shutil.copy(tmp_path / "some" / "0.png", tmp_path / "some" / "000.png")
    with pytest.raises(UserError, match="several entries claim index 0"):
        find_images(tmp_path / "some", items)
